"""Datasets as arrays, and the registry behind `config.data.name`.

Small datasets (MNIST-1D, digits, the stdlib text corpus, generated images) are numpy arrays
placed on the device once (`data.pipeline='device'`); large ones hold lazy arrays (tfds
sources) that `jaxplay.data.pipeline` streams (`data.pipeline='grain'`).
"""

from __future__ import annotations

import difflib
import functools

import numpy as np

from jaxplay.data import images, mnist1d, text
from jaxplay.data.dataset import Dataset
from jaxplay.errors import ConfigError


def split_validation(x, y, val_size: int, seed: int):
    """Holds out `val_size` examples of the training data as the validation set (a fixed split)."""
    if not 0 < val_size < len(x):
        raise ConfigError(f"data.val_size: must be between 1 and {len(x) - 1} (got {val_size})")
    # The split is seeded by data.split_seed, not the trial seed: every trial of a study must be
    # judged on the same validation examples.
    order = np.random.default_rng(seed).permutation(len(x))
    val, train = order[:val_size], order[val_size:]
    return x[train], y[train], x[val], y[val]


def _finish(name, x, y, x_test, y_test, val_size, split_seed) -> Dataset:
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int32)
    x_train, y_train, x_val, y_val = split_validation(x, y, val_size, split_seed)
    return Dataset(
        name,
        x_train,
        y_train,
        x_val,
        y_val,
        np.asarray(x_test, np.float32),
        np.asarray(y_test, np.int32),
        int(max(y.max(), np.max(y_test)) + 1),
    )


@functools.lru_cache(maxsize=4)
def _mnist1d(val_size: int, split_seed: int) -> Dataset:
    x, y, x_test, y_test = mnist1d.generate()
    return _finish("mnist1d", x, y, x_test, y_test, val_size, split_seed)


@functools.lru_cache(maxsize=4)
def _digits(val_size: int, split_seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()  # ships inside scikit-learn: no download
    x = digits.data.astype(np.float32) / 16.0
    y = digits.target
    # sklearn's digits has no official test split: hold out a fixed 20% as the test set.
    order = np.random.default_rng(12345).permutation(len(x))
    n_test = len(x) // 5
    test, rest = order[:n_test], order[n_test:]
    return _finish("digits", x[rest], y[rest], x[test], y[test], val_size, split_seed)


def _small(loader, default_val):
    def load(c):
        return loader(int(c.get("val_size", default_val)), int(c.get("split_seed", 0)))

    return load


# name -> (loader(config.data), the fields it reads besides the pipeline's)
LOADERS = {
    "mnist1d": (_small(_mnist1d, 500), ("val_size", "split_seed")),
    "digits": (_small(_digits, 300), ("val_size", "split_seed")),
    "pystdlib": (text.load, ("seq_len", "val_percent", "max_bytes")),
    "synthetic_images": (
        images.synthetic,
        ("image_size", "channels", "num_classes", "num_train", "num_val", "seed", "augment"),
    ),
    "tfds": (
        images.from_tfds,
        (
            "tfds_name",
            "data_dir",
            "image_size",
            "train_split",
            "val_split",
            "test_split",
            "augment",
        ),
    ),
}


def check(data) -> None:
    """Validates `config.data` (a jaxplay.spec.DataSpec) for the built-in datasets: a known
    dataset and only the fields it reads (the pipeline fields are checked with the spec)."""
    name = data.name
    if name not in LOADERS:
        raise ConfigError(f"data.name: unknown dataset {name!r}; use one of {sorted(LOADERS)}")
    allowed = set(LOADERS[name][1])
    for key in data.options.keys():
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"data.{key}: the {name!r} dataset has no field {key!r}{hint}; "
                f"it takes {sorted(allowed | set(PIPELINE_FIELDS))}"
            )
    if data.augment != "none" and "augment" not in allowed:
        raise ConfigError(
            f"data.augment: the {name!r} dataset takes no augmentation (got {data.augment!r}); "
            "remove it or set 'none'"
        )


# Fields every dataset takes: how it is batched and fed (see jaxplay.data.pipeline).
PIPELINE_FIELDS = ("name", "batch_size", "pipeline", "prefetch", "read_threads")


def load(data_config) -> Dataset:
    """Returns the dataset that `config.data` names."""
    check(data_config)
    return LOADERS[data_config.name][0](data_config)
