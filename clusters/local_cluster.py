"""Start, grow and stop an N-node Ray cluster on 127.0.0.1 with fake GPUs, for tests and demos.

Every node is a `ray start --block` process of ours, each with its own fixed ports; stopping
signals exactly the PIDs recorded in `<dir>/cluster.json` (raylets first, gcs_server last) and
never runs `ray stop`, which kills every Ray process on the machine. Token authentication is
on: the token is a file in the cluster's directory that every node and driver is pointed at
(`RAY_AUTH_MODE=token`, `RAY_AUTH_TOKEN_PATH`).

Run it inside a private network namespace so that Ray listens on loopback only:

    unshare -n sh -c 'ip link set lo up && python -m clusters.local_cluster start --dir /tmp/gc ...'

    python -m clusters.local_cluster start --dir D --nodes 3 --gpus 4   # head + 2 workers
    eval "$(python -m clusters.local_cluster env --dir D)"              # driver env: address + token
    python -m clusters.local_cluster add-node --dir D                   # one more worker node
    python -m clusters.local_cluster kill-node --dir D 2                # SIGKILL node 2's raylet
    python -m clusters.local_cluster remove-node --dir D 3              # stop node 3 the orderly way
    python -m clusters.local_cluster stop --dir D
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

HOST = "127.0.0.1"
STATE = "cluster.json"
# Each node gets PORT_STRIDE ports from port_base + index * PORT_STRIDE: two `ray start` on one
# IP with random ports can pick the same one and the second raylet dies on bind.
PORT_STRIDE = 100
READY = "Ray runtime started"


class ClusterScriptError(RuntimeError):
    """A node did not start, or the cluster directory holds no cluster."""


@dataclass
class Node:
    index: int
    pid: int  # the `ray start --block` process; its children are the node's daemons
    log: str
    gpus: int
    raylet_pid: int | None = None
    gcs_pid: int | None = None
    node_id: str | None = None  # Ray's id of the node, as in ray.nodes() and the rows' node_id


@dataclass
class Cluster:
    dir: str
    address: str
    token_path: str
    temp_dir: str
    port_base: int
    nodes: list[Node] = field(default_factory=list)

    @property
    def state_path(self) -> Path:
        return Path(self.dir) / STATE

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(self.state_path)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Cluster:
        path = Path(directory) / STATE
        if not path.exists():
            raise ClusterScriptError(
                f"no cluster in {directory}: {path} is missing; start one with "
                f"`python -m clusters.local_cluster start --dir {directory}`"
            )
        data = json.loads(path.read_text())
        data["nodes"] = [Node(**n) for n in data["nodes"]]
        return cls(**data)

    def driver_env(self) -> dict[str, str]:
        """What a driver (`grid run`, `ray.init`) needs to join this cluster."""
        return {"RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": self.token_path}


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _node_ports(base: int, head: bool) -> list[str]:
    ports = [
        f"--node-manager-port={base + 1}",
        f"--object-manager-port={base + 2}",
        f"--metrics-export-port={base + 3}",
        f"--dashboard-agent-listen-port={base + 4}",
        f"--dashboard-agent-grpc-port={base + 5}",
        f"--runtime-env-agent-port={base + 6}",
        f"--min-worker-port={base + 10}",
        f"--max-worker-port={base + PORT_STRIDE - 1}",
    ]
    if head:
        ports += [f"--ray-client-server-port={base + 7}", f"--dashboard-port={base + 8}"]
    return ports


def _node_env(cluster: Cluster, extra: dict[str, str] | None) -> dict[str, str]:
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": cluster.token_path,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
    }  # "0" (set for single-node Ray) refuses worker nodes
    env.pop("RAY_ADDRESS", None)
    return {**env, **(extra or {})}


def _launch(cluster: Cluster, gpus: int, cpus: int, extra_env: dict[str, str] | None, timeout_s: float) -> Node:
    index = len(cluster.nodes)
    head = index == 0
    base = cluster.port_base + index * PORT_STRIDE
    argv = [
        _ray_bin(),
        "start",
        "--block",
        f"--node-ip-address={HOST}",
        f"--num-gpus={gpus}",
        f"--num-cpus={cpus}",
        f"--object-store-memory={80 * 1024 * 1024}",
        "--disable-usage-stats",
        *_node_ports(base, head),
    ]
    if head:
        argv += [
            "--head",
            f"--port={cluster.address.rsplit(':', 1)[1]}",
            "--include-dashboard=false",
            f"--temp-dir={cluster.temp_dir}",
        ]
    else:
        argv += [f"--address={cluster.address}"]
    log = os.path.join(cluster.dir, f"node{index}.log")
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_node_env(cluster, extra_env),
            start_new_session=True,
        )
    node = Node(index=index, pid=proc.pid, log=log, gpus=gpus)
    try:
        _wait_ready(proc, node, timeout_s)
    except BaseException:
        _end_tree(proc.pid)  # not recorded yet: nobody else would stop it
        raise
    return node


def _end_tree(pid: int, timeout_s: float = 10.0) -> None:
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def _wait_ready(proc: subprocess.Popen, node: Node, timeout_s: float) -> None:
    """Until `ray start` says the node runs and its raylet (and gcs_server on the head) is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterScriptError(
                f"node {node.index} exited with {proc.returncode} while starting; see {node.log}:\n{_tail(node.log)}"
            )
        if READY in Path(node.log).read_text(errors="replace"):
            _find_daemons(node)
            if node.raylet_pid and (node.index or node.gcs_pid):
                return
        time.sleep(0.2)
    raise ClusterScriptError(
        f"node {node.index} did not start within {timeout_s:.0f} s; see {node.log}:\n{_tail(node.log)}"
    )


def _find_daemons(node: Node) -> None:
    try:
        children = psutil.Process(node.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for child in children:
        try:
            name = child.name()
        except psutil.Error:
            continue
        if name == "raylet":
            node.raylet_pid = child.pid
            flags = [a for a in _cmdline(child) if a.startswith("--node_id=")]
            node.node_id = flags[0].split("=", 1)[1] if flags else None
        elif name == "gcs_server":
            node.gcs_pid = child.pid


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _tail(path: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(
    directory: str | os.PathLike,
    nodes: int = 3,
    gpus: int = 4,
    cpus: int = 1,
    port: int = 6379,
    port_base: int = 20000,
    extra_env: dict[str, str] | None = None,
    timeout_s: float = 60.0,
) -> Cluster:
    """A head and `nodes - 1` worker nodes, each offering `gpus` fake GPUs, started one after another."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    if (Path(directory) / STATE).exists():
        raise ClusterScriptError(f"{directory} already holds a cluster; stop it first or use another --dir")
    token_path = os.path.join(directory, "auth_token")
    with open(os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(secrets.token_hex(32))
    cluster = Cluster(
        dir=directory,
        address=f"{HOST}:{port}",
        token_path=token_path,
        temp_dir=os.path.join(directory, "ray"),
        port_base=port_base,
    )
    try:
        for _ in range(nodes):
            cluster.nodes.append(_launch(cluster, gpus, cpus, extra_env, timeout_s))
            cluster.save()
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def add_node(
    directory: str | os.PathLike,
    gpus: int = 4,
    cpus: int = 1,
    extra_env: dict[str, str] | None = None,
    timeout_s: float = 60.0,
) -> Node:
    """One more worker node joining the running cluster."""
    cluster = Cluster.load(directory)
    node = _launch(cluster, gpus, cpus, extra_env, timeout_s)
    cluster.nodes.append(node)
    cluster.save()
    return node


def _node(cluster: Cluster, index: int) -> Node:
    nodes = {n.index: n for n in cluster.nodes}
    if index not in nodes or not nodes[index].raylet_pid:
        raise ClusterScriptError(f"no node {index} with a raylet; nodes are {sorted(nodes)}")
    return nodes[index]


def kill_node(directory: str | os.PathLike, index: int) -> int:
    """SIGKILL one node's raylet, as a machine failure would; its `ray start` then ends the rest.
    Ray notices through missed health checks, some seconds later."""
    pid = _node(Cluster.load(directory), index).raylet_pid
    _signal(pid, signal.SIGKILL)
    return pid


def remove_node(directory: str | os.PathLike, index: int, timeout_s: float = 30.0) -> None:
    """Stop one worker node the orderly way: Ray marks it dead at once."""
    if index == 0:
        raise ClusterScriptError("node 0 is the head; stop the whole cluster instead")
    node = _node(Cluster.load(directory), index)
    _signal(node.pid, signal.SIGTERM)
    if _wait_gone([node.pid, node.raylet_pid], timeout_s):
        _signal(node.raylet_pid, signal.SIGKILL)
        _signal(node.pid, signal.SIGKILL)


def _signal(pid: int | None, sig: int) -> None:
    if pid:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def stop_cluster(cluster: Cluster, timeout_s: float = 20.0) -> None:
    """Raylets first, then each node's `ray start` (which ends its own helpers), gcs_server last."""
    trees: dict[int, list[psutil.Process]] = {}
    for node in cluster.nodes:
        try:
            trees[node.index] = psutil.Process(node.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            trees[node.index] = []
    workers_first = sorted(cluster.nodes, key=lambda n: -n.index)
    for node in workers_first:
        _signal(node.raylet_pid if _alive(node.raylet_pid) else None, signal.SIGTERM)
    _wait_gone([n.raylet_pid for n in cluster.nodes if n.raylet_pid], timeout_s)
    for node in workers_first:
        _signal(node.pid if _alive(node.pid) else None, signal.SIGTERM)
    _wait_gone([n.pid for n in cluster.nodes], timeout_s)
    gcs = [n.gcs_pid for n in cluster.nodes if n.gcs_pid]
    for pid in gcs:
        _signal(pid if _alive(pid) else None, signal.SIGTERM)
    _wait_gone(gcs, timeout_s)
    leftovers = [p.pid for procs in trees.values() for p in procs if _alive(p.pid)]
    leftovers += [n.pid for n in cluster.nodes if _alive(n.pid)]
    for pid in leftovers:
        _signal(pid, signal.SIGKILL)
    if cluster.state_path.exists():
        cluster.state_path.unlink()


def stop(directory: str | os.PathLike) -> None:
    stop_cluster(Cluster.load(directory))


def _env_lines(cluster: Cluster) -> str:
    return "\n".join(f"export {k}={v}" for k, v in cluster.driver_env().items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clusters.local_cluster", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "add-node", "kill-node", "remove-node", "stop", "env"):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True, help="the cluster's directory (token, logs, cluster.json)")
        if name in ("start", "add-node"):
            p.add_argument("--gpus", type=int, default=4, help="fake GPUs per node (default 4)")
            p.add_argument("--cpus", type=int, default=1, help="CPUs Ray offers per node (default 1)")
        if name == "start":
            p.add_argument("--nodes", type=int, default=3, help="nodes including the head (default 3)")
            p.add_argument("--port", type=int, default=6379, help="the head's GCS port (default 6379)")
            p.add_argument(
                "--port-base",
                type=int,
                default=20000,
                help=f"node i uses ports port-base + {PORT_STRIDE}*i ... (default 20000)",
            )
        if name in ("kill-node", "remove-node"):
            p.add_argument("index", type=int, help="node index (0 is the head)")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            cluster = start(args.dir, args.nodes, args.gpus, args.cpus, args.port, args.port_base)
            print(_env_lines(cluster))
        elif args.command == "add-node":
            node = add_node(args.dir, args.gpus, args.cpus)
            print(f"node {node.index} started: node id {node.node_id}, raylet pid {node.raylet_pid}")
        elif args.command == "kill-node":
            print(f"killed raylet pid {kill_node(args.dir, args.index)} of node {args.index}")
        elif args.command == "remove-node":
            remove_node(args.dir, args.index)
        elif args.command == "stop":
            stop(args.dir)
        else:
            print(_env_lines(Cluster.load(args.dir)))
    except ClusterScriptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
