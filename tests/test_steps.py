"""The max_train_steps learning-rate sweep: the derived study, the estimate, the CLI end to end."""

import dataclasses
import math
import pathlib

import ml_collections
import numpy as np
import pytest

from factories import constructed_study, tiny_config
from jaxplay import cli, spaces, spec
from jaxplay import config as config_lib
from jaxplay import steps as steps_command
from jaxplay import store as store_lib
from jaxplay.errors import ConfigError
from jaxplay.tuning import steps

REPO = pathlib.Path(__file__).resolve().parent.parent
LR = "optimizer.learning_rate"


# ---------------------------------------------------------------------------------------------
# The derived study


def _derive(config, **options):
    """The sweep derived from `config` (read with dots) and its changes, as its link has them."""
    tree = steps.sweep_config(config, **options)
    return ml_collections.ConfigDict(tree), list(tree["study"]["parent"]["changes"])


def _regularized_study():
    """tiny_config with every regularizer on, a cosine schedule with warmup, and a 4-d search."""
    c = tiny_config(
        **{"optimizer.name": "adamw", "model.dropout": 0.2, "train.label_smoothing": 0.1}
    )
    del c.optimizer["weight_decay"]  # AdamW then decays by its default 1e-4
    c.study.algorithm, c.study.num_trials = "quasirandom", 16
    c.search = dict(
        optimizer=dict(learning_rate=spaces.log(1e-4, 1e-1), b1=spaces.linear(0.8, 0.95)),
        model=dict(
            dropout=spaces.linear(0.0, 0.3), width=spaces.discrete([16, 32], role="scientific")
        ),
    )
    return c


def test_derived_study_is_a_constant_lr_grid_without_regularization():
    c = _regularized_study()
    derived, changes = _derive(c)
    assert derived.schedule.name == "constant" and derived.schedule.warmup_steps == 0
    assert derived.optimizer.weight_decay == 0.0 and derived.model.dropout == 0.0
    assert derived.train.label_smoothing == 0.0
    # The learning rate alone is searched, on a log grid spanning the study's range.
    space = spec.resolve(derived).space
    assert space.paths == (LR,)
    grid = list(space.params[0].values)
    assert len(grid) == steps.DEFAULT_NUM_LEARNING_RATES and grid == sorted(grid)
    assert grid[0] == 1e-4 and grid[-1] == 1e-1
    ratios = np.diff(np.log(grid))
    np.testing.assert_allclose(ratios, ratios.mean(), rtol=0.02)  # 3 significant digits
    # Other searched hyperparameters are fixed at the base config.
    assert derived.model.width == 32 and derived.optimizer.b1 == 0.9
    assert derived.study.name == "tiny-steps" and derived.study.algorithm == "grid"
    assert derived.study.num_trials is None and derived.study.objective == "val/error"
    # It records where it comes from: the study file's study, by the 'steps' derivation.
    assert derived.study.parent.study == "tiny" and derived.study.parent.action == "steps"
    # N = the study's train.steps, evaluated ~20 times (a divisor of N).
    assert derived.train.steps == 100 and derived.train.eval_every == 5
    text = "\n".join(changes)
    for switched_off in (
        "optimizer.weight_decay: 0.0001 -> 0",
        "model.dropout: 0.2 -> 0",
        "train.label_smoothing: 0.1 -> 0",
        "schedule.name: cosine -> constant",
        "schedule.warmup_steps: 10 -> 0",
        "model.width=32",
        "optimizer.b1=0.9",
    ):
        assert switched_off in text
    # The study itself is untouched.
    assert (
        c.schedule.name == "cosine" and c.model.dropout == 0.2 and len(spaces.parse(c.search)) == 4
    )


def test_derived_study_switches_off_augmentation_and_validates():
    # ':synthetic' is the study file with generated images (same augmentation and regularizers):
    # resolving the derived study loads its data, and CIFAR-10 from tfds need not be installed.
    derived, changes = _derive(
        config_lib.load(str(REPO / "experiments/cifar10_resnet.py:synthetic")), steps=2000
    )
    assert derived.data.augment == "none" and derived.train.label_smoothing == 0.0
    assert derived.optimizer.weight_decay == 0.0
    assert "data.augment: crop_flip -> none (switched off)" in changes
    assert derived.train.steps == 2000 and derived.train.eval_every == 100
    assert spec.resolve(derived).space.paths == (LR,)


def test_grid_options_and_their_errors():
    c = tiny_config()  # no search space: three decades around the base learning rate 3e-3
    assert steps.learning_rate_grid(c, 3) == [1e-4, 3e-3, 0.09]
    derived, _ = _derive(
        c,
        learning_rates=["0.1", "0.001", "0.01"],
        steps=200,
        eval_every=40,
        keep_warmup=True,
        name="mine",
    )
    assert list(derived.search.optimizer.learning_rate["values"]) == [1e-3, 1e-2, 1e-1]
    assert derived.train.steps == 200 and derived.train.eval_every == 40
    assert derived.schedule.warmup_steps == 10 and derived.study.name == "mine"
    spec.resolve(derived)
    # A study that already evaluates more often than N/20 keeps its own eval_every.
    assert _derive(tiny_config(**{"train.eval_every": 2}))[0].train.eval_every == 2
    with pytest.raises(
        ConfigError, match=r"--eval_every: must be an int >= 1 that divides --steps=200"
    ) as info:
        _derive(c, steps=200, eval_every=30)
    assert "use 25 or 40" in str(info.value)
    with pytest.raises(ConfigError, match="--num_learning_rates: must be an int >= 3"):
        _derive(c, num_learning_rates=2)
    with pytest.raises(ConfigError, match="--learning_rates: give at least 3"):
        _derive(c, learning_rates=[1e-3, 1e-2])
    with pytest.raises(ConfigError, match="--steps: must be an int >= 1"):
        _derive(c, steps=0)
    with pytest.raises(ConfigError, match="--keep_warmup"):
        _derive(c, steps=10, keep_warmup=True)


# ---------------------------------------------------------------------------------------------
# The estimate, on hand-built sweeps


def _sweep(trials, metric="train/error", steps_=1000, every=100):
    """A constructed sweep: trials are (learning rate, metric values at every, 2*every, ..., or a
    dict of curves, status)."""
    built = []
    for lr, values, *status in trials:
        curves = values if isinstance(values, dict) else {metric: values}
        curves = {
            m: [(0, 2.3)] + [(every * (i + 1), v) for i, v in enumerate(vs)]
            for m, vs in curves.items()
        }
        curves.setdefault("val/error", [(every, 0.5)])
        built.append(
            {"params": {LR: lr}, "curves": curves, "status": status[0] if status else "completed"}
        )
    search = {"optimizer": {"learning_rate": spaces.discrete(sorted(t[0] for t in trials))}}
    return constructed_study(search, built, steps=steps_, name="x-steps")


def test_estimate_picks_the_fastest_fit_across_learning_rates():
    study = _sweep(
        [
            (1e-3, [0.5, 0.3, 0.1, 0.05, 0.02, 0.0, 0.0]),
            (1e-1, [0.4, 0.2, 0.1, 0.0]),
            (1e-2, [0.4, 0.1, 0.0, 0.0]),
        ]
    )
    result = steps.estimate(study)
    assert result.max_train_steps == 300 and result.learning_rate == 1e-2
    assert result.boundary is None and result.warnings == ()
    assert [(t.learning_rate, t.fit_step) for t in result.trials] == [
        (1e-3, 600),
        (1e-2, 300),
        (1e-1, 400),
    ]
    assert result.recommendation() == (
        "max_train_steps ~ 300 (learning rate 0.01 reached train/error <= 0 at "
        "step 300); set train.steps=300 in the study, with a train.eval_every that divides it "
        "(e.g. train.eval_every=30)"
    )
    table = result.table()
    assert "step 300" in table and "<- fastest" in table and "0.001" in table


@pytest.mark.parametrize(
    "fits,boundary,direction,suggested",
    [
        ([300, 500, 700], "smallest", "downward", "1e-05,0.0001,0.001,0.01,0.1"),
        ([700, 500, 300], "largest", "upward", "0.001,0.01,0.1,1,10"),
    ],
)
def test_estimate_flags_a_fastest_learning_rate_at_the_grid_boundary(
    fits, boundary, direction, suggested
):
    study = _sweep(
        [(lr, [0.1] * (f // 100 - 1) + [0.0]) for lr, f in zip([1e-3, 1e-2, 1e-1], fits)]
    )
    result = steps.estimate(study)
    assert result.max_train_steps == 300 and result.boundary == boundary
    assert len(result.warnings) == 1
    assert f"is the {boundary} of the grid" in result.warnings[0]
    assert f"extend the grid {direction} and rerun" in result.warnings[0]
    assert f"--learning_rates {suggested} --config.study.name=x-steps-2" in result.warnings[0]
    assert "warning: the fastest learning rate" in result.summary()


def test_estimate_reports_that_no_trial_fit():
    study = _sweep([(1e-3, [0.5, 0.2]), (1e-2, [0.3, 0.01]), (1e-1, [0.4, 0.1])], steps_=200)
    result = steps.estimate(study)
    assert result.max_train_steps is None and result.fastest is None and result.boundary is None
    assert "not fit in 200 steps" in result.table() and "0.01 (step 200)" in result.table()
    assert result.recommendation().startswith(
        "no estimate: no learning rate reached train/error <= 0 in 200 steps"
    )
    assert (
        "--steps 400" in result.recommendation()
        and "--fit_threshold 0.01" in result.recommendation()
    )
    # A looser criterion does fit.
    assert steps.estimate(study, threshold=0.01).max_train_steps == 200


def test_estimate_with_a_custom_metric_and_threshold():
    study = _sweep(
        [
            (1e-3, {"train/loss": [1.0, 0.5, 0.2], "train/error": [0.2, 0.1, 0.0]}),
            (1e-2, {"train/loss": [0.6, 0.08, 0.02], "train/error": [0.1, 0.05, 0.0]}),
            (1e-1, {"train/loss": [0.9, 0.3, 0.09], "train/error": [0.1, 0.0, 0.0]}),
        ]
    )
    assert steps.estimate(study).max_train_steps == 200  # train/error hits 0 first at 1e-1
    result = steps.estimate(study, "train/loss", 0.1)
    assert (
        result.max_train_steps == 200 and result.learning_rate == 1e-2 and result.boundary is None
    )
    assert "train/loss <= 0.1" in result.recommendation()
    with pytest.raises(
        ConfigError, match="--fit_metric: no trial of 'x-steps' logged 'train/eror'"
    ):
        steps.estimate(study, "train/eror")


def test_estimate_ignores_diverged_trials():
    study = _sweep(
        [
            (1e-3, [0.3, 0.1, 0.05, 0.0]),
            (1e-2, [0.2, 0.0]),
            (1e-1, [0.0, 0.0, math.nan], "infeasible"),  # fit fast, then diverged
            (1.0, [math.nan], "infeasible"),
        ]
    )
    result = steps.estimate(study)
    assert result.max_train_steps == 200 and result.learning_rate == 1e-2
    assert result.boundary is None  # the grid goes higher; those rates diverged
    assert any(
        "ignored (diverged or failed): learning rate(s) 0.1, 1" in w for w in result.warnings
    )
    assert any("largest that trained" in w for w in result.warnings)
    assert "diverged" in result.table()


def test_estimate_breaks_ties_by_train_loss_and_says_evals_cannot_order_them():
    study = _sweep(
        [
            (1e-3, {"train/error": [0.1, 0.0], "train/loss": [0.3, 0.05]}),
            (1e-2, {"train/error": [0.1, 0.0], "train/loss": [0.3, 0.02]}),
            (1e-1, {"train/error": [0.1, 0.1, 0.0], "train/loss": [0.3, 0.2, 0.01]}),
        ]
    )
    result = steps.estimate(study)
    assert (
        result.max_train_steps == 200 and result.learning_rate == 1e-2 and result.boundary is None
    )
    assert any(
        "0.001 also fit at step 200" in w and "smaller --eval_every" in w for w in result.warnings
    )


def test_estimate_warns_when_the_fit_came_at_the_first_evaluation():
    study = _sweep([(1e-3, [0.1, 0.0]), (1e-2, [0.0]), (1e-1, [0.1, 0.1, 0.0])])
    result = steps.estimate(study)
    assert result.max_train_steps == 100
    assert any("already fit at its first evaluation (step 100)" in w for w in result.warnings)


# ---------------------------------------------------------------------------------------------
# End to end: the CLI on a real (tiny) sweep


@pytest.fixture(autouse=True)
def _no_persistent_compilation_cache(monkeypatch):
    # main() points jax's process-wide compilation cache at ~/.cache; in-process tests must not.
    monkeypatch.setattr(cli, "enable_compilation_cache", lambda: None)


def test_cli_runs_the_sweep_estimates_and_a_rerun_does_not_retrain(tmp_path, capsys):
    workdir = tmp_path / "w"
    # The README's MLP on sklearn's digits, which it fits to 0 training error within 100 steps.
    args = [
        f"--config={REPO}/experiments/mnist1d_mlp.py:smoke",
        f"--workdir={workdir}",
        "--config.data.name=digits",
        "--config.train.steps=100",
        "--learning_rates=1e-3,1e-2,1e-1",
        "--eval_every=10",
    ]
    assert steps_command.main(args) == 0
    out = capsys.readouterr().out
    assert "schedule.name: cosine -> constant" in out and "model.width=256" in out
    assert "max_train_steps sweep 'mnist1d-mlp-smoke-steps'" in out
    recommendation = next(
        line for line in out.splitlines() if line.startswith("max_train_steps ~ ")
    )
    assert "(learning rate 0.01 reached train/error <= 0 at step" in recommendation
    assert "of the grid" not in out  # 0.01 lies inside the grid: no boundary warning

    store = store_lib.Store(store_lib.default_url(workdir))
    record = store.record(store.study_id("mnist1d-mlp-smoke-steps"))
    store.close()
    assert [t["status"] for t in record["trials"]] == ["completed"] * 3
    assert sorted(t["params"][LR] for t in record["trials"]) == [1e-3, 1e-2, 1e-1]
    assert (
        record["config"]["schedule"]["name"] == "constant" and "jaxplay.steps" in record["command"]
    )

    # The same sweep again: nothing trains, the same estimate comes back (here from Python).
    config = config_lib.load(
        f"{REPO}/experiments/mnist1d_mlp.py:smoke", {"data.name": "digits", "train.steps": 100}
    )
    lines = []
    result = steps.run(
        config, workdir, learning_rates=[1e-3, 1e-2, 1e-1], eval_every=10, log=lines.append
    )
    assert any("(3 already finished)" in line for line in lines)
    assert not any("left in this run" in line for line in lines)
    assert result.learning_rate == 1e-2 and 0 < result.max_train_steps <= 100
    assert recommendation.startswith(f"max_train_steps ~ {result.max_train_steps} ")

    # A criterion no trial meets: no estimate, exit status 1 (still without training).
    assert steps_command.main(args + ["--fit_threshold=-1"]) == 1
    assert "no estimate: no learning rate reached train/error <= -1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--config.train.stepz=5"], "--config.train.stepz: no such field"),
        (["--eval_every=7"], "--eval_every: must be an int >= 1 that divides --steps=200"),
        (["--fit_metric=val/error"], "--fit_metric: 'val/error' is not a training-set metric"),
        (
            ["--learning_rates=1e-3,1e-2", "--num_learning_rates=5"],
            "--learning_rates and --num_learning_rates",
        ),
    ],
)
def test_cli_bad_input_exits_2_with_the_field_named(tmp_path, capsys, extra, message):
    args = [
        f"--config={REPO}/experiments/mnist1d_mlp.py:smoke",
        f"--workdir={tmp_path}/w",
        *extra,
    ]
    assert steps_command.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "w" / "jaxplay.db").exists()


def test_the_recommended_steps_come_with_an_eval_every_the_sweep_accepts():
    """525 steps (a fit step between evaluations of 150) with an eval_every that divides it."""
    from jaxplay.tuning import fit

    result = fit.Estimate("s", "train/error", 0.0, 1500, 75, (), None, None)
    fastest = fit.TrialFit(index=0, learning_rate=0.01, status="completed", fit_step=525,
                           fit_value=0.0, best_value=0.0, best_step=525)  # fmt: skip
    text = dataclasses.replace(result, fastest=fastest, trials=(fastest,)).recommendation()
    every = int(text.rsplit("train.eval_every=", 1)[1].rstrip(")"))
    assert "set train.steps=525" in text and 525 % every == 0 and 1 < every < 525
