"""Image datasets: tfds datasets where tensorflow-datasets has them prepared, and generated
arrays of the same shapes (CIFAR 32x32x3, ImageNet 224x224x3) for tests and smoke runs.

Images stay uint8 on the host and in device memory (4x less than float32); models scale them
(`jaxplay.models.resnet` divides by 255 and standardises).
"""

from __future__ import annotations

import functools

import numpy as np

from jaxplay.data.dataset import Dataset
from jaxplay.errors import ConfigError


@functools.lru_cache(maxsize=4)
def _synthetic(image_size, channels, num_classes, num_train, num_val, seed):
    # Each class is a fixed random low-frequency pattern; an example is its class pattern plus
    # noise. Learnable, so a few steps show the loss falling, and exactly reproducible.
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(num_classes, 4, 4, channels))
    reps = -(-image_size // 4)
    patterns = np.kron(coarse, np.ones((1, reps, reps, 1)))[:, :image_size, :image_size]

    def split(n, rng):
        y = rng.integers(0, num_classes, n).astype(np.int32)
        x = 128 + 40 * patterns[y] + rng.normal(0, 40, size=(n, image_size, image_size, channels))
        return np.clip(x, 0, 255).astype(np.uint8), y

    x_train, y_train = split(num_train, np.random.default_rng([seed, 1]))
    x_val, y_val = split(num_val, np.random.default_rng([seed, 2]))
    return x_train, y_train, x_val, y_val


def synthetic(data_config):
    """`synthetic_images`: generated images of a real dataset's shape (default CIFAR-10's)."""

    size = int(data_config.get("image_size", 32))
    channels = int(data_config.get("channels", 3))
    num_classes = int(data_config.get("num_classes", 10))
    num_train, num_val = (
        int(data_config.get("num_train", 2048)),
        int(data_config.get("num_val", 512)),
    )
    for field, value, low in (
        ("image_size", size, 4),
        ("channels", channels, 1),
        ("num_classes", num_classes, 2),
        ("num_train", num_train, 1),
        ("num_val", num_val, 1),
    ):
        if value < low:
            raise ConfigError(f"data.{field}: must be >= {low} (got {value})")
    x, y, xv, yv = _synthetic(
        size, channels, num_classes, num_train, num_val, int(data_config.get("seed", 0))
    )
    return Dataset("synthetic_images", x, y, xv, yv, num_classes=num_classes)


class LazyImages:
    """A tfds random-access split seen as a uint8 array of shape (n, size, size, 3): indexing
    decodes only the requested records, center-cropped and resized to `size`."""

    def __init__(self, source, key: str, size: int):
        self.source, self.key, self.size = source, key, size
        self.shape = (len(source), size, size, 3)
        self.dtype = np.dtype(np.uint8)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return fit(np.asarray(self.source[int(index)][self.key]), self.size)
        return np.stack([self[int(i)] for i in np.arange(len(self))[index]])


class LazyLabels(LazyImages):
    """The labels of a tfds split, read on demand."""

    def __init__(self, source, key: str):
        self.source, self.key = source, key
        self.shape, self.dtype = (len(source),), np.dtype(np.int32)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return np.int32(self.source[int(index)][self.key])
        return np.array([self[int(i)] for i in np.arange(len(self))[index]], np.int32)


def fit(image: np.ndarray, size: int) -> np.ndarray:
    """Center square crop, resized to size x size (the usual eval-time ImageNet preprocessing)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    from PIL import Image

    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[top : top + side, left : left + side])
    return np.asarray(crop.resize((size, size), Image.BILINEAR))


def from_tfds(data_config):
    """`tfds`: a tensorflow-datasets image dataset prepared in `data.data_dir` (array_record
    format), read on demand. jaxplay never downloads it."""

    name = data_config.get("tfds_name")
    if not name:
        raise ConfigError(
            "data.tfds_name: missing; e.g. data.tfds_name='cifar10' or 'imagenet2012'"
        )
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ConfigError(
            f"data.name='tfds': tensorflow-datasets is not installed; `pip install "
            f"tensorflow-datasets` and prepare {name!r} (`tfds build {name} "
            "--file_format=array_record`), or use data.name='synthetic_images' for "
            "generated images of the same shape"
        ) from None
    data_dir = data_config.get("data_dir", None)
    splits = {}
    for split in ("train", "val", "test"):
        tfds_split = data_config.get(
            f"{split}_split", {"train": "train", "val": "validation", "test": None}[split]
        )
        if tfds_split is None:
            continue
        try:
            splits[split] = tfds.data_source(
                name, split=tfds_split, data_dir=data_dir, download=False
            )
        except Exception as e:
            raise ConfigError(
                f"data.tfds_name: cannot open {name!r} split {tfds_split!r} in "
                f"{data_dir or 'the default tfds data_dir'} ({type(e).__name__}: {e}); "
                f"prepare it with `tfds build {name} --file_format=array_record`"
            ) from None
    info = splits["train"].dataset_info
    size = int(data_config.get("image_size", info.features["image"].shape[0] or 224))
    num_classes = info.features["label"].num_classes
    arrays = {
        s: (LazyImages(src, "image", size), LazyLabels(src, "label")) for s, src in splits.items()
    }
    test = arrays.get("test", (None, None))
    return Dataset(f"tfds:{name}", *arrays["train"], *arrays["val"], *test, num_classes=num_classes)
