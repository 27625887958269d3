"""MXNet Gluon resnet50_v1 (10 classes) on CIFAR-10 or synthetic data, hybridized.

Runs under the MXNet virtualenv's interpreter (mxnet 1.9.1 needs numpy<1.24), which grid picks
for backend mxnet. Same params and result fields as keras_resnet50: `mode: train` steps a Gluon
Trainer (SGD), `mode: inference` times forward passes; `gpus: k` splits each global batch over
the context list `[mx.gpu(0), ..., mx.gpu(k-1)]`.
"""

from __future__ import annotations

import time
from importlib import import_module

import numpy as np

import tasks
from gridtrial import devmem
from tasks import data
from tasks.data import whole_batches
from tasks.devices import gpus_error


def contexts(mx, k: int) -> list:
    gpus = mx.context.num_gpus()
    if gpus == 0 and k == 1:
        return [mx.cpu()]
    if gpus < k:
        raise gpus_error(k, f"mxnet sees {gpus} GPU(s)")
    return [mx.gpu(i) for i in range(k)]


def build(mx, ctxs: list):
    net = mx.gluon.model_zoo.vision.resnet50_v1(classes=data.CLASSES)
    net.initialize(mx.init.Xavier(), ctx=ctxs)
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def _batches(mx, x: np.ndarray, y: np.ndarray, global_batch: int, ctxs: list):
    for i in range(0, len(y), global_batch):
        xs = mx.gluon.utils.split_and_load(mx.nd.array(x[i : i + global_batch]), ctxs)
        ys = mx.gluon.utils.split_and_load(mx.nd.array(y[i : i + global_batch]), ctxs)
        yield xs, ys


def train_epoch(mx, net, trainer, x, y, global_batch: int, ctxs: list) -> None:
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    for xs, ys in _batches(mx, x, y, global_batch, ctxs):
        with mx.autograd.record():
            losses = [loss_fn(net(a), b) for a, b in zip(xs, ys)]
        for loss in losses:
            loss.backward()
        trainer.step(global_batch)


def infer_epoch(mx, net, x, y, global_batch: int, ctxs: list) -> None:
    for xs, _ in _batches(mx, x, y, global_batch, ctxs):
        for a in xs:
            net(a)


def timed_epochs(mx, net, x, y, cfg: dict, global_batch: int, ctxs: list) -> list[float]:
    """MXNet runs asynchronously: each epoch ends when `waitall` says the engine is idle."""
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01, "momentum": 0.9})
    times = []
    for _ in range(cfg["epochs"]):
        t0 = time.perf_counter()
        if cfg.get("mode", "train") == "train":
            train_epoch(mx, net, trainer, x, y, global_batch, ctxs)
        else:
            infer_epoch(mx, net, x, y, global_batch, ctxs)
        mx.nd.waitall()
        times.append(time.perf_counter() - t0)
    return times


def run(cfg: dict) -> dict:
    """The trial bootstrap set MXNET_GPU_MEM_POOL_RESERVE for memory_fraction before this import."""
    mx = import_module("mxnet")
    k = cfg.get("gpus", 1)
    global_batch = cfg["batch_size"] * k
    ctxs = contexts(mx, k)
    dataset = whole_batches(data.training_data(cfg["images"], cfg.get("data_dir")), global_batch)
    x = np.ascontiguousarray(dataset.x.transpose(0, 3, 1, 2))  # Gluon's ResNet is NCHW
    times = timed_epochs(mx, build(mx, ctxs), x, dataset.y, cfg, global_batch, ctxs)
    peak, mem = devmem.mxnet(mx, k if ctxs[0].device_type == "gpu" else 0)
    return {
        **dataset.fields(),
        "epoch_times": times,
        "images_per_epoch": len(dataset.y),
        "global_batch": global_batch,
        "framework": "mxnet",
        "parallelism": f"gluon context list {[str(c) for c in ctxs]}",
        "framework_peak_mib": peak,
        "framework_mem": mem,
        "versions": {
            "mxnet": mx.__version__,
            "numpy": np.__version__,
            "cuda_enabled": str(mx.runtime.Features().is_enabled("CUDA")),
        },
    }


if __name__ == "__main__":
    tasks.main(run)
