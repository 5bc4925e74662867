"""Tests for jaxplay.tuning's lineage: every way a study derives from its parent, and the schedule
math of round 2."""

import getpass
import json
import math
import pathlib

import ml_collections
import pytest

from factories import constructed_study, tiny_config
from jaxplay import config as config_lib
from jaxplay import optim, spaces, spec
from jaxplay import store as store_lib
from jaxplay.errors import ConfigError, StoreError
from jaxplay.tuning import actions, derivation, lineage

SEARCH = {
    "optimizer": {"learning_rate": spaces.log(1e-4, 1e-1), "b1": spaces.linear(0.8, 0.99)},
    "model": {"width": spaces.discrete([16, 32], role="scientific")},
}


def _base(**overrides):
    """The study file of the child: tiny_config with the parent's search space."""
    c = tiny_config(**overrides)
    c.search = ml_collections.ConfigDict(SEARCH)
    c.study.name = "parent"
    return c


def _curve(value, steps=100):
    return [(0, 0.9), (steps // 2, (0.9 + value) / 2), (steps, value)]


def _parent(trials, *, search=SEARCH, steps=100, **config_overrides):
    """A finished parent study built by hand, whose recorded config is the tiny config."""
    base = json.loads(config_lib.to_json(_base(**config_overrides)))
    fixed = {k: v for k, v in base.items() if k not in ("search", "study", "train")}
    study = constructed_study(
        search, trials, steps=steps, name="parent", fixed=fixed, notes=base["study"]["notes"]
    )
    study.record["config"]["train"] = base["train"]
    study.record["config"]["study"] = {**base["study"], "num_trials": len(trials)}
    return study


def _trial(lr, b1=0.9, width=32, value=0.5, status="completed", **extra):
    t = {
        "params": {"optimizer.learning_rate": lr, "optimizer.b1": b1, "model.width": width},
        "status": status,
    }
    if status == "completed":
        t["curves"] = {"val/error": _curve(value), "train/grad_norm": [(50, 1.0), (100, 2.0)]}
    t.update(extra)
    return t


def _derive(parent, action, config=None, *, name=None, notes=None, **options):
    """The child of `parent` by `action` (read with dots), named `name` and with `notes` of its own
    when given, as the study file `config` (default: _base()) declares it."""
    config = config or _base()
    how = lineage.REGISTRY[action]
    resolved = how.resolve_options(options, lambda key: f"study.parent.{key}")
    child = derivation.derive(
        config, how, resolved, parent, parent_name=parent.name, name=name, notes=notes
    )
    spec.resolve(child)  # every derived study is a valid study
    return ml_collections.ConfigDict(child)


# A parent whose best trials (lowest error) sit at the top of the learning-rate range.
EDGE = [
    _trial(0.09, 0.85, value=0.20),
    _trial(0.08, 0.95, value=0.22),
    _trial(0.07, 0.9, value=0.25),
    _trial(1e-3, 0.82, value=0.4),
    _trial(2e-4, 0.97, value=0.6),
    _trial(3e-3, 0.88, value=0.35),
]
# A parent whose best trials cluster in the middle of the learning-rate range.
MIDDLE = [
    _trial(3e-3, 0.85, value=0.20),
    _trial(4e-3, 0.95, value=0.21),
    _trial(2.5e-3, 0.82, value=0.22),
    _trial(1.1e-4, 0.9, value=0.6),
    _trial(0.09, 0.97, value=0.5),
    _trial(3e-4, 0.88, value=0.4),
    _trial(0.02, 0.93, value=0.45),
    _trial(1e-3, 0.98, value=0.3),
]


# ---------------------------------------------------------------------------------------------
# refine


def test_refine_widens_the_edge_where_the_best_trials_sit():
    child = _derive(_parent(EDGE), "refine")
    lr = child.search.optimizer.learning_rate
    # widened by half its decades at the upper edge: 1.5 decades above 0.1
    assert lr["min"] == pytest.approx(1e-4) and lr["max"] == pytest.approx(3.1623, rel=1e-4)
    assert child.study.name == "parent-refine" and child.study.algorithm == "quasirandom"
    changes = "\n".join(child.study.parent.changes)
    assert (
        "optimizer.learning_rate: [0.0001, 0.1] -> [0.0001, 3.162] (the best trials sit at its "
        "upper edge)" in changes
    )
    assert "model.width: kept" not in changes  # discrete: nothing to widen or narrow


def test_refine_narrows_around_the_best_trials_and_keeps_scientific_ranges():
    search = {**SEARCH, "model": {"width": spaces.int_linear(8, 64, role="scientific")}}
    trials = [
        dict(t, params={**t["params"], "model.width": 8 + 7 * i}) for i, t in enumerate(MIDDLE)
    ]
    child = _derive(_parent(trials, search=search), "refine")
    lr = child.search.optimizer.learning_rate
    # The best three trials span [2.5e-3, 4e-3]; the new range holds them with room, inside the
    # old one.
    assert 1e-4 < lr["min"] < 2.5e-3 and 4e-3 < lr["max"] < 1e-1
    assert math.log(lr["max"] / lr["min"]) < 0.5 * math.log(1e-1 / 1e-4)
    assert child.search.model.width["min"] == 8 and child.search.model.width["max"] == 64
    assert any(c.startswith("model.width: kept (scientific") for c in child.study.parent.changes)


def test_refine_keeps_a_zero_one_range_inside_zero_one():
    trials = [
        _trial(3e-3, b1, value=v)
        for b1, v in (
            (0.985, 0.2),
            (0.98, 0.21),
            (0.989, 0.22),
            (0.85, 0.5),
            (0.9, 0.45),
            (0.81, 0.6),
        )
    ]
    b1 = _derive(_parent(trials), "refine").search.optimizer.b1
    assert b1["max"] == pytest.approx(0.995) and b1["min"] == pytest.approx(0.8)


def test_refine_refuses_when_nothing_needs_changing():
    spread = [
        _trial(lr, b1, value=0.3 + 0.01 * i)
        for i, (lr, b1) in enumerate(((2e-4, 0.82), (0.05, 0.97), (3e-3, 0.9), (1e-3, 0.85)))
    ]
    with pytest.raises(ConfigError, match="needs no change.*--lineage exploit"):
        _derive(_parent(spread), "refine")


# ---------------------------------------------------------------------------------------------
# exploit, reseed


def test_exploit_switches_to_bayesian_optimization_on_the_parents_space():
    config = _base()
    config.search = ml_collections.ConfigDict(
        {"optimizer": {"learning_rate": spaces.log(1e-5, 1.0)}}
    )
    config.study.num_trials = 7
    child = _derive(_parent(MIDDLE), "exploit", config=config)
    assert child.study.algorithm == "gp" and child.study.acquisition == "ei"
    assert child.study.num_trials == 7  # the study file's budget, not the parent's
    assert child.search.optimizer.learning_rate["min"] == pytest.approx(1e-4)  # the parent's space
    assert child.study.name == "parent-exploit"
    assert "seeded with the parent's 8 finished trials" in child.study.parent.changes[-1]


def test_reseed_runs_the_same_study_with_the_next_search_seed_and_budget():
    config = _base()
    config.study.num_trials = 99
    child = _derive(_parent(MIDDLE), "reseed", config=config)
    assert child.study.seed == 1 and child.study.name == "parent-seed1"
    assert child.study.num_trials == len(MIDDLE)
    assert spec.resolve(child).space.paths == _parent(MIDDLE).space.paths


# ---------------------------------------------------------------------------------------------
# promote and rerun


def test_promote_takes_the_top_k_with_more_steps_and_seeds():
    child = _derive(_parent(MIDDLE), "promote", top_k=2, steps_factor=4, seeds=3)
    assert child.study.name == "parent-round2" and child.study.algorithm == "manual"
    assert child.study.notes == "round 2: top 2 of parent, x4 steps"  # not the parent's question
    assert child.train.steps == 400 and 400 % child.train.eval_every == 0
    trials = child.study.trials
    assert len(trials) == 6 and child.study.num_trials == 6
    assert [t["optimizer.learning_rate"] for t in trials] == [3e-3] * 3 + [4e-3] * 3
    assert [t["seed"] for t in trials] == [0, 1, 2] * 2
    assert not spec.resolve(child).space.paths  # nothing searched: the trials are listed
    # cosine (the tiny config's schedule): base learning rate kept, horizon extended, no decay_steps
    assert "decay_steps" not in trials[0] and child.schedule.get("decay_steps") is None
    assert any("horizon extended" in c for c in child.study.parent.changes)


def test_promote_of_a_linear_schedule_keeps_round_1s_decay_length():
    config = _base(**{"schedule.name": "linear"})
    parent = _parent(MIDDLE, **{"schedule.name": "linear"})
    child = _derive(parent, "promote", config=config, top_k=1, steps_factor=3)
    [trial] = child.study.trials
    warmup = config.schedule.warmup_steps
    assert trial["schedule.decay_steps"] == 100 - warmup
    as_run = spec.resolve(child).trial(trial)  # a valid schedule, checked as the trainer gets it
    assert as_run.train.steps == 300 and as_run.schedule.decay_steps == 90
    # A chained promotion (round 2 as the parent) keeps that decay length again and is round 3.
    round2 = _parent(MIDDLE, **{"schedule.name": "linear"})
    round2.record["config"] = json.loads(config_lib.to_json(config_lib.apply(child, trial)))
    round2.record["name"] = child.study.name
    round3 = _derive(round2, "promote", config=config, top_k=1, steps_factor=2)
    assert round3.study.name == "parent-round3" and round3.train.steps == 600
    assert round3.study.trials[0]["schedule.decay_steps"] == 90


def test_round_names_count_up():
    mlp = _parent(MIDDLE)
    mlp.record["name"] = "mlp"
    assert _derive(mlp, "promote").study.name == "mlp-round2"
    mlp.record["name"] = "mlp-round2"
    assert _derive(mlp, "promote").study.name == "mlp-round3"


def test_rerun_is_the_best_trial_with_five_seeds_at_the_same_length():
    child = _derive(_parent(MIDDLE), "rerun")
    assert child.study.name == "parent-rerun" and child.train.steps == 100
    assert [t["seed"] for t in child.study.trials] == [0, 1, 2, 3, 4]
    assert {t["optimizer.learning_rate"] for t in child.study.trials} == {3e-3}


# ---------------------------------------------------------------------------------------------
# instability: warmup and clipping


UNSTABLE = MIDDLE[:3] + [
    _trial(0.05, status="infeasible", error="diverged"),
    _trial(0.08, status="infeasible", error="diverged"),
]


def test_warmup_study_starts_at_ten_times_the_unstable_learning_rate():
    child = _derive(
        _parent(UNSTABLE, steps=100_000),
        "warmup",
        config=_base(**{"train.steps": 100_000, "train.eval_every": 10_000}),
    )
    assert child.optimizer.learning_rate == pytest.approx(0.5)
    assert child.optimizer.b1 == pytest.approx(0.85)  # the best trial's values are fixed
    # One trial per warmup length, each prepended and followed by twice as many constant steps.
    warmups = [t["schedule.warmup_steps"] for t in child.study.trials]
    assert warmups == [10, 100, 1000, 10000]
    assert [t["train.steps"] for t in child.study.trials] == [20, 200, 2000, 20000]
    assert child.schedule.name == "constant" and child.schedule.prepend_warmup is True
    assert child.study.algorithm == "manual" and child.study.name == "parent-warmup"


def test_warmup_grid_stays_within_a_tenth_of_the_steps():
    for steps in (100, 1000, 30_000, 1_000_000):
        grid = actions.warmup_grid(steps)
        assert len(grid) >= 3 and max(grid) <= 0.1 * steps and grid == sorted(set(grid))


def test_clip_study_brackets_the_90th_percentile_of_the_gradient_norm():
    child = _derive(_parent(UNSTABLE), "clip")
    # The best trial logged gradient norms 1 and 2: their 90th percentile is 1.9, bracketed by
    # two thresholds below it (clip harder) and one above.
    assert list(child.search.train.grad_clip_norm["values"]) == pytest.approx(
        [0.475, 0.95, 1.9, 3.8], rel=1e-2
    )
    assert child.optimizer.learning_rate == pytest.approx(0.05)


def test_instability_studies_need_a_diverged_trial():
    with pytest.raises(ConfigError, match="no trial diverged"):
        _derive(_parent(MIDDLE), "warmup")


# ---------------------------------------------------------------------------------------------
# errors and caveats


def test_a_parent_with_unfinished_trials_is_refused():
    with pytest.raises(ConfigError, match=r"trials \[3\] have not finished"):
        _derive(_parent(MIDDLE[:3] + [_trial(1e-3, status="pending")]), "promote")


def test_an_exploit_with_another_objective_is_refused():
    config = _base()
    config.study.objective = "val/loss"
    with pytest.raises(ConfigError, match="parent optimized val/error"):
        _derive(_parent(MIDDLE), "exploit", config=config)


def test_fixed_values_that_differ_from_the_parent_are_listed_as_caveats():
    child = _derive(_parent(MIDDLE), "promote", config=_base(**{"data.batch_size": 128}))
    assert any(
        c.startswith("data.batch_size: 64 -> 128 (differs from the parent")
        for c in child.study.parent.changes
    )


@pytest.mark.parametrize(
    "options, error, fix",
    [
        ({"action": "grow"}, "study.parent.action: unknown", "use one of refine, exploit"),
        ({"action": "promote", "top_k": 0}, "study.parent.top_k: must be an int >= 1", "got 0"),
        (
            {"action": "promote", "steps_factor": 0.5},
            "study.parent.steps_factor: must be a number >= 1",  # round 2 trains longer
            "got 0.5",
        ),
        ({"action": "rerun", "seeds": 0}, "study.parent.seeds: must be an int >= 1", "got 0"),
        (
            {"action": "reseed", "seeds": 3},
            "study.parent.seeds: --lineage reseed takes",
            "no options",
        ),
    ],
)
def test_bad_options_name_the_field(tmp_path, options, error, fix):
    config = _base()
    config.study.parent = {"study": "parent", **options}
    # The options are checked before the store is read: this one holds no study.
    with pytest.raises(ConfigError) as info:
        lineage.declared_parent(config, store_lib.default_url(tmp_path))
    assert error in str(info.value) and fix in str(info.value)


# ---------------------------------------------------------------------------------------------
# schedule math


def _hp(**values):
    return optim.as_arrays(spec.HParams(**{**optim.HPARAM_DEFAULTS, **values}))


def _schedule(trial: spec.TrialSpec):
    """Step -> learning rate of a resolved trial, as its trainer computes it."""
    return optim.learning_rate_fn(
        trial.schedule.name, trial.train.steps, optim.as_arrays(trial.hparams)
    )


def test_linear_round_2_has_a_longer_constant_phase_and_the_same_decay():
    fields = {"schedule.name": "linear", "schedule.warmup_steps": 100}
    fields.update({"train.steps": 1000, "train.eval_every": 100})
    config = _base(**fields)
    parent = _parent(MIDDLE, steps=1000, **fields)
    child = _derive(parent, "promote", config=config, top_k=1, steps_factor=4)
    [trial] = child.study.trials
    round1 = _schedule(spec.resolve(config).trial(parent.feasible[0].params))
    round2 = _schedule(spec.resolve(child).trial(trial))
    peak = parent.feasible[0].params["optimizer.learning_rate"]
    tol = 1e-6 * peak  # float32 arithmetic on the peak rate
    # same warmup, then the peak until the last 900 steps...
    assert float(round2(50)) == pytest.approx(float(round1(50)), abs=tol)
    assert float(round2(3000)) == pytest.approx(peak) and float(round2(3100)) == pytest.approx(peak)
    # ...whose decay is round 1's, step for step
    for k in (0, 200, 450, 899, 900):
        assert float(round2(3100 + k)) == pytest.approx(float(round1(100 + k)), abs=tol)


def test_cosine_round_2_keeps_the_base_rate_and_stretches_the_horizon():
    round1 = optim.learning_rate_fn("cosine", 1000, _hp(learning_rate=0.5, warmup_steps=100))
    round2 = optim.learning_rate_fn("cosine", 3000, _hp(learning_rate=0.5, warmup_steps=100))
    assert float(round2(100)) == pytest.approx(0.5)
    for fraction in (0.1, 0.5, 0.9, 1.0):
        assert float(round2(100 + fraction * 2900)) == pytest.approx(
            float(round1(100 + fraction * 900)), abs=1e-6
        )


def test_decay_steps_must_fit_after_the_warmup():
    c = tiny_config(**{"schedule.name": "linear"})
    with c.unlocked():
        c.schedule.decay_steps = 95
    with pytest.raises(
        ConfigError,
        match=r"schedule.decay_steps: must be in \[0, train.steps - warmup_steps = 90\]",
    ):
        spec.resolve(c)


# ---------------------------------------------------------------------------------------------
# The whole loop through the CLI, on real (tiny) trials


REPO = pathlib.Path(__file__).resolve().parent.parent
SMOKE = "experiments/mnist1d_mlp.py:smoke"


@pytest.fixture(scope="module")
def round1(tmp_path_factory):
    """A finished 5-trial round-1 study (the README's study, shrunk) in its own workdir."""
    from jaxplay import sweep

    workdir = tmp_path_factory.mktemp("lineage")

    def run(*args):
        return sweep.main(
            [
                f"--config={REPO}/{SMOKE}",
                f"--workdir={workdir}",
                "--report=false",
                "--config.study.num_trials=5",
                *args,
            ]
        )

    assert run() == 0
    return run, workdir


def test_promote_through_the_cli_trains_round_2_and_reports_the_lineage(round1, capsys):
    from jaxplay import analysis

    run, workdir = round1
    args = [
        "--from_study=mnist1d-mlp-smoke",
        "--lineage=promote",
        "--top_k=2",
        "--steps_factor=1.5",
        "--seeds=2",
    ]
    assert run(*args, "--report=true") == 0
    out = capsys.readouterr().out
    assert (
        "study 'mnist1d-mlp-smoke-round2' derives from 'mnist1d-mlp-smoke' (--lineage promote)"
        in out
    )
    assert (
        "lineage    --lineage promote of mnist1d-mlp-smoke\n" in out
    )  # the summary table's header
    child = analysis.load(workdir, study="mnist1d-mlp-smoke-round2")
    parent = analysis.load(workdir, study="mnist1d-mlp-smoke")
    assert child.record["status_counts"]["completed"] == 4 and child.train_steps == 300
    assert [t.params["seed"] for t in child.trials] == [0, 1, 0, 1]
    top = [t.params["optimizer.learning_rate"] for t in parent.feasible[:2]]
    assert [t.params["optimizer.learning_rate"] for t in child.trials] == [
        top[0],
        top[0],
        top[1],
        top[1],
    ]
    assert all(t.steps_run == 300 for t in child.trials)
    page = (workdir / "report-mnist1d-mlp-smoke-round2.html").read_text()
    assert "Derived from study <b>mnist1d-mlp-smoke</b> by <code>--lineage promote</code>" in page
    assert "train.steps: 200 -&gt; 300 (x1.5)" in page
    assert (
        "<td>mnist1d-mlp-smoke</td><td>parent</td>" in page and "compared with this study" in page
    )
    # The same command again continues the same derived study: nothing retrains.
    assert run(*args) == 0
    out = capsys.readouterr().out
    assert (
        "4 trials (4 already finished)" in out
        and "run batched" not in out
        and "\ntrial 0 " not in out
    )


def test_exploit_runs_bayesian_optimization_seeded_by_the_parent(round1, capsys):
    from jaxplay import analysis

    run, workdir = round1
    assert (
        run(
            "--from_study=mnist1d-mlp-smoke",
            "--lineage=exploit",
            "--config.study.num_trials=3",
            "--executor=batched",
            "--batch_trials=3",
        )
        == 0
    )
    child = analysis.load(workdir, study="mnist1d-mlp-smoke-exploit")
    parent = analysis.load(workdir, study="mnist1d-mlp-smoke")
    assert child.record["algorithm"] == "gp" and child.record["status_counts"]["completed"] == 3
    # The parent's 5 trials are enough observations: all 3 came from the GP, in one batch, and none
    # repeats a point it already knew.
    points = [tuple(child.space.to_unit(t.params)) for t in child.trials]
    known = [tuple(child.space.to_unit(t.params)) for t in parent.trials]
    assert len(set(points)) == 3 and not set(points) & set(known)
    assert all(0 <= u <= 1 for p in points for u in p)
    assert "mnist1d-mlp-smoke" in {r["name"] for r in child.family}


def test_rerun_measures_trial_variance_that_compare_weighs(round1, capsys):
    from jaxplay import studies

    run, workdir = round1
    assert run("--from_study=mnist1d-mlp-smoke", "--lineage=rerun", "--seeds=3") == 0
    capsys.readouterr()
    assert (
        studies.main(
            [
                "compare",
                f"--workdir={workdir}",
                "--study=mnist1d-mlp-smoke",
                "--other=mnist1d-mlp-smoke-rerun",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "trial variance: std" in out
        and "over 3 seeds of the best trial (mnist1d-mlp-smoke-rerun)" in out
    )
    assert "study variance unknown" in out


def test_lineage_flags_need_a_parent_and_an_action(round1, capsys):
    run, _ = round1
    assert run("--lineage=promote") == 2
    assert "--lineage: only with --from_study PARENT" in capsys.readouterr().err
    assert run("--from_study=mnist1d-mlp-smoke") == 2
    assert "say how to derive the study with --lineage" in capsys.readouterr().err
    assert run("--from_study=nope", "--lineage=promote") == 2
    assert "--from_study: no study named 'nope'" in capsys.readouterr().err


def test_a_derived_study_is_named_after_its_parent_unless_named():
    refined = _parent(EDGE)
    refined.record["name"] = "parent-refine"
    # Unnamed (--from_study without --config.study.name): '<parent>-<action>', whatever the study
    # file (round 1's) calls itself.
    config = _base()
    config.study.name = "round-1"
    assert _derive(refined, "exploit", config=config).study.name == "parent-refine-exploit"
    # A name of the user's own (--config.study.name, or the study file's) is kept.
    assert _derive(refined, "exploit", config=config, name="my-bo").study.name == "my-bo"


def test_notes_say_what_the_study_is_plus_notes_of_its_own():
    refined = _parent(EDGE)
    refined.record["name"], refined.record["notes"] = (
        "parent-refine",
        "search space refined from parent's results",
    )
    summary = "Bayesian optimization seeded by parent-refine"
    config = _base(**{"study.notes": "round 1: is width 512 worth it?"})
    # Without notes of its own the file's round-1 notes go: they describe the parent's question.
    assert _derive(refined, "exploit", config=config).study.notes == summary
    assert (
        _derive(refined, "exploit", config=config, notes="is width 512 worth it?").study.notes
        == f"{summary}; is width 512 worth it?"
    )


def test_a_study_file_that_declares_its_parent_names_and_describes_the_child(round1):
    _, workdir = round1
    url = store_lib.default_url(workdir)
    summary = "Bayesian optimization seeded by mnist1d-mlp-smoke"
    # The file of round 1 itself (its name and notes are the parent's): named after the parent,
    # its notes say what it is.
    config = config_lib.load(f"{REPO}/{SMOKE}")
    config.study.parent = {"study": "mnist1d-mlp-smoke", "action": "exploit"}
    child = lineage.declared_parent(config, url)
    assert child["study"]["name"] == "mnist1d-mlp-smoke-exploit"
    assert child["study"]["notes"] == summary
    assert child["study"]["parent"]["study"] == "mnist1d-mlp-smoke"
    # A file of its own: its name is kept, its notes join what the study is.
    config = config_lib.load(f"{REPO}/{SMOKE}")
    config.study.name, config.study.notes = "my-bo", "a file that declares its parent"
    config.study.parent = {"study": "mnist1d-mlp-smoke", "action": "exploit"}
    child = lineage.declared_parent(config, url)
    assert child["study"]["name"] == "my-bo"
    assert child["study"]["notes"] == f"{summary}; a file that declares its parent"


# ---------------------------------------------------------------------------------------------
# What a derivation takes from the parent: a valid name, and hyperparameters only


def test_a_derived_name_over_the_limit_names_the_flag():
    parent = _parent(MIDDLE)
    parent.record["name"] = "p" * 95
    with pytest.raises(ConfigError) as info:
        _derive(parent, "exploit")  # 'ppp...-exploit': 103 characters
    message = str(info.value)
    assert message.startswith(f"--config.study.name: {'p' * 40!r}... is 103 characters long")
    assert message.endswith("name the child with --config.study.name=NAME")
    # A name of its own passes the same rule.
    assert _derive(parent, "exploit", name="short").study.name == "short"
    with pytest.raises(ConfigError, match=r"^--config\.study\.name: '\.\./x' holds '/'"):
        _derive(parent, "exploit", name="../x")


def _forged(trial, **params):
    """`trial` whose stored values also set `params` (a record the sweep never wrote)."""
    return {**trial, "params": {**trial["params"], **params}}


@pytest.fixture
def getuser_calls(monkeypatch):
    """Records calls of getpass.getuser: what a stored 'getpass:getuser' workload would run."""
    calls = []
    monkeypatch.setattr(getpass, "getuser", lambda: calls.append(1) or "someone")
    return calls


@pytest.mark.parametrize("action", ["promote", "rerun"])
def test_a_stored_workload_never_reaches_the_child(action, getuser_calls):
    trials = [_forged(MIDDLE[0], workload="getpass:getuser"), *MIDDLE[1:]]
    config = _base()
    config.workload = "classification"  # the field exists: setting it would import the value
    with pytest.raises(StoreError) as info:
        _derive(_parent(trials), action, config=config)
    assert str(info.value).startswith(
        "--from_study parent: trial 0's stored values set 'workload' ('workload' names the code "
        "to run, not a hyperparameter"
    )
    assert not getuser_calls


def test_a_stored_value_the_search_does_not_declare_is_refused(getuser_calls):
    # The fixed-at-best derivations (warmup, clip) apply the best trial's values to the base.
    trials = [_forged(UNSTABLE[0], **{"data.name": "digits"}), *UNSTABLE[1:]]
    with pytest.raises(StoreError, match="trial 0's stored values set 'data.name' \\(the study "):
        _derive(_parent(trials), "clip")
    trials = [_forged(UNSTABLE[0], workload="getpass:getuser"), *UNSTABLE[1:]]
    with pytest.raises(StoreError, match="set 'workload'"):
        _derive(_parent(trials), "warmup")
    assert not getuser_calls


def test_a_stored_search_of_the_workload_never_runs(getuser_calls):
    search = {**SEARCH, "workload": spaces.categorical(["classification", "getpass:getuser"])}
    trials = [_forged(t, workload="getpass:getuser") for t in MIDDLE]
    config = _base()
    config.workload = "classification"
    with pytest.raises(StoreError, match="set 'workload'"):
        _derive(_parent(trials, search=search), "promote", config=config)
    # A derivation that inherits the search space is refused when the child resolves.
    with pytest.raises(ConfigError, match="^search.workload: 'workload' names the code to run"):
        _derive(_parent(trials, search=search), "reseed", config=config)
    assert not getuser_calls


def _stored_parent(url, params: dict, name="parent"):
    """A finished one-trial study written to the store at `url` the way a sweep writes one, its
    trial's stored values being `params`."""
    config = _base()
    config.study.name = name
    tree = config_lib.to_tree(config)
    store = store_lib.Store(url)
    try:
        study_id = store.open_study(
            name, config_lib.config_hash(tree), config_path="x.py", config=tree, notes="",
            objective="val/error", mode="min", algorithm="quasirandom", seed=0, num_trials=1,
            command="cmd", git_commit=None, git_dirty=None, versions={}, device_kind="cpu",
        )  # fmt: skip
        store.add_trials(study_id, [params])
        trial_id, _, _ = store.claim(study_id, "worker")
        store.log_metrics(trial_id, 100, {"val/error": 0.3, "train/grad_norm": 1.0})
        store.finish(trial_id, "completed", best_step=100, best_value=0.3, steps_run=100)
    finally:
        store.close()


def test_a_forged_store_record_never_picks_the_code_to_run(tmp_path, getuser_calls):
    url = store_lib.default_url(tmp_path)
    good = {"optimizer.learning_rate": 3e-3, "optimizer.b1": 0.9, "model.width": 32}
    _stored_parent(url, {**good, "workload": "getpass:getuser"})
    config = _base()
    config.workload = "classification"
    with pytest.raises(StoreError, match="^--from_study parent: trial 0's stored values set "):
        lineage.from_parent(config, url, "parent", "promote", {})
    assert not getuser_calls
    # The same record as its sweep wrote it derives a valid child.
    _stored_parent(url, good, name="clean")
    child = lineage.from_parent(_base(), url, "clean", "promote", {})
    assert child["study"]["trials"] == [good] and spec.resolve(child).study.name == "clean-round2"
    # A study file that declares its parent names the child with its own study.name.
    config = _base()
    config.study.name = "a/b"
    config.study.parent = {"study": "clean", "action": "promote"}
    with pytest.raises(ConfigError, match="^study.name: 'a/b' holds '/'"):
        lineage.declared_parent(config, url)


def test_refine_keeps_a_widened_range_inside_the_fields_range():
    # The best trials sit at the lower edge of a linear learning-rate range: widening by half the
    # range would reach 0 (refused: learning_rate must be > 0), so it halves the way there.
    search = {
        "optimizer": {"learning_rate": spaces.linear(1e-3, 0.1)},
        "model": {"width": spaces.int_linear(1, 8)},
    }
    lrs = [(1.1e-3, 0.2), (1.2e-3, 0.21), (1.3e-3, 0.22), (0.05, 0.5), (0.08, 0.6), (0.03, 0.4)]
    trials = [
        {
            "params": {"optimizer.learning_rate": lr, "model.width": 1 + i % 2},
            "curves": {"val/error": _curve(value)},
        }
        for i, (lr, value) in enumerate(lrs)
    ]
    child = _derive(_parent(trials, search=search), "refine")
    lr = child.search.optimizer.learning_rate
    assert lr["min"] == pytest.approx(5e-4) and lr["max"] == pytest.approx(0.1)
    assert child.search.model.width["min"] >= 1
