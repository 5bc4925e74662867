"""The sections of a study config, resolved: frozen, typed dataclasses with every training
default in one place, and the functions that check a section of the config's JSON tree and
build its dataclass (each names the field and the fix when it refuses)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping

from jaxplay import designers, optim
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
        if isinstance(key, str):
            return dict(self.items())[key]
        return super().__getitem__(key)  # tuple indexing

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
        try:
            return self.__dict__["options"][name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}") from None

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


def study_settings(tree) -> StudySettings:
    study = require_section(tree, "study", _STUDY_EXAMPLE)
    name = required(study, "study", "name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"study.name: must be a non-empty string (got {name!r}); e.g. 'mnist1d-mlp-width'"
        )
    objective = required(study, "study", "objective")
    if not isinstance(objective, str) or not objective.strip():
        raise ConfigError(
            f"study.objective: must be the name of a metric (got {objective!r}); e.g. 'val/error'"
        )
    mode = required(study, "study", "mode")
    if mode not in MODES:
        raise ConfigError(
            f"study.mode: must be 'min' or 'max' (got {mode!r}); use 'min' for losses and error "
            "rates, 'max' for accuracies"
        )
    algorithm = required(study, "study", "algorithm")
    if algorithm not in designers.ALGORITHMS:
        raise ConfigError(
            f"study.algorithm: unknown algorithm {algorithm!r}; use one of "
            f"{', '.join(map(repr, designers.ALGORITHMS))}"
        )
    seed = required(study, "study", "seed")
    if not is_int(seed) or seed < 0:
        # Negative seeds are rejected because numpy's seed sequences refuse them.
        raise ConfigError(f"study.seed: must be an int >= 0 (got {seed!r}); e.g. seed=0")
    num_trials = required(study, "study", "num_trials", allow_none=True)
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


def data_section(section) -> DataSpec:
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


def model_section(section) -> ModelSpec:
    dropout = section.get("dropout", 0.0)
    if not is_real(dropout) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout: a rate in [0, 1) (got {dropout})")
    return ModelSpec(
        name=section.get("name"),
        dropout=float(dropout),
        options=Fields({k: v for k, v in section.items() if k not in ("name", "dropout")}),
    )


def optimizer_section(section) -> OptimizerSpec:
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


def schedule_section(section, steps: int) -> ScheduleSpec:
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


def train_section(section, batch_size: int) -> TrainSpec:
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


def require_section(tree, name: str, example: str) -> Mapping:
    """tree[name], which must be a section."""
    section = tree.get(name)
    if not isinstance(section, Mapping):
        got = "missing" if section is None else f"must be a section (got {section!r})"
        raise ConfigError(f"{name}: {got}; add e.g. {example}")
    return section


def required(section, section_name: str, key: str, allow_none: bool = False):
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
