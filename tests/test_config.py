"""Tests for jaxplay.config: loading study files, overrides, validation (jaxplay.spec.resolve),
apply and hashing."""

import json
import textwrap

import ml_collections
import pytest

from jaxplay import config as study_config
from jaxplay import spaces, spec
from jaxplay.errors import ConfigError

STUDY_FILE = """
import ml_collections
from jaxplay import spaces

def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(name='mnist1d', batch_size=64)
    c.model = dict(name='mlp', width=256 if arg is None else int(arg), depth=2, dropout=0.0)
    c.optimizer = dict(name='adam', learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8)
    c.schedule = dict(name='constant')
    c.train = dict(steps=1000, eval_every=100)
    c.study = dict(name='demo', notes='round 1', objective='val/error', mode='min',
                   algorithm='quasirandom', num_trials=16, seed=0)
    c.search = dict(
        model=dict(width=spaces.discrete([128, 256, 512], role='scientific')),
        optimizer=dict(learning_rate=spaces.log(1e-4, 1e-1), b1=spaces.linear(0.8, 0.99)))
    return c
"""


@pytest.fixture
def study_path(tmp_path):
    path = tmp_path / "study.py"
    path.write_text(STUDY_FILE)
    return path


@pytest.fixture
def study(study_path):
    return study_config.load(str(study_path))


# ----------------------------------------------------------------------------------------------
# load


def test_load_without_and_with_arg(study_path):
    assert study_config.load(str(study_path)).model.width == 256
    assert study_config.load(f"{study_path}:64").model.width == 64


def test_load_passes_arg_containing_colons(tmp_path):
    path = tmp_path / "echo.py"
    path.write_text('def get_config(arg=None):\n    return {"arg": arg}\n')
    config = study_config.load(f"{path}:a=1:b=2")
    assert isinstance(config, ml_collections.ConfigDict)
    assert config.arg == "a=1:b=2"


def test_load_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such study file .*fix the path"):
        study_config.load(str(tmp_path / "nope.py"))


def test_load_file_without_get_config(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("X = 1\n")
    with pytest.raises(ConfigError, match=r"has no get_config\(\); define get_config\(arg=None\)"):
        study_config.load(str(path))


def test_load_arg_for_get_config_without_parameters(tmp_path):
    path = tmp_path / "noarg.py"
    path.write_text(
        "import ml_collections\ndef get_config():\n    return ml_collections.ConfigDict()\n"
    )
    assert len(study_config.load(str(path))) == 0
    with pytest.raises(ConfigError, match=r"cannot take the argument 'x'; define get_config"):
        study_config.load(f"{path}:x")


def test_load_does_not_touch_sys_path_or_confuse_same_named_files(tmp_path):
    for name, width in (("a", 1), ("b", 2)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "study.py").write_text(
            textwrap.dedent(f"""
            def get_config():
                return {{'width': {width}}}
            """)
        )
    assert study_config.load(str(tmp_path / "a" / "study.py")).width == 1
    assert study_config.load(str(tmp_path / "b" / "study.py")).width == 2


def test_load_overrides_base_and_search(study_path):
    config = study_config.load(
        str(study_path),
        overrides={
            "train.steps": 10,
            "train.eval_every": 5,
            "optimizer.learning_rate": 1,  # int into a float field: stays a float
            "search.optimizer.learning_rate.max": 0.3,
            "search.model.width.values": (64, 128),
            "search.model.depth": spaces.int_linear(1, 4),  # a new search entry
            "search.optimizer.b1": None,  # drops an entry
        },
    )
    assert config.train.steps == 10
    assert config.optimizer.learning_rate == 1.0 and isinstance(
        config.optimizer.learning_rate, float
    )
    space = spec.resolve(config).space
    by_path = {p.path: p for p in space}
    assert by_path["optimizer.learning_rate"].max == 0.3
    assert by_path["model.width"].values == (64, 128)
    assert by_path["model.depth"].space == "int"
    assert "optimizer.b1" not in by_path


def test_load_override_with_wrong_path(study_path):
    with pytest.raises(ConfigError) as info:
        study_config.load(str(study_path), overrides={"train.stesp": 10})
    assert str(info.value).startswith("train.stesp: no such field (train has: eval_every, steps)")
    assert "did you mean 'steps'?" in str(info.value)
    with pytest.raises(ConfigError, match=r"search\.optimizer\.learning_rate\.mx: no such field"):
        study_config.load(str(study_path), overrides={"search.optimizer.learning_rate.mx": 0.3})
    with pytest.raises(ConfigError, match=r"train\.steps\.x: train\.steps is a value"):
        study_config.load(str(study_path), overrides={"train.steps.x": 1})


def test_load_override_with_wrong_type(study_path):
    with pytest.raises(ConfigError, match=r"train\.steps: cannot set it to 'ten' \(str\)"):
        study_config.load(str(study_path), overrides={"train.steps": "ten"})


def test_load_override_that_breaks_the_search_is_caught_by_resolve(study_path):
    config = study_config.load(
        str(study_path), overrides={"search.optimizer.learning_rate.min": 0.0}
    )
    with pytest.raises(ConfigError, match=r"search\.optimizer\.learning_rate: log scale needs"):
        spec.resolve(config)


# ----------------------------------------------------------------------------------------------
# spec.resolve: the checks of a study config


def test_resolve_returns_the_space(study):
    space = spec.resolve(study).space
    assert space.paths == ("model.width", "optimizer.b1", "optimizer.learning_rate")
    assert [p.path for p in space.by_role("scientific")] == ["model.width"]


def test_resolve_without_search_is_an_empty_space(study):
    del study["search"]
    assert len(spec.resolve(study).space) == 0


@pytest.mark.parametrize(
    "path, value, expected",
    [
        ("study.name", "", ["study.name: must be a non-empty string", "got ''"]),
        ("study.objective", 3, ["study.objective: must be the name of a metric", "'val/error'"]),
        ("study.mode", "minimize", ["study.mode: must be 'min' or 'max'", "got 'minimize'"]),
        (
            "study.algorithm",
            "bayes",
            [
                "study.algorithm: unknown algorithm 'bayes'",
                "use one of 'quasirandom', 'random', 'grid'",
            ],
        ),
        ("study.num_trials", 0, ["study.num_trials: must be an int >= 1", "got 0"]),
        (
            "study.num_trials",
            None,
            [
                "study.num_trials: must be an int >= 1",
                "only algorithm='grid' or 'manual' may leave it None",
            ],
        ),
        ("study.seed", -1, ["study.seed: must be an int >= 0", "got -1"]),
        ("study.seed", 1.5, ["study.seed: must be an int >= 0", "got 1.5"]),
        ("train.steps", 0, ["train.steps: must be an int >= 1", "got 0"]),
        (
            "train.eval_every",
            300,
            ["train.eval_every: must divide train.steps=1000", "use 250 or 500"],
        ),
        ("train.eval_every", 1500, ["train.eval_every: must divide train.steps=1000", "use 1000"]),
        ("train.eval_every", 0, ["train.eval_every: must be an int >= 1", "got 0"]),
    ],
)
def test_resolve_study_fields(study, path, value, expected):
    section, key = path.split(".")
    with study.unlocked():
        study[section] = {**study[section].to_dict(), key: value}
    with pytest.raises(ConfigError) as info:
        spec.resolve(study)
    for part in expected:  # the field and what to do, not the whole sentence
        assert part in str(info.value)


@pytest.mark.parametrize(
    "section, key, expected",
    [
        ("study", "num_trials", "study.num_trials: missing"),
        ("study", "objective", "study.objective: missing; set study.objective"),
        ("train", "eval_every", "train.eval_every: missing"),
    ],
)
def test_resolve_missing_fields(study, section, key, expected):
    values = study[section].to_dict()
    del values[key]
    study[section] = values
    with pytest.raises(ConfigError, match=expected):
        spec.resolve(study)


def test_resolve_names_a_misspelled_field(study):
    values = study.study.to_dict()
    values["num_trails"] = values.pop("num_trials")
    study.study = values
    with pytest.raises(ConfigError, match="study.num_trials: missing \\(found 'num_trails'"):
        spec.resolve(study)


def test_resolve_missing_sections(study):
    del study["study"]
    with pytest.raises(ConfigError, match=r"study: missing; add e\.g\. c\.study = dict\(name="):
        spec.resolve(study)


def test_resolve_checks_search_against_base(study):
    study.search.optimizer.learnig_rate = spaces.log(1e-4, 1e-1)
    with pytest.raises(ConfigError, match=r"search\.optimizer\.learnig_rate: no such field"):
        spec.resolve(study)


def test_resolve_search_cannot_reach_study_settings(study):
    study.search.study = dict(seed=spaces.int_linear(0, 3))
    with pytest.raises(ConfigError, match=r"search\.study\.seed: no such field"):
        spec.resolve(study)


def test_resolve_grid(study):
    study.study.algorithm = "grid"
    study.study.num_trials = None  # the whole grid
    spec.resolve(study)
    study.study.num_trials = 75  # 3 widths x 5 x 5
    spec.resolve(study)
    study.study.num_trials = 76
    with pytest.raises(
        ConfigError, match="study.num_trials: grid has only 75 points; set num_trials <= 75 or None"
    ):
        spec.resolve(study)


# ----------------------------------------------------------------------------------------------
# apply and fixed hyperparameters


def test_apply_returns_a_copy(study):
    before = study_config.to_json(study)
    trial = study_config.apply(study, {"optimizer.learning_rate": 0.01, "model.width": 512})
    assert trial.optimizer.learning_rate == 0.01 and trial.model.width == 512
    assert study_config.to_json(study) == before
    assert study.model.width == 256


def test_apply_keeps_float_fields_float(study):
    trial = study_config.apply(study, {"optimizer.learning_rate": 1})
    assert type(trial.optimizer.learning_rate) is float


def test_apply_works_on_locked_configs(study):
    study.lock()
    trial = study_config.apply(study, {"model.width": 128})
    assert trial.model.width == 128


def test_apply_unknown_path(study):
    with pytest.raises(ConfigError, match=r"optimizer\.lr: no such field"):
        study_config.apply(study, {"optimizer.lr": 0.1})


def test_fixed_hyperparameters_exclude_searched_and_study_sections(study):
    space = spec.resolve(study).space
    fixed = study_config.fixed_hyperparameters(study, space)
    assert fixed == {
        "seed": 0,
        "data.name": "mnist1d",
        "data.batch_size": 64,
        "model.name": "mlp",
        "model.depth": 2,
        "model.dropout": 0.0,
        "optimizer.name": "adam",
        "optimizer.b2": 0.999,
        "optimizer.eps": 1e-8,
        "schedule.name": "constant",
        "train.steps": 1000,
        "train.eval_every": 100,
    }


# ----------------------------------------------------------------------------------------------
# to_json and config_hash


def test_to_json_is_sorted_and_complete(study):
    text = study_config.to_json(study)
    tree = json.loads(text)
    assert tree["search"]["optimizer"]["learning_rate"] == spaces.log(1e-4, 1e-1)
    assert tree["search"]["model"]["width"]["values"] == [128, 256, 512]
    assert text == json.dumps(tree, sort_keys=True, indent=2)


def test_to_json_names_a_value_without_json_form(study):
    study.model.activation = object()
    with pytest.raises(ConfigError, match=r"model\.activation: object value .* has no JSON form"):
        study_config.to_json(study)


def test_config_hash_ignores_num_trials_and_notes(study_path):
    a = study_config.load(str(study_path))
    b = study_config.load(
        str(study_path), overrides={"study.num_trials": 64, "study.notes": "round 2"}
    )
    assert study_config.config_hash(a) == study_config.config_hash(b)
    assert len(study_config.config_hash(a)) == 64


@pytest.mark.parametrize(
    "override",
    [
        {"study.seed": 1},
        {"search.optimizer.learning_rate.max": 0.3},
        {"train.steps": 2000},
    ],
)
def test_config_hash_changes_with_the_study(study_path, override):
    a = study_config.load(str(study_path))
    b = study_config.load(str(study_path), overrides=override)
    assert study_config.config_hash(a) != study_config.config_hash(b)


def test_config_hash_custom_ignore(study_path):
    a = study_config.load(str(study_path))
    b = study_config.load(str(study_path), overrides={"train.steps": 2000})
    assert study_config.config_hash(a, ignore=("train.steps",)) == study_config.config_hash(
        b, ignore=("train.steps",)
    )


@pytest.mark.parametrize(
    "body, line, message",
    [
        (
            "import ml_collections\ndef get_config(arg=None):\n"
            "    c = ml_collections.ConfigDict()\n"
            "    c.model = dict(width=1)\n    c.model.other = c.model.nope\n    return c\n",
            5,
            "raised AttributeError: nope",
        ),
        ("def get_config(arg=None)\n    return 1\n", 1, "raised SyntaxError: expected ':'"),
        ("import no_such_module_here\n", 1, "raised ModuleNotFoundError: No module named"),
    ],
)
def test_an_error_in_the_study_file_is_one_line_at_its_line(tmp_path, capsys, body, line, message):
    from jaxplay import sweep

    path = tmp_path / "study.py"
    path.write_text(body)
    assert sweep.main(["--config", str(path), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --config: {path}:{line}: the study file {message}")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sweep.main(["--config", str(path), "--workdir", str(tmp_path / "w"), "--verbose"]) == 2
    assert "Traceback" in capsys.readouterr().err  # --verbose keeps it
