"""The store's schema: studies, trials, per-evaluation metrics and kept predictions, and probes
(measurements of a study's setup, e.g. throughput per batch size)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

STATUSES = ("pending", "running", "completed", "infeasible", "failed")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(orm.DeclarativeBase):
    pass


class Study(Base):
    """The playbook's tracking spreadsheet, one row per study (checklist item 68)."""

    __tablename__ = "studies"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(200), unique=True)
    config_path: orm.Mapped[str] = orm.mapped_column(sa.Text)
    config: orm.Mapped[dict] = orm.mapped_column(sa.JSON)
    config_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    notes: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    objective: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    mode: orm.Mapped[str] = orm.mapped_column(sa.String(3))
    algorithm: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    seed: orm.Mapped[int]
    num_trials: orm.Mapped[int]
    best_value: orm.Mapped[float | None]
    best_trial: orm.Mapped[int | None]
    command: orm.Mapped[str] = orm.mapped_column(sa.Text)
    git_commit: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    git_dirty: orm.Mapped[bool | None]
    # The repository of the study file itself (a researcher's own code), where it is one.
    study_git_commit: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    study_git_dirty: orm.Mapped[bool | None]
    versions: orm.Mapped[dict] = orm.mapped_column(sa.JSON)
    device_kind: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    executor: orm.Mapped[str] = orm.mapped_column(sa.String(50), default="sequential")
    executor_reason: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(default=now)
    updated_at: orm.Mapped[dt.datetime] = orm.mapped_column(default=now, onupdate=now)


class Trial(Base):
    """One hyperparameter configuration of a study and what became of it."""

    __tablename__ = "trials"
    __table_args__ = (sa.UniqueConstraint("study_id", "index"),)
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    study_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    index: orm.Mapped[int]
    params: orm.Mapped[dict] = orm.mapped_column(sa.JSON)
    status: orm.Mapped[str] = orm.mapped_column(sa.String(20), default="pending", index=True)
    worker: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
    # The running worker's lease: renewed every few seconds; once older than the lease, another
    # worker may reclaim the trial (its holder died) and resume it from its latest checkpoint.
    heartbeat_at: orm.Mapped[dt.datetime | None]
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(default=now)
    started_at: orm.Mapped[dt.datetime | None]
    finished_at: orm.Mapped[dt.datetime | None]
    duration_s: orm.Mapped[float | None]
    steps_run: orm.Mapped[int | None]
    best_step: orm.Mapped[int | None]
    best_value: orm.Mapped[float | None]
    checkpoint_dir: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    error: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    final_metrics: orm.Mapped[dict | None] = orm.mapped_column(sa.JSON)
    # Where a running trial is, for anyone watching (jaxplay.dashboard): its latest evaluated step,
    # when it was logged, and the training speed over the last period that compiled nothing.
    step: orm.Mapped[int | None]
    step_at: orm.Mapped[dt.datetime | None]
    steps_per_second: orm.Mapped[float | None]


class Metric(Base):
    """One metric value at one step of one trial: the training curves."""

    __tablename__ = "metrics"
    __table_args__ = (sa.Index("ix_metrics_trial_step", "trial_id", "step"),)
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    trial_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("trials.id", ondelete="CASCADE"))
    step: orm.Mapped[int]
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    value: orm.Mapped[float | None]


class Prediction(Base):
    """A trial's predictions on the first train.keep_predictions validation examples at one
    evaluation: {name: one value per example} as the workload's task gives them (for
    classification the predicted class, the label and the probability of the label)."""

    __tablename__ = "predictions"
    __table_args__ = (sa.UniqueConstraint("trial_id", "step"),)
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    trial_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("trials.id", ondelete="CASCADE"))
    step: orm.Mapped[int]
    values: orm.Mapped[dict] = orm.mapped_column(sa.JSON)


class Probe(Base):
    """A measurement of a study's setup that is not a trial: e.g. the batch-size probe's
    throughput per batch size (jaxplay.tuning.batch_size). The study's report shows the newest
    that measured its model and optimizer, or marks the newest stale (analysis.throughput)."""

    __tablename__ = "probes"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    study: orm.Mapped[str] = orm.mapped_column(sa.String(200), index=True)
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    config: orm.Mapped[dict] = orm.mapped_column(sa.JSON)
    result: orm.Mapped[dict] = orm.mapped_column(sa.JSON)
    device_kind: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    command: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(default=now)
