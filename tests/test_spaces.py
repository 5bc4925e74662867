"""Tests for jaxplay.spaces: declarations, parsing, validation messages, unit-cube mapping."""

import json

import ml_collections
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from jaxplay import spaces
from jaxplay.errors import ConfigError
from jaxplay.spaces import Hyperparameter, SearchSpace


def _base():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.model = dict(
        name="mlp", width=256, depth=2, dropout=0.0, use_bias=True, features=(32, 64), init=None
    )
    c.optimizer = dict(name="adam", learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8)
    c.train = dict(steps=1000, eval_every=100)
    return c


# ----------------------------------------------------------------------------------------------
# Constructors


def test_constructors_return_plain_dicts():
    assert spaces.linear(0, 1) == {
        "space": "float",
        "scale": "linear",
        "min": 0.0,
        "max": 1.0,
        "role": "nuisance",
    }
    assert spaces.log(1e-4, 1e-1, role="scientific") == {
        "space": "float",
        "scale": "log",
        "min": 1e-4,
        "max": 1e-1,
        "role": "scientific",
    }
    assert spaces.int_linear(1, 8) == {
        "space": "int",
        "scale": "linear",
        "min": 1,
        "max": 8,
        "role": "nuisance",
    }
    assert spaces.int_log(1, 1024)["scale"] == "log"
    assert spaces.discrete([512, 128, 256])["values"] == (128, 256, 512)
    assert spaces.categorical(["sgd", "adam"])["values"] == ("sgd", "adam")
    # Float bounds are floats even when written as ints, so a CLI override like max=0.3 type-checks.
    assert isinstance(spaces.linear(0, 1)["min"], float)
    assert type(spaces.int_linear(1, 8)["min"]) is int


def test_constructors_do_not_validate():
    # Validation is parse's job so that command-line overrides are checked too.
    assert spaces.log(0.1, 0.01)["min"] == 0.1
    assert spaces.discrete([])["values"] == ()
    assert spaces.discrete(["a", 1])["values"] == ("a", 1)


def test_command_line_overrides_of_spaces():
    c = _base()
    c.search = dict(
        optimizer=dict(learning_rate=spaces.log(1e-4, 1e-1)),
        model=dict(width=spaces.discrete([128, 256], role="scientific")),
    )
    argv = [
        "prog",
        "--config.search.optimizer.learning_rate.max=0.3",
        "--config.search.model.width.values=(64, 512)",
    ]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_dict("config", c, flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    space = spaces.parse(flag_values.config.search, base=_base())
    by_path = {p.path: p for p in space}
    assert by_path["optimizer.learning_rate"].max == 0.3
    assert by_path["model.width"].values == (64, 512)


# ----------------------------------------------------------------------------------------------
# parse


def test_parse_walks_the_tree_in_config_order():
    c = _base()
    c.search = dict(
        optimizer=dict(learning_rate=spaces.log(1e-4, 1e-1), b1=spaces.linear(0.8, 0.99)),
        model=dict(width=spaces.discrete([256, 128], role="scientific")),
    )
    space = spaces.parse(c.search, base=_base())
    # ConfigDict sorts keys at each level.
    assert space.paths == ("model.width", "optimizer.b1", "optimizer.learning_rate")
    assert len(space) == 3
    assert [p.path for p in space] == list(space.paths)
    assert [p.path for p in space.by_role("scientific")] == ["model.width"]
    nuisance = [p.path for p in space.by_role("nuisance")]
    assert nuisance == ["optimizer.b1", "optimizer.learning_rate"]
    width, b1, lr = space.params
    assert width == Hyperparameter("model.width", "discrete", values=(128, 256), role="scientific")
    assert lr == Hyperparameter("optimizer.learning_rate", "float", scale="log", min=1e-4, max=1e-1)
    assert lr.is_float and b1.is_float and not width.is_float
    with pytest.raises(ValueError, match="unknown role"):
        space.by_role("fixed")


def test_parse_plain_dicts_keep_declaration_order():
    space = spaces.parse({"z": spaces.linear(0, 1), "a": spaces.linear(0, 1)})
    assert space.paths == ("z", "a")


def test_parse_empty_and_none():
    assert len(spaces.parse(None)) == 0
    assert len(spaces.parse({})) == 0
    assert spaces.parse(ml_collections.ConfigDict()) == SearchSpace()


def test_parse_skips_entries_set_to_none():
    space = spaces.parse({"a": spaces.linear(0, 1), "b": None})
    assert space.paths == ("a",)


def test_parse_coerces_int_bounds_of_float_spaces():
    (p,) = spaces.parse({"x": {"space": "float", "scale": "linear", "min": 0, "max": 2}})
    assert type(p.min) is float and type(p.max) is float


def test_role_defaults_to_nuisance_when_omitted():
    (p,) = spaces.parse({"x": {"space": "float", "scale": "linear", "min": 0.0, "max": 1.0}})
    assert p.role == "nuisance"


LR = "search.optimizer.learning_rate"


@pytest.mark.parametrize(
    "declaration, expected",
    [
        (spaces.log(0.1, 0.01), [f"{LR}: min must be < max (got min=0.1, max=0.01); swap them"]),
        (spaces.linear(0.1, 0.1), [f"{LR}: min must be < max", "set it in the base config"]),
        (
            spaces.log(0.0, 0.1),
            [f"{LR}: log scale needs min > 0 (got 0.0); use a positive min or scale='linear'"],
        ),
        (spaces.int_log(0, 8), [f"{LR}: log scale needs min > 0", "min >= 1"]),
        (
            spaces.log(1e-4, 1e-1, role="nuisanse"),
            [f"{LR}: unknown role 'nuisanse'", "use 'scientific' or 'nuisance'"],
        ),
        (
            spaces.log(1e-4, 1e-1, role="fixed"),
            [f"{LR}: role 'fixed'", "set the value in the base config and remove it from search"],
        ),
        (
            {"space": "float", "scale": "lg", "min": 0.1, "max": 1.0},
            [f"{LR}: unknown scale 'lg' for a float space; use 'linear', 'log' or 'reverse_log'"],
        ),
        (
            {"space": "float", "min": 0.1, "max": 1.0},
            [f"{LR}: scale is missing; set scale='linear'"],
        ),
        (
            {"space": "flaot", "min": 0.1, "max": 1.0},
            [f"{LR}: unknown space type 'flaot'; use spaces.linear/log"],
        ),
        (
            {"space": "float", "scale": "log", "min": 0.1},
            [f"{LR}: missing max; give both min and max, e.g. spaces.log(min, max)"],
        ),
        (
            {"space": "int", "scale": "linear", "max": 4},
            [f"{LR}: missing min", "spaces.int_linear"],
        ),
        (
            {"space": "float", "scale": "log", "min": "a", "max": 1.0},
            [f"{LR}: min must be a finite number (got 'a')"],
        ),
        (
            spaces.int_linear(1.5, 8),
            [
                f"{LR}: an int space needs whole-number bounds (got min=1.5)",
                "spaces.linear/log for a float",
            ],
        ),
        (
            {"space": "float", "scale": "log", "min": 1e-4, "mx": 1.0},
            [f"{LR}: unknown key 'mx' for a float space (did you mean 'max'?)", "use only"],
        ),
        (spaces.discrete([]), [f"{LR}: values is empty; list at least one value"]),
        (spaces.categorical([]), [f"{LR}: values is empty; list at least one value"]),
        ({"space": "discrete", "role": "nuisance"}, [f"{LR}: values is missing; list them"]),
        (
            spaces.discrete([1e-3, "big"]),
            [f"{LR}: discrete values must be finite numbers (got 'big'); use spaces.categorical"],
        ),
        (
            spaces.discrete([1e-3, True]),
            [f"{LR}: discrete values must be finite numbers (got True)"],
        ),
        (spaces.discrete([1e-3, 1e-3]), [f"{LR}: values lists 0.001 twice; list each value once"]),
        (
            spaces.categorical([[1, 2], "a"]),
            [f"{LR}: categorical values must be strings, bools or numbers (got [1, 2])"],
        ),
        ({"space": "discrete", "values": 3}, [f"{LR}: values must be a list (got 3)"]),
    ],
)
def test_bad_declarations_name_the_path_and_the_fix(declaration, expected):
    search = ml_collections.ConfigDict({"optimizer": {"learning_rate": declaration}})
    with pytest.raises(ConfigError) as info:
        spaces.parse(search)
    for text in expected:
        assert text in str(info.value)


def test_categorical_distinguishes_bool_from_int():
    (p,) = spaces.parse({"x": spaces.categorical([1, True, "a"])})
    assert p.values == (1, True, "a")


def test_non_space_leaf_is_an_error():
    with pytest.raises(ConfigError, match=r"search\.model\.width: expected a space"):
        spaces.parse({"model": {"width": 256}})


def test_whole_search_must_be_a_tree():
    with pytest.raises(ConfigError, match="search: must be a tree of spaces"):
        spaces.parse(spaces.log(1e-4, 1e-1))


def test_train_steps_must_not_be_searched():
    with pytest.raises(ConfigError) as info:
        spaces.parse({"train": {"steps": spaces.int_linear(100, 1000)}}, base=_base())
    assert str(info.value) == (
        "search.train.steps: the number of training steps must not be tuned (playbook: 'Never "
        "tune max_train_steps'); fix it in the base config"
    )


# ----------------------------------------------------------------------------------------------
# parse against the base config


def test_unknown_field_suggests_the_closest_name():
    with pytest.raises(ConfigError) as info:
        spaces.parse({"optimizer": {"learnig_rate": spaces.log(1e-4, 1e-1)}}, base=_base())
    message = str(info.value)
    assert message.startswith(
        "search.optimizer.learnig_rate: no such field in the base config (optimizer has: b1, b2, "
        "eps, learning_rate, name); "
    )
    assert "did you mean 'learning_rate'?" in message
    assert message.endswith("or add it to the base config")


def test_unknown_section_is_reported_at_the_top_level():
    with pytest.raises(ConfigError) as info:
        spaces.parse({"optimiser": {"learning_rate": spaces.log(1e-4, 1e-1)}}, base=_base())
    assert (
        "search.optimiser.learning_rate: no such field in the base config (the top level has:"
        in str(info.value)
    )
    assert "did you mean 'optimizer'?" in str(info.value)


def test_unknown_field_without_close_name_has_no_suggestion():
    with pytest.raises(ConfigError) as info:
        spaces.parse({"optimizer": {"zzz": spaces.log(1e-4, 1e-1)}}, base=_base())
    assert "did you mean" not in str(info.value)
    assert "fix the name or add it to the base config" in str(info.value)


def test_searching_a_section_or_below_a_value_is_an_error():
    with pytest.raises(ConfigError, match=r"search\.optimizer: optimizer is a section"):
        spaces.parse({"optimizer": spaces.categorical(["adam", "sgd"])}, base=_base())
    with pytest.raises(ConfigError, match=r"search\.seed\.x: seed is a value \(0\)"):
        spaces.parse({"seed": {"x": spaces.linear(0, 1)}}, base=_base())


@pytest.mark.parametrize(
    "path, declaration",
    [
        ("model.width", spaces.int_linear(64, 512)),
        ("model.width", spaces.int_log(64, 512)),
        ("model.width", spaces.discrete([128, 256])),
        ("model.width", spaces.categorical([128, 256])),
        ("optimizer.learning_rate", spaces.log(1e-4, 1e-1)),
        ("optimizer.learning_rate", spaces.int_linear(1, 3)),
        ("optimizer.learning_rate", spaces.discrete([1e-3, 1])),
        ("model.name", spaces.categorical(["mlp", "cnn"])),
        ("model.use_bias", spaces.categorical([False, True])),
        ("model.init", spaces.linear(0, 1)),  # None in the base: anything goes
        ("model.init", spaces.categorical(["a"])),
    ],
)
def test_spaces_that_fit_the_base_type(path, declaration):
    section, name = path.split(".")
    (p,) = spaces.parse({section: {name: declaration}}, base=_base())
    assert p.path == path


@pytest.mark.parametrize(
    "path, declaration, expected",
    [
        (
            "model.width",
            spaces.linear(64, 512),
            [
                "search.model.width: a float space cannot set model.width, which is an int (256)",
                "use spaces.int_linear/int_log or spaces.discrete([...])",
            ],
        ),
        (
            "model.width",
            spaces.discrete([64.5, 128]),
            ["search.model.width: a discrete space cannot set model.width, which is an int (256)"],
        ),
        (
            "model.width",
            spaces.categorical(["a", "b"]),
            ["search.model.width: a categorical space cannot set model.width"],
        ),
        (
            "optimizer.learning_rate",
            spaces.categorical(["a", "b"]),
            [
                "search.optimizer.learning_rate: a categorical space cannot set "
                "optimizer.learning_rate, which is a float (0.001)",
                "use spaces.linear/log",
            ],
        ),
        (
            "model.name",
            spaces.discrete([1, 2]),
            [
                "search.model.name: a discrete space cannot set model.name, which is a str ('mlp')",
                "use spaces.categorical([...]) of strings",
            ],
        ),
        (
            "model.use_bias",
            spaces.categorical([0, 1]),
            [
                "search.model.use_bias: a categorical space cannot set model.use_bias, which is a "
                "bool (True)",
                "use spaces.categorical([False, True])",
            ],
        ),
        (
            "model.use_bias",
            spaces.int_linear(0, 1),
            ["search.model.use_bias: an int space cannot set model.use_bias"],
        ),
        (
            "model.features",
            spaces.categorical(["a"]),
            [
                "search.model.features: a categorical space cannot set model.features, which is a "
                "tuple ((32, 64))",
                "only int, float, str and bool fields can be searched",
            ],
        ),
    ],
)
def test_spaces_that_do_not_fit_the_base_type(path, declaration, expected):
    section, name = path.split(".")
    with pytest.raises(ConfigError) as info:
        spaces.parse({section: {name: declaration}}, base=_base())
    for text in expected:  # the field and the fix, not the whole sentence
        assert text in str(info.value)


# ----------------------------------------------------------------------------------------------
# Hyperparameter: from_unit and grid


def _one(declaration):
    (p,) = spaces.parse({"x": declaration})
    return p


def test_from_unit_float_linear_and_log():
    p = _one(spaces.linear(-1, 3))
    assert p.from_unit(0.0) == -1.0
    assert p.from_unit(0.5) == 1.0
    q = _one(spaces.log(1e-4, 1e-0))
    assert q.from_unit(0.0) == pytest.approx(1e-4)
    assert q.from_unit(0.5) == pytest.approx(1e-2)
    assert 1e-4 <= q.from_unit(0.0) and q.from_unit(0.999999999) <= 1.0


def test_from_unit_int_linear_reaches_both_ends_equally():
    p = _one(spaces.int_linear(1, 4))
    values = [p.from_unit(u / 100) for u in range(100)]
    assert values.count(1) == values.count(2) == values.count(3) == values.count(4) == 25
    assert p.from_unit(0.9999999) == 4


def test_from_unit_int_log_is_log_uniform():
    p = _one(spaces.int_log(1, 1024))
    values = [p.from_unit(u / 1000) for u in range(1000)]
    assert all(type(v) is int and 1 <= v <= 1024 for v in values)
    assert 0.45 < sum(v < 32 for v in values) / 1000 < 0.55
    assert p.from_unit(0.0) == 1 and p.from_unit(0.99999) == 1024


def test_from_unit_discrete_and_categorical():
    p = _one(spaces.discrete([4, 1, 2]))
    assert [p.from_unit(u) for u in (0.0, 0.34, 0.67, 0.9999)] == [1, 2, 4, 4]
    q = _one(spaces.categorical(["a", "b"]))
    assert [q.from_unit(u) for u in (0.0, 0.49, 0.5, 0.999)] == ["a", "a", "b", "b"]


def test_from_unit_returns_plain_python_scalars():
    for declaration in (
        spaces.linear(0, 1),
        spaces.log(1e-3, 1),
        spaces.int_linear(1, 9),
        spaces.int_log(1, 9),
        spaces.discrete(np.array([1.0, 2.0])),
        spaces.categorical([True, False]),
    ):
        value = _one(declaration).from_unit(np.float64(0.3))
        assert type(value) in (float, int, bool)
        json.dumps(value)


def test_grid_points():
    assert _one(spaces.linear(0, 1)).grid(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    log_grid = _one(spaces.log(1e-4, 1e0)).grid(5)
    assert log_grid[0] == 1e-4 and log_grid[-1] == 1.0
    assert log_grid == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert _one(spaces.int_linear(1, 4)).grid(5) == [1, 2, 3, 4]
    assert _one(spaces.int_linear(0, 100)).grid(5) == [0, 25, 50, 75, 100]
    assert _one(spaces.int_log(1, 1024)).grid(5) == [1, 6, 32, 181, 1024]
    assert _one(spaces.int_log(1, 3)).grid(5) == [1, 2, 3]
    assert _one(spaces.discrete([3, 1, 2])).grid(2) == [1, 2, 3]
    assert _one(spaces.categorical(["b", "a"])).grid(5) == ["b", "a"]
    assert all(type(v) is int for v in _one(spaces.int_log(1, 1024)).grid(7))
    with pytest.raises(ValueError, match="at least 2"):
        _one(spaces.linear(0, 1)).grid(1)


def test_search_space_from_unit():
    space = spaces.parse({"a": spaces.linear(0, 10), "b": spaces.categorical(["x", "y"])})
    assert space.from_unit([0.5, 0.7]) == {"a": 5.0, "b": "y"}
    with pytest.raises(ValueError):
        space.from_unit([0.5])
