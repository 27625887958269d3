"""The workloads trained for real, run as grid runs them: a child process per trial, on CPU."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from grid.attempt import AttemptTimes, run_attempt
from grid.expand import expand
from grid.results import ResultStore
from grid.spec import parse_spec
from tasks import data
from trials import CPU_SLOT, MXNET_PYTHON, ok, run_trial

KERAS_BACKENDS = ("tensorflow", "jax", "torch")
needs_mxnet = pytest.mark.skipif(not MXNET_PYTHON.exists(),
                                 reason=f"no MXNet interpreter at {MXNET_PYTHON}: run `make mxnet-env` (make test does)")


def write_cifar(folder, batches: int, per_batch: int) -> None:
    """The python-pickle layout of cifar-10-python.tar.gz, with `per_batch` images per batch."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for i in range(1, batches + 1):
        batch = {b"batch_label": f"training batch {i} of 5".encode(),
                 b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                 b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)}
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch, f)


def assert_complete(result: dict, framework: str, epochs: int, global_batch: int) -> None:
    assert result["framework"] == framework
    assert result["versions"][framework] == result["framework_version"]
    assert result["versions"]["numpy"]
    assert len(result["epoch_times"]) == epochs and all(t > 0 for t in result["epoch_times"])
    assert result["first_epoch_s"] == result["epoch_times"][0]
    assert result["images_per_s"] > 0
    assert result["import_s"] > 0
    assert result["global_batch"] == global_batch
    assert result["framework_peak_mib"] is None  # CPU: no device counters
    assert "no GPU visible" in result["framework_mem"]["note"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", KERAS_BACKENDS)
def test_keras_tiny_trains_on_each_backend(tmp_path, backend):
    result = ok(run_trial(tmp_path, "keras_tiny", backend, {"epochs": 2, "images": 256, "batch_size": 32}))
    assert_complete(result, backend, epochs=2, global_batch=32)
    assert result["versions"]["keras"].startswith("3.")
    assert result["data"] == "synthetic" and result["images_per_epoch"] == 256
    assert result["memory_cap_method"] == "none (framework default)"


@pytest.mark.slow
@pytest.mark.parametrize("backend", KERAS_BACKENDS)
def test_keras_resnet50_trains_on_each_backend_with_cap_reported(tmp_path, backend):
    params = {"epochs": 2, "images": 64, "batch_size": 32, "memory_fraction": 0.5}
    run = run_trial(tmp_path, "keras_resnet50", backend, params, extra_env={"KERAS_HOME": str(tmp_path / "nokeras")})
    result = ok(run)
    assert_complete(result, backend, epochs=2, global_batch=32)
    assert result["data"] == "synthetic" and result["mode"] == "train"
    assert result["memory_cap_method"].startswith(f"{backend}: ")
    assert result["memory_cap_method"].endswith("(no GPU visible: not applied)")


@pytest.mark.slow
def test_keras_resnet50_inference_reads_cifar10_from_data_dir(tmp_path):
    write_cifar(tmp_path / "cifar" / "cifar-10-batches-py", batches=2, per_batch=40)
    params = {"epochs": 2, "images": 64, "batch_size": 32, "mode": "inference", "data_dir": str(tmp_path / "cifar")}
    result = ok(run_trial(tmp_path, "keras_resnet50", "torch", params))
    assert result["data"] == "cifar10" and result["mode"] == "inference"
    assert "64 of 80 training images" in result["data_note"]
    assert len(result["epoch_times"]) == 2


def test_wrong_keras_backend_is_a_clear_error(tmp_path):
    run = run_trial(tmp_path, "keras_tiny", "jax", {"images": 64}, extra_env={"KERAS_BACKEND": "torch"})
    assert run.result["status"] == "error" and run.returncode == 1
    assert "backend is 'jax' but KERAS_BACKEND='torch'" in run.result["error_message"]


@pytest.mark.slow
@needs_mxnet
@pytest.mark.parametrize("mode", ["train", "inference"])
def test_mxnet_resnet50_runs_in_its_own_interpreter(tmp_path, mode):
    params = {"epochs": 2, "images": 64, "batch_size": 32, "mode": mode, "memory_fraction": 0.25}
    result = ok(run_trial(tmp_path, "mxnet_resnet50", "mxnet", params))
    assert_complete(result, "mxnet", epochs=2, global_batch=32)
    assert result["versions"]["numpy"].startswith("1.23")
    assert result["mode"] == mode and result["data"] == "synthetic"
    assert result["memory_cap_method"].startswith("mxnet: MXNET_GPU_MEM_POOL_RESERVE=75 ")


@pytest.mark.slow
def test_jax_data_parallel_over_two_virtual_cpu_devices(tmp_path):
    run = run_trial(tmp_path, "keras_tiny", "jax", {"epochs": 2, "images": 256, "batch_size": 32, "gpus": 2},
                    extra_env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    result = ok(run)
    assert result["global_batch"] == 64
    assert "DataParallel over ['cpu:0', 'cpu:1'] (weights replicated on 2 devices)" in result["parallelism"]


@pytest.mark.slow
def test_torch_ddp_two_gloo_processes_on_cpu(tmp_path):
    result = ok(run_trial(tmp_path, "keras_tiny", "torch", {"epochs": 2, "images": 256, "batch_size": 32, "gpus": 2}))
    assert result["global_batch"] == 64 and len(result["epoch_times"]) == 2
    assert result["parallelism"] == "torch DistributedDataParallel, 2 processes (gloo, CPU)"


def _gpus2_error(tmp_path, workload: str, backend: str) -> str:
    run = run_trial(tmp_path, workload, backend, {"epochs": 1, "images": 64, "batch_size": 32, "gpus": 2})
    assert run.result["status"] == "error", run.log[-2000:]
    return run.result["error_message"]


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
    spec = parse_spec({"name": "row", "workload": "keras_tiny", "params": {"epochs": 2, "images": 128},
                       "axes": {"backend": ["torch"]}})
    trial = expand(spec).trials[0]
    store = ResultStore(str(tmp_path / "results"))
    row = run_attempt(spec, trial, 1, CPU_SLOT, store, AttemptTimes(queued_at=0.0))
    assert row["status"] == "ok", row["error_tail"]
    stored = store.read("row").to_pylist()[0]
    assert stored["framework"] == "torch" and stored["data"] == "synthetic"
    assert len(stored["epoch_times"]) == 2 and stored["global_batch"] == 32
    assert stored["memory_cap_method"] == "none (framework default)"
    assert '"keras": "3.' in stored["versions_json"]


def test_synthetic_data_has_cifar10_shapes_and_is_seeded():
    a, b = data.synthetic(16), data.synthetic(16)
    assert a.x.shape == (16, 32, 32, 3) and a.x.dtype == np.float32
    assert 0.0 <= a.x.min() and a.x.max() <= 1.0
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
        pickle.dump({b"data": print, b"labels": []}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        data.training_data(1, str(tmp_path))
