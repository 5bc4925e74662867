"""A study as the analysis sees it: the store's record plus every trial's curves, read once.

Everything in `jaxplay.analysis` works from this, so a report can be made of a finished study, of
one still running, or of one written by other hosts: all it needs is the store.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import ml_collections
import numpy as np

from jaxplay import config as config_lib
from jaxplay import spaces
from jaxplay import store as store_lib
from jaxplay.analysis import record as record_lib
from jaxplay.analysis import scaling
from jaxplay.errors import ConfigError
from jaxplay.values import fmt

# The playbook's infeasible trials include those that "get really bad loss values" (item 33), not
# only NaNs: a completed trial whose training loss never fell below 90% of its step-0 value did not
# train at all (e.g. Adam at a learning rate so high that it sits at chance level without a NaN).
# Every view of the study (tables, JSON, plots, diagnostics) shows it as infeasible, with why.
NO_PROGRESS_FRACTION = 0.9
# The training-loss metrics a trial may log, in the order TrialData.train_loss looks for them.
TRAIN_LOSS_METRICS = ("train/loss", "train/batch_loss")


@dataclasses.dataclass
class TrialData:
    """One trial: hyperparameters, outcome and curves ({metric: (steps, values)}, NaN = missing)."""

    index: int
    status: str
    params: dict
    best_value: float | None = None
    best_step: int | None = None
    steps_run: int | None = None
    error: str | None = None
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)
    untrained: bool = False  # completed, but it never trained: shown as infeasible (see above)

    @property
    def feasible(self) -> bool:
        """Completed with a finite objective (the playbook's feasible trial)."""
        return (
            self.status == "completed"
            and self.best_value is not None
            and math.isfinite(self.best_value)
        )

    def curve(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of a metric; empty arrays when the trial never logged it."""
        return self.curves.get(name, (np.zeros(0, int), np.zeros(0)))

    def finite(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A metric's (steps, values) without its missing (NaN) or infinite points."""
        steps, values = self.curve(name)
        keep = np.isfinite(values)
        return steps[keep], values[keep]

    def train_loss(self) -> tuple[str, np.ndarray, np.ndarray]:
        """(name, steps, values) of the training loss: train/loss, else train/batch_loss (may be
        empty)."""
        name = next(
            (m for m in TRAIN_LOSS_METRICS if len(self.finite(m)[1])), TRAIN_LOSS_METRICS[0]
        )
        return (name, *self.finite(name))


@dataclasses.dataclass
class StudyData:
    """A study's record (`Store.record`), its search space, fixed hyperparameters and trials."""

    record: dict
    space: spaces.SearchSpace
    fixed: dict
    trials: list[TrialData]
    # Records (without curves) of the other studies of its store linked to it by lineage: its
    # parent, children, siblings and so on (see jaxplay.tuning); empty when built from a record.
    family: list[dict] = dataclasses.field(default_factory=list)
    # Measurements of the study's setup (jaxplay.tuning.batch_size), newest first.
    probes: list[dict] = dataclasses.field(default_factory=list)

    @property
    def param_paths(self) -> list[str]:
        """The searched hyperparameters, then any other value the trials set (a manual study's)."""
        paths = list(self.space.paths)
        for t in self.trials:
            paths.extend(p for p in t.params if p not in paths)
        return paths

    @property
    def parent(self) -> dict | None:
        """How this study derives from another (study.parent: study, action, changes), or None."""
        return record_lib.parent_of(self.record)

    @property
    def name(self) -> str:
        return self.record["name"]

    @property
    def objective(self) -> str:
        return self.record["objective"]

    @property
    def mode(self) -> str:
        return self.record["mode"]

    @property
    def train_steps(self) -> int | None:
        """The configured trial length (`train.steps`)."""
        return (self.record.get("config") or {}).get("train", {}).get("steps")

    def run_length(self, t: TrialData) -> int | None:
        """The steps trial t was to run: its train.steps (its own where its values set one) plus
        a warmup prepended before them (schedule.prepend_warmup); without a recorded config, the
        steps it ran."""
        config = self.record.get("config") or {}
        schedule = config.get("schedule") or {}
        if not any(p.startswith(("train.steps", "schedule.")) for p in t.params) and not (
            schedule.get("prepend_warmup")
        ):
            return self.train_steps or t.steps_run
        try:
            return config_lib.run_steps(config_lib.apply(config, t.params))
        except (ConfigError, KeyError, TypeError, ValueError):
            return self.train_steps or t.steps_run

    @property
    def feasible(self) -> list[TrialData]:
        """Feasible trials, best first."""
        sign = 1 if self.mode == "min" else -1
        return sorted(
            (t for t in self.trials if t.feasible), key=lambda t: (sign * t.best_value, t.index)
        )

    @property
    def ranked(self) -> list[TrialData]:
        """Every trial best first, in `studies show` order: completed by objective, then infeasible,
        failed, running, pending."""
        by_index = {t.index: t for t in self.trials}
        return [by_index[r["index"]] for r in record_lib.sorted_trials(self.record)]

    @property
    def infeasible(self) -> list[TrialData]:
        """Trials that diverged or failed to run (the playbook counts both as infeasible)."""
        return [t for t in self.trials if t.status in ("infeasible", "failed")]

    @property
    def finished(self) -> list[TrialData]:
        """Trials with an outcome (not pending or running)."""
        return [t for t in self.trials if t.status in ("completed", "infeasible", "failed")]

    def better(self, a: float, b: float) -> bool:
        """True when objective value a beats b."""
        return a < b if self.mode == "min" else a > b

    @classmethod
    def from_record(
        cls, record: dict, curves: dict[int, dict[str, list]] | None = None
    ) -> StudyData:
        """Builds a StudyData from a `Store.record` dict and `Store.study_curves` (tests
        construct both)."""
        config = ml_collections.ConfigDict(record.get("config") or {})
        space = spaces.parse(config.get("search"))
        fixed = config_lib.fixed_hyperparameters(config, space) if record.get("config") else {}
        curves = curves or {}
        trials = []
        for t in record["trials"]:
            arrays = {}
            for name, points in curves.get(t["index"], {}).items():
                steps = np.array([s for s, _ in points], dtype=int)
                values = np.array([math.nan if v is None else v for _, v in points], dtype=float)
                arrays[name] = (steps, values)
            trials.append(
                TrialData(
                    index=t["index"],
                    status=t["status"],
                    params=dict(t["params"]),
                    best_value=t.get("best_value"),
                    best_step=t.get("best_step"),
                    steps_run=t.get("steps_run"),
                    error=t.get("error"),
                    curves=arrays,
                )
            )
        for t in trials:
            _mark_untrained(t, record)
        return cls(record=record, space=space, fixed=fixed, trials=trials)


def _mark_untrained(t: TrialData, record: dict) -> None:
    """A completed trial whose training loss never fell below NO_PROGRESS_FRACTION of its step-0
    value becomes infeasible in this view, its record's entry too (so show, --json and the report
    agree with the tables, plots and diagnostics); the store keeps what the trainer recorded."""
    if t.status != "completed":
        return
    name, steps, values = t.train_loss()
    if len(values) < 2 or steps[0] != 0 or values[1:].min() < NO_PROGRESS_FRACTION * values[0]:
        return
    t.status, t.untrained = "infeasible", True
    t.error = (
        f"never trained: {name} stayed above {NO_PROGRESS_FRACTION:.0%} of its step-0 value "
        f"{fmt(float(values[0]))} (lowest {fmt(float(values[1:].min()))})"
    )
    for entry in record.get("trials", []):
        if entry["index"] == t.index and entry["status"] == "completed":
            entry.update(status="infeasible", error=t.error)
            counts = record.get("status_counts")
            if counts:
                counts["completed"] -= 1
                counts["infeasible"] = counts.get("infeasible", 0) + 1


def load(
    workdir: str | pathlib.Path | None = None, *, store: str | None = None, study: str | None = None
) -> StudyData:
    """Reads a study (the only one in the store unless `study` names it) and all its curves."""
    # Read-only: a finished study on read-only storage can still be shown and reported.
    db = store_lib.Store(store_lib.url_for(workdir, store, must_exist=True), readonly=True)
    try:
        study_id = db.study_id(study)
        data = read(db, study_id)
        # The kept predictions (train.keep_predictions) ride in the record that show --json and
        # export --format json print; the dashboard's frequent reads (read) leave them out.
        kept = db.predictions(study_id)
        if kept:
            data.record["predictions"] = kept
        return data
    finally:
        db.close()


def read(db: store_lib.Store, study_id: int) -> StudyData:
    """A study of an open store with its curves, relatives, probes and final evaluation."""
    data = StudyData.from_record(db.record(study_id), db.study_curves(study_id))
    data.family = _family(db, data.name)
    scaling.attach_family_curves(db, data)  # the steps-to-result view reads every batch size
    data.probes = db.probes(data.name)
    finals = [p["result"] for p in data.probes if p["kind"] == "final_evaluation"]
    # The study's final number (jaxplay.tuning.final): the latest evaluation, test first.
    tests = [f for f in finals if f.get("split") == "test"]
    data.record["final_evaluation"] = (tests or finals or [None])[0]
    # The round's launch decision (jaxplay.tuning.rounds), the latest, and the store's incumbent.
    decision = next((p for p in data.probes if p["kind"] == store_lib.DECISION), None)
    data.record["decision"] = (
        {**decision["config"], "result": decision["result"], "created_at": decision["created_at"]}
        if decision
        else None
    )
    data.record["incumbent"] = db.incumbent()
    return data


def _family(db: store_lib.Store, name: str) -> list[dict]:
    """Records of the studies connected to `name` through parent links, without `name` itself
    (only theirs are read: a store may hold many unrelated studies)."""
    parents = db.parents()
    links: dict[str, set] = {n: set() for n in parents}
    for n, parent in parents.items():
        if parent in links:
            links[n].add(parent)
            links[parent].add(n)
    seen, todo = {name}, [name]
    while todo:
        for other in links.get(todo.pop(), ()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return [db.record(db.study_id(n)) for n in parents if n in seen and n != name]
