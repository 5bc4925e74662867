"""TensorBoard's view of a study (jaxplay.driver.events), read back with TensorBoard's own reader:
one run per trial with the store's evaluations, the study's HParams experiment, a resumed trial
with each step once, and no event file where there should be none."""

import math
import pathlib
import shutil
import types

import pytest
from tensorboard.backend.event_processing import event_multiplexer
from tensorboard.plugins.hparams import api_pb2, metadata

from factories import float_only_study, tiny_config, write_study_file
from jaxplay import cli, distributed, driver, spaces, sweep
from jaxplay import config as config_lib
from jaxplay.store import Store, default_url

REPO = pathlib.Path(__file__).resolve().parent.parent


def _runs(workdir) -> event_multiplexer.EventMultiplexer:
    """Every run under `workdir`, as `tensorboard --logdir workdir` names them, read as written
    (without the reader's purge of steps a restarted run writes again)."""
    runs = event_multiplexer.EventMultiplexer(purge_orphaned_data=False)
    runs.AddRunsFromDirectory(str(workdir))
    runs.Reload()
    return runs


def _event_files(folder) -> list[pathlib.Path]:
    return sorted(pathlib.Path(folder).rglob("events.out.tfevents.*"))


def _store_curves(workdir) -> tuple[dict, dict]:
    """({trial index: {metric: [(step, value)]}}, the study's record)."""
    store = Store(default_url(workdir))
    try:
        study_id = store.study_id()
        record = store.record(study_id)
        return {t["index"]: store.curves(study_id, t["index"]) for t in record["trials"]}, record
    finally:
        store.close()


def _assert_scalars_are_the_stores(runs, run: str, curves: dict) -> None:
    """Each metric of the store is a tag of the run, at exactly the store's steps, each once,
    with the store's value (float32 in the file; NULL, a non-finite value, as NaN)."""
    assert set(runs.GetAccumulator(run).Tags()["scalars"]) == set(curves)
    for name, points in curves.items():
        written = [(e.step, e.value) for e in runs.Scalars(run, name)]
        assert [s for s, _ in written] == [s for s, _ in points], (run, name)
        for (_, got), (_, want) in zip(written, points):
            if want is None:
                assert math.isnan(got), (run, name)
            else:
                assert got == pytest.approx(want, rel=1e-6, abs=1e-7), (run, name)


def _session(runs, run: str):
    """(hparams {name: python value}, end status name or None) of a trial's run."""
    content = runs.PluginRunToTagToContent(metadata.PLUGIN_NAME)[run]
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    values = {}
    for name, value in start.hparams.items():
        kind = value.WhichOneof("kind")
        values[name] = getattr(value, kind)
    end = content.get(metadata.SESSION_END_INFO_TAG)
    status = (
        None
        if end is None
        else api_pb2.Status.Name(metadata.parse_session_end_info_plugin_data(end).status)
    )
    return values, status


def test_the_quickstart_writes_one_run_per_trial_and_the_studys_hparams(tmp_path):
    c = config_lib.load(f"{REPO}/experiments/mnist1d_mlp.py:smoke")
    c.study.num_trials = 3
    c.train.steps, c.train.eval_every, c.schedule.warmup_steps = 100, 50, 10
    record = sweep.run_study(c, tmp_path, log=lambda s: None, report=False)
    curves, _ = _store_curves(tmp_path)
    runs = _runs(tmp_path)
    study = c.study.name
    trial_runs = [f"{study}/trial_{t['index']:04d}" for t in record["trials"]]
    assert sorted(runs.Runs()) == sorted([study, *trial_runs])  # the study's summary, each trial
    for t, run in zip(record["trials"], trial_runs):
        assert [s for s, _ in curves[t["index"]]["val/error"]] == [0, 50, 100]
        assert {"train/loss", "val/loss", "train/learning_rate", "train/grad_norm"} <= set(
            curves[t["index"]]
        )
        _assert_scalars_are_the_stores(runs, run, curves[t["index"]])
        hparams, status = _session(runs, run)
        assert hparams == pytest.approx(t["params"])
        assert status == "STATUS_SUCCESS"
    assert len(_event_files(tmp_path / study / "trial_0000")) == 1

    content = runs.PluginRunToTagToContent(metadata.PLUGIN_NAME)[study]
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert experiment.name == study
    infos = {h.name: h for h in experiment.hparam_infos}
    assert set(infos) == {"model.width", "optimizer.learning_rate", "optimizer.b1"}
    width, lr = infos["model.width"], infos["optimizer.learning_rate"]
    assert width.display_name == "model.width (scientific)"
    assert width.type == api_pb2.DATA_TYPE_FLOAT64
    assert [v.number_value for v in width.domain_discrete.values] == [64, 128, 256, 512]
    assert lr.display_name == "optimizer.learning_rate (nuisance)"
    assert "log scale" in lr.description
    assert (lr.domain_interval.min_value, lr.domain_interval.max_value) == (1e-4, 3e-2)
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert set(metrics) == set(curves[0])
    # The objective, the other validation metrics, their training split's, then the rest.
    assert metrics[:4] == ["val/error", "val/loss", "train/error", "train/loss"]
    objective = experiment.metric_infos[0]
    assert objective.display_name == "val/error (objective, min)"
    assert objective.dataset_type == api_pb2.DATASET_VALIDATION


@pytest.mark.parametrize("resume_point", [50, 0])
def test_a_resumed_trial_has_each_step_once_with_the_stores_values(tmp_path, resume_point):
    c = float_only_study(num_trials=1)
    c.train.steps = 200
    c.train.checkpoint_every_secs = 0.0  # every evaluation is a resume point
    c.train.keep_best = 4  # all of them kept

    def killed_at_step_150(line):
        if line.strip().startswith("step 150/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run_study(c, tmp_path, log=killed_at_step_150, report=False)
    run = f"{c.study.name}/trial_0000"
    assert [e.step for e in _runs(tmp_path).Scalars(run, "val/error")] == [0, 50, 100, 150]
    # The checkpoints after the resume point never landed: the trial resumes there (or starts
    # again), and the store drops what it logged after it.
    folder = driver.trial_dir(tmp_path, c.study.name, 0)
    for step in (50, 100, 150):
        if step > resume_point:
            shutil.rmtree(folder / "checkpoints" / str(step))
    lines = []
    record = sweep.run_study(c, tmp_path, log=lines.append, report=False)
    assert ("  resuming from step 50" in lines) == (resume_point == 50)
    assert record["trials"][0]["status"] == "completed"
    curves, _ = _store_curves(tmp_path)
    runs = _runs(tmp_path)
    assert [s for s, _ in curves[0]["val/error"]] == [0, 50, 100, 150, 200]
    _assert_scalars_are_the_stores(runs, run, curves[0])
    assert len(_event_files(folder)) == 1  # the interrupted run's file was replaced
    hparams, status = _session(runs, run)
    assert hparams == pytest.approx(record["trials"][0]["params"])
    assert status == "STATUS_SUCCESS"


def test_a_diverged_trial_ends_as_a_failure_with_nan_where_the_store_has_null(tmp_path):
    c = tiny_config(
        **{"optimizer.name": "sgd", "study.algorithm": "grid", "study.num_trials": None}
    )
    for key in ("b1", "b2", "eps"):
        del c.optimizer[key]
    c.search = dict(optimizer=dict(learning_rate=spaces.discrete([1e5])))
    record = sweep.run_study(c, tmp_path, log=lambda s: None, report=False)
    assert record["trials"][0]["status"] == "infeasible"
    curves, _ = _store_curves(tmp_path)
    assert any(v is None for points in curves[0].values() for _, v in points)
    runs = _runs(tmp_path)
    _assert_scalars_are_the_stores(runs, f"{c.study.name}/trial_0000", curves[0])
    assert _session(runs, f"{c.study.name}/trial_0000")[1] == "STATUS_FAILURE"


def test_tensorboard_false_writes_no_event_file(tmp_path, monkeypatch):
    # main() points jax's process-wide compilation cache at ~/.cache; in-process tests must not.
    monkeypatch.setattr(cli, "enable_compilation_cache", lambda: None)
    study_file = write_study_file(tmp_path / "study.py", float_only_study(num_trials=1))
    workdir = tmp_path / "w"
    code = sweep.main(
        [f"--config={study_file}", f"--workdir={workdir}", "--tensorboard=false", "--report=false"]
    )
    assert code == 0
    assert (workdir / "jaxplay.db").is_file() and _event_files(workdir) == []


def test_a_process_other_than_0_writes_no_event_file(tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "is_primary", lambda: False)
    record = sweep.run_study(float_only_study(num_trials=1), tmp_path, log=lambda s: None)
    assert record["trials"][0]["status"] == "completed"
    assert _event_files(tmp_path) == []


def test_a_failing_event_file_write_warns_once_and_the_trials_complete(tmp_path, monkeypatch):
    from tensorboardX import event_file_writer

    def full_disk(self, event):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(event_file_writer.EventsWriter, "write_event", full_disk)
    lines = []
    record = sweep.run_study(
        float_only_study(num_trials=2), tmp_path, log=lines.append, report=False
    )
    assert [t["status"] for t in record["trials"]] == ["completed", "completed"]
    warnings = [line for line in lines if "TensorBoard" in line]
    assert len(warnings) == 1 and "No space left on device" in warnings[0]
    assert "no more event files in this run" in warnings[0]


def test_each_kind_of_hyperparameter_has_its_hparams_type_and_domain(tmp_path):
    """Without training: a study's summary and a trial's session, for every space and value kind."""
    from jaxplay.driver import events as events_lib

    search = {
        "model": {"activation": spaces.categorical(["relu", "gelu"], role="scientific")},
        "train": {"flag": spaces.categorical([True, False]), "mixed": spaces.categorical([1, "a"])},
        "data": {"batch_size": spaces.int_log(16, 256)},
    }
    study = types.SimpleNamespace(name="kinds", notes="", objective="val/loss", mode="min")
    spec = types.SimpleNamespace(study=study, space=spaces.parse(search))
    curves = {"val/loss": [(0, 2.0), (10, None)]}
    events = events_lib.StudyEvents(tmp_path / "kinds", spec, lambda index: curves, print)
    params = {"model.activation": "gelu", "train.flag": False, "train.mixed": 1}
    params["data.batch_size"] = 64
    events.claim(0, tmp_path / "kinds" / "trial_0000", params)
    events.end(0, "infeasible")  # never opened here: its run comes from the store
    runs = _runs(tmp_path)
    content = runs.PluginRunToTagToContent(metadata.PLUGIN_NAME)["kinds"]
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    infos = {h.name: h for h in experiment.hparam_infos}
    assert infos["model.activation"].type == api_pb2.DATA_TYPE_STRING
    assert [v.string_value for v in infos["model.activation"].domain_discrete.values] == [
        "relu",
        "gelu",
    ]
    assert infos["train.flag"].type == api_pb2.DATA_TYPE_BOOL
    assert infos["train.mixed"].type == api_pb2.DATA_TYPE_STRING  # mixed kinds: shown as text
    size = infos["data.batch_size"]
    assert size.type == api_pb2.DATA_TYPE_FLOAT64 and size.domain_interval.max_value == 256
    assert [m.name.tag for m in experiment.metric_infos] == ["val/loss"]
    hparams, status = _session(runs, "kinds/trial_0000")
    assert hparams == {
        "model.activation": "gelu",
        "train.flag": False,
        "train.mixed": "1",
        "data.batch_size": 64.0,
    }
    assert status == "STATUS_FAILURE"
    _assert_scalars_are_the_stores(runs, "kinds/trial_0000", curves)
