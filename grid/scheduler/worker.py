"""`GpuWorker`: the Ray actor that owns one GPU (or one CPU slot) for the whole sweep.

It is pinned to its node, learns its GPU id from Ray, and for each trial it is handed launches
and watches one isolated child process (grid/trial/attempt.py), writes the row and returns it.
"""

from __future__ import annotations

import os

import ray

from grid.results.metric_types import MetricTypes
from grid.results.spool import Delivered, DeliveryOptions, Spool
from grid.results.store import ResultStore
from grid.shared import AttemptTimes, Placement, Trial, WorkerInfo, hostname
from grid.spec.model import GridSpec
from grid.trial.attempt import run_attempt, warm_up
from grid.trial.nvml import card_memory_mib


class GpuWorker:
    def __init__(
        self,
        spec: GridSpec,
        store_uri: str,
        node_label: str,
        slot: int,
        delivery: DeliveryOptions,
        gpu_memory_mib: float | None = None,
    ):
        self.spec = spec
        self.store = ResultStore(store_uri, delivery.retry_s)
        self.delivery = delivery
        self.metric_types = MetricTypes(self.store, spec.name)
        self.gpu_ids = tuple(str(g) for g in ray.get_gpu_ids())
        self.name = f"{node_label}/gpu{self.gpu_ids[0]}" if self.gpu_ids else f"{node_label}/cpu{slot}"
        self.node_id = ray.get_runtime_context().get_node_id()
        # the card's memory for packing: --gpu-memory-mib where given (a fake GPU's), else NVML's figure
        self.memory_mib = card_memory_mib(self.gpu_ids, gpu_memory_mib)
        warm_up()

    def info(self) -> WorkerInfo:
        return WorkerInfo(self.name, self.node_id, hostname(), self.gpu_ids, self.memory_mib)

    def ping(self) -> int:
        return os.getpid()

    def run(self, trial: Trial, attempt: int, placement: Placement, times: AttemptTimes) -> Delivered:
        return run_attempt(self.spec, trial, attempt, placement, self.store, times, self.delivery, self.metric_types)

    def flush(self, sweep: str) -> tuple[int, list[str]]:
        """Write the rows this node kept while the store was down (before the sweep plans its trials)."""
        return Spool(self.store, self.delivery.state_dir).flush(sweep)


RemoteGpuWorker = ray.remote(GpuWorker)
