"""The trial bootstrap in real child processes: sitecustomize starts it in every Python process
of a trial; caps are applied at their moment, what happened is recorded, and a script may report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from trials import MXNET_PYTHON, REPO, SITE, boot_child

from grid.protocol import Cap, StartedAs

JAX_OPTIONS = (
    "import json, os, jax\nfrom jaxlib import xla_client\nfrom gridtrial import memory_cap\n"
    "opts = xla_client.generate_pjrt_gpu_plugin_options()\n"
    "print(json.dumps({'fraction': opts.get('memory_fraction'), 'preallocate': opts.get('preallocate'),"
    " 'caps': memory_cap(), 'sum': float(jax.numpy.ones(3).sum())}))"
)


def test_jax_cap_is_in_place_before_jax_starts(tmp_path):
    out, (rec,) = boot_child(tmp_path, JAX_OPTIONS, {"backend": "jax", "memory_fraction": 0.25, "preallocate": False})
    assert out["fraction"] == 0.25 and out["preallocate"] is False and out["sum"] == 3.0
    method = "jax: XLA_CLIENT_MEM_FRACTION=0.25, XLA_PYTHON_CLIENT_PREALLOCATE=false (no GPU visible: not applied)"
    assert out["caps"] == {"jax": method} and rec.caps == {"jax": Cap(method)}
    assert rec.versions["jax"] and rec.versions["jaxlib"] and rec.import_s > 0


def test_without_a_backend_every_imported_framework_is_capped(tmp_path):
    code = "import json, os, torch\nprint(json.dumps({'xla': os.environ.get('XLA_CLIENT_MEM_FRACTION')}))"
    out, (rec,) = boot_child(tmp_path, code, {"memory_fraction": 0.3})
    assert out == {"xla": "0.3"}  # set at start, in case the script imports jax too
    method = "torch: set_per_process_memory_fraction(0.3) (no GPU visible: not applied)"
    assert rec.caps == {"torch": Cap(method, gpu_started=False)}
    assert set(rec.versions) >= {"torch", "numpy"}


def test_with_a_backend_only_that_framework_is_capped(tmp_path):
    code = "import json, os, torch\nprint(json.dumps({'xla': os.environ.get('XLA_CLIENT_MEM_FRACTION')}))"
    out, (rec,) = boot_child(tmp_path, code, {"backend": "jax", "memory_fraction": 0.3})
    assert out["xla"] == "0.3" and rec.caps == {}


@pytest.mark.slow
def test_tensorflow_cap_right_after_its_import(tmp_path):
    code = (
        "import json, tensorflow as tf\n"
        "print(json.dumps({'logical': [d.device_type for d in tf.config.list_logical_devices()]}))"
    )
    out, (rec,) = boot_child(tmp_path, code, {"backend": "tensorflow", "memory_fraction": 0.5})
    assert out["logical"] == ["CPU"]
    assert rec.caps["tensorflow"].method == (
        "tensorflow: logical device memory_limit=0.5 x device memory (no GPU visible: not applied)"
    )


def test_a_process_that_imports_no_framework_leaves_no_record(tmp_path):
    out, records = boot_child(tmp_path, "import json; print(json.dumps({'ok': 1}))", {"memory_fraction": 0.3})
    assert out == {"ok": 1} and records == []


def test_an_uncaught_exception_is_recorded_and_still_printed(tmp_path):
    out, (rec,) = boot_child(tmp_path, "raise ValueError('bad batch')", {}, returncode=1)
    assert rec.error is not None and rec.error.type == "builtins.ValueError" and rec.error.message == "bad batch"
    assert "Traceback" in rec.error.traceback and "ValueError: bad batch" in out["stderr"]


def test_report_values_from_a_script(tmp_path):
    code = (
        "import json, numpy as np\nfrom gridtrial import report, config\n"
        "report(acc=np.float32(0.5), series=[1, 2.5], name='resnet')\nreport({'test/acc': 0.75}, acc=0.6)\n"
        "try:\n    report(blob={'a': 1})\nexcept TypeError as e:\n    err = str(e)\n"
        "print(json.dumps({'config': config(), 'err': err}))"
    )
    out, (rec,) = boot_child(tmp_path, code, {"lr": 0.1})
    assert rec.reports == {"acc": 0.6, "series": [1.0, 2.5], "name": "resnet", "test/acc": 0.75}
    assert out["config"] == {"lr": 0.1} and "expected a number, a string" in out["err"]


def test_the_helper_does_nothing_outside_a_trial():
    code = (
        "import json\nfrom gridtrial import report, config, memory_cap\nreport(acc=1.0)\n"
        "print(json.dumps([config(), memory_cap()]))"
    )
    env = {**os.environ, "PYTHONPATH": str(SITE)}
    env.pop("GRID_TRIAL", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [{}, {}]


def test_a_shadowed_sitecustomize_still_runs(tmp_path):
    other = tmp_path / "venv-site"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['THEIRS'] = 'ran'\n")
    code = "import json, os, torch\nprint(json.dumps({'theirs': os.environ.get('THEIRS')}))"
    out, (rec,) = boot_child(tmp_path, code, {}, PYTHONPATH=f"{SITE}{os.pathsep}{other}{os.pathsep}{REPO}")
    assert out == {"theirs": "ran"} and "torch" in rec.versions


def test_a_broken_trial_file_stops_the_process_instead_of_running_uncapped(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SITE), "GRID_TRIAL": str(tmp_path / "missing.json")}
    proc = subprocess.run([sys.executable, "-c", "print('ran')"], env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "ran" not in proc.stdout
    assert "[gpu-grid] trial bootstrap failed" in proc.stderr


@pytest.mark.gpu
def test_torch_cap_lands_when_cuda_starts_on_the_device_used(tmp_path):
    code = (
        "import json, torch\nfrom gridtrial import memory_cap\nbefore = memory_cap()['torch']\n"
        "total = torch.cuda.get_device_properties(0).total_memory\n"
        "small = torch.empty(int(total * 0.02), dtype=torch.uint8, device='cuda')\n"
        "try:\n    torch.empty(int(total * 0.1), dtype=torch.uint8, device='cuda'); big = 'allocated'\n"
        "except torch.OutOfMemoryError:\n    big = 'oom'\n"
        "print(json.dumps({'before': before, 'after': memory_cap()['torch'], 'big': big}))"
    )
    out, (rec,) = boot_child(tmp_path, code, {"backend": "torch", "memory_fraction": 0.05}, gpu_ids=("0",))
    assert out["before"].endswith("when CUDA starts (it did not start in this process)")
    assert out["after"] == "torch: set_per_process_memory_fraction(0.05) on 1 device(s)" and out["big"] == "oom"
    assert rec.memory["torch"].peak_mib >= 0.02 * 1024  # the 2% it kept, at least on an 80 GB card


@pytest.mark.gpu
def test_a_process_that_imports_torch_without_using_cuda_starts_no_context(tmp_path):
    code = "import json, torch\nprint(json.dumps({'started': torch.cuda.is_initialized()}))"
    out, (rec,) = boot_child(tmp_path, code, {"backend": "torch", "memory_fraction": 0.05}, gpu_ids=("0",))
    assert out == {"started": False} and rec.caps["torch"].gpu_started is False


@pytest.mark.gpu
def test_jax_cap_and_peak_on_a_gpu(tmp_path):
    code = (
        "import json, jax, jax.numpy as jnp\nx = jnp.ones((1024, 1024)).block_until_ready()\n"
        "print(json.dumps({'limit': jax.devices()[0].memory_stats()['bytes_limit']}))"
    )
    out, (rec,) = boot_child(tmp_path, code, {"backend": "jax", "memory_fraction": 0.2}, gpu_ids=("0",))
    assert rec.caps["jax"].method == "jax: XLA_CLIENT_MEM_FRACTION=0.2"
    import pynvml

    pynvml.nvmlInit()
    total = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).total
    assert 0.15 * total < out["limit"] <= 0.2 * total
    assert rec.memory["jax"].peak_mib >= 4.0


FORKED = """
import json, os, numpy
from gridtrial import boot, report
report(who="parent")
parent_record = boot.current().record.path
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    inherited = boot.current()
    with inherited.record.edit() as rec:
        rec.reports["who"] = "the child, in its parent's record"
    inherited.record.write()  # a record is written only by its own process: nothing happens
    os.environ["RANK"] = "1"
    own = boot.start_in_fork()
    report(who="child")
    facts = {"own_pid": own.pid == os.getpid(), "current": own is boot.current(), "new": own is not inherited,
             "draw": float(numpy.random.random())}
    os.write(w, json.dumps(facts).encode())
    own.finish()
    os._exit(0)
os.waitpid(pid, 0)
facts = json.loads(os.read(r, 4096))
with open(parent_record) as f:
    on_disk = json.load(f)["reports"]
print(json.dumps({**facts, "parent_draw": float(numpy.random.random()), "parent_record_on_disk": on_disk,
                  "own_process_again": boot.start_in_fork() is None}))
"""


@pytest.mark.parametrize(
    "python",
    [
        sys.executable,
        pytest.param(
            str(MXNET_PYTHON),  # numpy 1.23: a fork keeps the global generator's state (numpy 2 reseeds)
            marks=pytest.mark.skipif(not MXNET_PYTHON.exists(), reason="no MXNet interpreter: make mxnet-env"),
        ),
    ],
    ids=["numpy2", "numpy1"],
)
def test_a_forked_process_gets_a_bootstrap_and_record_of_its_own(tmp_path, python):
    """What a DDP rank forked from the trial process (tasks/torch_ddp.py) relies on."""
    out, records = boot_child(tmp_path, FORKED, {"lr": 0.1}, python=python)
    assert out["own_pid"] and out["current"] and out["new"] and out["own_process_again"]
    assert out["parent_record_on_disk"] == {"who": "parent"}  # the child could not overwrite it
    assert out["draw"] != out["parent_draw"]  # numpy reseeded in the child, as a spawned process's
    by_who = {rec.reports["who"]: rec for rec in records}
    assert set(by_who) == {"parent", "child"}
    assert by_who["child"].rank == "1" and by_who["child"].pid != by_who["parent"].pid
    assert by_who["child"].ppid == by_who["parent"].pid
    assert by_who["child"].started_as is StartedAs.FORK and by_who["parent"].started_as is StartedAs.FRESH
