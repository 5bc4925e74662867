"""The periodic evaluation's training sample against the whole training split (checklist item
66): a sample whose rate differs from the split's beyond sampling noise is a warning; uniform
samples of a healthy split are called skewed at most at the stated false-alarm rate."""

import numpy as np
from scipy import stats

from factories import constructed_study
from jaxplay.analysis.diagnostics import SKEW_FALSE_ALARM, diagnose

STEPS, N = 1000, 1000  # the trial length; train.train_eval_examples


def skew_findings(pairs, n=N):
    """The sample_skew findings of a study whose trial i scored its sample at pairs[i][0] and the
    whole training split at pairs[i][1] at its last step."""
    trials = [
        {
            "params": {"optimizer.learning_rate": 10.0 ** -(i + 2)},
            "curves": {
                "val/error": [(0, 0.9), (STEPS, 0.3)],
                "train/error": [(0, 0.9), (STEPS, sample)],
                "train_full/error": [(STEPS, whole)],
            },
        }
        for i, (sample, whole) in enumerate(pairs)
    ]
    study = constructed_study({}, trials, steps=STEPS, fixed={"train": {
        "steps": STEPS, "eval_every": 100, "train_eval_examples": n}})  # fmt: skip
    return [f for f in diagnose(study) if f.check == "sample_skew"]


def test_a_sample_scored_beyond_sampling_noise_from_the_whole_split_is_a_warning():
    # 0.10 on 1000 examples against 0.25 on the whole split: 11 standard errors away.
    (finding,) = skew_findings([(0.25, 0.25), (0.10, 0.25)])
    assert finding.severity == "warning" and finding.trials == (1,)
    assert "train/error 0.1 against 0.25" in finding.title
    assert "1000-example training sample" in finding.detail
    assert "train.train_eval_examples" in finding.action


def test_a_gap_within_sampling_noise_is_quiet():
    # One standard error, sqrt(0.25 * 0.75 / 1000) = 0.0137, is well within noise.
    assert skew_findings([(0.25 + 0.0137, 0.25)]) == []
    # A larger sample makes the same gap significant.
    assert skew_findings([(0.25 + 0.0137, 0.25)], n=100_000) != []


def test_uniform_samples_of_a_healthy_split_are_called_skewed_at_most_at_the_stated_rate():
    # Each study: 3 trials, each sampling 1000 of a 20000-example split with error 0.3, without
    # replacement, as the trainer's seeded uniform sample does.
    rng = np.random.default_rng(0)
    whole_n, bad = 20_000, 6_000
    studies = 300
    flagged = 0
    for _ in range(studies):
        draws = rng.hypergeometric(bad, whole_n - bad, N, size=3) / N
        flagged += bool(skew_findings([(d, bad / whole_n) for d in draws]))
    # At most SKEW_FALSE_ALARM of the studies, up to binomial chance (1 in 10^4 to exceed).
    assert flagged <= stats.binom.isf(1e-4, studies, SKEW_FALSE_ALARM)


def test_trials_without_a_whole_split_score_are_not_judged():
    trials = [{"params": {}, "curves": {"val/error": [(0, 0.9), (STEPS, 0.3)],
                                        "train/error": [(STEPS, 0.01)]}}]  # fmt: skip
    study = constructed_study({}, trials, steps=STEPS)
    assert [f for f in diagnose(study) if f.check == "sample_skew"] == []
