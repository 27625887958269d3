"""Every node that runs trials proves it can write the results before it gets any.

A row is written by the worker on the node that ran the trial, so a node without credentials,
without a route to the endpoint, or with its own private copy of a local directory would
otherwise be found out only after its trials ran. Each node writes a probe file through a tiny
Ray task pinned to it; the driver must then see that file through its own view of the store,
which also proves that a directory declared shared (`--shared-results`) really is. At sweep
start a failing node stops the sweep (`check_results_location`); a node that joins later is
probed the same way and gets workers only if it passes (`NodeProbes`, used by the Ray pool).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from grid.errors import ResultsError, UsageError
from grid.results.store import ResultStore
from grid.shared import hostname

log = logging.getLogger("grid")


def trial_nodes(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes the pool puts workers on: those with GPUs, or all of them on a CPU-only cluster."""
    alive = [n for n in nodes if n.get("Alive")]
    return [n for n in alive if n["Resources"].get("GPU", 0) >= 1] or alive


def write_probe(store: ResultStore, path: str) -> None:
    store.backend.write(path, f"gpu-grid storage check from {hostname()}\n".encode())


@ray.remote(num_cpus=0, max_retries=0)
def _probe_task(uri: str, path: str) -> tuple[str, str | None]:
    """On one node: write the probe. Returns (host, None) or (host, the error)."""
    try:
        write_probe(ResultStore(uri), path)
    except Exception as exc:
        return hostname(), f"{type(exc).__name__}: {exc}"
    return hostname(), None


def describe(node: dict[str, Any]) -> str:
    return f"node {node['NodeID'][:12]} ({node.get('NodeManagerAddress', '?')})"


class NodeProbes:
    """Probe tasks in flight, one per node, and the driver's verdict on each once it is done."""

    def __init__(self, store: ResultStore):
        self.store = store
        self.run_dir = store.layout.probes(uuid.uuid4().hex)
        self._refs: dict[Any, dict[str, Any]] = {}

    def start(self, node: dict[str, Any]) -> None:
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ref = _probe_task.options(scheduling_strategy=strategy).remote(self.store.uri, self._path(node))
        self._refs[ref] = node

    def _path(self, node: dict[str, Any]) -> str:
        return f"{self.run_dir}/{node['NodeID']}"

    def done(self, timeout_s: float = 0) -> list[tuple[dict[str, Any], str | None]]:
        """Nodes whose probe has ended, each with None (it can write) or what went wrong."""
        if not self._refs:
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout_s)
        out = []
        for ref in ready:
            node = self._refs.pop(ref)
            out.append((node, self._verdict(ref, node)))
        return out

    def timed_out(self, timeout_s: float) -> list[tuple[dict[str, Any], str]]:
        out = [(node, f"{describe(node)}: no answer within {timeout_s:.0f} s") for node in self._refs.values()]
        self._refs.clear()
        return out

    def _verdict(self, ref: Any, node: dict[str, Any]) -> str | None:
        try:
            host, error = ray.get(ref)
        except RayError as exc:
            return f"{describe(node)}: the check task failed: {type(exc).__name__}: {exc}"
        if error:
            return f"{describe(node)} on {host}: {error}"
        path = self._path(node)
        if not self.store.backend.exists(path):
            return (
                f"{describe(node)} on {host} wrote its probe, but this driver ({hostname()}) does not see it: "
                f"they are not the same storage (a directory local to each machine?)"
            )
        self.store.backend.delete(path)
        return None

    def close(self) -> None:
        try:
            self.store.backend.delete_folder(self.run_dir)
        except OSError:
            pass


def refuse_unshared_directory(store: ResultStore, nodes: int, shared_results: bool) -> None:
    on_this_disk = store.backend.local_path(store.layout.root) is not None
    if on_this_disk and nodes > 1 and not shared_results:
        raise UsageError(
            f"--results {store.uri} is a local directory, but the cluster has {nodes} nodes that run trials: "
            f"each would write its rows to its own disk. Use object storage (--results s3://bucket/prefix) "
            f"or, if {store.uri} is a shared filesystem mounted at the same path on every node, pass --shared-results"
        )


def check_results_location(store: ResultStore, shared_results: bool = False, timeout_s: float = 120.0) -> int:
    """Prove this driver and every trial node can write to `store`. Returns the number of nodes checked."""
    nodes = trial_nodes(ray.nodes())
    refuse_unshared_directory(store, len(nodes), shared_results)
    probes = NodeProbes(store)
    try:
        write_probe(store, f"{probes.run_dir}/driver")
    except OSError as exc:
        raise ResultsError(f"this driver ({hostname()}) cannot write to {store.uri}: {exc}") from None
    try:
        for node in nodes:
            probes.start(node)
        verdicts = probes.done(timeout_s) + probes.timed_out(timeout_s)
    finally:
        probes.close()
    alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    problems = [problem for node, problem in verdicts if problem and node["NodeID"] in alive]  # not the dead
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ResultsError(
            f"{len(problems)} of {len(nodes)} node(s) cannot write results to {store.uri}:\n{lines}\n"
            f"Give every node access (credentials in its environment or instance role, "
            f"a route to the endpoint, the same shared directory), then run again"
        )
    return len(nodes)
