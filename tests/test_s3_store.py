"""Results on S3 (a real SeaweedFS server on loopback): where the endpoint and credentials come from,
that the secret never lands in rows, logs or reports, and that a `lost` marker is written once."""

from __future__ import annotations

import io
import shutil
import socket
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from rich.console import Console
from rows_for_tests import make_row

from grid.errors import ResultsError
from grid.private import user_folder
from grid.results.store import ResultStore
from grid.results.trialdir import TrialFolder
from grid.scheduler.driver import Running, Scheduler
from grid.scheduler.pool import LocalPool
from grid.scheduler.progress import PlainProgress
from grid.scheduler.resume import Pending
from grid.shared import Placement
from grid.spec.expand import expand
from grid.spec.model import GridSpec
from grid.spec.parse import parse_spec
from grid.sweep import RunOptions, run_sweep

pytestmark = pytest.mark.slow


def spec_of(name: str, **axes) -> GridSpec:
    return parse_spec(
        {
            "name": name,
            "workload": "sleep",
            "params": {"seconds": 0.1},
            "timeout_s": 30,
            "axes": axes or {"batch_size": [1, 2]},
        }
    )


def everything_written(s3, prefix: str) -> bytes:
    fs, root = pafs.FileSystem.from_uri(s3.uri(prefix))
    blobs = []
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as f:
                blobs.append(f.read())
    return b"\n".join(blobs)


def test_credentials_in_the_uri_are_refused():
    with pytest.raises(ResultsError, match="carries credentials.*AWS_ACCESS_KEY_ID"):
        ResultStore("s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/prefix?endpoint_override=127.0.0.1:9&scheme=http")


def test_endpoint_from_the_standard_environment(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{aws_env.endpoint}")
    store = ResultStore(f"s3://{aws_env.bucket}/from-env")
    spec = spec_of("env")
    trial = expand(spec).trials[0]
    store.write_row(make_row(spec, trial))
    assert store.read("env").column("trial_id").to_pylist() == [trial.trial_id]


def test_secret_never_in_rows_logs_or_report(aws_env):
    spec = spec_of("secret", batch_size=[1, 2], fail=["none", "error"])
    out = io.StringIO()
    run_sweep(
        spec,
        RunOptions(results=aws_env.uri("secret"), runner="local", num_gpus=2, live=False),
        console=Console(file=out, width=200),
    )
    rows = ResultStore(aws_env.uri("secret")).latest("secret").to_pylist()
    assert sorted(r["status"] for r in rows) == ["error", "error", "ok", "ok"]
    assert all(r["log_path"].startswith("s3://") for r in rows)
    written = everything_written(aws_env, "secret")
    assert b"asked to fail" in written, "the failing trials' logs were uploaded"
    assert aws_env.secret_key.encode() not in written
    assert aws_env.secret_key not in out.getvalue()


def test_what_a_trial_writes_into_its_own_folder_is_uploaded(aws_env, tmp_path):
    shutil.copy(Path(__file__).parent / "scripts" / "writes_files.py", tmp_path)
    spec = parse_spec(
        {
            "name": "own",
            "command": "python writes_files.py --value {value} --out {trial_dir}",
            "axes": {"value": ["a"]},
        },
        base_dir=tmp_path,
    )
    run_sweep(
        spec, RunOptions(results=aws_env.uri("own"), runner="local", live=False), console=Console(file=io.StringIO())
    )
    row = ResultStore(aws_env.uri("own")).latest("own").to_pylist()[0]
    assert row["status"] == "ok" and row["trial_dir"].startswith("s3://")
    fs, root = pafs.FileSystem.from_uri(aws_env.uri("own"))
    folder = f"{root}/sweep=own/_trials/{row['trial_id']}"
    assert row["trial_dir"].endswith(folder)
    for name in ("env.txt", "logs/arg.txt"):
        with fs.open_input_stream(f"{folder}/{name}") as f:
            assert f.read() == b"a"
    copies = Path(user_folder("trials", "own")).glob(f"{row['trial_id']}-*")
    assert not list(copies), "the local copy is removed"


def test_a_rerun_attempt_resumes_from_the_uploaded_folder_and_deletions_are_mirrored(aws_env, tmp_path):
    shutil.copy(Path(__file__).parent / "scripts" / "resumable.py", tmp_path)
    spec = parse_spec({"name": "resume", "command": "python resumable.py"}, base_dir=tmp_path)
    for retry in (False, True):
        opts = RunOptions(results=aws_env.uri("resume"), runner="local", live=False, retry_failed=retry)
        run_sweep(spec, opts, console=Console(file=io.StringIO()))
    rows = sorted(ResultStore(aws_env.uri("resume")).read("resume").to_pylist(), key=lambda r: r["attempt"])
    assert [r["status"] for r in rows] == ["error", "ok"], rows[-1]["error_tail"]
    assert rows[1]["trial_dir"] == rows[0]["trial_dir"] and rows[0]["trial_dir"].startswith("s3://")
    assert "held 1 file(s) of earlier attempts" in rows[1]["notes"][0]
    assert b"resumed from 3, finished at step 5" in everything_written(aws_env, "resume")
    copies = Path(user_folder("trials", "resume")).glob(f"{rows[0]['trial_id']}-*")
    assert not list(copies), "the local copies are removed"

    store = ResultStore(aws_env.uri("resume"))  # an attempt that deletes its checkpoint at the end
    folder = TrialFolder(store, "resume", rows[0]["trial_id"], 2)
    local, held = folder.open()
    assert held == 1 and Path(local, "ckpt", "step.txt").read_text() == "5"
    shutil.rmtree(Path(local, "ckpt"))
    assert folder.close(local) is None and not folder._remote_files()


def test_a_copy_left_on_this_machine_by_a_cut_off_attempt_goes_up_first(aws_env):
    store = ResultStore(aws_env.uri("cutoff"))
    copy, _ = TrialFolder(store, "cutoff", "t1", 0).open()  # attempt 0, stopped by Ctrl-C before its upload
    Path(copy, "step.txt").write_text("7")
    local, held = TrialFolder(store, "cutoff", "t1", 1).open()
    assert held == 1 and Path(local, "step.txt").read_text() == "7" and not Path(copy).exists()
    assert everything_written(aws_env, "cutoff") == b"7"
    assert TrialFolder(store, "cutoff", "t2", 1).open()[1] == 0


def test_a_store_that_cannot_give_or_take_the_folder_costs_the_trial_nothing(aws_env):
    with socket.socket() as closed:  # a port nothing listens on: the store is down
        closed.bind(("127.0.0.1", 0))
        down = aws_env.uri("x").replace(aws_env.endpoint, f"127.0.0.1:{closed.getsockname()[1]}")
    folder = TrialFolder(ResultStore(down, retry_s=2.0), "down", "t1", 1)  # gives up after 2 s
    local, held = folder.open()
    assert held == 0 and "earlier files could not be read from s3://" in folder.notes[0]
    Path(local, "ckpt.txt").write_text("1")
    assert folder.close(local) == local and Path(local, "ckpt.txt").read_text() == "1"  # kept on this machine
    assert "could not be written to s3://" in folder.notes[1]
    assert f"1 file(s) are kept on {socket.gethostname()} at {local}" in folder.notes[2]


def wait_for(check, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_running_trials_settled_files_go_up_and_outlive_its_node(aws_env):
    folder = TrialFolder(ResultStore(aws_env.uri("sync")), "sync", "t1", 0)
    local, _ = folder.open()
    with folder.syncing(local, every_s=0.5):
        Path(local, "ckpt").mkdir()
        Path(local, "ckpt", "epoch-1.keras").write_text("one")
        assert wait_for(lambda: "ckpt/epoch-1.keras" in folder._remote_files())
        growing = Path(local, "growing.log")
        for i in range(60):  # changes between any two looks: never sent half-written
            with growing.open("a") as f:
                f.write(f"{i}\n")
            time.sleep(0.025)
            if i % 10 == 9:
                assert "growing.log" not in folder._remote_files()
        assert wait_for(lambda: "growing.log" in folder._remote_files())  # settled: sent whole
    # the node dies here: no close(). The next attempt, on another machine, starts from what went up.
    shutil.rmtree(local)
    again = TrialFolder(ResultStore(aws_env.uri("sync")), "sync", "t1", 1)
    local, held = again.open()
    assert held == 2 and Path(local, "ckpt", "epoch-1.keras").read_text() == "one"
    assert Path(local, "growing.log").read_text().splitlines() == [str(i) for i in range(60)]


def test_lost_marker_never_replaces_a_written_outcome(aws_env):
    """The driver gave up on an attempt, but its worker wrote the outcome: that row stands and
    the trial is not run again. Without a row, the `lost` row is written and the trial re-queued."""
    store = ResultStore(aws_env.uri("lost"))
    spec = spec_of("lost")
    done, missing = expand(spec).trials
    pool = LocalPool(spec, store, gpus=["0"])
    scheduler = Scheduler(spec, store, pool, PlainProgress(lambda t: t.trial_id, stream=io.StringIO()))
    placement = Placement("node", "host", ("gpu0",), ("0",))
    store.write_row(make_row(spec, done, wall_s=0.1))

    kept = scheduler._lost(
        Running(Pending(done, 0, 2), placement, time.time(), float("inf")), RuntimeError("node gone")
    )
    assert (kept.status, kept.process.wall_s) == ("ok", 0.1)
    assert not scheduler.queue

    lost = scheduler._lost(
        Running(Pending(missing, 0, 2), placement, time.time(), float("inf")), RuntimeError("node gone")
    )
    assert lost.status == "lost"
    assert [(p.trial.trial_id, p.attempt) for p in scheduler.queue] == [(missing.trial_id, 1)]
    assert store.read_row("lost", done.trial_id, 0).status == "ok"
    assert store.read_row("lost", missing.trial_id, 0).status == "lost"


def test_driver_without_access_is_refused_before_anything_runs(aws_env, monkeypatch, ray_local):
    from grid.results.storage_check import check_results_location

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(ResultsError, match="this driver .* cannot write to s3://"):
        check_results_location(ResultStore(aws_env.uri("refused")))


def test_a_disk_too_full_for_the_s3_server_is_said_before_it_starts(tmp_path, monkeypatch):
    """SeaweedFS takes no writes below its free-space floor, and a write then hangs until the client
    gives up: the server is not started on such a disk, and the error says why."""
    import s3server

    monkeypatch.setattr(s3server, "MIN_FREE_MIB", shutil.disk_usage(tmp_path).free // 2**20 + 1)
    with pytest.raises(RuntimeError, match=r"SeaweedFS needs \d+ MiB free under .*, found \d+ MiB"):
        s3server.start(tmp_path / "s3")
    assert not list((tmp_path / "s3").glob("*.json")), "nothing was started or written for it"
