"""A torch DDP script (gloo) whose rank given by --fail-rank exits with status 3 after the group started."""

import argparse
import os
import sys

import torch.distributed as dist

parser = argparse.ArgumentParser()
parser.add_argument("--fail-rank", type=int, default=-1)
args = parser.parse_args()
dist.init_process_group("gloo")
rank = dist.get_rank()
print(f"rank {rank} pid {os.getpid()} parent {os.getppid()}", flush=True)
dist.barrier()
if rank == args.fail_rank:
    sys.exit(3)
dist.destroy_process_group()
