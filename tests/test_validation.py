"""Tests for what `jaxplay.spec.resolve` refuses before anything trains: study names, unknown
keys, out-of-range values and search bounds, periods too large to hold, and trial values that
would pick the code to run."""

import dataclasses
import functools
import getpass

import numpy as np
import pytest

from factories import tiny_config
from jaxplay import config as config_lib
from jaxplay import spaces, spec, workloads
from jaxplay.errors import ConfigError
from jaxplay.spec import sections


def _resolve_error(config) -> str:
    with pytest.raises(ConfigError) as info:
        spec.resolve(config)
    message = str(info.value)
    assert "\n" not in message  # one line
    return message


# ----------------------------------------------------------------------------------------------
# Study names


@pytest.mark.parametrize(
    "name, problem",
    [
        ("../../x", "'../../x' holds '/'"),
        ("a/b", "'a/b' holds '/'"),
        ("dup/", "'dup/' holds '/'"),
        (".", "'.' must start with a letter or digit"),
        ("..", "'..' must start with a letter or digit"),
        ("-x", "'-x' must start with a letter or digit"),
        ("my study", "'my study' holds ' '"),
        ("a\\b", "holds '\\\\'"),
        ("x\n", "holds '\\n'"),
        ("a" * 101, "is 101 characters long, over 100"),
        ("a" * 300, "is 300 characters long, over 100"),
        ("", "must be a non-empty string (got '')"),
    ],
)
def test_a_study_name_outside_the_rule_is_refused(name, problem):
    message = _resolve_error(tiny_config(**{"study.name": name}))
    assert message.startswith("study.name: ") and problem in message
    assert sections.STUDY_NAME_RULE in message and "e.g. 'mnist1d-mlp-width'" in message


@pytest.mark.parametrize("name", ["a", "7", "mnist1d-mlp_width.v2", "A" * 100])
def test_a_study_name_inside_the_rule_resolves(name):
    assert spec.resolve(tiny_config(**{"study.name": name})).study.name == name


def test_a_study_name_check_names_the_field_it_is_given():
    with pytest.raises(ConfigError, match=r"^--config\.study\.name: 'a/b' holds '/'"):
        spec.check_study_name("a/b", "--config.study.name")
    assert spec.check_study_name("ok-1", "--config.study.name") == "ok-1"


# ----------------------------------------------------------------------------------------------
# Unknown keys


def test_an_unknown_study_key_is_refused_with_a_suggestion():
    c = tiny_config()
    c.study.aquisition = "ucb"
    message = _resolve_error(c)
    assert message.startswith("study.aquisition: unknown field (did you mean 'acquisition'?)")
    assert "study takes acquisition, algorithm, initial_trials, mode, name" in message


def test_the_designers_own_study_keys_are_known():
    c = tiny_config()
    c.search = dict(optimizer=dict(learning_rate=spaces.log(1e-4, 1e-1)))
    c.study.algorithm, c.study.acquisition, c.study.initial_trials = "gp", "ucb", 2
    settings = spec.resolve(c).study
    assert (settings.acquisition, settings.initial_trials) == ("ucb", 2)


def test_an_unknown_top_level_key_is_refused_with_a_suggestion():
    c = tiny_config()
    c.seeed = 3
    message = _resolve_error(c)
    assert message.startswith("seeed: unknown top-level field (did you mean 'seed'?)")
    assert "a study file sets seed, workload, data, model, optimizer" in message


def test_every_top_level_key_jaxplay_reads_is_known():
    c = tiny_config()
    c.workload = "classification"
    assert set(config_lib.to_tree(c)) <= set(spec.TOP_LEVEL)
    assert spec.resolve(c).base.workload == "classification"


@pytest.mark.parametrize(
    "section, key, expected",
    [
        ("optimizer", "learnig_rate", "optimizer.learnig_rate: 'adam' has no hyperparameter "),
        ("schedule", "warmup_step", "schedule.warmup_step: unknown field (did you mean "),
        ("train", "eval_evry", "train.eval_evry: unknown field (did you mean 'eval_every'?)"),
    ],
)
def test_other_sections_suggest_the_key_too(section, key, expected):
    c = tiny_config()
    c[section][key] = 1
    message = _resolve_error(c)
    assert message.startswith(expected) and "did you mean" in message


# ----------------------------------------------------------------------------------------------
# Ranges of fixed values


def _sgd(**overrides):
    c = tiny_config(**overrides)
    c.optimizer = dict(name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=0.0)
    return c


@pytest.mark.parametrize(
    "path, value, expected",
    [
        ("optimizer.learning_rate", -0.1, "optimizer.learning_rate: must be > 0 (got -0.1); e.g."),
        ("optimizer.learning_rate", 0.0, "optimizer.learning_rate: must be > 0 (got 0.0)"),
        ("optimizer.b1", 1.0, "optimizer.b1: must be in [0, 1) (got 1.0); e.g. 0.9"),
        ("optimizer.b1", -0.1, "optimizer.b1: must be in [0, 1) (got -0.1)"),
        ("optimizer.b2", 1.0, "optimizer.b2: must be in [0, 1) (got 1.0); e.g. 0.999"),
        ("optimizer.eps", 0.0, "optimizer.eps: must be > 0 (got 0.0); e.g. 1e-8"),
        ("optimizer.weight_decay", -1e-4, "optimizer.weight_decay: must be >= 0 (got -0.0001)"),
        ("model.dropout", 1.0, "model.dropout: a rate in [0, 1) (got 1.0); e.g. 0.1"),
        ("model.dropout", -0.1, "model.dropout: a rate in [0, 1) (got -0.1)"),
        ("model.width", -4, "model.width: must be an int >= 1 (got -4); e.g. width=256"),
        ("model.width", 0, "model.width: must be an int >= 1 (got 0)"),
        ("model.depth", -1, "model.depth: must be an int >= 0 (got -1); e.g. depth=2"),
        ("train.label_smoothing", 1.0, "train.label_smoothing: a rate in [0, 1) (got 1.0)"),
        ("train.grad_clip_norm", -1.0, "train.grad_clip_norm: must be >= 0 (got -1.0)"),
        ("schedule.min_lr_factor", 1.5, "schedule.min_lr_factor: must be in [0, 1] (got 1.5)"),
    ],
)
def test_a_fixed_value_out_of_range_is_refused_at_resolve(path, value, expected):
    assert _resolve_error(tiny_config(**{path: value})).startswith(expected)


def test_sgd_momentum_must_be_below_one():
    c = _sgd()
    c.optimizer.momentum = 1.0
    assert _resolve_error(c).startswith("optimizer.momentum: must be in [0, 1) (got 1.0)")


@pytest.mark.parametrize(
    "model, expected",
    [
        (dict(name="cnn", channels=0), "model.channels: must be an int >= 1 (got 0); e.g. "),
        (dict(name="cnn", depth=0), "model.depth: must be an int >= 1 (got 0)"),
        (dict(name="cnn", kernel_size=0), "model.kernel_size: must be an int >= 1 (got 0)"),
        (dict(name="gru", hidden=0), "model.hidden: must be an int >= 1 (got 0); e.g. hidden=128"),
        (dict(name="resnet", width=0), "model.width: must be an int >= 1 (got 0)"),
        (dict(name="resnet", stage_sizes=(2, 0)), "model.stage_sizes: must be a non-empty list"),
        (dict(name="transformer", dim=0), "model.dim: must be an int >= 1 (got 0)"),
        (dict(name="transformer", heads=0), "model.heads: must be an int >= 1 (got 0)"),
        (dict(name="transformer", mlp_ratio=0), "model.mlp_ratio: must be an int >= 1 (got 0)"),
        (dict(name="transformer", dim=10, heads=4), "model.heads: must divide model.dim=10"),
    ],
)
def test_each_model_familys_sizes_are_checked_at_resolve(model, expected):
    c = tiny_config()
    c.model = model
    assert _resolve_error(c).startswith(expected)


def test_a_negative_width_fails_at_resolve_not_in_the_trainer():
    # It used to pass resolve and fail inside jax at the first step.
    with pytest.raises(ConfigError, match=r"^model\.width: must be an int >= 1 \(got -4\)"):
        spec.resolve(tiny_config(**{"model.width": -4}))


def test_an_mlp_of_depth_zero_is_a_linear_model():
    assert spec.resolve(tiny_config(**{"model.depth": 0})).base.model.options["depth"] == 0


def test_a_custom_workloads_model_fields_are_its_own():
    # Only the built-in families' sizes have a range here: a custom workload's 'width' may mean
    # anything.
    assert sections.field_range("model.width", "my_module:sine", "mlp") is None
    assert sections.field_range("model.width", workloads.DEFAULT, "mlp").words == "an int >= 1"
    assert sections.field_range("model.dropout", "my_module:sine") is not None


# ----------------------------------------------------------------------------------------------
# Ranges of search bounds


@pytest.mark.parametrize(
    "path, space, expected",
    [
        (
            "optimizer.b1",
            spaces.linear(0.5, 2.0),
            "search.optimizer.b1: max 2.0 is outside [0, 1) (b1 must be in [0, 1))",
        ),
        (
            "optimizer.b2",
            spaces.linear(0.9, 1.0),
            "search.optimizer.b2: max 1.0 is outside [0, 1) (b2 must be in [0, 1))",
        ),
        (
            "optimizer.learning_rate",
            spaces.linear(-0.1, 0.1),
            "search.optimizer.learning_rate: min -0.1 is outside (0, inf) (learning_rate must "
            "be > 0)",
        ),
        (
            "optimizer.learning_rate",
            spaces.discrete([0.0, 0.1]),
            "search.optimizer.learning_rate: value 0.0 is outside (0, inf)",
        ),
        ("optimizer.eps", spaces.discrete([0.0, 1e-8]), "search.optimizer.eps: value 0.0 is "),
        (
            "optimizer.weight_decay",
            spaces.linear(-1e-4, 1e-3),
            "search.optimizer.weight_decay: min -0.0001 is outside [0, inf) (weight_decay must "
            "be >= 0)",
        ),
        (
            "optimizer.b1",
            spaces.categorical([0.9, 1.5]),
            "search.optimizer.b1: value 1.5 is outside [0, 1)",
        ),
        (
            "model.dropout",
            spaces.linear(0.0, 1.0),
            "search.model.dropout: max 1.0 is outside [0, 1) (dropout must be in [0, 1))",
        ),
        (
            "model.width",
            spaces.int_linear(-4, 8),
            "search.model.width: min -4 is outside [1, inf) (width must be an int >= 1)",
        ),
        ("model.width", spaces.discrete([0, 16]), "search.model.width: value 0 is outside [1, "),
        ("model.depth", spaces.int_linear(-1, 2), "search.model.depth: min -1 is outside [0, "),
        (
            "train.label_smoothing",
            spaces.linear(0.0, 1.0),
            "search.train.label_smoothing: max 1.0 is outside [0, 1)",
        ),
        (
            "schedule.min_lr_factor",
            spaces.linear(0.0, 2.0),
            "search.schedule.min_lr_factor: max 2.0 is outside [0, 1]",
        ),
    ],
)
def test_a_search_bound_out_of_range_is_refused_at_resolve(path, space, expected):
    c = tiny_config(**{"schedule.min_lr_factor": 0.0})
    section, key = path.split(".")
    c.search[section] = {key: space}
    assert _resolve_error(c).startswith(expected)


def test_sgd_momentum_bounds_are_checked():
    c = _sgd()
    c.search.optimizer = dict(momentum=spaces.linear(0.5, 1.0))
    assert _resolve_error(c).startswith("search.optimizer.momentum: max 1.0 is outside [0, 1)")


def test_search_bounds_inside_the_ranges_resolve():
    c = tiny_config()
    c.search = dict(
        optimizer=dict(
            learning_rate=spaces.log(1e-4, 1e-1),
            b1=spaces.linear(0.0, 0.999),
            weight_decay=spaces.linear(0.0, 1e-3),
        ),
        model=dict(width=spaces.int_log(1, 64), dropout=spaces.linear(0.0, 0.5)),
    )
    assert len(spec.resolve(c).space) == 5


# ----------------------------------------------------------------------------------------------
# A period's memory and the step counter


def test_more_steps_than_an_int32_counter_holds_are_refused():
    message = _resolve_error(tiny_config(**{"train.steps": 10**15, "train.eval_every": 10**14}))
    assert message.startswith(f"train.steps: must be <= {2**31 - 1} (got {10**15})")
    assert "int32" in message


def test_an_eval_every_whose_period_cannot_be_held_is_refused():
    steps = 2 * 10**9
    c = tiny_config(**{"train.steps": steps, "train.eval_every": 10**9})
    per_step = 4 * len(sections.PER_STEP_LOGS) + 4 * c.data.batch_size  # logs + int32 indices
    largest = sections.PERIOD_BYTES_LIMIT // per_step
    message = _resolve_error(c)
    assert message.startswith("train.eval_every: a period of 1000000000 steps holds")
    assert f"({per_step} bytes a step: 3 float32 logs and 64 int32 example indices)" in message
    assert f"use eval_every <= {largest}, a divisor of train.steps={steps} such as " in message
    fit = int(message.rsplit("such as ", 1)[1])
    assert steps % fit == 0 and fit <= largest
    # The largest period that fits resolves.
    spec.resolve(tiny_config(**{"train.steps": fit, "train.eval_every": fit}))


def test_a_streamed_period_is_sent_in_chunks_and_only_a_batch_too_big_is_refused():
    from jaxplay.train import feed

    c = tiny_config(**{"train.steps": 2 * 10**6, "train.eval_every": 10**6})
    c.data.pipeline = "grain"
    trial = spec.resolve(c).base  # a period of a million streamed batches resolves: chunks
    dataset = workloads.bind(trial).dataset
    example = sum(
        a.dtype.itemsize * int(np.prod(a.shape[1:])) for a in (dataset.x_train, dataset.y_train)
    )
    chunk = feed.chunk_steps(trial.program, dataset)
    assert 10**6 % chunk == 0 and chunk * c.data.batch_size * example <= feed.CHUNK_BYTES
    assert (2 * chunk) * c.data.batch_size * example > feed.CHUNK_BYTES or 2 * chunk > 10**6
    # ImageNet-sized examples: one batch of 8192 is over the limit (MNIST-1D has too few
    # examples for such a batch, so the check is called with the example's size directly).
    image = 224 * 224 * 3 + 4
    resolved = spec.resolve(tiny_config(**{"data.pipeline": "grain"})).base
    data = dataclasses.replace(resolved.data, batch_size=8192)
    with pytest.raises(ConfigError) as refused:
        sections.check_period_memory(resolved.train, data, image)
    assert str(refused.value).startswith(f"data.batch_size: one batch of 8192 x {image} bytes")
    assert "lower data.batch_size" in str(refused.value)
    sections.check_period_memory(resolved.train, dataclasses.replace(data, batch_size=1024), image)


def test_the_per_step_logs_are_what_a_period_stacks():
    """PER_STEP_LOGS (what the memory check counts) is what train.step.run_period returns for
    each step of a period: float32 each."""
    import jax

    from jaxplay.train import feed, state, step

    trial = spec.resolve(tiny_config()).base
    instance = workloads.bind(trial)
    program = trial.program
    graphdef, train_state, hp, keys = state.init_state(trial, instance, program)
    data = feed.device_data(instance.dataset, program, trial.train.train_eval_examples)
    xs = jax.ShapeDtypeStruct((program.eval_every, program.batch_size), np.int32)
    run = functools.partial(step.run_period, graphdef, instance.task, program)
    _, _, per_step = jax.eval_shape(run, train_state, hp, keys, xs, data)
    assert sorted(per_step) == sorted(sections.PER_STEP_LOGS)
    assert all(
        v.shape == (program.eval_every,) and v.dtype == np.float32 for v in per_step.values()
    )


def test_nearest_divisors_of_a_large_prime():
    assert config_lib.nearest_divisors(2**31 - 1, 1000) == [1, 2**31 - 1]
    assert config_lib.divisor_near(2 * 10**9, 4_000_000) == 4_000_000


# ----------------------------------------------------------------------------------------------
# Code comes from code


@pytest.fixture
def getuser_calls(monkeypatch):
    """Records calls of getpass.getuser (what a forged 'getpass:getuser' workload would run)."""
    calls = []
    monkeypatch.setattr(getpass, "getuser", lambda: calls.append(1) or "someone")
    return calls


def test_a_trial_value_cannot_set_the_workload(getuser_calls):
    c = tiny_config()
    c.workload = "classification"
    study = spec.resolve(c)
    with pytest.raises(ConfigError, match="^'workload' names the code to run, not a hyper"):
        study.trial({"workload": "getpass:getuser"})
    with pytest.raises(ConfigError, match="^'study.name' is a study setting"):
        study.trial({"study.name": "x"})
    assert not getuser_calls


def test_a_search_cannot_set_the_workload(getuser_calls):
    c = tiny_config()
    c.workload = "classification"
    c.search = dict(workload=spaces.categorical(["classification", "getpass:getuser"]))
    assert _resolve_error(c).startswith("search.workload: 'workload' names the code to run")
    assert not getuser_calls


def test_a_manual_trial_cannot_set_the_workload(getuser_calls):
    c = tiny_config()
    c.workload = "classification"
    c.study.algorithm, c.study.num_trials = "manual", None
    c.study.trials = [{"workload": "getpass:getuser"}]
    assert _resolve_error(c).startswith("study.trials[0]: 'workload' names the code to run")
    assert not getuser_calls
