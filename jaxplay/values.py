"""Plain values: the type tests every layer shares, and how numbers are shown to a researcher."""

from __future__ import annotations

import math
import numbers

import numpy as np


def is_int(x) -> bool:
    """True for int values (numpy's too), not bools."""
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def is_real(x) -> bool:
    """True for int and float values (numpy's too), not bools."""
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def fmt(value, digits: int = 4) -> str:
    """A value as text shows it: floats to `digits` significant digits, the rest as str."""
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def cell(value, digits: int = 4) -> str:
    """A table cell: like fmt, with '-' for a missing value (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt(value, digits)


def duration(seconds: float) -> str:
    """'42s' or '3m07s'."""
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def size(nbytes: float | None) -> str:
    """Bytes for people: '1.5 GiB'."""
    if nbytes is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(nbytes) < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """'16GB', '512MiB', '1.5e9' -> bytes; ValueError naming the accepted forms."""
    units = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10,
             "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip
    cleaned = text.strip().lower().replace(" ", "")
    number = cleaned.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = cleaned[len(number) :]
    try:
        value = float(number) * units[unit]
    except (KeyError, ValueError):
        raise ValueError(
            f"{text!r} is not a size; give bytes or a number with a unit, e.g. 16GB or 512MiB"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r}: a size must be > 0, e.g. 16GB")
    return int(value)
