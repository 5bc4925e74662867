"""The trainer on real MNIST-1D: learning, divergence, compile counts, checkpoints, resume."""

import dataclasses

import numpy as np
import pytest

from factories import tiny_config
from jaxplay import spaces, spec, train, workloads
from jaxplay.checkpoints import TrialCheckpoints
from jaxplay.errors import ConfigError
from jaxplay.train import feed, step
from jaxplay.train import state as state_lib


def _trial(c):
    """The base trial of a study config."""
    return spec.resolve(c).base


def _period_fn(trial, stacked=False):
    """The jitted period of a trial's program: its _cache_size() counts its compilations."""
    instance = workloads.bind(trial)
    graphdef = state_lib.initializer(trial, instance, trial.program)[0]
    return step.period_fn(graphdef, instance.task, trial.program, stacked)


def test_short_run_learns_mnist1d(tmp_path):
    c = tiny_config(
        **{
            "train.steps": 400,
            "train.eval_every": 100,
            "model.width": 128,
            "optimizer.learning_rate": 1e-2,
        }
    )
    curve = {}
    result = train.train_and_evaluate(
        _trial(c), tmp_path, on_eval=lambda s, m: curve.__setitem__(s, m)
    )
    assert result.status == "completed"
    assert sorted(curve) == [0, 100, 200, 300, 400]
    # Chance is 0.9 error on 10 classes; a trained MLP gets well below it.
    assert curve[0]["val/error"] > 0.8
    assert result.best_value < 0.6
    assert curve[400]["train/loss"] < 0.6 * curve[0]["train/loss"]
    assert result.best_value == min(m["val/error"] for s, m in curve.items() if s > 0)


def test_cnn_on_digits_learns(tmp_path):
    c = tiny_config(
        **{"data.name": "digits", "data.val_size": 300, "train.steps": 200, "train.eval_every": 100}
    )
    c.model = dict(name="cnn", channels=8, depth=2, kernel_size=3, activation="relu", dropout=0.1)
    result = train.train_and_evaluate(_trial(c), tmp_path)
    assert result.status == "completed" and result.best_value < 0.3


def test_divergence_is_infeasible_with_the_step(tmp_path):
    c = tiny_config(**{"optimizer.name": "sgd", "optimizer.learning_rate": 1e4})
    for key in ("b1", "b2", "eps"):
        del c.optimizer[key]
    logged = []
    result = train.train_and_evaluate(_trial(c), tmp_path, on_eval=lambda s, m: logged.append(s))
    assert result.status == "infeasible"
    assert "diverged at step" in result.reason
    at = int(result.reason.split("diverged at step ")[1].split(":")[0])
    assert 1 <= at <= 50
    assert logged == [0, 50]  # stopped at the first evaluation after the divergence


def test_float_hyperparameters_share_one_compilation(tmp_path):
    # A width no other test uses, so the first trial must compile and the others must not.
    c = tiny_config(**{"model.width": 23})
    c.search = dict(
        optimizer=dict(learning_rate=spaces.log(1e-3, 2e-2), b1=spaces.linear(0.8, 0.95)),
        schedule=dict(warmup_steps=spaces.int_linear(0, 30)),
        train=dict(label_smoothing=spaces.linear(0.0, 0.2), grad_clip_norm=spaces.linear(0.0, 1.0)),
        model=dict(dropout=spaces.linear(0.0, 0.5)),
    )
    study = spec.resolve(c)
    trials = [
        {
            "optimizer.learning_rate": 1e-3,
            "optimizer.b1": 0.9,
            "schedule.warmup_steps": 0,
            "train.label_smoothing": 0.0,
            "model.dropout": 0.0,
            "train.grad_clip_norm": 0.0,
        },
        {
            "optimizer.learning_rate": 5e-3,
            "optimizer.b1": 0.8,
            "schedule.warmup_steps": 30,
            "train.label_smoothing": 0.1,
            "model.dropout": 0.2,
            "train.grad_clip_norm": 1.0,
        },
        {
            "optimizer.learning_rate": 2e-2,
            "optimizer.b1": 0.95,
            "schedule.warmup_steps": 7,
            "train.label_smoothing": 0.2,
            "model.dropout": 0.5,
            "train.grad_clip_norm": 0.5,
        },
    ]
    trials = [study.trial(params) for params in trials]
    period = _period_fn(trials[0])
    assert period._cache_size() == 0
    results = []
    for i, trial in enumerate(trials):
        assert _period_fn(trial) is period  # one program for the group
        r = train.train_and_evaluate(trial, tmp_path / str(i))
        results.append(r.best_value)
        assert period._cache_size() == 1
    assert len(set(results)) > 1  # the hyperparameters really reached the compiled program


def test_width_change_recompiles(tmp_path):
    narrow = _trial(tiny_config(**{"model.width": 19}))
    wide = _trial(tiny_config(**{"model.width": 21}))
    train.train_and_evaluate(narrow, tmp_path / "a")
    train.train_and_evaluate(wide, tmp_path / "b")
    narrow_period, wide_period = _period_fn(narrow), _period_fn(wide)
    assert narrow_period is not wide_period  # two programs, each compiled once
    assert narrow_period._cache_size() == 1 and wide_period._cache_size() == 1


def test_best_checkpoints_kept_and_best_restores_to_recorded_value(tmp_path):
    c = tiny_config(
        **{
            "train.steps": 300,
            "train.eval_every": 50,
            "train.keep_best": 2,
            "optimizer.learning_rate": 3e-2,
            "schedule.name": "constant",
        }
    )
    trial = _trial(c)
    curve = {}
    result = train.train_and_evaluate(
        trial, tmp_path, on_eval=lambda s, m: curve.__setitem__(s, m["val/error"])
    )
    ckpt = TrialCheckpoints(tmp_path / "checkpoints", keep_best=2, mode="min")
    on_disk = ckpt.all_steps()
    assert ckpt.best_step() == result.best_step
    ckpt.close()
    # Best 2 by val/error (ties: earliest), plus the latest for resume.
    ranked = sorted((v, s) for s, v in curve.items() if s > 0)
    assert result.best_step in on_disk and 300 in on_disk
    assert len(on_disk) <= 3 and set(on_disk) <= {s for _, s in ranked[:2]} | {300}
    restored = train.evaluate_checkpoint(trial, tmp_path)
    assert restored["val/error"] == pytest.approx(result.best_value, abs=1e-6)
    assert restored["val/error"] == pytest.approx(curve[result.best_step], abs=1e-6)
    test_metrics = train.evaluate_checkpoint(trial, tmp_path, split="test")
    assert 0.0 <= test_metrics["test/error"] <= 1.0


def test_checkpoint_writes_are_deferred_to_the_best_n(tmp_path, monkeypatch):
    saved = []
    original = TrialCheckpoints.save
    monkeypatch.setattr(
        TrialCheckpoints,
        "save",
        lambda self, step, *a, **k: (
            saved.append((step, k.get("full", True))),
            original(self, step, *a, **k),
        ),
    )
    c = tiny_config(**{"train.steps": 300, "train.eval_every": 50, "train.keep_best": 2})
    curve = {}
    result = train.train_and_evaluate(
        _trial(c), tmp_path, on_eval=lambda s, m: curve.__setitem__(s, m["val/error"])
    )
    # Six evaluations, but only the final best 2 and the latest are written; only the latest
    # (the resume point) holds the whole state, the others just the params.
    steps = [s for s, _ in saved]
    assert len(saved) <= 3 and 300 in steps and result.best_step in steps
    assert steps == sorted(steps) and [full for s, full in saved] == [s == 300 for s in steps]


def test_interrupted_trial_resumes_to_the_same_result(tmp_path):
    c = tiny_config(
        **{
            "train.steps": 200,
            "train.eval_every": 50,
            "schedule.name": "constant",
            "model.dropout": 0.1,
            "train.checkpoint_every_secs": 0.0,
        }
    )
    trial = _trial(c)
    full = train.train_and_evaluate(trial, tmp_path / "full")

    def stop_at_150(step, metrics):
        if step == 150:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(trial, tmp_path / "cut", on_eval=stop_at_150)
    resumed_from = []
    again = train.train_and_evaluate(trial, tmp_path / "cut", on_resume=resumed_from.append)
    assert resumed_from and 50 <= resumed_from[0] < 200
    assert again.status == "completed"
    assert again.best_value == full.best_value and again.best_step == full.best_step
    np.testing.assert_allclose(
        again.final_metrics["val/loss"], full.final_metrics["val/loss"], rtol=1e-6
    )


def test_batch_order_is_a_permutation_per_epoch_and_deterministic():
    num, batch = 100, 10  # 10 steps per epoch
    a = feed.batch_indices(3, 0, 20, batch, num)
    assert sorted(a[:10].ravel()) == list(range(100)) and sorted(a[10:].ravel()) == list(range(100))
    assert not np.array_equal(a[:10], a[10:])
    # A period that starts mid-epoch sees exactly the same batches as one long period.
    b = feed.batch_indices(3, 7, 8, batch, num)
    np.testing.assert_array_equal(a[7:15], b)
    assert not np.array_equal(feed.batch_indices(4, 0, 20, batch, num), a)  # the seed matters


def test_padded_examples_have_zero_weight():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    y = np.arange(5, dtype=np.int32)
    px, py, w = feed.padded(x, y, 4)
    assert px.shape == (2, 4, 2) and w.ravel().tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    px, py, w = feed.padded(x, y, 4096)  # a small split is one batch of its own (rounded) size
    assert px.shape == (1, 8, 2) and w.sum() == 5


def test_bad_training_fields():
    with pytest.raises(ConfigError, match="study.objective: unknown metric 'val/acc'") as e:
        spec.resolve(tiny_config(**{"study.objective": "val/acc"}))
    assert "use one of" in str(e.value) and "'val/error'" in str(e.value)
    with pytest.raises(ConfigError, match="train.eval_batch_size") as e:
        spec.resolve(tiny_config(**{"train.eval_batch_size": 8}))
    assert "use >= data.batch_size=64" in str(e.value)
    with pytest.raises(ConfigError, match=r"model: field\(s\) \['widht'\]") as e:
        spec.resolve(tiny_config(**{"model.widht": 8}))
    assert "it takes" in str(e.value) and "'width'" in str(e.value)


def test_eval_in_several_batches_equals_one_batch(tmp_path):
    trial = _trial(tiny_config(**{"train.steps": 50, "train.eval_every": 50}))
    train.train_and_evaluate(trial, tmp_path)
    one_batch = train.evaluate_checkpoint(trial, tmp_path)
    # 500 validation examples: 8 batches, the last one padded
    in_batches = trial.replace(train=dataclasses.replace(trial.train, eval_batch_size=64))
    several = train.evaluate_checkpoint(in_batches, tmp_path)
    assert several == pytest.approx(one_batch, rel=1e-5)
