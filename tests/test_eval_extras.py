"""What an evaluation keeps besides its rates (playbook items 57, 65, 66): a profiler trace of a
few periods (sweep --profile), the predictions on chosen validation examples
(train.keep_predictions), the count of validation examples right (val/correct), a seeded uniform
training sample and the final score on the whole training split beside it (train_full/)."""

import dataclasses
import gzip
import json
import math
import shutil

import numpy as np
import pytest

from factories import claimed_trial, stored_curves, tiny_config
from jaxplay import driver, spec, studies, sweep, train, workloads
from jaxplay import store as store_lib
from jaxplay.analysis import study as study_lib
from jaxplay.data.dataset import Dataset
from jaxplay.errors import ConfigError
from jaxplay.train import feed, loop, profile

QUIET = {"report": False, "tensorboard": False, "log": lambda *_: None}


def _one_trial(**overrides):
    c = tiny_config(**overrides)
    c.study.num_trials = 1
    return c


def test_profile_traces_periods_after_the_first_and_changes_no_result(tmp_path):
    c = _one_trial(**{"train.steps": 200})  # 4 periods: 1 compiles, PERIODS traced
    lines = []
    sweep.run_study(
        c, tmp_path / "traced", report=False, tensorboard=False, log=lines.append,
        profile=tmp_path / "trace",
    )  # fmt: skip
    sweep.run_study(c, tmp_path / "plain", **QUIET)
    assert stored_curves(tmp_path / "traced") == stored_curves(tmp_path / "plain")
    assert any(f"profile: {profile.PERIODS} period(s) traced into" in line for line in lines)
    (run,) = (tmp_path / "trace" / "plugins" / "profile").iterdir()
    assert list(run.glob("*.xplane.pb"))  # TensorBoard's profile plugin reads these
    with gzip.open(run / "perfetto_trace.json.gz") as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    # One step annotation per traced period, named by the step it ends at: not the first period
    # (step 50, which compiles), then the next PERIODS.
    periods = sorted(
        int(e["args"]["step_num"])
        for e in events
        if e.get("name") == "period" and "step_num" in e.get("args", {})
    )
    assert periods == [100, 150, 200][: profile.PERIODS]
    # The host's phases of a period are named: waiting for input apart from waiting for the
    # device (the fetch) and from the bookkeeping.
    names = {e.get("name") for e in events}
    assert {"input", "dispatch steps", "fetch metrics", "record"} <= names


def test_profile_with_dry_run_is_refused_in_one_line(capsys):
    code = sweep.main(
        ["--config", "experiments/mnist1d_mlp.py", "--workdir", "/nonexistent/w", "--dry_run",
         "--profile", "/tmp/trace"]
    )  # fmt: skip
    assert code != 0
    assert "--profile: traces training, and --dry_run trains nothing" in capsys.readouterr().err


@pytest.mark.parametrize(
    "executor,pipeline", [("sequential", "device"), ("sequential", "grain"), ("batched", "device")]
)
def test_kept_predictions_agree_with_the_evaluations_metrics(tmp_path, executor, pipeline, capsys):
    # Every validation example kept (val_size=500): the kept predictions must reproduce the
    # evaluation's own count and loss, computed apart from them.
    c = tiny_config(**{"train.keep_predictions": 500, "data.pipeline": pipeline})
    c.study.num_trials = 2 if executor == "batched" else 1
    record = sweep.run_study(c, tmp_path, executor=executor, batch_trials=2, **QUIET)
    assert [t["status"] for t in record["trials"]] == ["completed"] * c.study.num_trials
    data = study_lib.load(tmp_path)
    kept = data.record["predictions"]
    assert [(p["trial"], p["step"]) for p in kept] == [
        (i, s) for i in range(c.study.num_trials) for s in (0, 50, 100)
    ]
    _, y_val = _val_split(c)
    for p in kept:
        curves = dict(stored_curves(tmp_path, p["trial"]))
        assert p["label"] == y_val.tolist()
        right = sum(a == b for a, b in zip(p["predicted"], p["label"]))
        assert dict(curves["val/correct"])[p["step"]] == right
        # float32 softmax-then-log against log-softmax: a few ulps (1.2e-7 relative) per example,
        # far inside 1e-5 of the mean over 500 examples.
        loss = float(np.mean(-np.log(p["true_probability"])))
        assert loss == pytest.approx(dict(curves["val/loss"])[p["step"]], abs=1e-5)
    capsys.readouterr()
    assert studies.main(["export", "--workdir", str(tmp_path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"] == kept


def _val_split(config):
    return workloads.bind(spec.resolve(config).base).dataset.splits["val"]


def test_a_resumed_trial_keeps_each_evaluations_predictions_once(tmp_path):
    c = _one_trial(**{"train.keep_predictions": 16, "train.steps": 200})
    c.train.checkpoint_every_secs = 0.0  # every evaluation is a resume point
    c.train.keep_best = 4  # all of them kept

    def killed_at_step_150(line):
        if line.strip().startswith("step 150/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run_study(c, tmp_path, report=False, tensorboard=False, log=killed_at_step_150)
    before = study_lib.load(tmp_path).record["predictions"]
    assert [p["step"] for p in before] == [0, 50, 100, 150]
    # The checkpoints after step 50 never landed: the trial resumes there and logs 100 and 150
    # again, replacing what it had logged.
    folder = driver.trial_dir(tmp_path, c.study.name, 0)
    for step in (100, 150):
        shutil.rmtree(folder / "checkpoints" / str(step))
    lines = []
    sweep.run_study(c, tmp_path, report=False, tensorboard=False, log=lines.append)
    assert "  resuming from step 50" in lines
    after = study_lib.load(tmp_path).record["predictions"]
    assert [p["step"] for p in after] == [0, 50, 100, 150, 200]
    assert after[:4] == before  # a resumed trial retraces its steps exactly


def test_log_predictions_writes_a_step_once_and_resume_drops_the_later_ones(store_url):
    store = store_lib.Store(store_url)
    study_id, trial_id = claimed_trial(store)
    values = {"predicted": np.array([1, 2]), "true_probability": np.array([0.5, math.nan])}
    for step in (0, 10, 10, 20):  # step 10 twice: a retried write
        assert store.log_predictions(trial_id, step, values, worker="w")
    assert [p["step"] for p in store.predictions(study_id)] == [0, 10, 20]
    assert store.predictions(study_id)[0] == {
        "trial": 0, "step": 0, "predicted": [1, 2], "true_probability": [0.5, None]
    }  # fmt: skip
    store.drop_metrics_after(trial_id, 10)  # what a trial resumed from step 10 does first
    assert [p["step"] for p in store.predictions(study_id)] == [0, 10]
    assert not store.log_predictions(trial_id, 30, values, worker="other")  # not its lease
    store.close()


@pytest.mark.parametrize("value", [-1, 2000, 1.5, "8"])
def test_keep_predictions_must_be_a_small_count(value):
    with pytest.raises(ConfigError, match=r"^train.keep_predictions: must be an int in \[0, "):
        spec.resolve(tiny_config(**{"train.keep_predictions": value}))


def test_keep_predictions_needs_a_task_that_makes_them(monkeypatch):
    class NoPredictions:
        metrics_mode = workloads.Classification.metrics_mode
        loss = workloads.Classification.loss
        metrics = workloads.Classification.metrics

    plain = workloads.REGISTRY["classification"]
    monkeypatch.setitem(
        workloads.REGISTRY, "classification", dataclasses.replace(plain, task=NoPredictions())
    )
    with pytest.raises(ConfigError, match="^train.keep_predictions: workload 'classification'"):
        spec.resolve(tiny_config(**{"train.keep_predictions": 4}))


def test_the_training_sample_is_uniform_even_over_sorted_data():
    # 10 classes of 1000 examples, sorted by class: the first 1000 would all be class 0.
    y = np.repeat(np.arange(10), 1000)
    x = np.arange(len(y), dtype=np.float32)[:, None]
    data = Dataset("sorted", x, y, x[:10], y[:10], num_classes=10)
    _, sample = feed.eval_splits(data, 1000)["train"]
    counts = np.bincount(np.asarray(sample[:]), minlength=10)
    # A uniform sample without replacement: each class count is hypergeometric, mean 100, sd
    # sqrt(1000 * 0.1 * 0.9 * 9000 / 9999) = 9.0; five sd either side.
    sd = math.sqrt(1000 * 0.1 * 0.9 * 9000 / 9999)
    assert np.all(np.abs(counts - 100) < 5 * sd), counts
    # Seeded apart from the study: every call (every trial) scores the same examples.
    _, again = feed.eval_splits(data, 1000)["train"]
    assert np.array_equal(np.asarray(again[:]), np.asarray(sample[:]))


def test_the_last_evaluation_also_scores_the_whole_training_split(tmp_path):
    # 200 steps of 64 examples: long enough to afford one pass over the 3500 training examples.
    c = _one_trial(
        **{"train.train_eval_examples": 256, "train.steps": 200, "train.eval_every": 100}
    )
    assert loop.whole_split_affordable(3500, 200, 64)
    record = sweep.run_study(c, tmp_path, **QUIET)
    curves = stored_curves(tmp_path)
    # Only at the end: one pass over the split per trial, not one per evaluation.
    assert [s for s, _ in curves["train_full/error"]] == [200]
    assert [s for s, _ in curves["train/error"]] == [0, 100, 200]
    final = record["trials"][0]["final_metrics"]
    assert {"train_full/loss", "train_full/error", "train/error"} <= set(final)
    # The same number as the saved step-200 state scored on the split apart from training.
    trial = spec.resolve(c).base
    folder = driver.trial_dir(tmp_path, c.study.name, 0)
    whole = train.evaluate_checkpoint(trial, folder, step=200, split="train")
    assert final["train_full/error"] == whole["train/error"]
    assert final["train_full/loss"] == whole["train/loss"]


def test_a_trial_too_short_for_a_pass_over_its_training_split_skips_it(tmp_path):
    # 100 steps of 64 examples: a pass over 3500 examples would add more than the limit.
    assert not loop.whole_split_affordable(3500, 100, 64)
    sweep.run_study(_one_trial(**{"train.train_eval_examples": 256}), tmp_path, **QUIET)
    assert "train_full/error" not in stored_curves(tmp_path)


def test_val_correct_counts_the_validation_examples_right(tmp_path):
    sweep.run_study(_one_trial(), tmp_path, **QUIET)
    curves = stored_curves(tmp_path)
    errors, correct = dict(curves["val/error"]), dict(curves["val/correct"])
    assert list(correct) == [0, 50, 100]
    for step, right in correct.items():
        assert right == int(right)
        # val_size=500: the rate and the count say the same, the count to one example (the
        # float32 rate carries 500 * 2**-24 = 3e-5 of rounding).
        assert right == pytest.approx(500 * (1 - errors[step]), abs=1e-4)
    # MNIST-1D's training split is smaller than the default sample: it is scored whole already,
    # and nothing scores it again at the end.
    assert "train_full/error" not in curves and "train/error" in curves
