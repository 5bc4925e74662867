"""Tests for jaxplay.designers: reproducibility, coverage and the mapping of points to values."""

import json
import math

import numpy as np
import pytest
from scipy.stats import qmc

from jaxplay import designers, spaces
from jaxplay.errors import ConfigError

ALL_KINDS = spaces.parse(
    {
        "lr": spaces.log(1e-4, 1e-1),
        "b1": spaces.linear(0.8, 0.99),
        "width": spaces.int_log(16, 1024),
        "depth": spaces.int_linear(1, 4),
        "batch": spaces.discrete([32, 64, 128]),
        "act": spaces.categorical(["relu", "gelu", "tanh"]),
        "bias": spaces.categorical([False, True]),
    }
)
UNIT_2D = spaces.parse({"a": spaces.linear(0, 1), "b": spaces.linear(0, 1)})
STOCHASTIC = ("quasirandom", "random")
# Designers whose trial i depends only on (space, seed, i); 'manual' lists its trials, 'gp' adapts.
INDEXED = ("quasirandom", "random", "grid")


def _points(trials, space):
    return np.array([[t[p] for p in space.paths] for t in trials])


def test_make_rejects_unknown_algorithm():
    with pytest.raises(
        ConfigError, match="unknown algorithm 'bayes'; use one of 'quasirandom', 'random', 'grid'"
    ):
        designers.make("bayes", ALL_KINDS, 0)


@pytest.mark.parametrize("algorithm", INDEXED)
def test_designers_follow_the_protocol(algorithm):
    designer = designers.make(algorithm, ALL_KINDS, 0)
    assert isinstance(designer, designers.Designer)
    trials = designer.suggest(0, 3)
    assert len(trials) == 3 and all(tuple(t) == ALL_KINDS.paths for t in trials)
    json.dumps(trials)  # plain Python values only
    assert designer.suggest(5, 0) == []
    with pytest.raises(ValueError):
        designer.suggest(-1, 2)


@pytest.mark.parametrize("algorithm", STOCHASTIC)
def test_prefix_is_stable_when_the_study_grows(algorithm):
    designer = designers.make(algorithm, ALL_KINDS, 3)
    assert designers.make(algorithm, ALL_KINDS, 3).suggest(0, 80)[:8] == designer.suggest(0, 8)


@pytest.mark.parametrize("algorithm", INDEXED)
def test_batches_equal_one_at_a_time(algorithm):
    designer = designers.make(algorithm, ALL_KINDS, 1)
    batch = designer.suggest(0, 20)
    assert [designer.suggest(i, 1)[0] for i in range(20)] == batch
    assert designer.suggest(7, 5) == batch[7:12]


@pytest.mark.parametrize("algorithm", STOCHASTIC)
def test_same_seed_same_points_other_seed_other_points(algorithm):
    a = designers.make(algorithm, ALL_KINDS, 0).suggest(0, 16)
    assert designers.make(algorithm, ALL_KINDS, 0).suggest(0, 16) == a
    b = designers.make(algorithm, ALL_KINDS, 1).suggest(0, 16)
    lr_a = {t["lr"] for t in a}
    assert not lr_a & {t["lr"] for t in b}


def test_quasirandom_skip_drops_a_burn_in():
    skipped = designers.QuasiRandomDesigner(UNIT_2D, 0, skip=100).suggest(0, 4)
    assert designers.QuasiRandomDesigner(UNIT_2D, 0, skip=96).suggest(4, 4) == skipped
    assert designers.QuasiRandomDesigner(UNIT_2D, 0, skip=0).suggest(0, 4) != skipped


@pytest.mark.parametrize("algorithm", INDEXED)
def test_values_within_bounds(algorithm):
    count = 200 if algorithm != "grid" else designers.make("grid", ALL_KINDS, 0).max_trials
    for t in designers.make(algorithm, ALL_KINDS, 0).suggest(0, count):
        assert type(t["lr"]) is float and 1e-4 <= t["lr"] <= 1e-1
        assert type(t["b1"]) is float and 0.8 <= t["b1"] <= 0.99
        assert type(t["width"]) is int and 16 <= t["width"] <= 1024
        assert type(t["depth"]) is int and 1 <= t["depth"] <= 4
        assert t["batch"] in (32, 64, 128)
        assert t["act"] in ("relu", "gelu", "tanh")
        assert type(t["bias"]) is bool


@pytest.mark.parametrize("algorithm", STOCHASTIC)
def test_float_log_is_spread_in_log_space(algorithm):
    space = spaces.parse({"lr": spaces.log(1e-4, 1e0)})
    values = [t["lr"] for t in designers.make(algorithm, space, 0).suggest(0, 1000)]
    assert 10**-2.25 < np.median(values) < 10**-1.75
    assert min(values) < 2e-4 and max(values) > 0.5


@pytest.mark.parametrize("algorithm", STOCHASTIC)
def test_int_log_is_spread_in_log_space(algorithm):
    space = spaces.parse({"width": spaces.int_log(1, 1024)})
    values = [t["width"] for t in designers.make(algorithm, space, 0).suggest(0, 1000)]
    assert all(type(v) is int for v in values)
    assert 0.4 <= sum(v < 32 for v in values) / len(values) <= 0.6
    assert min(values) == 1 and max(values) > 900


@pytest.mark.parametrize("algorithm", STOCHASTIC)
def test_int_linear_reaches_both_ends(algorithm):
    space = spaces.parse({"depth": spaces.int_linear(1, 4)})
    values = [t["depth"] for t in designers.make(algorithm, space, 0).suggest(0, 100)]
    assert set(values) == {1, 2, 3, 4}
    assert min(values.count(v) for v in (1, 2, 3, 4)) >= 15


@pytest.mark.parametrize("algorithm", INDEXED)
def test_discrete_and_categorical_reach_every_value(algorithm):
    trials = designers.make(algorithm, ALL_KINDS, 0).suggest(0, 60)
    assert {t["batch"] for t in trials} == {32, 64, 128}
    assert {t["act"] for t in trials} == {"relu", "gelu", "tanh"}
    assert {t["bias"] for t in trials} == {False, True}


def test_quasirandom_scientific_values_are_sampled_evenly():
    # Playbook: with scientific and nuisance params in one space, quasi-random search must sample
    # the scientific values uniformly.
    space = spaces.parse(
        {
            "width": spaces.discrete([128, 256, 512, 1024], role="scientific"),
            "lr": spaces.log(1e-4, 1e-1),
        }
    )
    widths = [t["width"] for t in designers.make("quasirandom", space, 0).suggest(0, 32)]
    assert all(7 <= widths.count(w) <= 9 for w in (128, 256, 512, 1024))


@pytest.mark.parametrize("seed", range(4))
def test_quasirandom_covers_the_cube_more_evenly_than_random(seed):
    quasi = _points(designers.make("quasirandom", UNIT_2D, seed).suggest(0, 64), UNIT_2D)
    rand = _points(designers.make("random", UNIT_2D, seed).suggest(0, 64), UNIT_2D)
    assert qmc.discrepancy(quasi) * 3 < qmc.discrepancy(rand)
    for dim in range(2):
        counts = np.histogram(quasi[:, dim], bins=16, range=(0, 1))[0]
        assert counts.min() >= 3 and counts.max() <= 5  # 4 expected per bin


def test_quasirandom_dimensions_are_not_correlated():
    # An unscrambled Halton in high bases puts early points nearly on a line (playbook PART B).
    space = spaces.parse({f"x{i}": spaces.linear(0, 1) for i in range(8)})
    points = _points(designers.make("quasirandom", space, 0).suggest(0, 32), space)
    correlation = np.corrcoef(points.T)
    assert np.abs(correlation[~np.eye(8, dtype=bool)]).max() < 0.5


def test_random_trial_depends_only_on_seed_and_index():
    designer = designers.make("random", ALL_KINDS, 5)
    later = designer.suggest(40, 3)
    assert designers.make("random", ALL_KINDS, 5).suggest(0, 43)[40:] == later
    expected = ALL_KINDS.from_unit(np.random.default_rng([5, 41]).random(len(ALL_KINDS)))
    assert later[1] == expected


def test_grid_size_and_contents():
    space = spaces.parse(
        {
            "width": spaces.discrete([128, 256]),
            "lr": spaces.log(1e-3, 1e-1),
            "act": spaces.categorical(["relu", "gelu"]),
        }
    )
    designer = designers.GridDesigner(space, seed=0, points_per_float=3)
    assert designer.max_trials == 2 * 3 * 2
    trials = designer.suggest(0, 12)
    assert trials[0] == {"width": 128, "lr": 1e-3, "act": "relu"}
    assert trials[1] == {"width": 128, "lr": 1e-3, "act": "gelu"}
    assert trials[-1] == {"width": 256, "lr": 1e-1, "act": "gelu"}
    assert sorted({t["lr"] for t in trials}) == pytest.approx([1e-3, 1e-2, 1e-1])
    assert len({tuple(t.values()) for t in trials}) == 12
    assert designers.make("grid", space, 0).max_trials == 2 * 5 * 2


def test_grid_ignores_seed():
    assert designers.make("grid", ALL_KINDS, 0).suggest(0, 10) == designers.make(
        "grid", ALL_KINDS, 9
    ).suggest(0, 10)


def test_grid_beyond_its_size():
    space = spaces.parse({"depth": spaces.int_linear(1, 3)})
    designer = designers.make("grid", space, 0)
    assert designer.suggest(0, 3) == [{"depth": 1}, {"depth": 2}, {"depth": 3}]
    with pytest.raises(
        ConfigError, match="study.num_trials: grid has only 3 points; set num_trials <= 3 or None"
    ):
        designer.suggest(2, 2)


@pytest.mark.parametrize("algorithm", STOCHASTIC)
def test_empty_space_gives_empty_trials(algorithm):
    designer = designers.make(algorithm, spaces.SearchSpace(), 0)
    assert designer.max_trials is None
    assert designer.suggest(3, 4) == [{}, {}, {}, {}]


def test_empty_space_grid_has_one_trial():
    designer = designers.make("grid", spaces.SearchSpace(), 0)
    assert designer.max_trials == 1
    assert designer.suggest(0, 1) == [{}]
    with pytest.raises(ConfigError):
        designer.suggest(0, 2)


def test_unbounded_designers_reach_far_indices_quickly():
    designer = designers.make("quasirandom", ALL_KINDS, 0)
    (trial,) = designer.suggest(100_000, 1)
    assert math.isfinite(trial["lr"])


# ---------------------------------------------------------------------------------------------
# Adaptive designers: the GP adapter and the Optuna TPE adapter


MIXED = spaces.parse({"lr": spaces.log(1e-4, 1e-1), "act": spaces.categorical(["relu", "gelu"])})


def test_bayesian_designer_reads_outcomes_as_the_gp_needs_them():
    designer = designers.make("gp", MIXED, 0, mode="max")
    history = [
        {"params": {"lr": 1e-3, "act": "relu"}, "status": "completed", "value": 0.9},
        {"params": {"lr": 1e-2, "act": "gelu"}, "status": "infeasible", "value": None},
        {"params": {"lr": 3e-3, "act": "gelu"}, "status": "failed", "value": None},
        {"params": {"lr": 1e-3, "act": "gelu"}, "status": "running", "value": None},
        {
            "params": {"lr": 1.0, "act": "relu"},
            "status": "completed",
            "value": 0.5,
        },  # outside the space
        {
            "params": {"lr": 1e-3, "act": "tanh"},
            "status": "completed",
            "value": 0.5,
        },  # not in the list
    ]
    x, y, pending = designer.observations(history)
    assert x.shape == (3, 2) and pending.shape == (1, 2)
    assert (
        y[0] == -0.9 and math.isnan(y[1]) and math.isnan(y[2])
    )  # max -> minimized; infeasible marked
    assert MIXED.from_unit(x[0]) == {"lr": pytest.approx(1e-3), "act": "relu"}


def test_bayesian_designer_explores_quasi_randomly_until_it_has_enough_results():
    designer = designers.make("gp", MIXED, 3, initial_trials=4)
    quasirandom = designers.make("quasirandom", MIXED, 3)
    few = [{"params": p, "status": "completed", "value": 0.5} for p in quasirandom.suggest(0, 3)]
    assert designer.suggest(3, 2, few) == quasirandom.suggest(3, 2)


@pytest.mark.parametrize(
    "settings, error",
    [
        ({"acquisition": "pi"}, "study.acquisition: unknown 'pi'"),
        ({"initial_trials": 0}, "study.initial_trials: must be an int >= 1"),
    ],
)
def test_bayesian_designer_settings_name_the_field(settings, error):
    with pytest.raises(ConfigError, match=error):
        designers.make("gp", MIXED, 0, **settings)


def test_bayesian_designer_needs_a_search_space():
    with pytest.raises(ConfigError, match="'gp' needs a search space"):
        designers.make("gp", spaces.SearchSpace(), 0)


def test_bayesian_designer_does_not_repeat_a_parents_quasi_random_points():
    # An exploit study of a parent with too few results to fit starts quasi-random, like the
    # parent did with the same seed: it must go on past the points the parent already tried.
    parent = designers.make("quasirandom", MIXED, 0).suggest(0, 2)
    history = [{"params": p, "status": "completed", "value": 0.5} for p in parent]
    fresh = designers.make("gp", MIXED, 0).suggest(0, 3, history)
    assert not [p for p in fresh if p in parent] and len({str(p) for p in fresh}) == 3


def test_tpe_adapter_suggests_from_the_outcomes_reproducibly():
    pytest.importorskip("optuna", reason="optuna is in the test extra: pip install -e '.[test]'")
    space = spaces.parse(
        {
            "lr": spaces.log(1e-4, 1e-1),
            "act": spaces.categorical(["relu", "gelu"]),
            "depth": spaces.int_linear(1, 4),
        }
    )
    designer = designers.make("tpe", space, 0, mode="min")
    starts = designers.make("quasirandom", space, 0).suggest(0, 12)
    # The best results sit at small learning rates with 'gelu': TPE should follow them.
    history = [
        {
            "params": p,
            "status": "completed",
            "value": math.log10(p["lr"]) + 4 + (p["act"] == "relu"),
        }
        for p in starts
    ]
    history.append({"params": starts[0], "status": "infeasible", "value": None})
    history.append(
        {"params": {"lr": 1.0, "act": "relu", "depth": 1}, "status": "completed", "value": 0.0}
    )
    batch = designer.suggest(14, 4, history)
    assert batch == designers.make("tpe", space, 0, mode="min").suggest(14, 4, history)
    assert len({str(p) for p in batch}) == 4
    for p in batch:
        assert (
            space.to_unit(p) is not None
            and isinstance(p["depth"], int)
            and isinstance(p["lr"], float)
        )
    assert np.median([math.log10(p["lr"]) for p in batch]) < -2.5  # the good end of the range


def test_tpe_needs_optuna_or_says_how_to_get_it(monkeypatch):
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(
        builtins,
        "__import__",
        lambda name, *a, **k: (
            (_ for _ in ()).throw(ImportError(name))
            if name == "optuna"
            else real_import(name, *a, **k)
        ),
    )
    with pytest.raises(ConfigError, match="pip install optuna"):
        designers.make("tpe", MIXED, 0)
