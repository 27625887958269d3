"""The persistent compilation cache the trials of a sweep share on a node: the first trial of a
program compiles it cold, the next loads it, `compile_cache: false` compiles every time; each row
says which (jax on CPU: the same cache code as on a GPU)."""

from __future__ import annotations

import os

import pytest

from grid.protocol import Compiles, Epoch, Fit, ProcessRecord
from grid.results.row import Start
from grid.results.store import ResultStore
from grid.spec.parse import parse_spec
from grid.sweep import RunOptions, run_sweep
from grid.trial import compilecache


def _run(tmp_path, name: str, **params) -> list[dict]:
    spec = parse_spec(
        {
            "name": name,
            "workload": "keras_tiny",
            "params": {"backend": "jax", "epochs": 2, "images": 64, "batch_size": 32, **params},
            "repeats": 2,
            "timeout_s": 120,
        }
    )
    state = str(tmp_path / "state")
    opts = RunOptions(results=str(tmp_path / "results"), runner="local", num_gpus=1, live=False, state_dir=state)
    run_sweep(spec, opts)
    rows = ResultStore(str(tmp_path / "results")).latest(name).to_pylist()
    return sorted(rows, key=lambda r: r["started_at"])


@pytest.mark.slow
def test_second_trial_loads_what_the_first_compiled(tmp_path):
    first, second = _run(tmp_path, "warm-cache")
    assert first["status"] == second["status"] == "ok"
    assert first["compile"] == "cold" and second["compile"] == "cached"
    assert second["compile_saved_s"] is not None  # jax: compile time saved minus load time (tiny programs: < 0)
    jax_cache = os.path.join(compilecache.folder(str(tmp_path / "state"), "warm-cache"), "jax")
    assert len(os.listdir(jax_cache)) > 0


@pytest.mark.slow
def test_compile_cache_off_compiles_every_trial(tmp_path):
    rows = _run(tmp_path, "cold-cache", compile_cache=False)
    assert [r["compile"] for r in rows] == ["off", "off"]
    assert all(r["status"] == "ok" for r in rows)
    assert not os.path.exists(os.path.join(compilecache.folder(str(tmp_path / "state"), "cold-cache"), "jax"))


def test_environment_points_every_framework_at_the_cache():
    env = compilecache.environment({"backend": "jax"}, "/c")
    assert env["JAX_COMPILATION_CACHE_DIR"] == "/c/jax"
    assert env["TF_XLA_FLAGS"].endswith("--tf_xla_persistent_cache_directory=/c/tensorflow")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == "/c/inductor"
    off = compilecache.environment({"compile_cache": False}, "/c")
    assert off["JAX_ENABLE_COMPILATION_CACHE"] == "false" and "JAX_COMPILATION_CACHE_DIR" not in off


def test_first_epoch_state_reads_the_first_epochs_counts():
    first, second = Compiles(requests=3, hits=3, saved_s=1.5), Compiles(requests=4, hits=3)
    fit = Fit(epochs=[Epoch(1.0, compiles=first), Epoch(1.0, compiles=second)])
    trained = ProcessRecord(pid=1, started=0.0, fits=[fit])
    assert compilecache.first_epoch_state(trained, {}) == Start(compile="cached", compile_saved_s=1.5)
    later = ProcessRecord(pid=1, started=0.0, compiles=Compiles(requests=2, hits=1, saved_s=0.1))
    assert compilecache.first_epoch_state(later, {}).compile == "cold"
    nothing = ProcessRecord(pid=1, started=0.0)
    assert compilecache.first_epoch_state(nothing, {}) == Start()
    assert compilecache.first_epoch_state(None, {"compile_cache": False}).compile == "off"


TORCH_COMPILE = """
import torch

def run(config):
    f = torch.compile(lambda x: torch.sin(x) * 2 + 1)
    return {"y": float(f(torch.ones(8)).sum())}
"""


@pytest.mark.slow
def test_torch_compile_is_counted_cold_then_cached(tmp_path):
    """torch.compile's FX graph cache (inductor, CPU here) shared by the sweep's trials on the node."""
    (tmp_path / "tc_mod.py").write_text(TORCH_COMPILE)
    spec = parse_spec(
        {"name": "torch-cache", "function": "tc_mod:run", "workdir": str(tmp_path), "repeats": 2, "timeout_s": 300}
    )
    state = str(tmp_path / "state")
    opts = RunOptions(results=str(tmp_path / "results"), runner="local", num_gpus=1, live=False, state_dir=state)
    run_sweep(spec, opts)
    rows = sorted(
        ResultStore(str(tmp_path / "results")).latest("torch-cache").to_pylist(), key=lambda r: r["started_at"]
    )
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["error_message"] for r in rows]
    assert [r["compile"] for r in rows] == ["cold", "cached"]
    assert os.listdir(os.path.join(compilecache.folder(state, "torch-cache"), "inductor"))
