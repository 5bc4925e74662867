"""The data of the playbook's plots, without drawing them: which trials go where on an axis or
isolation plot, the cap infeasible trials are drawn at, which trials are near the best, each
trial's best step as a fraction of its length, the best-of-k bootstrap, the best trials' gradient
norms and the early-instability probe's per-step losses. The report's
matplotlib plots (jaxplay.analysis.plots) and the live dashboard (jaxplay.dashboard) both draw from
here, so a point means the same on both; importing it loads no plotting library.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from jaxplay.analysis import variance
from jaxplay.analysis.comparison import records_of
from jaxplay.analysis.diagnostics import (
    CLIP_PERCENTILE,
    NOT_CONVERGED_FRACTION,
    SATURATED_FRACTION,
    SPIKE_FACTOR,
    STEP_LOSS,
    clip_threshold,
    training_setup,
)
from jaxplay.analysis.diagnostics.instability import learning_rate, running_median
from jaxplay.analysis.study import StudyData, TrialData
from jaxplay.errors import ConfigError
from jaxplay.spaces import Hyperparameter
from jaxplay.values import fmt

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


@dataclasses.dataclass(frozen=True)
class IsolationBaseline:
    """A baseline study's best trial, drawn across each isolation plot of a study (playbook:
    compare against a baseline tuned with the same care), with the band of the trial noise
    `studies compare` weighs their difference against, when measured."""

    name: str
    value: float
    trial: int
    feasible: int  # the baseline's feasible trials: its best is the best of these
    noise: variance.RetrainNoise | None

    @property
    def band(self) -> tuple[float, float] | None:
        """(low, high): the values whose difference from the baseline is within the noise."""
        if self.noise is None:
            return None
        return (self.value - self.noise.threshold, self.value + self.noise.threshold)

    @property
    def label(self) -> str:
        """The legend entry: its name, value and trial count."""
        return f"baseline {self.name}: {fmt(self.value)}, best of {self.feasible}"

    def describe(self) -> str:
        """A caption's sentence on the line and its band."""
        line = (
            f"The dashed purple line is baseline {self.name}'s best ({fmt(self.value)}, trial "
            f"{self.trial}, the best of its {self.feasible} feasible trials)"
        )
        if self.noise is None:
            return (
                f"{line}; no noise band: the trial variance of neither study is measured "
                f"(rerun a best trial with --from_study {self.name} --lineage rerun)."
            )
        return (
            f"{line}, in a band of the trial noise, +/- {self.noise.threshold:.2g} "
            f"({self.noise.describe()}): a best outside the band differs from the baseline "
            "beyond the noise."
        )


def isolation_baseline(study: StudyData, baseline: StudyData) -> IsolationBaseline:
    """The baseline's line on the study's isolation plots: its best trial, the number of feasible
    trials it is the best of, and the trial noise of the two studies (analysis.variance, the rule
    of `studies compare`) where a rerun measured it."""
    if baseline.name == study.name:
        raise ConfigError(f"--baseline {baseline.name}: that is the study itself; name another")
    if (baseline.objective, baseline.mode) != (study.objective, study.mode):
        raise ConfigError(
            f"--baseline {baseline.name}: it optimizes {baseline.objective} ({baseline.mode}), "
            f"not {study.objective} ({study.mode}) as {study.name} does; name a baseline with the "
            "same objective"
        )
    if not baseline.feasible:
        raise ConfigError(
            f"--baseline {baseline.name}: it has no feasible trial yet; finish its sweep or name "
            "another baseline"
        )
    best = baseline.feasible[0]
    noise = variance.retrain_noise(records_of([study, baseline]), study.name, baseline.name)
    return IsolationBaseline(baseline.name, best.best_value, best.index, len(baseline.feasible),
                             noise)  # fmt: skip


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
    """The steps a trial was to train (StudyData.run_length: its own train.steps when its values
    set one, a prepended warmup included), else the steps it ran."""
    return study.run_length(t) or t.steps_run


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


# ----------------------------------------------------------------------------------------------
# Gradient norms (playbook "Identifying unstable workloads": log the L2 norm of the full gradient,
# whose outliers cause spurious instability; "Gradient clipping": plot it against the step and as a
# histogram over all steps, and clip just above the typical norm, at its 90th percentile).

# The unclipped global gradient norm as the trainer logs it: every step's where the study keeps
# them (train.log_every_step), and always each evaluation period's mean, median, 90th percentile
# and largest of its steps' norms, with the fraction of its updates that were clipped.
STEP_GRAD_NORM = "train/step_grad_norm"
PERIOD_GRAD_NORMS = {
    "mean": "train/grad_norm",
    "p50": "train/grad_norm_p50",
    "p90": "train/grad_norm_p90",
    "max": "train/grad_norm_max",
}
CLIP_FRACTION = "train/clip_fraction"
HISTOGRAM_BINS = 40
# Norms spanning more than this factor are drawn on a log axis: the playbook's Fig 9 starts near
# 1e5 where the typical norm is about 1, which a linear axis would flatten onto zero.
LOG_SPAN = 30.0


def clip_norm(study: StudyData, t: TrialData) -> float | None:
    """The train.grad_clip_norm a trial trained with (its own when searched, else the study's);
    None when clipping was off."""
    value = training_setup.clip_norm(study, t)
    return value if value is not None and value > 0 else None


def logged_grad_norms(t: TrialData) -> bool:
    """True when the trial logged a gradient norm, per step or per period."""
    return any(len(t.finite(m)[1]) for m in (STEP_GRAD_NORM, *PERIOD_GRAD_NORMS.values()))


def _aligned(t: TrialData, metrics: dict[str, str]) -> dict | None:
    """{'steps': union of the metrics' steps, key: values on them (NaN where a metric has no finite
    value)}; None when none has one."""
    curves = {key: t.finite(metric) for key, metric in metrics.items()}
    steps = np.unique(np.concatenate([s for s, _ in curves.values()]))
    if not steps.size:
        return None
    out = {"steps": steps}
    for key, (s, v) in curves.items():
        column = np.full(steps.size, math.nan)
        column[np.searchsorted(steps, s)] = v
        out[key] = column
    return out


def _log_axis(values: np.ndarray) -> bool:
    """True when positive values span more than LOG_SPAN (and none is zero or negative)."""
    values = values[np.isfinite(values)]
    return bool(values.size and values.min() > 0 and values.max() > LOG_SPAN * values.min())


def grad_norms(study: StudyData, top: int = 3) -> dict:
    """The unclipped gradient norms of the best `top` feasible trials that logged them, best
    first; without any, of the first `top` trials in rank order (a study whose trials are still
    running shows their norms).

    trials: per trial, `label` ('trial 3 (0.281)', 'trial 5 (infeasible)'); `per_step` (steps,
    values) where every step's norm was kept, else `periods` ({steps, mean, p50, p90, max} of each
    evaluation period's steps); `threshold`, the playbook's clipping threshold
    (diagnostics.clip_threshold: the CLIP_PERCENTILE percentile of the per-step norms); `clip`, its
    train.grad_clip_norm (None: off) and `clipped`, the mean fraction of its updates clipped (None
    without a clip). histogram: {trial, edges, counts, steps, threshold} of the first shown trial
    with per-step norms ("a histogram of gradient norms aggregated over all steps"), None without
    any. log: whether the norms want a log axis (they span over LOG_SPAN). percentile:
    CLIP_PERCENTILE."""
    shown = [t for t in study.feasible if logged_grad_norms(t)][:top] or [
        t for t in study.ranked if logged_grad_norms(t)
    ][:top]
    if not shown:
        raise NothingToPlot(f"study {study.name!r} has no trial that logged a gradient norm yet")
    trials, drawn, histogram = [], [], None
    for t in shown:
        steps, values = t.finite(STEP_GRAD_NORM)
        per_step = (steps, values) if len(values) else None
        periods = None if per_step else _aligned(t, PERIOD_GRAD_NORMS)
        clip = clip_norm(study, t)
        fractions = t.finite(CLIP_FRACTION)[1]
        trials.append(
            dict(
                trial=t,
                label=f"trial {t.index} ({fmt(t.best_value) if t.feasible else t.status})",
                per_step=per_step,
                periods=periods,
                threshold=clip_threshold(t),
                clip=clip,
                clipped=float(fractions.mean()) if clip is not None and len(fractions) else None,
            )
        )
        drawn.append(
            values if per_step else np.concatenate([periods[k] for k in PERIOD_GRAD_NORMS])
        )
        if per_step and histogram is None:
            histogram = dict(trial=t, values=values, threshold=clip_threshold(t))
    log = _log_axis(np.concatenate(drawn))
    if histogram:
        values = histogram.pop("values")
        bins = (
            np.geomspace(values.min(), values.max(), HISTOGRAM_BINS + 1) if log else HISTOGRAM_BINS
        )
        histogram["counts"], histogram["edges"] = np.histogram(values, bins=bins)
        histogram["steps"] = len(values)
    return dict(trials=trials, histogram=histogram, log=log, percentile=CLIP_PERCENTILE)


# ----------------------------------------------------------------------------------------------
# The early-instability probe's per-step losses (playbook "Identifying unstable workloads": "some
# models show very early instability followed by recovery" that evaluations every few hundred
# steps miss; look for a loss that goes up, not down).

# The step a diverged trial's error names (jaxplay.train.trial.diverged).
DIVERGED_AT = re.compile(r"diverged at step (\d+)")


def _stop(t: TrialData, steps: np.ndarray) -> int | None:
    """The step a diverged trial diverged at (its error names it), else its last logged step;
    None for a trial that did not diverge."""
    if t.status != "infeasible" or "diverged" not in (t.error or ""):
        return None
    named = DIVERGED_AT.search(t.error)
    return int(named.group(1)) if named else (int(steps[-1]) if len(steps) else None)


def step_losses(study: StudyData) -> list[dict]:
    """Each trial that kept every step's training loss (train/step_loss: the early-instability
    probe, `--lineage probe`), by learning rate: trial, learning_rate, factor (its learning rate as
    a multiple of the smallest of these trials': 1x, 2x, 5x, 10x), label, steps and values (the
    finite losses; a diverged trial's up to the step it diverged at, after which the trainer
    ignores it), median_steps and median (the SPIKE_WINDOW running median), rise ({step, value}
    where that median first passed SPIKE_FACTOR times its lowest so far, the diagnostic's
    instability; None) and stop ({step, value} where a diverged trial diverged; None)."""
    kept = [t for t in study.trials if len(t.finite(STEP_LOSS)[1])]
    if not kept:
        raise NothingToPlot(f"study {study.name!r} has no trial that kept every step's loss")
    rates = {t.index: learning_rate(t) for t in kept}
    base = min((r for r in rates.values() if r), default=None)
    out = []
    for t in kept:
        steps, values = t.finite(STEP_LOSS)
        stop_step = _stop(t, steps)
        stop = None
        if stop_step is not None:
            keep = steps <= stop_step
            steps, values = steps[keep], values[keep]
            if len(values):
                stop = dict(step=stop_step, value=float(values[-1]))
        median_steps, median = running_median(steps, values)
        rise = None
        if len(median):
            rising = np.nonzero(median > SPIKE_FACTOR * np.minimum.accumulate(median))[0]
            if len(rising):
                i = int(rising[0])
                rise = dict(step=int(median_steps[i]), value=float(median[i]))
        rate = rates[t.index]
        factor = rate / base if rate and base else None
        label = (
            f"{fmt(factor, 3)}x: trial {t.index}, learning rate {fmt(rate)}"
            if factor
            else f"trial {t.index}"
        )
        out.append(
            dict(
                trial=t,
                learning_rate=rate,
                factor=factor,
                label=label,
                steps=steps,
                values=values,
                median_steps=median_steps,
                median=median,
                rise=rise,
                stop=stop,
            )
        )
    return sorted(out, key=lambda q: (q["factor"] is None, q["factor"] or 0, q["trial"].index))


def step_loss_log(points: list[dict]) -> bool:
    """A log loss axis (the playbook's Fig 5: a spike to ~100 over a loss near 1) unless a loss is
    zero or negative."""
    values = np.concatenate([q["values"] for q in points])
    return bool(values.size) and bool(values.min() > 0)
