"""The playbook's automatic diagnostics on hand-built studies: each check fires where it must and
stays quiet on the close case next to it; a healthy study gets no findings; odd studies do not
crash."""

import math

import numpy as np
import pytest

from factories import constructed_study
from jaxplay import spaces
from jaxplay.analysis import diagnostics
from jaxplay.analysis.diagnostics import CHECKS, diagnose
from jaxplay.analysis.study import TrialData
from jaxplay.values import fmt

STEPS, EVERY = 1000, 100
LR, B1 = "optimizer.learning_rate", "optimizer.b1"
LR_SPACE = {"optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)}}


def decay(start, end, *, best_at=STEPS, rise=0.0, wiggle=0.0):
    """Eval points of a curve that decays from start towards end until best_at and is flat after it,
    plus a linear rise after best_at reaching `rise` at the last step, plus an alternating
    +-wiggle."""
    points = []
    for s in range(0, STEPS + 1, EVERY):
        v = end + (start - end) * math.exp(-5 * min(s, best_at) / best_at)
        v += rise * max(0, s - best_at) / (STEPS - best_at or 1)
        points.append((s, v + wiggle * (-1) ** (s // EVERY)))
    return points


def accuracy(error, **kw):
    """A val/accuracy curve: 1 - decay(0.9, error, **kw)."""
    return [(s, 1 - v) for s, v in decay(0.9, error, **kw)]


def trial(params, val=None, train=None, status="completed", error=None, **curves):
    """A trial dict for constructed_study; val is the val/error curve, train the train/loss
    curve."""
    curves = {name.replace("__", "/"): c for name, c in curves.items()}
    curves.update({k: c for k, c in (("val/error", val), ("train/loss", train)) if c is not None})
    return {"params": params, "status": status, "curves": curves, "error": error}


def good(params, quality=0.0, best_at=600, **kw):
    """A healthy completed trial: val/error flattens at 0.1 + quality from best_at on, train loss
    keeps falling."""
    return trial(
        params,
        val=decay(0.9, 0.1 + quality, best_at=best_at, **kw),
        train=decay(2.3, 0.05 + quality),
    )


def diverged(params, status="infeasible"):
    """A trial that went NaN after its first eval (status 'failed' makes it a crash instead)."""
    return trial(
        params, status=status, val=[(0, 0.9), (100, math.nan)], error="loss is NaN at step 150"
    )


def lr(u):
    """The learning rate at position u of LR_SPACE's log range."""
    return 1e-4 * 1000**u


def lr_study(positions, **kw):
    """A learning-rate-only study: one healthy trial per position, best first (quality 0, 0.01,
    ...)."""
    return constructed_study(
        LR_SPACE, [good({LR: lr(u)}, 0.01 * i) for i, u in enumerate(positions)], **kw
    )


def found(study, check):
    """The study's findings of one check."""
    return [f for f in diagnose(study) if f.check == check]


# ----------------------------------------------------------------------------------------------
# A healthy study and odd ones.


def test_healthy_study_has_no_findings():
    search = {
        "optimizer": {"learning_rate": spaces.log(1e-4, 1e-1), "b1": spaces.linear(0.8, 0.99)}
    }
    trials = []
    for i in range(12):  # 12 trials: the Adam table's budget for learning rate + b1
        u1, u2 = (i + 0.5) / 12, ((5 * i) % 12 + 0.5) / 12
        trials.append(
            good({LR: lr(u1), B1: 0.8 + 0.19 * u2}, 0.1 * (abs(u1 - 0.5) + abs(u2 - 0.5)))
        )
    study = constructed_study(search, trials)
    assert [f for f in diagnose(study) if f.severity == "warning"] == []
    assert diagnose(study) == []


@pytest.mark.parametrize(
    "search, trials",
    [
        ({}, []),
        (LR_SPACE, [good({LR: 1e-3})]),
        (
            LR_SPACE,
            [
                trial({LR: 1e-3}, status="pending"),
                trial({LR: 1e-2}, status="running", val=decay(0.9, 0.1)[:3]),
            ],
        ),
        (
            LR_SPACE,
            [
                trial({LR: 1e-3}),
                trial({LR: 1e-2}, val=decay(0.9, 0.1, rise=0.5)),
                trial({LR: 3e-3}, val=[]),
            ],
        ),
        (
            {
                "model": {
                    "activation": spaces.categorical(["relu", "gelu"]),
                    "width": spaces.discrete([32, 64]),
                }
            },
            [
                good({"model.activation": "relu", "model.width": 64}),
                diverged({"model.activation": "gelu", "model.width": 32}),
                diverged({"model.activation": "gelu", "model.width": 64}, status="failed"),
            ],
        ),
    ],
)
def test_odd_studies_do_not_crash(search, trials):
    findings = diagnose(constructed_study(search, trials))
    assert all(f.check in CHECKS and f.severity in ("warning", "info") for f in findings)


def test_a_study_with_only_infeasible_trials_reports_only_that():
    study = constructed_study(LR_SPACE, [diverged({LR: lr(u)}) for u in (0.2, 0.5, 0.9)])
    assert [(f.check, f.severity, f.trials) for f in diagnose(study)] == [
        ("infeasible_fraction", "warning", (0, 1, 2))
    ]


def test_warnings_come_first_and_every_check_has_a_function():
    study = lr_study([0.95, 0.92, 0.5])
    study.trials.append(TrialData(index=3, status="failed", params={LR: 1e-3}, error="OOM"))
    severities = [f.severity for f in diagnose(study)]
    assert severities == sorted(severities, key=("warning", "info").index) and set(severities) == {
        "warning",
        "info",
    }
    assert all(callable(getattr(diagnostics, f"check_{name}")) for name in CHECKS)


# ----------------------------------------------------------------------------------------------
# boundary


def test_boundary_fires_when_the_best_trials_sit_at_the_upper_edge():
    [f] = found(lr_study([0.95, 0.92, 0.5, 0.3, 0.1]), "boundary")
    assert (f.severity, f.param, f.trials) == ("warning", LR, (0, 1))
    assert "upper edge" in f.title and "raise max" in f.action and "0.1" in f.action


def test_boundary_names_the_lower_edge_of_a_linear_and_the_upper_edge_of_an_int_param():
    search = {
        "optimizer": {"learning_rate": spaces.log(1e-4, 1e-1), "b1": spaces.linear(0.8, 0.99)},
        "model": {"depth": spaces.int_linear(1, 8)},
    }
    points = [(0.805, 8), (0.81, 8), (0.95, 2), (0.9, 4)]
    study = constructed_study(
        search,
        [good({LR: 3e-3, B1: b1, "model.depth": d}, 0.01 * i) for i, (b1, d) in enumerate(points)],
    )
    by_param = {f.param: f for f in found(study, "boundary")}
    assert set(by_param) == {B1, "model.depth"}
    assert (
        "lower edge" in by_param[B1].title
        and "lower min" in by_param[B1].action
        and by_param[B1].trials == (0, 1)
    )
    assert "raise max" in by_param["model.depth"].action


@pytest.mark.parametrize(
    "positions",
    [
        [0.85, 0.92, 0.95, 0.3],  # the best trial is just inside the outer 10%
        [0.95, 0.92],  # only 2 feasible trials so far: too early to tell
    ],
)
def test_boundary_is_quiet_when_the_best_trials_are_not_at_an_edge(positions):
    assert found(lr_study(positions), "boundary") == []


@pytest.mark.parametrize("best, end", [(0.03, "lower"), (0.97, "upper")])
def test_the_best_trial_alone_at_either_edge_is_said_as_information(best, end):
    """A best learning rate at the lower edge went unflagged: only the best trial was there."""
    [f] = found(lr_study([best, 0.5, 0.4, 0.3]), "boundary")
    assert f.severity == "info" and f.trials == (0,)
    assert f.title == f"The best trial sits at the {end} edge of {LR}"
    assert ("lower min" if end == "lower" else "raise max") in f.action


def test_boundary_ignores_discrete_params():
    search = {"model": {"width": spaces.discrete([64, 128, 256])}, **LR_SPACE}
    study = constructed_study(
        search,
        [good({"model.width": 256, LR: lr(0.5 + 0.05 * i)}, 0.01 * i) for i in range(3)]
        + [good({"model.width": 64, LR: lr(0.3)}, 0.1)],
    )
    assert found(study, "boundary") == []


def test_boundary_at_an_edge_with_diverged_trials_beyond_points_to_instability():
    feasible = [
        good({LR: lr(u)}, q)
        for u, q in ((0.94, 0), (0.93, 0.01), (0.9, 0.02), (0.5, 0.05), (0.2, 0.1))
    ]
    study = constructed_study(
        LR_SPACE, feasible + [diverged({LR: lr(u)}) for u in (0.96, 0.98, 0.99)]
    )
    [f] = found(study, "boundary")
    assert (f.severity, f.trials) == ("warning", (0, 1, 2))
    assert "unstable" in f.detail and "warmup" in f.action and "raise max" in f.action


# ----------------------------------------------------------------------------------------------
# infeasible_fraction


def test_infeasible_fraction_is_info_for_a_few_and_a_warning_for_most():
    few = constructed_study(
        LR_SPACE,
        [good({LR: 1e-3}), good({LR: 3e-4}, 0.1), good({LR: 3e-3}, 0.1), diverged({LR: 0.09})],
    )
    [f] = found(few, "infeasible_fraction")
    assert (f.severity, f.trials) == ("info", (3,)) and "25%" in f.title
    most = constructed_study(
        LR_SPACE,
        [
            good({LR: 1e-3}),
            diverged({LR: 0.05}),
            diverged({LR: 0.09}),
            trial(
                {LR: 0.02},
                status="failed",
                error="ValueError: bad shape\n\nTraceback (most recent call last):\n  ...",
            ),
        ],
    )
    [f] = found(most, "infeasible_fraction")
    assert (f.severity, f.trials) == ("warning", (1, 2, 3))
    assert (
        "2 diverged" in f.detail and "1 crashed" in f.detail and "ValueError: bad shape" in f.detail
    )


def test_infeasible_fraction_at_exactly_half_is_not_a_warning_and_pending_trials_do_not_count():
    study = constructed_study(
        LR_SPACE, [good({LR: 1e-3}), diverged({LR: 0.09}), trial({LR: 0.05}, status="pending")]
    )
    assert [(f.severity, f.trials) for f in found(study, "infeasible_fraction")] == [("info", (1,))]
    assert found(lr_study([0.5, 0.4]), "infeasible_fraction") == []


# ----------------------------------------------------------------------------------------------
# infeasible_at_edge


def _lr_with_divergence(feasible, diverged_at, status="infeasible"):
    """Healthy trials at (position, quality) plus diverged trials at the given positions."""
    trials = [good({LR: lr(u)}, q) for u, q in feasible]
    return constructed_study(
        LR_SPACE, trials + [diverged({LR: lr(u)}, status) for u in diverged_at]
    )


def test_infeasible_at_edge_warns_when_the_best_trial_borders_the_diverged_region():
    study = _lr_with_divergence(
        [(0.1, 0.2), (0.25, 0.15), (0.4, 0.1), (0.55, 0.05), (0.6, 0.0)], (0.7, 0.8, 0.9)
    )
    grad_norms = [(s, 1.0 + s / 1000) for s in range(0, 1001, 100)]
    study.trials[4].curves["train/grad_norm"] = tuple(np.array(c) for c in zip(*grad_norms))
    [f] = found(study, "infeasible_at_edge")
    assert (f.severity, f.param, f.trials) == ("warning", LR, (5, 6, 7))
    assert "warmup" in f.action and "grad_clip_norm=1.9" in f.action and "best trial (4" in f.detail
    assert [x.check for x in diagnose(study) if x.severity == "warning"] == ["infeasible_at_edge"]


@pytest.mark.parametrize(
    "feasible",
    [
        [
            (0.1, 0.2),
            (0.25, 0.1),
            (0.4, 0.0),
            (0.5, 0.05),
            (0.6, 0.08),
        ],  # feasible trials in between (Fig 1, good)
        [
            (0.1, 0.2),
            (0.2, 0.1),
            (0.4, 0.0),
        ],  # none in between, but a gap of 30% of the range: unsampled
    ],
)
def test_infeasible_at_edge_is_info_when_the_best_trial_is_clear_of_the_diverged_region(feasible):
    study = _lr_with_divergence(feasible, (0.7, 0.8, 0.9))
    n = len(feasible)
    [f] = found(study, "infeasible_at_edge")
    assert (f.severity, f.param, f.trials) == (
        "info",
        LR,
        (n, n + 1, n + 2),
    ) and "upper end" in f.title


@pytest.mark.parametrize(
    "diverged_at, status",
    [
        ((0.05, 0.95), "infeasible"),  # one at each end: not concentrated
        (
            (0.9,),
            "infeasible",
        ),  # a single diverged trial says nothing about where divergence happens
        ((0.7, 0.8, 0.9), "failed"),  # crashes are not instability
    ],
)
def test_infeasible_at_edge_is_quiet_without_concentrated_divergence(diverged_at, status):
    study = _lr_with_divergence(
        [(0.2, 0.1), (0.35, 0.05), (0.5, 0.0), (0.65, 0.05), (0.8, 0.1)], diverged_at, status
    )
    assert found(study, "infeasible_at_edge") == []


def untrained(params):
    """A completed trial stuck at chance: training loss 2.35 -> 2.30 (no NaN, so not
    'infeasible')."""
    flat = [(s, 2.35 - 0.05 * s / STEPS) for s in range(0, STEPS + 1, EVERY)]
    return trial(params, val=[(s, 0.9) for s, _ in flat], train=flat)


def test_completed_trials_that_never_trained_count_as_infeasible_at_the_edge():
    # Adam at a too-high learning rate: training loss stays at chance, no NaN (the playbook's
    # "really bad loss values" kind of infeasible trial).
    trials = [
        good({LR: lr(u)}, q)
        for u, q in ((0.1, 0.2), (0.25, 0.1), (0.4, 0.0), (0.5, 0.05), (0.6, 0.08))
    ]
    study = constructed_study(
        LR_SPACE, trials + [untrained({LR: lr(u)}) for u in (0.75, 0.85, 0.95)]
    )
    [fraction] = found(study, "infeasible_fraction")
    assert fraction.trials == (5, 6, 7) and "3 never trained" in fraction.detail
    [edge] = found(study, "infeasible_at_edge")
    assert (edge.param, edge.trials) == (LR, (5, 6, 7)) and "upper end" in edge.title
    # A trial that learned slowly (training loss down by more than 10%) is not one of them.
    slow = trial({LR: lr(0.05)}, val=decay(0.9, 0.6), train=decay(2.35, 2.0))
    assert found(constructed_study(LR_SPACE, trials + [slow]), "infeasible_fraction") == []


# ----------------------------------------------------------------------------------------------
# overfitting


def test_overfitting_fires_for_the_best_trial_when_validation_rises_while_training_loss_falls():
    study = constructed_study(
        LR_SPACE,
        [
            trial({LR: 3e-3}, val=decay(0.9, 0.1, best_at=500, rise=0.08), train=decay(2.3, 0.05)),
            good({LR: 1e-3}, 0.02),
            good({LR: 1e-2}, 0.03),
        ],
    )
    [f] = found(study, "overfitting")
    assert (f.severity, f.trials) == ("warning", (0,))
    assert "step 500" in f.detail and "regularization" in f.action and "caveat" not in f.action


def test_overfitting_reads_a_maximized_objective_the_right_way_round():
    study = constructed_study(
        LR_SPACE,
        [
            trial({LR: 3e-3}, train=decay(2.3, 0.05), val__accuracy=accuracy(0.15)),
            trial(
                {LR: 1e-3},
                train=decay(2.3, 0.05),
                val__accuracy=accuracy(0.1, best_at=500, rise=0.08),
            ),
        ],
        objective="val/accuracy",
        mode="max",
    )
    assert study.feasible[0].index == 1
    [f] = found(study, "overfitting")
    assert (f.severity, f.trials) == (
        "warning",
        (1,),
    ) and "val/accuracy best 0.8946 at step 500" in f.detail


@pytest.mark.parametrize(
    "val, train",
    [
        (
            decay(0.9, 0.1, best_at=500, wiggle=0.004),
            decay(2.3, 0.05),
        ),  # noisy but flat after the best
        (
            decay(0.9, 0.1, best_at=500, rise=0.003),
            decay(2.3, 0.05),
        ),  # a rise within 5% of the best value
        (
            decay(0.9, 0.1, best_at=500, rise=0.08),
            decay(2.3, 0.05, best_at=500, rise=1.0),
        ),  # training loss rises too
        (decay(0.9, 0.1, best_at=800, rise=0.08), decay(2.3, 0.05)),  # only 2 evals after the best
    ],
)
def test_overfitting_is_quiet_without_a_sustained_rise_over_falling_training_loss(val, train):
    study = constructed_study(
        LR_SPACE, [trial({LR: 3e-3}, val=val, train=train), good({LR: 1e-3}, 0.05)]
    )
    assert found(study, "overfitting") == []


def test_overfitting_checks_the_best_trial_per_scientific_value_and_reports_the_others_as_info():
    search = {"model": {"width": spaces.discrete([64, 128], role="scientific")}, **LR_SPACE}
    overfit = dict(val=decay(0.9, 0.1, best_at=500, rise=0.08), train=decay(2.3, 0.05))
    study = constructed_study(
        search,
        [
            good({"model.width": 128, LR: 1e-3}, 0.02),
            trial({"model.width": 64, LR: 3e-3}, **overfit),
            good({"model.width": 64, LR: 1e-2}, 0.03),
            trial(
                {"model.width": 128, LR: 1e-4},
                val=decay(0.9, 0.2, best_at=500, rise=0.08),
                train=decay(2.3, 0.3),
            ),
        ],
    )
    warning, info = found(study, "overfitting")
    assert (warning.severity, warning.trials) == (
        "warning",
        (1,),
    ) and "model.width=64" in warning.detail
    assert "2 scientific settings" in warning.detail
    assert (info.severity, info.trials) == ("info", (3,))


def test_overfitting_notes_the_caveat_when_a_scientific_param_is_a_regularizer():
    search = {"model": {"dropout": spaces.linear(0.0, 0.5, role="scientific")}, **LR_SPACE}
    study = constructed_study(
        search,
        [
            trial(
                {"model.dropout": 0.05, LR: 3e-3},
                val=decay(0.9, 0.1, best_at=500, rise=0.08),
                train=decay(2.3, 0.05),
            ),
            good({"model.dropout": 0.45, LR: 3e-3}, 0.02),
        ],
    )
    [f] = found(study, "overfitting")
    assert (
        f.trials == (0,)
        and "caveat: model.dropout" in f.action
        and "model.dropout in [0, 0.1]" in f.detail
    )


# ----------------------------------------------------------------------------------------------
# late_variance


def test_late_variance_fires_when_the_best_trial_jumps_between_late_evals():
    study = constructed_study(
        LR_SPACE, [good({LR: 3e-3}, wiggle=0.015), good({LR: 1e-3}, 0.05), good({LR: 1e-2}, 0.06)]
    )
    [f] = found(study, "late_variance")
    assert (
        (f.severity, f.trials) == ("warning", (0,))
        and "Polyak" in f.action
        and "last 4 evals" in f.detail
    )


def test_late_variance_reads_an_accuracy_like_its_error_rate():
    study = constructed_study(
        LR_SPACE,
        [
            trial(
                {LR: 3e-3},
                train=decay(2.3, 0.05),
                val__accuracy=accuracy(0.1, best_at=600, wiggle=w),
            )
            for w in (0.015, 0.003)
        ],
        objective="val/accuracy",
        mode="max",
    )
    [f] = found(study, "late_variance")
    assert f.trials == (0,) and "of the level 0.1" in f.detail


def test_late_variance_is_quiet_for_small_wiggles_and_outside_the_top_3():
    study = constructed_study(
        LR_SPACE,
        [
            good({LR: 3e-3}, wiggle=0.003),
            good({LR: 1e-3}, 0.05),
            good({LR: 1e-2}, 0.06),
            good({LR: 1e-4}, 0.3, wiggle=0.1),
        ],
    )
    assert found(study, "late_variance") == []


# ----------------------------------------------------------------------------------------------
# not_converged and saturated_early


def test_not_converged_fires_when_every_top_trial_is_best_in_the_last_quarter():
    study = constructed_study(
        LR_SPACE,
        [
            good({LR: lr(u)}, 0.01 * i, best_at=step)
            for i, (u, step) in enumerate(((0.5, 1000), (0.4, 800), (0.6, 900), (0.3, 100)))
        ],
    )
    [f] = found(study, "not_converged")
    assert (f.severity, f.trials) == ("warning", (0, 1, 2)) and "train longer" in f.action
    assert "trial 1 at step 800 of 1000" in f.detail


def test_not_converged_is_quiet_when_one_top_trial_peaked_earlier():
    study = constructed_study(
        LR_SPACE,
        [
            good({LR: 3e-3}, best_at=1000),
            good({LR: 1e-3}, 0.01, best_at=1000),
            good({LR: 1e-2}, 0.02, best_at=700),
        ],
    )
    assert found(study, "not_converged") == []


def test_saturated_early_fires_when_every_top_trial_is_best_in_the_first_tenth():
    study = constructed_study(
        LR_SPACE, [good({LR: lr(u)}, 0.01 * i, best_at=100) for i, u in enumerate((0.5, 0.4))]
    )
    [f] = found(study, "saturated_early")
    assert (f.severity, f.trials) == ("info", (0, 1)) and "lower train.steps" in f.action


def test_saturated_early_is_quiet_just_after_the_first_tenth():
    study = constructed_study(
        LR_SPACE, [good({LR: 3e-3}, best_at=100), good({LR: 1e-3}, 0.01, best_at=200)]
    )
    assert found(study, "saturated_early") == []


# ----------------------------------------------------------------------------------------------
# train_loss_rising


def test_train_loss_rising_fires_for_a_sustained_rise_and_falls_back_to_batch_loss():
    study = constructed_study(
        LR_SPACE,
        [
            good({LR: 3e-3}),
            trial(
                {LR: 1e-3},
                val=decay(0.9, 0.2, best_at=300),
                train=decay(2.3, 0.3, best_at=300, rise=0.5),
            ),
            trial(
                {LR: 1e-2},
                val=decay(0.9, 0.3),
                train__batch_loss=decay(2.3, 0.3, best_at=300, rise=0.5),
            ),
        ],
    )
    [f] = found(study, "train_loss_rising")
    assert (f.severity, f.trials) == ("warning", (1, 2))
    assert "train/batch_loss" in f.detail and "bug in the training pipeline" in f.action


def test_train_loss_rising_ignores_a_recovered_spike_and_a_late_wiggle():
    spike = [(s, 3.0 if s == 500 else v) for s, v in decay(2.3, 0.3)]
    study = constructed_study(
        LR_SPACE,
        [
            trial({LR: 3e-3}, val=decay(0.9, 0.1, best_at=600), train=spike),
            trial(
                {LR: 1e-3},
                val=decay(0.9, 0.2, best_at=600),
                train=decay(2.3, 0.3, best_at=600, wiggle=0.02),
            ),
        ],
    )
    assert found(study, "train_loss_rising") == []


# ----------------------------------------------------------------------------------------------
# adam_budget


def _adam_study(search, n, fixed=None):
    """n trials (the first completed, the rest pending, all mid-range) over an optimizer search
    space."""
    params = {p.path: p.from_unit(0.5) for p in spaces.parse({"optimizer": search})}
    trials = [good(params)] + [trial(params, status="pending")] * (n - 1)
    return constructed_study({"optimizer": search}, trials, fixed=fixed)


@pytest.mark.parametrize(
    "search, n, flagged",
    [
        (
            {"learning_rate": spaces.log(1e-4, 1e-1), "b1": spaces.linear(0.8, 0.99)},
            8,
            ["optimizer.b1"],
        ),
        (
            {
                "learning_rate": spaces.log(1e-4, 1e-1),
                "b1": spaces.linear(0.8, 0.99),
                "eps": spaces.log(1e-10, 1e-6),
                "b2": spaces.linear(0.99, 0.9999),
            },
            30,
            ["optimizer.b2"],
        ),
        ({"b1": spaces.linear(0.8, 0.99)}, 12, [LR]),
    ],
)
def test_adam_budget_warns_about_params_the_budget_does_not_support(search, n, flagged):
    findings = found(_adam_study(search, n), "adam_budget")
    assert [(f.severity, f.param) for f in findings] == [("warning", p) for p in flagged]
    if flagged == ["optimizer.b2"]:
        assert "100" in findings[0].action and "learning rate, b1, eps" in findings[0].detail


@pytest.mark.parametrize(
    "search, n, fixed",
    [
        ({"learning_rate": spaces.log(1e-4, 1e-1), "b1": spaces.linear(0.8, 0.99)}, 10, None),
        (
            {
                "learning_rate": spaces.log(1e-4, 1e-1),
                "b1": spaces.linear(0.8, 0.99),
                "eps": spaces.log(1e-10, 1e-6),
            },
            25,
            None,
        ),
        (
            {
                "learning_rate": spaces.log(1e-4, 1e-1),
                "b2": spaces.linear(0.99, 0.9999, role="scientific"),
            },
            5,
            None,
        ),
        (
            {"learning_rate": spaces.log(1e-4, 1e-1), "b2": spaces.linear(0.99, 0.9999)},
            5,
            {"optimizer": {"name": "sgd", "learning_rate": 0.1}},
        ),
        ({}, 1, None),
    ],
)
def test_adam_budget_is_quiet_within_the_table_and_outside_adam(search, n, fixed):
    assert found(_adam_study(search, n, fixed), "adam_budget") == []


def _waiting(params, waits, quality=0.0):
    t = good(params, quality)
    t["curves"]["train/input_wait_fraction"] = [(100 * (i + 1), w) for i, w in enumerate(waits)]
    return t


def test_input_bound_warns_when_a_trial_mostly_waits_for_data():
    study = constructed_study(
        LR_SPACE,
        [
            _waiting({LR: lr(0.5)}, [0.02, 0.03, 0.02]),
            _waiting({LR: lr(0.4)}, [0.5, 0.4, 0.05], quality=0.01),
        ],
    )
    [finding] = found(study, "input_bound")
    assert finding.severity == "warning" and finding.trials == (1,)
    assert "40%" in finding.title and "data.read_threads" in finding.action


def test_input_bound_is_quiet_when_the_pipeline_keeps_up_or_nothing_streams():
    quiet = constructed_study(
        LR_SPACE, [_waiting({LR: lr(0.5)}, [0.5, 0.01, 0.02, 0.01])]
    )  # one slow period
    assert found(quiet, "input_bound") == []
    assert found(lr_study([0.5, 0.4]), "input_bound") == []  # device pipeline: no such metric


def _clipped(params, fractions, norms=(1.0, 2.0, 3.0)):
    t = good(params)
    t["curves"]["train/clip_fraction"] = [(100 * (i + 1), f) for i, f in enumerate(fractions)]
    t["curves"]["train/grad_norm"] = [(100 * (i + 1), n) for i, n in enumerate(norms)]
    return t


def test_clipping_warns_when_over_half_the_updates_are_clipped():
    study = constructed_study(
        LR_SPACE,
        [_clipped({LR: lr(0.5)}, [0.9, 0.7, 0.6]), _clipped({LR: lr(0.4)}, [0.1, 0.0, 0.2])],
    )
    [finding] = found(study, "clipping")
    assert finding.severity == "warning" and finding.trials == (0,)
    assert "73%" in finding.title and finding.action.startswith("lower the learning rate instead")


def test_clipping_is_quiet_for_occasional_clipping_or_none():
    assert (
        found(constructed_study(LR_SPACE, [_clipped({LR: lr(0.5)}, [0.5, 0.3, 0.1])]), "clipping")
        == []
    )
    assert found(lr_study([0.5, 0.4]), "clipping") == []


def test_adam_budget_of_an_exploit_study_counts_its_parents_trials():
    search = {"learning_rate": spaces.log(1e-4, 1e-1), "b1": spaces.linear(0.8, 0.99)}
    study = _adam_study(search, 8)
    assert [f.param for f in found(study, "adam_budget")] == ["optimizer.b1"]
    study.record["config"]["study"] = {"parent": {"study": "round-1", "action": "exploit"}}
    study.family = [{"name": "round-1", "trials": [{}] * 12}]
    assert found(study, "adam_budget") == []  # 8 + the 12 that seed the GP


def test_clipping_action_raises_the_clip_of_the_trial_that_clipped_above_its_value():
    """The GRU study's false advice: 'raise train.grad_clip_norm ... e.g. 0.4388' with a clip of
    1.0, taken from a slow trial that never clipped. The numbers now come from the trial that
    clipped and point up."""
    heavy = _clipped({LR: lr(0.5)}, [0.9, 0.95, 0.9], norms=(1.5, 2.5, 3.5, 2.0, 3.0))
    calm = _clipped({LR: lr(0.2)}, [0.0, 0.0, 0.0], norms=(0.3, 0.4, 0.45))
    study = constructed_study(LR_SPACE, [calm, heavy], fixed={"train": {"steps": 1000,
                              "eval_every": 100, "grad_clip_norm": 1.0}})  # fmt: skip
    [finding] = found(study, "clipping")
    p90 = float(np.percentile([1.5, 2.5, 3.5, 2.0, 3.0], 90))
    assert f"raise train.grad_clip_norm from 1 to about {fmt(p90)}" in finding.action
    assert f"of trial {finding.trials[0]}'s gradient norm" in finding.action and p90 > 1.0


def test_late_variance_never_judges_the_start_of_a_short_run_or_a_steady_fall():
    """The README workload's 4 evaluations (0.274, 0.0224, 0.0145, 0.0136) were called 'noise
    102% of the level' late in training: the window reached back to step 0."""
    curve = [(0, 0.274), (100, 0.0224), (200, 0.0145), (300, 0.0136)]
    short = trial({LR: 3e-3}, val=curve, train=[(s, 1.0 - v) for s, v in curve])
    study = constructed_study(LR_SPACE, [short], steps=300)
    assert found(study, "late_variance") == []
    # A steady fall late in a long run is no noise either, however steep.
    falling = [(100 * i, 0.5 * 0.8**i) for i in range(21)]
    steady = trial({LR: 3e-3}, val=falling, train=[(s, 2 * v) for s, v in falling])
    assert found(constructed_study(LR_SPACE, [steady], steps=2000), "late_variance") == []


def test_not_converged_and_overfitting_need_more_than_the_noise_and_exclude_each_other():
    """A trial called both overfit and still improving while its error moved by 5-11 examples of
    500, inside the noise: a late best by a wiggle on a flat curve is neither."""
    wiggle = [0.30, 0.312, 0.298, 0.31, 0.296, 0.308, 0.294]  # +-6 examples of 500, flat
    flat = [(0, 0.9), (100, 0.5), (200, 0.35), (300, 0.31)] + [
        (400 + 100 * i, v) for i, v in enumerate(wiggle)
    ]
    trials = [trial({LR: lr(u)}, val=flat, train=decay(2.3, 0.05)) for u in (0.5, 0.4, 0.6)]
    study = constructed_study(LR_SPACE, trials)
    assert found(study, "not_converged") == []  # its late best (step 1000) is a wiggle
    # A trial that rises clearly after its best is overfit, and then not "still improving".
    rising = [(0, 0.9), (100, 0.4), (200, 0.3), (300, 0.25), (400, 0.2), (500, 0.15),
              (600, 0.1), (700, 0.1), (800, 0.16), (900, 0.2), (1000, 0.24)]  # fmt: skip
    t = trial({LR: lr(0.5)}, val=rising, train=decay(2.3, 0.05))
    study = constructed_study(LR_SPACE, [t, good({LR: lr(0.4)}, 0.2), good({LR: lr(0.3)}, 0.3)])
    assert [f.severity for f in found(study, "overfitting")] == ["warning"]
    assert found(study, "not_converged") == []


def test_a_trial_that_never_trained_is_not_called_overfit():
    stuck = [(0, 2.30), (100, 2.29), (200, 2.31), (300, 2.30), (400, 2.30), (500, 2.31)]
    val = [(0, 0.9), (100, 0.88), (200, 0.9), (300, 0.91), (400, 0.92), (500, 0.93)]
    study = constructed_study(LR_SPACE, [trial({LR: lr(0.9)}, val=val, train=stuck)], steps=500)
    assert found(study, "overfitting") == []


def test_a_trial_that_never_trained_has_one_status_in_every_view():
    """Tables said 'completed' with no problem, the diagnostics '50% infeasible (never trained)'
    and the plots drew red crosses: one status now, with why."""
    import json

    from jaxplay import analysis
    from jaxplay.analysis import record as record_lib

    stuck = trial({LR: lr(0.95)}, val=[(s, 0.9) for s in range(0, 1001, 100)],
                  train=[(s, 2.3 - 1e-5 * s) for s in range(0, 1001, 100)])  # fmt: skip
    study = constructed_study(LR_SPACE, [good({LR: lr(0.5)}), good({LR: lr(0.3)}, 0.1), stuck])
    [t] = [t for t in study.trials if t.index == 2]
    assert t.status == "infeasible" and t.error.startswith("never trained: train/loss stayed")
    shown = record_lib.format_record(study.record)
    assert "2 completed, 1 infeasible" in shown and "trial 2 infeasible: never trained" in shown
    exported = {r["trial"]: r for r in json.loads(analysis.export(study, "json"))["trials"]}
    assert exported[2]["status"] == "infeasible"
    [f] = found(study, "infeasible_fraction")
    assert "1 never trained (trial 2" in f.detail and "diverged" not in f.detail
    assert found(study, "overfitting") == []
