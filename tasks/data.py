"""Training data: CIFAR-10 from disk when it is there, else synthetic data of the same shape.

Nothing is ever downloaded. CIFAR-10 is read from the python-pickle layout
(`cifar-10-batches-py/data_batch_1..5`), in `data_dir` when the trial names one, else in the
Keras cache (`$KERAS_HOME` or `~/.keras`, under `datasets/`). More `images` than the 50,000
training images cycles through them again (the result says so in `data_note`): the workload
measures throughput and memory, not accuracy. Images are float32 NHWC in [0, 1], labels int32.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import numpy as np

SHAPE = (32, 32, 3)
CLASSES = 10
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CACHE_LAYOUTS = (
    "cifar-10-batches-py-target/cifar-10-batches-py",  # Keras 3 get_file
    "cifar-10-batches-py",
)  # Keras 2


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray
    y: np.ndarray
    source: str  # "cifar10" or "synthetic"
    note: str

    def fields(self) -> dict:
        return {"data": self.source, "data_note": self.note}


def synthetic(images: int, seed: int = 0) -> Dataset:
    """Seeded uint8-valued pixels scaled to [0, 1] and labels 0-9: CIFAR-10's shapes and dtypes."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(images, *SHAPE), dtype=np.uint8).astype(np.float32) / 255.0
    y = rng.integers(0, CLASSES, size=(images,), dtype=np.int32)
    return Dataset(x, y, "synthetic", f"{images} synthetic CIFAR-10-shaped images (seed {seed})")


def find_cifar(data_dir: str | None) -> str | None:
    """The `cifar-10-batches-py` folder to read, or None. A named `data_dir` must hold one."""
    if data_dir is not None:
        for folder in (os.path.join(data_dir, "cifar-10-batches-py"), data_dir):
            if os.path.isfile(os.path.join(folder, TRAIN_BATCHES[0])):
                return folder
        raise FileNotFoundError(
            f"data_dir={data_dir!r} holds no CIFAR-10 python batches: expected "
            f"{data_dir}/cifar-10-batches-py/data_batch_1 (the layout of cifar-10-python.tar.gz); "
            f"set data_dir to null to use the Keras cache or synthetic data"
        )
    cache = os.path.join(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")), "datasets")
    for layout in _CACHE_LAYOUTS:
        folder = os.path.join(cache, layout)
        if os.path.isfile(os.path.join(folder, TRAIN_BATCHES[0])):
            return folder
    return None


_NUMPY_ARRAY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
}


class _ArraysOnly(pickle.Unpickler):
    """A CIFAR batch holds a dict of numpy arrays and lists; refuse anything else it might name."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only numpy arrays")


def read_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickle batch as NHWC uint8 images and int32 labels."""
    with open(path, "rb") as f:
        batch = _ArraysOnly(f, encoding="bytes").load()
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return data, np.asarray(batch[b"labels"], dtype=np.int32)


def cifar10(folder: str, images: int) -> Dataset:
    """The first `images` training images, reading only the batches needed; cycles past the end."""
    xs, ys, have = [], [], 0
    for name in TRAIN_BATCHES:
        path = os.path.join(folder, name)
        if have >= images or not os.path.isfile(path):
            break
        x, y = read_batch(path)
        xs.append(x)
        ys.append(y)
        have += len(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    note = f"CIFAR-10 from {folder}: {min(images, have)} of {have} training images read"
    if images > have:
        pick = np.arange(images) % have
        x, y = x[pick], y[pick]
        note = f"CIFAR-10 from {folder}: its {have} training images cycled to {images}"
    return Dataset(x[:images].astype(np.float32) / 255.0, y[:images], "cifar10", note)


def training_data(images: int, data_dir: str | None = None, seed: int = 0) -> Dataset:
    folder = find_cifar(data_dir)
    return cifar10(folder, images) if folder else synthetic(images, seed)


def whole_batches(data, global_batch: int):
    """Every epoch runs whole global batches only, so k devices always split a batch evenly."""
    n = len(data.y) // global_batch * global_batch
    if n == 0:
        raise ValueError(
            f"images={len(data.y)} is fewer than one global batch of {global_batch} "
            f"(batch_size x gpus); raise images or lower batch_size"
        )
    return type(data)(data.x[:n], data.y[:n], data.source, data.note)
