"""The driver: a queue of trials, handed to idle pinned workers, gang-placed when a trial needs
several GPUs, until every trial has a terminal row.

- An exclusive (timing) trial takes an idle worker; trials that are not exclusive (memory
  probes) share a worker's GPU while their expected footprints fit its memory (packing.py). The
  next queued trial that fits goes to the least loaded worker, so workers pull work as they free up.
- A trial with `gpus: k` runs on k idle workers of one node. When it cannot be placed, the node
  with the most idle workers is reserved for it: smaller trials stop taking that node's workers
  as they free up, so the gang trial is not starved, while other nodes keep flowing.
- A lost worker (its node or actor died) is infrastructure: its attempt is recorded as `lost`
  and re-queued as a new attempt, up to `retries` times; the pool replaces the worker, and new
  workers take trials at once. An attempt past `timeout_s` plus the worker's own grace (killing
  the trial, retrying the store) has a hung worker: it is ended and the attempt is lost.
- Every call to the results store retries its transient faults for --store-retry seconds
  (backend/retry.py). A row the store would not take stays on the worker's disk; that, or a
  lease or attempt number the store would not keep, makes the driver start nothing new, let
  the running attempts end, and stop with the list of rows kept and where.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from grid.errors import ClusterError, StorageError, StoreDown, UsageError
from grid.results.compact import Background
from grid.results.metric_types import MetricTypes
from grid.results.row import Row
from grid.results.spool import DeliveryOptions, Spool, deliver
from grid.results.store import ResultStore, encode_row
from grid.scheduler.packing import Expected, Tenant, compile_key, fits, footprint, measured
from grid.scheduler.pool import Finished, Pool, WorkerBug
from grid.scheduler.progress import Progress
from grid.scheduler.resume import Pending
from grid.shared import AttemptTimes, Placement, Trial, TrialStatus, WorkerInfo
from grid.spec.expand import canonical_config
from grid.spec.model import GridSpec
from grid.trial import rows

log = logging.getLogger("grid")
KILL_GRACE_S = 30.0  # beyond timeout_s and the store retries, before a worker counts as hung


@dataclass
class Running:
    pending: Pending
    placement: Placement
    started: float
    deadline: float  # time.monotonic() after which the worker is taken for hung


@dataclass
class SweepOutcome:
    rows: list[Row]
    total: int
    skipped: int
    lost: int = 0
    kept: list[str] = field(default_factory=list)  # rows the store refused, kept on a worker's disk
    unusable: list[str] = field(default_factory=list)  # workers given up after dying again and again


class Scheduler:
    def __init__(
        self,
        spec: GridSpec,
        store: ResultStore,
        pool: Pool,
        progress: Progress,
        refresh_every_s: float = 2.0,
        stall_timeout_s: float = 60.0,
        delivery: DeliveryOptions | None = None,
        heartbeat: Callable[[], None] | None = None,
        kill_grace_s: float = KILL_GRACE_S,
        compact_every: int = 0,
    ):
        self.spec, self.store, self.pool, self.progress = spec, store, pool, progress
        self.heartbeat = heartbeat or (lambda: None)  # keeps the sweep's lease
        self.delivery = delivery or DeliveryOptions()
        self.spool = Spool(store, self.delivery.state_dir)
        self.metric_types = MetricTypes(store, spec.name)
        self.compactor = Background(store, spec.name, compact_every)  # 0: rows stay one file each
        self.grace_s = self.delivery.retry_s + kill_grace_s
        self.store_down: str | None = None  # why, once the store refused a row
        self.outcome = SweepOutcome(rows=[], total=0, skipped=0)
        self.workers: dict[str, WorkerInfo] = {}
        self.tenants: dict[str, dict[int, Tenant]] = {}  # worker -> the attempts running on its GPU
        self.expected = Expected({}, {})  # per config: NVML peak per GPU and busy share of earlier rows
        # per config: the workers its repeats ran on; the next repeat prefers another (decorrelated repeats)
        self.ran_on: dict[str, set[str]] = collections.defaultdict(set)
        # per node, the programs (packing.compile_key) whose first trial there ended, and those whose
        # first trial runs now: the others wait for it, then load what it compiled
        self.compiled: dict[str, set[str]] = collections.defaultdict(set)
        self.compiling: dict[str, dict[int, str]] = collections.defaultdict(dict)
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
            self.tenants.setdefault(info.name, {})

    def _drop_workers(self, names: list[str]) -> None:
        for name in names:
            self.workers.pop(name, None)
            self.tenants.pop(name, None)
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
    def _footprint(self, trial: Trial, name: str) -> float | None:
        return footprint(trial, self.workers[name].memory_mib, self.expected.peak_mib)

    def _busy(self, trial: Trial) -> float:
        return self.expected.busy_pct.get(canonical_config(trial.config), 0.0)

    def _waits_for_its_compile(self, trial: Trial, node: str) -> bool:
        """A trial that would share a GPU waits while the first trial of its program on the node
        compiles (with the compilation cache on): then it loads what that one compiled."""
        if trial.exclusive or trial.config.get("compile_cache", True) is False or trial.config.get("backend") == "none":
            return False
        key = compile_key(trial)
        return key not in self.compiled[node] and key in self.compiling[node].values()

    def _free(self, trial: Trial, exclude_node: str | None = None) -> dict[str, list[str]]:
        """Per node, the workers that can take the trial now, least loaded first, then those that have
        not run a repeat of its config yet."""
        by_node: dict[str, list[str]] = collections.defaultdict(list)
        used = self.ran_on.get(canonical_config(trial.config), set())
        order = sorted(self.workers.items(), key=lambda kv: (len(self.tenants[kv[0]]), kv[0] in used, kv[0]))
        for name, info in order:
            if info.node_id == exclude_node or self._waits_for_its_compile(trial, info.node_id):
                continue
            tenants = self.tenants[name]
            # the footprint only matters beside others (sizing it hashes the config: not on every pass)
            need = self._footprint(trial, name) if tenants and not trial.exclusive else None
            busy = self._busy(trial) if tenants and not trial.exclusive else 0.0
            if fits(trial, need, info.memory_mib, tenants.values(), self.spec.trials_per_gpu, busy):
                by_node[info.node_id].append(name)
        return by_node

    def _dispatch(self) -> None:
        if self.store_down:
            return  # nothing new while rows cannot be stored
        for pending in list(self.queue):
            k = pending.trial.gpus
            reserved = self.reservation
            if reserved and reserved[0] is pending:
                # Re-evaluated every pass: any node that can take the gang now takes it, and the
                # reservation moves when its node lost workers.
                fitting = [names for names in self._free(pending.trial).values() if len(names) >= k]
                if fitting:
                    self.reservation = None
                    self._start(pending, min(fitting, key=len)[:k])
                else:
                    self._reserve(pending)
                continue
            by_node = self._free(pending.trial, exclude_node=reserved[1] if reserved else None)
            fitting = [names for names in by_node.values() if len(names) >= k]
            if fitting:
                self._start(pending, min(fitting, key=len)[:k] if k > 1 else max(fitting, key=len)[:k])
            elif k > 1 and reserved is None:
                self._reserve(pending)
            if self.store_down:
                return

    def _reserve(self, pending: Pending) -> None:
        """Hold the node with the most idle workers among those big enough for the gang."""
        sizes = collections.Counter(w.node_id for w in self.workers.values())
        nodes = [n for n, size in sizes.items() if size >= pending.trial.gpus]
        all_free = self._free(pending.trial)
        self.reservation = (pending, max(nodes, key=lambda n: len(all_free.get(n, [])))) if nodes else None

    def _claim(self, pending: Pending) -> bool:
        """Take the attempt's number in the store before it starts (the next free one, should an
        earlier run have taken it); False when the store cannot be reached: nothing starts then."""
        for _ in range(100):
            try:
                if self.store.claim_attempt(self.spec.name, pending.trial.trial_id, pending.attempt):
                    return True
            except Exception as exc:  # the store is down: stop starting trials
                self.store_down = self.store_down or f"cannot claim an attempt: {type(exc).__name__}: {exc}"
                return False
            pending.attempt += 1
        raise ClusterError(f"could not claim an attempt number for trial {pending.trial.trial_id}")

    def _start(self, pending: Pending, names: list[str]) -> None:
        if not self._claim(pending):
            return
        self.ran_on[canonical_config(pending.trial.config)].update(names)
        infos = [self.workers[n] for n in names]
        placement = Placement(
            infos[0].node_id,
            infos[0].host,
            tuple(names),
            tuple(g for info in infos for g in info.gpu_ids),
            min((i.memory_mib for i in infos if i.memory_mib), default=None),
        )
        self.queue.remove(pending)
        ticket = self.pool.submit(pending.trial, pending.attempt, placement, AttemptTimes(pending.queued_at))
        for name in names:
            need = self._footprint(pending.trial, name)
            self.tenants[name][ticket] = Tenant(ticket, pending.trial.exclusive, need, self._busy(pending.trial))
        key = compile_key(pending.trial)
        if key not in self.compiled[placement.node_id] and key not in self.compiling[placement.node_id].values():
            self.compiling[placement.node_id][ticket] = key  # the first of its program on the node
        deadline = time.monotonic() + self.spec.timeout_s + self.grace_s
        self.running[ticket] = Running(pending, placement, time.time(), deadline)
        self.progress.started(ticket, pending.trial, pending.attempt, placement)

    # -- outcomes
    def _write(self, row: Row, create: bool) -> bool:
        """The driver's own rows (lost, or error for a worker bug), through the same spool as the
        workers'. Returns False when the row is already there (create) or could only be kept."""
        data = encode_row(row, self.spec.param_kinds(), self.metric_types.known())
        done = deliver(self.spool, row, data, self.delivery.retry_s, create)
        if not done.stored:
            self._store_refused(done.kept, done.store_error)
            return False
        return not done.existed

    def _store_refused(self, kept: str | None, error: str | None) -> None:
        if kept:
            self.outcome.kept.append(kept)
        self.store_down = self.store_down or error or "the results store refused a row"

    def _failed(self, run: Running, status: TrialStatus, error: BaseException, note: str | None = None) -> Row:
        times = AttemptTimes(run.pending.queued_at, run.started)
        trial, attempt = run.pending.trial, run.pending.attempt
        return rows.failed(
            self.spec, trial, attempt, run.placement, times, status, error, started=run.started, note=note
        )

    def _lost(self, run: Running, error: BaseException) -> Row:
        """Record an attempt whose worker was lost, and re-queue the trial if retries remain."""
        trial, attempt = run.pending.trial, run.pending.attempt
        row = self._failed(run, TrialStatus.LOST, error)
        if not self._write(row, create=True) and not self.store_down:
            written = self.store.read_row(self.spec.name, trial.trial_id, attempt)
            if written is not None and written.status is not TrialStatus.LOST:
                return written  # the worker wrote its outcome after all: nothing to re-run
        if run.pending.retries_left > 0:
            self.queue.appendleft(Pending(trial, attempt + 1, run.pending.retries_left - 1))
        return row

    def _worker_bug(self, run: Running, error: BaseException) -> Row:
        """The worker's own code failed: an error row with the evidence, terminal like any error."""
        row = self._failed(run, TrialStatus.ERROR, error, note=rows.WORKER_FAILED)
        self._write(row, create=True)
        return row

    def run(self, pending: list[Pending], skipped: int) -> SweepOutcome:
        self.check_fits(pending)
        if any(not p.trial.exclusive for p in pending) and any(w.memory_mib for w in self.workers.values()):
            self.expected = measured(self.store.read(self.spec.name))
        self.queue.extend(pending)
        outcome = self.outcome = SweepOutcome(rows=[], total=len(pending) + skipped, skipped=skipped)
        self.progress.begin(outcome.total, skipped, list(self.workers.values()))
        next_refresh = time.monotonic() + self.refresh_every_s
        stalled_since = None
        try:
            while (self.queue and not self.store_down) or self.running:
                self._dispatch()
                if self.running or not self.queue:
                    stalled_since = None
                elif stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > self.stall_timeout_s:
                    raise ClusterError(self._stall_message())
                for done in self.pool.wait(timeout=0.2):
                    if done.ticket in self.running:  # an abandoned attempt's late answer is not waited for
                        self._finish(done, outcome)
                self._end_hung()
                if time.monotonic() >= next_refresh:
                    self._beat()
                    self._refresh()
                    next_refresh = time.monotonic() + self.refresh_every_s
                self.progress.tick()
        finally:
            self.progress.end()
            outcome.unusable = list(self.pool.unusable)
            self.compactor.wait()
        if self.store_down:
            raise StorageError(self._store_message(outcome))
        return outcome

    def _beat(self) -> None:
        """Keep the sweep's lease; a store down for longer than its retries stops the sweep as a row
        it refused does (a lease lost to another driver still ends it at once: BusyError)."""
        try:
            self.heartbeat()
        except StoreDown as exc:
            self.store_down = self.store_down or f"cannot keep the sweep's lease: {exc}"

    def _refresh(self) -> None:
        added, lost = self.pool.refresh()
        self._drop_workers(lost)  # first: a replaced worker comes back under its old name
        joined = [w.name for w in added if w.name not in lost]
        if joined:
            log.warning("[grid] %d GPU worker(s) joined: %s", len(joined), ", ".join(joined))
        self._add_workers(added)

    def _end_hung(self) -> None:
        """An attempt far past its deadline has a hung worker: end the worker (the attempt comes back
        lost and the worker is replaced) or, where that cannot be done, record it lost now."""
        now = time.monotonic()
        for ticket, run in list(self.running.items()):
            if now > run.deadline and not self.pool.abandon(ticket):
                self.running.pop(ticket)
                self._release(ticket, run)
                row = self._lost(
                    run,
                    TimeoutError(
                        f"no answer from worker {','.join(run.placement.workers)} {self.grace_s:.0f} s after timeout_s"
                    ),
                )
                self.outcome.lost += 1
                self.progress.finished(ticket, row)
            elif now > run.deadline:
                run.deadline = float("inf")  # abandoned: its worker's death brings it back as lost

    def _store_message(self, outcome: SweepOutcome) -> str:
        kept = "\n".join(f"  {path}" for path in outcome.kept) or "  (none)"
        return (
            f"the results store {self.store.uri} refused rows ({self.store_down}); the sweep stopped starting "
            f"trials. These finished rows are kept on the machine that ran them:\n{kept}\n"
            f"When the store is back, run the same `grid run` again: it writes them first, then runs what is left."
        )

    def _stall_message(self) -> str:
        need = max(p.trial.gpus for p in self.queue)
        return (
            f"{len(self.queue)} queued trial(s) cannot run: nothing is running and no node can place them "
            f"for {self.stall_timeout_s:.0f} s ({len(self.workers)} worker(s) left, the largest node has "
            f"{self.largest_node()}, a trial needs {need}); finished trials are in the results, "
            f"run again when the cluster is back"
        )

    def _release(self, ticket: int, run: Running) -> None:
        for name in run.placement.workers:
            self.tenants.get(name, {}).pop(ticket, None)
        key = self.compiling[run.placement.node_id].pop(ticket, None)
        if key is not None:
            self.compiled[run.placement.node_id].add(key)

    def _learn(self, row: Row) -> None:
        """What a finished row measured sizes and spaces the next trials of its config."""
        gpus = row.where.gpu_ids or []
        self.expected.add(
            row.identity.config_json, row.status, row.gpu_memory.gpu_mem_peak_mib, len(gpus), row.gpu_use.gpu_util_pct
        )

    def _finish(self, done: Finished, outcome: SweepOutcome) -> None:
        run = self.running.pop(done.ticket)
        self._release(done.ticket, run)
        if done.row is not None:
            self._learn(done.row)
            if done.kept:
                self._store_refused(done.kept, done.store_error)
            else:
                self.compactor.stored()
            outcome.rows.append(done.row)
            self.progress.finished(done.ticket, done.row)
            return
        if isinstance(done.error, WorkerBug):
            row = self._worker_bug(run, done.error)
            outcome.rows.append(row)
            self.progress.finished(done.ticket, row)
            return
        self._refresh()
        row = self._lost(run, done.error or RuntimeError("the worker returned no row"))
        if row.status is TrialStatus.LOST:
            outcome.lost += 1
        else:
            outcome.rows.append(row)
        self.progress.finished(done.ticket, row)
