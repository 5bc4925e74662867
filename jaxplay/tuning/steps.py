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

The sweep is an ordinary study named `<study.name>-steps` (or `--config.study.name`) in the same
store, derived from the study file the way jaxplay.tuning derives every study: it records its
parent (the study file's study), so it is tracked, shown by `python -m jaxplay.studies`, listed in
the parent's report, and a rerun of the same command continues it (finished trials are not
retrained) before printing the estimate again:

  python -m jaxplay.steps --config experiments/mnist1d_mlp.py --workdir runs/mnist1d_mlp
  python -m jaxplay.steps --config experiments/mnist1d_mlp.py --workdir runs/mnist1d_mlp \\
      --steps 3000 --learning_rates 1e-4,1e-3,1e-2 --fit_metric train/loss --fit_threshold 0.01

From Python (a notebook):

  from jaxplay import analysis, config as config_lib
  from jaxplay.tuning import steps
  result = steps.run(config_lib.load('experiments/mnist1d_mlp.py'), 'runs/mnist1d_mlp')
  result.max_train_steps, result.learning_rate, result.boundary
  # Another criterion on the finished sweep, without training:
  study = analysis.load('runs/mnist1d_mlp', study='mnist1d-mlp-width-steps')
  steps.estimate(study, 'train/loss', 0.01)
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable

import ml_collections
import numpy as np

from jaxplay import config as config_lib
from jaxplay import driver, optim, spaces, spec, workloads
from jaxplay import store as store_lib
from jaxplay.analysis import study as study_lib
from jaxplay.errors import ConfigError
from jaxplay.tuning.derivation import Derivation, Option, derive
from jaxplay.tuning.fit import DEFAULT_FIT_METRIC, LEARNING_RATE, Estimate, estimate
from jaxplay.values import fmt, is_int

DEFAULT_NUM_LEARNING_RATES = 7
# Fewer than 3 learning rates leave no interior point: the fastest would always sit on the boundary.
MIN_LEARNING_RATES = 3
# Without a searched range: about three decades centred on the base learning rate.
FALLBACK_SPAN = 30.0
# About 20 evaluations per trial locate the fit step to 5% of N.
EVALS_PER_TRIAL = 20
# Fields that regularize or augment, and the value that switches each off (only where the config
# has the field; optimizer.weight_decay is special-cased because some optimizers default it > 0).
REGULARIZATION = (("model.dropout", 0.0), ("train.label_smoothing", 0.0), ("data.augment", "none"))
# Study settings of other algorithms or of a lineage; the sweep is a plain grid study.
DROPPED_STUDY_KEYS = ("trials", "acquisition", "initial_trials")


# ---------------------------------------------------------------------------------------------
# The sweep's study config


def _apply(c, parent, options) -> list[str]:
    """Turns a study's config into its learning-rate sweep; returns the changes (for the log)."""
    steps, learning_rates = options["steps"], options["learning_rates"]
    num_learning_rates, eval_every = options["num_learning_rates"], options["eval_every"]
    keep_warmup, original_steps = options["keep_warmup"], c.train.steps
    searched = spaces.parse(c.get("search"))
    changes: list[str] = []
    with c.unlocked():
        n = c.train.steps if steps is None else steps
        if not is_int(n) or n < 1:
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
            changes.append(f"{path}: {fmt(value, 3)} -> {fmt(off, 3)} (switched off)")
            config_lib.set_path(c, path, off, create=True)

        # N steps, evaluated often enough to see when the fit happens.
        if steps is not None and steps != original_steps:
            changes.append(f"train.steps: {original_steps} -> {n}")
        every = eval_every
        if every is None:
            every = config_lib.divisor_near(n, n / EVALS_PER_TRIAL)
            current = c.train.get("eval_every")
            if is_int(current) and 0 < current < every and n % current == 0:
                every = current  # the study's own evaluations are finer still: a sharper fit step
        if not is_int(every) or every < 1 or n % every:
            near = config_lib.nearest_divisors(n, every) if is_int(every) and every > 0 else []
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
        fixed = [p.path for p in searched if p.path != LEARNING_RATE]
        if fixed:
            changes.append(
                "no longer searched (fixed at the base config): "
                + ", ".join(f"{p}={fmt(_get(c, p), 3)}" for p in fixed)
            )
        c.search = ml_collections.ConfigDict(
            {"optimizer": {"learning_rate": spaces.discrete(grid, role="nuisance")}}
        )
        changes.append(
            f"{LEARNING_RATE}: grid of {len(grid)} on a log scale: "
            f"{', '.join(fmt(g, 3) for g in grid)}"
        )

        # A plain grid study: another algorithm's settings would not apply.
        for key in DROPPED_STUDY_KEYS:
            if key in c.study:
                del c.study[key]
        c.study.algorithm, c.study.num_trials = "grid", None
    return changes


def learning_rate_grid(config, num: int = DEFAULT_NUM_LEARNING_RATES) -> list[float]:
    """`num` learning rates log-spaced over the study's learning-rate search range, else over
    [lr/30, lr*30] around the base learning rate (3 significant digits, so tables read well)."""
    if not is_int(num) or num < MIN_LEARNING_RATES:
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


def check_fit_metric(trial, fit_metric: str) -> None:
    """Raises ConfigError unless `fit_metric` is a lower-is-better training-set metric the
    trainer logs."""
    modes = workloads.resolve(trial.workload).task.metrics_mode
    allowed = [f"train/{m}" for m, mode in modes.items() if mode == "min"] + ["train/batch_loss"]
    if fit_metric not in allowed:
        raise ConfigError(
            f"--fit_metric: {fit_metric!r} is not a training-set metric that is lower when "
            f"better; use one of {allowed}"
        )


def _summary(parent: str, options: dict, child) -> str:
    return (
        f"max_train_steps learning-rate sweep of {parent!r}: {child.train.steps} steps, constant "
        "learning rate, no regularization"
    )


STEPS = Derivation(
    "steps",
    "max_train_steps: a constant-learning-rate grid without regularization, N steps each",
    _apply,
    _summary,
    options=(
        Option("steps", int, None, "N: each trial's length (default: the study's train.steps)",
               minimum=1),
        Option("learning_rates", list, None, "the learning-rate grid (default: "
               "--num_learning_rates log-spaced over the study's learning-rate range)"),
        Option("num_learning_rates", int, DEFAULT_NUM_LEARNING_RATES, "grid size over the "
               "study's learning-rate range, else over [lr/30, lr*30]", minimum=MIN_LEARNING_RATES),
        Option("eval_every", int, None, "evaluate every this many steps, a divisor of N "
               f"(default: a divisor near N/{EVALS_PER_TRIAL}, or the study's own if finer)",
               minimum=1),
        Option("keep_warmup", bool, False, "keep the study's warmup before the constant rate"),
    ),
    reads_results=False,
    same_objective=False,
)  # fmt: skip


def sweep_config(config, name: str | None = None, **options) -> dict:
    """The learning-rate sweep derived from a study file's config (a JSON tree), named `name`,
    else '<study.name>-steps'."""
    options = STEPS.resolve_options(options, lambda key: f"--{key}")
    return derive(config, STEPS, options, None, parent_name=config.study.name, name=name)


# ---------------------------------------------------------------------------------------------
# Running it


def run(
    config,
    workdir,
    *,
    name: str | None = None,
    fit_metric: str = DEFAULT_FIT_METRIC,
    fit_threshold: float = 0.0,
    store_url: str | None = None,
    executor: str = "auto",
    config_path: str = "",
    command: str = "",
    log: Callable[[str], None] = print,
    **options,
) -> Estimate:
    """Runs (or continues) the learning-rate sweep derived from `config` (options: steps,
    learning_rates, num_learning_rates, eval_every, keep_warmup) and returns its estimate."""
    sweep = spec.resolve(sweep_config(config, name, **options))
    check_fit_metric(sweep.base, fit_metric)
    driver.run(
        sweep, workdir, store_url=store_url, config_path=config_path, command=command, log=log,
        executor=executor, report=False,
    )  # fmt: skip
    url = store_url or store_lib.default_url(pathlib.Path(workdir).absolute())
    result = estimate(study_lib.load(store=url, study=sweep.study.name), fit_metric, fit_threshold)
    log(result.summary())
    return result


def _get(config, path: str):
    """The value at a dotted path, None where a section or field is missing."""
    node = config
    for key in path.split("."):
        if not isinstance(node, (ml_collections.ConfigDict, dict)) or key not in node:
            return None
        node = node[key]
    return node
