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
