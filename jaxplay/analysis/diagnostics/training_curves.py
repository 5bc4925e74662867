"""Training-curve checks on the best trials: overfitting, late eval-to-eval noise (late_variance),
still improving at the end (not_converged), done improving early (saturated_early) and a rising
training loss (train_loss_rising)."""

from __future__ import annotations

import math

import numpy as np

from jaxplay.analysis.diagnostics.common import (
    TOP_K,
    Finding,
    finite,
    position,
    train_loss,
    trial_list,
    value_at,
)
from jaxplay.analysis.diagnostics.search_space import never_trained
from jaxplay.analysis.study import StudyData, TrialData
from jaxplay.values import fmt

# Overfitting = the validation objective rises after its best eval and stays up: the mean of the
# last evals after the best is worse than the best by more than 5% of its level (_level) and by more
# than 3 times the eval-to-eval noise (a lucky dip on a flat but noisy curve rises about 1.5-2
# noise units), with at least 3 evals after the best, while training loss kept falling.
OVERFIT_RELATIVE = 0.05
OVERFIT_NOISE_MULTIPLE = 3.0
OVERFIT_MIN_AFTER = 3
# Continuous scientific hyperparameters are bucketed like an isolation plot: 5 equal slices of the
# range on its scale, the best trial in each.
SCIENTIFIC_BUCKETS = 5
# Names of regularization hyperparameters: when one is scientific, "add regularization before
# comparing" does not apply as such (playbook item 38).
REGULARIZERS = (
    "dropout",
    "weight_decay",
    "label_smoothing",
    "l2",
    "augment",
    "mixup",
    "stochastic_depth",
)
# "Late in training" = the last 25% of evals (the playbook's own late window in its best-step rule),
# at least 4 evals so that the noise estimate rests on 3 eval-to-eval changes.
LATE_FRACTION = 0.25
LATE_MIN_POINTS = 4
# The late window must lie in the second half of training: with few evaluations the "last 4" would
# reach back to the start (step 0, the untrained model), where a curve falls fastest.
LATE_START = 0.5
# Late noise is high when the eval-to-eval noise exceeds 10% of the objective's level: at that size
# two trials 10% apart can swap ranks depending on which eval they stopped on.
LATE_NOISE_RELATIVE = 0.1
# The playbook's best-step rule for max_train_steps: best step always in the first 10% of training
# => too many steps; consistently in the last 25% => train longer and retune the decay schedule.
SATURATED_FRACTION = 0.1
NOT_CONVERGED_FRACTION = 0.75
# "Still improving" also needs the improvement over the last 25% (best value against the value
# when that stretch began) to exceed twice the eval-to-eval noise of the late evaluations: a best
# step that lands late by a noise wiggle on a flat curve is no sign of more to gain.
NOT_CONVERGED_NOISE_MULTIPLE = 2.0
# Training loss "rising": every eval in the last 25% of training lies above the curve's minimum by
# more than 10% of that minimum and 10% of the total decrease from the first eval, so a late wiggle
# or a spike the run recovered from does not count.
TRAIN_RISE_RELATIVE = 0.1
TRAIN_RISE_OF_DECREASE = 0.1


def check_overfitting(study: StudyData) -> list[Finding]:
    """Problematic overfitting: the validation objective rises after its best eval (mean of the last
    evals after it worse than the best by > OVERFIT_RELATIVE of its level and >
    OVERFIT_NOISE_MULTIPLE x its eval-to-eval noise, OVERFIT_MIN_AFTER evals after the best at
    least) while training loss is lower at the end than at that eval. Warning for the best trial per
    scientific setting (the best trial when nothing is scientific), info for the other trials."""
    if study.objective.startswith("train/"):
        # the objective is itself a training metric: there is no held-out curve to overfit
        return []
    leaders = _best_per_scientific_setting(study)
    found = {t.index: text for t in study.feasible if (text := _overfit(study, t))}
    scientific = study.space.by_role("scientific")
    findings = []
    flagged = [(label, t) for label, t in leaders if t.index in found]
    if flagged:
        checked = (
            f"the best trial of each of the {len(leaders)} scientific settings"
            if scientific
            else "the best trial"
        )
        detail = (
            f"Checked {checked} and found: "
            + "; ".join(
                f"trial {t.index}{f' ({label})' if label else ''}: {found[t.index]}"
                for label, t in flagged
            )
            + "."
        )
        action = (
            "rerun with more or better-tuned regularization (dropout, label smoothing, weight "
            "decay) before comparing scientific settings, rather than picking the setting that "
            "overfits less"
        )
        regularizers = [
            p.path for p in scientific if any(r in p.path.split(".")[-1] for r in REGULARIZERS)
        ]
        if regularizers:
            action += (
                f"; caveat: {', '.join(regularizers)} is itself a regularizer and scientific here, "
                "so overfitting at some of its values is part of the answer, not a flaw to fix"
            )
        findings.append(
            Finding(
                "overfitting",
                "warning",
                f"{study.objective} rises after its best step in the best trial"
                f"{'s' if len(flagged) > 1 else ''} ({trial_list([t for _, t in flagged])}): "
                "problematic overfitting",
                detail,
                action,
                tuple(t.index for _, t in flagged),
            )
        )
    leader_ids = {t.index for _, t in leaders}
    others = [t for t in study.feasible if t.index in found and t.index not in leader_ids]
    if others:
        findings.append(
            Finding(
                "overfitting",
                "info",
                f"{len(others)} other trial{'s' if len(others) > 1 else ''} overfit "
                f"({trial_list(others)})",
                "; ".join(f"trial {t.index}: {found[t.index]}" for t in others) + ".",
                "best-trial selection favours trials that are regularized more or trained worse (a "
                "too-small learning rate acts as a regularizer): check that the best trials are "
                "not best only because the others overfit",
                tuple(t.index for t in others),
            )
        )
    return findings


def check_late_variance(study: StudyData) -> list[Finding]:
    """High eval-to-eval noise of the objective late in training for any of the top 3 trials: over
    the last LATE_FRACTION of evals (LATE_MIN_POINTS at least), noise (std of consecutive
    differences / sqrt 2) above LATE_NOISE_RELATIVE of the level (see _level)."""
    noisy = []
    for t in study.feasible[:TOP_K]:
        steps, values = finite(t, study.objective)
        steps, values = steps[steps > 0], values[steps > 0]  # step 0 is never late
        length = _length(study, t)
        if len(values) < LATE_MIN_POINTS:
            continue
        k = _late_count(len(values))
        if length and steps[-k] < LATE_START * length:
            continue  # too few evaluations for a window late in training
        tail = values[-k:]
        if (np.diff(tail) <= 0).all() or (np.diff(tail) >= 0).all():
            continue  # a steady trend, however steep, is no eval-to-eval noise
        noise, level = _noise(tail), _level(study, tail)
        if level > 0 and noise > LATE_NOISE_RELATIVE * level:
            noisy.append((t, noise, level, len(tail)))
    if not noisy:
        return []
    detail = "; ".join(
        f"trial {t.index}: noise {fmt(n)} over the last {k} evals, {n / lvl:.0%} of the level "
        f"{fmt(lvl)}"
        for t, n, lvl, k in noisy
    )
    return [
        Finding(
            "late_variance",
            "warning",
            f"{study.objective} jumps from eval to eval late in training "
            f"({trial_list([n[0] for n in noisy])})",
            detail
            + f" (limit {LATE_NOISE_RELATIVE:.0%}). Trials then end on lucky or unlucky evals, "
            "which blurs comparisons and hurts reproducibility.",
            "reduce the noise before comparing: decay the learning rate to a small value by the "
            "end, use a larger batch size or more validation data, or evaluate Polyak-averaged "
            "(EMA) parameters",
            tuple(n[0].index for n in noisy),
        )
    ]


def check_not_converged(study: StudyData) -> list[Finding]:
    """Still improving at the end: every one of the top 3 trials has its best step in the last 25%
    of train.steps (at or after NOT_CONVERGED_FRACTION) -> more steps or a retuned schedule."""
    top = [t for t in study.feasible[:TOP_K] if t.best_step is not None and _length(study, t)]
    late = [t for t in top if _still_improving(study, t)]
    if not top or len(late) < len(top):
        return []
    return [
        Finding(
            "not_converged",
            "warning",
            f"The best trials were still improving at the end of training ({trial_list(late)})",
            f"{_every(len(top))} reaches its best {study.objective} in the last "
            f"{1 - NOT_CONVERGED_FRACTION:.0%} of training: " + _best_steps(study, late) + ".",
            "training is compute bound: train longer (raise train.steps for every trial, never "
            "tune it per trial) and retune the learning-rate decay schedule for the new length",
            tuple(t.index for t in late),
        )
    ]


def check_saturated_early(study: StudyData) -> list[Finding]:
    """Saturated early: every one of the top 3 trials has its best step within the first 10% of
    train.steps (at or before SATURATED_FRACTION) -> fewer steps would do."""
    top = [t for t in study.feasible[:TOP_K] if t.best_step is not None and _length(study, t)]
    early = [t for t in top if t.best_step <= SATURATED_FRACTION * _length(study, t)]
    if not top or len(early) < len(top):
        return []
    return [
        Finding(
            "saturated_early",
            "info",
            f"The best trials stop improving within the first {SATURATED_FRACTION:.0%} of training "
            f"({trial_list(early)})",
            f"{_every(len(top))} reaches its best {study.objective} early: "
            + _best_steps(study, early)
            + ". The rest of training buys nothing (the best checkpoint is "
            "kept, so the results stand).",
            "training is not compute bound: lower train.steps for the next round to save compute "
            "(the playbook: train.steps is way too high)",
            tuple(t.index for t in early),
        )
    ]


def check_train_loss_rising(study: StudyData) -> list[Finding]:
    """Training loss rising in feasible trials (train/loss, else train/batch_loss): every eval of
    the last LATE_FRACTION of training lies above the curve's minimum by more than
    TRAIN_RISE_RELATIVE of the minimum and TRAIN_RISE_OF_DECREASE of its decrease from the first
    eval -> probable pipeline bug."""
    rising = []
    for t in study.feasible:
        name, steps, values = train_loss(t)
        k = _late_count(len(values))
        if len(values) < 3 or k >= len(values):
            continue
        low = int(np.argmin(values))
        margin = max(
            TRAIN_RISE_RELATIVE * abs(values[low]),
            TRAIN_RISE_OF_DECREASE * (values[0] - values[low]),
        )
        if values[-k:].min() > values[low] + margin:
            rising.append(
                (
                    t,
                    f"trial {t.index}: {name} {fmt(values[low])} at step {steps[low]}, then at "
                    f"least {fmt(values[-k:].min())} over the last {k} evals (end "
                    f"{fmt(values[-1])})",
                )
            )
    if not rising:
        return []
    return [
        Finding(
            "train_loss_rising",
            "warning",
            f"Training loss rises during training in {len(rising)} "
            f"trial{'s' if len(rising) > 1 else ''} ({trial_list([t for t, _ in rising])})",
            "; ".join(text for _, text in rising)
            + ". Training loss should not go up on a feasible run.",
            "the playbook: a rising training loss usually indicates a bug in the training "
            "pipeline; check the data pipeline, the loss and the learning-rate schedule (if only "
            "high learning rates show it, it is instability instead: try warmup or gradient "
            "clipping)",
            tuple(t.index for t, _ in rising),
        )
    ]


def _still_improving(study: StudyData, t: TrialData) -> bool:
    """Best step in the last 25% of training, by more than the noise (NOT_CONVERGED_*), and not
    rising again after it (an overfitting trial is not still improving)."""
    length = _length(study, t)
    if t.best_step is None or not length or t.best_step < NOT_CONVERGED_FRACTION * length:
        return False
    if _overfit(study, t):
        return False
    steps, values = finite(t, study.objective)
    sign = 1 if study.mode == "min" else -1
    before = values[steps <= NOT_CONVERGED_FRACTION * length]
    if not len(before):
        return True
    gain = sign * (float(before[-1]) - float(np.min(sign * values) * sign))
    return gain > NOT_CONVERGED_NOISE_MULTIPLE * _noise(values[-_late_count(len(values)) :])


def _overfit(study: StudyData, t: TrialData) -> str | None:
    """How a trial overfits, in words, or None when it does not (rule in check_overfitting). A
    trial that never trained (search_space.never_trained) does not overfit: it never fit."""
    steps, values = finite(t, study.objective)
    sign = 1 if study.mode == "min" else -1
    if len(values) < OVERFIT_MIN_AFTER + 1 or never_trained(t):
        return None
    b = int(np.argmin(sign * values))
    after = values[b + 1 :]
    if len(after) < OVERFIT_MIN_AFTER:
        return None
    tail = after[-_late_count(len(values)) :]
    rise = sign * (float(np.mean(tail)) - values[b])
    margin = max(
        OVERFIT_RELATIVE * _level(study, values[b : b + 1]), OVERFIT_NOISE_MULTIPLE * _noise(after)
    )
    name, train_steps, train = train_loss(t)
    if rise <= margin or not len(train):
        return None
    at_best = train[int(np.argmin(np.abs(train_steps - steps[b])))]
    if not train[-1] < at_best:
        return None
    return (
        f"{study.objective} best {fmt(values[b])} at step {steps[b]}, mean of the last "
        f"{len(tail)} evals {fmt(values[b] + sign * rise)} (worse by {fmt(rise)}, margin "
        f"{fmt(margin)}), while {name} fell from {fmt(at_best)} to {fmt(train[-1])}"
    )


def _best_per_scientific_setting(study: StudyData) -> list[tuple[str, TrialData]]:
    """(label, best feasible trial) for each scientific setting (values, continuous ones bucketed);
    [('', best trial)] when nothing is scientific."""
    scientific = study.space.by_role("scientific")
    best: dict[tuple, tuple[str, TrialData]] = {}
    for t in study.feasible:  # best first, so the first trial seen per setting is its best
        key, labels = [], []
        for p in scientific:
            value, u = t.params.get(p.path), position(p, t.params.get(p.path))
            if p.space in ("float", "int") and u is not None:
                b = min(int(u * SCIENTIFIC_BUCKETS), SCIENTIFIC_BUCKETS - 1)
                key.append(b)
                labels.append(
                    f"{p.path} in [{fmt(value_at(p, b / SCIENTIFIC_BUCKETS))}, "
                    f"{fmt(value_at(p, (b + 1) / SCIENTIFIC_BUCKETS))}]"
                )
            else:
                key.append(repr(value))
                labels.append(f"{p.path}={value}")
        best.setdefault(tuple(key), (", ".join(labels), t))
    return list(best.values())


def _level(study: StudyData, values: np.ndarray) -> float:
    """The size an objective's changes are measured against: its mean magnitude (a loss or error
    rate, 0 = perfect), or for a maximized score within [0, 1] (accuracy) its distance from a
    perfect 1, so that an accuracy and its error rate give the same verdicts."""
    mean = float(np.mean(values))
    if study.mode == "max" and values.min() >= 0 and values.max() <= 1:
        return 1 - mean
    return abs(mean)


def _noise(values: np.ndarray) -> float:
    """Eval-to-eval noise: std of consecutive differences / sqrt(2), which ignores a steady
    trend."""
    return float(np.std(np.diff(values)) / math.sqrt(2)) if len(values) >= 3 else 0.0


def _late_count(n: int) -> int:
    """How many of n evals are 'late in training': the last LATE_FRACTION, LATE_MIN_POINTS at
    least."""
    return max(LATE_MIN_POINTS, math.ceil(LATE_FRACTION * n))


def _length(study: StudyData, t: TrialData) -> int | None:
    """The trial's planned length in steps (a prepended warmup included), else the steps it ran."""
    return study.run_length(t) or t.steps_run


def _best_steps(study: StudyData, trials: list[TrialData]) -> str:
    return ", ".join(
        f"trial {t.index} at step {t.best_step} of {_length(study, t)}" for t in trials
    )


def _every(n: int) -> str:
    """'The best trial' or 'Each of the 3 best trials'."""
    return "The best trial" if n == 1 else f"Each of the {n} best trials"
