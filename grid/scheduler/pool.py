"""Where trials run: a pool of workers, each owning one GPU (or one CPU slot).

Two pools share one interface: `LocalPool` (threads of the driver launching the same isolated
child processes; no Ray, for debugging and cheap tests) and `RayPool` (raypool.py: one pinned
`GpuWorker` actor per GPU on every node). The driver (driver.py) sees only this.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Protocol

from grid.results.metric_types import MetricTypes
from grid.results.row import Row
from grid.results.spool import DeliveryOptions, Spool
from grid.results.store import ResultStore
from grid.shared import AttemptTimes, Placement, Trial, WorkerInfo, hostname
from grid.spec.model import GridSpec
from grid.trial import warm
from grid.trial.attempt import run_attempt, warm_up
from grid.trial.nvml import card_memory_mib


@dataclass
class Finished:
    """What a pool hands back for a submitted attempt: its row (and whether the store took it), or
    the infrastructure failure (a dead worker or node) that kept the worker from giving one."""

    ticket: int
    row: Row | None
    error: BaseException | None = None
    kept: str | None = None  # where the worker keeps the row when the store did not take it
    store_error: str | None = None


class WorkerBug(Exception):
    """gpu-grid's own code failed on a worker (not the trial, not the infrastructure)."""


class Pool(Protocol):
    on_gpu: bool
    unusable: list[str]  # workers given up on

    def workers(self) -> list[WorkerInfo]: ...

    def submit(self, trial: Trial, attempt: int, placement: Placement, times: AttemptTimes) -> int: ...

    def wait(self, timeout: float) -> list[Finished]: ...

    def refresh(self) -> tuple[list[WorkerInfo], list[str]]:
        """Workers added (nodes that joined, replacements) and names of workers lost since the last call."""
        ...

    def abandon(self, ticket: int) -> bool:
        """End the worker of a hung attempt (it then comes back as lost); False if it cannot be ended."""
        ...

    def flush(self, sweep: str) -> tuple[int, list[str]]:
        """Write the rows the pool's machines kept while the store was down: (written, errors)."""
        ...

    def close(self) -> None: ...


class LocalPool:
    """Slots in this process's threads, each launching the trial's own child process.

    `gpus` names fake or real GPU ids to hand out (one slot each), their memory `gpu_memory_mib`
    where given, else NVML's; with none, `cpu_slots` CPU slots. No Ray: the same isolation
    and results, for debugging and cheap tests.
    """

    def __init__(
        self,
        spec: GridSpec,
        store: ResultStore,
        gpus: list[str] | None = None,
        cpu_slots: int = 1,
        delivery: DeliveryOptions | None = None,
        gpu_memory_mib: float | None = None,
    ):
        self.spec, self.store = spec, store
        self.delivery = delivery or DeliveryOptions()
        self.metric_types = MetricTypes(store, spec.name)
        self.unusable: list[str] = []
        self.on_gpu = bool(gpus)
        host = hostname()
        ids = [(g,) for g in gpus] if gpus else [() for _ in range(cpu_slots)]
        self._workers = [
            WorkerInfo(
                f"{'gpu' if g else 'cpu'}{g[0] if g else i}",
                "local",
                host,
                g,
                card_memory_mib(g, gpu_memory_mib),
            )
            for i, g in enumerate(ids)
        ]
        self._done: queue.Queue[Finished] = queue.Queue()
        warm_up()
        self._threads: list[threading.Thread] = []
        self._next = 0

    def workers(self) -> list[WorkerInfo]:
        return list(self._workers)

    def submit(self, trial: Trial, attempt: int, placement: Placement, times: AttemptTimes) -> int:
        self._next += 1
        ticket = self._next

        def work() -> None:
            try:
                done = run_attempt(
                    self.spec, trial, attempt, placement, self.store, times, self.delivery, self.metric_types
                )
                self._done.put(Finished(ticket, done.row, None, done.kept, done.store_error))
            except BaseException as exc:  # run_attempt turns failures into rows; this is a bug of gpu-grid's
                self._done.put(Finished(ticket, None, exc))

        thread = threading.Thread(target=work, name=f"slot-{ticket}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return ticket

    def wait(self, timeout: float) -> list[Finished]:
        out = []
        try:
            out.append(self._done.get(timeout=timeout))
            while True:
                out.append(self._done.get_nowait())
        except queue.Empty:
            pass
        return out

    def refresh(self) -> tuple[list[WorkerInfo], list[str]]:
        return [], []

    def abandon(self, ticket: int) -> bool:
        return False  # a thread cannot be ended; its trial process has its own timeout

    def flush(self, sweep: str) -> tuple[int, list[str]]:
        return Spool(self.store, self.delivery.state_dir).flush(sweep)

    def close(self) -> None:
        for thread in self._threads:
            thread.join(timeout=0)
        warm.stop_all()  # the warm parents this process started for its trials
