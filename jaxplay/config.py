"""Study files at the edge: loading an ml-collections study file, command-line overrides, a
trial's values applied to a config, and the config as the JSON the store records and hashes.

A study file defines `get_config(arg=None)` returning a ConfigDict with the base training config,
`study` (name, objective, mode, algorithm, num_trials, seed) and `search` (see jaxplay.spaces).
Everything past this module reads the resolved study (jaxplay.spec), never a ConfigDict.
"""

import ast
import contextlib
import copy
import difflib
import hashlib
import importlib.util
import inspect
import json
import math
import os
import traceback
from collections.abc import Mapping

import ml_collections
import numpy as np

from jaxplay import spaces
from jaxplay.errors import ConfigError
from jaxplay.spaces import SearchSpace
from jaxplay.values import is_int

__all__ = [
    "CODE_PATHS",
    "DEFAULT_SCHEDULE",
    "STUDY_SECTIONS",
    "apply",
    "config_hash",
    "divisor_near",
    "dumps",
    "fixed_hyperparameters",
    "load",
    "nearest_divisors",
    "not_a_hyperparameter",
    "parse_override",
    "set_path",
    "split_spec",
    "to_json",
    "to_tree",
]

# Sections of a study config that are not hyperparameters of the training run.
STUDY_SECTIONS = ("search", "study")
# Fields that name code to import and run ('package.module:name'). Code comes from code: only the
# study file sets them, never a search, a trial's values or anything read back from the store.
CODE_PATHS = ("workload",)


# The schedule of a study file that leaves schedule.name, or the whole c.schedule, out: a constant
# learning rate, with no warmup unless the section sets one. The playbook's initial configuration
# is "simple": "start with a constant learning rate before adding fancy decay schedules"
# ("Choosing the initial configuration"). load writes it into the config, so the study's record
# shows it and --config.schedule.* overrides reach it; jaxplay.spec resolves a config built in
# code the same way.
DEFAULT_SCHEDULE = "constant"
# Training examples scored each period (a fixed random subset when the train split is larger):
# enough for a train/validation gap, without a full pass over a large corpus per evaluation.
# Here, not in jaxplay.spec, so the analysis reads a study's sample size without importing jax.
DEFAULT_TRAIN_EVAL_EXAMPLES = 10_000


# "If long warmup is required (>5% of max_train_steps), max_train_steps may need increasing"
# (the playbook's "How to apply learning rate warmup"): warmup_warning says so above it.
WARMUP_WARNING_FRACTION = 0.05


def run_steps(tree) -> int:
    """The steps a run of a config (a JSON tree: a study's config with a trial's values applied)
    takes: train.steps, plus the warmup when schedule.prepend_warmup runs it before them."""
    schedule = tree.get("schedule") or {}
    steps = int(tree["train"]["steps"])
    if schedule.get("prepend_warmup", False):
        steps += int(schedule.get("warmup_steps", 0) or 0)
    return steps


def warmup_warning(warmup_steps, train_steps: int) -> str | None:
    """The playbook's caution when a warmup is over WARMUP_WARNING_FRACTION of max_train_steps
    (train.steps, the schedule's own length), else None."""
    if not warmup_steps or warmup_steps <= WARMUP_WARNING_FRACTION * train_steps:
        return None
    return (
        f"schedule.warmup_steps={warmup_steps:g} is {warmup_steps / train_steps:.0%} of "
        f"train.steps={train_steps}, over {WARMUP_WARNING_FRACTION:.0%}; the playbook: when "
        "a long warmup is required, max_train_steps may need increasing (raise train.steps)"
    )


def not_a_hyperparameter(path: str) -> str | None:
    """Why a trial's value may not set this dotted path, or None when it may."""
    if path.split(".")[0] in STUDY_SECTIONS:
        return f"{path!r} is a study setting, not a hyperparameter"
    if path in CODE_PATHS:
        return (
            f"{path!r} names the code to run, not a hyperparameter; only the study file sets it "
            f"(c.{path} = ...)"
        )
    return None


def load(spec: str, overrides: dict | None = None) -> ml_collections.ConfigDict:
    """Loads `path/to/file.py` or `path/to/file.py:arg` and applies dotted-path overrides."""
    path, arg = split_spec(spec)
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such study file (cwd is {os.getcwd()}); fix the path")
    # Imported from its path rather than through sys.path, so two studies with the same file name
    # in different folders never shadow each other.
    module_spec = importlib.util.spec_from_file_location(
        f"jaxplay_study_{os.path.splitext(os.path.basename(path))[0]}", path
    )
    module = importlib.util.module_from_spec(module_spec)
    with _study_file_errors(path):
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
    with _study_file_errors(path):
        config = get_config(*args)
    if isinstance(config, Mapping) and not isinstance(config, ml_collections.ConfigDict):
        config = ml_collections.ConfigDict(config)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(
            f"{path}: get_config() returned {type(config).__name__}; return an "
            "ml_collections.ConfigDict"
        )
    _default_schedule(config)
    for key, value in (overrides or {}).items():
        # New search entries may be added from outside (they are validated later by parse);
        # anywhere else a path that does not exist is a typo.
        create = key.startswith("search.") and _is_section(value) and "space" in value
        set_path(config, key, value, create=create)
    return config


def _default_schedule(config: ml_collections.ConfigDict) -> None:
    """Writes DEFAULT_SCHEDULE into a study's config (one with a `study` section) that leaves the
    schedule, or its name, out."""
    if "study" not in config:
        return  # not a study (yet): resolve names what is missing
    schedule = config.get("schedule")
    with config.unlocked():
        if schedule is None:
            config.schedule = ml_collections.ConfigDict(
                {"name": DEFAULT_SCHEDULE, "warmup_steps": 0}
            )
        elif isinstance(schedule, ml_collections.ConfigDict) and "name" not in schedule:
            with schedule.unlocked():
                schedule.name = DEFAULT_SCHEDULE


@contextlib.contextmanager
def _study_file_errors(path: str):
    """An error raised by the study file's own code as one line at its line (the traceback,
    through ml_collections' internals, is kept for --verbose)."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as e:
        where = path
        if isinstance(e, SyntaxError) and e.lineno:
            where = f"{path}:{e.lineno}"
        else:
            lines = [f.lineno for f in traceback.extract_tb(e.__traceback__)
                     if os.path.abspath(f.filename) == os.path.abspath(path)]  # fmt: skip
            if lines:
                where = f"{path}:{lines[-1]}"
        message = str(e).strip().strip("'\"").splitlines()[0] if str(e).strip() else ""
        raise ConfigError(
            f"{where}: the study file raised {type(e).__name__}"
            + (f": {message}" if message else "")
            + "; fix the study file (--verbose shows the traceback)"
        ) from e


def split_spec(spec: str) -> tuple[str, str | None]:
    """('file.py', 'arg') for 'file.py:arg'; the arg itself may contain ':'."""
    index = spec.find(".py:")
    if index < 0:
        return spec, None
    return spec[: index + 3], spec[index + 4 :]


def _divisors(n: int) -> list[int]:
    """The divisors of n in ascending order, in O(sqrt(n)) steps (n may be up to 2**31)."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return small + [n // d for d in reversed(small) if d * d != n]


def nearest_divisors(n: int, target: int) -> list[int]:
    """The divisors of n just below and just above target (one of them when target is outside)."""
    divisors = _divisors(n)
    below = [d for d in divisors if d < target]
    above = [d for d in divisors if d > target]
    return ([below[-1]] if below else []) + ([above[0]] if above else [])


def divisor_near(n: int, target: float) -> int:
    """The divisor of n closest to target on a log scale (the smaller one on a tie): e.g. an
    eval_every for n steps."""
    divisors = _divisors(n)
    return min(divisors, key=lambda d: (abs(math.log(d / max(target, 1e-9))), d))


def _base(config) -> dict:
    """The training config without the study's own sections."""
    return {k: v for k, v in config.items() if k not in STUDY_SECTIONS}


def apply(config, params: dict[str, object]):
    """A deep copy of config (a ConfigDict or a JSON tree) with each dotted path set to a trial's
    value. A value at a section's path chooses its branch (jaxplay.spaces.branches): a branch other
    than the config's own starts the section afresh as {name: branch}; then each namespaced value
    `section[branch].field` sets `section.field`."""
    config = copy.deepcopy(config)
    for path, value in params.items():
        if spaces.BRANCH_PATH.fullmatch(path):
            continue
        section = _section_at(config, path)
        if section is not None and isinstance(value, str):
            if section.get("name") != value:
                _replace(config, path, {"name": value})
        else:
            set_path(config, path, value)
    for path, value in params.items():
        match = spaces.BRANCH_PATH.fullmatch(path)
        if match is None:
            continue
        chosen = params.get(match["section"])
        if chosen != match["branch"]:
            raise ConfigError(
                f"{path}: a value of branch {match['branch']!r}, but the trial's "
                f"{match['section']} is {chosen!r}; a branch's values go with its own trials"
            )
        set_path(config, f"{match['section']}.{match['field']}", value, create=True)
    return config


def _section_at(config, path: str):
    """The section at a dotted path, or None when the path holds a value or does not exist."""
    node = config
    for key in path.split("."):
        if not _is_section(node) or key not in node:
            return None
        node = node[key]
    return node if _is_section(node) else None


def _replace(config, path: str, section: dict) -> None:
    """Replaces the section at `path` (a branch other than the base config's own)."""
    *parents, key = path.split(".")
    node = config
    for part in parents:
        node = node[part]
    with _unlocked(node):
        config_dict = isinstance(node, ml_collections.ConfigDict)
        node[key] = ml_collections.ConfigDict(section) if config_dict else section


def set_path(config, path: str, value, create: bool = False) -> None:
    """Sets config at a dotted path, type-checked (by ConfigDict, or here for a JSON tree the
    same way); `create` adds missing sections."""
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
            if isinstance(current, float) and is_int(value):
                value = float(value)  # a float field stays a float when a space yields an int
            try:
                if not isinstance(node, ml_collections.ConfigDict) and not _same_kind(
                    current, value
                ):
                    raise TypeError
                node[key] = (
                    list(value) if isinstance(value, tuple) and isinstance(current, list) else value
                )
            except TypeError:
                raise ConfigError(
                    f"{path}: cannot set it to {value!r} ({type(value).__name__}); the config "
                    f"holds {current!r}, so give a {type(current).__name__}"
                ) from None
        else:
            node = node[key]


def _same_kind(current, value) -> bool:
    """ConfigDict's type rule for a JSON tree: None fits anywhere, an int fits a float field,
    a tuple a list; otherwise the types must match."""
    if current is None or value is None:
        return True
    if isinstance(current, (list, tuple)):
        return isinstance(value, (list, tuple))
    if _is_section(current):
        return _is_section(value)
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) and isinstance(value, bool)
    return isinstance(value, type(current))


def parse_override(config, path: str, text: str):
    """The value of a command-line override `--config.<path>=<text>`, read as the type of the
    field it replaces (a bool, int, float, string or tuple); a new or None field takes a Python
    literal."""
    node = config
    for key in path.split("."):
        node = node[key] if _is_section(node) and key in node else _MISSING
        if node is _MISSING:
            break
    if text == "None":
        return None
    if isinstance(node, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{path}: {text!r} is not a bool; give true or false")
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        for kind in (int, float) if is_int(node) else (float,):
            try:
                return kind(text)
            except ValueError:
                pass
        raise ConfigError(f"--config.{path}: {text!r} is not a number; the field holds {node!r}")
    if isinstance(node, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a plain string
    if isinstance(node, (list, tuple)) and not isinstance(value, (list, tuple)):
        value = (value,)
    return tuple(value) if isinstance(value, list) else value


_MISSING = object()


def _unlocked(node):
    """A context in which new keys may be added to node (plain dicts have no lock)."""
    if isinstance(node, ml_collections.ConfigDict):
        return node.unlocked()
    return contextlib.nullcontext()


def fixed_hyperparameters(config, space: SearchSpace) -> dict[str, object]:
    """Dotted path -> value of every base-config leaf that the study does not search."""
    searched = set(space.paths) | space.config_paths
    # A section whose branch is searched has no fixed values: each branch brings its own.
    switched = tuple(f"{path}." for path in space.switches)
    return {
        path: value
        for path, value in _leaves(_base(config), "")
        if path not in searched and not path.startswith(switched)
    }


def _leaves(node, prefix):
    """Yields (dotted path, value) for the leaves of a config tree."""
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if _is_section(value):
            yield from _leaves(value, path)
        else:
            yield path, value


def to_tree(config) -> dict:
    """The config (a ConfigDict or a mapping) as plain JSON types: dicts, lists, numbers, strings,
    bools and None, exactly as the store records it."""
    return _jsonable(config, "")


def to_json(config) -> str:
    """Stable JSON of the full config (sorted keys; spaces appear as their dicts)."""
    return dumps(_jsonable(config, ""))


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
    return hashlib.sha256(dumps(tree).encode()).hexdigest()


def dumps(tree) -> str:
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
