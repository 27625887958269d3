"""The built-in workloads trained for real, run as grid runs them (a child process per trial under
the trial bootstrap, on CPU): the bootstrap's measurements and the workload's own fields in the row."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from trials import MXNET_PYTHON, ok, run_trial

from tasks import data, keras_common

KERAS_BACKENDS = ("tensorflow", "jax", "torch")
needs_mxnet = pytest.mark.skipif(
    not MXNET_PYTHON.exists(), reason=f"no MXNet interpreter at {MXNET_PYTHON}: run `make mxnet-env` (make test does)"
)


def write_cifar(folder, batches: int, per_batch: int) -> None:
    """The python-pickle layout of cifar-10-python.tar.gz, with `per_batch` images per batch."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for i in range(1, batches + 1):
        batch = {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
        }
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch, f)


def assert_complete(row: dict, framework: str, epochs: int, global_batch: int) -> None:
    versions = json.loads(row["versions_json"])
    assert row["framework"] == framework
    assert versions[framework] == row["framework_version"]
    assert versions["numpy"]
    assert len(row["epoch_times"]) == epochs and all(t > 0 for t in row["epoch_times"])
    assert row["first_epoch_s"] == row["epoch_times"][0]
    assert row["images_per_s"] > 0
    if row["start"] == "warm" and framework in ("jax", "torch"):  # forked from a parent that imported it
        assert row["import_s"] == 0
    else:
        assert row["import_s"] > 0
    assert row["global_batch"] == global_batch
    assert row["framework_peak_mib"] is None  # CPU: no device counters
    assert "no GPU visible" in row["framework_mem_json"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", KERAS_BACKENDS)
def test_keras_tiny_trains_on_each_backend(tmp_path, backend):
    row = ok(run_trial(tmp_path, "keras_tiny", backend, {"epochs": 2, "images": 256, "batch_size": 32}))
    assert_complete(row, backend, epochs=2, global_batch=32)
    assert json.loads(row["versions_json"])["keras"].startswith("3.")
    assert row["data"] == "synthetic" and row["images_per_epoch"] == 256
    assert row["memory_cap_method"] == "none (framework default)"
    assert row["fit_calls"] == 1 and row["processes"] == 1
    assert row["loss"] > 0 and json.loads(row["series_json"])["loss"][-1] == row["loss"]


@pytest.mark.slow
def test_a_slowdown_on_purpose_is_more_steps_of_the_same_work(tmp_path):
    """KERAS_SLOWDOWN_PCT (make bench-nightly's slower commit) adds steps to every epoch, counted by
    the optimizer's own step counter, and nothing between the steps; the row says what was added."""
    params = {"epochs": 2, "images": 256, "batch_size": 32}
    row = ok(run_trial(tmp_path, "keras_tiny", "jax", params, env={"KERAS_SLOWDOWN_PCT": "25"}))
    assert row["images_per_epoch"] == 320  # 8 steps of 32, and 2 more
    assert "KERAS_SLOWDOWN_PCT=25: 2 more steps an epoch on top of 8 (25.0% more work)" in row["data_note"]
    assert row["data"] == "synthetic"


def test_slowdown_values_are_checked_before_any_training(monkeypatch):
    dataset = data.synthetic(320)
    for bad, why in (("ten", "expected a percentage"), ("-5", "expected a percentage"), ("1", "less than one step")):
        monkeypatch.setenv(keras_common.SLOWDOWN_VAR, bad)
        with pytest.raises(ValueError, match=why):
            keras_common.slowed_down(dataset, 32, keras_common.slowdown_pct())
    for nothing in ("", "0"):
        monkeypatch.setenv(keras_common.SLOWDOWN_VAR, nothing)
        assert keras_common.slowed_down(dataset, 32, keras_common.slowdown_pct()) is dataset
    monkeypatch.setenv(keras_common.SLOWDOWN_VAR, "10")  # torch on several GPUs trains in its own loop
    with pytest.raises(ValueError, match="torch with gpus > 1 trains in tasks/torch_ddp.py"):
        keras_common.run({"backend": "torch", "gpus": 2, "batch_size": 32}, data)  # refused before any workload
    monkeypatch.setenv(keras_common.SLOWDOWN_VAR, "150")  # more than an epoch: round the data again
    slowed = keras_common.slowed_down(dataset, 32, keras_common.slowdown_pct())
    assert len(slowed.y) == 320 + 15 * 32
    assert (slowed.x[320:640] == dataset.x).all() and (slowed.y[640:] == dataset.y[:160]).all()


@pytest.mark.slow
@pytest.mark.parametrize("backend", KERAS_BACKENDS)
def test_keras_resnet50_trains_on_each_backend_with_cap_reported(tmp_path, backend):
    params = {"epochs": 2, "images": 64, "batch_size": 32, "memory_fraction": 0.5}
    row = ok(run_trial(tmp_path, "keras_resnet50", backend, params, env={"KERAS_HOME": str(tmp_path / "nokeras")}))
    assert_complete(row, backend, epochs=2, global_batch=32)
    assert row["data"] == "synthetic" and row["mode"] == "train"
    assert row["memory_cap_method"].startswith(f"{backend}: ")
    assert row["memory_cap_method"].endswith("(no GPU visible: not applied)")


@pytest.mark.slow
def test_keras_resnet50_inference_reads_cifar10_from_data_dir(tmp_path):
    write_cifar(tmp_path / "cifar" / "cifar-10-batches-py", batches=2, per_batch=40)
    params = {"epochs": 2, "images": 64, "batch_size": 32, "mode": "inference", "data_dir": str(tmp_path / "cifar")}
    row = ok(run_trial(tmp_path, "keras_resnet50", "torch", params))
    assert row["data"] == "cifar10" and row["mode"] == "inference"
    assert "64 of 80 training images" in row["data_note"]
    assert len(row["epoch_times"]) == 2 and row["images_per_epoch"] == 64 and row["fit_calls"] == 0


def test_wrong_keras_backend_is_a_clear_error(tmp_path):
    row = run_trial(tmp_path, "keras_tiny", "jax", {"images": 64}, env={"KERAS_BACKEND": "torch"})
    assert row["status"] == "error" and row["exit_code"] == 1
    assert "backend is 'jax' but KERAS_BACKEND='torch'" in row["error_message"]


@pytest.mark.slow
@needs_mxnet
@pytest.mark.parametrize("mode", ["train", "inference"])
def test_mxnet_resnet50_runs_in_its_own_interpreter(tmp_path, mode):
    params = {"epochs": 2, "images": 64, "batch_size": 32, "mode": mode, "memory_fraction": 0.25}
    row = ok(run_trial(tmp_path, "mxnet_resnet50", "mxnet", params))
    assert_complete(row, "mxnet", epochs=2, global_batch=32)
    assert json.loads(row["versions_json"])["numpy"].startswith("1.23")
    assert row["mode"] == mode and row["data"] == "synthetic"
    assert row["memory_cap_method"].startswith("mxnet: MXNET_GPU_MEM_POOL_RESERVE=75 ")


@pytest.mark.slow
def test_jax_data_parallel_over_two_virtual_cpu_devices(tmp_path):
    row = ok(
        run_trial(
            tmp_path,
            "keras_tiny",
            "jax",
            {"epochs": 2, "images": 256, "batch_size": 32, "gpus": 2},
            env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
        )
    )
    assert row["global_batch"] == 64
    assert "DataParallel over ['cpu:0', 'cpu:1'] (weights replicated on 2 devices)" in row["parallelism"]


@pytest.mark.slow
def test_torch_ddp_two_gloo_processes_on_cpu(tmp_path):
    params = {"epochs": 2, "images": 256, "batch_size": 32, "gpus": 2, "memory_fraction": 0.5}
    row = ok(run_trial(tmp_path, "keras_tiny", "torch", params))
    assert row["global_batch"] == 64 and len(row["epoch_times"]) == 2 and row["images_per_epoch"] == 256
    assert row["parallelism"] == "torch DistributedDataParallel, 2 processes (gloo, CPU, forked)"
    assert row["processes"] == 3  # the trial process and its two ranks, each under the bootstrap
    assert row["memory_cap_method"] == (
        "torch: set_per_process_memory_fraction(0.5) (no GPU visible: not applied), in each of 3 processes"
    )


@pytest.mark.slow
def test_torch_ddp_ranks_spawned_with_warm_start_false(tmp_path):
    params = {"epochs": 1, "images": 128, "batch_size": 32, "gpus": 2, "memory_fraction": 0.5, "warm_start": False}
    row = ok(run_trial(tmp_path, "keras_tiny", "torch", params))
    assert row["parallelism"] == "torch DistributedDataParallel, 2 processes (gloo, CPU, spawned)"
    assert row["processes"] == 3 and row["memory_cap_method"].endswith("in each of 3 processes")


def _gpus2_error(tmp_path, workload: str, backend: str) -> str:
    row = run_trial(tmp_path, workload, backend, {"epochs": 1, "images": 64, "batch_size": 32, "gpus": 2})
    assert row["status"] == "error", row["error_tail"]
    return row["error_message"]


@pytest.mark.slow
def test_tensorflow_gpus2_without_gpus_says_why(tmp_path):
    message = _gpus2_error(tmp_path, "keras_tiny", "tensorflow")
    assert message.startswith("gpus=2 needs 2 visible GPUs; CUDA_VISIBLE_DEVICES='' (tensorflow sees 0 GPU(s))")


def test_jax_gpus2_without_devices_says_why(tmp_path):
    message = _gpus2_error(tmp_path, "keras_tiny", "jax")
    assert message.startswith("gpus=2 needs 2 visible GPUs; CUDA_VISIBLE_DEVICES='' (jax sees 1 cpu device(s))")


@needs_mxnet
def test_mxnet_gpus2_without_gpus_says_why(tmp_path):
    message = _gpus2_error(tmp_path, "mxnet_resnet50", "mxnet")
    assert message.startswith("gpus=2 needs 2 visible GPUs; CUDA_VISIBLE_DEVICES='' (mxnet sees 0 GPU(s))")


@pytest.mark.slow
def test_attempt_row_carries_the_workload_fields(tmp_path):
    row = ok(run_trial(tmp_path, "keras_tiny", "torch", {"epochs": 2, "images": 128}))
    assert row["framework"] == "torch" and row["data"] == "synthetic" and row["workload"] == "keras_tiny"
    assert len(row["epoch_times"]) == 2 and row["global_batch"] == 32
    assert row["memory_cap_method"] == "none (framework default)"
    assert '"keras": "3.' in row["versions_json"] and row["target"] == "function tasks.keras_tiny:run"


def test_synthetic_data_has_cifar10_shapes_and_is_seeded():
    a, b = data.synthetic(16), data.synthetic(16)
    assert a.x.shape == (16, 32, 32, 3) and a.x.dtype == np.float32
    assert a.x.min() >= 0.0 and a.x.max() <= 1.0
    assert a.y.dtype == np.int32 and set(a.y) <= set(range(10))
    assert np.array_equal(a.x, b.x) and a.source == "synthetic"


def test_cifar10_reads_only_needed_batches_and_cycles_past_the_end(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py", batches=2, per_batch=10)
    few = data.training_data(5, str(tmp_path))
    assert few.source == "cifar10" and few.x.shape == (5, 32, 32, 3) and "5 of 10" in few.note
    many = data.training_data(25, str(tmp_path))
    assert len(many.y) == 25 and "20 training images cycled to 25" in many.note
    assert np.array_equal(many.x[20:25], many.x[0:5])


def test_cifar10_found_in_the_keras_cache(tmp_path, monkeypatch):
    write_cifar(tmp_path / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py", batches=1, per_batch=8)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert data.training_data(8).source == "cifar10"
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    assert data.training_data(8).source == "synthetic"


def test_named_data_dir_without_cifar10_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no CIFAR-10 python batches"):
        data.training_data(8, str(tmp_path))


def test_cifar10_loader_refuses_pickles_naming_other_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "data_batch_1", "wb") as f:
        # `len`, not `print`: Ray, imported by other tests in this process, replaces builtins.print
        pickle.dump({b"data": len, b"labels": []}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.len"):
        data.training_data(1, str(tmp_path))
