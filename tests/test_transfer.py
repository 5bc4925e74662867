"""What transfers from round 1 to round 2 (the transfer classes and `--lineage promote --retune`),
the simple start (a study without a schedule trains at a constant learning rate) and the Adam
budget table as a search-space helper (spaces.adam)."""

import json
import pathlib

import ml_collections
import pytest

from factories import constructed_study, tiny_config, write_study_file
from jaxplay import config as config_lib
from jaxplay import optim, spaces, spec, train
from jaxplay import store as store_lib
from jaxplay.analysis.diagnostics import diagnose
from jaxplay.errors import ConfigError
from jaxplay.tuning import derivation, lineage, transfer

REPO = pathlib.Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# transfer classes


@pytest.mark.parametrize(
    "path, klass",
    [
        ("schedule.warmup_steps", transfer.VERY_LIKELY),
        ("schedule.prepend_warmup", transfer.VERY_LIKELY),
        ("model.init_scale", transfer.VERY_LIKELY),  # a custom workload's initialization
        ("model.width", transfer.LIKELY),
        ("model.name", transfer.LIKELY),
        ("model.dropout", transfer.MIGHT),
        ("optimizer", transfer.MIGHT),  # the choice of optimizer (spaces.branches)
        ("optimizer.learning_rate", transfer.MIGHT),
        ("optimizer.b1", transfer.MIGHT),
        ("optimizer.weight_decay", transfer.MIGHT),
        ("train.label_smoothing", transfer.MIGHT),
        ("data.augment", transfer.MIGHT),
        ("schedule.name", transfer.UNLIKELY),
        ("schedule.decay_steps", transfer.UNLIKELY),
        ("schedule.min_lr_factor", transfer.UNLIKELY),
        ("data.batch_size", None),
        ("train.ema_decay", None),
    ],
)
def test_each_path_gets_the_playbooks_transfer_class(path, klass):
    assert transfer.class_of(path) == klass
    if klass is None:
        assert transfer.describe(path).startswith("no transfer class")
    else:
        assert transfer.describe(path).startswith(transfer.WORDS[klass])


@pytest.mark.parametrize(
    "given, parsed",
    [
        ("unlikely", "unlikely"),
        (" unlikely , might", "might,unlikely"),  # the playbook's order, whatever the user's
        ("none", "none"),
        ("very_likely,likely,might,unlikely", "very_likely,likely,might,unlikely"),
    ],
)
def test_retune_names_classes(given, parsed):
    assert transfer.parse_retune(given, "--retune") == parsed


@pytest.mark.parametrize(
    "given, error",
    [
        ("sometimes", "--retune: unknown transfer class 'sometimes'; use very_likely, likely"),
        ("none,might", "--retune: none retunes nothing, so it goes alone"),
        ("", "--retune: name transfer classes"),
    ],
)
def test_a_bad_retune_is_one_line_naming_the_flag(given, error):
    with pytest.raises(ConfigError) as info:
        transfer.parse_retune(given, "--retune")
    assert str(info.value).startswith(error)


# ---------------------------------------------------------------------------------------------
# --lineage promote --retune

SEARCH = {
    "optimizer": {"learning_rate": spaces.log(1e-4, 1e-1), "b1": spaces.linear(0.8, 0.99)},
    "model": {"width": spaces.discrete([16, 32], role="scientific")},
    "schedule": {"min_lr_factor": spaces.linear(0.0, 0.5)},
}
LR, B1, FLOOR = "optimizer.learning_rate", "optimizer.b1", "schedule.min_lr_factor"
# The best three (lowest error) cluster at learning rates 2.5e-3..4e-3 and floors 0.1..0.15.
ROUND1 = [
    (3e-3, 0.85, 32, 0.10, 0.20),
    (4e-3, 0.95, 16, 0.15, 0.21),
    (2.5e-3, 0.82, 32, 0.12, 0.22),
    (1.1e-4, 0.9, 16, 0.45, 0.6),
    (0.09, 0.97, 32, 0.02, 0.5),
    (3e-4, 0.88, 16, 0.3, 0.4),
    (0.02, 0.93, 32, 0.4, 0.45),
    (1e-3, 0.98, 16, 0.25, 0.3),
]


def _base(search=SEARCH):
    c = tiny_config(**{"schedule.min_lr_factor": 0.0})
    c.search = ml_collections.ConfigDict(search)
    c.study.name = "parent"
    return c


def _parent(search=SEARCH, rows=ROUND1):
    """A finished round-1 study built by hand (no training), its config the tiny config's."""
    base = json.loads(config_lib.to_json(_base(search)))
    paths = spaces.parse(search).paths
    trials = []
    for *values, error in rows:
        params = dict(zip((LR, B1, "model.width", FLOOR), values))
        trials.append(
            {
                "params": {k: v for k, v in params.items() if k in paths},
                "curves": {"val/error": [(0, 0.9), (50, (0.9 + error) / 2), (100, error)]},
            }
        )
    fixed = {k: v for k, v in base.items() if k not in ("search", "study", "train")}
    study = constructed_study(search, trials, steps=100, name="parent", fixed=fixed)
    study.record["config"]["train"] = base["train"]
    study.record["config"]["study"] = {**base["study"], "num_trials": len(trials)}
    return study


def _promote(parent, config=None, **options):
    """The promote child of `parent`, checked as a valid study, as a ConfigDict."""
    how = lineage.REGISTRY["promote"]
    resolved = how.resolve_options(options, lambda key: f"study.parent.{key}")
    child = derivation.derive(config or _base(), how, resolved, parent, parent_name="parent")
    spec.resolve(child)
    return ml_collections.ConfigDict(child)


def _transfer_lines(child) -> dict:
    """path -> its 'transfer:' line of the child's changes."""
    return {c.split(": ")[1]: c for c in child.study.parent.changes if c.startswith("transfer: ")}


def test_promote_without_a_retuned_hyperparameter_keeps_every_value_and_says_why():
    search = {k: v for k, v in SEARCH.items() if k != "schedule"}  # no schedule searched
    parent = _parent(search)
    child = _promote(parent, top_k=2)  # the default --retune unlikely finds nothing to retune
    same = _promote(parent, top_k=2, retune="none")
    assert child.study.trials == same.study.trials and child.study.algorithm == "manual"
    assert [t[LR] for t in child.study.trials] == [3e-3, 4e-3]
    lines = _transfer_lines(child)
    assert sorted(lines) == sorted([B1, LR, "model.width"])
    assert lines[LR].endswith(
        "might transfer (optimizer hyperparameters); kept at each top trial's value"
    )
    assert "likely to transfer (architecture); kept" in lines["model.width"]


def test_retune_none_is_todays_promotion():
    parent = _parent()
    child = _promote(parent, top_k=2, seeds=2, retune="none")
    assert child.study.algorithm == "manual" and not spec.resolve(child).space.paths
    assert [t[FLOOR] for t in child.study.trials] == [0.10, 0.10, 0.15, 0.15]
    assert [t["seed"] for t in child.study.trials] == [0, 1, 0, 1]
    assert child.study.notes == "round 2: top 2 of parent, x2 steps"
    assert _transfer_lines(child)[FLOOR].endswith(
        "unlikely to transfer (learning-rate schedule); kept at each top trial's value"
    )


def test_promote_searches_the_schedule_again_around_the_best_trials():
    parent = _parent()
    child = _promote(parent, top_k=2, seeds=2)  # --retune unlikely: the schedule's floor
    resolved = spec.resolve(child)
    assert resolved.space.paths == (FLOOR,) and child.study.algorithm == "quasirandom"
    assert child.study.num_trials == 4  # top_k x seeds long runs, as --retune none trains
    assert "trials" not in child.study and child.train.steps == 200
    floor = child.search.schedule.min_lr_factor
    # Around the best three trials' floors (0.10..0.15), inside round 1's [0, 0.5] and narrower.
    assert 0.0 <= floor["min"] < 0.10 and 0.15 < floor["max"] <= 0.5
    assert floor["max"] - floor["min"] < 0.5 * (0.5 - 0.0)
    # Every other hyperparameter at the best trial's value, in the base config.
    assert child.optimizer.learning_rate == 3e-3 and child.optimizer.b1 == 0.85
    assert child.model.width == 32
    for t in resolved.designer().suggest(0, child.study.num_trials):
        assert floor["min"] <= t[FLOOR] <= floor["max"] and set(t) == {FLOOR}
    lines = _transfer_lines(child)
    assert lines[FLOOR].endswith("re-searched (--retune unlikely)")
    assert lines[LR].endswith("fixed at the best trial's value")
    changes = "\n".join(child.study.parent.changes)
    assert "trials: a quasirandom search of 4 at train.steps=200" in changes
    assert "schedule.min_lr_factor: re-searched over [0, 0.5] -> [" in changes
    assert child.study.notes.startswith("round 2 of parent: x2 steps")


def test_retune_might_also_searches_the_optimizer_and_keeps_the_architecture():
    child = _promote(_parent(), retune="unlikely,might", retune_trials=5)
    resolved = spec.resolve(child)
    assert set(resolved.space.paths) == {LR, B1, FLOOR} and child.study.num_trials == 5
    lr = child.search.optimizer.learning_rate
    assert lr["scale"] == "log" and 1e-4 < lr["min"] < 2.5e-3 and 4e-3 < lr["max"] < 1e-1
    # The best three trials' b1 (0.82..0.95) span most of round 1's range: kept whole, as refine.
    assert (child.search.optimizer.b1["min"], child.search.optimizer.b1["max"]) == (0.8, 0.99)
    assert "optimizer.b1: re-searched over [0.8, 0.99] kept (the best 3 trials span" in "\n".join(
        child.study.parent.changes
    )
    assert child.model.width == 32  # likely to transfer: the best trial's
    assert child.study.parent.retune == "might,unlikely"


def test_a_bad_retune_in_a_study_file_names_the_field(tmp_path):
    config = _base()
    config.study.parent = {"study": "parent", "action": "promote", "retune": "always"}
    with pytest.raises(ConfigError, match=r"^study.parent.retune: unknown transfer class 'always'"):
        lineage.declared_parent(config, store_lib.default_url(tmp_path))


def test_the_sweep_help_documents_retune():
    from jaxplay import sweep

    text = " ".join(sweep._parser().format_help().split())
    assert "--retune RETUNE promote: transfer classes" in text
    assert "(default promote unlikely)" in text
    assert "--retune_trials RETUNE_TRIALS" in text


# ---------------------------------------------------------------------------------------------
# the simple start: no schedule means a constant learning rate


def test_a_study_without_a_schedule_trains_at_a_constant_learning_rate(tmp_path):
    c = tiny_config(**{"train.steps": 50, "train.eval_every": 25})
    del c["schedule"]
    trial = spec.resolve(c).trial({})
    assert config_lib.DEFAULT_SCHEDULE == "constant"
    assert (trial.schedule.name, trial.schedule.warmup_steps) == ("constant", 0)
    rate = optim.learning_rate_fn(
        trial.schedule.name, trial.train.steps, optim.as_arrays(trial.hparams)
    )
    lr = c.optimizer.learning_rate
    assert [float(rate(s)) for s in (0, 1, 25, 49)] == pytest.approx([lr] * 4)
    logged = {}
    result = train.train_and_evaluate(trial, tmp_path, on_eval=logged.__setitem__)
    assert result.status == "completed" and sorted(logged) == [0, 25, 50]
    assert logged[50]["train/loss"] < logged[0]["train/loss"]


def test_a_study_file_without_a_schedule_loads_with_the_constant_one(tmp_path):
    c = tiny_config()
    del c["schedule"]
    path = write_study_file(tmp_path / "simple.py", c)
    loaded = config_lib.load(path, {"schedule.warmup_steps": 5})  # overrides reach it
    assert loaded.schedule.to_dict() == {"name": "constant", "warmup_steps": 5}
    assert spec.resolve(loaded).trial({}).schedule.name == "constant"


def test_a_schedule_without_a_name_is_constant_with_its_own_warmup():
    c = tiny_config()
    c.schedule = ml_collections.ConfigDict({"warmup_steps": 10})
    trial = spec.resolve(c).trial({})
    assert (trial.schedule.name, trial.schedule.warmup_steps) == ("constant", 10)


def test_an_unknown_schedule_says_what_leaving_it_out_means():
    c = tiny_config(**{"schedule.name": "sqrt"})
    with pytest.raises(ConfigError, match=r"^schedule.name: unknown schedule 'sqrt'.*'constant'"):
        spec.resolve(c)


# ---------------------------------------------------------------------------------------------
# spaces.adam: the playbook's Adam table as a search space

BANDS = [
    (1, [LR]),
    (9, [LR]),
    (10, [LR, B1]),
    (24, [LR, B1]),
    (25, [LR, B1, "optimizer.eps"]),
    (99, [LR, B1, "optimizer.eps"]),
    (100, [LR, B1, "optimizer.eps", "optimizer.b2"]),
]


@pytest.mark.parametrize("num_trials, tuned", BANDS)
def test_adam_searches_what_the_table_allows_for_the_budget(num_trials, tuned):
    search = spaces.adam(num_trials, learning_rate=(1e-4, 1e-1))
    space = spaces.parse({"optimizer": search})
    assert sorted(space.paths) == sorted(tuned)
    assert all(p.role == "nuisance" for p in space)
    assert space.params[space.paths.index(LR)].scale == "log"
    for p in space:  # each range holds optax's default, which the study file fixes otherwise
        default = {**optim.HPARAM_DEFAULTS, **optim.OPTIMIZERS["adam"]}[p.path.split(".")[1]]
        assert p.path == LR or p.min < default < p.max


@pytest.mark.parametrize("num_trials, tuned", BANDS)
def test_adams_search_passes_the_budget_check_quietly(num_trials, tuned):
    search = {"optimizer": spaces.adam(num_trials, learning_rate=(1e-4, 1e-1))}
    params = {p.path: p.from_unit(0.5) for p in spaces.parse(search)}
    curve = [(0, 0.9), (500, 0.3), (1000, 0.2)]
    trials = [{"params": params, "curves": {"val/error": curve}}] * num_trials
    findings = diagnose(constructed_study(search, trials))
    assert [f for f in findings if f.check == "adam_budget"] == []
    # One hyperparameter beyond the table is what the check flags (the two agree on the table).
    if num_trials < 100:
        beyond = {"optimizer": spaces.adam(100, learning_rate=(1e-4, 1e-1))}
        params = {p.path: p.from_unit(0.5) for p in spaces.parse(beyond)}
        trials = [{"params": params, "curves": {"val/error": curve}}] * num_trials
        flagged = [
            f for f in diagnose(constructed_study(beyond, trials)) if f.check == "adam_budget"
        ]
        assert "optimizer.b2" in [f.param for f in flagged]
        assert not set(tuned) & {f.param for f in flagged}
        assert all(
            f"spaces.adam({num_trials}, learning_rate=(min, max))" in f.action for f in flagged
        )


def test_a_study_using_adam_resolves_and_draws_inside_its_ranges():
    c = tiny_config()
    c.study.num_trials = 12
    c.search = ml_collections.ConfigDict(
        {"optimizer": spaces.adam(12, learning_rate=(1e-4, 3e-2), b1=(0.85, 0.95))}
    )
    resolved = spec.resolve(c)
    assert sorted(resolved.space.paths) == [B1, LR]
    b1 = c.search.optimizer.b1
    assert (b1.scale, b1.min, b1.max) == ("reverse_log", 0.85, 0.95)
    for t in resolved.designer().suggest(0, 12):
        assert 1e-4 <= t[LR] <= 3e-2 and 0.85 <= t[B1] <= 0.95


def test_the_quickstart_searches_what_it_always_searched():
    # experiments/mnist1d_mlp.py builds its search with spaces.adam: the same space as before.
    for arg in ("", ":smoke"):
        loaded = config_lib.load(f"{REPO}/experiments/mnist1d_mlp.py{arg}")
        assert loaded.search.optimizer.to_dict() == {
            "learning_rate": spaces.log(1e-4, 3e-2),
            "b1": spaces.linear(0.8, 0.99),
        }


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"num_trials": 0}, "spaces.adam: num_trials must be an int >= 1 (got 0)"),
        ({"num_trials": 12, "b1": (0.9,)}, "spaces.adam: b1 must be (min, max)"),
        ({"num_trials": 12, "learning_rate": None}, "spaces.adam: learning_rate must be"),
    ],
)
def test_adams_bad_input_names_the_argument(kwargs, error):
    kwargs = {"learning_rate": (1e-4, 1e-1), **kwargs}
    with pytest.raises(ConfigError) as info:
        spaces.adam(kwargs.pop("num_trials"), **kwargs)
    assert str(info.value).startswith(error)
