"""Experiment tracking in SQL: studies, trials and per-step metrics (playbook: "Untracked
experiments might as well not exist").

SQLite file by default (`<workdir>/jaxplay.db`), any SQLAlchemy URL otherwise (PostgreSQL for
many hosts). Every write is its own short transaction, so a crash, a NaN or a Ctrl-C leaves the
finished trials and their metrics intact; trial claiming is a conditional UPDATE, so several
workers can share one study.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import sys
import time
from collections.abc import Callable

import sqlalchemy as sa
import tenacity
from sqlalchemy import orm

from jaxplay.errors import ConfigError, StoreError, StoreUnavailable, describe
from jaxplay.store import engine as engine_lib
from jaxplay.store.tables import STATUSES, Base, Metric, Prediction, Probe, Study, Trial, now
from jaxplay.store.urls import DB_NAME, check_url, default_url, redact, url_for

__all__ = [
    "DB_NAME", "STATUSES", "Base", "Metric", "Prediction", "Probe", "Store", "Study", "Trial",
    "check_url",
    "default_url", "redact", "url_for",
]  # fmt: skip


def _trial_dict(t: Trial, shared_s: float | None = None) -> dict:
    return {
        "index": t.index,
        "status": t.status,
        "params": t.params,
        "best_value": t.best_value,
        "best_step": t.best_step,
        "steps_run": t.steps_run,
        "duration_s": t.duration_s,
        # Its share of its worker's wall-clock time (see _shared_seconds): duration_s split with
        # the trials stacked beside it.
        "shared_s": shared_s,
        "checkpoint_dir": t.checkpoint_dir,
        "error": t.error,
        "worker": t.worker,
        "final_metrics": t.final_metrics,
        "started_at": _when(t.started_at),
        "finished_at": _when(t.finished_at),
        "step": t.step,
        "step_at": _when(t.step_at),
        "steps_per_second": t.steps_per_second,
    }


# The probe kind of a round's launch decision (jaxplay.tuning.rounds): its study's goal, trial,
# launched or rejected, and why.
DECISION = "decision"

# Nullable columns added after the first schema; an older store gains them when opened.
ADDED_COLUMNS = {
    "trials": {"heartbeat_at", "step", "step_at", "steps_per_second"},
    "studies": {"study_git_commit", "study_git_dirty"},
}


def _resilient(method):
    """A Store method whose database work is retried through Store._call."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return self._call(method, self, *args, **kwargs)

    return wrapper


class Store:
    """Reads and writes studies in one database.

    Every call retries passing faults (a restarting server, a dropped connection, a held lock) with
    backoff for up to $JAXPLAY_STORE_RETRY_SECS (120 s), then raises StoreUnavailable naming the
    store and the fix. `readonly`: the caller only reads (studies show, reports), so a SQLite file
    on read-only storage is opened without writing to it."""

    def __init__(self, url: str, *, readonly: bool = False, never_writes: bool = False, log=None):
        check_url(url)  # a URL SQLAlchemy cannot parse is refused without being shown
        self.url = redact(url)  # for messages only (no password): connect with the URL you passed
        self.retry_s = engine_lib.retry_seconds()
        self.log = log or _stderr
        self._file = engine_lib.sqlite_file(url)
        if readonly and self._file is not None and not self._file.exists():
            raise StoreError(f"store {self.url}: {self._file} does not exist")
        # A reader opens a SQLite file it cannot write read-only; one it can write normally (an
        # older store then gains its new columns as before).
        # `never_writes` (the dashboard): the database itself refuses writes, whatever the caller
        # does: SQLite opens the file read-only, PostgreSQL runs read-only transactions.
        self.readonly = never_writes or (
            readonly and self._file is not None and not _writable(self._file)
        )
        self.engine = engine_lib.create(url, readonly=self.readonly)
        self._identity = None
        self.session = orm.sessionmaker(self.engine, expire_on_commit=False)
        self._call(self._open, retry_s=min(self.retry_s, engine_lib.OPEN_RETRY_S))
        self._identity = engine_lib.FileIdentity.of(self._file)

    def _open(self) -> None:
        if not self.readonly:
            # Several workers may open a new store at once: the losers of the CREATE TABLE race
            # see the tables on the next try.
            _first_writer_wins(
                lambda: Base.metadata.create_all(self.engine),
                errors=(sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError),
            )
        self._check_schema()

    def _call(self, fn, *args, retry_s: float | None = None, **kwargs):
        """fn(*args, **kwargs), retried while it fails with a passing fault; a SQLite file that is
        no longer the one opened stops it (what it would write would be lost)."""
        started = time.monotonic()
        budget = self.retry_s if retry_s is None else retry_s

        def attempt():
            if self._identity is not None:
                self._identity.check(self.url)
            return fn(*args, **kwargs)

        def before_sleep(state):
            if state.attempt_number == 1:
                self.log(
                    f"store {self.url}: {describe(state.outcome.exception())}; "
                    f"retrying for up to {budget:.0f} s"
                )

        try:
            return tenacity.Retrying(
                retry=tenacity.retry_if_exception(engine_lib.transient),
                wait=tenacity.wait_random_exponential(multiplier=0.2, max=10),
                stop=tenacity.stop_after_delay(budget),
                before_sleep=before_sleep,
                reraise=True,
            )(attempt)
        except sa.exc.IntegrityError:
            raise  # a unique row another worker wrote first: the caller decides
        except sa.exc.DBAPIError as e:
            waited = time.monotonic() - started
            raise engine_lib.unavailable(self.url, e, waited, self._file) from e

    def _check_schema(self) -> None:
        if self.readonly:
            return  # a reader uses the columns it finds; writing them is a writer's job
        # create_all adds missing tables, never missing columns: a store written by an older
        # jaxplay would otherwise fail later with a bare "no such column" in the middle of a study.
        inspector = sa.inspect(self.engine)
        for table in Base.metadata.sorted_tables:
            missing = {c.name for c in table.columns} - {
                c["name"] for c in inspector.get_columns(table.name)
            }
            for name in sorted(missing & ADDED_COLUMNS.get(table.name, set())):
                # Columns added since the first schema are nullable: add them in place.
                column_type = table.columns[name].type.compile(dialect=self.engine.dialect)
                with self.engine.begin() as connection:
                    connection.execute(
                        sa.text(f"ALTER TABLE {table.name} ADD COLUMN {name} {column_type}")
                    )
                missing.discard(name)
            if missing:
                self.engine.dispose()
                raise StoreError(
                    f"{self.url}: table {table.name!r} lacks columns {sorted(missing)}; it was "
                    "written by an older jaxplay. Keep it for reading with that version and use "
                    "a new --workdir or --store for new studies"
                )

    def close(self) -> None:
        """Releases the database connections."""
        self.engine.dispose()

    # -- studies ---------------------------------------------------------------------------

    @_resilient
    def open_study(self, name: str, config_hash: str, **fields) -> int:
        """Returns the id of study `name`, creating it; refuses another config under one name."""
        return _first_writer_wins(lambda: self._open_study(name, config_hash, **fields))

    def _open_study(self, name: str, config_hash: str, **fields) -> int:
        with self.session.begin() as s:
            study = s.scalar(sa.select(Study).where(Study.name == name))
            if study is None:
                # Another name only: a worker that created this very study a moment ago is no
                # twin (the insert below then collides and the retry finds its study).
                same = sa.func.lower(Study.name) == name.lower()
                twin = s.scalar(sa.select(Study.name).where(same, Study.name != name))
                if twin is not None:
                    raise StoreError(
                        f"study.name: {name!r} differs from the store's study {twin!r} only in "
                        "case; on a case-insensitive filesystem (macOS, Windows) their folders "
                        "would be one: choose another name"
                    )
                study = Study(name=name, config_hash=config_hash, **fields)
                s.add(study)
                s.flush()
                return study.id
            if study.config_hash != config_hash:
                changed = _changed_paths(study.config or {}, fields.get("config") or {})
                shown = ", ".join(changed[:3]) + (
                    f" and {len(changed) - 3} more" if len(changed) > 3 else ""
                )
                raise StoreError(
                    f"study {name!r} already exists in {self.url} with a different config"
                    + (f" ({shown})" if shown else "")
                    + "; only study.num_trials and study.notes may change when continuing a "
                    "study: set a new study.name or use another --workdir"
                )
            if "num_trials" in fields:
                _leave_out_beyond(s, study, fields["num_trials"])
            # Continuing: the latest invocation's command, notes and trial count are the record.
            for key in (
                "num_trials",
                "notes",
                "command",
                "git_commit",
                "git_dirty",
                "study_git_commit",
                "study_git_dirty",
                "versions",
                "device_kind",
                "executor",
                "executor_reason",
                "config",
                "config_path",
            ):
                if key in fields:
                    setattr(study, key, fields[key])
            return study.id

    @_resilient
    def study_id(self, name: str | None = None) -> int:
        """The id of study `name`, or of the only study in the store."""
        with self.session() as s:
            rows = s.execute(sa.select(Study.id, Study.name)).all()
        if name is None:
            if len(rows) != 1:
                names = [r.name for r in rows]
                raise StoreError(f"the store holds {len(rows)} studies {names}; pass --study NAME")
            return rows[0].id
        for row in rows:
            if row.name == name:
                return row.id
        raise StoreError(f"no study named {name!r} in {self.url}; it has {[r.name for r in rows]}")

    @_resilient
    def has_study(self, name: str) -> bool:
        """Whether the store holds study `name`."""
        with self.session() as s:
            return s.scalar(sa.select(Study.id).where(Study.name == name)) is not None

    @_resilient
    def check_study(self, study_id: int) -> None:
        """Raises StoreUnavailable when the study's row is gone (its store was replaced or the
        study deleted while this command ran): nothing written since would be kept."""
        with self.session() as s:
            if s.get(Study, study_id) is None:
                raise StoreUnavailable(
                    f"store {self.url}: the study being run is no longer in it (the store was "
                    "replaced or the study deleted while this command ran); what happened since is "
                    "not recorded, so this run stops here"
                )

    @_resilient
    def study_names(self) -> list[str]:
        """Names of all studies in the store, oldest first."""
        with self.session() as s:
            return list(s.scalars(sa.select(Study.name).order_by(Study.id)))

    @_resilient
    def parents(self) -> dict[str, str | None]:
        """{study name: the name of the study it derives from (jaxplay.tuning), or None}, in one
        query of the configs (no trials)."""
        with self.session() as s:
            rows = s.execute(sa.select(Study.name, Study.config).order_by(Study.id)).all()
        return {
            name: (((config or {}).get("study") or {}).get("parent") or {}).get("study")
            for name, config in rows
        }

    @_resilient
    def overview(self) -> list[dict]:
        """Every study in a few columns, oldest first, in two queries (no trials, no metrics):
        name, notes, objective, mode, best value and trial, status counts, parent study and
        lineage action, when it was created and last changed (its row, a trial's start, lease
        renewal or end), and whether it holds the incumbent (`incumbent`)."""
        with self.session() as s:
            studies = s.scalars(sa.select(Study).order_by(Study.id)).all()
            per_status = s.execute(
                sa.select(
                    Trial.study_id,
                    Trial.status,
                    sa.func.count(),
                    sa.func.max(Trial.heartbeat_at),
                    sa.func.max(Trial.finished_at),
                ).group_by(Trial.study_id, Trial.status)
            ).all()
        incumbent = self.incumbent()
        counts: dict[int, dict] = {}
        latest: dict[int, dt.datetime] = {}
        for study_id, status, n, beat, finished in per_status:
            counts.setdefault(study_id, {})[status] = n
            moments = [m for m in (latest.get(study_id), beat, finished) if m is not None]
            if moments:
                latest[study_id] = max(moments)
        rows = []
        for st in studies:
            parent = ((st.config or {}).get("study") or {}).get("parent") or {}
            updated = max(st.updated_at, latest.get(st.id, st.updated_at))
            rows.append(
                {
                    "name": st.name,
                    "notes": st.notes,
                    "objective": st.objective,
                    "mode": st.mode,
                    "algorithm": st.algorithm,
                    "num_trials": st.num_trials,
                    "best_value": st.best_value,
                    "best_trial": st.best_trial,
                    "status_counts": {k: counts.get(st.id, {}).get(k, 0) for k in STATUSES},
                    "parent": parent.get("study"),
                    "action": parent.get("action"),
                    "created_at": _when(st.created_at),
                    "updated_at": _when(updated),
                    # Holds the store's incumbent (the latest launched round's configuration).
                    "incumbent": incumbent is not None and incumbent["study"] == st.name,
                }
            )
        return rows

    @_resilient
    def version(self, study_id: int) -> str:
        """A token that changes whenever what a study shows changes (a trial's status or speed, a
        new evaluation, its best): a watcher polls it and reloads the study only then."""
        with self.session() as s:
            metrics = s.execute(
                sa.select(sa.func.count(Metric.id), sa.func.max(Metric.id))
                .join(Trial, Metric.trial_id == Trial.id)
                .where(Trial.study_id == study_id)
            ).one()
            trials = s.execute(
                sa.select(
                    Trial.status,
                    sa.func.count(),
                    sa.func.max(Trial.step_at),
                    sa.func.max(Trial.finished_at),
                )
                .where(Trial.study_id == study_id)
                .group_by(Trial.status)
                .order_by(Trial.status)
            ).all()
            study = s.execute(
                sa.select(Study.updated_at, Study.best_value).where(Study.id == study_id)
            ).one_or_none()
        return repr(
            (tuple(metrics), [tuple(map(str, row)) for row in trials], study and tuple(study))
        )

    @_resilient
    def update_best(self, study_id: int) -> None:
        """Recomputes the study's best value from its completed trials."""
        with self.session.begin() as s:
            study = s.get(Study, study_id)
            best = s.execute(
                sa.select(Trial.index, Trial.best_value)
                .where(
                    Trial.study_id == study_id,
                    Trial.status == "completed",
                    Trial.best_value.is_not(None),
                )
                .order_by(
                    Trial.best_value.asc() if study.mode == "min" else Trial.best_value.desc()
                )
                .limit(1)
            ).first()
            study.best_trial, study.best_value = (
                (best.index, best.best_value) if best else (None, None)
            )

    @_resilient
    def record(self, study_id: int) -> dict:
        """The study and its trials as plain data (what `studies show --json` prints)."""
        with self.session() as s:
            study = s.get(Study, study_id)
            trials = s.scalars(
                sa.select(Trial).where(Trial.study_id == study_id).order_by(Trial.index)
            ).all()
            counts = {status: 0 for status in STATUSES}
            for t in trials:
                counts[t.status] += 1
            shared = _shared_seconds(trials)
            return {
                "name": study.name,
                "config_path": study.config_path,
                "notes": study.notes,
                "objective": study.objective,
                "mode": study.mode,
                "algorithm": study.algorithm,
                "seed": study.seed,
                "num_trials": study.num_trials,
                "status_counts": counts,
                "best_value": study.best_value,
                "best_trial": study.best_trial,
                "command": study.command,
                "git_commit": study.git_commit,
                "git_dirty": study.git_dirty,
                "study_git_commit": study.study_git_commit,
                "study_git_dirty": study.study_git_dirty,
                "versions": study.versions,
                "device_kind": study.device_kind,
                "executor": study.executor,
                "executor_reason": study.executor_reason,
                "created_at": _when(study.created_at),
                "updated_at": _when(study.updated_at),
                "config": study.config,
                "trials": [_trial_dict(t, shared.get(t.id)) for t in trials],
            }

    # -- trials ----------------------------------------------------------------------------

    @_resilient
    def add_trials(self, study_id: int, params: list[dict], start: int = 0) -> int:
        """Adds trials start.. with these params, skipping indices that exist; returns how many
        were new."""
        return _first_writer_wins(lambda: self._add_trials(study_id, params, start))

    def _add_trials(self, study_id: int, params: list[dict], start: int) -> int:
        with self.session.begin() as s:
            existing = dict(
                s.execute(
                    sa.select(Trial.index, Trial.params).where(Trial.study_id == study_id)
                ).all()
            )
            new = []
            for i, p in enumerate(params, start):
                if i in existing:
                    if existing[i] != p:
                        raise StoreError(
                            f"trial {i} is recorded with params {existing[i]} but the designer now "
                            f"gives {p}; the study's search space or seed changed: "
                            "use a new study.name"
                        )
                    continue
                new.append(Trial(study_id=study_id, index=i, params=p))
            s.add_all(new)
            return len(new)

    @_resilient
    def append_trials(self, study_id: int, params: list[dict], start: int) -> bool:
        """Adds trials start.. when the study has exactly `start` trials (an adaptive designer's
        next suggestions); False when another worker added trials first (ask the designer again)."""
        try:
            with self.session.begin() as s:
                count = s.scalar(
                    sa.select(sa.func.count()).select_from(Trial).where(Trial.study_id == study_id)
                )
                if count != start:
                    return False
                s.add_all(
                    Trial(study_id=study_id, index=i, params=p) for i, p in enumerate(params, start)
                )
            return True
        except sa.exc.IntegrityError:  # a concurrent worker inserted the same index
            return False

    @_resilient
    def reset_running(self, study_id: int, is_dead: Callable[[str], bool]) -> list[int]:
        """Puts trials whose worker `is_dead(worker)` (a crashed process) back to 'pending' at once,
        without waiting for their lease to expire; returns their indices."""
        with self.session.begin() as s:
            rows = s.scalars(
                sa.select(Trial).where(Trial.study_id == study_id, Trial.status == "running")
            ).all()
            dead = [t for t in rows if t.worker and is_dead(t.worker)]
            for t in dead:
                t.status, t.worker = "pending", None
            return [t.index for t in dead]

    @_resilient
    def pending(self, study_id: int, start: int, end: int) -> list[int]:
        """Indices start <= i < end of the study's pending trials, in order."""
        with self.session() as s:
            return list(
                s.scalars(
                    sa.select(Trial.index)
                    .where(Trial.study_id == study_id, Trial.status == "pending")
                    .where(Trial.index >= start, Trial.index < end)
                    .order_by(Trial.index)
                )
            )

    @_resilient
    def requeue_failed(self, study_id: int) -> list[int]:
        """Puts the study's failed trials back to 'pending' (each resumes from its latest whole
        checkpoint, if it has one); returns their indices."""
        with self.session.begin() as s:
            rows = s.scalars(
                sa.select(Trial).where(Trial.study_id == study_id, Trial.status == "failed")
            ).all()
            for t in rows:
                t.status, t.worker, t.error, t.finished_at = "pending", None, None, None
            return sorted(t.index for t in rows)

    @_resilient
    def held_elsewhere(self, study_id: int, worker: str) -> list[dict]:
        """The study's running trials held by other workers: [{index, worker, lease_age_s}]."""
        with self.session() as s:
            rows = s.execute(
                sa.select(Trial.index, Trial.worker, Trial.heartbeat_at)
                .where(Trial.study_id == study_id, Trial.status == "running")
                .where(sa.or_(Trial.worker.is_(None), Trial.worker != worker))
                .order_by(Trial.index)
            ).all()
        current = now()
        return [
            {
                "index": index,
                "worker": holder,
                "lease_age_s": (current - beat).total_seconds() if beat else None,
            }
            for index, holder, beat in rows
        ]

    @_resilient
    def claim(
        self,
        study_id: int,
        worker: str,
        max_index: int | None = None,
        indices: list[int] | None = None,
        lease_s: float = 60.0,
    ) -> tuple[int, int, dict] | None:
        """Marks the lowest claimable trial (below `max_index`, among `indices` if given) as
        running for `worker`; returns (id, index, params) or None. Claimable: pending, or running
        under a lease not renewed for `lease_s` seconds (its worker died; it resumes from its
        checkpoint)."""
        while True:
            cutoff = now() - dt.timedelta(seconds=lease_s)
            claimable = sa.or_(
                Trial.status == "pending",
                sa.and_(
                    Trial.status == "running",
                    sa.or_(Trial.heartbeat_at.is_(None), Trial.heartbeat_at < cutoff),
                ),
            )
            with self.session.begin() as s:
                query = sa.select(Trial.id, Trial.index, Trial.params).where(
                    Trial.study_id == study_id, claimable
                )
                if max_index is not None:
                    query = query.where(Trial.index < max_index)
                if indices is not None:
                    query = query.where(Trial.index.in_(indices))
                row = s.execute(query.order_by(Trial.index).limit(1)).first()
                if row is None:
                    return None
                # Conditional update: if another worker took it first, rowcount is 0; try the next.
                started = now()
                taken = s.execute(
                    sa.update(Trial)
                    .where(Trial.id == row.id, claimable)
                    .values(
                        status="running", worker=worker, started_at=started, heartbeat_at=started
                    )
                )
                if taken.rowcount == 1:
                    return row.id, row.index, row.params

    @_resilient
    def heartbeat(self, worker: str, trial_ids: list[int]) -> int:
        """Renews `worker`'s lease on its running trials; returns how many it still holds."""
        if not trial_ids:
            return 0
        with self.session.begin() as s:
            return _renew(s, trial_ids, worker)

    @_resilient
    def release(self, trial_id: int, worker: str | None = None) -> bool:
        """Returns an interrupted trial to 'pending' (its checkpoints let it resume). With `worker`,
        only while that worker still holds it; returns whether it did."""
        with self.session.begin() as s:
            return (
                s.execute(
                    sa.update(Trial)
                    .where(Trial.id == trial_id, *_held_by(worker))
                    .values(status="pending", worker=None)
                ).rowcount
                == 1
            )

    @_resilient
    def finish(self, trial_id: int, status: str, worker: str | None = None, **fields) -> bool:
        """Records a trial's outcome: status, best_step, best_value, error, ... With `worker`, only
        while that worker still holds the trial (a worker whose lease was taken over must not
        overwrite the new owner's result); returns whether it was recorded."""
        if status not in STATUSES:
            raise ValueError(f"unknown trial status {status!r}")
        values = dict(fields, status=status, finished_at=now())
        if values.get("final_metrics") is not None:
            values["final_metrics"] = {k: _finite(v) for k, v in values["final_metrics"].items()}
        with self.session.begin() as s:
            started = s.scalar(sa.select(Trial.started_at).where(Trial.id == trial_id))
            if started is not None:
                values["duration_s"] = (values["finished_at"] - started).total_seconds()
            # One conditional UPDATE: atomic against a concurrent reclaim on SQLite and PostgreSQL.
            return (
                s.execute(
                    sa.update(Trial).where(Trial.id == trial_id, *_held_by(worker)).values(**values)
                ).rowcount
                == 1
            )

    @_resilient
    def set_checkpoint_dir(self, trial_id: int, path: str) -> None:
        """Records where a trial's checkpoints live (known before it finishes)."""
        with self.session.begin() as s:
            s.get(Trial, trial_id).checkpoint_dir = path

    # -- probes ----------------------------------------------------------------------------

    @_resilient
    def add_probe(self, study: str, kind: str, **fields) -> None:
        """Records a measurement of study `study`'s setup (config, result, device_kind, command)."""
        with self.session.begin() as s:
            s.add(Probe(study=study, kind=kind, **fields))

    @_resilient
    def probes(self, study: str | None, kind: str | None = None) -> list[dict]:
        """The probes recorded for study `study` (None: for every study, e.g. to reuse another
        study's batch-size probe of the same model), newest first."""
        query = sa.select(Probe)
        if study is not None:
            query = query.where(Probe.study == study)
        if kind is not None:
            query = query.where(Probe.kind == kind)
        with self.session() as s:
            rows = s.scalars(query.order_by(Probe.id.desc())).all()
            return [
                {"kind": p.kind, "config": p.config, "result": p.result,
                 "device_kind": p.device_kind, "command": p.command,
                 "created_at": _when(p.created_at), "study": p.study}
                for p in rows
            ]  # fmt: skip

    @_resilient
    def decisions(self) -> list[dict]:
        """Every round's launch decision in the store (probes of kind 'decision', written by
        jaxplay.tuning.rounds), newest first, each with its study's name."""
        query = sa.select(Probe).where(Probe.kind == DECISION).order_by(Probe.id.desc())
        with self.session() as s:
            return [
                {"study": p.study, **(p.config or {}), "result": p.result,
                 "command": p.command, "created_at": _when(p.created_at)}
                for p in s.scalars(query).all()
            ]  # fmt: skip

    def incumbent(self) -> dict | None:
        """The launched configuration: the store's latest decision that launched (study, trial,
        goal, why, result, created_at), or None before the first launch."""
        return next((d for d in self.decisions() if d.get("launched")), None)

    # -- metrics ---------------------------------------------------------------------------

    @_resilient
    def log_metrics(
        self, trial_id: int, step: int, metrics: dict[str, float], worker: str | None = None
    ) -> bool:
        """Appends one evaluation's metrics; NaN/inf are stored as NULL (SQL has no NaN). With
        `worker`, the same transaction renews its lease and writes nothing if another worker has
        taken the trial over; returns whether the metrics were written."""
        rows = [
            {"trial_id": trial_id, "step": step, "name": k, "value": _finite(v)}
            for k, v in metrics.items()
        ]
        with self.session.begin() as s:
            if worker is not None and _renew(s, [trial_id], worker) != 1:
                return False
            # A retried call whose first commit succeeded unseen must not log the step twice.
            s.execute(
                sa.delete(Metric).where(
                    Metric.trial_id == trial_id, Metric.step == step, Metric.name.in_(metrics)
                )
            )
            s.execute(sa.insert(Metric), rows)
            _note_progress(s.get(Trial, trial_id), step)
            return True

    @_resilient
    def log_steps(
        self, trial_id: int, last_step: int, series: dict, worker: str | None = None
    ) -> bool:
        """Appends per-step values of one period ({name: values of steps last_step - n + 1 ..
        last_step}), e.g. every step's training loss for the early-instability probe; fenced by
        `worker`'s lease like log_metrics. NaN/inf are stored as NULL."""
        rows = [
            {"trial_id": trial_id, "step": last_step - len(values) + 1 + i, "name": name,
             "value": _finite(float(v))}
            for name, values in series.items()
            for i, v in enumerate(values)
        ]  # fmt: skip
        if not rows:
            return True
        first = min(r["step"] for r in rows)
        with self.session.begin() as s:
            if worker is not None and _renew(s, [trial_id], worker) != 1:
                return False
            s.execute(
                sa.delete(Metric).where(
                    Metric.trial_id == trial_id,
                    Metric.step.between(first, last_step),
                    Metric.name.in_(series),
                )
            )
            s.execute(sa.insert(Metric), rows)
            return True

    @_resilient
    def log_predictions(
        self, trial_id: int, step: int, values: dict, worker: str | None = None
    ) -> bool:
        """Records one evaluation's kept predictions ({name: one value per example}, JSON: lists,
        NaN/inf as None), replacing any of that step; fenced by `worker`'s lease like
        log_metrics."""
        row = {"trial_id": trial_id, "step": step, "values": _json_values(values)}
        with self.session.begin() as s:
            if worker is not None and _renew(s, [trial_id], worker) != 1:
                return False
            # A retried call whose first commit succeeded unseen must not log the step twice.
            s.execute(
                sa.delete(Prediction).where(
                    Prediction.trial_id == trial_id, Prediction.step == step
                )
            )
            s.execute(sa.insert(Prediction), [row])
            return True

    @_resilient
    def predictions(self, study_id: int) -> list[dict]:
        """Every kept prediction of a study's trials, by trial and step: [{'trial', 'step',
        name: values per example, ...}]; [] for a store older than the predictions table."""
        with self.session() as s:
            if not sa.inspect(s.connection()).has_table(Prediction.__tablename__):
                return []  # an older store opened read-only: nothing was kept there
            rows = s.execute(
                sa.select(Trial.index, Prediction.step, Prediction.values)
                .join(Prediction, Prediction.trial_id == Trial.id)
                .where(Trial.study_id == study_id)
                .order_by(Trial.index, Prediction.step)
            ).all()
        return [{"trial": index, "step": step, **values} for index, step, values in rows]

    @_resilient
    def drop_metrics_after(self, trial_id: int, step: int) -> None:
        """Deletes metrics and kept predictions past `step` (a resumed trial logs them again)."""
        with self.session.begin() as s:
            s.execute(sa.delete(Metric).where(Metric.trial_id == trial_id, Metric.step > step))
            s.execute(
                sa.delete(Prediction).where(Prediction.trial_id == trial_id, Prediction.step > step)
            )
            # Its next period compiles again: no speed until one that does not has been timed.
            s.execute(
                sa.update(Trial)
                .where(Trial.id == trial_id)
                .values(step=max(step, 0), step_at=None, steps_per_second=None)
            )

    @_resilient
    def study_curves(self, study_id: int) -> dict[int, dict[str, list[tuple[int, float | None]]]]:
        """Every trial's metrics in one query: {trial index: {name: [(step, value), ...]}}."""
        with self.session() as s:
            rows = s.execute(
                sa.select(Trial.index, Metric.name, Metric.step, Metric.value)
                .join(Metric, Metric.trial_id == Trial.id)
                .where(Trial.study_id == study_id)
                .order_by(Trial.index, Metric.step)
            ).all()
        out: dict[int, dict] = {}
        for index, name, step, value in rows:
            out.setdefault(index, {}).setdefault(name, []).append((step, value))
        return out

    @_resilient
    def curves(self, study_id: int, index: int) -> dict[str, list[tuple[int, float | None]]]:
        """A trial's metrics as {name: [(step, value), ...]} sorted by step."""
        with self.session() as s:
            trial_id = s.scalar(
                sa.select(Trial.id).where(Trial.study_id == study_id, Trial.index == index)
            )
            rows = s.execute(
                sa.select(Metric.name, Metric.step, Metric.value)
                .where(Metric.trial_id == trial_id)
                .order_by(Metric.step)
            ).all()
        out: dict[str, list] = {}
        for name, step, value in rows:
            out.setdefault(name, []).append((step, value))
        return out


def _leave_out_beyond(session, study: Study, num_trials: int) -> None:
    """A study continued with fewer trials: the trials past the new count that never started are
    deleted (they are no longer part of it, rather than pending for ever); one that started
    (it ran, or holds a checkpoint) refuses the change, before anything is recorded."""
    beyond = session.scalars(
        sa.select(Trial).where(Trial.study_id == study.id, Trial.index >= num_trials)
    ).all()
    started = sorted(t.index for t in beyond if t.status != "pending" or t.started_at)
    if started:
        raise ConfigError(
            f"study.num_trials: {num_trials} would leave out trial(s) {started} of study "
            f"{study.name!r}, which already ran; use study.num_trials >= {started[-1] + 1} (or "
            "a new study.name to start another study)"
        )
    for t in beyond:
        session.delete(t)


def _changed_paths(old: dict, new: dict, prefix: str = "") -> list[str]:
    """'path: old -> new' for each leaf of two config trees that differs (study.num_trials and
    study.notes may change)."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        path = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_paths(a, b, f"{path}.")
        elif a != b and path not in ("study.num_trials", "study.notes"):
            out.append(f"{path}: {a!r} -> {b!r}")
    return out


def _when(moment: dt.datetime | None) -> str | None:
    """A stored time (UTC, kept without a zone) as ISO 8601 with its zone, to the second."""
    if moment is None:
        return None
    return moment.replace(tzinfo=dt.UTC, microsecond=0).isoformat()


def _writable(file) -> bool:
    return os.access(file, os.W_OK) and os.access(file.parent, os.W_OK)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _first_writer_wins(write, attempts: int = 5, errors=(sa.exc.IntegrityError,)):
    """Runs `write` again when a concurrent worker created the same unique row or table first
    (several workers starting one study at once): the retry sees it and goes on from it."""
    for attempt in range(attempts):
        try:
            return write()
        except errors:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _held_by(worker: str | None) -> tuple:
    """WHERE clauses: the trial is running under `worker` (none for worker=None)."""
    return () if worker is None else (Trial.worker == worker, Trial.status == "running")


def _renew(session, trial_ids: list[int], worker: str) -> int:
    """Renews `worker`'s lease on those of `trial_ids` it still holds; returns how many."""
    return session.execute(
        sa.update(Trial)
        .where(Trial.id.in_(trial_ids), *_held_by(worker))
        .values(heartbeat_at=now())
    ).rowcount


def _note_progress(trial: Trial | None, step: int) -> None:
    """Records a trial's latest evaluated step and its training speed since the previous one. A
    period that began at step 0 or right after a (re)start (step_at cleared) included compiling
    the program, so it gives no speed: the speed waits for the next period, as the progress
    lines do."""
    if trial is None:
        return
    at = now()
    if trial.step_at is not None and trial.step and step > trial.step:
        seconds = (at - trial.step_at).total_seconds()
        if seconds > 0:
            trial.steps_per_second = (step - trial.step) / seconds
    trial.step, trial.step_at = step, at


def _json_values(values: dict) -> dict:
    """Per-example arrays as JSON lists; NaN/inf become None (JSON has no NaN)."""

    def plain(v):
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v if not isinstance(v, float) else _finite(v)

    return {k: plain(v.tolist() if hasattr(v, "tolist") else list(v)) for k, v in values.items()}


def _shared_seconds(trials: list[Trial]) -> dict[int, float]:
    """Each finished trial's share of its worker's wall-clock time, by trial id: while a worker
    holds several trials at once (a stack of K trains as one vmapped program) every moment is
    split equally among them, so a stack's trials get 1/K of its time each and a worker's trials
    add up to the time it spent training. Exact times are used here: the record shows them to the
    second, too coarse to tell a stack from the next one. A trial without a worker is alone."""
    by_worker: dict = {}
    out = {}
    for t in trials:
        if t.started_at is None or t.finished_at is None:
            continue
        if t.finished_at <= t.started_at:
            out[t.id] = 0.0
        else:
            by_worker.setdefault(t.worker or ("alone", t.id), []).append(t)
    for group in by_worker.values():
        # C(x) = the integral of dt / (trials held at t) up to x; a trial's share is
        # C(finish) - C(start). A finish sorts before a start at the same instant.
        events = sorted(
            [(t.started_at, 1, t) for t in group] + [(t.finished_at, 0, t) for t in group],
            key=lambda e: (e[0], e[1]),
        )
        held, clock, last, start_clock = 0, 0.0, None, {}
        for moment, starts, t in events:
            if held and last is not None:
                clock += (moment - last).total_seconds() / held
            last = moment
            if starts:
                held += 1
                start_clock[t.id] = clock
            else:
                held -= 1
                out[t.id] = clock - start_clock[t.id]
    return out


def _finite(v):
    # SQL and JSON have no NaN/inf: store them as NULL (the trial's status and error say why).
    return float(v) if v is not None and math.isfinite(v) else None
