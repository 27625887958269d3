"""The driver: a queue of trials, handed to idle pinned workers, gang-placed when a trial needs
several GPUs, until every trial has a terminal row.

- A worker is idle when its running attempts are below its capacity (1 for exclusive timing
  trials, `trials_per_gpu` when the spec is not exclusive); the next queued trial that fits goes
  to it, so workers effectively pull work as they free up.
- A trial with `gpus: k` runs on k idle workers of one node. When it cannot be placed, the node
  with the most idle workers is reserved for it: smaller trials stop taking that node's workers
  as they free up, so the gang trial is not starved, while other nodes keep flowing.
- A lost worker (its node or actor died) is infrastructure: its attempt is recorded as `lost`
  and re-queued as a new attempt, up to `retries` times.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Any

from grid.errors import ClusterError, UsageError
from grid.results.rows import lost_row
from grid.results.store import ResultStore
from grid.scheduler.pool import Finished, Pool
from grid.scheduler.progress import Progress
from grid.scheduler.resume import Pending
from grid.shared import AttemptTimes, Placement, TrialStatus, WorkerInfo
from grid.spec.model import GridSpec


@dataclass
class Running:
    pending: Pending
    placement: Placement
    started: float


@dataclass
class SweepOutcome:
    rows: list[dict[str, Any]]
    total: int
    skipped: int
    lost: int = 0


class Scheduler:
    def __init__(
        self,
        spec: GridSpec,
        store: ResultStore,
        pool: Pool,
        progress: Progress,
        refresh_every_s: float = 2.0,
        stall_timeout_s: float = 60.0,
    ):
        self.spec, self.store, self.pool, self.progress = spec, store, pool, progress
        self.capacity = 1 if spec.exclusive else spec.trials_per_gpu
        self.workers: dict[str, WorkerInfo] = {}
        self.load: dict[str, int] = {}
        self.queue: collections.deque[Pending] = collections.deque()
        self.running: dict[int, Running] = {}
        self.reservation: tuple[Pending, str] | None = None
        self.refresh_every_s = refresh_every_s
        self.stall_timeout_s = stall_timeout_s  # how long queued trials may wait for a node to (re)join
        self._add_workers(pool.workers())

    # -- workers
    def _add_workers(self, infos: list[WorkerInfo]) -> None:
        for info in infos:
            self.workers[info.name] = info
            self.load.setdefault(info.name, 0)

    def _drop_workers(self, names: list[str]) -> None:
        for name in names:
            self.workers.pop(name, None)
            self.load.pop(name, None)
        if self.reservation and not self._node_workers(self.reservation[1]):
            self.reservation = None

    def _node_workers(self, node: str) -> list[str]:
        return [n for n, w in self.workers.items() if w.node_id == node]

    def largest_node(self) -> int:
        sizes = collections.Counter(w.node_id for w in self.workers.values())
        return max(sizes.values(), default=0)

    def check_fits(self, pending: list[Pending]) -> None:
        need = max((p.trial.gpus for p in pending), default=0)
        have = self.largest_node()
        if need > have:
            unit = "GPU workers" if self.pool.on_gpu else "CPU slots"
            raise UsageError(
                f"a trial needs gpus={need} on one node, but the largest node has {have} {unit}; "
                f"drop those trials (exclude) or run on a bigger node"
            )

    # -- placement
    def _free(self, exclude_node: str | None = None) -> dict[str, list[str]]:
        by_node: dict[str, list[str]] = collections.defaultdict(list)
        for name, info in sorted(self.workers.items(), key=lambda kv: (self.load[kv[0]], kv[0])):
            if self.load[name] < self.capacity and info.node_id != exclude_node:
                by_node[info.node_id].append(name)
        return by_node

    def _dispatch(self) -> None:
        for pending in list(self.queue):
            k = pending.trial.gpus
            reserved = self.reservation
            if reserved and reserved[0] is pending:
                free = self._free().get(reserved[1], [])
                if len(free) >= k:
                    self.reservation = None
                    self._start(pending, free[:k])
                continue
            by_node = self._free(exclude_node=reserved[1] if reserved else None)
            fits = [names for names in by_node.values() if len(names) >= k]
            if fits:
                self._start(pending, min(fits, key=len)[:k] if k > 1 else max(fits, key=len)[:k])
            elif k > 1 and reserved is None:
                sizes = collections.Counter(w.node_id for w in self.workers.values())
                nodes = [n for n, size in sizes.items() if size >= k]
                if nodes:
                    all_free = self._free()
                    self.reservation = (pending, max(nodes, key=lambda n: len(all_free.get(n, []))))

    def _start(self, pending: Pending, names: list[str]) -> None:
        infos = [self.workers[n] for n in names]
        placement = Placement(
            infos[0].node_id, infos[0].host, tuple(names), tuple(g for info in infos for g in info.gpu_ids)
        )
        for name in names:
            self.load[name] += 1
        self.queue.remove(pending)
        ticket = self.pool.submit(pending.trial, pending.attempt, placement, AttemptTimes(pending.queued_at))
        self.running[ticket] = Running(pending, placement, time.time())
        self.progress.started(ticket, pending.trial, pending.attempt, placement)

    # -- outcomes
    def _lost(self, run: Running, error: BaseException) -> dict[str, Any]:
        """Record an attempt whose worker was lost, and re-queue the trial if retries remain."""
        row = lost_row(
            self.spec, run.pending.trial, run.pending.attempt, run.placement, error, run.started, run.pending.queued_at
        )
        if not self.store.create_row(row, self.spec.param_kinds()):
            written = self.store.read_row(self.spec.name, run.pending.trial.trial_id, run.pending.attempt)
            if written is not None and written["status"] != TrialStatus.LOST.value:
                return written  # the worker wrote its outcome after all: nothing to re-run
        if run.pending.retries_left > 0:
            self.queue.appendleft(Pending(run.pending.trial, run.pending.attempt + 1, run.pending.retries_left - 1))
        return row

    def run(self, pending: list[Pending], skipped: int) -> SweepOutcome:
        self.check_fits(pending)
        self.queue.extend(pending)
        outcome = SweepOutcome(rows=[], total=len(pending) + skipped, skipped=skipped)
        self.progress.begin(outcome.total, skipped, list(self.workers.values()))
        next_refresh = time.monotonic() + self.refresh_every_s
        stalled_since = None
        try:
            while self.queue or self.running:
                self._dispatch()
                if self.running or not self.queue:
                    stalled_since = None
                elif stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > self.stall_timeout_s:
                    raise ClusterError(self._stall_message())
                for done in self.pool.wait(timeout=0.2):
                    self._finish(done, outcome)
                if time.monotonic() >= next_refresh:
                    added, lost = self.pool.refresh()
                    self._add_workers(added)
                    self._drop_workers(lost)
                    next_refresh = time.monotonic() + self.refresh_every_s
                self.progress.tick()
        finally:
            self.progress.end()
        return outcome

    def _stall_message(self) -> str:
        need = max(p.trial.gpus for p in self.queue)
        return (
            f"{len(self.queue)} queued trial(s) cannot run: nothing is running and no node can place them "
            f"for {self.stall_timeout_s:.0f} s ({len(self.workers)} worker(s) left, the largest node has "
            f"{self.largest_node()}, a trial needs {need}); finished trials are in the results, "
            f"run again when the cluster is back"
        )

    def _finish(self, done: Finished, outcome: SweepOutcome) -> None:
        run = self.running.pop(done.ticket)
        for name in run.placement.workers:
            if name in self.load:
                self.load[name] -= 1
        if done.row is not None:
            outcome.rows.append(done.row)
            self.progress.finished(done.ticket, done.row)
            return
        _, lost = self.pool.refresh()
        self._drop_workers(lost or [])
        row = self._lost(run, done.error or RuntimeError("the worker returned no row"))
        if row["status"] == TrialStatus.LOST.value:
            outcome.lost += 1
        else:
            outcome.rows.append(row)
        self.progress.finished(done.ticket, row)
