"""`Dataset`: the splits a workload's `load_data` returns (the contract with the trainer)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train / validation (/ test) splits: arrays with examples on the first axis.

    Any array-like with `len`, `shape`, `dtype` and numpy-style indexing works (numpy arrays,
    memmaps, `jaxplay.data.images.LazyImages`). Targets may have extra axes (per-token targets).
    """

    name: str
    x_train: object
    y_train: object
    x_val: object
    y_val: object
    x_test: object = None
    y_test: object = None
    num_classes: int | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example."""
        return tuple(self.x_train.shape[1:])

    @property
    def splits(self) -> dict:
        """name -> (x, y) of the splits that exist."""
        out = {"train": (self.x_train, self.y_train), "val": (self.x_val, self.y_val)}
        if self.x_test is not None:
            out["test"] = (self.x_test, self.y_test)
        return out
