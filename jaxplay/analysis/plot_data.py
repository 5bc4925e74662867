"""The data of the playbook's plots, without drawing them: which trials go where on an axis or
isolation plot, the cap infeasible trials are drawn at, the best-of-k bootstrap. The report's
matplotlib plots (jaxplay.analysis.plots) and the live dashboard (jaxplay.dashboard) both draw from
here, so a point means the same on both; importing it loads no plotting library.
"""

from __future__ import annotations

import math

import numpy as np

from jaxplay.analysis.study import StudyData, TrialData
from jaxplay.spaces import Hyperparameter

MAX_LABEL = 18  # characters of a category tick label before it is shortened

# The fewest finished trials of a search whose sampling density (best of k) is drawn.
SAMPLING_MIN_TRIALS = 8


class NothingToPlot(ValueError):
    """The study has no data this plot can show yet (e.g. no feasible trial)."""


def short_label(value) -> str:
    """A parameter value as a short label (long ones keep both ends: names often differ at the
    end)."""
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    half = (MAX_LABEL - 1) // 2
    return text if len(text) <= MAX_LABEL else f"{text[:half]}…{text[-half:]}"


def searched(study: StudyData, path: str) -> Hyperparameter:
    for p in study.space:
        if p.path == path:
            return p
    raise ValueError(
        f"{path!r} is not a searched hyperparameter of study {study.name!r}; "
        f"searched: {', '.join(study.space.paths) or 'none'}"
    )


def infeasible_cap(study: StudyData) -> float:
    """The y value infeasible trials are drawn at: a little beyond the worst feasible value."""
    values = [t.best_value for t in study.feasible]
    if not values:
        raise NothingToPlot(f"study {study.name!r} has no feasible trial yet")
    lo, hi = min(values), max(values)
    margin = 0.1 * (hi - lo) or 0.1 * abs(hi) or 0.1
    return hi + margin if study.mode == "min" else lo - margin


def categories_of(p: Hyperparameter, trials: list[TrialData]) -> list:
    """The values of a discrete or categorical parameter in axis order (values outside the
    declared space, e.g. from an earlier version of the study, go last)."""
    values = list(p.values)
    for t in trials:
        if p.path in t.params and category_index(values, t.params[p.path], p.space) is None:
            values.append(t.params[p.path])
    return values


def category_index(values: list, value, space: str) -> int | None:
    for i, v in enumerate(values):
        # Categorical 1, 1.0 and True are different choices; discrete 256 and 256.0 are not.
        if v == value and (space == "discrete" or type(v) is type(value)):
            return i
    return None


def jitter(index: int) -> float:
    """A small deterministic horizontal offset so trials sharing a category do not hide each
    other."""
    return ((index * 0.618034) % 1.0 - 0.5) * 0.3


def x_positions(p: Hyperparameter, trials: list[TrialData], categories: list | None) -> np.ndarray:
    if categories is None:
        return np.array([float(t.params[p.path]) for t in trials])
    return np.array(
        [category_index(categories, t.params[p.path], p.space) + jitter(t.index) for t in trials]
    )


def isolation_groups(study: StudyData, path: str, buckets: int = 8) -> list[dict]:
    """The isolation plot's data: per value (discrete/categorical) or per equal-width bucket on the
    parameter's scale (numbers), the finished trials in it and the best feasible one."""
    p = searched(study, path)
    trials = [t for t in study.finished if p.path in t.params]
    if p.space in ("discrete", "categorical"):
        categories = categories_of(p, trials)
        members = [
            [t for t in trials if category_index(categories, t.params[path], p.space) == i]
            for i in range(len(categories))
        ]
        labels = [short_label(v) for v in categories]
        edges = None
    else:
        if buckets < 1:
            raise ValueError(f"buckets: must be >= 1 (got {buckets})")
        lo, hi = p.warp(p.min), p.warp(p.max)
        unit = [p.warp(t.params[path]) for t in trials]
        which = [min(max(int((u - lo) / (hi - lo) * buckets), 0), buckets - 1) for u in unit]
        members = [[t for t, b in zip(trials, which) if b == i] for i in range(buckets)]
        grid = np.linspace(lo, hi, buckets + 1)
        edges = np.array([p.unwarp(g) for g in grid])
        labels = [
            f"{short_label(float(a))}-{short_label(float(b))}"
            for a, b in zip(edges[:-1], edges[1:])
        ]
    groups = []
    for i, group in enumerate(members):
        ids = {t.index for t in group}
        feasible = [t for t in study.feasible if t.index in ids]
        groups.append(
            dict(
                position=i,
                label=labels[i],
                trials=group,
                best=feasible[0] if feasible else None,
                feasible=len(feasible),
                edges=None if edges is None else (edges[i], edges[i + 1]),
            )
        )
    return groups


def train_metric(study: StudyData) -> str | None:
    """The training counterpart of the objective (train/error for val/error), else the training
    loss."""
    suffix = study.objective.split("/", 1)[-1]
    for name in (f"train/{suffix}", "train/loss", "train/batch_loss"):
        if any(len(t.curve(name)[0]) for t in study.trials):
            return name
    return None


def default_ks(n: int) -> list[int]:
    """Budgets to simulate: every k up to 20 trials, about 15 spread on a log scale beyond."""
    if n <= 20:
        return list(range(1, n + 1))
    return sorted({int(round(k)) for k in np.geomspace(1, n, 15)} | {n})


def best_of_k(
    study: StudyData, ks: list[int] | None = None, repeats: int = 1000, seed: int = 0
) -> dict[int, np.ndarray]:
    """{k: best objective of each of `repeats` simulated studies of k trials drawn with replacement
    from the finished ones}; a simulated study that drew no feasible trial gets the plots' cap."""
    pool = study.finished
    if not pool or not study.feasible:
        raise NothingToPlot(f"study {study.name!r} has no feasible trial yet")
    ks = ks or default_ks(len(pool))
    # An infeasible trial is a budget slot that returned nothing: a real study of k trials would
    # have paid for it too, so it stays in the pool as a draw without a value (NaN) instead of
    # being dropped, which would flatter small budgets.
    values = np.array([t.best_value if t.feasible else math.nan for t in pool])
    rng = np.random.default_rng(seed)
    draws = values[rng.integers(0, len(pool), size=(repeats, max(ks)))]
    # One draw matrix for every k (the study of k trials is the first k columns): the best-of-k of
    # each simulated study can only improve as k grows, so the curve has no resampling wiggles.
    running = (np.fmin if study.mode == "min" else np.fmax).accumulate(draws, axis=1)
    running = np.where(np.isnan(running), infeasible_cap(study), running)
    return {k: running[:, k - 1] for k in ks}
