"""The playbook's chance-level, roles, gradient-noise and periodicity diagnostics (checklist items
17, 26, 49 and 63) on hand-built studies: each fires where it must and stays quiet on the close
case next to it; derived studies that add gradient noise at the parent's train.steps say to
revisit train.steps."""

import json
import math

import ml_collections
import numpy as np
import pytest
from scipy import stats

from factories import constructed_study, tiny_config
from jaxplay import config as config_lib
from jaxplay import spaces, spec
from jaxplay.analysis import diagnostics
from jaxplay.analysis.diagnostics import (
    CHANCE_ERROR_FRACTION,
    MIN_CYCLES,
    MIN_EVALS,
    PERIOD_SIGNIFICANCE,
    PERIOD_SKIP,
    TOP_K,
    chance_level,
    diagnose,
    dominant_period,
    fisher_p_value,
    noisier,
)
from jaxplay.data import arrays
from jaxplay.tuning import derivation, lineage

LR, WIDTH, DROPOUT = "optimizer.learning_rate", "model.width", "model.dropout"
STEPS, EVERY = 1000, 100
# Generated 4-class images: small enough to load in milliseconds.
IMAGES = {
    "name": "synthetic_images",
    "image_size": 4,
    "channels": 1,
    "num_classes": 4,
    "num_train": 8,
    "num_val": 400,
    "seed": 0,
}


def found(study, check):
    """The study's findings of one check."""
    return [f for f in diagnose(study) if f.check == check]


def decay(start, end, *, steps=STEPS, every=EVERY, best_at=None):
    """Eval points of a curve decaying from start to end, flat from best_at (default: the end)."""
    best_at = best_at or steps
    return [
        (s, end + (start - end) * math.exp(-5 * min(s, best_at) / best_at))
        for s in range(0, steps + 1, every)
    ]


def healthy(params, value, best_at=600):
    """A completed trial whose val/error flattens at `value` and whose training loss falls."""
    return {
        "params": params,
        "curves": {"val/error": decay(0.9, value, best_at=best_at), "train/loss": decay(2.3, 0.1)},
    }


# ----------------------------------------------------------------------------------------------
# Row 17: chance level


def test_chance_level_is_the_majority_rate_of_the_split_the_trials_were_scored_on():
    data = {"name": "mnist1d", "batch_size": 64, "val_size": 300, "split_seed": 3}
    majority = chance_level({"config": {"data": data}})
    # The trainer's own path to the data: the resolved config, as a trial sees it.
    labels = arrays.load(
        spec.resolve(tiny_config(**{"data.val_size": 300, "data.split_seed": 3})).base.data
    ).y_val
    assert majority == np.bincount(labels).max() / len(labels)
    assert 1 / 10 <= majority < 1  # never below the uniform guess of 10 classes
    other = chance_level({"config": {"data": {**data, "split_seed": 4}}})
    assert other is not None and other != majority  # another split, its own majority class


@pytest.mark.parametrize(
    "config",
    [
        {"data": {"name": "pystdlib"}},  # not read: per-token, machine-dependent corpus
        {"data": {**IMAGES, "num_classes": 1}},  # a config its loader refuses
        {"workload": "my_pkg.tasks:task", "data": IMAGES},  # labels are the workload's own
        {},
    ],
)
def test_chance_level_is_unknown_where_the_labels_are_not_read(config):
    assert chance_level({"config": config}) is None


def _chance_study(best, *, objective="val/error", mode="min", data=IMAGES, workload=None):
    """Two trials whose best val/error (or val/accuracy = 1 - error) is `best` and best + 0.05."""
    metric = objective.split("/")[-1]
    trials = []
    for i, error in enumerate((best, best + 0.05)):
        curve = decay(0.9, error)
        if metric == "accuracy":
            curve = [(s, 1 - v) for s, v in curve]
        trials.append({"params": {LR: 1e-3 * (i + 1)}, "curves": {f"val/{metric}": curve}})
    fixed = {"data": data, **({"workload": workload} if workload else {})}
    space = {"optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)}}
    return constructed_study(space, trials, objective=objective, mode=mode, fixed=fixed)


@pytest.mark.parametrize("objective, mode", [("val/error", "min"), ("val/accuracy", "max")])
def test_chance_level_warns_when_the_best_trial_is_not_much_better_than_guessing(objective, mode):
    chance_error = 1 - chance_level({"config": {"data": IMAGES}})
    limit = CHANCE_ERROR_FRACTION * chance_error
    near = found(_chance_study(limit + 0.02, objective=objective, mode=mode), "chance_level")
    assert [(f.severity, f.trials) for f in near] == [("warning", (0,))]
    assert "majority class" in near[0].title and "much better than random chance" in near[0].detail
    assert found(_chance_study(limit - 0.02, objective=objective, mode=mode), "chance_level") == []


@pytest.mark.parametrize(
    "kw",
    [
        {"objective": "val/loss"},  # a loss has no chance level here
        {"data": {"name": "pystdlib"}},
        {"workload": "my_pkg.tasks:task"},
    ],
)
def test_chance_level_is_quiet_where_it_has_no_level_to_compare_with(kw):
    assert found(_chance_study(0.7, **kw), "chance_level") == []


def test_the_sweep_records_the_chance_level_and_the_check_reads_it_for_any_dataset(tmp_path):
    from factories import write_study_file
    from jaxplay import analysis, sweep, workloads
    from jaxplay.analysis.diagnostics import chance

    c = tiny_config(**{"train.steps": 20, "train.eval_every": 10})
    argv = ["--config", write_study_file(tmp_path / "s.py", c), "--workdir", str(tmp_path / "w"),
            "--report=false", "--tensorboard=false"]  # fmt: skip
    assert sweep.main(argv) == 0
    assert sweep.main(argv) == 0  # a second run of the finished study records nothing new
    study = analysis.load(tmp_path / "w")
    (probe,) = [p for p in study.probes if p["kind"] == chance.KIND]
    labels = workloads.bind(spec.resolve(c).base).dataset.splits["val"][1]
    assert probe["result"]["majority_rate"] == np.bincount(labels).max() / len(labels)
    assert probe["result"]["examples"] == len(labels) == 500
    # The recorded rate judges a study whose data no loader here can read (another dataset,
    # a workload of its own): 0.5 majority -> chance error 0.5, a best val/error of 0.45 is not
    # "much better" than that, 0.2 is.
    recorded = [{"kind": chance.KIND, "result": {"majority_rate": 0.5}}]
    for best, flagged in ((0.45, True), (0.2, False)):
        other = _chance_study(best, data={"name": "tfds"}, workload="my_pkg.tasks:task")
        other.probes = recorded
        assert bool(found(other, "chance_level")) is flagged
        assert found(_chance_study(best, data={"name": "tfds"}), "chance_level") == []


@pytest.mark.parametrize(
    "labels", [np.zeros((4, 3), int), np.array([0.5, 1.5]), np.array([], int), np.array([-1, 2])]
)
def test_only_one_class_label_per_example_has_a_majority_rate(labels):
    from jaxplay.analysis.diagnostics import chance

    assert chance.majority_rate(labels) is None
    assert chance.majority_rate(np.array([2, 2, 0, 1])) == 0.5


# ----------------------------------------------------------------------------------------------
# Row 26: roles


def _roles_study(search, optimizer=None, params=None):
    """Four healthy trials of a study searching `search`, with the base optimizer `optimizer`."""
    params = params or (lambda i: {LR: 1e-3 * (i + 1), WIDTH: (16, 32)[i % 2]})
    trials = [healthy(params(i), 0.1 + 0.01 * i) for i in range(4)]
    fixed = {"optimizer": optimizer} if optimizer else None
    return constructed_study(search, trials, fixed=fixed)


SGD = {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}
WIDTHS = spaces.discrete([16, 32], role="scientific")


def test_roles_warn_when_the_optimizer_choice_is_a_nuisance_hyperparameter():
    def search(role):
        return {
            "optimizer": {
                "name": spaces.categorical(["adam", "sgd"], role=role),
                "learning_rate": spaces.log(1e-4, 1e-1),
            }
        }

    def params(i):
        return {"optimizer.name": ("adam", "sgd")[i % 2], LR: 1e-3 * (i + 1)}

    nuisance = found(_roles_study(search("nuisance"), params=params), "roles")
    assert [(f.severity, f.param) for f in nuisance] == [("warning", "optimizer.name")]
    assert "scientific or fixed" in nuisance[0].detail
    assert found(_roles_study(search("scientific"), params=params), "roles") == []


def test_roles_warn_when_the_optimizer_branch_is_a_nuisance_hyperparameter():
    search = {
        "optimizer": spaces.branches(
            role="nuisance",
            adam={"learning_rate": spaces.log(1e-4, 1e-2)},
            sgd={"learning_rate": spaces.log(1e-2, 1.0)},
        )
    }
    study = _roles_study(search, params=lambda i: {"optimizer": ("adam", "sgd")[i % 2]})
    assert [(f.severity, f.param) for f in found(study, "roles")] == [("warning", "optimizer")]


def test_roles_warn_when_the_learning_rate_is_fixed_while_scientific_values_are_compared():
    fixed_lr = _roles_study({"model": {"width": WIDTHS}}, SGD, params=lambda i: {WIDTH: 16 + i})
    [f] = found(fixed_lr, "roles")
    assert (f.severity, f.param) == ("warning", LR) and "fixed at 0.1" in f.detail
    tuned = {"model": {"width": WIDTHS}, "optimizer": {"learning_rate": spaces.log(1e-3, 1.0)}}
    assert found(_roles_study(tuned, SGD), "roles") == []
    # Without a scientific hyperparameter there is nothing compared at one learning rate.
    alone = {"optimizer": {"momentum": spaces.linear(0.8, 0.99)}}
    assert (
        found(_roles_study(alone, SGD, params=lambda i: {"optimizer.momentum": 0.9}), "roles") == []
    )


def test_roles_leave_an_adam_studys_fixed_learning_rate_to_the_adam_budget_check():
    study = _roles_study({"model": {"width": WIDTHS}}, params=lambda i: {WIDTH: 16 + i})
    assert found(study, "roles") == []
    assert [f.param for f in found(study, "adam_budget")] == [LR]  # said once, by that check


def test_roles_name_the_branches_that_fix_the_learning_rate():
    search = {
        "model": {"width": WIDTHS},
        "optimizer": spaces.branches(
            adam={"learning_rate": spaces.log(1e-4, 1e-2)}, sgd={"momentum": 0.9}
        ),
    }
    study = _roles_study(search, params=lambda i: {"optimizer": ("adam", "sgd")[i % 2], WIDTH: 16})
    [f] = [f for f in found(study, "roles") if f.param == LR]
    assert "searched only in the adam branch" in f.detail
    assert found(study, "adam_budget") == []  # not an Adam study: this is the only warning


def test_roles_note_a_regularizer_rate_compared_as_scientific_but_not_its_presence():
    rate = _roles_study(
        {
            "model": {"dropout": spaces.linear(0.0, 0.5, role="scientific")},
            "optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)},
        },
        params=lambda i: {DROPOUT: 0.1 * i, LR: 1e-3},
    )
    assert [(f.severity, f.param) for f in found(rate, "roles")] == [("info", DROPOUT)]
    presence = _roles_study(
        {
            "model": {"dropout": spaces.discrete([0.0, 0.3], role="scientific")},
            "optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)},
        },
        params=lambda i: {DROPOUT: 0.3 * (i % 2), LR: 1e-3},
    )
    assert found(presence, "roles") == []


def test_roles_note_architecture_searched_as_nuisance():
    search = {
        "model": {"width": spaces.discrete([16, 32])},
        "optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)},
    }
    [f] = found(_roles_study(search), "roles")
    assert (f.severity, f.param) == ("info", WIDTH) and "scientific or fixed" in f.detail
    search["model"]["width"] = WIDTHS
    assert found(_roles_study(search), "roles") == []


def test_roles_leave_a_scientific_batch_size_to_the_batch_size_check():
    search = {"data": {"batch_size": spaces.discrete([32, 128], role="scientific")}}
    study = _roles_study(search, SGD, params=lambda i: {"data.batch_size": (32, 128)[i % 2]})
    assert found(study, "roles") == []
    assert [f.severity for f in found(study, "batch_size")] == ["warning"]


# ----------------------------------------------------------------------------------------------
# Row 49: more gradient noise may need more steps


def test_noisier_lists_what_adds_gradient_noise_and_nothing_else():
    old = {"data.batch_size": 128, "data.augment": "flip", DROPOUT: 0.1, "train.steps": 100}
    noisy = {**old, "data.batch_size": 32, "data.augment": "crop_flip", DROPOUT: 0.3}
    assert noisier(old, noisy) == [
        "data.augment flip -> crop_flip (more augmentation)",
        "data.batch_size 128 -> 32 (smaller)",
        "model.dropout 0.1 -> 0.3 (more dropout)",
    ]
    quieter = {**old, "data.batch_size": 256, "data.augment": "none", DROPOUT: 0.0}
    assert noisier(old, quieter) == [] and noisier(old, {**old, "train.steps": 50}) == []


SEARCH = {"optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)}}


def _parent(batch_size=64, steps=100):
    """A finished parent study of tiny_config (its recorded config) searching the learning rate."""
    base = json.loads(config_lib.to_json(tiny_config(**{"data.batch_size": batch_size})))
    fixed = {k: v for k, v in base.items() if k not in ("search", "study", "train")}
    trials = [healthy({LR: lr}, 0.2 + lr) for lr in (1e-3, 3e-3, 1e-2)]
    study = constructed_study(SEARCH, trials, steps=steps, name="parent", fixed=fixed)
    study.record["config"]["train"] = {**base["train"], "steps": steps}
    study.record["config"]["study"] = base["study"]
    return study


def _child(parent, action="refine", **overrides):
    """The changes a child study file (tiny_config with `overrides`) records against `parent`."""
    config = tiny_config(**overrides)
    config.search = ml_collections.ConfigDict(SEARCH)
    how = lineage.REGISTRY[action]
    options = how.resolve_options({}, lambda key: f"--{key}")
    tree = derivation.derive(config, how, options, parent, parent_name=parent.name)
    spec.resolve(tree)  # still a valid study
    return tree["study"]["parent"]["changes"]


@pytest.mark.parametrize(
    "overrides, change",
    [
        ({"data.batch_size": 16}, "data.batch_size 64 -> 16 (smaller)"),
        ({"model.dropout": 0.2}, "model.dropout 0 -> 0.2 (more dropout)"),
    ],
)
def test_a_derived_study_that_adds_gradient_noise_at_the_same_steps_revisits_train_steps(
    overrides, change
):
    lines = [c for c in _child(_parent(), **overrides) if c.startswith("train.steps:")]
    assert len(lines) == 1 and "revisit train.steps" in lines[0] and change in lines[0]
    assert "python -m jaxplay.steps --config" in lines[0]


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # nothing changed
        {"data.batch_size": 256},  # a larger batch: less noise
        {"data.batch_size": 16, "train.steps": 400},  # more noise, but already more steps
    ],
)
def test_a_derived_study_without_more_noise_at_the_same_steps_keeps_quiet(overrides):
    assert not [c for c in _child(_parent(), **overrides) if "revisit train.steps" in c]


def _improving(params, value):
    """A trial still improving at the end: its best val/error at the last step."""
    return {
        "params": params,
        "curves": {"val/error": decay(0.9, value), "train/loss": decay(2.3, 0.1)},
    }


def _noisy_child(child_batch, parent_batch=64, improving=True, parent_steps=STEPS):
    """A refined child of a parent study in its store, at `child_batch` against `parent_batch`."""
    make = _improving if improving else healthy
    trials = [make({LR: lr}, 0.2 + lr) for lr in (1e-3, 3e-3, 1e-2)]
    data = {"name": "mnist1d", "batch_size": child_batch}
    study = constructed_study(SEARCH, trials, fixed={"data": data}, name="child")
    study.record["config"]["study"] = {"parent": {"study": "parent", "action": "refine"}}
    parent = _parent(parent_batch, steps=parent_steps).record
    study.family = [parent]
    return study


def test_gradient_noise_explains_still_improving_trials_of_a_noisier_study():
    [f] = found(_noisy_child(16), "gradient_noise")
    assert f.severity == "info" and "data.batch_size 64 -> 16 (smaller)" in f.detail
    assert f.trials == found(_noisy_child(16), "not_converged")[0].trials
    assert "python -m jaxplay.steps" in f.action


@pytest.mark.parametrize(
    "child_batch, improving, parent_steps",
    [
        (64, True, STEPS),  # the parent's batch size: no more noise
        (256, True, STEPS),  # less noise
        (16, False, STEPS),  # more noise, but the best trials converged
        (16, True, STEPS // 2),  # more noise, but already more steps than the parent
    ],
)
def test_gradient_noise_is_quiet_without_more_noise_at_the_same_steps_and_improving_trials(
    child_batch, improving, parent_steps
):
    study = _noisy_child(child_batch, improving=improving, parent_steps=parent_steps)
    assert found(study, "gradient_noise") == []


def test_gradient_noise_notes_a_scientific_noise_source_with_still_improving_best_trials():
    search = {**SEARCH, "data": {"batch_size": spaces.discrete([16, 128], role="scientific")}}
    trials = [
        _improving({LR: lr, "data.batch_size": b}, 0.2 + lr)
        for lr, b in ((1e-3, 16), (3e-3, 128), (1e-2, 16))
    ]
    [f] = found(constructed_study(search, trials), "gradient_noise")
    assert f.param == "data.batch_size" and "data.batch_size=16" in f.detail
    converged = [healthy(t["params"], 0.2 + t["params"][LR]) for t in trials]
    assert found(constructed_study(search, converged), "gradient_noise") == []
    # A scientific hyperparameter that adds no gradient noise: nothing to say.
    widths = {**SEARCH, "model": {"width": WIDTHS}}
    study = constructed_study(widths, [_improving({LR: lr, WIDTH: 16}, 0.3) for lr in (1e-3, 1e-2)])
    assert found(study, "not_converged") and found(study, "gradient_noise") == []


# ----------------------------------------------------------------------------------------------
# Row 63: periodicity

N_EVALS = 80  # evaluations over STEPS steps of a periodicity test curve
P_EVALS = 8  # the planted period, in evaluations


def _curve(seed, period=None, amplitude=0.02, noise=0.01, n=N_EVALS, shape=5.0):
    """val/error evaluations 0..n of a decaying curve plus Gaussian noise (and a sine)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n + 1) * EVERY
    values = 0.1 + 0.8 * np.exp(-shape * steps / steps[-1]) + noise * rng.normal(size=n + 1)
    if period:
        values += amplitude * np.sin(2 * np.pi * np.arange(n + 1) / period + rng.uniform(0, 7))
    return [(int(s), float(v)) for s, v in zip(steps, values)]


def _periodic_study(seed, period=None, n=N_EVALS, **kw):
    trials = [
        {
            "params": {LR: 1e-3 * (i + 1)},
            "curves": {"val/error": _curve(seed * TOP_K + i, period, n=n, **kw)},
        }
        for i in range(TOP_K)
    ]
    return constructed_study(SEARCH, trials, steps=n * EVERY)


def test_fisher_bound_matches_the_tail_of_g_for_white_noise():
    # For m = 2 the exact P(g > x) is 2 (1 - x) for x >= 1/2: the bound is exact there.
    assert fisher_p_value(0.75, 2) == pytest.approx(0.5)
    # Simulated white-noise periodograms (independent exponential ordinates): the bound lies
    # above the exact tail by at most half its square, and the simulated tail is within 4
    # binomial standard errors of the exact one.
    rng = np.random.default_rng(0)
    draws, m, x = 20000, 20, 0.3
    ordinates = rng.exponential(size=(draws, m))
    tail = np.mean(ordinates.max(1) / ordinates.sum(1) > x)
    se = math.sqrt(tail * (1 - tail) / draws)
    bound = fisher_p_value(x, m)
    assert tail - 4 * se <= bound <= tail + 4 * se + bound**2 / 2


@pytest.mark.parametrize("seed", range(5))
def test_a_sine_on_a_decaying_curve_is_found_with_its_period(seed):
    steps, values = np.array(_curve(seed, P_EVALS)).T
    keep = steps > PERIOD_SKIP * steps[-1]
    period = dominant_period(steps[keep], values[keep])
    window = int(keep.sum())
    # The periodogram's frequencies are k / window: the planted 1 / P lies within half a bin of
    # the one found, so the period is within P * h / (1 - h) of P, h = P / (2 window).
    h = P_EVALS / (2 * window)
    assert abs(period.evals - P_EVALS) <= P_EVALS * h / (1 - h)
    assert period.cycles >= MIN_CYCLES and period.p_value < PERIOD_SIGNIFICANCE / TOP_K
    [f] = found(_periodic_study(seed, P_EVALS), "periodicity")
    assert f.severity == "warning" and sorted(f.trials) == [0, 1, 2]
    assert abs(float(f.title.split("about ")[1].split(" steps")[0]) - P_EVALS * EVERY) <= (
        P_EVALS * EVERY * h / (1 - h)
    )


# Null studies: decaying curves of several shapes plus white noise, no period. Each is flagged
# with probability at most PERIOD_SIGNIFICANCE (Bonferroni over its curves, Fisher's bound), so
# the number flagged out of NULL_STUDIES is at most Binomial(NULL_STUDIES, PERIOD_SIGNIFICANCE);
# the test allows the count that this exceeds with probability 1e-4.
NULL_STUDIES = 300
NULL_LIMIT = int(stats.binom.isf(1e-4, NULL_STUDIES, PERIOD_SIGNIFICANCE))


def test_pure_decaying_noise_is_flagged_at_most_at_the_stated_false_positive_rate():
    flagged = sum(
        bool(found(_periodic_study(seed, shape=(2.0, 5.0, 20.0)[seed % 3]), "periodicity"))
        for seed in range(NULL_STUDIES)
    )
    assert flagged <= NULL_LIMIT, (flagged, NULL_LIMIT)


def test_too_few_evaluations_are_quiet_even_with_a_strong_period():
    n = MIN_EVALS - 1  # evaluations after step 0: fewer than MIN_EVALS even before PERIOD_SKIP
    assert found(_periodic_study(0, period=4, amplitude=0.1, n=n), "periodicity") == []
    steps, values = np.array(_curve(0, 4, amplitude=0.1, n=n)).T
    assert dominant_period(steps[1:], values[1:]) is None
    # The same period over enough evaluations is found.
    assert found(_periodic_study(0, period=4, amplitude=0.1, n=4 * MIN_EVALS), "periodicity")


def test_only_the_leading_run_of_evaluations_at_one_step_interval_is_tested():
    steps, values = np.array(_curve(0, P_EVALS)).T
    cut = 2 * len(steps) // 3
    steps[cut:] += EVERY // 2  # evaluations off the grid from here on (e.g. a resumed run)
    regular = dominant_period(steps[1:cut], values[1:cut])
    assert regular is not None and dominant_period(steps[1:], values[1:]) == regular
    assert dominant_period(steps[::-1], values) is None  # steps must increase


def test_every_new_check_is_registered():
    for name in ("chance_level", "roles", "gradient_noise", "periodicity"):
        assert diagnostics.REGISTRY[name] is getattr(diagnostics, f"check_{name}")
