"""orbax checkpoints of one trial: the best N by the study objective plus the latest for resume.

Writing is deferred: a state that enters the best N is copied to host memory, and the copies are
written together when the host loop says a write is due (every `train.checkpoint_every_secs`, at
the end, or on Ctrl-C). A short trial whose objective improves at every evaluation then writes ~N
checkpoints instead of one per evaluation: an orbax save costs enough CPU that writing every
evaluation made a small trial measurably slower than a bare loop (scripts/bench_trainer.py).

When the storage fails (a full disk, a lost mount) a write raises CheckpointWriteError and a read
CheckpointReadError: the machine failed, not the trial, which resumes once it is fixed. orbax
writes in the background, so a failed write surfaces at the next save, wait or close: each of them
is wrapped. A checkpoint whose content cannot be restored is another matter: the caller sets it
aside (`set_aside`) and resumes from an earlier one (jaxplay.train.trial).
"""

from __future__ import annotations

import contextlib
import errno
import pathlib
import re

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from jaxplay import paths
from jaxplay.errors import CheckpointReadError, CheckpointWriteError, EnvironmentFault, describe


class TrialCheckpoints:
    """Keeps the `keep_best` best checkpoints by objective and the latest one, across restarts."""

    def __init__(
        self,
        directory: str | pathlib.Path,
        *,
        keep_best: int,
        mode: str,
    ):
        self.directory = paths.folder(directory)
        self.keep_best, self.mode = keep_best, mode
        self.top: list[tuple[float, int]] = []  # (objective, step) of the best N so far, best first
        self._pending: dict[int, tuple[object, float]] = {}  # step -> (host state, objective)
        self._last_saved: int | None = None
        self._writing: int | None = None  # the step whose background write may still fail
        # What was set aside while opening (a step whose metrics orbax cannot read), for the
        # caller to report.
        self.notes: list[str] = []
        objective = lambda metrics: metrics["objective"]  # noqa: E731
        # max_to_keep + best_fn would delete the newest checkpoints and lose resume state; a
        # preservation policy keeps both sets. best_fn is still needed: without it orbax does not
        # write the metrics and forgets which checkpoints were best after a restart.
        policy = pp.AnyPreservationPolicy(
            [
                _NewestResumable(),
                pp.BestN(get_metric_fn=objective, reverse=(mode == "min"), n=keep_best),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            best_fn=objective,
            best_mode=mode,
            preservation_policy=policy,
            # Async: a trial's final writes overlap the next trial's start (a study of many short
            # trials measured faster this way: scripts/bench_batched.py).
            enable_async_checkpointing=True,
            create=True,
            # A kill mid-save leaves a '<step>.orbax-checkpoint-tmp' folder: never read, removed.
            cleanup_tmp_directories=True,
        )
        self.manager = self._open(options)

    def _open(self, options) -> ocp.CheckpointManager:
        """orbax's manager of the folder. It reads every step's metrics as it opens, so one
        unreadable metrics file would stop the trial from ever opening its checkpoints again: such
        a step is set aside (noted in `notes`) and the folder opened without it."""
        with self._storage_errors(CheckpointReadError, "open the checkpoints", reading=True):
            try:
                return ocp.CheckpointManager(self.directory, options=options)
            except Exception as error:
                unreadable = None if storage_failure(error) else self._unreadable_metrics()
                if not unreadable:
                    raise
            for step, reason in unreadable:
                aside = self._move_aside(step)
                self.notes.append(
                    f"checkpoint step {step} in {self.directory} cannot be read ({reason}): "
                    f"moved it to {aside}"
                )
            return ocp.CheckpointManager(self.directory, options=options)

    def _unreadable_metrics(self) -> list[tuple[int, str]]:
        """(step, why) of the steps whose metrics file orbax cannot read."""
        out = []
        for found in ocp.path.step.standard_name_format().find_all(self.directory):
            try:
                ocp.JsonCheckpointHandler(filename="metrics").restore(found.path / "metrics")
            except FileNotFoundError:
                continue  # orbax opens a step without metrics
            except Exception as error:
                if storage_failure(error, reading=True) is not None:
                    raise
                out.append((found.step, short_description(error)))
        return out

    def whole_steps(self) -> list[int]:
        """The steps on disk that hold the whole train state (resume points), oldest first."""
        return [s for s in self.manager.all_steps() if _is_whole(self.directory / str(s))]

    def latest_step(self) -> int | None:
        """The newest step that holds the whole train state (the resume point), or None.

        Not orbax's latest_step: a write of several checkpoints saves the older best ones as
        model-only and the newest one whole, last; a crash between them leaves a model-only
        checkpoint newest on disk, and the resume point is the whole one before it."""
        return max(self.whole_steps(), default=None)

    def best_step(self) -> int | None:
        """The saved step with the best objective, or None."""
        return self.manager.best_step()

    def all_steps(self) -> list[int]:
        """Steps that are on disk."""
        return list(self.manager.all_steps())

    def record(
        self, step: int, get_state, objective: float, meta: dict, *, write_now: bool = False
    ) -> None:
        """Called at every evaluation: keeps the state if it is among the best N, and writes
        every pending state when `write_now` (a write is due, or the trial ends or stops).

        `get_state()` returns the state (called only when it is needed: a trial of a batched group
        slices its member out of the stack). `meta` (JSON) is saved with each checkpoint; it gets
        this object's `top` list so a resumed trial knows which values it has to beat. Saves are
        collective across the hosts of a multi-host job: every host must pass the same write_now.
        """
        sign = 1.0 if self.mode == "min" else -1.0
        # Strictly better than the N-th best: a tie does not displace an earlier checkpoint.
        if len(self.top) < self.keep_best or sign * objective < sign * self.top[-1][0]:
            self.top = sorted(self.top + [(objective, step)], key=lambda t: sign * t[0])[
                : self.keep_best
            ]
            self._pending[step] = (jax.device_get(get_state()), objective)
        kept = {s for _, s in self.top}
        self._pending = {s: v for s, v in self._pending.items() if s in kept}
        if write_now:
            self.flush(meta, latest=(step, get_state, objective))

    def flush(self, meta: dict, latest: tuple | None = None) -> None:
        """Writes the pending best states, and `latest` = (step, get_state, objective), the resume
        point."""
        meta = dict(meta, top=[list(t) for t in self.top])
        newest = max(self._pending) if self._pending else None
        if latest is not None and latest[0] not in self._pending and latest[0] != self._last_saved:
            newest = latest[0]
        for step in sorted(self._pending):
            # Only the newest checkpoint is a resume point: older best ones keep just the params.
            self.save(
                step, self._pending[step][0], self._pending[step][1], meta, full=step == newest
            )
        if newest is not None and newest not in self._pending:
            step, get_state, objective = latest
            self.save(step, get_state(), objective, meta)
        self._pending.clear()

    def restore_top(self, meta: dict) -> None:
        """Resumes the best-N bookkeeping from a restored checkpoint's meta. Only steps still on
        disk: one set aside as unrestorable must not hold a place among the best N that no
        checkpoint fills."""
        on_disk = set(self.manager.all_steps())
        self.top = [tuple(t) for t in meta.get("top", []) if t[1] in on_disk]

    def save(self, step: int, state, objective: float, meta: dict, *, full: bool = True) -> None:
        """Saves `state` (or, `full=False`, only the model: its params and batch-norm statistics,
        a third of the arrays of an Adam state, and each array costs orbax time) with its
        objective and a JSON `meta` record."""
        self._last_saved = step
        item = (
            {"state": ocp.args.StandardSave(state)}
            if full
            else {"model": ocp.args.StandardSave(_model(state))}
        )
        self.wait()  # the previous write's failure is reported as that step's
        with self._storage_errors(CheckpointWriteError, f"write checkpoint step {step}"):
            saved = self.manager.save(
                step,
                args=ocp.args.Composite(meta=ocp.args.JsonSave(meta), **item),
                # orbax needs Python floats here; "resumable" marks a whole train state
                metrics={"objective": float(objective), "resumable": float(full)},
            )
        if saved:  # orbax skips a step at or below the newest on disk
            self._writing = step

    def wait(self) -> None:
        """Waits for the background write; CheckpointWriteError if it failed."""
        step = "a checkpoint" if self._writing is None else f"checkpoint step {self._writing}"
        with self._storage_errors(CheckpointWriteError, f"write {step}"):
            self.manager.wait_until_finished()
        self._writing = None

    def restore(self, step: int, abstract_state):
        """Returns (state, meta) saved at `step`; `abstract_state` comes from jax.eval_shape.
        CheckpointReadError when the storage fails; a damaged checkpoint raises what orbax
        raises (see jaxplay.train.trial for what is done then)."""
        self.wait()
        with self._storage_errors(
            CheckpointReadError, f"read checkpoint step {step}", reading=True
        ):
            out = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
                ),
            )
        return out["state"], out["meta"]

    def restore_model(self, step: int, abstract_state) -> dict:
        """{params, batch_stats} saved at `step`, from a full or a model-only checkpoint."""
        self.wait()
        with self._storage_errors(
            CheckpointReadError, f"read checkpoint step {step}", reading=True
        ):
            if (self.directory / str(step) / "model").exists():
                args = ocp.args.Composite(model=ocp.args.StandardRestore(_model(abstract_state)))
                return self.manager.restore(step, args=args)["model"]
            args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
            return _model(self.manager.restore(step, args=args)["state"])

    def set_aside(self, step: int) -> str:
        """Moves checkpoint `step`, which cannot be restored, out of orbax's sight; returns the
        folder's new name."""
        self.wait()
        aside = self._move_aside(step)
        # orbax caches the step list: it would still offer (and try to delete) the moved step.
        self.manager.reload()
        return aside

    def _move_aside(self, step: int) -> str:
        """Renames the folder of `step` to '<step>.unrestorable-<n>'. Moved rather than deleted:
        it is the evidence of what went wrong (which file, how), and a name orbax does not read
        as a step keeps it out of every step list, resume point and deletion. <n>: the same step
        can be written and go bad again on a later run."""
        n = 1
        while (self.directory / f"{step}.unrestorable-{n}").exists():
            n += 1
        target = self.directory / f"{step}.unrestorable-{n}"
        with self._storage_errors(CheckpointWriteError, f"move checkpoint step {step} aside"):
            if jax.process_index() == 0:  # the folder is shared by the hosts of a multi-host job
                (self.directory / str(step)).rename(target)
            if jax.process_count() > 1:
                multihost_utils.sync_global_devices(f"jaxplay set aside {self.directory}/{step}")
        return target.name

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        try:
            self.wait()
            # orbax removes the '<step>.orbax-checkpoint-tmp' folders of unfinished writes in the
            # background from the moment it opens, and waits for that only at its next save: a
            # manager closed before saving (a finished trial, an evaluation) would leave it running
            # into the next manager's removal of the same folders, and one of the two would fail.
            await_cleanup = getattr(self.manager, "_maybe_await_cleanup_tmp_directory", None)
            if await_cleanup is not None:
                with self._storage_errors(CheckpointWriteError, "remove unfinished checkpoints"):
                    await_cleanup()
        finally:
            with self._storage_errors(CheckpointWriteError, "write a checkpoint"):
                self.manager.close()

    @contextlib.contextmanager
    def _storage_errors(self, kind, doing: str, *, reading: bool = False):
        """Turns a failure of the storage in the block into `kind` (CheckpointWriteError or
        CheckpointReadError), naming the folder, the underlying error and the fix; any other
        error passes unchanged."""
        try:
            yield
        except Exception as error:
            failure = storage_failure(error, reading=reading)
            if failure is None:
                raise
            raise self._fault(kind, doing, *failure) from error

    def _fault(self, kind, doing: str, error: BaseException, code):
        where = self.directory
        if code in _FULL:
            fix = f"free space under {where}"
        elif code in _DENIED:
            fix = f"give this process read and write access to {where}"
        else:
            fix = f"repair or remount the storage that holds {where}"
        if kind is CheckpointWriteError:
            point = self._resume_point_on_disk()
            then = "the trial resumes from its last whole checkpoint" + (
                "" if point is None else f" (step {point})"
            )
        else:
            then = "its checkpoints were left as they are"
        return kind(
            f"cannot {doing} in {where} ({short_description(error)}): the machine, not the "
            f"trial, failed. {fix[0].upper()}{fix[1:]}, then rerun the same command: {then}"
        )

    def _resume_point_on_disk(self) -> int | None:
        """The newest whole step on disk after a failed write (orbax's cached step list has
        dropped the steps it meant to delete, which it did not), or None if it cannot be read."""
        try:
            self.manager.reload()
            return self.latest_step()
        except Exception:  # the storage is failing: the message goes without the step
            return None


# tensorstore reports an OS error as a ValueError whose text starts with an absl status code
# ("RESOURCE_EXHAUSTED: ...") and names the errno ("[os_error_code='28']"). Without an errno (a
# bucket), these codes say the service failed, not the content.
_SERVICE_CODES = (
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "ABORTED",
    "CANCELLED",
)
_FULL = (errno.ENOSPC, errno.EDQUOT, "RESOURCE_EXHAUSTED")
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS, "PERMISSION_DENIED")
_MISSING = (errno.ENOENT, errno.ENOTDIR)


def storage_failure(error: BaseException, *, reading: bool = False):
    """(the error, its errno or status code) when the storage failed rather than the checkpoint's
    content: an OSError, or a tensorstore error that carries an errno or a service status code,
    in `error` or what it was raised from; None for anything else.

    `reading`: a missing file is damage, not a storage failure (a file the checkpoint lists is
    gone: tensorstore's NOT_FOUND, ENOENT), and so is anything else that is no storage failure
    (bytes that do not decode, a truncated file). An I/O or permission error is not: the
    checkpoint may be intact, so it is left alone and the run stops."""
    if isinstance(error, EnvironmentFault):
        return None  # already said (a CheckpointWriteError raised inside a wrapped block)
    for e in _chain(error):
        if isinstance(e, OSError):
            return None if reading and e.errno in _MISSING else (e, e.errno)
        text = str(e)
        found = re.search(r"os_error_code='?(\d+)", text)
        if found:
            code = int(found.group(1))
            return None if reading and code in _MISSING else (e, code)
        status = re.match(r"([A-Z_]+): ", text)
        if status and status.group(1) in _SERVICE_CODES:
            return e, status.group(1)
    return None


def _chain(error: BaseException):
    """The error, what it was raised from, and the members of an exception group."""
    todo, seen = [error], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.append(e.__cause__)
        todo.extend(getattr(e, "exceptions", ()))


def short_description(error: BaseException) -> str:
    """'Type: first line' of an error, without the tensorstore spec (a page of JSON) that ends a
    tensorstore message; a long one keeps its start (the status code and what was being read or
    written) and its end (the OS's reason: "No space left on device [os_error_code='28']")."""
    text = describe(error).split(" [tensorstore_spec=")[0]
    return text if len(text) <= 300 else f"{text[:110]} ... {text[-185:]}"


def _is_whole(folder) -> bool:
    """A finalized checkpoint with the whole train state. orbax writes a step's metadata file
    before the atomic rename that finalizes it, and deletes old steps file by file: a kill
    mid-deletion leaves a step folder without it, which must not be resumed from."""
    return (folder / "state").exists() and (folder / "_CHECKPOINT_METADATA").exists()


class _NewestResumable(pp.PreservationPolicy):
    """Keeps the newest checkpoint that holds the whole train state: the resume point, never
    deleted to make room for a newer model-only one (orbax's LatestN(1) would)."""

    def should_preserve(self, checkpoints, *, context):
        def resumable(c):  # checkpoints written before the flag existed were all whole
            return (c.metrics or {}).get("resumable", 1.0) > 0

        newest = max((c.step for c in checkpoints if resumable(c)), default=None)
        return [c.step == newest for c in checkpoints]


def _model(state) -> dict:
    """What evaluating a state needs: the params and the batch-norm statistics (and the params'
    moving average, under train.ema_decay)."""
    keep = ("params", "batch_stats", "ema_params")
    return {k: state[k] for k in keep if k in state}
