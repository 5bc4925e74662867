"""Batched trials: one compiled program per group, the same numbers as one at a time."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from factories import float_only_study, tiny_config
from jaxplay import batched, spaces, sweep, train
from jaxplay import config as config_lib

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


def _base(optimizer, **overrides):
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
    return c


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
    base = _base(optimizer)
    trials = OPTIMIZER_TRIALS[optimizer]
    searched = frozenset(trials[0]) | frozenset(trials[1]) | {"model.dropout"}
    configs = [config_lib.apply(base, p) for p in trials]
    solo = []
    for i, c in enumerate(configs):
        curves, on_eval = _curves(None)
        solo.append(
            (
                train.train_and_evaluate(
                    c, tmp_path / f"solo{i}", searched=searched, on_eval=on_eval
                ),
                curves[0],
            )
        )
    curves, on_eval = _curves(None)
    together = batched.train_group(
        configs,
        [tmp_path / f"b{i}" for i in range(len(configs))],
        searched=searched,
        on_eval=on_eval,
    )
    for i, (result, curve) in enumerate(solo):
        _assert_same_trial(together[i], curves[i], result, curve)
        assert together[i].best_step == result.best_step
    restored = train.evaluate_checkpoint(configs[1], tmp_path / "b1")
    assert restored["val/error"] == pytest.approx(together[1].best_value, abs=1e-6)


def test_diverging_member_leaves_the_others_untouched(tmp_path):
    base = _base("sgd", **{"model.width": 29})
    trials = [
        {"optimizer.learning_rate": 0.02},
        {"optimizer.learning_rate": 1e4},
        {"optimizer.learning_rate": 0.05},
    ]
    searched = frozenset({"optimizer.learning_rate", "model.dropout"})
    configs = [config_lib.apply(base, p) for p in trials]
    before = train.TRACES["train_period"]
    curves, on_eval = _curves(None)
    together = batched.train_group(
        configs, [tmp_path / f"b{i}" for i in range(3)], searched=searched, on_eval=on_eval
    )
    assert train.TRACES["train_period"] - before == 1  # one compile for the group
    assert together[1].status == "infeasible"
    solo_bad = train.train_and_evaluate(configs[1], tmp_path / "solo_bad", searched=searched)
    assert together[1].reason == solo_bad.reason  # same step, same value
    assert sorted(curves[1]) == [0, 50]  # recorded up to the period it diverged in
    for i in (0, 2):
        solo_curves, solo_eval = _curves(None)
        solo = train.train_and_evaluate(
            configs[i], tmp_path / f"solo{i}", searched=searched, on_eval=solo_eval
        )
        _assert_same_trial(together[i], curves[i], solo, solo_curves[0])


def test_one_compilation_per_group_whatever_the_values(tmp_path):
    base = tiny_config(**{"model.width": 17})
    searched = frozenset({"optimizer.learning_rate", "optimizer.b1"})
    before = train.TRACES["train_period"]
    for round_ in range(2):
        configs = [
            config_lib.apply(
                base,
                {
                    "optimizer.learning_rate": 10 ** -(2 + i + round_),
                    "optimizer.b1": 0.8 + 0.05 * i,
                },
            )
            for i in range(3)
        ]
        results = batched.train_group(
            configs, [tmp_path / f"{round_}_{i}" for i in range(3)], searched=searched
        )
        assert all(r.status == "completed" for r in results)
        assert train.TRACES["train_period"] - before == 1


def test_trials_with_different_programs_are_refused(tmp_path):
    configs = [tiny_config(**{"model.width": 8}), tiny_config(**{"model.width": 9})]
    with pytest.raises(ValueError, match="do not share one compiled program"):
        batched.train_group(configs, [tmp_path / "a", tmp_path / "b"])


def test_work_units_group_by_program_and_split_by_batch_trials():
    c = float_only_study(num_trials=6)
    c.search.model.width = spaces.discrete([16, 32], role="scientific")
    study_plan = sweep.plan(c)
    widths = [p["model.width"] for p in study_plan.params]
    units = sweep.work_units(study_plan, list(range(6)), "batched", 6)
    assert sorted(i for u in units for i in u) == list(range(6))
    for unit in units:
        assert len({widths[i] for i in unit}) == 1
    assert len(units) == len(set(widths))
    small = sweep.work_units(study_plan, list(range(6)), "batched", 2)
    assert max(len(u) for u in small) == 2 and sorted(i for u in small for i in u) == list(range(6))
    assert sweep.work_units(study_plan, [1, 3], "sequential", None) == [[1], [3]]


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
    # On one CPU a vmap of many trials is slower than a few (see batched.CPU_BATCH_TRIALS); equal
    # chunk sizes keep one compilation per group.
    assert batched.default_batch_trials(16) == 4 and batched.default_batch_trials(6) == 3
    assert batched.default_batch_trials(5) == 1 and batched.default_batch_trials(2) == 2
    c = float_only_study(num_trials=6)
    study_plan = sweep.plan(c)
    assert sweep.work_units(study_plan, list(range(6)), "batched", None) == [[0, 1, 2], [3, 4, 5]]
    monkeypatch.setattr(batched, "CPU_BATCH_TRIALS", 2)
    assert sweep.work_units(study_plan, list(range(6)), "batched", None) == [[0, 1], [2, 3], [4, 5]]


_SHARDED_STUDY = """
import json, sys
import jax
from factories import float_only_study
from jaxplay import batched, sweep

spread = []
put = jax.device_put
def recording_put(tree, sharding=None, **kw):  # what the stacked trial arrays are placed on
    out = put(tree, sharding, **kw)
    if isinstance(sharding, jax.sharding.NamedSharding):
        spread.extend(len(leaf.sharding.device_set) for leaf in jax.tree.leaves(out))
    return out
batched.jax.device_put = recording_put
record = sweep.run_study(float_only_study(num_trials=4), sys.argv[1], executor="batched", log=lambda s: None)
print(json.dumps({"devices": jax.device_count(), "spread": sorted(set(spread)),
                  "trials": [[t["status"], t["best_step"], t["best_value"]] for t in record["trials"]]}))
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
    assert sharded["devices"] == 4 and sharded["spread"] == [
        4
    ]  # every stacked array spans 4 devices
    single = sweep.run_study(
        float_only_study(num_trials=4),
        tmp_path / "single",
        executor="sequential",
        log=lambda s: None,
    )
    for (status, best_step, best_value), t in zip(sharded["trials"], single["trials"]):
        assert status == t["status"] == "completed" and best_step == t["best_step"]
        assert best_value == pytest.approx(
            t["best_value"], abs=0.005
        )  # one borderline example may flip
