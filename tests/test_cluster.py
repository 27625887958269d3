"""A real multi-node Ray cluster on 127.0.0.1: head + 2 worker nodes with 4 fake GPUs each, results
in a real S3 server, everything inside a private network namespace so no Ray port is reachable
from outside. The test process stays outside and runs each command in the namespace (nsenter).

One cluster serves the module, in order: a sweep spread over every node; a node killed mid-sweep
(its trials re-run elsewhere, `lost` attempts recorded); nodes joining mid-sweep (one that can
write gets workers, one without credentials does not); a driver killed mid-sweep and resumed.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import s3server
import yaml

from grid.results.store import ResultStore

REPO = Path(__file__).resolve().parents[1]
GRID = str(Path(sys.executable).with_name("grid"))


def _why_no_netns() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a private network namespace (unshare -n)"
    if not (shutil.which("unshare") and shutil.which("nsenter") and shutil.which("ip")):
        return "needs unshare, nsenter and ip (util-linux, iproute2)"
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return "unshare -n is not permitted here"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_why_no_netns() is not None, reason=str(_why_no_netns()))]


class PrivateNetwork:
    """A network namespace with only loopback up, held open by a sleeping process of ours."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "-n", "--", "sh", "-c", "ip link set lo up && echo up && exec sleep 3600"],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        if self.holder.stdout.readline().strip() != "up":
            raise RuntimeError("could not bring loopback up in the private network namespace")

    def wrap(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--", *argv]

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


@pytest.fixture(scope="module")
def net():
    network = PrivateNetwork()
    yield network
    network.close()


@pytest.fixture(scope="module")
def s3(net, tmp_path_factory):
    try:
        s3server.weed_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    server = s3server.start(tmp_path_factory.mktemp("s3"), wrap=net.wrap)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(net, s3, tmp_path_factory):
    """Head + 2 workers, 4 fake GPUs each; the nodes have the S3 credentials in their environment.
    The folder is short whatever pytest's base folder is: Ray's socket paths under it must stay
    within the 107 bytes of an AF_UNIX address."""
    directory = Path(tempfile.mkdtemp(prefix="gc-", dir="/tmp"))
    start = subprocess.run(
        net.wrap(
            [
                sys.executable,
                "-m",
                "clusters.local_cluster",
                "start",
                "--dir",
                str(directory),
                "--nodes",
                "3",
                "--gpus",
                "4",
            ]
        ),
        cwd=REPO,
        env={**os.environ, **s3.env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert start.returncode == 0, start.stderr
    yield directory
    subprocess.run(
        [sys.executable, "-m", "clusters.local_cluster", "stop", "--dir", str(directory)], cwd=REPO, timeout=120
    )
    shutil.rmtree(directory, ignore_errors=True)


def state(cluster_dir: Path) -> dict:
    return json.loads((cluster_dir / "cluster.json").read_text())


def driver_env(cluster_dir: Path, s3) -> dict[str, str]:
    info = state(cluster_dir)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}  # conftest's, for local Ray
    return {
        **env,
        **s3.env,
        "RAY_ADDRESS": info["address"],
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": info["token_path"],
    }


def spec_file(
    tmp_path: Path, name: str, trials: int, seconds: float, gpus: int = 1, until_file: Path | None = None
) -> str:
    path = tmp_path / f"{name}.yaml"
    params = {"seconds": seconds, "gpus": gpus, **({"until_file": str(until_file)} if until_file else {})}
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "workload": "sleep",
                "params": params,
                "axes": {"batch_size": list(range(1, trials + 1))},
                "timeout_s": 120,
            }
        )
    )
    return str(path)


class Driver:
    """`grid run --plain` in the namespace, its output lines collected as they come."""

    def __init__(self, net: PrivateNetwork, argv: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            net.wrap(argv), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        DRIVERS.append(self)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, predicate, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(predicate(line) for line in self.lines):
            try:
                line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line is None or time.monotonic() > deadline:
                raise AssertionError(f"not seen within {timeout_s:.0f} s; output:\n{self.output}")
            self.lines.append(line)

    def finished(self, count: int):
        return lambda line: line.startswith(f"[grid] {count}/")

    def finish(self, timeout_s: float = 180) -> int:
        code = self.proc.wait(timeout=timeout_s)
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def words(self) -> str:
        """The output with rich's line wrapping undone."""
        return " ".join(self.output.split())


DRIVERS: list[Driver] = []


@pytest.fixture(autouse=True)
def no_driver_outlives_its_test():
    """A test that failed half-way leaves no driver holding the cluster's GPUs for the next."""
    yield
    while DRIVERS:
        proc = DRIVERS.pop().proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def grid_run(net, cluster_dir, s3, spec: str, results: str, *extra: str) -> Driver:
    argv = [GRID, "run", spec, "--address", state(cluster_dir)["address"], "--results", results, "--plain", *extra]
    return Driver(net, argv, driver_env(cluster_dir, s3))


def download(net, s3, prefix: str, into: Path) -> ResultStore:
    """Copy everything under the S3 prefix here (the S3 server is reachable only in the namespace)."""
    code = "import sys, pyarrow.fs as fs; fs.copy_files(sys.argv[1], sys.argv[2])"
    subprocess.run(
        net.wrap([sys.executable, "-c", code, s3.uri(prefix), str(into)]),
        env={**os.environ, **s3.env},
        check=True,
        timeout=120,
    )
    return ResultStore(str(into))


def by_trial(rows: list[dict]) -> dict[str, list[dict]]:
    out = collections.defaultdict(list)
    for row in rows:
        out[row["trial_id"]].append(row)
    return out


def test_sweep_spreads_over_every_node_and_keeps_the_secret(net, s3, cluster, tmp_path):
    driver = grid_run(net, cluster, s3, spec_file(tmp_path, "spread", 60, 0.5), s3.uri("spread"))
    assert driver.finish() == 0, driver.output
    store = download(net, s3, "spread", tmp_path / "copy")
    rows = store.read("spread").to_pylist()
    seen = sorted((r["trial_id"], r["attempt"], r["status"], r["node_id"][:8]) for r in rows)
    assert len(rows) == 60 and {r["status"] for r in rows} == {"ok"} and {r["attempt"] for r in rows} == {0}, (
        f"{seen}\n{driver.output}"
    )
    assert len({r["trial_id"] for r in rows}) == 60
    nodes = collections.Counter(r["node_id"] for r in rows)
    assert set(nodes) == {n["node_id"] for n in state(cluster)["nodes"]}, "every node ran trials"
    assert min(nodes.values()) >= 10, nodes
    assert {w for r in rows for w in r["workers"]} == {f"n{i}/gpu{g}" for i in range(3) for g in range(4)}
    assert all(r["log_path"].startswith("s3://") for r in rows)
    written = b"".join(p.read_bytes() for p in (tmp_path / "copy").rglob("*") if p.is_file())
    assert s3.secret_key.encode() not in written and s3.secret_key not in driver.output


def test_local_directory_needs_shared_results_on_a_cluster(net, s3, cluster, tmp_path):
    spec = spec_file(tmp_path, "shared", 3, 0.1)
    refused = grid_run(net, cluster, s3, spec, str(tmp_path / "results"))
    assert refused.finish() == 2
    assert "is a local directory, but the cluster has 3 nodes" in refused.words and "--shared-results" in refused.words
    assert not (tmp_path / "results" / "sweep=shared").exists()
    allowed = grid_run(net, cluster, s3, spec, str(tmp_path / "results"), "--shared-results")
    assert allowed.finish() == 0, allowed.output
    assert ResultStore(str(tmp_path / "results")).read("shared").num_rows == 3
    assert not list((tmp_path / "results").glob("_probes/*")), "the storage probes are cleaned up"


def cluster_cli(net, cluster_dir: Path, *args: str, env: dict[str, str]) -> None:
    subprocess.run(
        net.wrap([sys.executable, "-m", "clusters.local_cluster", *args, "--dir", str(cluster_dir)]),
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


def test_joining_node_gets_workers_and_gangs_stay_on_one_node(net, s3, cluster, tmp_path):
    """Trials of 4 GPUs: one per node at a time (light on 2 cores, so the new node starts quickly).
    The trials wait for a go file until the new node's workers joined, however slowly it starts."""
    go = tmp_path / "go"
    driver = grid_run(net, cluster, s3, spec_file(tmp_path, "join", 24, 0.5, gpus=4, until_file=go), s3.uri("join"))
    driver.wait_for(lambda line: line.startswith("[grid] 24 trials"))
    cluster_cli(net, cluster, "add-node", "--gpus", "4", env={**os.environ, **s3.env})
    joined = state(cluster)["nodes"][-1]

    def joined_workers(line: str) -> list[str]:
        return [w.strip() for w in line.split(" joined: ")[1].split(",")] if " joined: " in line else []

    for gpu in range(4):  # the new node's workers join one by one or together
        driver.wait_for(lambda line, gpu=gpu: f"n3/gpu{gpu}" in joined_workers(line))
    go.touch()
    assert driver.finish() == 0, driver.output
    rows = download(net, s3, "join", tmp_path / "copy").latest("join").to_pylist()
    assert len(rows) == 24 and {r["status"] for r in rows} == {"ok"}
    nodes = collections.Counter(r["node_id"] for r in rows)
    assert nodes[joined["node_id"]] > 0, f"the node that joined got no trials: {nodes}\n{driver.output}"
    for row in rows:
        assert sorted(row["gpu_ids"]) == ["0", "1", "2", "3"] and len({w.split("/")[0] for w in row["workers"]}) == 1


def test_node_that_cannot_write_stops_the_sweep_before_it_starts(net, s3, cluster, tmp_path):
    without_aws = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    cluster_cli(net, cluster, "add-node", "--gpus", "4", env={**without_aws, "AWS_EC2_METADATA_DISABLED": "true"})
    blind = state(cluster)["nodes"][-1]
    try:
        driver = grid_run(net, cluster, s3, spec_file(tmp_path, "blind", 3, 0.1), s3.uri("blind"))
        assert driver.finish() == 2, driver.output
    finally:
        cluster_cli(net, cluster, "remove-node", str(blind["index"]), env=os.environ)
    assert "1 of " in driver.words and "node(s) cannot write results" in driver.words
    assert f"node {blind['node_id'][:12]}" in driver.words and "ACCESS_DENIED" in driver.words
    assert "[grid] 3 trials" not in driver.output, "no trial ran"


def test_killed_node_trials_rerun_elsewhere(net, s3, cluster, tmp_path):
    victim = state(cluster)["nodes"][2]
    driver = grid_run(net, cluster, s3, spec_file(tmp_path, "nodeloss", 60, 1.0), s3.uri("nodeloss"))
    driver.wait_for(driver.finished(15))
    os.kill(victim["raylet_pid"], signal.SIGKILL)
    killed_at = time.time()
    assert driver.finish() == 0, driver.output
    rows = download(net, s3, "nodeloss", tmp_path / "copy").read("nodeloss").to_pylist()
    trials = by_trial(rows)
    assert len(trials) == 60
    assert len({(r["trial_id"], r["attempt"]) for r in rows}) == len(rows), "no duplicate in the de-duplicated view"
    lost = [r for r in rows if r["status"] == "lost"]
    assert lost, "the killed node had trials in flight"
    assert all(
        r["node_id"] == victim["node_id"]
        and r["error_type"] in ("ray.exceptions.ActorDiedError", "ray.exceptions.ActorUnavailableError")
        for r in lost
    ), lost
    for trial_rows in trials.values():
        latest = max(trial_rows, key=lambda r: r["attempt"])
        assert latest["status"] == "ok"
        assert sorted(r["attempt"] for r in trial_rows) == list(range(len(trial_rows))), "attempts are 0, 1, ..."
        # An earlier attempt is lost, or it is one whose actor on the killed node outlived its raylet
        # and still wrote its row after the driver had recorded it lost (its re-run is the latest).
        assert all(
            r["status"] == "lost" or (r["status"] == "ok" and r["node_id"] == victim["node_id"])
            for r in trial_rows
            if r is not latest
        )
    rerun = [max(t, key=lambda r: r["attempt"]) for t in trials.values() if len(t) > 1]
    assert rerun and all(r["node_id"] != victim["node_id"] for r in rerun)
    # Actors on the killed node keep running until Ray declares the node dead (its health checks
    # take seconds): a trial handed to one in that window may run there and end ok. Once the
    # driver has learned of the loss (its first `lost` row), nothing more may start there.
    learned = min(r["ended_at"].timestamp() for r in lost)
    assert learned >= killed_at
    late = [
        r
        for r in rows
        if r["node_id"] == victim["node_id"] and r["status"] == "ok" and r["started_at"].timestamp() > learned
    ]
    assert not late, "nothing started on the dead node after the driver learned it died"


def test_killed_driver_resumes_without_rerunning_finished_trials(net, s3, cluster, tmp_path):
    spec = spec_file(tmp_path, "resume", 40, 1.0)
    first = grid_run(net, cluster, s3, spec, s3.uri("resume"), "--lease-ttl", "4")
    first.wait_for(first.finished(12))
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=30)
    # Ray ends the dead driver's actors (their children die with them); the lease the dead driver
    # held on the sweep expires after its 4 s, and the next driver takes it over.
    time.sleep(5)
    before = {r["trial_id"]: r for r in download(net, s3, "resume", tmp_path / "before").read("resume").to_pylist()}
    assert 12 <= len(before) < 40
    second = grid_run(net, cluster, s3, spec, s3.uri("resume"), "--lease-ttl", "4")
    assert second.finish() == 0, second.output
    # a trial the killed driver's workers were finishing may land after the download: never fewer
    done = re.search(r"(\d+) already done", second.output)
    assert done and int(done.group(1)) >= len(before), second.output
    rows = download(net, s3, "resume", tmp_path / "after").read("resume").to_pylist()
    trials = by_trial(rows)
    assert len(trials) == 40 and all(len(t) == 1 and t[0]["status"] == "ok" for t in trials.values())
    for trial_id, row in before.items():
        assert trials[trial_id][0]["started_at"] == row["started_at"], f"{trial_id} finished before and ran again"
