"""Warmup the playbook's way ("How to apply learning rate warmup", checklist items 86 and 94):
a prepended warmup lengthens the run instead of eating into train.steps, the warmup study ramps
0 -> base rate and holds it for post_warmup_steps = 2 x warmup_steps, long warmups are flagged,
and round 2 keeps the warmup while the steps after it grow."""

import json

import ml_collections
import numpy as np
import pytest

from factories import constructed_study, tiny_config
from jaxplay import config as config_lib
from jaxplay import optim, spaces, spec, sweep
from jaxplay.errors import ConfigError
from jaxplay.store import Store
from jaxplay.tuning import actions, derivation, lineage


def _prepended(**overrides):
    """tiny_config (100 steps, warmup 10) with the warmup prepended: a 110-step run."""
    fields = {"schedule.prepend_warmup": True, "train.eval_every": 10}
    fields.update(overrides)
    c = tiny_config()
    with c.unlocked():
        for path, value in fields.items():
            config_lib.set_path(c, path, value, create=True)
    return c


def _rates(trial: spec.TrialSpec) -> list[float]:
    """The learning rate at every step of a resolved trial's run, as its trainer computes it."""
    p = trial.program
    fn = optim.learning_rate_fn(p.schedule, p.steps, optim.as_arrays(trial.hparams))
    return [float(fn(t)) for t in range(p.steps + 1)]


# ---------------------------------------------------------------------------------------------
# the prepended schedule


def test_a_prepended_warmup_lengthens_the_run():
    trial = spec.resolve(_prepended()).base
    assert trial.train.steps == 110 and trial.program.steps == 110
    assert trial.schedule.warmup_steps == 10 and trial.hparams.warmup_steps == 10.0
    assert spec.run_steps(config_lib.to_tree(_prepended())) == 110
    # Inside train.steps (the default) the run is train.steps.
    assert spec.resolve(tiny_config()).base.program.steps == 100
    assert spec.run_steps(config_lib.to_tree(tiny_config())) == 100


def test_the_trainer_runs_the_whole_prepended_run(tmp_path):
    c = tiny_config(**{"train.steps": 40, "train.eval_every": 10, "schedule.name": "linear"})
    c.study.num_trials = 1
    with c.unlocked():
        c.schedule.prepend_warmup = True  # 10 steps of warmup, then 40: 50 in all
    record = sweep.run_study(c, str(tmp_path), report=False, log=lambda line: None)
    assert record["trials"][0]["steps_run"] == 50
    store = Store(f"sqlite:///{tmp_path}/jaxplay.db", readonly=True)
    rates = store.curves(store.study_id(), 0)["train/learning_rate"]
    store.close()
    # Each period logs its last step's rate: 9/10 of the peak in the ramp, then 1 - (t - 10)/40.
    expected = [0.9, 1 - 9 / 40, 1 - 19 / 40, 1 - 29 / 40, 1 - 39 / 40]
    assert [s for s, _ in rates] == [10, 20, 30, 40, 50]
    np.testing.assert_allclose([v for _, v in rates], np.multiply(expected, 3e-3), rtol=1e-5)


def test_linear_after_a_prepended_warmup_by_hand():
    # W = 4, train.steps N = 10, peak 1: 0, 1/4, 2/4, 3/4 over the ramp, then the linear decay
    # of a 10-step schedule without warmup, 1 - k/10, to 0 at step 14.
    c = _prepended(**{"train.steps": 10, "train.eval_every": 2, "schedule.warmup_steps": 4})
    c.schedule.name, c.optimizer.learning_rate = "linear", 1.0
    trial = spec.resolve(c).base
    assert trial.program.steps == 14
    expected = [0, 0.25, 0.5, 0.75] + [1 - k / 10 for k in range(11)]
    np.testing.assert_allclose(_rates(trial), expected, atol=1e-6)


def test_decay_steps_count_from_the_end_of_a_prepended_run_by_hand():
    # W = 4, N = 10, decay over the last 4: the peak for the 6 steps after the ramp, then down.
    c = _prepended(**{"train.steps": 10, "train.eval_every": 2, "schedule.warmup_steps": 4})
    c.schedule.name, c.optimizer.learning_rate = "linear", 2.0
    with c.unlocked():
        c.schedule.decay_steps = 4
    expected = [0, 0.5, 1.0, 1.5] + [2.0] * 7 + [1.5, 1.0, 0.5, 0.0]
    np.testing.assert_allclose(_rates(spec.resolve(c).base), expected, atol=1e-6)


def test_constant_after_a_prepended_warmup_is_the_warmup_experiment_by_hand():
    # The playbook's warmup experiment: 0 -> base rate over warmup_steps, then constant.
    c = _prepended(**{"train.steps": 6, "train.eval_every": 3, "schedule.warmup_steps": 3})
    c.schedule.name, c.optimizer.learning_rate = "constant", 0.3
    expected = [0, 0.1, 0.2] + [0.3] * 7
    np.testing.assert_allclose(_rates(spec.resolve(c).base), expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_after_the_ramp_the_schedule_runs_its_full_steps_unchanged(name):
    # The playbook's 10,000 steps + 1,000 of warmup = 11,000, shrunk 100-fold.
    c = _prepended(**{"train.steps": 100, "schedule.warmup_steps": 10, "schedule.name": name})
    with c.unlocked():
        c.schedule.min_lr_factor = 0.1
    prepended = _rates(spec.resolve(c).base)
    without = {"schedule.warmup_steps": 0, "schedule.name": name, "schedule.min_lr_factor": 0.1}
    plain = _rates(spec.resolve(tiny_config(**without)).base)
    assert len(prepended) == 111 and len(plain) == 101
    np.testing.assert_allclose(prepended[10:], plain, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(prepended[:10], [k / 10 * plain[0] for k in range(10)], rtol=1e-5)


def test_a_prepended_warmup_may_be_longer_than_train_steps_and_decay_spans_them_all():
    c = _prepended(**{"schedule.warmup_steps": 200})  # the warmup study's 1:2 is 50 + 100
    assert spec.resolve(c).base.program.steps == 300
    with c.unlocked():
        c.schedule.decay_steps = 100  # all of train.steps: the warmup is not inside them
    assert spec.resolve(c).base.schedule.decay_steps == 100
    c.schedule.decay_steps = 101
    with pytest.raises(ConfigError, match=r"schedule.decay_steps: must be in \[0, train.steps = "):
        spec.resolve(c)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"schedule.prepend_warmup": "yes"},
            "schedule.prepend_warmup: must be True or False (got 'yes')",
        ),
        (
            {"schedule.warmup_steps": 10.5},
            "schedule.warmup_steps: must be an int >= 0 with schedule.prepend_warmup (got 10.5)",
        ),
        (
            {"train.eval_every": 50},  # 100 + 10 = 110 steps
            "train.eval_every: must divide the run's 110 steps (train.steps=100 after "
            "schedule.warmup_steps=10 prepended; got 50); use 22 or 55",
        ),
        (
            {"schedule.warmup_steps": 2**31 - 50},
            "schedule.warmup_steps: train.steps + warmup_steps = 2147483698 is over 2147483647",
        ),
    ],
)
def test_bad_prepended_warmups_name_the_field(overrides, message):
    tree = config_lib.to_tree(_prepended())  # a JSON tree takes any type
    for path, value in overrides.items():
        section, field = path.split(".")
        tree[section][field] = value
    with pytest.raises(ConfigError) as info:
        spec.resolve(tree)
    assert message in str(info.value)


def test_the_run_length_not_train_steps_must_take_eval_every():
    # 95 steps + 5 of warmup = 100: eval_every=50 divides the run, not train.steps.
    c = _prepended(**{"train.steps": 95, "schedule.warmup_steps": 5, "train.eval_every": 50})
    assert spec.resolve(c).base.program.steps == 100


def test_the_warmup_inside_train_steps_still_must_end_before_them():
    with pytest.raises(ConfigError, match="or set schedule.prepend_warmup=True"):
        spec.resolve(tiny_config(**{"schedule.warmup_steps": 100}))


def test_a_searched_prepended_warmup_gives_each_trial_its_own_length():
    c = _prepended()
    c.search = ml_collections.ConfigDict(
        {"schedule": {"warmup_steps": spaces.discrete([0, 20, 50], role="scientific")}}
    )
    resolved = spec.resolve(c)
    assert [resolved.trial({"schedule.warmup_steps": w}).program.steps for w in (0, 20, 50)] == [
        100,
        120,
        150,
    ]


@pytest.mark.parametrize(
    "space, message",
    [
        (spaces.int_linear(0, 50), "search it over listed values"),
        (spaces.discrete([0, 15]), "value 15 must be an int >= 0 that keeps train.eval_every=10"),
    ],
)
def test_a_searched_prepended_warmup_is_checked_before_anything_trains(space, message):
    c = _prepended()
    c.search = ml_collections.ConfigDict({"schedule": {"warmup_steps": space}})
    with pytest.raises(ConfigError, match="search.schedule.warmup_steps: ") as info:
        spec.resolve(c)
    assert message in str(info.value)


# ---------------------------------------------------------------------------------------------
# the playbook's 5% caution


def test_a_warmup_over_five_percent_of_the_steps_is_flagged():
    assert spec.WARMUP_WARNING_FRACTION == 0.05
    assert spec.warmup_warning(0, 1000) is None
    assert spec.warmup_warning(50, 1000) is None  # 5% exactly: fine
    message = spec.warmup_warning(51, 1000)
    assert message.startswith("schedule.warmup_steps=51 is 5% of train.steps=1000, over 5%")
    assert "raise train.steps" in message
    assert spec.warmup_warning(1000, 10_000).startswith("schedule.warmup_steps=1000 is 10% of")


# ---------------------------------------------------------------------------------------------
# the warmup study (--lineage warmup)

SEARCH = {"optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)}}


def _trial(lr, value=0.5, status="completed"):
    t = {"params": {"optimizer.learning_rate": lr}, "status": status}
    if status == "completed":
        t["curves"] = {"val/error": [(0, 0.9), (50, (0.9 + value) / 2), (100, value)]}
    return t


UNSTABLE = [
    _trial(3e-3, 0.2),
    _trial(1e-3, 0.3),
    _trial(0.05, status="infeasible"),
    _trial(0.08, status="infeasible"),
]


def _parent(trials, config):
    """A finished parent built by hand whose recorded config is `config` with SEARCH."""
    base = json.loads(config_lib.to_json(config))
    fixed = {k: v for k, v in base.items() if k not in ("search", "study", "train")}
    steps = base["train"]["steps"]
    study = constructed_study(SEARCH, trials, steps=steps, name="parent", fixed=fixed)
    study.record["config"]["train"] = base["train"]
    study.record["config"]["study"] = {**base["study"], "num_trials": len(trials)}
    return study


def _study_file(**overrides):
    c = tiny_config(**overrides)
    c.search = ml_collections.ConfigDict(SEARCH)
    c.study.name = "parent"
    return c


def _derive(parent, action, config, **options):
    how = lineage.REGISTRY[action]
    resolved = how.resolve_options(options, lambda key: f"study.parent.{key}")
    child = derivation.derive(config, how, resolved, parent, parent_name=parent.name)
    return ml_collections.ConfigDict(child)


def test_the_warmup_study_is_the_playbooks_experiment():
    config = _study_file(**{"train.steps": 100_000, "train.eval_every": 10_000})
    child = _derive(_parent(UNSTABLE, config), "warmup", config)
    resolved = spec.resolve(child)
    assert child.study.algorithm == "manual" and child.study.num_trials == 4
    lr = 10 * 0.05  # lr_factor x the smallest learning rate that diverged
    for trial, warmup in zip(child.study.trials, (10, 100, 1000, 10_000)):
        assert trial["schedule.warmup_steps"] == warmup
        assert trial["train.steps"] == 2 * warmup  # post_warmup_steps = 2 x warmup_steps
        run = resolved.trial(trial)
        assert run.program.steps == 3 * warmup and run.schedule.prepend_warmup
        # An evaluation at the end of the warmup, and about 10 in all.
        assert warmup % run.train.eval_every == 0 and 10 <= 3 * warmup // run.train.eval_every <= 15
        rates = _rates(run)
        ramp = np.arange(warmup + 1) / warmup * lr
        np.testing.assert_allclose(rates[: warmup + 1], ramp, rtol=1e-5)
        np.testing.assert_allclose(rates[warmup:], lr, rtol=1e-6)  # constant at the base rate
    changes = "\n".join(child.study.parent.changes)
    assert "optimizer.learning_rate: 0.5 (10 x 0.05, the smallest learning rate that diverged" in (
        changes
    )
    assert (
        "schedule: cosine -> constant with the warmup prepended (schedule.prepend_warmup): each "
        "trial ramps 0 -> 0.5 over its warmup_steps, then stays at 0.5 for post_warmup_steps = "
        "2 x warmup_steps (its train.steps)"
    ) in changes
    assert "schedule.warmup_steps in [10, 100, 1000, 10000] (log grid, at most 10% of " in changes
    assert "the run becomes train.steps + W = 100000 + W steps" in changes
    # 10,000 is 10% of the max_train_steps: the playbook's caution above 5%.
    assert "caution: [10000] is over 5% of train.steps=100000; if only such a warmup trains, " in (
        changes
    )


def test_the_warmup_studys_post_warmup_factor_is_an_option():
    config = _study_file()
    child = _derive(_parent(UNSTABLE, config), "warmup", config, post_warmup_factor=3)
    grid = actions.warmup_grid(100)
    assert [t["schedule.warmup_steps"] for t in child.study.trials] == grid
    assert [t["train.steps"] for t in child.study.trials] == [3 * w for w in grid]
    assert child.study.parent.post_warmup_factor == 3.0
    resolved = spec.resolve(child)
    assert [resolved.trial(t).program.steps for t in child.study.trials] == [4 * w for w in grid]
    with pytest.raises(ConfigError, match="study.parent.post_warmup_factor: must be a number > 0"):
        _derive(_parent(UNSTABLE, config), "warmup", config, post_warmup_factor=0)


# ---------------------------------------------------------------------------------------------
# round 2 (--lineage promote)

MIDDLE = [_trial(3e-3, 0.2), _trial(4e-3, 0.21), _trial(1e-4, 0.6)]


def test_round_2_keeps_a_prepended_warmup_and_extends_the_steps_after_it():
    fields = {"schedule.name": "linear", "train.steps": 100}
    config = _prepended(**fields)
    config.search = ml_collections.ConfigDict(SEARCH)
    config.study.name = "parent"
    parent = _parent(MIDDLE, config)
    child = _derive(parent, "promote", config, top_k=1, steps_factor=3)
    [trial] = child.study.trials
    round1 = spec.resolve(config).trial(parent.feasible[0].params)
    round2 = spec.resolve(child).trial(trial)
    assert round1.program.steps == 110 and round2.program.steps == 310
    assert round2.schedule.warmup_steps == 10 and child.train.steps == 300
    assert trial["schedule.decay_steps"] == 100  # round 1's: all its train.steps after the ramp
    one, two = _rates(round1), _rates(round2)
    np.testing.assert_allclose(two[:11], one[:11], rtol=1e-6)  # the same ramp
    np.testing.assert_allclose(two[10:211], one[10], rtol=1e-6)  # the peak, 200 steps longer
    np.testing.assert_allclose(two[210:], one[10:], rtol=1e-5, atol=1e-9)  # round 1's decay
    changes = "\n".join(child.study.parent.changes)
    assert "schedule.warmup_steps: kept, prepended (schedule.prepend_warmup)" in changes
    assert "train.steps=300 steps of the schedule, 300 + warmup_steps in all" in changes


def test_round_2_of_a_searched_prepended_warmup_evaluates_each_run_evenly():
    config = _prepended(**{"train.eval_every": 20, "schedule.warmup_steps": 0})
    config.search = ml_collections.ConfigDict(
        {**SEARCH, "schedule": {"warmup_steps": spaces.discrete([0, 20])}}
    )
    config.study.name = "parent"
    trials = [_trial(3e-3, 0.2), _trial(4e-3, 0.3)]
    for t, warmup in zip(trials, (20, 0)):
        t["params"]["schedule.warmup_steps"] = warmup
    parent = _parent(trials, config)
    parent.space = spaces.parse(config_lib.to_tree(config)["search"])
    child = _derive(parent, "promote", config, top_k=2, steps_factor=1.5)
    resolved = spec.resolve(child)
    runs = [resolved.trial(t) for t in child.study.trials]
    # 150 + 20 steps: the base's eval_every (25, for 150 steps) does not divide 170.
    assert [r.program.steps for r in runs] == [170, 150]
    assert child.study.trials[0]["train.eval_every"] == 17
    assert "train.eval_every" not in child.study.trials[1] and child.train.eval_every == 25
    assert any("train.eval_every: set per trial" in c for c in child.study.parent.changes)


def test_round_2_of_the_warmup_study_scales_each_trials_own_steps():
    config = _study_file(**{"train.steps": 1000, "train.eval_every": 100})
    study = _derive(_parent(UNSTABLE, config), "warmup", config)
    tree = config_lib.to_tree(study)
    curves = {"val/error": [(0, 0.9), (1, 0.3)]}
    trials = [{"params": dict(t), "curves": curves} for t in study.study.trials]
    fixed = {k: v for k, v in tree.items() if k not in ("search", "train")}
    warmup_study = constructed_study({}, trials, name="parent-warmup", fixed=fixed)
    warmup_study.record["config"]["train"] = tree["train"]
    child = _derive(warmup_study, "promote", study, top_k=1, steps_factor=2)
    [trial] = child.study.trials
    first = study.study.trials[0]
    assert trial["schedule.warmup_steps"] == first["schedule.warmup_steps"]
    assert trial["train.steps"] == 2 * first["train.steps"]
    run = spec.resolve(child).trial(trial)
    assert run.program.steps == first["schedule.warmup_steps"] + 2 * first["train.steps"]


def test_a_trials_run_length_counts_its_prepended_warmup():
    """What the best-step view, the not-converged check and the dashboard's ETA divide by."""
    parent = _parent(UNSTABLE, _prepended())
    assert parent.run_length(parent.trials[0]) == 110  # 100 steps after a 10-step warmup
    warmup_study = _parent(
        [dict(_trial(3e-3, 0.2), params={"optimizer.learning_rate": 3e-3,
                                          "schedule.warmup_steps": 20, "train.steps": 40})],
        _prepended(),
    )  # fmt: skip
    assert warmup_study.run_length(warmup_study.trials[0]) == 60


def test_the_diagnostics_flag_a_best_warmup_over_five_percent_of_the_steps():
    from jaxplay.analysis import diagnostics

    long = _parent(UNSTABLE, _study_file(**{"schedule.warmup_steps": 10}))  # 10% of 100
    (finding,) = diagnostics.check_warmup_length(long)
    assert finding.title == "Warmup over 5% of train.steps"
    assert "trial 0" in finding.detail and "--lineage promote" in finding.action
    # Fixed by the study file, it is a choice, not a warmup the runs were found to need.
    assert finding.severity == "info" and "study file fixes it" in finding.detail
    for t in long.trials:  # the same warmup, tuned by the search: the playbook's warning
        t.params["schedule.warmup_steps"] = 10
    (finding,) = diagnostics.check_warmup_length(long)
    assert finding.severity == "warning" and "study file fixes" not in finding.detail
    short = _parent(UNSTABLE, _study_file(**{"schedule.warmup_steps": 5}))  # exactly 5%
    assert diagnostics.check_warmup_length(short) == []


def test_the_probe_of_a_prepended_study_evaluates_its_whole_run():
    parent = _parent(UNSTABLE, _prepended())
    child = _derive(parent, "probe", _prepended(), steps=50)
    spec.resolve(child)  # 50 steps after the 10-step warmup, evaluated evenly
    assert child.train.steps == 50 and (50 + 10) % child.train.eval_every == 0
