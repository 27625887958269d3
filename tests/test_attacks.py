"""The five attacks of issue 28, each run for real (a real S3 server, a second local user where the
test runs as root, real files, links and pipes), each failing its test if it succeeds:

1. a link in a trial's folder uploads what it points to (the final mirror and the periodic sync);
2. a secret given in the spec's `env:` is stored in the rows;
3. another user makes gpu-grid's fixed-name temporary folders first, and gpu-grid writes into them;
4. rows whose `sweep` says `../../../T-rep` make `grid report` write plots outside `--out`;
5. one endless output line (no newline) stalls the worker for minutes before its row.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from grid.cli import main
from grid.errors import UnsafeFolderError
from grid.private import private_folder
from grid.results.backend.arrow import ArrowBackend
from grid.results.store import ResultStore
from grid.spec.parse import parse_spec
from grid.sweep import RunOptions, run_sweep
from grid.trial import gpulock
from grid.trial.launch import ENV_NOT_RECORDED
from grid.trial.output import LINE_WINDOW, LOG_KEEP, lines

SECRET = f"s3cr3t-{uuid.uuid4().hex}"
ATTACKER = "gridattack28"


@pytest.fixture(scope="session")
def other_user():
    """A second local user (made here, removed after): skipped unless the tests run as root."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("a second local user needs root and useradd")
    made = subprocess.run(["id", "-u", ATTACKER], capture_output=True).returncode != 0
    if made:
        subprocess.run(["useradd", "--system", "--no-create-home", ATTACKER], check=True, capture_output=True)
    yield pwd.getpwnam(ATTACKER)
    if made:
        subprocess.run(["userdel", ATTACKER], check=False, capture_output=True)


def as_user(user: pwd.struct_passwd, *argv: str) -> None:
    subprocess.run(list(argv), user=user.pw_uid, group=user.pw_gid, extra_groups=[], check=True)


@pytest.fixture
def shared_tmp():
    """A temporary folder every user may write to, as /tmp is (mode 1777)."""
    folder = Path(tempfile.mkdtemp(prefix="grid-attacks-", dir="/tmp"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def everything_in(s3, prefix: str) -> bytes:
    """Every object under the prefix, concatenated: what reached the bucket."""
    fs, root = pafs.FileSystem.from_uri(s3.uri(prefix))
    blobs = []
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True)):
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as f:
                blobs.append(f.read())
    return b"\n".join(blobs)


def sweep(spec: dict, folder: Path, results: str) -> list[dict]:
    opts = RunOptions(results=results, runner="local", live=False, state_dir=str(folder / ".state"))
    run_sweep(parse_spec(spec, base_dir=folder), opts, console=Console(file=io.StringIO()))
    return ResultStore(results).latest(spec["name"]).to_pylist()


# 1. links in a trial's folder
LINKS = """
import os, sys, time
own, outside = sys.argv[1], sys.argv[2]
with open(os.path.join(own, "kept.txt"), "w") as f:
    f.write("mine")
os.symlink(os.path.join(outside, "secret.txt"), os.path.join(own, "leak.txt"))
os.symlink(os.path.join(outside, "data"), os.path.join(own, "data"))
os.mkfifo(os.path.join(own, "pipe"))
time.sleep(1.5)  # the periodic sync looks at the folder meanwhile
"""


@pytest.mark.slow
def test_links_in_a_trial_folder_are_never_followed_out_of_it(aws_env, tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    (outside / "data").mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET)
    (outside / "data" / "shard-0").write_text(SECRET)
    (tmp_path / "links.py").write_text(LINKS)
    monkeypatch.setenv("GRID_TRIAL_DIR_SYNC_S", "0.2")
    spec = {"name": "links", "command": f"python links.py {{trial_dir}} {outside}", "timeout_s": 60}
    (row,) = sweep(spec, tmp_path, aws_env.uri("links"))

    assert row["status"] == "ok", row["error_tail"]
    bucket = everything_in(aws_env, "links")
    assert b"mine" in bucket, "the trial's own file is uploaded"
    assert SECRET.encode() not in bucket, "a link's target reached the bucket"
    notes = " ".join(row["notes"])
    assert f"leak.txt -> {outside}/secret.txt" in notes and f"data -> {outside}/data" in notes, notes
    assert (outside / "secret.txt").read_text() == SECRET, "the clean-up touched a link's target"
    assert (outside / "data" / "shard-0").read_text() == SECRET


# 2. secrets in the spec's env:
TOKEN_CHECK = """
import os, sys
expected = open("expected").read()  # from a file of the workdir: the command line is recorded
sys.exit(0 if os.environ.get("HF_HUB_TOKEN") == expected and os.environ.get("DB_PASSWORD") == expected else 3)
"""


@pytest.mark.slow
def test_env_values_reach_the_trial_but_never_the_results(aws_env, tmp_path):
    (tmp_path / "token.py").write_text(TOKEN_CHECK)
    (tmp_path / "expected").write_text(SECRET)
    spec = {
        "name": "secrets",
        "command": "python token.py",
        "env": {"HF_HUB_TOKEN": SECRET, "DB_PASSWORD": SECRET},
        "timeout_s": 60,
    }
    (row,) = sweep(spec, tmp_path, aws_env.uri("secrets"))

    assert row["status"] == "ok", f"the trial did not see its env: values: {row['error_tail']}"
    recorded = json.loads(row["child_env_json"])
    assert recorded["HF_HUB_TOKEN"] == recorded["DB_PASSWORD"] == ENV_NOT_RECORDED, recorded
    assert SECRET.encode() not in everything_in(aws_env, "secrets"), "an env: value reached the bucket"


# 3. shared temporary folders
def test_a_private_folder_is_made_0700_and_a_wider_one_of_ours_narrowed(tmp_path):
    made = private_folder(str(tmp_path / "fresh"))
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    ours = tmp_path / "ours"
    ours.mkdir()
    ours.chmod(0o777)
    private_folder(str(ours))
    assert stat.S_IMODE(ours.stat().st_mode) == 0o700
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeFolderError, match="a link or a file is there"):
        private_folder(str(tmp_path / "link"))


def test_a_lock_or_staging_folder_another_user_made_is_refused(other_user, shared_tmp):
    theirs = shared_tmp / "gpu-grid-locks"
    as_user(other_user, "mkdir", "-m", "0777", str(theirs))
    with (
        pytest.raises(UnsafeFolderError, match=re.escape(f"{theirs} belongs to another user")),
        gpulock.holding(["GPU-0000"], True, lock_dir=theirs),
    ):
        pass
    assert not list(theirs.iterdir()), "a lock file was made in another user's folder"


PRINT_OWN_DIR = "import os; print('own folder', os.environ['GRID_TRIAL_DIR'])"


@pytest.mark.slow
def test_a_sweep_never_stages_in_a_folder_another_user_made(aws_env, other_user, shared_tmp, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(shared_tmp))
    for name in (f"gpu-grid-{os.geteuid()}", "gpu-grid-logs", "gpu-grid-trials"):  # today's names and the old ones
        as_user(other_user, "mkdir", "-m", "0777", str(shared_tmp / name))
    (tmp_path / "own.py").write_text(PRINT_OWN_DIR)
    (row,) = sweep({"name": "staged", "command": "python own.py", "timeout_s": 60}, tmp_path, aws_env.uri("staged"))

    assert row["status"] == "error", f"the trial ran, its files staged in another user's folder: {row['error_tail']}"
    assert "belongs to another user" in row["error_message"], row["error_message"]
    for folder in shared_tmp.iterdir():
        assert not list(folder.iterdir()), f"gpu-grid wrote into {folder}, which another user owns"


# 4. crafted results
@pytest.fixture(scope="module")
def legit_rows(tmp_path_factory) -> pa.Table:
    """The rows of a real sweep whose plots `grid report` draws."""
    tmp = tmp_path_factory.mktemp("legit")
    spec = {
        "name": "legit",
        "workload": "sleep",
        "params": {"seconds": 0.05},
        "timeout_s": 30,
        "axes": {"memory_fraction": [None, 0.5, 0.25], "batch_size": [1, 2]},
    }
    sweep(spec, tmp, str(tmp / "results"))
    store = ResultStore(str(tmp / "results"))
    table = store.read_files(store.files("legit"))
    for name in ("images_per_s", "steady_epoch_s"):  # what a GPU would have measured: the plots' y
        at = table.schema.get_field_index(name)
        table = table.set_column(at, name, pa.array([10.0 + i for i in range(table.num_rows)], pa.float64()))
    return table


@pytest.mark.slow
def test_crafted_rows_never_place_a_report_file_outside_out(aws_env, legit_rows, tmp_path, capfd, caplog):
    fs, root = pafs.FileSystem.from_uri(aws_env.uri("crafted"))
    crafted = legit_rows.set_column(
        legit_rows.schema.get_field_index("sweep"), "sweep", pa.array(["../../../T-rep"] * legit_rows.num_rows)
    )
    for name, table in (("rows-0.parquet", legit_rows), ("planted-0.parquet", crafted)):
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        with fs.open_output_stream(f"{root}/sweep=legit/{name}") as out:
            out.write(sink.getvalue().to_pybytes())
    out = tmp_path / "a" / "b" / "c" / "out"

    assert main(["report", aws_env.uri("crafted"), "--out", str(out)]) == 0
    said = capfd.readouterr().err + caplog.text  # the warning, wherever logging sends it
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert written and all(out in p.parents for p in written), f"files outside --out: {written}"
    assert any(p.suffix == ".png" for p in written), "the report drew no plot: the attack was not tried"
    assert "planted-0.parquet" in said and "'../../../T-rep', not a sweep name" in said, said


def test_a_crafted_key_in_a_trial_folder_is_never_copied_down_outside_it(tmp_path, caplog):
    """A bucket someone else writes to may hold `_trials/<id>/../../x` (S3 keys are any text;
    SeaweedFS refuses them, so an in-memory pyarrow filesystem that keeps them stands in): resuming
    a trial folder copies its files down, and none may land outside the local copy."""
    memory = pytest.importorskip("fsspec.implementations.memory")
    fs = pafs.PyFileSystem(pafs.FSSpecHandler(memory.MemoryFileSystem()))
    backend = ArrowBackend("memory://bucket", fs, "bucket")
    folder = "bucket/sweep=s/_trials/t1"
    backend.write(f"{folder}/ckpt/kept.txt", b"mine")
    for key in ("../../../escape.txt", "sub/../../../../up.txt"):
        with fs.open_output_stream(f"{folder}/{key}") as out:
            out.write(b"crafted")
    local = tmp_path / "deep" / "copy"
    backend.copy_down(folder, str(local))
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [Path("deep/copy/ckpt/kept.txt")], written
    assert caplog.text.count("would be written outside") == 2, caplog.text


# 5. an endless line
ENDLESS = """
import sys
chunk = b"x" * (1 << 20)
for _ in range(256):
    sys.stdout.buffer.write(chunk)
sys.stdout.buffer.write(b" loss=0.25")
"""


def test_patterns_see_a_bounded_window_of_a_long_line(tmp_path):
    log = tmp_path / "out.log"
    log.write_bytes(b"start\r\n" + b"y" * (3 << 20) + b" loss=0.5\nend")
    cuts: list[int] = []
    seen = list(lines(str(log), 0, cuts))
    assert seen[0] == "start" and seen[-1] == "end" and seen[-2].endswith(" loss=0.5")
    assert max(len(s) for s in seen) <= LINE_WINDOW // 2
    assert cuts == [(3 << 20) + len(" loss=0.5") - LINE_WINDOW]


@pytest.mark.slow
@pytest.mark.timeout(240)  # a stall guard, not a speed target: the quadratic scan took 351 s on a 2-core box
def test_an_endless_line_becomes_a_row_with_its_log_bounded(tmp_path):
    (tmp_path / "endless.py").write_text(ENDLESS)
    spec = {"name": "endless", "command": "python endless.py", "metrics": {"loss": r"loss=([0-9.]+)"}}
    results = tmp_path / "results"
    (row,) = sweep({**spec, "timeout_s": 120}, tmp_path, str(results))

    assert row["status"] == "ok" and row["loss"] == 0.25, row["notes"]
    notes = " ".join(row["notes"])
    assert "1 output line(s) longer than 64 KiB" in notes and "224.0 MiB cut" in notes, notes
    log = Path(row["log_path"])
    assert log.stat().st_size < LOG_KEEP + 200
    with open(log, "rb") as f:
        assert f.read(12) == b"[gpu-grid] t"
        f.seek(-20, os.SEEK_END)
        assert f.read().endswith(b"loss=0.25")
