"""Workdirs on a local disk or in a bucket: `--workdir gs://bucket/study` holds the checkpoints
(orbax writes through tensorstore and etils epath) so every host of a TPU VM slice sees them; the
study store then lives elsewhere (`--store postgresql://...`), since SQLite needs a local file."""

from __future__ import annotations

import pathlib


def is_remote(path) -> bool:
    """True for a URL such as gs://bucket/dir (s3://, ... wherever etils epath reaches)."""
    return "://" in str(path)


def folder(path):
    """An absolute pathlib.Path, or an epath.Path for a URL (same interface: /, exists, mkdir)."""
    if is_remote(path):
        from etils import epath

        return epath.Path(str(path))
    return pathlib.Path(path).absolute()
