"""`GpuWorker`: the Ray actor that owns one GPU (or one CPU slot) for the whole sweep.

It is pinned to its node, learns its GPU id from Ray, and for each trial it is handed launches
and watches one isolated child process (grid/trial/attempt.py), writes the row and returns it.
"""

from __future__ import annotations

import os

import ray

from grid.results.store import ResultStore
from grid.shared import AttemptTimes, Placement, Trial, WorkerInfo, hostname
from grid.spec.model import GridSpec
from grid.trial.attempt import run_attempt
from grid.trial.nvml import gpu_samplers


class GpuWorker:
    def __init__(self, spec: GridSpec, store_uri: str, node_label: str, slot: int):
        self.spec = spec
        self.store = ResultStore(store_uri)
        self.gpu_ids = tuple(str(g) for g in ray.get_gpu_ids())
        self.name = f"{node_label}/gpu{self.gpu_ids[0]}" if self.gpu_ids else f"{node_label}/cpu{slot}"
        self.node_id = ray.get_runtime_context().get_node_id()

    def info(self) -> WorkerInfo:
        return WorkerInfo(self.name, self.node_id, hostname(), self.gpu_ids)

    def ping(self) -> int:
        return os.getpid()

    def run(self, trial: Trial, attempt: int, placement: Placement, times: AttemptTimes) -> dict:
        samplers, gpu_info = gpu_samplers(placement.gpu_ids)
        return run_attempt(self.spec, trial, attempt, placement, self.store, times, samplers, gpu_info)


RemoteGpuWorker = ray.remote(GpuWorker)
