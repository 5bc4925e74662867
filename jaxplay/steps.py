"""An initial max_train_steps from a learning-rate sweep: `python -m jaxplay.steps`.

The playbook's "Algorithm for picking an initial candidate for max_train_steps using a learning
rate sweep" (in "Deciding how long to train when training is *not* compute-bound"):

  1. Assume the training set can be "perfectly" fit with a constant learning-rate schedule.
  2. Take a configuration that fits it and its step budget N (here the study's train.steps, or
     --steps).
  3. Run a grid search over the learning rate, constant schedule, without data augmentation and
     without regularization, every trial N steps.
  4. "The number of steps required for the fastest trial in the sweep to reach perfect training
     performance is our initial guess for max_train_steps."

"Perfectly fit" is informal; for log loss without regularization the playbook means "around the
time the misclassification error reached zero on the training set", the default here
(`--fit_metric train/error --fit_threshold 0`). A fit step is the first evaluation at which the
criterion holds, so it is known to within `train.eval_every` steps (default about N/20, or the
study's own train.eval_every when that is finer).

Self-deception check (the playbook's note): a grid whose learning rates are all too small makes
every trial slow and the estimate falsely large. When the fastest learning rate is the smallest or
largest of the grid, the grid must be extended that way and the sweep rerun.

What the sweep switches off, and why:
  * the schedule becomes constant (warmup 0 unless --keep_warmup): under a decaying schedule the
    fit step would measure the schedule's length, not how fast the learning rate fits;
  * weight decay, dropout, label smoothing (0) and data augmentation ('none'): the algorithm is
    defined without them; they fight the fit of the training set (label smoothing even puts a
    floor under the loss) and add gradient noise. Put them back afterwards, and expect to need
    more steps with them (playbook: augmentation and dropout may raise the step count);
  * every other searched hyperparameter is fixed at the base config: only the learning rate is
    swept.

The sweep is an ordinary study named `<study.name>-steps` in the same store, so it is tracked,
shown by `python -m jaxplay.studies`, and a rerun of the same command continues it (finished
trials are not retrained) before printing the estimate again:

  python -m jaxplay.steps --config experiments/mnist1d_mlp.py --workdir runs/mnist1d_mlp
  python -m jaxplay.steps --config experiments/mnist1d_mlp.py --workdir runs/mnist1d_mlp \\
      --steps 3000 --learning_rates 1e-4,1e-3,1e-2 --fit_metric train/loss --fit_threshold 0.01

From Python (a notebook):

  from jaxplay import analysis, config as config_lib, steps
  result = steps.run(config_lib.load('experiments/mnist1d_mlp.py'), 'runs/mnist1d_mlp')
  result.max_train_steps, result.learning_rate, result.boundary
  # Another criterion on the finished sweep, without training:
  steps.estimate(analysis.load('runs/mnist1d_mlp', study='mnist1d-mlp-width-steps'), 'train/loss', 0.01)
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pathlib
import sys
from collections.abc import Callable

import ml_collections
import numpy as np

from jaxplay import cli, optim, paths, spaces
from jaxplay import config as config_lib
from jaxplay import store as store_lib
from jaxplay.errors import ConfigError, StoreError

__all__ = [
    "TrialFit",
    "Estimate",
    "derive",
    "learning_rate_grid",
    "check_fit_metric",
    "estimate",
    "run",
    "main",
]

LEARNING_RATE = "optimizer.learning_rate"
DEFAULT_NUM_LEARNING_RATES = 7
# Fewer than 3 learning rates leave no interior point: the fastest would always sit on the boundary.
MIN_LEARNING_RATES = 3
# Without a searched range: about three decades centred on the base learning rate.
FALLBACK_SPAN = 30.0
# About 20 evaluations per trial locate the fit step to 5% of N.
EVALS_PER_TRIAL = 20
DEFAULT_FIT_METRIC = "train/error"
# Fields that regularize or augment, and the value that switches each off (only where the config
# has the field; optimizer.weight_decay is special-cased because some optimizers default it > 0).
REGULARIZATION = (("model.dropout", 0.0), ("train.label_smoothing", 0.0), ("data.augment", "none"))
# Study settings of other algorithms or of a lineage; the sweep is a plain grid study.
DROPPED_STUDY_KEYS = ("parent", "trials", "acquisition", "initial_trials")


# ---------------------------------------------------------------------------------------------
# The sweep's study config


def derive(
    config,
    *,
    steps: int | None = None,
    learning_rates=None,
    num_learning_rates: int = DEFAULT_NUM_LEARNING_RATES,
    eval_every: int | None = None,
    keep_warmup: bool = False,
    study_name: str | None = None,
) -> tuple[ml_collections.ConfigDict, list[str]]:
    """The learning-rate sweep's study config derived from a study's, and the changes made (for the log)."""
    c = copy.deepcopy(config)
    changes: list[str] = []
    with c.unlocked():
        n = c.train.steps if steps is None else steps
        if not _is_int(n) or n < 1:
            raise ConfigError(
                f"--steps: must be an int >= 1 (got {n!r}); a budget at which some configuration "
                "fits the training set, e.g. --steps 2000"
            )
        grid = _grid(c, learning_rates, num_learning_rates)

        # Constant learning rate: the decay shape would otherwise set the fit step.
        schedule = c.schedule
        if schedule.get("name") != "constant":
            changes.append(f"schedule.name: {schedule.get('name')} -> constant")
            schedule.name = "constant"
        warmup = schedule.get("warmup_steps", 0)
        if keep_warmup:
            if not warmup < n:
                raise ConfigError(
                    f"--keep_warmup: schedule.warmup_steps={warmup} must be < --steps={n}; "
                    "shorten the warmup or drop --keep_warmup"
                )
        elif warmup:
            changes.append(f"schedule.warmup_steps: {warmup} -> 0")
            schedule.warmup_steps = type(warmup)(0)
        if schedule.get("decay_steps"):  # ignored by a constant schedule, but must fit the new N
            schedule.decay_steps = type(schedule.decay_steps)(0)

        # No regularization or augmentation (the algorithm's premise).
        for path, value, off in _regularizers(c):
            changes.append(f"{path}: {_fmt(value)} -> {_fmt(off)} (switched off)")
            config_lib.set_path(c, path, off, create=True)

        # N steps, evaluated often enough to see when the fit happens.
        if steps is not None and steps != config.train.steps:
            changes.append(f"train.steps: {config.train.steps} -> {n}")
        every = eval_every
        if every is None:
            every = config_lib.divisor_near(n, n / EVALS_PER_TRIAL)
            current = c.train.get("eval_every")
            if _is_int(current) and 0 < current < every and n % current == 0:
                every = current  # the study's own evaluations are finer still: a sharper fit step
        if not _is_int(every) or every < 1 or n % every:
            near = config_lib.nearest_divisors(n, every) if _is_int(every) and every > 0 else []
            fix = f"; use {' or '.join(map(str, near))}" if near else ""
            raise ConfigError(
                f"--eval_every: must be an int >= 1 that divides --steps={n} (got {every!r}){fix}"
            )
        if every != c.train.eval_every:
            changes.append(
                f"train.eval_every: {c.train.eval_every} -> {every} "
                f"({n // every} evaluations locate the fit step to {every} steps)"
            )
        c.train.steps, c.train.eval_every = n, every

        # Only the learning rate is searched; everything else stays at the base config.
        space = spaces.parse(config.get("search"))
        fixed = [p.path for p in space if p.path != LEARNING_RATE]
        if fixed:
            changes.append(
                "no longer searched (fixed at the base config): "
                + ", ".join(f"{p}={_fmt(_get(c, p))}" for p in fixed)
            )
        c.search = ml_collections.ConfigDict(
            {"optimizer": {"learning_rate": spaces.discrete(grid, role="nuisance")}}
        )
        changes.append(
            f"{LEARNING_RATE}: grid of {len(grid)} on a log scale: {', '.join(map(_fmt, grid))}"
        )

        study = {k: v for k, v in c.study.items() if k not in DROPPED_STUDY_KEYS}
        study.update(
            name=study_name or f"{config.study.name}-steps",
            algorithm="grid",
            num_trials=None,
            notes=f"max_train_steps learning-rate sweep of {config.study.name!r}: {n} steps, constant "
            f"learning rate, no regularization",
        )
        c.study = ml_collections.ConfigDict(study)
    return c, changes


def learning_rate_grid(config, num: int = DEFAULT_NUM_LEARNING_RATES) -> list[float]:
    """`num` learning rates log-spaced over the study's learning-rate search range, else over
    [lr/30, lr*30] around the base learning rate (3 significant digits, so tables read well)."""
    if not _is_int(num) or num < MIN_LEARNING_RATES:
        raise ConfigError(
            f"--num_learning_rates: must be an int >= {MIN_LEARNING_RATES} (got {num!r}) so the "
            "fastest learning rate can lie inside the grid"
        )
    declared = {p.path: p for p in spaces.parse(config.get("search"))}.get(LEARNING_RATE)
    if declared is None:
        base = config.optimizer.get("learning_rate")
        if not isinstance(base, (int, float)) or not base > 0:
            raise ConfigError(
                f"optimizer.learning_rate: must be > 0 to centre the grid on it (got {base!r}); "
                "or pass --learning_rates"
            )
        lo, hi = base / FALLBACK_SPAN, base * FALLBACK_SPAN
    elif declared.values is not None:
        lo, hi = min(declared.values), max(declared.values)
    else:
        lo, hi = declared.min, declared.max
    if not 0 < lo < hi:
        raise ConfigError(
            f"search.{LEARNING_RATE}: a log-spaced grid needs 0 < min < max (got {lo!r}, {hi!r}); "
            "fix the range or pass --learning_rates"
        )
    grid = [float(np.clip(float(f"{x:.3g}"), lo, hi)) for x in np.geomspace(lo, hi, num)]
    return sorted(set(grid))


def _grid(config, learning_rates, num_learning_rates) -> list[float]:
    if learning_rates is None:
        return learning_rate_grid(config, num_learning_rates)
    try:
        grid = sorted({float(x) for x in learning_rates})
    except (TypeError, ValueError):
        raise ConfigError(
            f"--learning_rates: must be numbers (got {learning_rates!r}); "
            "e.g. --learning_rates 1e-4,1e-3,1e-2"
        ) from None
    if len(grid) < MIN_LEARNING_RATES or not all(x > 0 and math.isfinite(x) for x in grid):
        raise ConfigError(
            f"--learning_rates: give at least {MIN_LEARNING_RATES} different positive values "
            f"(got {learning_rates!r}) so the fastest can lie inside the grid"
        )
    return grid


def _regularizers(c) -> list[tuple[str, object, object]]:
    """(path, value, off value) of each regularizer or augmentation that is on in config c."""
    on = []
    name = c.optimizer.get("name")
    # AdamW's weight decay defaults to 1e-4 when the config leaves it out: set it explicitly.
    decay = c.optimizer.get("weight_decay", optim.OPTIMIZERS.get(name, {}).get("weight_decay", 0.0))
    if decay:
        on.append(("optimizer.weight_decay", decay, 0.0))
    for path, off in REGULARIZATION:
        value = _get(c, path)
        if value is not None and value != off:
            on.append((path, value, type(value)(off) if isinstance(value, (int, float)) else off))
    return on


def check_fit_metric(config, fit_metric: str) -> None:
    """Raises ConfigError unless `fit_metric` is a lower-is-better training-set metric the trainer logs."""
    from jaxplay import workloads

    modes = workloads.get(config).task.metrics_mode  # cached: the sweep loads the same data
    allowed = [f"train/{m}" for m, mode in modes.items() if mode == "min"] + ["train/batch_loss"]
    if fit_metric not in allowed:
        raise ConfigError(
            f"--fit_metric: {fit_metric!r} is not a training-set metric that is lower when "
            f"better; use one of {allowed}"
        )


# ---------------------------------------------------------------------------------------------
# The analysis


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
        """Completed: diverged (infeasible), failed and unfinished trials say nothing about the fit."""
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
        return f"{self.metric} <= {_fmt(self.threshold)}"

    def recommendation(self) -> str:
        """One line: the estimate and what to do with it."""
        if self.fastest is None:
            return (
                f"no estimate: no learning rate reached {self.criterion()} in {self.steps} steps; "
                f"rerun with a larger --steps (e.g. --steps {2 * (self.steps or 1000)} --study_name "
                f"{self.study}-{2 * (self.steps or 1000)}) or a looser criterion (e.g. --fit_threshold 0.01)"
            )
        s = self.fastest.fit_step
        return (
            f"max_train_steps ~ {s} (learning rate {_fmt(self.fastest.learning_rate)} reached "
            f"{self.criterion()} at step {s}); set train.steps={s} in the study"
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
            rows.append((_fmt(t.learning_rate), fit, best + mark))
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
    """The playbook's estimate from a finished (or partly finished) learning-rate sweep (a StudyData)."""
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
            + ", ".join(_fmt(f.learning_rate) for f in diverged)
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
                f"the fastest learning rate {_fmt(fastest.learning_rate)} is the {boundary} of the grid, so a "
                f"{'smaller' if boundary == 'smallest' else 'larger'} one may fit sooner and the estimate may be too "
                f"large (the playbook's self-deception trap); extend the grid "
                f"{'downward' if boundary == 'smallest' else 'upward'} and rerun, e.g. --learning_rates "
                f"{','.join(map(_fmt, new))} --study_name {study.name}-2"
            )
        elif any(
            f.learning_rate > fastest.learning_rate for f in diverged
        ) and fastest.learning_rate == max(f.learning_rate for f in fits if f.usable):
            warnings.append(
                f"the fastest learning rate {_fmt(fastest.learning_rate)} is the largest that trained "
                "(larger ones diverged): the grid cannot usefully go higher"
            )
    if fastest is not None:
        tied = [f for f in fit if f.fit_step == fastest.fit_step and f is not fastest]
        if tied:
            warnings.append(
                f"learning rate(s) {', '.join(_fmt(f.learning_rate) for f in tied)} also fit at step "
                f"{fastest.fit_step}; evaluations every {eval_every} steps cannot order them "
                "(a smaller --eval_every can)"
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


# ---------------------------------------------------------------------------------------------
# Running it


def run(
    config,
    workdir,
    *,
    steps: int | None = None,
    learning_rates=None,
    num_learning_rates: int = DEFAULT_NUM_LEARNING_RATES,
    eval_every: int | None = None,
    keep_warmup: bool = False,
    study_name: str | None = None,
    fit_metric: str = DEFAULT_FIT_METRIC,
    fit_threshold: float = 0.0,
    store_url: str | None = None,
    executor: str = "auto",
    config_path: str = "",
    command: str = "",
    log: Callable[[str], None] = print,
) -> Estimate:
    """Runs (or continues) the learning-rate sweep derived from `config` and returns its estimate."""
    from jaxplay import analysis, sweep

    derived, changes = derive(
        config,
        steps=steps,
        learning_rates=learning_rates,
        num_learning_rates=num_learning_rates,
        eval_every=eval_every,
        keep_warmup=keep_warmup,
        study_name=study_name,
    )
    config_lib.validate(derived)
    check_fit_metric(derived, fit_metric)
    log(
        f'max_train_steps learning-rate sweep {derived.study.name!r} (playbook: "Algorithm for picking an '
        f'initial candidate for max_train_steps using a learning rate sweep"), derived from '
        f"{config.study.name!r}:" + "".join(f"\n  {change}" for change in changes)
    )
    sweep.run_study(
        derived,
        workdir,
        store_url=store_url,
        config_path=config_path,
        command=command,
        log=log,
        executor=executor,
        report=False,
    )
    url = store_url or store_lib.default_url(paths.folder(workdir))
    result = estimate(analysis.load(store=url, study=derived.study.name), fit_metric, fit_threshold)
    log(result.summary())
    return result


def main(argv=None) -> int:
    """Entry point of `python -m jaxplay.steps`."""
    from absl import flags
    from absl import logging as absl_logging
    from ml_collections import config_flags

    from jaxplay import sweep

    argv = list(sys.argv if argv is None else argv)
    fl = flags.FlagValues()
    cli.define_study_flags(fl)
    flags.DEFINE_integer(
        "steps",
        None,
        "N: each trial's length, a budget at which some configuration fits the "
        "training set (default: the study's train.steps).",
        flag_values=fl,
    )
    flags.DEFINE_list(
        "learning_rates",
        None,
        "The learning-rate grid, comma-separated (default: "
        "--num_learning_rates log-spaced over the study's learning-rate range).",
        flag_values=fl,
    )
    flags.DEFINE_integer(
        "num_learning_rates",
        DEFAULT_NUM_LEARNING_RATES,
        "Grid size over the study's "
        "search.optimizer.learning_rate range, else over [lr/30, lr*30].",
        flag_values=fl,
    )
    flags.DEFINE_integer(
        "eval_every",
        None,
        "Evaluate every this many steps, a divisor of N (default: a "
        f"divisor near N/{EVALS_PER_TRIAL}, or the study's train.eval_every if finer); the fit "
        "step is known to this resolution.",
        flag_values=fl,
    )
    flags.DEFINE_bool(
        "keep_warmup",
        False,
        "Keep the study's warmup before the constant learning rate.",
        flag_values=fl,
    )
    flags.DEFINE_string(
        "study_name", None, "Name of the sweep study (default: <study.name>-steps).", flag_values=fl
    )
    flags.DEFINE_string(
        "fit_metric",
        DEFAULT_FIT_METRIC,
        'Training-set metric of the "perfect fit" criterion.',
        flag_values=fl,
    )
    flags.DEFINE_float(
        "fit_threshold",
        0.0,
        "The training set counts as fit once fit_metric <= this.",
        flag_values=fl,
    )
    flags.DEFINE_enum(
        "executor",
        "auto",
        list(sweep.EXECUTORS),
        "As for jaxplay.sweep: sequential, batched "
        "(the learning rates share one compiled program) or auto.",
        flag_values=fl,
    )
    if not cli.parse(fl, argv):
        return 2
    if fl.config is None or fl.workdir is None:
        print(
            "usage: python -m jaxplay.steps --config experiments/x.py[:arg] --workdir DIR "
            "[--config.a.b=value ...] [--steps N] [--learning_rates a,b,c] [--fit_metric train/error "
            "--fit_threshold 0]",
            file=sys.stderr,
        )
        return 2
    if fl.learning_rates is not None and fl["num_learning_rates"].present:
        print(
            "error: --learning_rates and --num_learning_rates: give one (a list, or a count log-spaced over "
            "the study's learning-rate range)",
            file=sys.stderr,
        )
        return 2
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    cli.enable_compilation_cache()
    command = cli.command_line("jaxplay.steps", argv)
    try:
        result = run(
            fl.config,
            fl.workdir,
            steps=fl.steps,
            learning_rates=fl.learning_rates,
            num_learning_rates=fl.num_learning_rates,
            eval_every=fl.eval_every,
            keep_warmup=fl.keep_warmup,
            study_name=fl.study_name,
            fit_metric=fl.fit_metric,
            fit_threshold=fl.fit_threshold,
            store_url=cli.store_url(fl),
            executor=fl.executor,
            config_path=str(
                pathlib.Path(config_flags.get_config_filename(fl["config"])).absolute()
            ),
            command=command,
        )
    except (ConfigError, StoreError) as e:
        hint = ""
        if isinstance(e, StoreError) and "different config" in str(e):
            # Another N, grid or criterion on an existing sweep: a study's config never changes.
            name = fl.study_name or f"{fl.config.study.name}-steps"
            hint = f"; to run this sweep next to it, pass --study_name {name}-2"
        print(f"error: {e}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return cli.interrupted()
    failed = any(t.status == "failed" for t in result.trials)  # bugs, as in jaxplay.sweep
    return 1 if result.fastest is None or failed else 0


# ---------------------------------------------------------------------------------------------
# Helpers


def _get(config, path: str):
    """The value at a dotted path, None where a section or field is missing."""
    node = config
    for key in path.split("."):
        if not isinstance(node, (ml_collections.ConfigDict, dict)) or key not in node:
            return None
        node = node[key]
    return node


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    sys.exit(main())
