"""Is the periodic evaluation's training sample skewed against the whole training split?

The playbook ("Choosing a sample for periodic evaluation"): a sampled evaluation set must show no
skew between the sample's performance and the whole offline set's. The trainer scores a fixed,
seeded uniform sample of `train.train_eval_examples` training examples at every evaluation
(`train/<metric>`) and, at a trial's end when it can afford the pass, the whole training split
(`train_full/<metric>`) with the same parameters. A uniform sample's rate differs from the whole
split's only by sampling noise; a larger gap means the sample is not what it claims to be (a
sorted or filtered split, a sampling bug), so every train/ curve of the study misreads the
training set.

Sampling noise, derived: an error or accuracy is the mean of a per-example score in [0, 1] with
mean p, whose variance is at most p(1 - p); the mean of n examples drawn without replacement has
a standard error of at most sqrt(p(1 - p) / n) (the finite-population factor (N - n) / (N - 1) only
shrinks it, so leaving it out, N being unknown to the store, errs towards silence). A sample's rate
also moves in steps of 1 / n, which the threshold adds.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from jaxplay.analysis.diagnostics.common import Finding, trial_list
from jaxplay.analysis.study import StudyData, TrialData
from jaxplay.config import DEFAULT_TRAIN_EVAL_EXAMPLES
from jaxplay.values import fmt

SAMPLED, WHOLE = "train/", "train_full/"
# Rates a binomial standard error bounds (a loss has no such bound).
RATE_METRICS = ("error", "accuracy")
# Chance of a false alarm per study, shared over the trials and metrics tested (Bonferroni): a
# healthy uniform sample is called skewed in at most 1 study in 100.
SKEW_FALSE_ALARM = 0.01


def check_sample_skew(study: StudyData) -> list[Finding]:
    """A warning when a trial's sampled training metric at its last evaluation differs from the
    same metric on the whole training split by more than sampling noise allows."""
    train = (study.record.get("config") or {}).get("train") or {}
    n = int(train.get("train_eval_examples") or DEFAULT_TRAIN_EVAL_EXAMPLES)
    pairs = [(t, name) for t in study.feasible for name in _rates(t)]
    if not pairs:
        return []
    z = NormalDist().inv_cdf(1 - SKEW_FALSE_ALARM / (2 * len(pairs)))
    skewed = []
    for t, name in pairs:
        gap = _gap(t, name, n, z)
        if gap is not None:
            skewed.append((t, name, *gap))
    if not skewed:
        return []
    t, name, sample, whole, allowed = max(skewed, key=lambda s: abs(s[2] - s[3]) - s[4])
    trials = sorted({s[0].index for s in skewed})
    return [
        Finding(
            "sample_skew",
            "warning",
            f"The training sample is skewed: {SAMPLED}{name} {fmt(sample)} against "
            f"{fmt(whole)} on the whole training split",
            f"{len(trials)} trial(s) ({trial_list([s[0] for s in skewed])}) score their "
            f"{n}-example training sample differently from the whole split at the same step, "
            f"beyond sampling noise (trial {t.index}: a gap of {fmt(abs(sample - whole))} where "
            f"noise allows {fmt(allowed)}, a {SKEW_FALSE_ALARM:.0%} false-alarm rate per study). "
            f"Every {SAMPLED} curve of the study then misreads the training set.",
            "check how the training split is ordered and sampled (a sorted or filtered split, or "
            "a workload whose load_data returns a subset); raise train.train_eval_examples to "
            "shrink the noise; until then read the train_full/ metrics",
            tuple(trials),
        )
    ]


def _rates(t: TrialData) -> list[str]:
    """The rate metrics a trial scored both on its sample and on the whole split."""
    return sorted(
        key[len(WHOLE) :]
        for key in t.curves
        if key.startswith(WHOLE)
        and key.endswith(RATE_METRICS)
        and SAMPLED + key[len(WHOLE) :] in t.curves
    )


def _gap(t: TrialData, name: str, n: int, z: float) -> tuple[float, float, float] | None:
    """(sample, whole, allowed gap) when the two differ beyond noise at the whole split's step."""
    steps, whole = t.finite(WHOLE + name)
    if not len(steps):
        return None
    at, p = int(steps[-1]), float(whole[-1])
    sample_steps, sample = t.finite(SAMPLED + name)
    same = sample_steps == at
    if not same.any():
        return None
    value = float(sample[same][-1])
    allowed = z * math.sqrt(max(p * (1 - p), 0.0) / n) + 1 / n
    return (value, p, allowed) if abs(value - p) > allowed else None
