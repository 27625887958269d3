"""Who shared a GPU with an attempt (`shared_with`), from the tenancy files beside the GPU locks,
and those files removed once no attempt can need them (they used to pile up for a day)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from grid.trial.cotenants import Tenancy


def _files(lock_dir) -> list[str]:
    return sorted(p.name for p in (lock_dir / "tenants" / "gpu-a").glob("*.json"))


def test_overlapping_attempts_see_each_other_whichever_ends_first(tmp_path):
    a = Tenancy(["gpu-a"], "s", "A", 0, lock_dir=tmp_path).__enter__()
    b = Tenancy(["gpu-a"], "s", "B", 0, lock_dir=tmp_path).__enter__()
    b.__exit__()
    assert b.others() == ["A"]
    c = Tenancy(["gpu-a"], "other-sweep", "C", 0, lock_dir=tmp_path).__enter__()  # A still runs
    c.__exit__()
    a.__exit__()
    assert a.others() == ["B", "other-sweep/C"]  # B's file outlived B: A started before B ended
    assert c.others() == ["s/A"]  # another sweep's trial, named with its sweep


def test_sequential_attempts_leave_no_pile_of_files(tmp_path):
    for i in range(20):
        with Tenancy(["gpu-a"], "s", f"T{i}", 0, lock_dir=tmp_path) as t:
            time.sleep(0.001)
        assert t.others() == []
        assert len(_files(tmp_path)) <= 2, _files(tmp_path)


def test_a_running_attempt_keeps_what_ended_during_its_run(tmp_path):
    long = Tenancy(["gpu-a"], "s", "long", 0, lock_dir=tmp_path).__enter__()
    for i in range(5):
        with Tenancy(["gpu-a"], "s", f"short{i}", 0, lock_dir=tmp_path) as t:
            pass
        assert t.others() == ["long"]
    long.__exit__()
    assert long.others() == [f"short{i}" for i in range(5)]
    nxt = Tenancy(["gpu-a"], "s", "next", 0, lock_dir=tmp_path).__enter__()
    nxt.__exit__()
    assert nxt.others() == []
    assert _files(tmp_path) == [nxt.name]  # everything before it is gone


def test_the_file_of_a_dead_process_is_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "tenants" / "gpu-a"
    folder.mkdir(parents=True)
    entry = {"sweep": "s", "trial": "ghost", "pid": int(dead.stdout), "start": time.time() - 5, "end": None}
    (folder / "ghost.json").write_text(json.dumps(entry))
    with Tenancy(["gpu-a"], "s", "T", 0, lock_dir=tmp_path) as t:
        pass
    assert t.others() == []
    assert not (folder / "ghost.json").exists()
