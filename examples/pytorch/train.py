"""A plain PyTorch training loop (the shape of pytorch/examples' MNIST example): a small convnet on
28x28 digit-like images, with a test pass after every epoch.

Nothing here knows gpu-grid. Run it by hand (`python train.py --epochs 2`) or on several
processes with `torchrun --nproc-per-node 2 train.py` (DistributedDataParallel; NCCL on GPUs,
gloo on CPU). The data is a synthetic stand-in of MNIST's shape, so it runs offline.
"""

import argparse
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout = nn.Dropout(0.25)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout(x), 1)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


def digits(n, seed):
    """Images of class k carry a bright patch at a place of their own, under noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n)
    x = rng.normal(0.2, 0.3, size=(n, 1, 28, 28)).astype("float32")
    for k in range(10):
        row, col = 3 + (k // 5) * 12, 2 + (k % 5) * 5
        x[y == k, :, row : row + 4, col : col + 4] += 0.4
    return torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))


def train(model, device, loader, optimizer, epoch, log_interval):
    model.train()
    for batch_idx, (data, target) in enumerate(loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        if batch_idx % log_interval == 0:
            print(f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(loader.dataset)}]\tLoss: {loss.item():.6f}")


def test(model, device, loader):
    model.eval()
    test_loss, correct = 0.0, 0
    with torch.no_grad():
        for data, target in loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            correct += output.argmax(dim=1).eq(target).sum().item()
    n = len(loader.dataset)
    print(f"Test set: Average loss: {test_loss / n:.4f}, Accuracy: {correct}/{n} ({100.0 * correct / n:.2f}%)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--samples", type=int, default=12000)
    parser.add_argument("--log-interval", type=int, default=50)
    args = parser.parse_args()

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(rank)
    device = torch.device(f"cuda:{rank}" if use_cuda else "cpu")
    if distributed:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    torch.manual_seed(1)

    train_set, test_set = digits(args.samples, seed=0), digits(args.samples // 5, seed=1)
    sampler = torch.utils.data.distributed.DistributedSampler(train_set) if distributed else None
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler
    )
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000)
    model = Net().to(device)
    if distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[rank] if use_cuda else None)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    for epoch in range(1, args.epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        start = time.perf_counter()
        train(model, device, train_loader, optimizer, epoch, args.log_interval)
        if use_cuda:
            torch.cuda.synchronize()
        print(f"Epoch {epoch} trained in {time.perf_counter() - start:.3f} s")
        if rank == 0:
            test(model, device, test_loader)
        scheduler.step()
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
