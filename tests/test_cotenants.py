"""Who shared a GPU with an attempt (`shared_with`), from the tenancy files beside the GPU locks,
and those files removed once no attempt can need them (they used to pile up for a day)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from grid.errors import GridError
from grid.results.store import ResultStore
from grid.trial.cotenants import Tenancy, own_folder, places

GRID = [sys.executable, "-m", "grid"]


def _files(folder) -> list[str]:
    return sorted(p.name for p in (folder / "gpu-a").glob("*.json"))


def _on(folder, sweep, trial) -> Tenancy:
    return Tenancy(places(["gpu-a"], [], folder), sweep, trial, 0)


def test_overlapping_attempts_see_each_other_whichever_ends_first(tmp_path):
    a = _on(tmp_path, "s", "A").__enter__()
    b = _on(tmp_path, "s", "B").__enter__()
    b.__exit__()
    assert b.others() == ["A"]
    c = _on(tmp_path, "other-sweep", "C").__enter__()  # A still runs
    c.__exit__()
    a.__exit__()
    assert a.others() == ["B", "other-sweep/C"]  # B's file outlived B: A started before B ended
    assert c.others() == ["s/A"]  # another sweep's trial, named with its sweep


def test_sequential_attempts_leave_no_pile_of_files(tmp_path):
    for i in range(20):
        with _on(tmp_path, "s", f"T{i}") as t:
            time.sleep(0.001)
        assert t.others() == []
        assert len(_files(tmp_path)) <= 2, _files(tmp_path)


def test_a_running_attempt_keeps_what_ended_during_its_run(tmp_path):
    long = _on(tmp_path, "s", "long").__enter__()
    for i in range(5):
        with _on(tmp_path, "s", f"short{i}") as t:
            pass
        assert t.others() == ["long"]
    long.__exit__()
    assert long.others() == [f"short{i}" for i in range(5)]
    nxt = _on(tmp_path, "s", "next").__enter__()
    nxt.__exit__()
    assert nxt.others() == []
    assert _files(tmp_path) == [nxt.name]  # everything before it is gone


def test_the_file_of_a_dead_process_is_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "gpu-a"
    folder.mkdir(parents=True)
    entry = {"sweep": "s", "trial": "ghost", "pid": int(dead.stdout), "start": time.time() - 5, "end": None}
    (folder / "ghost.json").write_text(json.dumps(entry))
    with _on(tmp_path, "s", "T") as t:
        pass
    assert t.others() == []
    assert not (folder / "ghost.json").exists()


def test_the_folder_is_this_users_alone(tmp_path):
    folder = own_folder(tmp_path / "mine")
    assert stat.S_IMODE((tmp_path / "mine").stat().st_mode) == 0o700 and folder.is_dir()
    open_to_all = tmp_path / "open"
    (open_to_all / "tenants").mkdir(parents=True)
    os.chmod(open_to_all, 0o1777)  # a folder anyone may write in: a record there could be anyone's
    with pytest.raises(GridError, match="not a folder of this user's alone"):
        own_folder(open_to_all)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a folder another user owns")
def test_another_users_folder_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    (theirs / "tenants" / "gpu-a").mkdir(parents=True, mode=0o700)
    forged = {"sweep": "x", "trial": "forged", "pid": os.getpid(), "start": time.time() - 5, "end": None}
    (theirs / "tenants" / "gpu-a" / "f.json").write_text(json.dumps(forged))
    for path in (theirs, theirs / "tenants"):
        os.chown(path, 65534, 65534)  # nobody's
    with pytest.raises(GridError, match="owner uid 65534"):
        places(["gpu-a"], [], own_folder(theirs))


def test_fake_gpus_are_kept_in_their_workers_process_and_cpu_slots_share_nothing():
    a = Tenancy(places([], ["worker-fake0"]), "s", "A", 0).__enter__()
    with Tenancy(places([], ["worker-fake0"]), "s", "B", 0) as b:
        pass
    a.__exit__()
    assert b.others() == ["A"] and a.others() == ["B"]
    assert places([], []) == []


TWO_DRIVERS = "name: {name}\nworkload: sleep\nparams: {{seconds: 1.5}}\naxes:\n  batch_size: [1, 2]\ntimeout_s: 60\n"


def test_two_drivers_on_one_machine_never_share_fake_gpus_or_cpu_slots(tmp_path):
    """Two sweeps of two drivers at once, on fake GPUs and CPU slots of the same names: no row says
    it shared; a sweep that packs its own trials on a fake GPU still says so."""
    runs = {
        "fake-a": ["--num-gpus", "1"],
        "fake-b": ["--num-gpus", "1"],
        "cpu-a": ["--cpu-slots", "2"],
        "cpu-b": ["--cpu-slots", "2"],
    }
    procs = []
    for name, flags in runs.items():
        (tmp_path / f"{name}.yaml").write_text(TWO_DRIVERS.format(name=name))
        argv = [*GRID, "run", f"{name}.yaml", "--results", "results", "--runner", "local", "--plain", *flags]
        procs.append(subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    (tmp_path / "packed.yaml").write_text(TWO_DRIVERS.format(name="packed") + "exclusive: false\n")
    # no memory figure to pack by (no --gpu-memory-mib): two at once by count
    packed = [*GRID, "run", "packed.yaml", "--results", "results", "--runner", "local", "--num-gpus", "1"]
    subprocess.run([*packed, "--plain"], cwd=tmp_path, check=True, capture_output=True)
    rows = ResultStore(str(tmp_path / "results")).read().to_pylist()
    shared = {r["sweep"]: [] for r in rows}
    for r in rows:
        shared[r["sweep"]].append(r["shared_with"])
    assert shared["fake-a"] == [[], []] and shared["fake-b"] == [[], []], shared  # ran at once, other drivers
    assert shared["cpu-a"] == [None, None] and shared["cpu-b"] == [None, None], shared
    assert sorted(len(s) for s in shared["packed"]) == [1, 1], shared  # its own two trials, packed
