"""The Ray pool: one pinned `GpuWorker` actor per GPU on every node (or CPU slots when the
cluster has no GPUs), nodes that join during a sweep get workers, lost workers are reported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from grid.errors import ClusterError
from grid.results.spool import DeliveryOptions, default_state_dir
from grid.results.storage_check import NodeProbes
from grid.results.store import ResultStore
from grid.scheduler.localray import LocalRay, end_leftovers
from grid.scheduler.packing import MAX_PER_GPU
from grid.scheduler.pool import Finished, WorkerBug
from grid.scheduler.worker import RemoteGpuWorker
from grid.shared import AttemptTimes, Placement, Trial, WorkerInfo
from grid.spec.model import GridSpec

NAMESPACE = "gpu-grid"
log = logging.getLogger("grid")


def connect(
    address: str | None, num_gpus: int | None = None, num_cpus: int | None = None, state_dir: str | None = None
) -> LocalRay | None:
    """Start a local Ray on loopback (address None) or join a cluster. Returns the local Ray this
    driver started (its processes recorded in `state_dir`), or None."""
    if ray.is_initialized():
        return None
    with _sigterm_kept():
        return _connect(address, num_gpus, num_cpus, state_dir)


@contextlib.contextmanager
def _sigterm_kept() -> Iterator[None]:
    """ray.init takes SIGTERM over (a `sys.exit(15)` handler, and a C++ one that prints a stack dump
    first); the driver's own handler (the CLI's: stop as Ctrl-C does, exit 143) is put back after it."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _quiet_token_notice(record: logging.LogRecord) -> bool:
    """Ray's notice that a local Ray has token authentication (what gpu-grid wants) is not a warning to
    print on every run; its warning that authentication is off still is."""
    return not str(record.msg).startswith("Token authentication is enabled for this Ray cluster")


def _connect(address: str | None, num_gpus: int | None, num_cpus: int | None, state_dir: str | None) -> LocalRay | None:
    common: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address:
            if num_gpus is not None:
                raise ClusterError("--num-gpus fakes GPUs on a local Ray only; drop it with --address")
            ray.init(address=address, **common)
            return None
        if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
            raise ClusterError(
                "a local Ray must bind 127.0.0.1 only: set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 "
                "before ray is imported (grid run does this)"
            )
        state_dir = state_dir or default_state_dir()
        logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_quiet_token_notice)
        end_leftovers(state_dir)
        local = LocalRay(state_dir)
        ray.init(
            address="local",
            num_gpus=num_gpus,
            num_cpus=num_cpus,
            include_dashboard=False,
            object_store_memory=256 * 1024 * 1024,
            **common,
        )
        local.record()
        return local
    except ClusterError:
        raise
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
        where = address or "a local Ray"
        raise ClusterError(f"could not start or reach {where}: {type(exc).__name__}: {exc}") from None


def alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


class RayPool:
    """One pinned worker per GPU (or CPU slot) on every node. A worker that dies on a live node is
    replaced on its GPU, up to `max_restarts` times; then that GPU is reported unusable."""

    def __init__(
        self,
        spec: GridSpec,
        store: ResultStore,
        cpu_slots: int = 1,
        delivery: DeliveryOptions | None = None,
        start_timeout_s: float = 120.0,
        max_restarts: int = 3,
        gpu_memory_mib: float | None = None,
    ):
        self.gpu_memory_mib = gpu_memory_mib  # fake GPUs' memory, for packing
        self.spec, self.store, self.cpu_slots = spec, store, cpu_slots
        self.delivery = delivery or DeliveryOptions()
        self.start_timeout_s, self.max_restarts = start_timeout_s, max_restarts
        nodes = alive_nodes()
        self.on_gpu = any(n["Resources"].get("GPU", 0) >= 1 for n in nodes)
        self.unusable: list[str] = []  # workers given up on after max_restarts deaths
        self._actors: dict[str, Any] = {}
        self._infos: dict[str, WorkerInfo] = {}
        self._slots: dict[str, tuple[str, int, int]] = {}  # worker -> (node id, node index, slot)
        self._restarts: dict[str, int] = {}
        self._node_index: dict[str, int] = {}
        self._starting: dict[Any, tuple[Any, tuple[str, int, int]]] = {}  # info ref -> (actor, slot)
        self._refs: dict[Any, int] = {}
        self._tickets: dict[int, Placement] = {}
        self._dead: set[str] = set()
        self._next = 0
        self._probes = NodeProbes(store)  # nodes that join later prove they can write results first
        self._probed: set[str] = {n["NodeID"] for n in nodes}
        for node in nodes:
            self._start_workers(node)
        self._collect_started(timeout=start_timeout_s)
        if not self._infos:
            raise ClusterError("Ray offers no node to run on")

    def _start_workers(self, node: dict[str, Any]) -> None:
        node_id = node["NodeID"]
        if node_id in self._node_index:
            return
        self._node_index[node_id] = idx = len(self._node_index)
        count = int(node["Resources"].get("GPU", 0)) if self.on_gpu else self.cpu_slots
        for i in range(count):
            self._start_worker((node_id, idx, i))

    def _start_worker(self, slot: tuple[str, int, int]) -> None:
        node_id, idx, i = slot
        actor: Any = RemoteGpuWorker.options(  # an ActorHandle; its methods are called with .remote()
            num_gpus=1 if self.on_gpu else 0,
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            max_concurrency=MAX_PER_GPU + 2,  # packed trials, and pings while they run
            max_restarts=0,
        ).remote(self.spec, self.store.uri, f"n{idx}", i, self.delivery, self.gpu_memory_mib)
        self._starting[actor.info.remote()] = (actor, slot)

    def _collect_started(self, timeout: float) -> list[WorkerInfo]:
        if not self._starting:
            return []
        ready, _ = ray.wait(list(self._starting), num_returns=len(self._starting), timeout=timeout)
        if timeout and not ready:
            raise ClusterError(f"no worker actor started within {timeout:.0f} s; is the cluster busy?")
        added = []
        for ref in ready:
            actor, slot = self._starting.pop(ref)
            try:
                info = ray.get(ref)
            except RayError:
                continue
            self._actors[info.name], self._infos[info.name], self._slots[info.name] = actor, info, slot
            added.append(info)
        return added

    def workers(self) -> list[WorkerInfo]:
        return [self._infos[n] for n in self._infos if n not in self._dead]

    def submit(self, trial: Trial, attempt: int, placement: Placement, times: AttemptTimes) -> int:
        self._next += 1
        ref = self._actors[placement.workers[0]].run.remote(trial, attempt, placement, times)
        self._refs[ref] = self._next
        self._tickets[self._next] = placement
        return self._next

    def wait(self, timeout: float) -> list[Finished]:
        if not self._refs:
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
        out, suspects = [], set()
        for ref in ready:
            ticket = self._refs.pop(ref)
            placement = self._tickets.pop(ticket)
            try:
                done = ray.get(ref)
                out.append(Finished(ticket, done.row, None, done.kept, done.store_error))
            except RayActorError as exc:
                self._dead.add(placement.workers[0])
                suspects.add(placement.node_id)
                out.append(Finished(ticket, None, exc))
            except RayTaskError as exc:  # the worker's own code raised: an error, not a lost worker
                out.append(Finished(ticket, None, WorkerBug(str(exc))))
            except (RayError, GetTimeoutError) as exc:
                out.append(Finished(ticket, None, exc))
        for node_id in suspects:
            self._check_node(node_id)
        return out

    def abandon(self, ticket: int) -> bool:
        """End the worker running a hung attempt; its attempt then comes back as lost, and the
        worker is replaced like any dead one."""
        placement = self._tickets.get(ticket)
        actor = self._actors.get(placement.workers[0]) if placement else None
        if actor is None:
            return False
        ray.kill(actor, no_restart=True)
        return True

    def _check_node(self, node_id: str, timeout_s: float = 5.0) -> None:
        """After a worker was lost, ping the others on its node. Ray declares a dead node dead only
        after its health checks fail; until then its idle workers would take trials and lose them."""
        pings = {
            self._actors[name].ping.remote(): name
            for name, info in self._infos.items()
            if info.node_id == node_id and name not in self._dead
        }
        ready, _ = ray.wait(list(pings), num_returns=len(pings), timeout=timeout_s) if pings else ([], [])
        for ref, name in pings.items():
            try:
                if ref in ready:
                    ray.get(ref)
                    continue
            except RayError:
                pass
            self._dead.add(name)

    def refresh(self) -> tuple[list[WorkerInfo], list[str]]:
        nodes = alive_nodes()
        alive = {n["NodeID"] for n in nodes}
        for node in nodes:
            if node["NodeID"] not in self._probed:
                self._probed.add(node["NodeID"])
                self._probes.start(node)
        for node, problem in self._probes.done():
            if problem:
                log.warning("[grid] no workers on a node that joined: it cannot write the results: %s", problem)
            else:
                self._start_workers(node)
        lost = [n for n, info in self._infos.items() if n in self._dead or info.node_id not in alive]
        for name in lost:
            self._infos.pop(name, None)
            self._actors.pop(name, None)
            slot = self._slots.pop(name)
            if slot[0] in alive and name in self._dead:
                self._replace(name, slot)
        self._dead.clear()
        return self._collect_started(timeout=0), lost

    def _replace(self, name: str, slot: tuple[str, int, int]) -> None:
        """A worker died on a node that lives on: start another on its GPU, a bounded number of times."""
        self._restarts[name] = self._restarts.get(name, 0) + 1
        if self._restarts[name] > self.max_restarts:
            self.unusable.append(f"{name} (died {self._restarts[name]} times)")
            log.warning(
                "[grid] worker %s died %d times; its GPU is left unused for this sweep", name, self._restarts[name]
            )
            return
        log.warning(
            "[grid] worker %s died on a live node; replacing it (%d of %d)",
            name,
            self._restarts[name],
            self.max_restarts,
        )
        self._start_worker(slot)

    def flush(self, sweep: str) -> tuple[int, list[str]]:
        """Each node writes the rows it kept while the store was down."""
        first: dict[str, Any] = {}
        for name, info in self._infos.items():
            first.setdefault(info.node_id, self._actors[name])
        written, errors = 0, []
        for n, errs in ray.get([actor.flush.remote(sweep) for actor in first.values()]):
            written += n
            errors += errs
        return written, errors

    def close(self) -> None:
        self._probes.close()
        for actor in self._actors.values():
            try:
                ray.kill(actor)
            except RayError:
                pass
