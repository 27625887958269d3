"""Keras on torch over k devices: k processes under DistributedDataParallel, one per device.

Keras' `model.fit` has no torch data parallelism, so each rank runs the model as a
`torch.nn.Module` in a plain torch loop (Keras' own guide to multi-GPU training on torch does
the same). Rank r uses cuda:r with NCCL, or the CPU with gloo where no GPU is visible: a real
two-process run on a CPU box. Each rank reads its own data shard, caps its own device and writes
its timings to a file the trial process collects. Each rank is a Python process of the trial,
so the bootstrap caps the rank's own device (it sets LOCAL_RANK before touching CUDA) and reads
that rank's peak memory.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from importlib import import_module

from tasks.data import whole_batches
from tasks.devices import gpus_error


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cfg: dict, module_name: str, k: int) -> dict:
    """Spawn k ranks, wait for all, and merge what they measured. This process never starts CUDA."""
    import torch
    import torch.multiprocessing as mp

    cuda = torch.cuda.is_available()
    if cuda and torch.cuda.device_count() < k:
        raise gpus_error(k, f"torch sees {torch.cuda.device_count()} CUDA device(s)")
    with tempfile.TemporaryDirectory(prefix="gpu-grid-ddp-") as out_dir:
        mp.spawn(rank_main, args=(cfg, module_name, k, free_port(), out_dir), nprocs=k, join=True)
        ranks = []
        for r in range(k):
            with open(os.path.join(out_dir, f"rank-{r}.json")) as f:
                ranks.append(json.load(f))
    return {
        "epoch_times": ranks[0]["epoch_times"],
        "images_per_epoch": ranks[0]["images_per_epoch"] * k,
        "global_batch": cfg["batch_size"] * k,
        "framework": "torch",
        "parallelism": f"torch DistributedDataParallel, {k} processes ({'nccl' if cuda else 'gloo, CPU'})",
        **ranks[0]["data"],
    }


def rank_main(rank: int, cfg: dict, module_name: str, k: int, port: int, out_dir: str) -> None:
    """One rank: join the group, train or infer on its shard, write what it measured."""
    os.environ.update(LOCAL_RANK=str(rank), RANK=str(rank), WORLD_SIZE=str(k))
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(rank)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // k))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=k)
    try:
        device = torch.device(f"cuda:{rank}" if cuda else "cpu")
        result = _shard_run(torch, import_module(module_name), cfg, rank, k, device)
        with open(os.path.join(out_dir, f"rank-{rank}.json"), "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def _shard_run(torch, workload, cfg: dict, rank: int, k: int, device) -> dict:
    import keras

    dataset = whole_batches(workload.load_data(cfg), cfg["batch_size"] * k)
    x, y = dataset.x[rank::k], dataset.y[rank::k]
    model = workload.build_model(keras, cfg).to(device)
    if cfg.get("mode", "train") == "train":
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank] if device.type == "cuda" else None)
        times = _train(torch, ddp, x, y, cfg["batch_size"], cfg["epochs"], device)
    else:
        times = _infer(torch, model, x, cfg["batch_size"], cfg["epochs"], device)
    return {"epoch_times": times, "images_per_epoch": len(y), "data": dataset.fields()}


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train(torch, ddp, x, y, batch: int, epochs: int, device) -> list[float]:
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for i in range(0, len(y), batch):
            xb = torch.from_numpy(x[i : i + batch]).to(device)
            yb = torch.from_numpy(y[i : i + batch]).long().to(device)
            optimizer.zero_grad()
            loss_fn(ddp(xb, training=True), yb).backward()
            optimizer.step()
        _sync(torch, device)
        times.append(time.perf_counter() - t0)
    return times


def _infer(torch, model, x, batch: int, epochs: int, device) -> list[float]:
    times = []
    with torch.no_grad():
        for _ in range(epochs):
            t0 = time.perf_counter()
            for i in range(0, len(x), batch):
                model(torch.from_numpy(x[i : i + batch]).to(device), training=False)
            _sync(torch, device)
            times.append(time.perf_counter() - t0)
    return times
