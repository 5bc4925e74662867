"""orbax checkpoints of one trial: the best N by the study objective plus the latest for resume.

Writing is deferred: a state that enters the best N is copied to host memory, and the copies are
written together when the host loop says a write is due (every `train.checkpoint_every_secs`, at
the end, or on Ctrl-C). A short trial whose objective improves at every evaluation then writes ~N
checkpoints instead of one per evaluation: an orbax save costs enough CPU that writing every
evaluation made a small trial measurably slower than a bare loop (scripts/bench_trainer.py).
"""

from __future__ import annotations

import pathlib

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from jaxplay import paths


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
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The newest step that holds the whole train state (the resume point), or None.

        Not orbax's latest_step: a write of several checkpoints saves the older best ones as
        model-only and the newest one whole, last; a crash between them leaves a model-only
        checkpoint newest on disk, and the resume point is the whole one before it."""
        return max(
            (s for s in self.manager.all_steps() if _is_whole(self.directory / str(s))),
            default=None,
        )

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
        """Resumes the best-N bookkeeping from a restored checkpoint's meta."""
        self.top = [tuple(t) for t in meta.get("top", [])]

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
        self.manager.save(
            step,
            args=ocp.args.Composite(meta=ocp.args.JsonSave(meta), **item),
            # orbax needs Python floats here; "resumable" marks a whole train state
            metrics={"objective": float(objective), "resumable": float(full)},
        )

    def restore(self, step: int, abstract_state):
        """Returns (state, meta) saved at `step`; `abstract_state` comes from jax.eval_shape."""
        self.manager.wait_until_finished()
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        return out["state"], out["meta"]

    def restore_model(self, step: int, abstract_state) -> dict:
        """{params, batch_stats} saved at `step`, from a full or a model-only checkpoint."""
        self.manager.wait_until_finished()
        if (self.directory / str(step) / "model").exists():
            args = ocp.args.Composite(model=ocp.args.StandardRestore(_model(abstract_state)))
            return self.manager.restore(step, args=args)["model"]
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        return _model(self.manager.restore(step, args=args)["state"])

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()


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
    """What evaluating a state needs: the params and the batch-norm statistics."""
    return {"params": state["params"], "batch_stats": state["batch_stats"]}
