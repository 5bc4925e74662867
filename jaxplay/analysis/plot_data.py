"""The data of the playbook's plots, without drawing them: which trials go where on an axis or
isolation plot, the cap infeasible trials are drawn at, which trials are near the best, each
trial's best step as a fraction of its length, the best-of-k bootstrap. The report's
matplotlib plots (jaxplay.analysis.plots) and the live dashboard (jaxplay.dashboard) both draw from
here, so a point means the same on both; importing it loads no plotting library.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxplay.analysis import variance
from jaxplay.analysis.diagnostics import NOT_CONVERGED_FRACTION, SATURATED_FRACTION
from jaxplay.analysis.study import StudyData, TrialData
from jaxplay.spaces import Hyperparameter

MAX_LABEL = 18  # characters of a category tick label before it is shortened

# The fewest finished trials of a search whose sampling density (best of k) is drawn.
SAMPLING_MIN_TRIALS = 8

# Without a measured trial noise, a trial is near the best when it is within 5% of the best value's
# distance from a perfect result (see near_best). The diagnostics take the same 5% of the level as
# the smallest change of a curve worth a verdict (OVERFIT_RELATIVE); the retrain noise measured on
# the quickstart (DESIGN.md: up to 0.008 val/error around 0.3) is of this size too.
NEAR_BEST_RELATIVE = 0.05

# The playbook's best-step rule for train.steps, as the diagnostics apply it: best steps in the
# first 10% of training mean far more steps than needed, in the last 25% that it should be longer.
EARLY_FRACTION = SATURATED_FRACTION
LATE_FRACTION = NOT_CONVERGED_FRACTION


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


# ----------------------------------------------------------------------------------------------
# Near-best trials (playbook "Not sampling enough points in the search space": how many points are
# in the "good" region).


@dataclasses.dataclass(frozen=True)
class NearBest:
    """The feasible trials within `epsilon` of the best value, best first, and how epsilon was
    derived (`source`, in words)."""

    best: float
    epsilon: float
    bound: float  # the worst value still near the best: best + epsilon (min) or best - epsilon
    trials: tuple[int, ...]
    source: str
    measured: bool  # epsilon comes from a measured trial noise, not from NEAR_BEST_RELATIVE

    @property
    def count(self) -> int:
        return len(self.trials)

    def describe(self) -> str:
        """The criterion in words: 'within 0.015 of the best (how epsilon was derived)'."""
        return f"within {self.epsilon:.2g} of the best ({self.source})"


def _level(study: StudyData, value: float) -> float:
    """A value's distance from a perfect result: 1 - value for a maximized score within [0, 1] (an
    accuracy: it gets the same epsilon as its error rate), else |value| (a loss, an error rate)."""
    if study.mode == "max" and 0 <= value <= 1:
        return 1 - value
    return abs(value)


def near_best(study: StudyData) -> NearBest | None:
    """The trials whose best value a difference of epsilon or less separates from the best one;
    None before any trial is feasible.

    Epsilon is the trial noise when the study's lineage measured it (a `--lineage rerun` of it, or
    it is one): variance.Noise.threshold, the smallest difference of two single runs that the seed
    alone makes unlikely, so a near-best trial cannot be told from the best by one run each.
    Otherwise it is NEAR_BEST_RELATIVE of the best value's distance from a perfect result."""
    feasible = study.feasible
    if not feasible:
        return None
    best = feasible[0].best_value
    noise = variance.trial_noise([*study.family, study.record], {study.name})
    if noise is not None:
        epsilon = noise.threshold
        source = (
            f"{variance.DIFFERENCE_Z:.2f} x the trial noise std {noise.std:.2g} measured by "
            f"{', '.join(noise.sources)} over {noise.n} seeds"
            + (", a rough estimate" if noise.n < variance.FEW_SAMPLES else "")
        )
    else:
        epsilon = NEAR_BEST_RELATIVE * _level(study, best)
        perfect = 1 if study.mode == "max" and 0 <= best <= 1 else 0
        source = (
            f"{NEAR_BEST_RELATIVE:.0%} of the best value's distance from {perfect}, as no trial "
            "noise is measured: --lineage rerun measures it"
        )
    bound = best + epsilon if study.mode == "min" else best - epsilon
    # A tiny tolerance: a trial exactly at the bound is near, whatever the float rounding.
    slack = 1e-12 * max(abs(best), abs(bound), 1.0)
    trials = tuple(t.index for t in feasible if abs(t.best_value - best) <= epsilon + slack)
    return NearBest(best, epsilon, bound, trials, source, noise is not None)


# ----------------------------------------------------------------------------------------------
# Best step (playbook "Deciding how long to train": plot the step that retrospective checkpoint
# selection finds, to refine train.steps).


def trial_length(study: StudyData, t: TrialData) -> int | None:
    """The steps a trial was to train: its own train.steps when the search set one, else the
    study's, else the steps it ran."""
    return t.params.get("train.steps") or study.train_steps or t.steps_run


def zone(fraction: float) -> str | None:
    """'early' (best step in the first EARLY_FRACTION of training), 'late' (in the last
    1 - LATE_FRACTION) or None."""
    if fraction <= EARLY_FRACTION:
        return "early"
    if fraction >= LATE_FRACTION:
        return "late"
    return None


def best_steps(study: StudyData) -> list[dict]:
    """Each feasible trial with a best step, best first: trial, step, steps (its length),
    fraction (step / steps) and zone ('early', 'late' or None)."""
    out = []
    for t in study.feasible:
        steps = trial_length(study, t)
        if t.best_step is None or not steps:
            continue
        fraction = t.best_step / steps
        out.append(
            dict(trial=t, step=t.best_step, steps=steps, fraction=fraction, zone=zone(fraction))
        )
    if not out:
        raise NothingToPlot(f"study {study.name!r} has no feasible trial with a best step yet")
    return out
