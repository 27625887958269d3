"""Storage faults with real filesystems: the results on a tmpfs in a private mount namespace that
refuses writes (its sweep folder made immutable: the kernel will not remount a filesystem
read-only while the trials' logs are open on it) or is full while a real `grid run` writes to it.
Nothing finished is lost or run twice, nothing temporary is left, the driver never dies with a
traceback, and a store that stays down stops the sweep with the rows kept on disk for the next
run to write."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from grid.results.store import ResultStore

GRID = str(Path(sys.executable).with_name("grid"))


def _why_no_mount_ns() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a private mount namespace (unshare -m)"
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        return "needs unshare and nsenter (util-linux)"
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        return "unshare -m is not permitted here"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_why_no_mount_ns() is not None, reason=str(_why_no_mount_ns()))]


class PrivateDisk:
    """A small tmpfs at `target`, seen only inside a mount namespace held open by a process of ours."""

    def __init__(self, target: Path, size_mib: int = 64):
        self.target = target
        target.mkdir(parents=True)
        script = f"mount -t tmpfs -o size={size_mib}m tmpfs {target} && echo up && exec sleep 3600"
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "--", "sh", "-c", script],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.holder.stdout.readline().strip() == "up"

    def wrap(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--", *argv]

    def sh(self, command: str) -> str:
        return subprocess.run(self.wrap(["sh", "-c", command]), capture_output=True, text=True, check=True).stdout

    def read_only(self, on: bool) -> None:
        """New files in the sweep folder refused (EPERM), as a read-only store refuses them."""
        self.sh(f"chattr {'+' if on else '-'}i {self.target}/sweep=faults")

    def fill(self, on: bool) -> None:
        self.sh(
            f"dd if=/dev/zero of={self.target}/filler bs=1M count=10000 2>/dev/null; true"
            if on
            else f"rm -f {self.target}/filler"
        )

    def rows(self) -> int:
        return int(self.sh(f"ls {self.target}/sweep=faults 2>/dev/null | grep -c parquet || true").strip() or 0)

    def copy_out(self, dest: Path) -> Path:
        dest.mkdir()
        self.sh(f"cp -a {self.target}/. {dest}/")
        return dest

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


@pytest.fixture
def disk(tmp_path):
    private = PrivateDisk(tmp_path / "results")
    yield private
    private.close()


SPEC = {
    "name": "faults",
    "workload": "sleep",
    "params": {"seconds": 0.6},
    "timeout_s": 60,
    "axes": {"batch_size": [1, 2, 3, 4, 5, 6, 7, 8]},
}


def start(disk: PrivateDisk, tmp_path: Path, *args: str) -> subprocess.Popen:
    spec = tmp_path / "faults.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    argv = [
        GRID,
        "run",
        str(spec),
        "--results",
        str(disk.target),
        "--plain",
        "--state-dir",
        str(tmp_path / "state"),
        *args,
    ]
    return subprocess.Popen(disk.wrap(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_rows(disk: PrivateDisk, n: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while disk.rows() < n:
        assert time.time() < deadline, f"fewer than {n} rows after {timeout} s"
        time.sleep(0.1)


def check_every_trial_once(results: Path) -> list[dict]:
    rows = ResultStore(str(results)).read("faults").to_pylist()
    assert sorted(r["batch_size"] for r in rows) == list(range(1, 9)), "each trial exactly one row"
    assert {r["attempt"] for r in rows} == {0} and {r["status"] for r in rows} == {"ok"}
    leftovers = [p.name for p in (results / "sweep=faults").iterdir() if p.name.startswith(".tmp")]
    assert leftovers == [], "no temporary file is left"
    return rows


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_store_down_for_seconds_loses_nothing(disk, tmp_path, fault):
    toggle = disk.read_only if fault == "read-only" else disk.fill
    driver = start(disk, tmp_path, "--runner", "local", "--cpu-slots", "2", "--store-retry", "60")
    wait_for_rows(disk, 2)
    toggle(True)
    time.sleep(5)
    toggle(False)
    output = driver.communicate(timeout=120)[0]
    assert driver.returncode == 0, output
    assert "results store refused" in output and "retrying" in output  # it did hit the fault
    assert "Traceback" not in output
    check_every_trial_once(disk.copy_out(tmp_path / "copy"))
    assert not list((tmp_path / "state").rglob("*.write")), "nothing left in the spool"


def test_a_store_that_stays_down_stops_the_sweep_and_the_next_run_writes_the_kept_rows(disk, tmp_path):
    driver = start(disk, tmp_path, "--runner", "ray", "--cpu-slots", "2", "--store-retry", "2")
    wait_for_rows(disk, 2)
    disk.read_only(True)
    output = driver.communicate(timeout=180)[0]
    assert driver.returncode == 4, output
    assert "Traceback" not in output
    kept = sorted((tmp_path / "state").rglob("*.write"))
    assert kept, output
    words = " ".join(output.split())
    assert "refused rows" in words and "run the same `grid run` again" in words
    assert all(str(path) in words for path in kept), output
    stored_before = disk.rows()
    assert stored_before + len(kept) < 8, "it stopped starting trials"

    disk.read_only(False)
    again = start(disk, tmp_path, "--runner", "local", "--cpu-slots", "2")
    output = again.communicate(timeout=120)[0]
    assert again.returncode == 0, output
    assert f"wrote {len(kept)} row(s) of sweep 'faults' kept from an earlier run" in output
    assert f"{stored_before + len(kept)} already done" in output, "the kept trials are not run again"
    check_every_trial_once(disk.copy_out(tmp_path / "copy"))
    assert not list((tmp_path / "state").rglob("*.write"))
