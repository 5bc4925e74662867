"""The sections of a study config, resolved: frozen, typed dataclasses with every training
default in one place, and the functions that check a section of the config's JSON tree and
build its dataclass (each names the field and the fix when it refuses)."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import string
from collections.abc import Mapping

from jaxplay import config as config_lib
from jaxplay import designers, models, optim, workloads
from jaxplay.data.augment import AUGMENTATIONS
from jaxplay.errors import ConfigError
from jaxplay.values import is_int, is_real

MODES = ("min", "max")
PIPELINES = ("device", "grain")
COMPUTE_DTYPES = ("float32", "bfloat16")
DEFAULT_TRAIN_EVAL_EXAMPLES = config_lib.DEFAULT_TRAIN_EVAL_EXAMPLES
# Evaluation batches: the playbook evaluates with batches at least as large as training ones;
# 4096 keeps a small validation split in one batch (loops of matmuls are slow on XLA:CPU).
MIN_EVAL_BATCH_SIZE = 4096
# What a study file may set at its top level; anything else is read by nothing (a custom workload
# reads its own fields from config.model and config.data, whose extra keys it keeps).
TOP_LEVEL = (
    "seed",
    "workload",
    "data",
    "model",
    "optimizer",
    "schedule",
    "train",
    "study",
    "search",
)

# Study names: the same rule on every store (Study.name is String(200) in SQLite and PostgreSQL)
# and every filesystem, since a study's trials live in the folder <workdir>/<study.name>: no path
# separators, nothing that climbs ('..'), no spaces, and short enough for '<name>-<action>' children
# and the folders under it.
STUDY_NAME_MAX = 100
STUDY_NAME_RULE = (
    f"1 to {STUDY_NAME_MAX} characters from A-Z, a-z, 0-9, '.', '_' and '-', starting with a "
    "letter or digit"
)
_STUDY_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{STUDY_NAME_MAX - 1}}}")
_STUDY_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "._-")

# train.keep_predictions' ceiling: the kept examples are scored inside every compiled evaluation
# and their predictions travel to the host and into the store with each one (a JSON row per
# evaluation); a few hundred chosen examples are what a person inspects, a whole split is
# evaluate_checkpoint's job.
MAX_KEPT_PREDICTIONS = 1024
# The trainer's step counter is an int32 (jaxplay.train.state), so a trial is at most this long.
MAX_STEPS = 2**31 - 1
# What train.step.run_period stacks for every step of a period: float32 each.
PER_STEP_LOGS = ("loss", "grad_norm", "learning_rate")
# A period's per-step arrays (its logs, and under the device pipeline its inputs, example
# indices; grain sends its batches in chunks of steps) are O(train.eval_every) and live on the
# device beside the model, its optimizer state and its eval splits; the host builds the device
# pipeline's indices from int64 permutations (a few times their size for a moment) and copies
# the logs back, and a stack of trials holds one set per trial. 1 GiB keeps all of that well
# inside a laptop's or a 16 GB accelerator's memory, while the device pipeline still allows
# periods of millions of steps (about 2M at batch 128).
PERIOD_BYTES_LIMIT = 1 << 30

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
class Range:
    """The values a numeric field accepts: low to high, each end included or not."""

    low: float
    high: float = math.inf
    example: str = ""
    low_open: bool = False  # True: low itself is refused (a learning rate of 0)
    high_open: bool = True  # True: high itself is refused (b1 = 1)
    integer: bool = False
    noun: str = ""  # what a value is, when it says more than the interval ('a rate')

    def __contains__(self, value) -> bool:
        if not (is_int(value) if self.integer else is_real(value)) or math.isnan(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    @property
    def interval(self) -> str:
        """'[0, 1)', '(0, inf)'."""
        return (
            f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
            f"{')' if self.high_open else ']'}"
        )

    @property
    def words(self) -> str:
        """'> 0', 'an int >= 1', 'in [0, 1)'."""
        kind = "an int " if self.integer else ""
        if math.isinf(self.high):
            return f"{kind}{'>' if self.low_open else '>='} {self.low:g}"
        return f"{kind}in {self.interval}"

    @property
    def rule(self) -> str:
        """What an error says a fixed value must be: 'must be > 0', 'a rate in [0, 1)'."""
        return f"{self.noun} {self.words}" if self.noun else f"must be {self.words}"


# The ranges of the training config's own numeric fields, the same for fixed values and search
# bounds. Each end is why: Adam's bias correction divides by 1 - b^t (0 at b = 1), a momentum (or
# RMSProp's rho) of 1 never forgets, eps and the learning rate divide or scale every update, a
# rate of 1 drops (or smooths) everything.
RANGES = {
    "optimizer.learning_rate": Range(0, example="1e-3", low_open=True),
    "optimizer.momentum": Range(0, 1, example="0.9"),
    "optimizer.b1": Range(0, 1, example="0.9"),
    "optimizer.b2": Range(0, 1, example="0.999"),
    "optimizer.rho": Range(0, 1, example="0.9"),
    "optimizer.eps": Range(0, example="1e-8", low_open=True),
    "optimizer.weight_decay": Range(0, example="1e-4"),
    "model.dropout": Range(0, 1, example="0.1", noun="a rate"),
    "train.grad_clip_norm": Range(0, example="1.0 (0 turns clipping off)"),
    "train.label_smoothing": Range(0, 1, example="0.1", noun="a rate"),
    "schedule.min_lr_factor": Range(0, 1, example="0.0", high_open=False),
}


def field_range(path: str, workload=workloads.DEFAULT, model_name=None) -> Range | None:
    """The range of a numeric config field (a dotted path), or None when it has none here: the
    training config's own fields (RANGES) and, for the built-in workload, the sizes of its model
    families (jaxplay.models.MINIMUMS; a custom workload's model fields are its own)."""
    if path in RANGES:
        return RANGES[path]
    section, _, field = path.partition(".")
    if section == "model" and workload == workloads.DEFAULT:
        minimum = models.MINIMUMS.get(model_name, {}).get(field)
        if minimum is not None and field not in models.SEQUENCES:
            return Range(minimum, integer=True, example=str(models.default(model_name, field)))
    return None


def check_value(path: str, value):
    """value, when it is in the range of the field at `path`; else one line naming the field."""
    bounds = field_range(path)
    if bounds is not None and value not in bounds:
        raise ConfigError(f"{path}: {bounds.rule} (got {value!r}); e.g. {bounds.example}")
    return value


def check_search_range(param, bounds: Range) -> None:
    """Every value a search space can give lies in the field's range: min and max of a float or
    int space (both can be drawn), each number of a discrete or categorical one."""
    if param.space in ("float", "int"):
        ends = [("min", param.min), ("max", param.max)]
    else:
        ends = [("value", v) for v in param.values if is_real(v)]
    field = param.path.rsplit(".", 1)[-1]
    for which, value in ends:
        if value not in bounds:
            raise ConfigError(
                f"search.{param.path}: {which} {value!r} is outside {bounds.interval} "
                f"({field} must be {bounds.words})"
            )


def check_study_name(name, field: str = "study.name", fix: str = "e.g. 'mnist1d-mlp-width'"):
    """name, when it is a valid study name (STUDY_NAME_RULE); else one line naming `field`."""
    if isinstance(name, str) and _STUDY_NAME.fullmatch(name):
        return name
    if not isinstance(name, str) or not name:
        problem = f"must be a non-empty string (got {name!r})"
    else:
        shown = repr(name) if len(name) <= 40 else f"{name[:40]!r}..."
        bad = sorted(set(name) - _STUDY_NAME_CHARS)
        if len(name) > STUDY_NAME_MAX:
            problem = f"{shown} is {len(name)} characters long, over {STUDY_NAME_MAX}"
        elif bad:
            problem = f"{shown} holds {', '.join(map(repr, bad))}"
        else:
            problem = f"{shown} must start with a letter or digit"
    raise ConfigError(f"{field}: {problem}; a study name is {STUDY_NAME_RULE}; {fix}")


def check_top_level(tree) -> None:
    """A study file sets only TOP_LEVEL fields: a misspelt one would be silently ignored."""
    for key in tree:
        if key not in TOP_LEVEL:
            raise ConfigError(
                f"{key}: unknown top-level field{_did_you_mean(key, TOP_LEVEL)}; a study file "
                f"sets {', '.join(TOP_LEVEL)}"
            )


def check_period_memory(train, data, example_bytes: int) -> None:
    """Refuses a train.eval_every whose period's per-step arrays exceed PERIOD_BYTES_LIMIT:
    PER_STEP_LOGS as float32 per step, plus int32 example indices per step under the device
    pipeline. Under grain the batches arrive in chunks of steps (jaxplay.train.feed.chunk_steps),
    so only a single batch over the limit is refused."""
    logs = 4 * len(PER_STEP_LOGS)
    if data.pipeline == "device":
        inputs, what = 4 * data.batch_size, f"{data.batch_size} int32 example indices"
    else:
        batch = example_bytes * data.batch_size
        if batch > PERIOD_BYTES_LIMIT:
            raise ConfigError(
                f"data.batch_size: one batch of {data.batch_size} x {example_bytes} bytes streamed "
                f"by grain takes {batch / 2**30:.3g} GiB, over the "
                f"{PERIOD_BYTES_LIMIT / 2**30:g} GiB the device may be sent at once; lower "
                "data.batch_size"
            )
        inputs, what = 0, "no inputs (grain streams them in chunks)"
    per_step = logs + inputs
    largest = PERIOD_BYTES_LIMIT // per_step
    if train.eval_every <= largest:
        return
    limit = f"{PERIOD_BYTES_LIMIT / 2**30:g} GiB"
    held = f"{train.eval_every * per_step / 2**30:.3g} GiB"
    parts = f"{per_step} bytes a step: {len(PER_STEP_LOGS)} float32 logs and {what}"
    if largest < 1:
        raise ConfigError(
            f"data.batch_size: one step of a period takes {parts}, over the {limit} a period may "
            "hold; lower data.batch_size"
        )
    fit = config_lib.nearest_divisors(train.steps, largest + 1)[0]
    raise ConfigError(
        f"train.eval_every: a period of {train.eval_every} steps holds {held} of per-step arrays "
        f"({parts}), over the {limit} limit; use eval_every <= {largest}, a divisor of "
        f"train.steps={train.steps} such as {fit}"
    )


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
    rho: float = optim.HPARAM_DEFAULTS["rho"]  # RMSProp's decay of the squared-gradient average
    nesterov: bool = False


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
    """`config.schedule`: linear warmup from 0, then the decay over the last decay_steps. A study
    that leaves the section or its name out trains at a constant learning rate
    (jaxplay.config.DEFAULT_SCHEDULE: the playbook's simple start), with no warmup.

    prepend_warmup (the playbook's "How to apply learning rate warmup"): the warmup comes before
    train.steps instead of inside them, and the run is train.steps + warmup_steps long: 10,000
    steps with 1,000 of warmup prepended run 11,000, the schedule's own 10,000 unchanged after the
    ramp. The resolved trial's train.steps is that whole run (what the trainer counts)."""

    name: str
    warmup_steps: int = 0
    decay_steps: int = 0  # 0: decay over every step after the warmup
    min_lr_factor: float = 0.0
    prepend_warmup: bool = False


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
    # Keep every step's training loss and gradient norm in the store, not only each period's
    # summary (the early-instability probe, --lineage probe, turns it on).
    log_every_step: bool = False
    # Polyak averaging (playbook item 39): an exponential moving average of the parameters with
    # this decay, evaluated on the validation set beside the raw ones as val_ema/<metric>; 0: off.
    ema_decay: float = 0.0
    # Keep the model's predictions on the first N validation examples at every evaluation (the
    # playbook's per-example information for offline analysis, item 65); 0: off.
    keep_predictions: int = 0


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
    name = check_study_name(required(study, "study", "name"))
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
    # Unknown keys after the required ones: a misspelt required key is named by `required`.
    refuse_unknown("study", study, {f.name for f in dataclasses.fields(StudySettings)})
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
    dropout = check_value("model.dropout", section.get("dropout", 0.0))
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
                f"optimizer.{key}: {name!r} has no hyperparameter {key!r}"
                f"{_did_you_mean(key, allowed)}; it takes {sorted(allowed - {'name'})}"
            )
    # Every trial carries every float hyperparameter; an optimizer's own defaults win over the
    # shared ones, and the study file's values over both.
    values = {**optim.HPARAM_DEFAULTS, **optim.OPTIMIZERS[name]}
    values.update(
        {
            k: float(check_value(f"optimizer.{k}", v))
            for k, v in section.items()
            if k in optim.HPARAM_DEFAULTS
        }
    )
    return OptimizerSpec(
        name=name,
        nesterov=bool(section.get("nesterov", False)),
        **{
            f: values[f]
            for f in ("learning_rate", "momentum", "b1", "b2", "rho", "eps", "weight_decay")
        },
    )


def schedule_section(section, steps: int) -> ScheduleSpec:
    """`config.schedule`, checked against `steps` (the config's train.steps); None (no schedule
    section) and a section without `name` mean jaxplay.config.DEFAULT_SCHEDULE, a constant
    learning rate, with no warmup unless the section sets one."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"schedule: must be a section (got {section!r}); e.g. c.schedule = "
            f"dict(name='cosine', warmup_steps=100), or leave it out for a "
            f"{config_lib.DEFAULT_SCHEDULE} learning rate"
        )
    name = section.get("name", config_lib.DEFAULT_SCHEDULE)
    if name not in optim.SCHEDULES:
        raise ConfigError(
            f"schedule.name: unknown schedule {name!r}; use one of {list(optim.SCHEDULES)} "
            f"(left out: {config_lib.DEFAULT_SCHEDULE!r}, the playbook's simple start)"
        )
    refuse_unknown("schedule", section, {f.name for f in dataclasses.fields(ScheduleSpec)})
    prepend = section.get("prepend_warmup", False)
    if not isinstance(prepend, bool):
        raise ConfigError(
            f"schedule.prepend_warmup: must be True or False (got {prepend!r}); True runs the "
            "warmup before train.steps, False inside them"
        )
    warmup = section.get("warmup_steps", 0)
    if prepend:
        # The run's length is train.steps + warmup_steps: a whole number of steps.
        if not is_int(warmup) or warmup < 0:
            raise ConfigError(
                f"schedule.warmup_steps: must be an int >= 0 with schedule.prepend_warmup (got "
                f"{warmup!r}): the run is train.steps + warmup_steps steps long"
            )
        if steps + warmup > MAX_STEPS:
            raise ConfigError(
                f"schedule.warmup_steps: train.steps + warmup_steps = {steps + warmup} is over "
                f"{MAX_STEPS}, the most steps the trainer counts (int32); shorten either"
            )
    elif not 0 <= warmup < steps:
        raise ConfigError(
            f"schedule.warmup_steps: must be in [0, train.steps={steps}) (got {warmup}); or set "
            "schedule.prepend_warmup=True to run it before train.steps"
        )
    # The steps the decay shares with the constant phase: train.steps after a warmup inside them,
    # all of train.steps after a prepended one.
    after = steps if prepend else steps - warmup
    decay = section.get("decay_steps", 0) or 0
    if not 0 <= decay <= after:
        what = "train.steps" if prepend else "train.steps - warmup_steps"
        raise ConfigError(
            f"schedule.decay_steps: must be in [0, {what} = {after}] (got {decay}); 0 decays "
            "over every step after the warmup"
        )
    floor = check_value("schedule.min_lr_factor", section.get("min_lr_factor", 0.0))
    return ScheduleSpec(name, warmup, decay, float(floor), prepend)


def train_section(section, batch_size: int) -> TrainSpec:
    known = {f.name for f in dataclasses.fields(TrainSpec)}
    refuse_unknown("train", section, known)
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
    if not (is_real(values["ema_decay"]) and 0 <= values["ema_decay"] < 1):
        raise ConfigError(
            f"train.ema_decay: must be in [0, 1) (got {values['ema_decay']!r}); e.g. 0.999 "
            "averages about the last 1000 steps, 0 turns the average off"
        )
    values["ema_decay"] = float(values["ema_decay"])
    if not isinstance(values["log_every_step"], bool):
        raise ConfigError(
            f"train.log_every_step: must be True or False (got {values['log_every_step']!r})"
        )
    kept = values["keep_predictions"]
    if not is_int(kept) or not 0 <= kept <= MAX_KEPT_PREDICTIONS:
        raise ConfigError(
            f"train.keep_predictions: must be an int in [0, {MAX_KEPT_PREDICTIONS}] (got "
            f"{kept!r}); e.g. 32 keeps the first 32 validation examples' predictions, 0 none"
        )
    values["keep_predictions"] = int(kept)
    for key in ("grad_clip_norm", "label_smoothing"):
        check_value(f"train.{key}", values[key])
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


def refuse_unknown(where: str, section, known) -> None:
    """ConfigError for the first key of `section` not in `known`, with the nearest known one."""
    for key in section:
        if key not in known:
            raise ConfigError(
                f"{where}.{key}: unknown field{_did_you_mean(key, known)}; {where} takes "
                f"{', '.join(sorted(known))}"
            )


def _did_you_mean(name, choices) -> str:
    close = difflib.get_close_matches(str(name), sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
