"""In-memory classification datasets and the registry behind `config.data.name`."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from jaxplay.spaces import ConfigError


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits as numpy arrays (features float32, labels int32)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example."""
        return tuple(self.x_train.shape[1:])


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
    return Dataset(name, x_train, y_train, x_val, y_val, np.asarray(x_test, np.float32),
                   np.asarray(y_test, np.int32), int(max(y.max(), np.max(y_test)) + 1))


@functools.lru_cache(maxsize=4)
def _mnist1d(val_size: int, split_seed: int) -> Dataset:
    from jaxplay.data import mnist1d
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


_LOADERS = {"mnist1d": (_mnist1d, 500), "digits": (_digits, 300)}


def load(data_config) -> Dataset:
    """Returns the dataset that `config.data` names (cached per process)."""
    name = data_config.get("name")
    if name not in _LOADERS:
        raise ConfigError(f"data.name: unknown dataset {name!r}; use one of {sorted(_LOADERS)}")
    loader, default_val = _LOADERS[name]
    return loader(int(data_config.get("val_size", default_val)), int(data_config.get("split_seed", 0)))
