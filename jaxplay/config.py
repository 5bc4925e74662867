"""Study files: loading an ml-collections study, validating it and applying a trial to it.

A study file defines `get_config(arg=None)` returning a ConfigDict with the base training config,
`study` (name, objective, mode, algorithm, num_trials, seed) and `search` (see jaxplay.spaces).
"""

import contextlib
import copy
import difflib
import hashlib
import importlib.util
import inspect
import json
import math
import numbers
import os
from collections.abc import Mapping

import ml_collections
import numpy as np

from jaxplay import designers, spaces
from jaxplay.errors import ConfigError
from jaxplay.spaces import SearchSpace

__all__ = [
    "ConfigError",
    "load",
    "validate",
    "apply",
    "set_path",
    "fixed_hyperparameters",
    "to_json",
    "config_hash",
    "nearest_divisors",
    "divisor_near",
]

# Sections of a study config that are not hyperparameters of the training run.
STUDY_SECTIONS = ("search", "study")
MODES = ("min", "max")
_STUDY_EXAMPLE = (
    "c.study = dict(name='my-study', objective='val/error', mode='min', "
    "algorithm='quasirandom', num_trials=16, seed=0)"
)


def load(spec: str, overrides: dict | None = None) -> ml_collections.ConfigDict:
    """Loads `path/to/file.py` or `path/to/file.py:arg` and applies dotted-path overrides."""
    path, arg = _split_spec(spec)
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such study file (cwd is {os.getcwd()}); fix the path")
    # Imported from its path rather than through sys.path, so two studies with the same file name
    # in different folders never shadow each other.
    module_spec = importlib.util.spec_from_file_location(
        f"jaxplay_study_{os.path.splitext(os.path.basename(path))[0]}", path
    )
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(
            f"{path}: has no get_config(); define get_config(arg=None) that returns an "
            "ml_collections.ConfigDict"
        )
    args = () if arg is None else (arg,)
    try:
        inspect.signature(get_config).bind(*args)
    except TypeError:
        raise ConfigError(
            f"{spec}: get_config{inspect.signature(get_config)} cannot take the argument "
            f"{arg!r}; define get_config(arg=None)"
        ) from None
    config = get_config(*args)
    if isinstance(config, Mapping) and not isinstance(config, ml_collections.ConfigDict):
        config = ml_collections.ConfigDict(config)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(
            f"{path}: get_config() returned {type(config).__name__}; return an "
            "ml_collections.ConfigDict"
        )
    for key, value in (overrides or {}).items():
        # New search entries may be added from outside (they are validated later by parse);
        # anywhere else a path that does not exist is a typo.
        create = key.startswith("search.") and _is_section(value) and "space" in value
        set_path(config, key, value, create=create)
    return config


def _split_spec(spec: str) -> tuple[str, str | None]:
    """('file.py', 'arg') for 'file.py:arg'; the arg itself may contain ':'."""
    index = spec.find(".py:")
    if index < 0:
        return spec, None
    return spec[: index + 3], spec[index + 4 :]


def validate(config) -> SearchSpace:
    """Checks the study settings and the search space against the base config; returns the space."""
    study = _section(config, "study", _STUDY_EXAMPLE)
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
    if not _is_int(seed) or seed < 0:
        # Negative seeds are rejected because numpy's seed sequences refuse them.
        raise ConfigError(f"study.seed: must be an int >= 0 (got {seed!r}); e.g. seed=0")
    num_trials = _required(study, "study", "num_trials", allow_none=True)
    if num_trials is None and algorithm not in ("grid", "manual"):
        raise ConfigError(
            "study.num_trials: must be an int >= 1 (got None); only algorithm='grid' or 'manual' may "
            "leave it None to mean every trial"
        )
    if num_trials is not None and (not _is_int(num_trials) or num_trials < 1):
        raise ConfigError(f"study.num_trials: must be an int >= 1 (got {num_trials!r}); e.g. 16")

    train = _section(config, "train", "c.train = dict(steps=1000, eval_every=100)")
    steps = _required(train, "train", "steps")
    if not _is_int(steps) or steps < 1:
        raise ConfigError(f"train.steps: must be an int >= 1 (got {steps!r}); e.g. steps=1000")
    eval_every = _required(train, "train", "eval_every")
    if not _is_int(eval_every) or eval_every < 1:
        raise ConfigError(
            f"train.eval_every: must be an int >= 1 (got {eval_every!r}); e.g. eval_every={steps}"
        )
    if steps % eval_every:
        raise ConfigError(
            f"train.eval_every: must divide train.steps={steps} (got {eval_every}); use "
            f"{' or '.join(map(str, nearest_divisors(steps, eval_every)))}"
        )

    space = spaces.parse(config.get("search"), base=_base(config))
    if algorithm == "manual":
        _check_manual_trials(config, study.get("trials"))
    designer = designers.make(algorithm, space, seed, study)  # checks the algorithm's own settings
    if (
        algorithm in ("grid", "manual")
        and num_trials is not None
        and num_trials > designer.max_trials
    ):
        what = "grid has only" if algorithm == "grid" else "study.trials lists only"
        raise ConfigError(
            f"study.num_trials: {what} {designer.max_trials} points; set num_trials <= "
            f"{designer.max_trials} or None"
        )
    return space


def _check_manual_trials(config, trials) -> None:
    """study.trials of a manual study: a non-empty list of {dotted config path: value}."""
    example = (
        "c.study.trials = [{'optimizer.learning_rate': 0.01}, {'optimizer.learning_rate': 0.03}]"
    )
    if not isinstance(trials, (list, tuple)) or not trials:
        raise ConfigError(
            f"study.trials: algorithm='manual' needs a non-empty list of trials (got "
            f"{trials!r}); e.g. {example}"
        )
    for i, trial in enumerate(trials):
        if not _is_section(trial):
            raise ConfigError(
                f"study.trials[{i}]: must be a dict of dotted config paths (got {trial!r}); "
                f"e.g. {example}"
            )
        for path in trial:
            if path.split(".")[0] in STUDY_SECTIONS:
                raise ConfigError(
                    f"study.trials[{i}]: {path!r} is a study setting, not a hyperparameter"
                )
        try:
            apply(config, dict(trial))
        except ConfigError as e:
            raise ConfigError(f"study.trials[{i}]: {e}") from None


def _section(config, name: str, example: str):
    """config[name], which must be a section."""
    section = config.get(name)
    if not _is_section(section):
        got = "missing" if section is None else f"must be a section (got {section!r})"
        raise ConfigError(f"{name}: {got}; add e.g. {example}")
    return section


def _required(section, section_name: str, key: str, allow_none: bool = False):
    """section[key], naming a close misspelling when it is missing."""
    if key not in section or (section[key] is None and not allow_none):
        hint = difflib.get_close_matches(key, [str(k) for k in section.keys() if k != key], n=1)
        found = f" (found {hint[0]!r}: a typo?)" if hint else ""
        raise ConfigError(f"{section_name}.{key}: missing{found}; set {section_name}.{key}")
    return section[key]


def nearest_divisors(n: int, target: int) -> list[int]:
    """The divisors of n just below and just above target (one of them when target is outside)."""
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    below = [d for d in divisors if d < target]
    above = [d for d in divisors if d > target]
    return ([below[-1]] if below else []) + ([above[0]] if above else [])


def divisor_near(n: int, target: float) -> int:
    """The divisor of n closest to target on a log scale (the smaller one on a tie): e.g. an
    eval_every for n steps."""
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(math.log(d / max(target, 1e-9))), d))


def _base(config) -> dict:
    """The training config without the study's own sections."""
    return {k: v for k, v in config.items() if k not in STUDY_SECTIONS}


def apply(config, params: dict[str, object]) -> ml_collections.ConfigDict:
    """A deep copy of config with each dotted path set to its trial value."""
    config = copy.deepcopy(config)
    for path, value in params.items():
        set_path(config, path, value)
    return config


def set_path(config, path: str, value, create: bool = False) -> None:
    """Sets config at a dotted path, type-checked by ConfigDict; `create` adds missing sections."""
    parts = path.split(".")
    node = config
    for i, key in enumerate(parts):
        section = ".".join(parts[:i])
        if not _is_section(node):
            raise ConfigError(
                f"{path}: {section} is a value ({node!r}), not a section; fix the path"
            )
        last = i == len(parts) - 1
        if key not in node:
            if not create:
                names = sorted(str(k) for k in node.keys())
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"{path}: no such field ({section or 'the top level'} has: "
                    f"{', '.join(names)}); fix the path{hint}"
                )
            with _unlocked(node):
                node[key] = value if last else ml_collections.ConfigDict()
            if last:
                return
        if last:
            current = node[key]
            if isinstance(current, float) and _is_int(value):
                value = float(value)  # a float field stays a float when a space yields an int
            try:
                node[key] = value
            except TypeError:
                raise ConfigError(
                    f"{path}: cannot set it to {value!r} ({type(value).__name__}); the config "
                    f"holds {current!r}, so give a {type(current).__name__}"
                ) from None
        else:
            node = node[key]


def _unlocked(node):
    """A context in which new keys may be added to node (plain dicts have no lock)."""
    if isinstance(node, ml_collections.ConfigDict):
        return node.unlocked()
    return contextlib.nullcontext()


def fixed_hyperparameters(config, space: SearchSpace) -> dict[str, object]:
    """Dotted path -> value of every base-config leaf that the study does not search."""
    searched = set(space.paths)
    return {path: value for path, value in _leaves(_base(config), "") if path not in searched}


def _leaves(node, prefix):
    """Yields (dotted path, value) for the leaves of a config tree."""
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if _is_section(value):
            yield from _leaves(value, path)
        else:
            yield path, value


def to_json(config) -> str:
    """Stable JSON of the full resolved config (sorted keys; spaces appear as their dicts)."""
    return _dumps(_jsonable(config, ""))


def config_hash(config, ignore=("study.num_trials", "study.notes")) -> str:
    """sha256 hex of the config's JSON without the `ignore` paths (more trials: same study)."""
    tree = _jsonable(config, "")
    for path in ignore:
        *parents, leaf = path.split(".")
        node = tree
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return hashlib.sha256(_dumps(tree).encode()).hexdigest()


def _dumps(tree) -> str:
    """The one JSON formatting used for both storage and hashing."""
    return json.dumps(tree, sort_keys=True, indent=2)


def _jsonable(value, path: str):
    """The config as plain JSON types; names the path of anything that has no JSON form."""
    if _is_section(value):
        return {str(k): _jsonable(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ConfigError(
        f"{path}: {type(value).__name__} value {value!r} has no JSON form, so the study cannot be "
        "recorded; store numbers, strings, bools, lists or dicts in the config"
    )


def _is_section(node) -> bool:
    """True for the dict-like nodes of a config tree."""
    return isinstance(node, (Mapping, ml_collections.ConfigDict))


def _is_int(x) -> bool:
    """True for int values, not bools."""
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))
