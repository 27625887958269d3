"""Shared fixtures: spec files, a real local Ray with fake GPUs, and skipping GPU tests without a GPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# Every local Ray these tests start binds 127.0.0.1 only; Ray reads this once, at import.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def _private_folders() -> Path | None:
    """Under pytest-xdist (make test), each test process gets its own temporary and state folders
    before anything reads them: GPU locks, co-tenancy records, staged logs, the spool and Ray's
    session folders of one process's tests never meet another's. Short, for Ray's socket paths."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker or os.environ.get("GRID_TESTS_PRIVATE") == worker:
        return None  # not under xdist, or a second import in a process that has its folders
    os.environ["GRID_TESTS_PRIVATE"] = worker
    folder = Path(tempfile.mkdtemp(prefix=f"gt-{worker}-"))
    (folder / "cache").mkdir()
    os.environ["TMPDIR"] = str(folder)
    os.environ["XDG_CACHE_HOME"] = str(folder / "cache")
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    for name, value in ONE_THREAD.items():
        os.environ.setdefault(name, value)
    return folder


# Several test processes share few cores: a trial's math library that starts a thread per core
# spins against the other processes' trials (the Lightning example's two epochs: 13 s alone, 62 s
# beside two busy processes with a thread per core, 27 s with one thread). Under xdist each
# process's trials compute on one thread (the trials inherit these; a trial's OMP_NUM_THREADS is
# gpu-grid's to set, so torch is told through MKL_NUM_THREADS, which it reads as well).
ONE_THREAD = {
    "MKL_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "2",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


PRIVATE = _private_folders()


def pytest_sessionfinish(session, exitstatus):
    if PRIVATE is not None:
        shutil.rmtree(PRIVATE, ignore_errors=True)


def _has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


HAS_GPU = _has_gpu()


# The files that take longest (seconds of test time in a `make test` on the 2-core box: cluster 248,
# workloads 164, compile_cache 120, examples 119, ray_sweep 111, store_outage 86, interrupt 78,
# examples_loops 79, search 61, user_trials 54), run first, so that the test processes end together
# instead of one finishing a long file alone: pytest-xdist hands a process one file at a time in
# collection order (make test passes --no-loadscope-reorder). The ones that compute (workloads,
# compile_cache, examples) are spread between the ones that wait (Ray, the S3 server, sleeps):
# started together they took twice as long. Only the order changes; a file not named keeps its place.
LONGEST_FIRST = (
    "test_cluster.py",
    "test_workloads.py",
    "test_ray_sweep.py",
    "test_store_outage.py",
    "test_compile_cache.py",
    "test_interrupt.py",
    "test_examples.py",
    "test_search.py",
    "test_examples_loops.py",
    "test_user_trials.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: tests keep their order
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (nvidia-smi -L found none)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec mapping to a YAML file and return its path."""

    def write(data: dict, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A real S3 server (SeaweedFS) on loopback for a test module; its credentials are not in the
    environment unless a test asks for `aws_env`. Modules that need another kind define their own."""
    import s3server

    with s3server.serving(tmp_path_factory.mktemp("s3"), set_env=False) as server:
        yield server


@pytest.fixture
def aws_env(s3, monkeypatch):
    """The S3 server's credentials and endpoint in this test's environment."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return s3


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray for the session: 4 fake GPUs, loopback only."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",
            num_gpus=4,
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=256 * 1024 * 1024,
            namespace="gpu-grid-tests",
        )
    yield ray
    ray.shutdown()


# In-process tests import the trial side's modules (tasks/site/gridtrial) directly.
import sys  # noqa: E402

sys.path.insert(0, str(REPO / "tasks" / "site"))
