"""Keras on torch over k devices: k processes under DistributedDataParallel, one per device.

Keras' `model.fit` has no torch data parallelism, so each rank runs the model as a
`torch.nn.Module` in a plain torch loop (Keras' own guide to multi-GPU training on torch does
the same). Rank r uses cuda:r with NCCL, or the CPU with gloo where no GPU is visible: a real
two-process run on a CPU box. Each rank reads its own data shard, caps its own device and writes
its timings to a file the trial process collects. Each rank is a Python process of the trial,
so the bootstrap caps the rank's own device (it sets LOCAL_RANK before touching CUDA) and reads
that rank's peak memory.

The ranks are forked from the trial process where that is safe (CUDA not started in it, which
this process never does: it asks NVML whether CUDA exists), so they start with torch and Keras
imported, as a warm trial does, instead of importing them again in a fresh interpreter each
(8-10 s a rank); each then starts a bootstrap of its own (gridtrial.boot.start_in_fork). Where
forking is not possible, or the trial says `warm_start: false`, they are spawned. The row's
`parallelism` says which.
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

STARTED = {"fork": "forked", "spawn": "spawned"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_method(multiprocessing) -> str:
    """`fork` where the ranks can be forked from this process, else `spawn`."""
    from gridtrial.cudadriver import cuda_driver_started

    if "fork" in multiprocessing.get_all_start_methods() and not cuda_driver_started():
        return "fork"
    return "spawn"


def run(cfg: dict, module_name: str, k: int) -> dict:
    """Start k ranks, wait for all, and merge what they measured. This process never starts CUDA:
    it asks NVML whether CUDA exists and how many devices it has, so that its ranks can be forked."""
    import multiprocessing

    import torch
    import torch.multiprocessing as mp

    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"  # is_available() without starting the CUDA driver
    cuda = torch.cuda.is_available()
    if cuda and torch.cuda.device_count() < k:
        raise gpus_error(k, f"torch sees {torch.cuda.device_count()} CUDA device(s)")
    how = "spawn" if cfg.get("warm_start", True) is False else start_method(multiprocessing)
    with tempfile.TemporaryDirectory(prefix="gpu-grid-ddp-") as out_dir:
        args = (cfg, module_name, k, free_port(), out_dir, how)
        mp.start_processes(rank_main, args=args, nprocs=k, join=True, start_method=how)
        ranks = []
        for r in range(k):
            with open(os.path.join(out_dir, f"rank-{r}.json")) as f:
                ranks.append(json.load(f))
    transport = "nccl" if cuda else "gloo, CPU"
    return {
        "epoch_times": ranks[0]["epoch_times"],
        "images_per_epoch": ranks[0]["images_per_epoch"] * k,
        "global_batch": cfg["batch_size"] * k,
        "framework": "torch",
        "parallelism": f"torch DistributedDataParallel, {k} processes ({transport}, {STARTED[how]})",
        **ranks[0]["data"],
    }


def rank_main(rank: int, cfg: dict, module_name: str, k: int, port: int, out_dir: str, how: str) -> None:
    """One rank: join the group, train or infer on its shard, write what it measured."""
    os.environ.update(LOCAL_RANK=str(rank), RANK=str(rank), WORLD_SIZE=str(k))
    bootstrap = _own_bootstrap() if how == "fork" else None
    try:
        _rank(rank, cfg, module_name, k, port, out_dir)
    except BaseException as exc:
        if bootstrap is not None:
            bootstrap.fail(exc)
        raise
    if how == "fork":
        # multiprocessing ends a forked rank with os._exit: no teardown, and none of the exit
        # handlers inherited from the trial process (they would remove its temporary folder, ...)
        if bootstrap is not None:
            bootstrap.finish()
        return
    _leave()


def _own_bootstrap():
    """A forked rank's own trial bootstrap (its record, its device's cap), which it finishes itself
    (a forked process ends without exit handlers); None outside gpu-grid."""
    try:
        from gridtrial import boot
    except ImportError:
        return None
    return boot.start_in_fork()


def _rank(rank: int, cfg: dict, module_name: str, k: int, port: int, out_dir: str) -> None:
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


def _leave() -> None:
    """End a spawned rank that finished as gpu-grid ends its trial processes: threads joined, exit handlers
    run (the bootstrap records the rank's peak memory there), files flushed, then os._exit without
    the interpreter's teardown (tasks/site/gridtrial/leave.py). The teardown held the GPU 1.1-1.5 s
    after torch, and gloo's threads can abort in it ("terminate called without an active
    exception", seen once in CI). A rank that raised returns instead, so torch.multiprocessing
    reports its traceback; outside gpu-grid's bootstrap the rank exits the normal way."""
    try:
        from gridtrial import leave
    except ImportError:
        return
    leave.leave(0)


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
