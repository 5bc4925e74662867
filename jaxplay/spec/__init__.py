"""The resolved study: `resolve(config) -> StudySpec`, the one shape every layer below reads.

A study file is an ml-collections ConfigDict; that is the edge. `resolve` checks it once, every
field and every trial, and returns frozen, typed dataclasses with every default filled in:

    spec = resolve(config_lib.load('experiments/mnist1d_mlp.py'))
    spec.study.num_trials, spec.space.paths, spec.base.train.keep_best
    trial = spec.trial({'optimizer.learning_rate': 3e-3})   # a TrialSpec, checked like the base
    trial.program, trial.hparams, trial.group_key

`Program` is what shapes a trial's compiled program (trials with equal programs and group keys
share one compilation and can run stacked); `HParams` are its traced float hyperparameters. The
defaults of the training config live in the dataclasses below; a dataset's or a model family's
own fields belong to it (jaxplay.data, jaxplay.models), a workload's to the workload.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from jaxplay import config as config_lib
from jaxplay import designers, spaces, workloads
from jaxplay.config import WARMUP_WARNING_FRACTION, run_steps, warmup_warning
from jaxplay.errors import ConfigError
from jaxplay.spec.sections import (
    COMPUTE_DTYPES,
    DEFAULT_TRAIN_EVAL_EXAMPLES,
    MAX_STEPS,
    MIN_EVAL_BATCH_SIZE,
    MODES,
    PIPELINES,
    STUDY_NAME_RULE,
    TOP_LEVEL,
    DataSpec,
    Fields,
    ModelSpec,
    OptimizerSpec,
    ScheduleSpec,
    StudySettings,
    TrainSpec,
    check_period_memory,
    check_search_range,
    check_study_name,
    check_top_level,
    data_section,
    field_range,
    model_section,
    optimizer_section,
    require_section,
    required,
    schedule_section,
    study_settings,
    train_section,
)
from jaxplay.values import is_int


@dataclasses.dataclass(frozen=True)
class Program:
    """Everything that shapes the compiled train program; trials with equal Programs share it."""

    optimizer: str
    nesterov: bool
    schedule: str
    steps: int
    eval_every: int
    batch_size: int
    eval_batch_size: int
    dropout: bool  # False compiles dropout out entirely (no random bits drawn)
    pipeline: str = "device"
    augment: str = "none"
    compute_dtype: str = "float32"
    ema: bool = False  # an exponential moving average of the parameters, evaluated beside them
    keep_predictions: int = 0  # validation examples whose predictions each evaluation returns


@dataclasses.dataclass(frozen=True)
class HParams:
    """A trial's float hyperparameters: traced float32 arrays in the compiled program, so trials
    that differ only in them share it. Every trial carries every one (one pytree structure)."""

    learning_rate: float
    momentum: float
    b1: float
    b2: float
    rho: float
    eps: float
    weight_decay: float
    warmup_steps: float
    decay_steps: float
    min_lr_factor: float
    grad_clip_norm: float
    label_smoothing: float
    dropout: float
    ema_decay: float

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class TrialSpec:
    """One trial's training config, resolved: what the trainer reads, and nothing else."""

    seed: int
    workload: str
    data: DataSpec
    model: ModelSpec
    optimizer: OptimizerSpec
    schedule: ScheduleSpec
    train: TrainSpec
    objective: str
    mode: str
    searched: frozenset = frozenset()  # the study's searched paths (shape the program: dropout)
    params: Mapping = dataclasses.field(default_factory=dict)  # this trial's values

    @property
    def program(self) -> Program:
        t, o = self.train, self.optimizer
        return Program(
            optimizer=o.name,
            nesterov=o.nesterov,
            schedule=self.schedule.name,
            steps=t.steps,
            eval_every=t.eval_every,
            batch_size=self.data.batch_size,
            eval_batch_size=t.eval_batch_size,
            # A searched dropout keeps the stochastic path for every trial: 0 and 0.3 share it.
            dropout=self.model.dropout > 0 or "model.dropout" in self.searched,
            pipeline=self.data.pipeline,
            augment=self.data.augment,
            compute_dtype=t.compute_dtype,
            ema=t.ema_decay > 0,
            keep_predictions=t.keep_predictions,
        )

    @property
    def hparams(self) -> HParams:
        o, s = self.optimizer, self.schedule
        return HParams(
            learning_rate=o.learning_rate,
            momentum=o.momentum,
            b1=o.b1,
            b2=o.b2,
            rho=o.rho,
            eps=o.eps,
            weight_decay=o.weight_decay,
            warmup_steps=float(s.warmup_steps),
            decay_steps=float(s.decay_steps),
            min_lr_factor=float(s.min_lr_factor),
            grad_clip_norm=float(self.train.grad_clip_norm),
            label_smoothing=float(self.train.label_smoothing),
            dropout=float(self.model.dropout),
            ema_decay=float(self.train.ema_decay),
        )

    @property
    def group_key(self) -> tuple:
        """Trials with equal keys share one compilation and can be batched: they differ only in
        float hyperparameters and seeds."""
        return (
            self.program,
            self.workload,
            self.data,
            self.model.shape_key,
            self.train.train_eval_examples,
        )

    def replace(self, **sections) -> TrialSpec:
        """A copy with some sections replaced (e.g. train=dataclasses.replace(trial.train, ...))."""
        return dataclasses.replace(self, **sections)


@dataclasses.dataclass(frozen=True, eq=False)
class StudySpec:
    """A study, resolved: its settings, search space, base trial and the config as JSON."""

    study: StudySettings
    space: spaces.SearchSpace
    base: TrialSpec
    tree: Mapping  # the config as plain JSON types: what the store records and hashes

    @property
    def searched(self) -> frozenset:
        """Dotted paths of the searched hyperparameters (and of manually listed ones)."""
        listed = {path for trial in self.study.trials for path in trial}
        return frozenset(self.space.paths) | self.space.config_paths | frozenset(listed)

    def trial(self, params: Mapping) -> TrialSpec:
        """The base config with a trial's values, checked as the base was. A value may set a
        hyperparameter only: never a study setting or the code to run (`workload`), since trial
        values also come back from the store."""
        for path in params:
            problem = config_lib.not_a_hyperparameter(path)
            if problem:
                raise ConfigError(problem)
        tree = config_lib.apply(self.tree, dict(params))
        return _trial(tree, self.study, self.searched, dict(params))

    def designer(self):
        """The study's designer (where its trial points come from)."""
        s = self.study
        return designers.make(
            s.algorithm, self.space, s.seed, mode=s.mode, trials=s.trials,
            acquisition=s.acquisition, initial_trials=s.initial_trials,
        )  # fmt: skip

    def hash(self) -> str:
        return config_lib.config_hash(self.tree)


def resolve(config) -> StudySpec:
    """Checks a study config (a ConfigDict or its JSON tree) and resolves it, before anything
    trains: the study settings, the search space against the base config, the designer's own
    settings, the base training config and the workload (its data is loaded to check sizes)."""
    tree = config_lib.to_tree(config)
    check_top_level(tree)
    study = study_settings(tree)
    train = require_section(tree, "train", "c.train = dict(steps=1000, eval_every=100)")
    steps = required(train, "train", "steps")
    if not is_int(steps) or steps < 1:
        raise ConfigError(f"train.steps: must be an int >= 1 (got {steps!r}); e.g. steps=1000")
    if steps > MAX_STEPS:
        raise ConfigError(
            f"train.steps: must be <= {MAX_STEPS} (got {steps}); the trainer counts steps in int32"
        )
    eval_every = required(train, "train", "eval_every")
    if not is_int(eval_every) or eval_every < 1:
        raise ConfigError(
            f"train.eval_every: must be an int >= 1 (got {eval_every!r}); e.g. eval_every={steps}"
        )
    # A prepended warmup lengthens the run: _trial checks eval_every against that length.
    if steps % eval_every and not _prepends_warmup(tree):
        near = " or ".join(map(str, config_lib.nearest_divisors(steps, eval_every)))
        raise ConfigError(
            f"train.eval_every: must divide train.steps={steps} (got {eval_every}); use {near}"
        )
    base = {k: v for k, v in tree.items() if k not in config_lib.STUDY_SECTIONS}
    space = spaces.parse(tree.get("search"), base=base)
    _check_search(space, tree)
    if study.algorithm == "manual":
        _check_manual_trials(tree, study.trials)
    spec = StudySpec(study, space, None, tree)
    designer = spec.designer()  # checks the algorithm's own settings
    limit = getattr(designer, "max_trials", None)
    if study.algorithm in ("grid", "manual") and study.num_trials and study.num_trials > limit:
        what = "grid has only" if study.algorithm == "grid" else "study.trials lists only"
        raise ConfigError(
            f"study.num_trials: {what} {limit} points; set num_trials <= {limit} or None"
        )
    _check_branches(spec)
    trial = _trial(tree, study, spec.searched, {})
    _check_prepended_warmup_search(space, trial)
    return dataclasses.replace(spec, base=trial)


def _prepends_warmup(tree) -> bool:
    schedule = tree.get("schedule")
    return isinstance(schedule, Mapping) and schedule.get("prepend_warmup") is True


def _check_prepended_warmup_search(space: spaces.SearchSpace, base: TrialSpec) -> None:
    """A searched warmup that is prepended sets each trial's length (train.steps + warmup_steps,
    a program of its own): it takes listed values, each keeping eval_every a divisor of that
    length, checked before anything trains."""
    if not base.schedule.prepend_warmup:
        return
    path = "schedule.warmup_steps"
    for param in (p for p in space if p.config_path == path):
        if param.values is None:
            raise ConfigError(
                f"search.{param.path}: with schedule.prepend_warmup each warmup length is a run "
                f"length of its own (train.steps + warmup_steps); search it over listed values, "
                "e.g. spaces.discrete([0, 100, 1000])"
            )
        steps, every = base.train.steps - base.schedule.warmup_steps, base.train.eval_every
        for value in param.values:
            if not is_int(value) or value < 0 or (steps + value) % every:
                raise ConfigError(
                    f"search.{param.path}: value {value!r} must be an int >= 0 that keeps "
                    f"train.eval_every={every} a divisor of the run's train.steps={steps} + "
                    "warmup_steps (schedule.prepend_warmup); use multiples of "
                    f"{every // math.gcd(every, steps)}"
                )


def _prepend_warmup(train: TrainSpec, schedule: ScheduleSpec) -> TrainSpec:
    """The trial's train section with steps the whole run: the prepended warmup, then the
    schedule's own train.steps (the trainer, its checkpoints, progress and ETA count the run)."""
    run = train.steps + schedule.warmup_steps
    if run % train.eval_every:
        near = " or ".join(map(str, config_lib.nearest_divisors(run, train.eval_every)))
        raise ConfigError(
            f"train.eval_every: must divide the run's {run} steps (train.steps={train.steps} "
            f"after schedule.warmup_steps={schedule.warmup_steps} prepended; got "
            f"{train.eval_every}); use {near}, or a warmup_steps that keeps the sum a multiple "
            f"of {train.eval_every}"
        )
    return dataclasses.replace(train, steps=run)


def _check_branches(spec: StudySpec) -> None:
    """Each branch of a conditional space (jaxplay.spaces.branches) resolves to a valid training
    config, checked now rather than when a trial first takes it: a trial at the middle of the
    branch's ranges, with its fixed values."""
    space = spec.space
    for switch in (p for p in space if p.path in space.switches):
        members = [q for q in space if q.when and q.when[0] == switch.path]
        for branch in switch.values:
            params = {switch.path: branch}
            params.update({q.path: q.from_unit(0.5) for q in members if q.when[1] == branch})
            try:
                spec.trial(space.complete(params))
            except ConfigError as e:
                raise ConfigError(f"search.{switch.path} branch {branch!r}: {e}") from None


def _check_manual_trials(tree, trials) -> None:
    """study.trials of a manual study: a non-empty list of {dotted config path: value}."""
    example = (
        "c.study.trials = [{'optimizer.learning_rate': 0.01}, {'optimizer.learning_rate': 0.03}]"
    )
    if not isinstance(trials, (list, tuple)) or not trials:
        raise ConfigError(
            "study.trials: algorithm='manual' needs a non-empty list of trials (got "
            f"{trials!r}); e.g. {example}"
        )
    for i, trial in enumerate(trials):
        if not isinstance(trial, Mapping):
            raise ConfigError(
                f"study.trials[{i}]: must be a dict of dotted config paths (got {trial!r}); "
                f"e.g. {example}"
            )
        for path in trial:
            problem = config_lib.not_a_hyperparameter(path)
            if problem:
                raise ConfigError(f"study.trials[{i}]: {problem}")
        try:
            config_lib.apply(tree, dict(trial))
        except ConfigError as e:
            raise ConfigError(f"study.trials[{i}]: {e}") from None


def _check_search(space: spaces.SearchSpace, tree) -> None:
    """What a search may set (hyperparameters only) and the values it may give (each field's
    range: a bound outside it is refused here, not when a trial reaches it)."""
    model = tree.get("model")
    model_name = model.get("name") if isinstance(model, Mapping) else None
    workload = tree.get("workload", workloads.DEFAULT)
    for param in space:
        problem = config_lib.not_a_hyperparameter(param.config_path)
        if problem:
            raise ConfigError(f"search.{param.path}: {problem}; it cannot be searched")
        bounds = field_range(param.config_path, workload, model_name)
        if bounds is not None:
            check_search_range(param, bounds)


def _trial(tree, study: StudySettings, searched: frozenset, params: dict) -> TrialSpec:
    """The training config of one trial (the base when params is empty), checked in full."""
    seed = tree.get("seed", 0)
    if not is_int(seed) or seed < 0:
        raise ConfigError(f"seed: must be an int >= 0 (got {seed!r}); e.g. c.seed = 0")
    data = data_section(
        require_section(tree, "data", "c.data = dict(name='mnist1d', batch_size=128)")
    )
    model = tree.get("model")
    model_spec = model_section(model) if isinstance(model, Mapping) else ModelSpec()
    optimizer = optimizer_section(
        require_section(tree, "optimizer", "c.optimizer = dict(name='adam', learning_rate=1e-3)")
    )
    # Optional: a study file without one trains at a constant learning rate (DEFAULT_SCHEDULE).
    schedule = schedule_section(tree.get("schedule"), tree["train"]["steps"])
    train = train_section(tree["train"], data.batch_size)
    if schedule.prepend_warmup:
        train = _prepend_warmup(train, schedule)
    trial = TrialSpec(
        seed=int(seed),
        workload=tree.get("workload", workloads.DEFAULT),
        data=data,
        model=model_spec,
        optimizer=optimizer,
        schedule=schedule,
        train=train,
        objective=study.objective,
        mode=study.mode,
        searched=searched,
        params=params,
    )
    _check_workload(trial, model)
    return trial


def _check_workload(trial: TrialSpec, model_section) -> None:
    """The workload's own checks, with its data loaded: the objective is one of its metrics in
    the right direction, and a batch fits in the training set."""
    if trial.workload == workloads.DEFAULT and model_section is None:
        raise ConfigError("model: missing; add e.g. c.model = dict(name='mlp', width=256, depth=2)")
    instance = workloads.bind(trial)
    if trial.train.keep_predictions and not hasattr(instance.task, "predictions"):
        raise ConfigError(
            f"train.keep_predictions: workload {trial.workload!r}'s task has no predictions("
            "outputs, targets) method; add one (see jaxplay.workloads.Classification) or set 0"
        )
    modes = instance.task.metrics_mode
    splits = ("val", "train", *(("val_ema",) if trial.train.ema_decay > 0 else ()))
    allowed = [f"{split}/{m}" for split in splits for m in modes]
    if trial.objective not in allowed:
        raise ConfigError(
            f"study.objective: unknown metric {trial.objective!r}; use one of {allowed}"
        )
    better = modes[trial.objective.split("/", 1)[1]]
    if trial.mode != better:
        raise ConfigError(
            f"study.mode: {trial.objective} is better when "
            f"{'lower' if better == 'min' else 'higher'}; set study.mode={better!r}"
        )
    num_train = len(instance.dataset.x_train)
    if trial.data.batch_size > num_train:
        raise ConfigError(
            f"data.batch_size: {trial.data.batch_size} exceeds the {num_train} training examples"
        )
    check_period_memory(trial.train, trial.data, _example_bytes(instance.dataset))


def _example_bytes(dataset) -> int:
    """Bytes of one training example and its target, as a streamed batch holds them."""
    return sum(
        int(np.dtype(a.dtype).itemsize * math.prod(a.shape[1:]))
        for a in (dataset.x_train, dataset.y_train)
    )


__all__ = [
    "COMPUTE_DTYPES", "DEFAULT_TRAIN_EVAL_EXAMPLES", "MAX_STEPS", "MIN_EVAL_BATCH_SIZE", "MODES",
    "PIPELINES", "STUDY_NAME_RULE", "TOP_LEVEL", "WARMUP_WARNING_FRACTION", "DataSpec", "Fields",
    "HParams", "ModelSpec", "OptimizerSpec", "Program", "ScheduleSpec", "StudySettings",
    "StudySpec", "TrainSpec", "TrialSpec", "check_study_name", "resolve", "run_steps",
    "warmup_warning",
]  # fmt: skip
