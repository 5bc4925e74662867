"""The early-instability probe (playbook items 81, 83, 85, 99): per-step losses kept at a bounded
cost, `--lineage probe`, and the diagnostic that reads them; and the per-step gradient norms the
clipping threshold comes from (items 82, 87)."""

import json
import math

import ml_collections
import numpy as np
import pytest

from factories import claimed_trial, constructed_study, tiny_config
from jaxplay import config as config_lib
from jaxplay import spaces, spec, sweep
from jaxplay import store as store_lib
from jaxplay.analysis import diagnostics
from jaxplay.errors import ConfigError
from jaxplay.train.trial import period_summary
from jaxplay.tuning import derivation, lineage


def test_log_steps_keeps_every_step_once_beside_the_evaluations(store_url):
    store = store_lib.Store(store_url)
    study_id, trial_id = claimed_trial(store)
    series = {"train/step_loss": [2.0, 1.5, math.nan, 1.0]}
    assert store.log_steps(trial_id, 4, series, worker="w")
    assert store.log_steps(trial_id, 4, series, worker="w")  # a retry writes nothing twice
    store.log_metrics(trial_id, 4, {"val/error": 0.5}, worker="w")  # leaves the series alone
    curves = store.curves(study_id, 0)
    assert curves["train/step_loss"] == [(1, 2.0), (2, 1.5), (3, None), (4, 1.0)]
    assert curves["val/error"] == [(4, 0.5)]
    # Another worker's write is refused, as for evaluations.
    assert not store.log_steps(trial_id, 8, series, worker="other")
    store.close()


def test_period_summary_keeps_the_step_norm_quantiles():
    norms = np.arange(1.0, 101.0)
    summary = period_summary(
        {"loss": np.ones(100), "grad_norm": norms, "learning_rate": np.ones(100)}, 0.0
    )
    assert summary["train/grad_norm_p50"] == pytest.approx(50.5)
    assert summary["train/grad_norm_p90"] == pytest.approx(90.1)
    assert summary["train/grad_norm_max"] == 100.0


def test_a_trial_that_logs_every_step_keeps_its_losses_and_norms(tmp_path):
    config = tiny_config(**{"train.log_every_step": True, "train.steps": 60,
                            "train.eval_every": 20})  # fmt: skip
    config.study.num_trials = 1
    sweep.run_study(config, tmp_path, report=False, tensorboard=False, log=lambda *_: None)
    store = store_lib.Store(store_lib.default_url(tmp_path), readonly=True)
    curves = store.curves(store.study_id(), 0)
    store.close()
    for name in ("train/step_loss", "train/step_grad_norm"):
        steps = [s for s, _ in curves[name]]
        assert steps == list(range(1, 61)), name
        assert all(v is not None and v > 0 for _, v in curves[name])
    # Each period's p90 lies within that period's per-step norms.
    norms = dict(curves["train/step_grad_norm"])
    for step, p90 in curves["train/grad_norm_p90"]:
        period = [norms[s] for s in range(step - 19, step + 1)]
        assert min(period) <= p90 <= max(period)


def _parent(lr=0.01):
    """A finished learning-rate study built by hand; its best trial has learning rate `lr`."""
    config = tiny_config()
    config.search = ml_collections.ConfigDict(
        {"optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)}}
    )
    tree = json.loads(config_lib.to_json(config))
    trials = [
        {"params": {"optimizer.learning_rate": rate},
         "curves": {"val/error": [(0, 0.9), (50, value + 0.1), (100, value)]}}
        for rate, value in ((lr, 0.2), (lr / 3, 0.3), (lr / 10, 0.5))
    ]  # fmt: skip
    fixed = {k: v for k, v in tree.items() if k not in ("search", "study", "train")}
    parent = constructed_study(tree["search"], trials, steps=100, name="parent", fixed=fixed)
    parent.record["config"]["train"] = tree["train"]
    parent.record["config"]["study"] = {**tree["study"], "num_trials": 3}
    return config, parent


def _derive(config, parent, **options):
    how = lineage.REGISTRY["probe"]
    resolved = how.resolve_options(options, lambda key: f"--{key}")
    child = derivation.derive(config, how, resolved, parent, parent_name=parent.name)
    spec.resolve(child)
    return ml_collections.ConfigDict(child)


def test_probe_runs_the_best_trial_at_multiples_of_its_learning_rate():
    config, parent = _parent(lr=0.01)
    child = _derive(config, parent, steps=50)
    rates = [t["optimizer.learning_rate"] for t in child.study.trials]
    assert rates == pytest.approx([0.01, 0.02, 0.05, 0.1])
    assert child.study.algorithm == "manual" and child.train.steps == 50
    assert child.train.log_every_step is True and child.schedule.name == "constant"
    assert child.study.name == "parent-probe"
    config.schedule.warmup_steps = 60
    with pytest.raises(ConfigError, match="--steps: the probe's 50 steps would end inside"):
        _derive(config, parent, steps=50)


def _probe_study(spike_at=None, diverge_at=None):
    """A probe study built by hand: steps 1..200 of loss falling from 2 to 0.5, with a spike (the
    loss x5 over steps 60-90) in the trial at `spike_at` x and a divergence at `diverge_at` x."""
    search = {"optimizer": {"learning_rate": spaces.log(1e-4, 1.0)}}
    steps = np.arange(1, 201)
    trials = []
    for factor in (1, 2, 5, 10):
        loss = 0.5 + 1.5 * np.exp(-steps / 40)
        if factor == spike_at:
            loss = np.where((steps >= 60) & (steps <= 90), 5 * loss, loss)
        t = {"params": {"optimizer.learning_rate": 0.01 * factor},
             "curves": {"train/step_loss": list(zip(steps.tolist(), loss.tolist())),
                        "val/error": [(100, 0.4), (200, 0.3)]}}  # fmt: skip
        if factor == diverge_at:
            t.update(status="infeasible", error="training loss diverged at step 12: 900 (> 230)")
            t["curves"] = {"train/step_loss": t["curves"]["train/step_loss"][:11]}
        trials.append(t)
    return constructed_study(search, trials, steps=200)


def test_a_spike_at_twice_the_best_learning_rate_is_a_warning():
    findings = diagnostics.check_early_instability(_probe_study(spike_at=2, diverge_at=10))
    assert len(findings) == 1
    f = findings[0]
    assert f.severity == "warning" and f.title == "Early instability at 2x the best learning rate"
    # The rise, from where to where, and its recovery; the divergence too.
    assert "2x (trial 1): the 10-step median loss rose from" in f.detail
    assert "back down by step" in f.detail and "10x (trial 3): diverged" in f.detail
    assert "1x (trial 0): the loss fell steadily" in f.detail
    assert f.trials == (1, 3) and "--lineage warmup" in f.action


def test_instability_only_far_above_the_best_learning_rate_is_information():
    f = diagnostics.check_early_instability(_probe_study(spike_at=10))[0]
    assert f.severity == "info" and f.title == "Early instability at 10x the best learning rate"
    f = diagnostics.check_early_instability(_probe_study())[0]
    assert f.severity == "info" and f.title.startswith("No early instability up to 10x")


def test_studies_without_per_step_losses_get_no_probe_finding():
    config, parent = _parent()
    assert diagnostics.check_early_instability(parent) == []


def test_the_clip_threshold_is_the_90th_percentile_of_the_step_norms():
    steps = list(range(1, 101))
    per_step = {"train/step_grad_norm": [(s, float(s)) for s in steps],
                "train/grad_norm": [(100, 50.5)]}  # fmt: skip
    study = constructed_study({}, [{"params": {}, "curves": per_step}])
    assert diagnostics.clip_threshold(study.trials[0]) == pytest.approx(90.1)
    # Without per-step norms: the median of the periods' own 90th percentiles.
    periods = {"train/grad_norm_p90": [(50, 2.0), (100, 4.0), (150, 3.0)],
               "train/grad_norm": [(50, 1.0), (100, 1.0), (150, 1.0)]}  # fmt: skip
    study = constructed_study({}, [{"params": {}, "curves": periods}])
    assert diagnostics.clip_threshold(study.trials[0]) == 3.0
