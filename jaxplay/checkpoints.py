"""orbax checkpoints of one trial: the best N by the study objective plus the latest for resume."""
from __future__ import annotations

import pathlib

import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp


class TrialCheckpoints:
    """Keeps the `keep_best` best checkpoints by objective and the latest one, across restarts."""

    def __init__(self, directory: str | pathlib.Path, *, keep_best: int, mode: str):
        self.directory = pathlib.Path(directory).absolute()
        objective = lambda metrics: metrics["objective"]  # noqa: E731
        # max_to_keep + best_fn would delete the newest checkpoints and lose resume state; a
        # preservation policy keeps both sets. best_fn is still needed: without it orbax does not
        # write the metrics and forgets which checkpoints were best after a restart.
        policy = pp.AnyPreservationPolicy([
            pp.LatestN(1),
            pp.BestN(get_metric_fn=objective, reverse=(mode == "min"), n=keep_best),
        ])
        options = ocp.CheckpointManagerOptions(
            best_fn=objective, best_mode=mode, preservation_policy=policy,
            enable_async_checkpointing=True, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The newest saved step (resume point), or None."""
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The saved step with the best objective, or None."""
        return self.manager.best_step()

    def all_steps(self) -> list[int]:
        """Steps that are on disk."""
        return list(self.manager.all_steps())

    def save(self, step: int, state, objective: float, meta: dict) -> None:
        """Saves `state` (async) with its objective and a JSON `meta` record."""
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            metrics={"objective": float(objective)},  # orbax needs Python floats here
        )

    def restore(self, step: int, abstract_state):
        """Returns (state, meta) saved at `step`; `abstract_state` comes from jax.eval_shape."""
        self.manager.wait_until_finished()
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return out["state"], out["meta"]

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
