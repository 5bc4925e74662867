"""The playbook's estimate of max_train_steps from a finished learning-rate sweep: the first step
at which each learning rate fits the training set, the fastest one, and the self-deception checks
(a fastest rate at the edge of the grid, ties the evaluations cannot order)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxplay import config as config_lib
from jaxplay.errors import ConfigError
from jaxplay.values import fmt

LEARNING_RATE = "optimizer.learning_rate"
DEFAULT_FIT_METRIC = "train/error"


@dataclasses.dataclass(frozen=True)
class TrialFit:
    """One learning rate of the sweep: when (if ever) it fit the training set."""

    index: int
    learning_rate: float
    status: str
    fit_step: int | None  # first evaluation step with metric <= threshold; None: never
    fit_value: float | None  # the metric at fit_step
    best_value: float | None  # the lowest value of the metric reached
    best_step: int | None
    tiebreak: float = math.inf  # train/loss at fit_step: further along among trials fit at one step

    @property
    def usable(self) -> bool:
        """Completed: diverged (infeasible), failed and unfinished trials say nothing of the fit."""
        return self.status == "completed"


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The sweep's answer: the fastest trial's fit step is the initial max_train_steps."""

    study: str
    metric: str
    threshold: float
    steps: int | None  # N, each trial's length
    eval_every: int | None
    trials: tuple[TrialFit, ...]  # by learning rate
    fastest: TrialFit | None
    boundary: str | None  # 'smallest' or 'largest' when the fastest sits at that end of the grid
    warnings: tuple[str, ...] = ()

    @property
    def max_train_steps(self) -> int | None:
        """The estimate; None when no trial fit the training set."""
        return None if self.fastest is None else self.fastest.fit_step

    @property
    def learning_rate(self) -> float | None:
        """The learning rate of the fastest trial."""
        return None if self.fastest is None else self.fastest.learning_rate

    def criterion(self) -> str:
        """The perfect-fit criterion in words, e.g. 'train/error <= 0'."""
        return f"{self.metric} <= {fmt(self.threshold, 3)}"

    def recommendation(self) -> str:
        """One line: the estimate and what to do with it."""
        if self.fastest is None:
            return (
                f"no estimate: no learning rate reached {self.criterion()} in {self.steps} steps; "
                f"rerun with a larger --steps (e.g. --steps {2 * (self.steps or 1000)} "
                f"--config.study.name={self.study}-{2 * (self.steps or 1000)}) or a looser "
                "criterion (e.g. --fit_threshold 0.01)"
            )
        s = self.fastest.fit_step
        # The sweep refuses an eval_every that does not divide train.steps: name one that does.
        every = config_lib.divisor_near(s, s / 10)
        return (
            f"max_train_steps ~ {s} (learning rate {fmt(self.fastest.learning_rate, 3)} reached "
            f"{self.criterion()} at step {s}); set train.steps={s} in the study, with a "
            f"train.eval_every that divides it (e.g. train.eval_every={every})"
        )

    def table(self) -> str:
        """Learning rate, first fit step and the best value of the metric, one row per trial."""
        head = ("learning rate", self.criterion(), f"best {self.metric}")
        rows = []
        for t in self.trials:
            if t.status != "completed":
                fit = {"infeasible": "diverged", "failed": "failed"}.get(
                    t.status, f"{t.status} (rerun to finish)"
                )
            elif t.fit_step is None:
                fit = f"not fit in {self.steps} steps"
            else:
                fit = f"step {t.fit_step}"
            best = "-" if t.best_value is None else f"{t.best_value:.4g} (step {t.best_step})"
            mark = "  <- fastest" if t is self.fastest else ""
            rows.append((fmt(t.learning_rate, 3), fit, best + mark))
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(2)]
        return "\n".join(
            f"  {a:>{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in [head, *rows]
        )

    def summary(self) -> str:
        """The table, the warnings and the recommendation, as the CLI prints them."""
        lines = [
            f"\nmax_train_steps sweep {self.study!r}: first evaluation with {self.criterion()} "
            f"({self.steps} steps, evaluated every {self.eval_every})",
            self.table(),
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines + [self.recommendation()])


def estimate(
    study, fit_metric: str = DEFAULT_FIT_METRIC, threshold: float = 0.0, param: str = LEARNING_RATE
) -> Estimate:
    """The playbook's estimate from a (partly) finished learning-rate sweep (a StudyData)."""
    logged = {name for t in study.trials for name in t.curves}
    if study.finished and fit_metric not in logged:
        raise ConfigError(
            f"--fit_metric: no trial of {study.name!r} logged {fit_metric!r}; it logged "
            f"{sorted(logged)}"
        )
    fits = []
    for t in study.trials:
        if param not in t.params:
            raise ConfigError(
                f"study {study.name!r}: trial {t.index} does not set {param}; estimate() reads a "
                "learning-rate sweep (python -m jaxplay.steps)"
            )
        fits.append(_fit(t, fit_metric, threshold, float(t.params[param])))
    fits.sort(key=lambda f: (f.learning_rate, f.index))
    fit = [f for f in fits if f.usable and f.fit_step is not None]
    # Ties: evaluations every eval_every steps cannot order trials that fit at one step; the one
    # further along there (lower metric, then lower train/loss) is the faster.
    fastest = min(
        fit, key=lambda f: (f.fit_step, f.fit_value, f.tiebreak, f.learning_rate), default=None
    )
    steps = study.train_steps
    eval_every = (study.record.get("config") or {}).get("train", {}).get("eval_every")
    grid = sorted({f.learning_rate for f in fits})
    boundary, warnings = None, []

    unfinished = [f for f in fits if f.status in ("pending", "running")]
    if unfinished:
        warnings.append(
            f"{len(unfinished)} trial(s) have not finished; rerun the same command to finish them "
            "(this estimate uses the finished ones)"
        )
    diverged = [f for f in fits if f.status in ("infeasible", "failed")]
    if diverged:
        warnings.append(
            "ignored (diverged or failed): learning rate(s) "
            + ", ".join(fmt(f.learning_rate, 3) for f in diverged)
        )
    if fastest is not None and len(grid) > 1:
        if fastest.learning_rate == grid[0]:
            boundary = "smallest"
        elif fastest.learning_rate == grid[-1]:
            boundary = "largest"
        if boundary:
            # Two more points at the grid's own spacing beyond the fastest one.
            step = grid[-1] / grid[-2] if boundary == "largest" else grid[0] / grid[1]
            extra = [fastest.learning_rate * step**k for k in (1, 2)]
            new = sorted(set(grid) | {float(f"{x:.3g}") for x in extra})
            warnings.append(
                f"the fastest learning rate {fmt(fastest.learning_rate, 3)} is the {boundary} "
                f"of the grid, so a {'smaller' if boundary == 'smallest' else 'larger'} one may "
                "fit sooner and the estimate may be too large (the playbook's self-deception "
                "trap); extend the grid "
                f"{'downward' if boundary == 'smallest' else 'upward'} and rerun, e.g. "
                f"--learning_rates {','.join(fmt(x, 3) for x in new)} "
                f"--config.study.name={study.name}-2"
            )
        elif any(
            f.learning_rate > fastest.learning_rate for f in diverged
        ) and fastest.learning_rate == max(f.learning_rate for f in fits if f.usable):
            warnings.append(
                f"the fastest learning rate {fmt(fastest.learning_rate, 3)} is the largest "
                "that trained (larger ones diverged): the grid cannot usefully go higher"
            )
    if fastest is not None:
        tied = [f for f in fit if f.fit_step == fastest.fit_step and f is not fastest]
        if tied:
            warnings.append(
                f"learning rate(s) {', '.join(fmt(f.learning_rate, 3) for f in tied)} also fit "
                f"at step {fastest.fit_step}; evaluations every {eval_every} steps cannot order "
                "them (a smaller --eval_every can)"
            )
        first_eval = min(
            (s for s in _eval_steps(study, fastest.index, fit_metric) if s > 0), default=None
        )
        if fastest.fit_step == first_eval:
            warnings.append(
                f"the fastest trial already fit at its first evaluation (step {fastest.fit_step}): "
                "the true count may be smaller; rerun with a smaller --eval_every"
            )
    return Estimate(
        study=study.name,
        metric=fit_metric,
        threshold=threshold,
        steps=steps,
        eval_every=eval_every,
        trials=tuple(fits),
        fastest=fastest,
        boundary=boundary,
        warnings=tuple(warnings),
    )


def _eval_steps(study, index: int, metric: str) -> list[int]:
    """The evaluation steps of trial `index` for `metric`."""
    trial = next(t for t in study.trials if t.index == index)
    return [int(s) for s in trial.curve(metric)[0]]


def _fit(trial, metric: str, threshold: float, learning_rate: float) -> TrialFit:
    steps, values = trial.curve(metric)
    finite = np.isfinite(values)
    best_value = best_step = fit_step = fit_value = None
    tiebreak = math.inf
    if finite.any():
        i = int(np.nanargmin(np.where(finite, values, np.inf)))
        best_value, best_step = float(values[i]), int(steps[i])
    # Step 0 is the untrained model: a criterion it already meets measures nothing.
    hits = np.flatnonzero(finite & (values <= threshold) & (steps > 0))
    if hits.size:
        fit_step, fit_value = int(steps[hits[0]]), float(values[hits[0]])
        loss_steps, losses = trial.curve("train/loss")
        at = np.flatnonzero(loss_steps == fit_step)
        if at.size and math.isfinite(losses[at[0]]):
            tiebreak = float(losses[at[0]])
    return TrialFit(
        index=trial.index,
        learning_rate=learning_rate,
        status=trial.status,
        fit_step=fit_step,
        fit_value=fit_value,
        best_value=best_value,
        best_step=best_step,
        tiebreak=tiebreak,
    )
