"""GRID_PROFILE: every Python process of a trial writes where its main thread spent its time."""

from __future__ import annotations

import json

import pytest

from tests.test_warm_start import _sweep


@pytest.mark.slow
@pytest.mark.parametrize("warm_start", [True, False])
def test_a_trial_writes_its_stack_profile(tmp_path, warm_start):
    folder = tmp_path / "profile"
    rows = _sweep(
        tmp_path,
        f"profiled-{warm_start}",
        function="train_mod:run",
        params={"backend": "jax", "sleep": 0.5, "pidfile": str(tmp_path / "pid"), "warm_start": warm_start},
        env={"GRID_PROFILE": str(folder)},
    )
    assert [r["status"] for r in rows] == ["ok"], rows[0]["error_message"]
    assert rows[0]["start"] == ("warm" if warm_start else "cold")
    pid = (tmp_path / "pid").read_text()
    (folded,) = folder.glob(f"{rows[0]['trial_id']}-{pid}.folded")
    lines = folded.read_text().splitlines()
    sleeping = [line for line in lines if "train_mod.py:run" in line]
    assert sleeping and all(line.rsplit(" ", 1)[1].isdigit() for line in lines)
    assert sum(int(line.rsplit(" ", 1)[1]) for line in sleeping) >= 400  # of the 0.5 s sleep, in ms
    timeline = json.loads(folded.with_name(folded.name.replace(".folded", ".timeline.json")).read_text())
    assert timeline["finished_at"] - timeline["started_at"] >= 0.5
    assert any("train_mod.py:run" in w["stack"] for w in timeline["windows"])
