"""A torch DDP script (gloo) whose ranks report the memory cap the trial bootstrap gave them."""

import os

import torch
import torch.distributed as dist

from gridtrial import memory_cap, report

dist.init_process_group("gloo")
rank = dist.get_rank()
report(
    **{
        f"cap_rank{rank}": memory_cap().get("torch", "none"),
        f"fraction_rank{rank}": float(os.environ["GRID_MEMORY_FRACTION"]),
    }
)
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2))
model(torch.ones(8, 4)).sum().backward()
dist.destroy_process_group()
print(f"rank {rank} of {os.environ['WORLD_SIZE']} done")
