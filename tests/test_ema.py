"""Polyak averaging (train.ema_decay, playbook item 39): the parameters' moving average, evaluated
on the validation set beside them (val_ema/<metric>), selectable as the objective, stacked like
every trial, kept in checkpoints so a resumed trial averages on, and scored on the test set."""

import os
import signal

import jax.numpy as jnp
import numpy as np
import pytest

from factories import float_only_study, stored_curves, tiny_config
from jaxplay import spec, sweep
from jaxplay.errors import ConfigError
from jaxplay.train import loop
from jaxplay.train.step import ema_update


def test_the_average_follows_tensorflows_num_updates_decay():
    ema, decay = jnp.zeros(3), 0.99
    params = [jnp.full(3, float(k)) for k in range(1, 6)]
    expected = np.zeros(3)
    for step, p in enumerate(params, start=1):
        ema = ema_update(ema, p, decay, jnp.int32(step))
        d = min(decay, (1 + step) / (10 + step))  # early steps follow the parameters closely
        expected = d * expected + (1 - d) * np.asarray(p)
    np.testing.assert_allclose(np.asarray(ema), expected, rtol=1e-6)


def test_a_trial_with_ema_reports_both_and_may_optimize_the_average(tmp_path):
    c = tiny_config(**{"train.ema_decay": 0.99, "train.steps": 200, "study.objective":
                       "val_ema/error"})  # fmt: skip
    c.study.num_trials = 1
    record = sweep.run_study(c, tmp_path, report=False, tensorboard=False, log=lambda s: None)
    curves = stored_curves(tmp_path)
    steps = [s for s, _ in curves["val/error"]]
    assert [s for s, _ in curves["val_ema/error"]] == steps == [0, 50, 100, 150, 200]
    assert "val_ema/loss" in curves and "train_ema/loss" not in curves
    # At step 0 the average is the initialization; later it lags the parameters.
    assert curves["val_ema/loss"][0][1] == pytest.approx(curves["val/loss"][0][1], rel=1e-6)
    assert any(
        abs(a - b) > 1e-6
        for (_, a), (_, b) in zip(curves["val_ema/loss"][1:], curves["val/loss"][1:])
    )
    trial = record["trials"][0]
    best = min(v for _, v in curves["val_ema/error"][1:])
    assert trial["best_value"] == pytest.approx(best)
    # The test-set evaluation scores what selected the checkpoint: the average.
    spec_ = spec.resolve(c)
    t = spec_.trial(trial["params"])
    scored = loop.evaluate_checkpoint(t, tmp_path / "tiny" / "trial_0000", split="val")
    assert scored["val/error"] == pytest.approx(trial["best_value"], abs=1e-6)


def test_ema_decay_and_its_objective_are_checked():
    for bad in (1.0, -0.1, "0.9"):
        with pytest.raises(ConfigError, match=r"^train.ema_decay: must be in \[0, 1\)"):
            spec.resolve(tiny_config(**{"train.ema_decay": bad}))
    with pytest.raises(ConfigError, match="study.objective: unknown metric 'val_ema/error'"):
        spec.resolve(tiny_config(**{"study.objective": "val_ema/error"}))


def test_stacked_trials_average_as_they_would_alone(tmp_path):
    c = float_only_study(num_trials=2, **{"train.ema_decay": 0.95, "train.steps": 100})
    quiet = dict(report=False, tensorboard=False, log=lambda s: None)
    sweep.run_study(c, tmp_path / "seq", executor="sequential", **quiet)
    sweep.run_study(c, tmp_path / "bat", executor="batched", batch_trials=2, **quiet)
    for index in (0, 1):
        alone = stored_curves(tmp_path / "seq", index)
        stacked = stored_curves(tmp_path / "bat", index)
        a = np.array([v for _, v in alone["val_ema/loss"]])
        b = np.array([v for _, v in stacked["val_ema/loss"]])
        np.testing.assert_allclose(a, b, rtol=1e-4)


def test_a_resumed_trial_averages_on_from_its_checkpoint(tmp_path):
    c = tiny_config(**{"train.ema_decay": 0.99, "train.steps": 200})
    c.study.num_trials = 1
    quiet = dict(report=False, tensorboard=False)
    sweep.run_study(c, tmp_path / "ref", log=lambda s: None, **quiet)

    def ctrl_c_at_step_100(line):
        if line.strip().startswith("step 100/"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        sweep.run_study(c, tmp_path / "cut", log=ctrl_c_at_step_100, **quiet)
    sweep.run_study(c, tmp_path / "cut", log=lambda s: None, **quiet)
    reference, resumed = stored_curves(tmp_path / "ref"), stored_curves(tmp_path / "cut")
    np.testing.assert_allclose(
        [v for _, v in resumed["val_ema/loss"]], [v for _, v in reference["val_ema/loss"]],
        rtol=1e-5,
    )  # fmt: skip
