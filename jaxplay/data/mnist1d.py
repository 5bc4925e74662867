"""MNIST-1D (Greydanus 2020), generated locally by the `mnist1d` package: nothing is downloaded."""

from __future__ import annotations

import hashlib
import os
import pathlib

import numpy as np


def _cache_dir() -> pathlib.Path:
    root = os.environ.get(
        "JAXPLAY_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jaxplay")
    )
    return pathlib.Path(root)


def generate() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Returns (x, y, x_test, y_test): the standard 4000/1000 split with 40 features."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    # Generating is slow next to reading a file: keep the result, keyed by the generator's
    # arguments, so every later process (each CLI run, each test) just loads it.
    key = hashlib.sha256(repr(sorted(vars(args).items())).encode()).hexdigest()[:16]
    path = _cache_dir() / f"mnist1d-{key}.npz"
    if path.exists():
        with np.load(path) as f:
            return f["x"], f["y"], f["x_test"], f["y_test"]
    data = make_dataset(args)
    arrays = {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)  # atomic: concurrent workers never read half a file
    except OSError:
        pass  # a read-only home only costs the regeneration time
    return arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"]
