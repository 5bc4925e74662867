"""The playbook's automatic study diagnostics: each check reads a StudyData and returns Findings.

These answer the questions the playbook asks before any conclusion is drawn from a study
("Extracting insight from experimental results"): is the search space large enough, how many
trials are infeasible and where, what do the training curves of the best trials show (overfitting,
late noise, still improving, saturated early, training loss rising), and for Adam, does the trial
budget support the hyperparameters searched. The playbook gives few numbers, so each threshold is
a named constant below with the reason for its value. Checks look only at finished trials, so a
study that is still running can be diagnosed at any time.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from jaxplay import spaces
from jaxplay.analysis.study import StudyData, TrialData

CHECKS = (
    "boundary",
    "infeasible_fraction",
    "infeasible_at_edge",
    "overfitting",
    "late_variance",
    "not_converged",
    "saturated_early",
    "train_loss_rising",
    "adam_budget",
    "input_bound",
    "clipping",
)
SEVERITIES = ("warning", "info")

# The best trials looked at by the boundary and training-curve checks: the playbook's axis plots
# highlight the top 3 (Fig 1) and it asks for the curves "of at least the best few trials". The
# boundary check waits for 3 feasible trials: with fewer, a study that has just started would be
# flagged whenever its first trial happened to land near an edge.
TOP_K = 3
# "Near a boundary" = in the outer 10% of the range on the hyperparameter's own scale (log scale for
# log params). Uniform sampling puts 10% of trials at each edge, so the best trial and one more of
# the top 3 landing at the same edge by chance is unlikely (about 4% for an irrelevant hyperparameter).
EDGE_FRACTION = 0.1
# Diverged trials are "concentrated at an end" when at least 80% of them lie beyond the 80th (or
# below the 20th) percentile of the feasible trials' values: if divergence did not depend on the
# hyperparameter, each would land there with probability 0.2, so two out of two happens 4% of the
# time and the chance falls fast with more diverged trials.
CONCENTRATION_QUANTILE = 0.8
CONCENTRATION_SHARE = 0.8
MIN_DIVERGED = 2
# The best trial "borders" the diverged region when no feasible trial lies between them and the gap
# is at most a fifth of the range on its scale: across a wider unsampled gap nobody can tell where
# divergence starts.
ADJACENT_MAX_GAP = 0.2
# A wide learning-rate range routinely loses a third of its trials to divergence (the playbook's
# "good" search space in Fig 1 does), so only "a very large fraction" (more than half) is a warning.
INFEASIBLE_WARNING_FRACTION = 0.5
# The playbook's infeasible trials include those that "get really bad loss values" (item 33), not
# only NaNs: a completed trial whose training loss never fell below 90% of its step-0 value did not
# train at all (e.g. Adam at a learning rate so high that it sits at chance level without a NaN).
NO_PROGRESS_FRACTION = 0.9
# The playbook's gradient clipping rule: a threshold at the 90th percentile of the gradient norm,
# and ">50% of the updates getting clipped" counts as extremely aggressive clipping.
CLIP_PERCENTILE = 90
CLIP_AGGRESSIVE_FRACTION = 0.5
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
# Late noise is high when the eval-to-eval noise exceeds 10% of the objective's level: at that size
# two trials 10% apart can swap ranks depending on which eval they stopped on.
LATE_NOISE_RELATIVE = 0.1
# The playbook's best-step rule for max_train_steps: best step always in the first 10% of training
# => too many steps; consistently in the last 25% => train longer and retune the decay schedule.
SATURATED_FRACTION = 0.1
NOT_CONVERGED_FRACTION = 0.75
# Training loss "rising": every eval in the last 25% of training lies above the curve's minimum by
# more than 10% of that minimum and 10% of the total decrease from the first eval, so a late wiggle
# or a spike the run recovered from does not count.
TRAIN_RISE_RELATIVE = 0.1
TRAIN_RISE_OF_DECREASE = 0.1
TRAIN_LOSS_METRICS = ("train/loss", "train/batch_loss")
# The playbook's Adam table: <10 trials: learning rate; 10-25: + b1; 25+: + eps; "substantially
# more than 25": + b2. We read "substantially more" as 100 trials, 4x the 25 row and the size of the
# playbook's own ResNet-50 study (Fig 3).
ADAM_FAMILY = ("adam", "nadam", "adamw")
# Input-bound: a trial's median period spent more than 10% of its time waiting for the streamed
# input pipeline (train/input_wait_fraction; the device pipeline has nothing to wait for).
INPUT_WAIT_WARNING = 0.1
ADAM_BUDGET = (
    (0, "optimizer.learning_rate"),
    (10, "optimizer.b1"),
    (25, "optimizer.eps"),
    (100, "optimizer.b2"),
)


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


def diagnose(study: StudyData) -> list[Finding]:
    """All findings, warnings first."""
    findings = [f for name in CHECKS for f in globals()[f"check_{name}"](study)]
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


# ----------------------------------------------------------------------------------------------
# Search space and infeasible trials.


def check_boundary(study: StudyData) -> list[Finding]:
    """Best trials near an edge of a float/int range: the best trial and a majority of the top 3
    feasible trials (3 needed) lie in the outer EDGE_FRACTION (10%) of the range on its scale -> widen
    it that way. When diverged trials concentrate at that same end, the finding says so (item 35)."""
    findings = []
    top = study.feasible[:TOP_K]
    if len(top) < TOP_K:
        return []
    for p in study.space:
        if p.space not in ("float", "int"):
            continue  # a discrete or categorical list has no "beyond" to widen into
        placed = [(t, _position(p, t.params.get(p.path))) for t in top]
        placed = [(t, u) for t, u in placed if u is not None]
        if len(placed) < TOP_K or placed[0][0] is not top[0]:
            continue
        for end in ("lower", "upper"):
            at_edge = [t for t, u in placed if _beyond(u, end, EDGE_FRACTION)]
            if not _beyond(placed[0][1], end, EDGE_FRACTION) or len(at_edge) <= len(placed) / 2:
                continue
            values = ", ".join(f"trial {t.index} ({_fmt(t.params[p.path])})" for t in at_edge)
            bound, verb = (p.min, "lower min") if end == "lower" else (p.max, "raise max")
            detail = (
                f"{len(at_edge)} of the top {len(placed)} feasible trials by {study.objective}, the best "
                f"included, lie in the {end} {EDGE_FRACTION:.0%} of {p.path}'s range "
                f"[{_fmt(p.min)}, {_fmt(p.max)}] on its {p.scale} scale: {values}. The playbook calls a "
                "search space suspicious when its best point is close to its boundary."
            )
            action = (
                f"widen the range {'downward' if end == 'lower' else 'upward'} ({verb}, now {_fmt(bound)}) "
                "and rerun until the best trials are no longer near the edge"
            )
            cluster = _diverged_cluster(study, p)
            if cluster and cluster[0] == end:
                detail += (
                    f" Diverged trials ({_trials(cluster[1])}) also sit at this end, so the model may be "
                    f"unstable there, which may keep it from better values of {p.path}."
                )
                action = (
                    "the model may be unstable beyond this edge: try learning-rate warmup or gradient "
                    f"clipping{_clip_hint(study)} first, then {verb} and rerun"
                )
            findings.append(
                Finding(
                    "boundary",
                    "warning",
                    f"The best trials sit at the {end} edge of {p.path}",
                    detail,
                    action,
                    tuple(t.index for t in at_edge),
                    p.path,
                )
            )
    return findings


def check_infeasible_fraction(study: StudyData) -> list[Finding]:
    """Share of finished trials that are infeasible (diverged, crashed, or completed without training:
    NO_PROGRESS_FRACTION): info when any, warning when more than INFEASIBLE_WARNING_FRACTION (half)
    -> adjust the search space, look for bugs."""
    untrained = [t for t in study.trials if never_trained(t)]
    finished, bad = study.finished, study.infeasible + untrained
    if not finished or not bad:
        return []
    fraction = len(bad) / len(finished)
    diverged = [t for t in bad if t.status == "infeasible"]
    crashed = [t for t in bad if t.status == "failed"]
    parts = []
    if diverged:
        parts.append(f"{len(diverged)} diverged ({_trials(diverged)})")
    if untrained:
        parts.append(
            f"{len(untrained)} never trained ({_trials(untrained)}: the training loss stayed above "
            f"{NO_PROGRESS_FRACTION:.0%} of its initial value)"
        )
    if crashed:
        reason = _last_line(crashed[0].error)
        if reason:
            reason = f": {reason}" if len(crashed) == 1 else f"; trial {crashed[0].index}: {reason}"
        parts.append(f"{len(crashed)} crashed ({_trials(crashed)}{reason})")
    detail = (
        f"{len(bad)} of {len(finished)} finished trials ({fraction:.0%}) are infeasible: "
        f"{' and '.join(parts)}. More than {INFEASIBLE_WARNING_FRACTION:.0%} is a warning."
    )
    if fraction > INFEASIBLE_WARNING_FRACTION:
        return [
            Finding(
                "infeasible_fraction",
                "warning",
                f"Most trials ({fraction:.0%}) are infeasible",
                detail,
                "adjust the search space (narrow it away from where trials fail, or reparameterize it) "
                "and check the training code for bugs before drawing conclusions from this study",
                tuple(t.index for t in bad),
            )
        ]
    return [
        Finding(
            "infeasible_fraction",
            "info",
            f"{fraction:.0%} of the finished trials are infeasible",
            detail,
            "look at where they sit on the axis plots; a few diverged trials at the high end of a wide "
            "learning-rate range are normal"
            + ("; read the crashed trials' errors" if crashed else ""),
            tuple(t.index for t in bad),
        )
    ]


def check_infeasible_at_edge(study: StudyData) -> list[Finding]:
    """Diverged trials concentrated at one end of a numeric hyperparameter (at least
    CONCENTRATION_SHARE of them beyond the feasible trials' 80th/20th percentile, MIN_DIVERGED of
    them at least): a warning when the best trial borders that region (no feasible trial between them,
    a gap of at most ADJACENT_MAX_GAP of the range; instability may hold it back, item 35), else info."""
    findings = []
    best = study.feasible[0] if study.feasible else None
    for p in study.space:
        cluster = _diverged_cluster(study, p)
        if cluster is None:
            continue
        end, diverged, threshold = cluster
        sign = 1 if end == "upper" else -1
        frontier = min(diverged, key=lambda t: sign * _position(p, t.params[p.path]))
        percentile = 100 * (
            CONCENTRATION_QUANTILE if end == "upper" else 1 - CONCENTRATION_QUANTILE
        )
        detail = (
            f"{len(diverged)} of {sum(_is_diverged(t, p) for t in study.trials)} infeasible trials "
            "(diverged or never trained) "
            f"({_trials(diverged)}) have {p.path} {'above' if end == 'upper' else 'below'} "
            f"{_fmt(threshold)}, the {percentile:.0f}th percentile of the feasible trials' values; "
            "the nearest infeasible value is "
            f"{_fmt(frontier.params[p.path])} (trial {frontier.index})."
        )
        adjacent = best is not None and _adjacent(study, p, best, frontier, sign)
        remedy = (
            f"learning-rate warmup (best for early instability) or gradient clipping{_clip_hint(study)}, "
            "then rerun; lowering the learning rate is the playbook's last resort"
        )
        if adjacent:
            detail += (
                f" The best trial ({best.index}, {p.path}={_fmt(best.params[p.path])}) borders that region: "
                "no feasible trial lies between them."
            )
            findings.append(
                Finding(
                    "infeasible_at_edge",
                    "warning",
                    f"The best trial borders the region where {p.path} makes training fail",
                    detail,
                    "instability may be keeping the model from better values: try " + remedy,
                    tuple(t.index for t in diverged),
                    p.path,
                )
            )
        else:
            findings.append(
                Finding(
                    "infeasible_at_edge",
                    "info",
                    f"Training fails at the {end} end of {p.path}",
                    detail,
                    "nothing needed while the best trials stay clear of it (every model diverges at "
                    "a high enough learning rate); to reach further that way, try " + remedy,
                    tuple(t.index for t in diverged),
                    p.path,
                )
            )
    return findings


# ----------------------------------------------------------------------------------------------
# Training curves.


def check_overfitting(study: StudyData) -> list[Finding]:
    """Problematic overfitting: the validation objective rises after its best eval (mean of the last
    evals after it worse than the best by > OVERFIT_RELATIVE of its level and > OVERFIT_NOISE_MULTIPLE
    x its eval-to-eval noise, OVERFIT_MIN_AFTER evals after the best at least) while training loss is
    lower at the end than at that eval. Warning for the best trial per scientific setting (the best
    trial when nothing is scientific), info for the other trials."""
    if study.objective.startswith("train/"):
        return []  # the objective is itself a training metric: there is no held-out curve to overfit
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
            "rerun with more or better-tuned regularization (dropout, label smoothing, weight decay) before "
            "comparing scientific settings, rather than picking the setting that overfits less"
        )
        regularizers = [
            p.path for p in scientific if any(r in p.path.split(".")[-1] for r in REGULARIZERS)
        ]
        if regularizers:
            action += (
                f"; caveat: {', '.join(regularizers)} is itself a regularizer and scientific here, so "
                "overfitting at some of its values is part of the answer, not a flaw to fix"
            )
        findings.append(
            Finding(
                "overfitting",
                "warning",
                f"{study.objective} rises after its best step in the best trial"
                f"{'s' if len(flagged) > 1 else ''} ({_trials([t for _, t in flagged])}): "
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
                f"({_trials(others)})",
                "; ".join(f"trial {t.index}: {found[t.index]}" for t in others) + ".",
                "best-trial selection favours trials that are regularized more or trained worse (a too-small learning "
                "rate acts as a regularizer): check that the best trials are not best only because the others overfit",
                tuple(t.index for t in others),
            )
        )
    return findings


def check_late_variance(study: StudyData) -> list[Finding]:
    """High eval-to-eval noise of the objective late in training for any of the top 3 trials: over the
    last LATE_FRACTION of evals (LATE_MIN_POINTS at least), noise (std of consecutive differences / sqrt 2)
    above LATE_NOISE_RELATIVE of the level (see _level)."""
    noisy = []
    for t in study.feasible[:TOP_K]:
        _, values = _finite(t, study.objective)
        if len(values) < LATE_MIN_POINTS:
            continue
        tail = values[-_late_count(len(values)) :]
        noise, level = _noise(tail), _level(study, tail)
        if level > 0 and noise > LATE_NOISE_RELATIVE * level:
            noisy.append((t, noise, level, len(tail)))
    if not noisy:
        return []
    detail = "; ".join(
        f"trial {t.index}: noise {_fmt(n)} over the last {k} evals, {n / lvl:.0%} of the level "
        f"{_fmt(lvl)}"
        for t, n, lvl, k in noisy
    )
    return [
        Finding(
            "late_variance",
            "warning",
            f"{study.objective} jumps from eval to eval late in training ({_trials([n[0] for n in noisy])})",
            detail
            + f" (limit {LATE_NOISE_RELATIVE:.0%}). Trials then end on lucky or unlucky evals, which "
            "blurs comparisons and hurts reproducibility.",
            "reduce the noise before comparing: decay the learning rate to a small value by the end, use a "
            "larger batch size or more validation data, or evaluate Polyak-averaged (EMA) parameters",
            tuple(n[0].index for n in noisy),
        )
    ]


def check_not_converged(study: StudyData) -> list[Finding]:
    """Still improving at the end: every one of the top 3 trials has its best step in the last 25%
    of train.steps (at or after NOT_CONVERGED_FRACTION) -> more steps or a retuned schedule."""
    top = [t for t in study.feasible[:TOP_K] if t.best_step is not None and _length(study, t)]
    late = [t for t in top if t.best_step >= NOT_CONVERGED_FRACTION * _length(study, t)]
    if not top or len(late) < len(top):
        return []
    return [
        Finding(
            "not_converged",
            "warning",
            f"The best trials were still improving at the end of training ({_trials(late)})",
            f"{_every(len(top))} reaches its best {study.objective} in the last "
            f"{1 - NOT_CONVERGED_FRACTION:.0%} of training: " + _best_steps(study, late) + ".",
            "training is compute bound: train longer (raise train.steps for every trial, never tune it "
            "per trial) and retune the learning-rate decay schedule for the new length",
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
            f"({_trials(early)})",
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
    """Training loss rising in feasible trials (train/loss, else train/batch_loss): every eval of the
    last LATE_FRACTION of training lies above the curve's minimum by more than TRAIN_RISE_RELATIVE of
    the minimum and TRAIN_RISE_OF_DECREASE of its decrease from the first eval -> probable pipeline bug."""
    rising = []
    for t in study.feasible:
        name, steps, values = _train_loss(t)
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
                    f"trial {t.index}: {name} {_fmt(values[low])} at step {steps[low]}, then at least "
                    f"{_fmt(values[-k:].min())} over the last {k} evals (end {_fmt(values[-1])})",
                )
            )
    if not rising:
        return []
    return [
        Finding(
            "train_loss_rising",
            "warning",
            f"Training loss rises during training in {len(rising)} trial{'s' if len(rising) > 1 else ''} "
            f"({_trials([t for t, _ in rising])})",
            "; ".join(text for _, text in rising)
            + ". Training loss should not go up on a feasible run.",
            "the playbook: a rising training loss usually indicates a bug in the training pipeline; check "
            "the data pipeline, the loss and the learning-rate schedule (if only high learning rates show "
            "it, it is instability instead: try warmup or gradient clipping)",
            tuple(t.index for t, _ in rising),
        )
    ]


# ----------------------------------------------------------------------------------------------
# Optimizer budget.


def check_adam_budget(study: StudyData) -> list[Finding]:
    """For adam/nadam/adamw studies with a search space: warning when the learning rate is not searched,
    and for each nuisance Adam hyperparameter the trial budget (`num_trials`) does not support
    (ADAM_BUDGET: <10 trials: learning rate; 10+: + b1; 25+: + eps; 100+: + b2)."""
    if not len(study.space) or not _is_adam_study(study):
        return []
    if (study.parent or {}).get("action") in ("warmup", "clip"):
        return []  # the learning rate is fixed on purpose: the study asks what lets it be that high
    budget = study.record.get("num_trials") or len(study.trials)
    parent = study.parent or {}
    if parent.get("action") == "exploit":  # the parent's trials are part of the search too
        budget += sum(len(r["trials"]) for r in study.family if r["name"] == parent.get("study"))
    supported = [path for minimum, path in ADAM_BUDGET if budget >= minimum]
    table = ", ".join(_short(path) for path in supported)
    findings = []
    if "optimizer.learning_rate" not in study.space.paths:
        findings.append(
            Finding(
                "adam_budget",
                "warning",
                "The learning rate is not searched",
                f"This {_optimizer(study)} study searches {', '.join(study.space.paths)} but keeps "
                "optimizer.learning_rate fixed; the playbook tunes the learning rate in every study, "
                f"and with {budget} trials its Adam table tunes {table}.",
                "search optimizer.learning_rate (log scale) as a nuisance hyperparameter, so that "
                "each setting is compared at its own best learning rate",
                param="optimizer.learning_rate",
            )
        )
    for minimum, path in ADAM_BUDGET:
        p = next((p for p in study.space if p.path == path), None)
        if p is None or p.role != "nuisance" or budget >= minimum:
            continue  # a scientific Adam hyperparameter is the question itself, not a budget choice
        findings.append(
            Finding(
                "adam_budget",
                "warning",
                f"{path} is searched with too few trials ({budget}) for it to pay off",
                f"The playbook's Adam table: fewer than 10 trials tune the learning rate only, 10-25 "
                "add b1, 25 or more add eps, and substantially more (here: 100 or more) add b2. "
                f"With {budget} trials it tunes {table}; {path} needs {minimum} or more.",
                f"fix {path} at its default and spend the trials on {table}, or raise "
                f"study.num_trials to {minimum} or more",
                param=path,
            )
        )
    return findings


# ----------------------------------------------------------------------------------------------
# Helpers.


def _position(p: spaces.Hyperparameter, value) -> float | None:
    """Where a value sits in p's range on p's scale (0 at min, 1 at max; discrete: by index); None
    when it has no place (categorical, not a number, empty range)."""
    if p.space == "discrete":
        if value not in p.values or len(p.values) < 2 or not all(_is_number(v) for v in p.values):
            return None
        return p.values.index(value) / (len(p.values) - 1)
    if p.space not in ("float", "int") or not _is_number(value) or not p.max > p.min:
        return None
    if p.scale == "log":
        return math.log(value / p.min) / math.log(p.max / p.min) if value > 0 else None
    return (value - p.min) / (p.max - p.min)


def _beyond(u: float, end: str, fraction: float) -> bool:
    """True when position u lies in the outer `fraction` of the range at `end`."""
    return u <= fraction if end == "lower" else u >= 1 - fraction


def _is_diverged(t: TrialData, p: spaces.Hyperparameter) -> bool:
    # Divergence and no training at all speak of instability; a crash is a bug or a resource limit.
    return (t.status == "infeasible" or never_trained(t)) and _position(
        p, t.params.get(p.path)
    ) is not None


def never_trained(t: TrialData) -> bool:
    """Infeasible though completed: a trial whose training loss never fell below NO_PROGRESS_FRACTION of its step-0 value."""
    if t.status != "completed":
        return False
    _, steps, values = _train_loss(t)
    return (
        len(values) >= 2 and steps[0] == 0 and values[1:].min() >= NO_PROGRESS_FRACTION * values[0]
    )


def _trained(study: StudyData) -> list[TrialData]:
    """Feasible trials that did train, best first."""
    return [t for t in study.feasible if not never_trained(t)]


def _diverged_cluster(
    study: StudyData, p: spaces.Hyperparameter
) -> tuple[str, list[TrialData], float] | None:
    """(end, diverged trials beyond the feasible percentile, that percentile's value) when diverged
    trials concentrate at one end of p, else None."""
    diverged = [t for t in study.trials if _is_diverged(t, p)]
    feasible = [_position(p, t.params.get(p.path)) for t in _trained(study)]
    feasible = [u for u in feasible if u is not None]
    if len(diverged) < MIN_DIVERGED or not feasible:
        return None
    for end, q in (("upper", CONCENTRATION_QUANTILE), ("lower", 1 - CONCENTRATION_QUANTILE)):
        threshold = float(np.quantile(feasible, q))
        sign = 1 if end == "upper" else -1
        beyond = [t for t in diverged if sign * (_position(p, t.params[p.path]) - threshold) > 0]
        if len(beyond) >= CONCENTRATION_SHARE * len(diverged):
            return end, beyond, _value_at(p, threshold)
    return None


def _adjacent(study: StudyData, p, best: TrialData, frontier: TrialData, sign: int) -> bool:
    """True when the best trial is within ADJACENT_MAX_GAP of the nearest diverged trial (or past it)
    and no feasible trial lies between them."""
    u_best = _position(p, best.params.get(p.path))
    u_front = _position(p, frontier.params[p.path])
    if u_best is None or sign * (u_front - u_best) > ADJACENT_MAX_GAP:
        return False
    between = [
        u
        for t in _trained(study)
        if (u := _position(p, t.params.get(p.path))) is not None
        and sign * u_best < sign * u < sign * u_front
    ]
    return not between


def _value_at(p: spaces.Hyperparameter, u: float):
    """The value of p at position u of its range (the inverse of _position)."""
    if p.space == "discrete":
        return p.values[round(u * (len(p.values) - 1))]
    if p.scale == "log":
        return p.min * (p.max / p.min) ** u
    return p.min + u * (p.max - p.min)


def check_input_bound(study: StudyData) -> list[Finding]:
    """Input-bound trials: the median over a trial's periods of train/input_wait_fraction exceeds
    INPUT_WAIT_WARNING -> make the pipeline keep up before reading anything into step times
    (playbook "Optimizing the input pipeline")."""
    slow = _trials_above(study, "train/input_wait_fraction", np.median, INPUT_WAIT_WARNING)
    if not slow:
        return []
    worst, trial = max(slow, key=lambda p: p[0])
    detail = (
        f"{len(slow)} trial(s) ({_trials([t for _, t in slow])}) spent more than {INPUT_WAIT_WARNING:.0%} of "
        f"their median evaluation period waiting for input (train/input_wait_fraction); trial "
        f"{trial.index}: {worst:.0%}."
    )
    return [
        Finding(
            "input_bound",
            "warning",
            f"Input-bound: training waited for data {worst:.0%} of the time",
            detail,
            "profile the input pipeline (jax.profiler) and make it keep up: raise data.read_threads "
            "or data.prefetch, do expensive preprocessing once offline, or use data.pipeline='device' "
            "when the dataset fits on the device; until then step times measure the pipeline, not the model",
            tuple(t.index for _, t in slow),
        )
    ]


def check_clipping(study: StudyData) -> list[Finding]:
    """Gradient clipping so aggressive that it replaces the learning rate: over a trial's training,
    more than CLIP_AGGRESSIVE_FRACTION (half) of the updates were clipped (playbook "Gradient
    clipping": ">50% of the updates getting clipped" -> reduce the learning rate instead)."""
    heavy = _trials_above(study, "train/clip_fraction", np.mean, CLIP_AGGRESSIVE_FRACTION)
    if not heavy:
        return []
    worst, trial = max(heavy, key=lambda p: p[0])
    detail = (
        f"{len(heavy)} trial(s) ({_trials([t for _, t in heavy])}) clipped more than "
        f"{CLIP_AGGRESSIVE_FRACTION:.0%} of their updates (train/clip_fraction); trial {trial.index}: {worst:.0%}. "
        'The playbook calls this extremely aggressive clipping: "in essence a strange way of reducing the '
        'learning rate", and it slows training down.'
    )
    return [
        Finding(
            "clipping",
            "warning",
            f"Gradient clipping cuts {worst:.0%} of the updates",
            detail,
            "lower the learning rate instead, or raise train.grad_clip_norm to just above the "
            f"typical gradient norm{_clip_hint(study)}",
            tuple(t.index for _, t in heavy),
        )
    ]


def _trials_above(
    study: StudyData, metric: str, summary, limit: float
) -> list[tuple[float, TrialData]]:
    """(summary of the metric's logged values, trial) for each trial whose summary exceeds limit."""
    found = []
    for t in study.trials:
        values = _finite(t, metric)[1]
        if len(values) and float(summary(values)) > limit:
            found.append((float(summary(values)), t))
    return found


def _clip_hint(study: StudyData) -> str:
    """' (e.g. train.grad_clip_norm=1.2, ...)': the playbook's clip threshold from the best trial's logged
    gradient norms, or '' when it logged none."""
    threshold = clip_threshold(study.feasible[0]) if study.feasible else None
    if threshold is None:
        return ""
    return (
        f" (e.g. train.grad_clip_norm={_fmt(threshold)}, the "
        f"{CLIP_PERCENTILE}th percentile of the best trial's gradient norm)"
    )


def clip_threshold(t: TrialData) -> float | None:
    """The playbook's gradient-clipping threshold for a trial: the CLIP_PERCENTILE (90th) percentile
    of its logged gradient norms; None when it logged none."""
    norms = _finite(t, "train/grad_norm")[1]
    return float(np.percentile(norms, CLIP_PERCENTILE)) if len(norms) else None


def _overfit(study: StudyData, t: TrialData) -> str | None:
    """How a trial overfits, in words, or None when it does not (rule in check_overfitting)."""
    steps, values = _finite(t, study.objective)
    sign = 1 if study.mode == "min" else -1
    if len(values) < OVERFIT_MIN_AFTER + 1:
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
    name, train_steps, train = _train_loss(t)
    if rise <= margin or not len(train):
        return None
    at_best = train[int(np.argmin(np.abs(train_steps - steps[b])))]
    if not train[-1] < at_best:
        return None
    return (
        f"{study.objective} best {_fmt(values[b])} at step {steps[b]}, mean of the last {len(tail)} evals "
        f"{_fmt(values[b] + sign * rise)} (worse by {_fmt(rise)}, margin {_fmt(margin)}), while {name} fell "
        f"from {_fmt(at_best)} to {_fmt(train[-1])}"
    )


def _best_per_scientific_setting(study: StudyData) -> list[tuple[str, TrialData]]:
    """(label, best feasible trial) for each scientific setting (values, continuous ones bucketed);
    [('', best trial)] when nothing is scientific."""
    scientific = study.space.by_role("scientific")
    best: dict[tuple, tuple[str, TrialData]] = {}
    for t in study.feasible:  # best first, so the first trial seen per setting is its best
        key, labels = [], []
        for p in scientific:
            value, u = t.params.get(p.path), _position(p, t.params.get(p.path))
            if p.space in ("float", "int") and u is not None:
                b = min(int(u * SCIENTIFIC_BUCKETS), SCIENTIFIC_BUCKETS - 1)
                key.append(b)
                labels.append(
                    f"{p.path} in [{_fmt(_value_at(p, b / SCIENTIFIC_BUCKETS))}, "
                    f"{_fmt(_value_at(p, (b + 1) / SCIENTIFIC_BUCKETS))}]"
                )
            else:
                key.append(repr(value))
                labels.append(f"{p.path}={value}")
        best.setdefault(tuple(key), (", ".join(labels), t))
    return list(best.values())


def _train_loss(t: TrialData) -> tuple[str, np.ndarray, np.ndarray]:
    """(name, steps, values) of the trial's training loss: train/loss, else train/batch_loss (may be empty)."""
    name = next((m for m in TRAIN_LOSS_METRICS if len(_finite(t, m)[1])), TRAIN_LOSS_METRICS[0])
    return (name, *_finite(t, name))


def _level(study: StudyData, values: np.ndarray) -> float:
    """The size an objective's changes are measured against: its mean magnitude (a loss or error rate,
    0 = perfect), or for a maximized score within [0, 1] (accuracy) its distance from a perfect 1, so
    that an accuracy and its error rate give the same verdicts."""
    mean = float(np.mean(values))
    if study.mode == "max" and values.min() >= 0 and values.max() <= 1:
        return 1 - mean
    return abs(mean)


def _finite(t: TrialData, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A metric's (steps, values) without its missing (NaN) or infinite points."""
    steps, values = t.curve(name)
    keep = np.isfinite(values)
    return steps[keep], values[keep]


def _noise(values: np.ndarray) -> float:
    """Eval-to-eval noise: std of consecutive differences / sqrt(2), which ignores a steady trend."""
    return float(np.std(np.diff(values)) / math.sqrt(2)) if len(values) >= 3 else 0.0


def _late_count(n: int) -> int:
    """How many of n evals are 'late in training': the last LATE_FRACTION, LATE_MIN_POINTS at least."""
    return max(LATE_MIN_POINTS, math.ceil(LATE_FRACTION * n))


def _length(study: StudyData, t: TrialData) -> int | None:
    """The trial's planned length in steps: train.steps, else the steps it ran."""
    return study.train_steps or t.steps_run


def _best_steps(study: StudyData, trials: list[TrialData]) -> str:
    return ", ".join(
        f"trial {t.index} at step {t.best_step} of {_length(study, t)}" for t in trials
    )


def _every(n: int) -> str:
    """'The best trial' or 'Each of the 3 best trials'."""
    return "The best trial" if n == 1 else f"Each of the {n} best trials"


def _is_adam_study(study: StudyData) -> bool:
    """True when every trial trains with Adam, NAdam or AdamW (fixed, or all searched choices)."""
    name = next((p for p in study.space if p.path == "optimizer.name"), None)
    names = name.values if name is not None else [_optimizer(study)]
    return bool(names) and all(n in ADAM_FAMILY for n in names)


def _optimizer(study: StudyData) -> str | None:
    return ((study.record.get("config") or {}).get("optimizer") or {}).get("name")


def _short(path: str) -> str:
    return path.split(".")[-1].replace("learning_rate", "learning rate")


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _trials(trials: list[TrialData]) -> str:
    """'trial 3' or 'trials 3, 5, 8'."""
    return ("trial " if len(trials) == 1 else "trials ") + ", ".join(str(t.index) for t in trials)


def _last_line(text: str | None) -> str:
    return text.strip().splitlines()[-1] if text and text.strip() else ""


def _fmt(x) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)
