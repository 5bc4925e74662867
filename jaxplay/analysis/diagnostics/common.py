"""What every diagnostic shares: the Finding it returns, the best trials it looks at, where a value
sits on a hyperparameter's range, a trial's finite curves and training loss, and text formatting."""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from jaxplay import spaces
from jaxplay.analysis.study import TrialData

# The best trials looked at by the boundary and training-curve checks: the playbook's axis plots
# highlight the top 3 (Fig 1) and it asks for the curves "of at least the best few trials". The
# boundary check waits for 3 feasible trials: with fewer, a study that has just started would be
# flagged whenever its first trial happened to land near an edge.
TOP_K = 3


@dataclasses.dataclass(frozen=True)
class Finding:
    """One diagnostic: what was found, how it was measured, and what the playbook suggests doing."""

    check: str
    severity: str
    title: str
    detail: str
    action: str
    trials: tuple[int, ...] = ()
    param: str | None = None


def position(p: spaces.Hyperparameter, value) -> float | None:
    """Where a value sits in p's range on p's scale (0 at min, 1 at max; discrete: by index); None
    when it has no place (categorical, not a number, empty range)."""
    if p.space == "discrete":
        if value not in p.values or len(p.values) < 2 or not all(is_number(v) for v in p.values):
            return None
        return p.values.index(value) / (len(p.values) - 1)
    if p.space not in ("float", "int") or not is_number(value) or not p.max > p.min:
        return None
    if p.scale == "log":  # as a ratio: exact at the values value_at gives
        return math.log(value / p.min) / math.log(p.max / p.min) if value > 0 else None
    t = p.warp(value)  # the axis its scale is uniform on
    if math.isinf(t):
        return None
    return (t - p.warp(p.min)) / (p.warp(p.max) - p.warp(p.min))


def value_at(p: spaces.Hyperparameter, u: float):
    """The value of p at position u of its range (the inverse of position)."""
    if p.space == "discrete":
        return p.values[round(u * (len(p.values) - 1))]
    if p.scale == "log":
        return p.min * (p.max / p.min) ** u
    lo, hi = p.warp(p.min), p.warp(p.max)
    return p.unwarp(lo + u * (hi - lo))


def is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def finite(t: TrialData, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A metric's (steps, values) without its missing or infinite points (TrialData.finite)."""
    return t.finite(name)


def train_loss(t: TrialData) -> tuple[str, np.ndarray, np.ndarray]:
    """The trial's training loss as (name, steps, values) (TrialData.train_loss)."""
    return t.train_loss()


def trial_list(trials: list[TrialData]) -> str:
    """'trial 3' or 'trials 3, 5, 8'."""
    return ("trial " if len(trials) == 1 else "trials ") + ", ".join(str(t.index) for t in trials)
