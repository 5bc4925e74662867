"""One trial's host-side bookkeeping between compiled periods: resume point, divergence, best
value, metrics and checkpoints (retrospective optimal checkpoint selection: keep the best N)."""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax
import numpy as np

from jaxplay import distributed, paths
from jaxplay.checkpoints import TrialCheckpoints, short_description
from jaxplay.errors import EnvironmentFault


@dataclasses.dataclass
class TrialResult:
    """What a finished trial reports to the study."""

    status: str  # 'completed' or 'infeasible'
    best_step: int | None
    best_value: float | None
    steps_run: int
    reason: str | None = None
    final_metrics: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrialProgress:
    """What a trial knows so far; saved (as JSON) with every checkpoint, so a resumed trial
    continues from it and a trial killed after its final checkpoint still reports its result."""

    best_step: int | None = None
    best_value: float | None = None
    initial_loss: float | None = None  # the divergence yardstick
    last_metrics: dict | None = None  # the latest evaluation (NaN/inf as None: JSON)

    def to_meta(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_meta(cls, meta: dict) -> TrialProgress:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in meta.items() if k in fields})


class TrialRun:
    """Drives one trial's bookkeeping; the host loop keeps one per trial of a stack."""

    def __init__(
        self, trial, trial_dir, *, on_eval=None, on_steps=None, on_resume=None, on_warning=None,
        on_predictions=None,
    ):  # fmt: skip
        self.trial, self.program = trial, trial.program
        self.objective, self.mode = trial.objective, trial.mode
        self.on_eval, self.on_resume = on_eval, on_resume
        # (step, {name: per-example values}) of the kept examples (train.keep_predictions).
        self.on_predictions = on_predictions
        # Every step's training loss and gradient norm, kept where the study asks for them (the
        # early-instability probe): a period's mean hides a spike that recovers within it.
        self.on_steps = on_steps if trial.train.log_every_step else None
        self.on_warning = on_warning  # (message); None: a RuntimeWarning
        self.grad_clip_norm = trial.hparams.grad_clip_norm
        self.ckpt = TrialCheckpoints(
            paths.folder(trial_dir) / "checkpoints", mode=self.mode, keep_best=trial.train.keep_best
        )
        self.progress = TrialProgress()
        self.last = None  # (step, get_state, objective) of the last recorded period
        self.last_metrics: dict = {}

    def resume(self, fresh_state):
        """The state of the newest whole checkpoint, or None for a fresh start.

        A checkpoint that cannot be restored (bytes damaged on disk, or written by a program whose
        train state differs) is no resume point: it is set aside, the warning says why, and the
        whole checkpoint before it is tried; with none left the trial starts again from step 0,
        also said. The result is the same as an uninterrupted run's, only later. A storage that
        fails to read (CheckpointReadError) stops the run instead: the checkpoint may be intact.
        """
        abstract = jax.eval_shape(lambda: fresh_state)
        notes = list(self.ckpt.notes)
        for step in sorted(self.ckpt.whole_steps(), reverse=True):
            try:
                state, meta = self.ckpt.restore(step, abstract)
                progress = TrialProgress.from_meta(meta)
                reason = None
            except (EnvironmentFault, MemoryError):
                raise  # the machine failed, not the checkpoint
            except Exception as error:
                reason = short_description(error)
            # Every host of a multi-host job resumes from the same step.
            if distributed.any_process(reason is not None):
                aside = self.ckpt.set_aside(step)
                notes.append(
                    f"checkpoint step {step} in {self.ckpt.directory} cannot be restored "
                    f"({reason or 'on another host'}): moved it to {aside}"
                )
                continue
            self.progress = progress
            self.ckpt.restore_top(meta)
            self._warn(notes, f"resuming from step {step}")
            if self.on_resume:
                self.on_resume(step)
            return state
        self._warn(notes, "no whole checkpoint is left: the trial starts again from step 0")
        return None

    def _warn(self, notes: list[str], outcome: str) -> None:
        """Reports each checkpoint set aside, the last one with what the trial does instead."""
        for i, note in enumerate(notes):
            message = f"{note}; {outcome}" if i == len(notes) - 1 else note
            if self.on_warning:
                self.on_warning(message)
            else:
                warnings.warn(message, RuntimeWarning, stacklevel=3)

    def start(self, initial: dict, predictions: dict | None = None) -> None:
        """Records the step-0 evaluation (and its kept predictions); its train loss is the
        divergence yardstick."""
        initial = {k: float(v) for k, v in initial.items()}
        # A task without a "loss" eval metric is measured against its first training batch loss.
        self.progress.initial_loss = initial.get("train/loss")
        if self.on_eval:
            self.on_eval(0, initial)
        self._predictions(0, predictions)

    def _predictions(self, step: int, predictions: dict | None) -> None:
        # After the evaluation's metrics (a fresh start's first write clears the trial's rows)
        # and before the period's checkpoint: a run stopped between them logs both again.
        if predictions is not None and self.on_predictions:
            self.on_predictions(step, {k: np.asarray(v) for k, v in predictions.items()})

    def after_period(
        self, step: int, get_state, metrics: dict, per_step: dict, *, write_now: bool = False,
        predictions: dict | None = None,
    ) -> TrialResult | None:  # fmt: skip
        """Records the period that ended at `step`; returns the result once the trial is over."""
        progress = self.progress
        if progress.initial_loss is None:
            progress.initial_loss = float(per_step["loss"][0])
        limit = self.trial.train.divergence_factor * progress.initial_loss
        reason = diverged(per_step["loss"], step - self.program.eval_every, limit)
        metrics = {k: float(v) for k, v in metrics.items()}
        metrics.update(period_summary(per_step, self.grad_clip_norm))
        self.last_metrics = metrics
        # Saved with the checkpoint: a run killed after the final checkpoint, before the store
        # heard, still reports the final metrics when rerun (see finished).
        progress.last_metrics = {k: v if math.isfinite(v) else None for k, v in metrics.items()}
        if self.on_steps:
            self.on_steps(step, {name: np.asarray(per_step[key], float)
                                 for name, key in STEP_SERIES.items()})  # fmt: skip
        if self.on_eval:
            self.on_eval(step, metrics)
        self._predictions(step, predictions)
        value = metrics[self.objective]
        if reason is None and not math.isfinite(value):
            reason = f"{self.objective} is {value} at step {step}"
        if reason:
            self.ckpt.flush(progress.to_meta())  # keep the best checkpoints from before it
            return self._result("infeasible", step, reason, metrics)
        if _is_better(value, progress.best_value, self.mode):
            progress.best_step, progress.best_value = step, value
        # Retrospective optimal checkpoint selection: keep the best N; the last write of a trial
        # (end, Ctrl-C) also holds the latest state, the resume point.
        done = step >= self.program.steps
        self.last = (step, get_state, value)
        self.ckpt.record(step, get_state, value, progress.to_meta(), write_now=write_now or done)
        return self._result("completed", step, None, metrics) if done else None

    def write_latest(self) -> None:
        """Writes the pending best states and the state of the last period (Ctrl-C: resume here)."""
        self.ckpt.flush(self.progress.to_meta(), latest=self.last)

    def finished(self, step: int) -> TrialResult:
        """The result of a trial whose final checkpoint was already written."""
        return self._result("completed", step, None, self.progress.last_metrics or {})

    def _result(self, status: str, step: int, reason: str | None, metrics: dict) -> TrialResult:
        p = self.progress
        return TrialResult(status, p.best_step, p.best_value, step, reason, metrics)

    def close(self) -> None:
        """Waits for checkpoint writes."""
        self.ckpt.close()


def _is_better(value, best, mode):
    return best is None or (value < best if mode == "min" else value > best)


def diverged(losses: np.ndarray, start: int, limit: float) -> str | None:
    """Reason string if a batch loss in this period is NaN/inf or above `limit`, else None."""
    bad = ~np.isfinite(losses) | (losses > limit)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    what = "NaN/inf" if not np.isfinite(losses[i]) else f"{losses[i]:.4g} (> {limit:.4g})"
    return f"training loss diverged at step {start + i + 1}: {what}"


# The per-step series a trial with train.log_every_step keeps: metric name -> per-step array.
STEP_SERIES = {"train/step_loss": "loss", "train/step_grad_norm": "grad_norm"}


def period_summary(per_step: dict, grad_clip_norm: float) -> dict:
    """Per-period train metrics from the per-step arrays: mean batch loss, grad norms (the mean,
    the median, the 90th percentile and the largest of the period's steps: the playbook picks a
    clipping threshold from the 90th percentile of the per-step norms), clipping."""
    norms = per_step["grad_norm"]
    clip = float(grad_clip_norm)
    finite = np.isfinite(per_step["loss"])
    p50, p90 = np.quantile(norms, (0.5, 0.9)) if np.isfinite(norms).all() else (np.nan, np.nan)
    return {
        "train/batch_loss": float(np.mean(per_step["loss"][finite]))
        if finite.any()
        else float("nan"),
        "train/grad_norm": float(np.mean(norms)),
        "train/grad_norm_p50": float(p50),
        "train/grad_norm_p90": float(p90),
        "train/grad_norm_max": float(np.max(norms)),
        "train/clip_fraction": float(np.mean(norms > clip)) if clip > 0 else 0.0,
        "train/learning_rate": float(per_step["learning_rate"][-1]),
    }
