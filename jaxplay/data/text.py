"""A character-level language-modelling corpus that every machine already has: the Python
standard library's own source files. Nothing is downloaded.

Tokens are bytes (a vocabulary of 256; the stdlib's source is almost all ASCII, so a byte is a
character). Files are assigned to train or validation by a hash of their path relative to the
stdlib, so the split does not depend on which other files exist or their order. Each split is
cut into non-overlapping windows of `seq_len + 1` bytes: inputs are a window's first `seq_len`
bytes, targets the same shifted by one.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
import sysconfig

import numpy as np

from jaxplay.data.dataset import Dataset
from jaxplay.errors import ConfigError

VOCAB_SIZE = 256
# Test suites and vendored packages are left out: they are not the library's own code, and the
# test data holds binary-ish fixtures.
_SKIP_PARTS = {"test", "tests", "site-packages", "dist-packages", "idlelib", "__pycache__"}


def source_files(root: pathlib.Path | None = None) -> list[pathlib.Path]:
    """The stdlib's .py files, sorted, without tests and vendored packages."""
    root = pathlib.Path(root or sysconfig.get_paths()["stdlib"])
    return sorted(
        p for p in root.rglob("*.py") if not _SKIP_PARTS & set(p.relative_to(root).parts[:-1])
    )


def is_validation(relative_path: str, val_percent: int) -> bool:
    """A file's split, from a hash of its path: stable across machines and file sets."""
    digest = hashlib.sha256(relative_path.encode()).digest()
    return int.from_bytes(digest[:4], "little") % 100 < val_percent


def windows(corpus: bytes, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of the non-overlapping `seq_len + 1`-byte windows of `corpus`."""
    tokens = np.frombuffer(corpus, np.uint8)
    count = (len(tokens) - 1) // seq_len
    usable = tokens[: count * seq_len + 1]
    x = np.lib.stride_tricks.sliding_window_view(usable[:-1], seq_len)[::seq_len]
    y = np.lib.stride_tricks.sliding_window_view(usable[1:], seq_len)[::seq_len]
    return np.ascontiguousarray(x), np.ascontiguousarray(y).astype(np.int32)


@functools.lru_cache(maxsize=4)
def _load(seq_len: int, val_percent: int, max_bytes: int | None, root: str | None = None):
    root_path = pathlib.Path(root or sysconfig.get_paths()["stdlib"])
    train, val = [], []
    for path in source_files(root_path):
        relative = path.relative_to(root_path).as_posix()
        (val if is_validation(relative, val_percent) else train).append(path.read_bytes())
    # Files are joined with a blank line; the model sees file boundaries as ordinary text.
    train_text, val_text = b"\n\n".join(train), b"\n\n".join(val)
    if max_bytes:
        # Cap each split in proportion, keeping the whole-file order deterministic.
        share = len(val_text) / max(len(train_text) + len(val_text), 1)
        val_text = val_text[: max(int(max_bytes * share), seq_len + 1)]
        train_text = train_text[: max_bytes - len(val_text)]
    return windows(train_text, seq_len), windows(val_text, seq_len)


def load(data_config):
    """The `pystdlib` dataset: byte windows of the stdlib's source, split by file."""

    seq_len = int(data_config.get("seq_len", 128))
    val_percent = int(data_config.get("val_percent", 5))
    max_bytes = data_config.get("max_bytes", None)
    if seq_len < 2:
        raise ConfigError(f"data.seq_len: at least 2 tokens (got {seq_len})")
    if not 0 < val_percent < 100:
        raise ConfigError(
            f"data.val_percent: a percentage of the files in (0, 100) (got {val_percent})"
        )
    if max_bytes is not None and int(max_bytes) < 20 * (seq_len + 1):
        raise ConfigError(
            f"data.max_bytes: too small for windows of data.seq_len={seq_len}; "
            f"use at least {20 * (seq_len + 1)} or None for the whole corpus"
        )
    (x_train, y_train), (x_val, y_val) = _load(
        seq_len, val_percent, None if max_bytes is None else int(max_bytes)
    )
    if len(x_val) == 0:
        raise ConfigError(
            f"data.val_percent: {val_percent}% of the files gave no validation window of "
            f"{seq_len + 1} bytes; raise it"
        )
    return Dataset("pystdlib", x_train, y_train, x_val, y_val, num_classes=VOCAB_SIZE)
