"""TensorBoard's view of a study: each trial's evaluations as event files in its folder (one run per
trial), and the study's HParams summary (every searched hyperparameter with its role, the
objective) in the study's folder, so `tensorboard --logdir WORKDIR` shows the curves, the HParams
table and its parallel coordinates while the study runs.

They are written from the same values the store gets, and the store stays the truth: a trial that
starts again or resumes has its files rewritten from the store's metrics up to its resume step, so
every reader sees each step once. tensorboardX writes the files (protocol buffers and the record
format, gs:// included where google-cloud-storage is installed): no TensorFlow.
"""

from __future__ import annotations

import functools
import math
import time
import types
from collections.abc import Callable

from jaxplay import paths

# The study's HParams summary: a fixed suffix lets a rerun replace it instead of adding another.
STUDY_SUFFIX = ".jaxplay-study"
EVENT_FILES = "events.out.tfevents.*"
PLUGIN = "hparams"
# The tags TensorBoard's HParams plugin reads (tensorboard.plugins.hparams.metadata).
EXPERIMENT_TAG = "_hparams_/experiment"
SESSION_START_TAG = "_hparams_/session_start_info"
SESSION_END_TAG = "_hparams_/session_end_info"
STATUS = {"completed": "STATUS_SUCCESS", "infeasible": "STATUS_FAILURE", "failed": "STATUS_FAILURE"}


class StudyEvents:
    """The event files of one study, written by the process that writes the store (process 0).

    `curves(index)` reads a trial's metrics from the store ({name: [(step, value)]}). A failure to
    write (a full disk, a bucket that refuses) turns event files off for the rest of the run with
    one warning through `log`: the store holds every metric and training goes on; a rerun rewrites
    the files of the trials it resumes. Non-finite values are written as NaN, live and rewritten
    alike (the store keeps them as NULL), so a diverged trial's last point says so.
    """

    def __init__(
        self,
        folder,
        spec,
        curves: Callable[[int], dict],
        log: Callable[[str], None],
        *,
        enabled: bool = True,
    ):
        self.folder = paths.folder(folder)
        self.spec, self.curves, self.log = spec, curves, log
        self.on = enabled
        self.metrics: set[str] = set()  # those the study's HParams summary lists
        self._trials: dict[int, tuple] = {}  # index -> (folder, params) of a claimed trial
        self._writers: dict[int, object] = {}  # index -> the open writer of its run

    # ---------------------------------------------------------------------------------------------
    # The study: its HParams experiment.

    def metrics_seen(self, names) -> None:
        """Metric names of the study's trials; a new one (re)writes the study's HParams summary
        with all of them. Given a whole evaluation period's names only (the store's when a rerun
        starts, else the first period's), never the step-0 evaluation's alone: a running
        TensorBoard keeps the first summary it read of the study until it is restarted."""
        names = set(names)
        if not self.on or names <= self.metrics:
            return
        self.metrics |= names
        event = self._event(0, self._plugin_summary(EXPERIMENT_TAG, experiment=self._experiment()))
        self._io("writing the study's HParams summary", self._replace_study_file, event)

    def _replace_study_file(self, event) -> None:
        for old in self.folder.glob(EVENT_FILES + STUDY_SUFFIX):
            old.unlink(missing_ok=True)  # another worker of the study may replace it too
        self.folder.mkdir(parents=True, exist_ok=True)
        writer = _new_file(self.folder, STUDY_SUFFIX)
        try:
            writer.write_event(event)
        finally:
            writer.close()

    def _experiment(self):
        api = _tbx().api
        study = self.spec.study
        infos = [_hparam_info(api, p) for p in self.spec.space]
        return api.Experiment(
            name=study.name,
            description=study.notes or "",
            time_created_secs=time.time(),
            hparam_infos=infos,
            metric_infos=[
                _metric_info(api, name, study)
                for name in _metric_order(self.metrics | {study.objective}, study)
            ],
        )

    # ---------------------------------------------------------------------------------------------
    # A trial: its run.

    def claim(self, index: int, folder, params: dict) -> None:
        """A trial this process is about to train; its run opens at its first evaluation or at
        its resume."""
        self._trials[index] = (paths.folder(folder), params)

    def start(self, index: int, *, resumed: bool = False) -> None:
        """Opens the trial's run afresh: its old event files go, its hyperparameters are written,
        and for a `resumed` trial the store's metrics (already cut at the resume step) again."""
        if not self.on:
            return
        self._close(index)
        folder, params = self._trials[index]
        curves = self.curves(index) if resumed else {}
        events = [self._restart_event(), self._event(0, self._session_start(params))]
        by_step: dict[int, dict] = {}
        for name, points in curves.items():
            for step, value in points:
                by_step.setdefault(step, {})[name] = value
        events += [self._scalars_event(step, by_step[step]) for step in sorted(by_step)]
        self._io(f"writing {folder}'s event files", self._open, index, folder, events)
        if by_step.keys() - {0}:
            self.metrics_seen(curves)

    def _open(self, index: int, folder, events: list) -> None:
        for old in folder.glob(EVENT_FILES):
            old.unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        writer = _new_file(folder)
        self._writers[index] = writer
        for event in events:
            writer.write_event(event)

    def scalars(self, index: int, step: int, metrics: dict) -> None:
        """One evaluation's metrics, at the training step."""
        if not self.on:
            return
        event = self._scalars_event(step, metrics)
        self._io("writing event files", self._writers[index].write_event, event)
        if step > 0:  # the step-0 evaluation has no training metrics yet
            self.metrics_seen(metrics)

    def steps(self, index: int, last_step: int, series: dict) -> None:
        """Every step of a period ({name: values of steps last_step - n + 1 .. last_step}): the
        per-step series of a trial with train.log_every_step."""
        if not self.on:
            return
        for name, values in series.items():
            first = last_step - len(values) + 1
            for k, value in enumerate(values):
                if not self.on:  # a write failed: event files are off for the rest of the run
                    return
                event = self._scalars_event(first + k, {name: value})
                self._io("writing event files", self._writers[index].write_event, event)

    def flush(self) -> None:
        """Makes the evaluations written so far visible to a running TensorBoard."""
        for writer in list(self._writers.values()):
            if not self.on:
                return
            self._io("writing event files", writer.flush)

    def end(self, index: int, status: str) -> None:
        """Closes a finished trial's run with its outcome (a store status). A trial that failed
        before its run opened gets one, from the store."""
        if not self.on:
            return
        if index not in self._writers:
            self.start(index, resumed=True)
        if index not in self._writers:
            return  # the start failed and turned event files off
        tbx = _tbx()
        end = tbx.hparams.SessionEndInfo(
            status=tbx.api.Status.Value(STATUS[status]), end_time_secs=time.time()
        )
        event = self._event(0, self._plugin_summary(SESSION_END_TAG, session_end_info=end))
        self._io("writing event files", self._writers[index].write_event, event)
        self._close(index)

    def release(self, indices) -> None:
        """Closes the runs of trials left unfinished (interrupted, taken over, out of memory): a
        later resume rewrites them."""
        for index in indices:
            self._close(index)
            self._trials.pop(index, None)

    def close(self) -> None:
        """Closes every open run (the end of the run, or an error on its way out)."""
        self.release(list(self._writers))

    def _close(self, index: int) -> None:
        writer = self._writers.pop(index, None)
        if writer is not None and self.on:
            self._io("writing event files", writer.close)

    # ---------------------------------------------------------------------------------------------
    # Writing.

    def _io(self, what: str, fn, *args) -> None:
        """Runs a write to the event files' storage. Its failure is the storage's (the protocol
        buffers were built before): event files stop for this run, training goes on."""
        try:
            fn(*args)
        except Exception as e:
            self.on = False
            self._abandon()
            self.log(
                f"warning: TensorBoard: {what} failed ({type(e).__name__}: {e}); no more event "
                "files in this run (training goes on and the store keeps every metric; a rerun "
                "rewrites the event files of the trials it resumes)"
            )

    def _abandon(self) -> None:
        """Closes the open runs after a failed write, as far as the storage lets it."""
        for writer in self._writers.values():
            try:
                writer.close()
            except Exception:  # the failure already reported, again
                pass
        self._writers.clear()

    # ---------------------------------------------------------------------------------------------
    # Protocol buffers.

    def _event(self, step: int, summary):
        return _tbx().event.Event(wall_time=time.time(), step=step, summary=summary)

    def _restart_event(self):
        # A TensorBoard that read the run's old file drops what it had of the run (steps >= 0).
        event = _tbx().event
        log = event.SessionLog(status=event.SessionLog.START)
        return event.Event(wall_time=time.time(), step=0, session_log=log)

    def _scalars_event(self, step: int, metrics: dict):
        summary = _tbx().summary
        values = [
            summary.Summary.Value(tag=name, simple_value=_finite_or_nan(value))
            for name, value in sorted(metrics.items())
        ]
        return self._event(step, summary.Summary(value=values))

    def _session_start(self, params: dict):
        by_path = {p.path: p for p in self.spec.space}
        start = _tbx().hparams.SessionStartInfo(start_time_secs=time.time())
        for path, value in params.items():
            _set_value(start.hparams[path], _tb_value(by_path.get(path), value))
        return self._plugin_summary(SESSION_START_TAG, session_start_info=start)

    def _plugin_summary(self, tag: str, **data):
        tbx = _tbx()
        content = tbx.hparams.HParamsPluginData(version=0, **data).SerializeToString()
        metadata = tbx.summary.SummaryMetadata(
            plugin_data=tbx.summary.SummaryMetadata.PluginData(plugin_name=PLUGIN, content=content)
        )
        return tbx.summary.Summary(value=[tbx.summary.Summary.Value(tag=tag, metadata=metadata)])


@functools.cache
def _tbx() -> types.SimpleNamespace:
    """tensorboardX's writer and protocol buffers, imported on first use: its writer module imports
    torch where torch is installed, a cost a run with event files off does not pay."""
    from tensorboardX import event_file_writer
    from tensorboardX.proto import api_pb2, event_pb2, plugin_hparams_pb2, summary_pb2

    return types.SimpleNamespace(
        writer=event_file_writer, api=api_pb2, event=event_pb2, hparams=plugin_hparams_pb2,
        summary=summary_pb2,
    )  # fmt: skip


def _new_file(folder, suffix: str = ""):
    """A new event file in `folder`. Its name is never an earlier file's: tensorboardX names a
    file by the second it opens, and a file rewritten within that second under the same name
    would be missed by a running TensorBoard (it follows files by name, in name order)."""
    return _tbx().writer.EventsWriter(str(folder / "events"), f".{time.time_ns()}{suffix}")


def _metric_order(metrics: set[str], study) -> list[str]:
    """The objective first, then the validation metrics scored on both splits, the same metrics
    on the training split (train/loss beside val/loss), the validation's own (val/correct), the
    other training metrics (the period's batch loss, gradient norms, ...), any other:
    TensorBoard's HParams table shows only the first few at first."""

    def rank(name: str) -> int:
        split, _, metric = name.partition("/")
        if name == study.objective:
            return 0
        if split == "val":
            return 1 if f"train/{metric}" in metrics else 3
        if split == "train":
            return 2 if f"val/{metric}" in metrics else 4
        return 5

    return sorted(metrics, key=lambda name: (rank(name), name))


def _metric_info(api, name: str, study):
    dataset = {"val/": "DATASET_VALIDATION", "train/": "DATASET_TRAINING"}.get(
        name.split("/")[0] + "/", "DATASET_UNKNOWN"
    )
    objective = name == study.objective
    return api.MetricInfo(
        name=api.MetricName(tag=name),
        display_name=f"{name} (objective, {study.mode})" if objective else name,
        description=f"the study's objective ({study.mode}imized)" if objective else "",
        dataset_type=api.DatasetType.Value(dataset),
    )


def _hparam_info(api, p):
    """A searched hyperparameter as TensorBoard's HParams plugin lists it: its domain, and its
    role in the name the table and the parallel coordinates show."""
    info = api.HParamInfo(name=p.path, display_name=f"{p.path} ({p.role})")
    if p.space in ("float", "int"):
        info.type = api.DATA_TYPE_FLOAT64
        info.domain_interval.min_value = float(p.min)
        info.domain_interval.max_value = float(p.max)
        info.description = f"{p.role}; {p.space}, {p.scale} scale in [{p.min:g}, {p.max:g}]"
        return info
    kind = _discrete_type(p.values)
    info.type = api.DataType.Value(kind)
    for value in p.values:
        _set_value(info.domain_discrete.values.add(), _tb_value(p, value))
    info.description = f"{p.role}; {p.space}, one of {list(p.values)}"
    return info


def _discrete_type(values) -> str:
    """The HParams type of a discrete or categorical hyperparameter: numbers, bools, or else
    strings (a categorical mixing kinds is shown as text)."""
    if all(isinstance(v, bool) for v in values):
        return "DATA_TYPE_BOOL"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "DATA_TYPE_FLOAT64"
    return "DATA_TYPE_STRING"


def _tb_value(p, value):
    """A trial's value as the HParams plugin takes it: a number, a bool or a string, of the type
    its hyperparameter's domain declares (a value of no searched hyperparameter: its own)."""
    kind = (
        "DATA_TYPE_FLOAT64"
        if p is not None and p.space in ("float", "int")
        else _discrete_type(p.values if p is not None else [value])
    )
    if kind == "DATA_TYPE_FLOAT64":
        return float(value)
    if kind == "DATA_TYPE_BOOL":
        return bool(value)
    return str(value)


def _set_value(target, value) -> None:
    """Fills a google.protobuf.Value."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, float):
        target.number_value = value
    else:
        target.string_value = value


def _finite_or_nan(value) -> float:
    return float(value) if value is not None and math.isfinite(value) else math.nan
