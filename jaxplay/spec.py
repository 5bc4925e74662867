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
import difflib
import json
from collections.abc import Mapping

from jaxplay import config as config_lib
from jaxplay import designers, optim, spaces, workloads
from jaxplay.data.augment import AUGMENTATIONS
from jaxplay.errors import ConfigError
from jaxplay.values import is_int, is_real

MODES = ("min", "max")
PIPELINES = ("device", "grain")
COMPUTE_DTYPES = ("float32", "bfloat16")
# Training examples scored each period (a fixed random subset when the train split is larger):
# enough for a train/validation gap, without a full pass over a large corpus per evaluation.
DEFAULT_TRAIN_EVAL_EXAMPLES = 10_000
# Evaluation batches: the playbook evaluates with batches at least as large as training ones;
# 4096 keeps a small validation split in one batch (loops of matmuls are slow on XLA:CPU).
MIN_EVAL_BATCH_SIZE = 4096
_STUDY_EXAMPLE = (
    "c.study = dict(name='my-study', objective='val/error', mode='min', "
    "algorithm='quasirandom', num_trials=16, seed=0)"
)


class Fields(tuple):
    """A section's own fields as (name, value) pairs: read-only and hashable, so it can be part of
    a program's key; lists become tuples."""

    def __new__(cls, mapping: Mapping | None = None):
        return super().__new__(
            cls, sorted((str(k), _frozen(v)) for k, v in (mapping or {}).items())
        )

    def __getitem__(self, key):
        if not isinstance(key, str):
            return super().__getitem__(key)
        for k, v in self.items():
            if k == key:
                return v
        raise KeyError(key)

    def get(self, key, default=None):
        return dict(self.items()).get(key, default)

    def keys(self) -> list[str]:
        return [k for k, _ in self.items()]

    def items(self) -> list[tuple]:
        return list(tuple.__iter__(self))


def _frozen(value):
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Mapping):
        return Fields(value)
    return value


class _Section:
    """Attribute access to a section's own fields (`config.model.width` in a workload's code)."""

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        options = dict(self.__dict__["options"].items())
        if name not in options:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        return options[name]

    def get(self, key, default=None):
        if key in {f.name for f in dataclasses.fields(self)} and key != "options":
            return getattr(self, key)
        return self.options.get(key, default)

    def __contains__(self, key) -> bool:
        return self.get(key, _MISSING) is not _MISSING


_MISSING = object()


@dataclasses.dataclass(frozen=True)
class DataSpec(_Section):
    """`config.data`: the batch size, how data reaches the device, and the dataset's own fields."""

    name: str | None
    batch_size: int
    pipeline: str = "device"  # 'device': on the device, batches gathered there; 'grain': streamed
    prefetch: int = 2  # grain: periods prepared ahead
    read_threads: int = 8  # grain: host threads reading examples
    augment: str = "none"  # jaxplay.data.augment.AUGMENTATIONS, applied on the device
    options: Fields = Fields()


@dataclasses.dataclass(frozen=True)
class ModelSpec(_Section):
    """`config.model`: the family (built-in workload) and its own fields; dropout is traced."""

    name: str | None = None
    dropout: float = 0.0
    options: Fields = Fields()

    @property
    def shape_key(self) -> tuple:
        """What shapes the model (everything but the traced dropout rate)."""
        return (self.name, self.options)


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """`config.optimizer` with the optimizer's defaults (jaxplay.optim.OPTIMIZERS) filled in."""

    name: str
    learning_rate: float
    momentum: float
    b1: float
    b2: float
    eps: float
    weight_decay: float
    nesterov: bool = False


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
    """`config.schedule`: linear warmup from 0, then the decay over the last decay_steps."""

    name: str
    warmup_steps: int = 0
    decay_steps: int = 0  # 0: decay over every step after the warmup
    min_lr_factor: float = 0.0


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """`config.train`: length, evaluation, checkpoints, clipping and divergence."""

    steps: int
    eval_every: int
    eval_batch_size: int
    keep_best: int = 3
    checkpoint_every_secs: float = 60.0  # how much training a crash may lose
    grad_clip_norm: float = 0.0  # 0: off (the unclipped norm is logged either way)
    label_smoothing: float = 0.0
    train_eval_examples: int = DEFAULT_TRAIN_EVAL_EXAMPLES
    compute_dtype: str = "float32"
    divergence_factor: float = 100.0  # infeasible once a batch loss exceeds this x the initial loss


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """`config.study`: what the study optimizes and how its trials are chosen."""

    name: str
    objective: str
    mode: str
    algorithm: str
    seed: int
    num_trials: int | None
    notes: str = ""
    trials: tuple = ()  # algorithm='manual': {dotted path: value} per trial
    acquisition: str | None = None  # 'gp': 'ei' or 'ucb'
    initial_trials: int | None = None  # 'gp': quasi-random trials first
    parent: Mapping | None = None  # a derived study's lineage (jaxplay.tuning)


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


@dataclasses.dataclass(frozen=True)
class HParams:
    """A trial's float hyperparameters: traced float32 arrays in the compiled program, so trials
    that differ only in them share it. Every trial carries every one (one pytree structure)."""

    learning_rate: float
    momentum: float
    b1: float
    b2: float
    eps: float
    weight_decay: float
    warmup_steps: float
    decay_steps: float
    min_lr_factor: float
    grad_clip_norm: float
    label_smoothing: float
    dropout: float

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
        )

    @property
    def hparams(self) -> HParams:
        o, s = self.optimizer, self.schedule
        return HParams(
            learning_rate=o.learning_rate,
            momentum=o.momentum,
            b1=o.b1,
            b2=o.b2,
            eps=o.eps,
            weight_decay=o.weight_decay,
            warmup_steps=float(s.warmup_steps),
            decay_steps=float(s.decay_steps),
            min_lr_factor=float(s.min_lr_factor),
            grad_clip_norm=float(self.train.grad_clip_norm),
            label_smoothing=float(self.train.label_smoothing),
            dropout=float(self.model.dropout),
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
        return frozenset(self.space.paths) | frozenset(listed)

    def trial(self, params: Mapping) -> TrialSpec:
        """The base config with a trial's values, checked as the base was."""
        tree = config_lib.apply(self.tree, dict(params))
        return _trial(tree, self.study, self.searched, dict(params))

    def designer(self):
        """The study's designer (where its trial points come from)."""
        s = self.study
        return designers.make(
            s.algorithm, self.space, s.seed, mode=s.mode, trials=s.trials,
            acquisition=s.acquisition, initial_trials=s.initial_trials,
        )  # fmt: skip

    def to_json(self) -> str:
        return config_lib.dumps(self.tree)

    def hash(self) -> str:
        return config_lib.config_hash(self.tree)


def resolve(config) -> StudySpec:
    """Checks a study config (a ConfigDict or its JSON tree) and resolves it, before anything
    trains: the study settings, the search space against the base config, the designer's own
    settings, the base training config and the workload (its data is loaded to check sizes)."""
    tree = config_lib.to_tree(config)
    study = _study(tree)
    train = _section(tree, "train", "c.train = dict(steps=1000, eval_every=100)")
    steps = _required(train, "train", "steps")
    if not is_int(steps) or steps < 1:
        raise ConfigError(f"train.steps: must be an int >= 1 (got {steps!r}); e.g. steps=1000")
    eval_every = _required(train, "train", "eval_every")
    if not is_int(eval_every) or eval_every < 1:
        raise ConfigError(
            f"train.eval_every: must be an int >= 1 (got {eval_every!r}); e.g. eval_every={steps}"
        )
    if steps % eval_every:
        near = " or ".join(map(str, config_lib.nearest_divisors(steps, eval_every)))
        raise ConfigError(
            f"train.eval_every: must divide train.steps={steps} (got {eval_every}); use {near}"
        )
    base = {k: v for k, v in tree.items() if k not in config_lib.STUDY_SECTIONS}
    space = spaces.parse(tree.get("search"), base=base)
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
    trial = _trial(tree, study, spec.searched, {})
    return dataclasses.replace(spec, base=trial)


# ---------------------------------------------------------------------------------------------
# Sections


def _study(tree) -> StudySettings:
    study = _section(tree, "study", _STUDY_EXAMPLE)
    name = _required(study, "study", "name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"study.name: must be a non-empty string (got {name!r}); e.g. 'mnist1d-mlp-width'"
        )
    objective = _required(study, "study", "objective")
    if not isinstance(objective, str) or not objective.strip():
        raise ConfigError(
            f"study.objective: must be the name of a metric (got {objective!r}); e.g. 'val/error'"
        )
    mode = _required(study, "study", "mode")
    if mode not in MODES:
        raise ConfigError(
            f"study.mode: must be 'min' or 'max' (got {mode!r}); use 'min' for losses and error "
            "rates, 'max' for accuracies"
        )
    algorithm = _required(study, "study", "algorithm")
    if algorithm not in designers.ALGORITHMS:
        raise ConfigError(
            f"study.algorithm: unknown algorithm {algorithm!r}; use one of "
            f"{', '.join(map(repr, designers.ALGORITHMS))}"
        )
    seed = _required(study, "study", "seed")
    if not is_int(seed) or seed < 0:
        # Negative seeds are rejected because numpy's seed sequences refuse them.
        raise ConfigError(f"study.seed: must be an int >= 0 (got {seed!r}); e.g. seed=0")
    num_trials = _required(study, "study", "num_trials", allow_none=True)
    if num_trials is None and algorithm not in ("grid", "manual"):
        raise ConfigError(
            "study.num_trials: must be an int >= 1 (got None); only algorithm='grid' or 'manual' "
            "may leave it None to mean every trial"
        )
    if num_trials is not None and (not is_int(num_trials) or num_trials < 1):
        raise ConfigError(f"study.num_trials: must be an int >= 1 (got {num_trials!r}); e.g. 16")
    trials = study.get("trials") or ()
    return StudySettings(
        name=name,
        objective=objective,
        mode=mode,
        algorithm=algorithm,
        seed=int(seed),
        num_trials=num_trials,
        notes=study.get("notes") or "",
        trials=tuple(dict(t) if isinstance(t, Mapping) else t for t in trials)
        if isinstance(trials, (list, tuple))
        else trials,
        acquisition=study.get("acquisition"),
        initial_trials=study.get("initial_trials"),
        parent=study.get("parent") or None,
    )


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
            if path.split(".")[0] in config_lib.STUDY_SECTIONS:
                raise ConfigError(
                    f"study.trials[{i}]: {path!r} is a study setting, not a hyperparameter"
                )
        try:
            config_lib.apply(tree, dict(trial))
        except ConfigError as e:
            raise ConfigError(f"study.trials[{i}]: {e}") from None


def _trial(tree, study: StudySettings, searched: frozenset, params: dict) -> TrialSpec:
    """The training config of one trial (the base when params is empty), checked in full."""
    seed = tree.get("seed", 0)
    if not is_int(seed) or seed < 0:
        raise ConfigError(f"seed: must be an int >= 0 (got {seed!r}); e.g. c.seed = 0")
    data = _data(_section(tree, "data", "c.data = dict(name='mnist1d', batch_size=128)"))
    model = tree.get("model")
    trial = TrialSpec(
        seed=int(seed),
        workload=tree.get("workload", workloads.DEFAULT),
        data=data,
        model=_model(model) if isinstance(model, Mapping) else ModelSpec(),
        optimizer=_optimizer(
            _section(tree, "optimizer", "c.optimizer = dict(name='adam', learning_rate=1e-3)")
        ),
        schedule=_schedule(
            _section(tree, "schedule", "c.schedule = dict(name='cosine', warmup_steps=100)"),
            tree["train"]["steps"],
        ),
        train=_train(tree["train"], data.batch_size),
        objective=study.objective,
        mode=study.mode,
        searched=searched,
        params=params,
    )
    _check_workload(trial, model)
    return trial


def _data(section) -> DataSpec:
    batch = section.get("batch_size")
    if not is_int(batch) or batch < 1:
        raise ConfigError(f"data.batch_size: must be a positive int (got {batch!r})")
    pipeline = section.get("pipeline", "device")
    if pipeline not in PIPELINES:
        raise ConfigError(
            f"data.pipeline: unknown {pipeline!r}; use 'device' (the dataset lives on the "
            "device) or 'grain' (streamed from the host)"
        )
    augment = section.get("augment", "none")
    if augment not in AUGMENTATIONS:
        raise ConfigError(f"data.augment: unknown {augment!r}; use one of {list(AUGMENTATIONS)}")
    typed = {f.name for f in dataclasses.fields(DataSpec)} - {"options"}
    return DataSpec(
        name=section.get("name"),
        batch_size=int(batch),
        pipeline=pipeline,
        prefetch=_int(section, "data", "prefetch", 2, minimum=1),
        read_threads=_int(section, "data", "read_threads", 8, minimum=1),
        augment=augment,
        options=Fields({k: v for k, v in section.items() if k not in typed}),
    )


def _model(section) -> ModelSpec:
    dropout = section.get("dropout", 0.0)
    if not is_real(dropout) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout: a rate in [0, 1) (got {dropout})")
    return ModelSpec(
        name=section.get("name"),
        dropout=float(dropout),
        options=Fields({k: v for k, v in section.items() if k not in ("name", "dropout")}),
    )


def _optimizer(section) -> OptimizerSpec:
    name = section.get("name")
    if name not in optim.OPTIMIZERS:
        raise ConfigError(
            f"optimizer.name: unknown optimizer {name!r}; use one of {sorted(optim.OPTIMIZERS)}"
        )
    allowed = set(optim.OPTIMIZERS[name]) | {"name"} | ({"nesterov"} if name == "sgd" else set())
    for key in section:
        if key not in allowed:
            raise ConfigError(
                f"optimizer.{key}: {name!r} has no hyperparameter {key!r}; "
                f"it takes {sorted(allowed - {'name'})}"
            )
    # Every trial carries every float hyperparameter; an optimizer's own defaults win over the
    # shared ones, and the study file's values over both.
    values = {**optim.HPARAM_DEFAULTS, **optim.OPTIMIZERS[name]}
    values.update({k: float(v) for k, v in section.items() if k in optim.HPARAM_DEFAULTS})
    return OptimizerSpec(
        name=name,
        nesterov=bool(section.get("nesterov", False)),
        **{f: values[f] for f in ("learning_rate", "momentum", "b1", "b2", "eps", "weight_decay")},
    )


def _schedule(section, steps: int) -> ScheduleSpec:
    name = section.get("name")
    if name not in optim.SCHEDULES:
        raise ConfigError(
            f"schedule.name: unknown schedule {name!r}; use one of {list(optim.SCHEDULES)}"
        )
    fields = ("name", "warmup_steps", "decay_steps", "min_lr_factor")
    for key in section:
        if key not in fields:
            raise ConfigError(
                f"schedule.{key}: unknown field; a schedule takes {', '.join(fields)}"
            )
    warmup = section.get("warmup_steps", 0)
    if not 0 <= warmup < steps:
        raise ConfigError(
            f"schedule.warmup_steps: must be in [0, train.steps={steps}) (got {warmup})"
        )
    decay = section.get("decay_steps", 0) or 0
    if not 0 <= decay <= steps - warmup:
        raise ConfigError(
            "schedule.decay_steps: must be in [0, train.steps - warmup_steps = "
            f"{steps - warmup}] (got {decay}); 0 decays over every step after the warmup"
        )
    return ScheduleSpec(name, warmup, decay, float(section.get("min_lr_factor", 0.0)))


def _train(section, batch_size: int) -> TrainSpec:
    known = {f.name for f in dataclasses.fields(TrainSpec)}
    for key in section:
        if key not in known:
            raise ConfigError(
                f"train.{key}: unknown field{_did_you_mean(key, known)}; train takes "
                f"{', '.join(sorted(known))}"
            )
    defaults = TrainSpec(steps=1, eval_every=1, eval_batch_size=1)
    values = {k: section.get(k, getattr(defaults, k)) for k in known}
    values["eval_batch_size"] = section.get("eval_batch_size", max(batch_size, MIN_EVAL_BATCH_SIZE))
    if values["compute_dtype"] not in COMPUTE_DTYPES:
        raise ConfigError(
            f"train.compute_dtype: unknown {values['compute_dtype']!r}; use one of "
            f"{list(COMPUTE_DTYPES)}"
        )
    if values["train_eval_examples"] < 1:
        raise ConfigError(
            "train.train_eval_examples: evaluate at least 1 training example each period"
        )
    if values["keep_best"] < 1:
        raise ConfigError(
            f"train.keep_best: keep at least 1 best checkpoint (got {values['keep_best']})"
        )
    if values["eval_batch_size"] < batch_size:
        raise ConfigError(
            "train.eval_batch_size: the playbook evaluates with batches at least as large as "
            f"training batches; use >= data.batch_size={batch_size}"
        )
    if values["divergence_factor"] <= 1:
        raise ConfigError(
            "train.divergence_factor: must be > 1 (a trial is infeasible once its batch loss "
            "exceeds this multiple of the initial loss)"
        )
    for key in ("checkpoint_every_secs", "grad_clip_norm", "label_smoothing", "divergence_factor"):
        values[key] = float(values[key])
    return TrainSpec(**values)


def _check_workload(trial: TrialSpec, model_section) -> None:
    """The workload's own checks, with its data loaded: the objective is one of its metrics in
    the right direction, and a batch fits in the training set."""
    if trial.workload == workloads.DEFAULT and model_section is None:
        raise ConfigError("model: missing; add e.g. c.model = dict(name='mlp', width=256, depth=2)")
    instance = workloads.bind(trial)
    modes = instance.task.metrics_mode
    allowed = [f"{split}/{m}" for split in ("val", "train") for m in modes]
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


# ---------------------------------------------------------------------------------------------
# Helpers


def _section(tree, name: str, example: str) -> Mapping:
    """tree[name], which must be a section."""
    section = tree.get(name)
    if not isinstance(section, Mapping):
        got = "missing" if section is None else f"must be a section (got {section!r})"
        raise ConfigError(f"{name}: {got}; add e.g. {example}")
    return section


def _required(section, section_name: str, key: str, allow_none: bool = False):
    """section[key], naming a close misspelling when it is missing."""
    if key not in section or (section[key] is None and not allow_none):
        hint = difflib.get_close_matches(key, [str(k) for k in section if k != key], n=1)
        found = f" (found {hint[0]!r}: a typo?)" if hint else ""
        raise ConfigError(f"{section_name}.{key}: missing{found}; set {section_name}.{key}")
    return section[key]


def _int(section, section_name: str, key: str, default: int, minimum: int) -> int:
    value = section.get(key, default)
    if not is_int(value) or value < minimum:
        raise ConfigError(f"{section_name}.{key}: must be an int >= {minimum} (got {value!r})")
    return int(value)


def _did_you_mean(name, choices) -> str:
    close = difflib.get_close_matches(str(name), sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parent_link(tree: Mapping) -> Mapping | None:
    """study.parent of a config tree (a derived study's lineage), or None."""
    return ((tree.get("study") or {}).get("parent")) or None


__all__ = [
    "DataSpec", "HParams", "ModelSpec", "OptimizerSpec", "Program", "ScheduleSpec",
    "StudySettings", "StudySpec", "TrainSpec", "TrialSpec", "json", "resolve",
]  # fmt: skip
