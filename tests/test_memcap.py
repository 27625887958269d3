"""Each backend's memory cap does what its `memory_cap_method` says, checked in a real child
process of that backend (the cap must act before the framework initialises the GPU)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from trials import MXNET_PYTHON, REPO, SITE

from gridtrial import memcap

CAP_VARIABLES = (
    "XLA_CLIENT_MEM_FRACTION",
    "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "MXNET_GPU_MEM_POOL_RESERVE",
)


def child(code: str, python: str = sys.executable, **env: str) -> dict:
    """Run `code` in a fresh interpreter (CPU slot environment); it prints one JSON line last."""
    base = {k: v for k, v in os.environ.items() if k not in CAP_VARIABLES}
    full = {**base, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": f"{SITE}{os.pathsep}{REPO}", **env}
    proc = subprocess.run([python, "-c", code], env=full, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "version, name",
    [
        ("0.4.31", "XLA_PYTHON_CLIENT_MEM_FRACTION"),
        ("0.4.32", "XLA_CLIENT_MEM_FRACTION"),
        ("0.4.32.dev20240901", "XLA_CLIENT_MEM_FRACTION"),
        ("0.10.2", "XLA_CLIENT_MEM_FRACTION"),
    ],
)
def test_jax_fraction_variable_follows_the_jaxlib_version(version, name):
    assert memcap.jax_fraction_variable(version) == name


def test_installed_jaxlib_reads_the_variable_we_set():
    source = Path(importlib.util.find_spec("jaxlib").submodule_search_locations[0], "xla_client.py").read_text()
    assert f"os.getenv('{memcap.jax_fraction_variable()}'" in source


def test_jax_cap_reaches_jaxlib_before_import_in_a_child():
    code = (
        "import json, os\nfrom gridtrial import memcap\n"
        "method = memcap.jax(0.25, False, ['0'])\n"
        "import jax, jax.numpy as jnp\nfrom jaxlib import xla_client\n"
        "opts = xla_client.generate_pjrt_gpu_plugin_options()\n"
        "print(json.dumps({'method': method, 'fraction': opts.get('memory_fraction'),"
        " 'preallocate': opts.get('preallocate'), 'old': os.environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION'),"
        " 'sum': float(jnp.ones(3).sum())}))"
    )
    out = child(code, KERAS_BACKEND="jax")
    assert out == {
        "method": "jax: XLA_CLIENT_MEM_FRACTION=0.25, XLA_PYTHON_CLIENT_PREALLOCATE=false",
        "fraction": 0.25,
        "preallocate": False,
        "old": None,
        "sum": 3.0,
    }


def test_jax_cap_refuses_to_set_both_names():
    other = ({"XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION"} - {memcap.jax_fraction_variable()}).pop()
    with pytest.raises(RuntimeError, match="jax raises when both are set"):
        memcap.jax(0.5, True, ["0"], env={other: "0.3"})


def test_jax_cap_defaults_and_cpu_slots():
    env: dict[str, str] = {}
    assert memcap.jax(None, True, [], env=env) == memcap.DEFAULT and env == {}
    assert memcap.jax(0.5, True, [], env=env) == "jax: XLA_CLIENT_MEM_FRACTION=0.5 (no GPU visible: not applied)"
    assert env == {"XLA_CLIENT_MEM_FRACTION": "0.5"}


@pytest.mark.slow
def test_tensorflow_cap_on_a_cpu_slot_applies_nothing_and_says_so():
    code = (
        "import json\nimport tensorflow as tf\nfrom gridtrial import memcap\n"
        "a = memcap.tensorflow(tf, 0.5, False, [])\nb = memcap.tensorflow(tf, None, True, [])\n"
        "c = memcap.tensorflow(tf, None, False, [])\nd = memcap.tensorflow(tf, 0.5, True, [])\n"
        "print(json.dumps({'a': a, 'b': b, 'c': c, 'd': d,"
        " 'logical': [d.device_type for d in tf.config.list_logical_devices()]}))"
    )
    out = child(code, KERAS_BACKEND="tensorflow")
    assert out["a"] == "tensorflow: logical device memory_limit=0.5 x device memory (no GPU visible: not applied)"
    assert out["b"] == "tensorflow: set_memory_growth(True) on 0 GPU(s) (no GPU visible: not applied)"
    assert out["c"] == memcap.DEFAULT
    assert out["d"].startswith("tensorflow: set_memory_growth(True) on 0 GPU(s) (memory_fraction=0.5 not applied")
    assert out["logical"] == ["CPU"]


def test_torch_cap_texts():
    assert (
        memcap.torch_method(0.05, None) == "torch: set_per_process_memory_fraction(0.05) (no GPU visible: not applied)"
    )
    assert memcap.torch_method(0.05, 2) == "torch: set_per_process_memory_fraction(0.05) on 2 device(s)"
    assert memcap.torch(None, None, [0]) == memcap.DEFAULT


def test_jax_cap_keeps_the_name_a_parent_set(monkeypatch):
    env = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.3"}  # not the installed jaxlib's name: no metadata was read
    assert memcap.jax(0.3, True, ["0"], env=env) == "jax: XLA_PYTHON_CLIENT_MEM_FRACTION=0.3"


@pytest.mark.parametrize("fraction, reserve", [(0.25, "75"), (1.0, "0"), (0.05, "95"), (0.333, "67")])
def test_mxnet_reserve_is_the_part_not_used(fraction, reserve):
    env: dict[str, str] = {}
    method = memcap.mxnet(fraction, ["0"], env=env)
    assert env == {"MXNET_GPU_MEM_POOL_RESERVE": reserve}
    assert method == (
        f"mxnet: MXNET_GPU_MEM_POOL_RESERVE={reserve} (closest documented control; no per-process fraction)"
    )


@pytest.mark.skipif(not MXNET_PYTHON.exists(), reason=f"no MXNet interpreter at {MXNET_PYTHON}: run `make mxnet-env`")
def test_mxnet_cap_is_set_before_mxnet_is_imported_in_its_interpreter():
    code = (
        "import json, os\nfrom gridtrial import memcap\nm = memcap.mxnet(0.2, [])\nimport mxnet\n"
        "print(json.dumps({'m': m, 'env': os.environ['MXNET_GPU_MEM_POOL_RESERVE'], 'v': mxnet.__version__}))"
    )
    out = child(code, python=str(MXNET_PYTHON))
    assert out["env"] == "80" and out["v"] == "1.9.1"
    assert out["m"].endswith("(no GPU visible: not applied)")


@pytest.mark.gpu
def test_torch_cap_is_enforced_on_a_gpu():
    code = (
        "import json, torch\nfrom gridtrial import memcap, devmem\n"
        "m = memcap.torch(torch, 0.05, [0])\ntotal = torch.cuda.get_device_properties(0).total_memory\n"
        "small = torch.empty(int(total * 0.02), dtype=torch.uint8, device='cuda')\n"
        "try:\n    torch.empty(int(total * 0.1), dtype=torch.uint8, device='cuda'); big = 'allocated'\n"
        "except torch.OutOfMemoryError as e:\n    big = 'oom'\n"
        "peak, mem = devmem.torch(torch, [0])\n"
        "print(json.dumps({'m': m, 'big': big, 'peak': peak, 'small_mib': small.numel() / 2**20}))"
    )
    out = child(code, KERAS_BACKEND="torch", CUDA_VISIBLE_DEVICES="0")
    assert out["m"] == "torch: set_per_process_memory_fraction(0.05) on 1 device(s)"
    assert out["big"] == "oom"
    assert out["peak"] >= out["small_mib"]


@pytest.mark.gpu
def test_jax_cap_sets_the_allocator_limit_on_a_gpu():
    code = (
        "import json\nfrom gridtrial import memcap, devmem\nm = memcap.jax(0.2, True, ['0'])\n"
        "import jax, jax.numpy as jnp\nx = jnp.ones((1024, 1024)).block_until_ready()\n"
        "d = jax.devices()[0]\npeak, mem = devmem.jax([d])\n"
        "import pynvml\npynvml.nvmlInit()\n"
        "total = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).total\n"
        "print(json.dumps({'m': m, 'limit': d.memory_stats()['bytes_limit'], 'total': total, 'peak': peak}))"
    )
    out = child(code, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="0")
    assert out["m"] == "jax: XLA_CLIENT_MEM_FRACTION=0.2"
    assert 0.15 * out["total"] < out["limit"] <= 0.2 * out["total"]
    assert out["peak"] >= 4.0  # the 4 MiB array


@pytest.mark.gpu
@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None,
    reason="tensorflow is not installed here (the GPU machine cannot carry it)",
)
def test_tensorflow_cap_makes_a_capped_logical_device_on_a_gpu():
    code = (
        "import json\nimport tensorflow as tf\nfrom gridtrial import memcap, devmem\n"
        "m = memcap.tensorflow(tf, 0.25, False, ['0'])\ntotal = memcap.gpu_total_mib(['0'])[0]\n"
        "gpu = tf.config.list_physical_devices('GPU')[0]\n"
        "limit = tf.config.get_logical_device_configuration(gpu)[0].memory_limit\n"
        "x = tf.ones((1024, 1024))\npeak, mem = devmem.tensorflow(tf, 1)\n"
        "print(json.dumps({'m': m, 'limit': limit, 'expected': int(0.25 * total), 'peak': peak}))"
    )
    out = child(code, KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="0")
    assert out["limit"] == out["expected"]
    assert (
        out["m"] == f"tensorflow: logical device memory_limit={out['expected']} MiB (0.25 x device memory) on 1 GPU(s)"
    )
    assert out["peak"] >= 4.0


@pytest.mark.gpu
@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None,
    reason="tensorflow is not installed here (the GPU machine cannot carry it)",
)
def test_tensorflow_memory_growth_on_a_gpu():
    code = (
        "import json\nimport tensorflow as tf\nfrom gridtrial import memcap\n"
        "m = memcap.tensorflow(tf, None, True, ['0'])\n"
        "g = tf.config.experimental.get_memory_growth(tf.config.list_physical_devices('GPU')[0])\n"
        "print(json.dumps({'m': m, 'growth': g}))"
    )
    out = child(code, KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="0")
    assert out == {"m": "tensorflow: set_memory_growth(True) on 1 GPU(s)", "growth": True}
