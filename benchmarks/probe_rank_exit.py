"""How long a DDP rank takes to exit once its work is done, with and without the teardown.

    python benchmarks/probe_rank_exit.py OUT.json [--repeats 3]

A GPU experiment (2 GPUs, NCCL; gloo on a CPU box) for tasks/torch_ddp.py: the trial process
spawns 2 ranks with torch.multiprocessing, as the built-in torch workloads do with `gpus: 2`;
each rank imports keras, runs a few DDP steps of a small model, destroys its process group, notes
the time and ends either the normal way (`normal`: the interpreter's teardown) or through
gridtrial.leave (`leave`: threads joined, exit handlers run, files flushed, os._exit). The figure
is the time from the last rank's note to `spawn` returning in the parent: the GPU-held time a
trial spends on its ranks' exit. Variants alternate, so drift hits both alike.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tasks", "site"))


def rank_main(rank: int, k: int, port: int, out_dir: str, variant: str) -> None:
    os.environ.update(LOCAL_RANK=str(rank), RANK=str(rank), WORLD_SIZE=str(k), KERAS_BACKEND="torch")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import keras  # noqa: F401  (as the workload's ranks do: Keras on torch)
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(rank)
    device = torch.device(f"cuda:{rank}" if cuda else "cpu")
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=k)
    model = torch.nn.parallel.DistributedDataParallel(
        torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10)).to(device),
        device_ids=[rank] if cuda else None,
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(10):
        opt.zero_grad()
        model(torch.randn(64, 512, device=device)).sum().backward()
        opt.step()
    if cuda:
        torch.cuda.synchronize()
    dist.destroy_process_group()
    with open(os.path.join(out_dir, f"rank-{rank}.json"), "w") as f:
        json.dump({"done": time.time()}, f)
    if variant == "leave":
        from gridtrial import leave

        leave.leave(0)


def one(variant: str) -> float:
    import torch.multiprocessing as mp

    from tasks.torch_ddp import free_port

    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(rank_main, args=(2, free_port(), out_dir, variant), nprocs=2, join=True)
        joined = time.time()
        done = 0.0
        for r in range(2):
            with open(os.path.join(out_dir, f"rank-{r}.json")) as f:
                done = max(done, json.load(f)["done"])
    return joined - done


def main() -> None:
    out = sys.argv[1]
    repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3
    times: dict[str, list[float]] = {"normal": [], "leave": []}
    for _ in range(repeats):
        for variant in times:
            times[variant].append(one(variant))
            print(variant, f"{times[variant][-1]:.3f} s", flush=True)
    import torch

    summary = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (gloo)",
        "torch": torch.__version__,
        "exit_s": times,
        "median_s": {v: statistics.median(t) for v, t in times.items()},
    }
    print(json.dumps(summary["median_s"]))
    with open(out, "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
