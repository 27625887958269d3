"""A plain PyTorch loop, nothing of gpu-grid in it: per epoch a full training pass (gradients on),
a test pass under no_grad, and a peek at a third loader that stops early (not an epoch)."""

import sys

import torch

epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
torch.manual_seed(0)
x, y = torch.randn(96, 8), torch.randint(0, 2, (96,))
train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10)  # 9 of 10, one of 6
test = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:40], y[:40]), batch_size=20)
peek = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
model = torch.nn.Linear(8, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(epochs):
    for xb, yb in train:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    with torch.no_grad():
        correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in test)
    for i, _ in enumerate(peek):
        if i == 2:
            break
    print(f"epoch {epoch} test accuracy {correct / 40:.3f}", flush=True)
