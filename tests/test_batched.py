"""Batched trials: one compiled program per group, the same numbers as one at a time."""

import importlib
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from factories import float_only_study, tiny_config
from jaxplay import driver, spaces, spec, sweep, train, workloads
from jaxplay.train import state as state_lib
from jaxplay.train import step as step_lib

OPTIMIZER_TRIALS = {
    "sgd": [
        {"optimizer.learning_rate": 0.02, "optimizer.momentum": 0.9},
        {"optimizer.learning_rate": 0.1, "optimizer.momentum": 0.8},
    ],
    "adam": [
        {"optimizer.learning_rate": 1e-3, "optimizer.b1": 0.9},
        {"optimizer.learning_rate": 5e-3, "optimizer.b1": 0.8},
    ],
    "nadam": [
        {"optimizer.learning_rate": 1e-3, "optimizer.eps": 1e-6},
        {"optimizer.learning_rate": 4e-3, "optimizer.b2": 0.99},
    ],
    "adamw": [
        {"optimizer.learning_rate": 2e-3, "optimizer.weight_decay": 1e-2},
        {"optimizer.learning_rate": 6e-3, "optimizer.weight_decay": 1e-4},
    ],
}


# The searched hyperparameters of each optimizer's study: the trials above are points of it.
OPTIMIZER_SEARCH = {
    "sgd": dict(learning_rate=spaces.log(1e-2, 1e-1), momentum=spaces.linear(0.8, 0.9)),
    "adam": dict(learning_rate=spaces.log(1e-3, 1e-2), b1=spaces.linear(0.8, 0.9)),
    "nadam": dict(
        learning_rate=spaces.log(1e-3, 1e-2),
        eps=spaces.log(1e-8, 1e-6),
        b2=spaces.linear(0.99, 0.999),
    ),
    "adamw": dict(learning_rate=spaces.log(1e-3, 1e-2), weight_decay=spaces.log(1e-4, 1e-2)),
}


def _study(optimizer, search=None, **overrides):
    """A study of `optimizer` with dropout and clipping on that searches `search` (default: the
    optimizer's hyperparameters of OPTIMIZER_TRIALS) and the dropout rate."""
    c = tiny_config(
        **{
            "optimizer.name": optimizer,
            "model.dropout": 0.1,
            "train.grad_clip_norm": 1.0,
            **overrides,
        }
    )
    if optimizer == "sgd":
        for key in ("b1", "b2", "eps"):
            del c.optimizer[key]
        c.optimizer.momentum, c.optimizer.nesterov = 0.9, True
    c.search = dict(
        optimizer=search if search is not None else OPTIMIZER_SEARCH[optimizer],
        model=dict(dropout=spaces.linear(0.0, 0.3)),
    )
    return spec.resolve(c)


def _period_fn(trial, stacked):
    """The jitted period of a trial's program: its _cache_size() counts its compilations."""
    instance = workloads.bind(trial)
    graphdef = state_lib.initializer(trial, instance, trial.program)[0]
    return step_lib.period_fn(graphdef, instance.task, trial.program, stacked)


def _curves(run):
    curves = {}

    def on_eval(*args):
        *member, step, metrics = args
        curves.setdefault(member[0] if member else 0, {})[step] = metrics

    return curves, on_eval


def _assert_same_trial(a_result, a_curve, b_result, b_curve):
    assert a_result.status == b_result.status and a_result.steps_run == b_result.steps_run
    assert sorted(a_curve) == sorted(b_curve)
    for step in a_curve:
        assert set(a_curve[step]) == set(b_curve[step])
        for name in {"val/loss", "train/loss", "train/batch_loss", "train/grad_norm"} & set(
            a_curve[step]
        ):
            np.testing.assert_allclose(
                a_curve[step][name],
                b_curve[step][name],
                rtol=2e-4,
                atol=1e-6,
                err_msg=f"{name} at step {step}",
            )
        for name in ("val/error", "train/error"):  # a borderline example may flip
            assert abs(a_curve[step][name] - b_curve[step][name]) <= 0.005, (name, step)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_TRIALS))
def test_batched_equals_sequential(optimizer, tmp_path):
    study = _study(optimizer)
    trials = [study.trial(p) for p in OPTIMIZER_TRIALS[optimizer]]
    solo = []
    for i, trial in enumerate(trials):
        curves, on_eval = _curves(None)
        solo.append(
            (train.train_and_evaluate(trial, tmp_path / f"solo{i}", on_eval=on_eval), curves[0])
        )
    curves, on_eval = _curves(None)
    together = train.run_trials(
        trials, [tmp_path / f"b{i}" for i in range(len(trials))], train.Hooks(on_eval=on_eval)
    )
    for i, (result, curve) in enumerate(solo):
        _assert_same_trial(together[i], curves[i], result, curve)
        assert together[i].best_step == result.best_step
    restored = train.evaluate_checkpoint(trials[1], tmp_path / "b1")
    assert restored["val/error"] == pytest.approx(together[1].best_value, abs=1e-6)


def test_diverging_member_leaves_the_others_untouched(tmp_path):
    study = _study("sgd", search=dict(learning_rate=spaces.log(1e-2, 1e4)), **{"model.width": 29})
    trials = [study.trial({"optimizer.learning_rate": lr}) for lr in (0.02, 1e4, 0.05)]
    curves, on_eval = _curves(None)
    together = train.run_trials(
        trials, [tmp_path / f"b{i}" for i in range(3)], train.Hooks(on_eval=on_eval)
    )
    # One compile for the group: the stacked program once, the one-trial program not at all.
    assert _period_fn(trials[0], stacked=True)._cache_size() == 1
    assert _period_fn(trials[0], stacked=False)._cache_size() == 0
    assert together[1].status == "infeasible"
    solo_bad = train.train_and_evaluate(trials[1], tmp_path / "solo_bad")
    assert together[1].reason == solo_bad.reason  # same step, same value
    assert sorted(curves[1]) == [0, 50]  # recorded up to the period it diverged in
    for i in (0, 2):
        solo_curves, solo_eval = _curves(None)
        solo = train.train_and_evaluate(trials[i], tmp_path / f"solo{i}", on_eval=solo_eval)
        _assert_same_trial(together[i], curves[i], solo, solo_curves[0])


def test_one_compilation_per_group_whatever_the_values(tmp_path):
    c = tiny_config(**{"model.width": 17})
    c.search = dict(
        optimizer=dict(learning_rate=spaces.log(1e-5, 1e-2), b1=spaces.linear(0.8, 0.9))
    )
    study = spec.resolve(c)
    for round_ in range(2):
        trials = [
            study.trial(
                {
                    "optimizer.learning_rate": 10 ** -(2 + i + round_),
                    "optimizer.b1": 0.8 + 0.05 * i,
                }
            )
            for i in range(3)
        ]
        results = train.run_trials(trials, [tmp_path / f"{round_}_{i}" for i in range(3)])
        assert all(r.status == "completed" for r in results)
        assert _period_fn(trials[0], stacked=True)._cache_size() == 1
        assert _period_fn(trials[0], stacked=False)._cache_size() == 0


def test_trials_with_different_programs_are_refused(tmp_path):
    trials = [
        spec.resolve(tiny_config(**{"model.width": 8})).base,
        spec.resolve(tiny_config(**{"model.width": 9})).base,
    ]
    with pytest.raises(ValueError, match="do not share one compiled program"):
        train.run_trials(trials, [tmp_path / "a", tmp_path / "b"])


def test_work_units_group_by_program_and_split_by_batch_trials():
    c = float_only_study(num_trials=6)
    c.search.model.width = spaces.discrete([16, 32], role="scientific")
    study_plan = driver.plan(spec.resolve(c))
    widths = [p["model.width"] for p in study_plan.params]
    units = driver.work_units(study_plan, list(range(6)), lambda trials: 6)
    assert sorted(i for u in units for i in u) == list(range(6))
    for unit in units:
        assert len({widths[i] for i in unit}) == 1
    assert len(units) == len(set(widths))
    small = driver.work_units(study_plan, list(range(6)), lambda trials: 2)
    assert max(len(u) for u in small) == 2 and sorted(i for u in small for i in u) == list(range(6))
    assert driver.work_units(study_plan, [1, 3], lambda trials: 1) == [[1], [3]]


def test_batched_study_records_executor_and_resumes_a_half_finished_group(tmp_path):
    c = float_only_study(num_trials=5, **{"train.steps": 200})
    reference = sweep.run_study(
        c, tmp_path / "ref", executor="batched", batch_trials=3, log=lambda s: None
    )
    assert reference["executor"] == "batched" and "asked for" in reference["executor_reason"]
    assert [t["status"] for t in reference["trials"]] == ["completed"] * 5

    def ctrl_c_at_step_100(line):
        if line.strip().startswith("step 100/"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        sweep.run_study(
            c, tmp_path / "cut", executor="batched", batch_trials=3, log=ctrl_c_at_step_100
        )
    lines = []
    resumed = sweep.run_study(
        c, tmp_path / "cut", executor="batched", batch_trials=3, log=lines.append
    )
    assert sum("resuming trial" in line and "from step 100" in line for line in lines) == 3
    for a, b in zip(resumed["trials"], reference["trials"]):
        assert a["status"] == b["status"] == "completed"
        assert (
            a["best_value"] == pytest.approx(b["best_value"], abs=1e-6)
            and a["best_step"] == b["best_step"]
        )


def test_auto_executor_is_sequential_on_cpu(tmp_path):
    record = sweep.run_study(float_only_study(num_trials=1), tmp_path, log=lambda s: None)
    assert record["executor"] == "sequential" and "auto" in record["executor_reason"]


def test_cpu_batches_default_to_small_equal_chunks_of_a_group(monkeypatch):
    # On one CPU a vmap of many trials is slower than a few (see driver.CPU_BATCH_TRIALS); equal
    # chunk sizes keep one compilation per group.
    assert driver.default_batch_trials(16) == 4 and driver.default_batch_trials(6) == 3
    assert driver.default_batch_trials(5) == 1 and driver.default_batch_trials(2) == 2
    study_plan = driver.plan(spec.resolve(float_only_study(num_trials=6)))
    stacks = driver.Batching("batched").size  # no --batch_trials, no device memory on a CPU
    assert driver.work_units(study_plan, list(range(6)), stacks) == [[0, 1, 2], [3, 4, 5]]
    # The module (jaxplay.driver.plan is also the name of the function the package exports).
    monkeypatch.setattr(importlib.import_module("jaxplay.driver.plan"), "CPU_BATCH_TRIALS", 2)
    assert driver.work_units(study_plan, list(range(6)), stacks) == [
        [0, 1],
        [2, 3],
        [4, 5],
    ]


_SHARDED_STUDY = """
import json, sys
import jax
from factories import float_only_study
from jaxplay import sweep
from jaxplay.train import loop

spread = []
put = jax.device_put
def recording_put(tree, sharding=None, **kw):  # what the stacked trial arrays are placed on
    out = put(tree, sharding, **kw)
    if isinstance(sharding, jax.sharding.NamedSharding):
        spread.extend(len(leaf.sharding.device_set) for leaf in jax.tree.leaves(out))
    return out
loop.jax.device_put = recording_put
record = sweep.run_study(
    float_only_study(num_trials=4), sys.argv[1], executor="batched", log=lambda s: None
)
trials = [[t["status"], t["best_step"], t["best_value"]] for t in record["trials"]]
print(json.dumps({"devices": jax.device_count(), "spread": sorted(set(spread)), "trials": trials}))
"""


def test_trial_axis_sharded_over_four_cpu_devices_equals_one_device(tmp_path):
    # XLA must see the forced device count before jax starts, hence a fresh process.
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "PYTHONPATH": os.pathsep.join(
            [os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]
        ),
    }
    out = subprocess.run(
        [sys.executable, "-c", _SHARDED_STUDY, str(tmp_path / "sharded")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    sharded = json.loads(out.stdout.strip().splitlines()[-1])
    # Every stacked array spans 4 devices.
    assert sharded["devices"] == 4 and sharded["spread"] == [4]
    single = sweep.run_study(
        float_only_study(num_trials=4),
        tmp_path / "single",
        executor="sequential",
        log=lambda s: None,
    )
    for (status, best_step, best_value), t in zip(sharded["trials"], single["trials"]):
        assert status == t["status"] == "completed" and best_step == t["best_step"]
        # One borderline example may flip.
        assert best_value == pytest.approx(t["best_value"], abs=0.005)
