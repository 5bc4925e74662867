"""Search-space declarations: hyperparameter roles, the unit-cube mapping and validation.

A study's `c.search` mirrors its base config: `c.search.optimizer.learning_rate =
spaces.log(1e-4, 1e-1)` means each trial sets `c.optimizer.learning_rate`. Every searched
hyperparameter is 'scientific' or 'nuisance'; everything not searched is fixed (playbook
"Identifying scientific, nuisance, and fixed hyperparameters").

Conditional hyperparameters (playbook items 27 and 97): `c.search.optimizer =
spaces.branches(adam=dict(...), sgd=dict(...))` makes the optimizer section one of several
branches, each with hyperparameters of its own. The choice is a categorical hyperparameter at the
section's path (`optimizer`: 'adam' or 'sgd', scientific by default), and each branch's
hyperparameters are different hyperparameters even where their names agree:
`optimizer[adam].learning_rate` and `optimizer[sgd].learning_rate` have ranges of their own and
exist only in their branch's trials. A branch may also fix values (`nesterov=True`); they ride
with its trials' values. A trial of another branch than the base config's starts that section
afresh: `{name: branch}` plus the branch's values, the optimizer's own defaults for the rest.

Declarations are plain dicts so that they live inside the ConfigDict and can be changed from the
command line (`--config.search.optimizer.learning_rate.max=0.3`). For the same reason the
constructors do not validate: `parse` does, after any overrides were applied.
"""

import dataclasses
import difflib
import itertools
import math
import numbers
import re
from collections.abc import Iterator, Mapping

import ml_collections
import numpy as np

from jaxplay.errors import ConfigError
from jaxplay.values import is_int, is_real

ROLES = ("scientific", "nuisance")
# 'reverse_log': uniform in log(1 - value), for values just below 1 (momentum, Adam's betas,
# an EMA decay): 0.9, 0.99 and 0.999 are equally likely. Floats only.
SCALES = ("linear", "log", "reverse_log")
SPACES = ("float", "int", "discrete", "categorical")

_KEYS = {
    "float": ("space", "scale", "min", "max", "role"),
    "int": ("space", "scale", "min", "max", "role"),
    "discrete": ("space", "values", "role"),
    "categorical": ("space", "values", "role"),
}
_CONSTRUCTORS = {
    ("float", "linear"): "linear",
    ("float", "log"): "log",
    ("float", "reverse_log"): "reverse_log",
    ("int", "linear"): "int_linear",
    ("int", "log"): "int_log",
}


# ----------------------------------------------------------------------------------------------
# Declarations (plain dicts).


def linear(min, max, *, role="nuisance"):
    """A float searched uniformly between min and max."""
    # Stored as floats so that a command-line override such as max=0.3 passes ConfigDict's type
    # check even when the study file wrote linear(0, 1).
    return {
        "space": "float",
        "scale": "linear",
        "min": _as_float(min),
        "max": _as_float(max),
        "role": role,
    }


def log(min, max, *, role="nuisance"):
    """A float searched uniformly in log(value) between min and max (both > 0)."""
    return {
        "space": "float",
        "scale": "log",
        "min": _as_float(min),
        "max": _as_float(max),
        "role": role,
    }


def reverse_log(min, max, *, role="nuisance"):
    """A float below 1 searched uniformly in log(1 - value) between min and max (max < 1): the
    usual scale of momentum-like values, where 0.9, 0.99 and 0.999 are equally likely."""
    return {
        "space": "float",
        "scale": "reverse_log",
        "min": _as_float(min),
        "max": _as_float(max),
        "role": role,
    }


def int_linear(min, max, *, role="nuisance"):
    """An int searched uniformly between min and max, both inclusive."""
    return {"space": "int", "scale": "linear", "min": min, "max": max, "role": role}


def int_log(min, max, *, role="nuisance"):
    """An int searched uniformly in log(value) between min and max, both inclusive (min >= 1)."""
    return {"space": "int", "scale": "log", "min": min, "max": max, "role": role}


def discrete(values, *, role="nuisance"):
    """Ordered numbers, e.g. widths [128, 256, 512]; stored sorted ascending."""
    try:
        values = sorted(values)
    except TypeError:
        values = list(values)  # parse reports what is wrong with them
    # A tuple, not a list: config_flags can override tuples from the command line, not lists.
    return {"space": "discrete", "values": tuple(values), "role": role}


def categorical(values, *, role="nuisance"):
    """Unordered choices (strings, bools or numbers), e.g. ['adam', 'sgd']."""
    return {"space": "categorical", "values": tuple(values), "role": role}


def branches(*, role="scientific", **choices):
    """A section that is one of several branches (conditional hyperparameters): each keyword names
    a value of the section's `name` and maps to that branch's search tree, whose leaves are spaces
    (searched in that branch only) or plain values (fixed in that branch). E.g.
    `c.search.optimizer = spaces.branches(adam=dict(learning_rate=spaces.log(1e-4, 1e-2)),
    sgd=dict(learning_rate=spaces.log(1e-2, 1.0), momentum=spaces.reverse_log(0.8, 0.99),
    nesterov=True))`. The choice of branch is `role` (scientific by default: the question)."""
    return {"space": "branches", "role": role, "choices": {k: dict(v) for k, v in choices.items()}}


# A branch's own hyperparameter or fixed value: `<section>[<branch>].<field>`.
BRANCH_PATH = re.compile(r"(?P<section>[^\[\]]+)\[(?P<branch>[^\[\]]+)\]\.(?P<field>.+)")


def branch_path(section: str, branch, field: str) -> str:
    """The namespaced path of a field of one branch: 'optimizer[sgd].momentum'."""
    return f"{section}[{branch}].{field}"


def _as_float(x):
    """float(x) for plain numbers; anything else is left for parse to report."""
    return float(x) if is_real(x) else x


# The playbook's Adam table ("How should Adam's hyperparameters be tuned?"): the trial budget at
# which each hyperparameter joins the search. <10 trials: the learning rate; 10-25: + b1; 25+:
# + eps; "substantially more than 25": + b2. We read "substantially more" as 100 trials, 4x the 25
# row and the size of the playbook's own ResNet-50 study (Fig 3). One table:
# analysis.diagnostics.check_adam_budget warns from it, adam() builds searches from it.
ADAM_BUDGET = (
    (0, "optimizer.learning_rate"),
    (10, "optimizer.b1"),
    (25, "optimizer.eps"),
    (100, "optimizer.b2"),
)
# adam()'s ranges besides the learning rate's. The playbook gives none, so these are jaxplay's
# choice: each spans its optax default (b1 0.9, eps 1e-8, b2 0.999) on the scale it is usually
# searched on. The betas are momentum-like, so reverse_log (uniform in log(1 - beta): 0.9 and 0.99
# equally likely); b1 covers the 0.8-0.99 of jaxplay's starter files, b2 1 - beta from 1e-2 to
# 1e-4. eps is log-uniform two decades either side of 1e-8; Choi et al. 2019 (arXiv:1910.05446,
# cited by the playbook) tune it much wider, up to ~1, where Adam behaves like momentum: widen it
# with adam(..., eps=(lo, hi)).
ADAM_RANGES = {
    "b1": reverse_log(0.8, 0.99),
    "eps": log(1e-10, 1e-6),
    "b2": reverse_log(0.99, 0.9999),
}


def adam(num_trials, *, learning_rate, b1=None, eps=None, b2=None) -> dict:
    """The `c.search.optimizer` dict for an Adam-family study of `num_trials` trials: the
    hyperparameters the playbook's table (ADAM_BUDGET) tunes at that budget, all nuisance; the
    others stay at the base config's values. `learning_rate` is (min, max), searched on a log
    scale (the playbook gives no range: it depends on the problem). b1, eps and b2 default to
    ADAM_RANGES; give (min, max) for another range on the same scale, or a space
    (`spaces.linear(0.8, 0.99)`) for another scale. E.g. for 16 trials:

        c.study.num_trials = 16
        c.search = dict(optimizer=spaces.adam(16, learning_rate=(1e-4, 3e-2)))
        # -> learning_rate: log(1e-4, 3e-2), b1: reverse_log(0.8, 0.99); eps and b2 fixed
    """
    if not is_int(num_trials) or num_trials < 1:
        raise ConfigError(
            f"spaces.adam: num_trials must be an int >= 1 (got {num_trials!r}); pass the "
            "study's c.study.num_trials"
        )
    given = {"learning_rate": learning_rate, "b1": b1, "eps": eps, "b2": b2}
    search = {}
    for minimum, path in ADAM_BUDGET:
        if num_trials < minimum:
            continue
        field = path.rsplit(".", 1)[1]
        value = given[field]
        if _is_section(value) and "space" in value:
            search[field] = dict(value)
        elif value is None and field in ADAM_RANGES:
            search[field] = dict(ADAM_RANGES[field])
        else:
            lo, hi = _pair(value, field)
            scaled = ADAM_RANGES.get(field) or log(lo, hi)
            search[field] = {**scaled, "min": _as_float(lo), "max": _as_float(hi)}
    return search


def _pair(value, field: str) -> tuple:
    """(min, max) given to adam() for `field`."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(
            f"spaces.adam: {field} must be (min, max) or a space such as spaces.log(1e-10, 1e-6) "
            f"(got {value!r})"
        )
    return tuple(value)


# ----------------------------------------------------------------------------------------------
# Parsed form.


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """One searched hyperparameter: the config path it sets, its space and its role."""

    path: str
    space: str
    scale: str | None = None
    min: float | int | None = None
    max: float | int | None = None
    values: tuple | None = None
    role: str = "nuisance"
    # A branch's hyperparameter: (the switch's path, the branch it belongs to); None otherwise.
    when: tuple | None = None
    # The config path it sets, where that differs from `path` (a branch's: optimizer.momentum).
    target: str | None = None

    @property
    def config_path(self) -> str:
        """The dotted config path a trial's value of it sets."""
        return self.target or self.path

    @property
    def declared_at(self) -> tuple[str, ...]:
        """The keys of its declaration in the search tree (a branch's lies under its choices)."""
        if self.when is None:
            return tuple(self.path.split("."))
        section, branch = self.when
        field = self.config_path[len(section) + 1 :]
        return (*section.split("."), "choices", branch, *field.split("."))

    @property
    def is_float(self) -> bool:
        """True for a continuous float hyperparameter."""
        return self.space == "float"

    def warp(self, value: float) -> float:
        """A number on the axis its scale is uniform on: value (linear), log(value) (log),
        -log(1 - value) (reverse_log, increasing with value); -inf or inf outside its domain."""
        if self.scale == "log":
            return math.log(value) if value > 0 else -math.inf
        if self.scale == "reverse_log":
            return -math.log(1 - value) if value < 1 else math.inf
        return value

    def unwarp(self, t: float) -> float:
        """The inverse of warp."""
        if self.scale == "log":
            return math.exp(t)
        if self.scale == "reverse_log":
            return 1 - math.exp(-t)
        return t

    def from_unit(self, u: float):
        """Maps u in [0, 1) to a value of this hyperparameter (a plain Python scalar)."""
        if self.space == "float":
            lo, hi = self.warp(self.min), self.warp(self.max)
            value = self.unwarp(lo + u * (hi - lo))
            # exp(log(x)) and u * (max - min) can land one ulp outside the range.
            return float(_clip(value, self.min, self.max))
        if self.space == "int":
            # Each int owns an equal slice of [min, max + 1) on the chosen scale, so the top value
            # is as likely as any other and, on log scale, small ints are as likely as large ones.
            if self.scale == "log":
                lo, hi = math.log(self.min), math.log(self.max + 1)
                value = math.floor(math.exp(lo + u * (hi - lo)))
            else:
                value = math.floor(self.min + u * (self.max + 1 - self.min))
            return int(_clip(value, self.min, self.max))
        index = _clip(math.floor(u * len(self.values)), 0, len(self.values) - 1)
        return self.values[index]

    def to_unit(self, value) -> float | None:
        """The unit-cube coordinate whose from_unit is `value` (the middle of its slice for ints and
        lists); outside [0, 1] for a number outside the range, None for a value not in the list."""
        if self.space in ("discrete", "categorical"):
            keys = [(type(v), v) for v in self.values]
            if (type(value), value) not in keys and not (
                self.space == "discrete" and value in self.values
            ):
                return None
            index = (
                keys.index((type(value), value))
                if (type(value), value) in keys
                else self.values.index(value)
            )
            return (index + 0.5) / len(self.values)
        if self.space == "int":
            lo, hi, x = self.min, self.max + 1, value + 0.5
        else:
            lo, hi, x = self.min, self.max, value
        lo, hi, x = self.warp(lo), self.warp(hi), self.warp(x)
        if math.isinf(x):
            return x
        return (x - lo) / (hi - lo)

    def grid(self, n: int) -> list:
        """Grid points: n evenly spaced on its scale for numbers, every value otherwise."""
        if self.space in ("discrete", "categorical"):
            return list(self.values)
        if n < 2:
            raise ValueError(f"{self.path}: a grid needs at least 2 points per number (got {n})")
        if self.space == "int" and self.max - self.min + 1 <= n:
            return list(range(self.min, self.max + 1))
        if self.scale == "reverse_log":
            ends = np.linspace(self.warp(self.min), self.warp(self.max), n)
            points = [self.unwarp(t) for t in ends]
        else:  # the same points as ever (a grid study's recorded trials must stay its trials)
            spaced = np.geomspace if self.scale == "log" else np.linspace
            points = spaced(self.min, self.max, n)
        if self.space == "float":
            return [float(p) for p in points]
        return sorted({int(round(p)) for p in points})


def _clip(value, lo, hi):
    """value limited to [lo, hi]."""
    return min(max(value, lo), hi)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The searched hyperparameters in the order the search tree lists them (a branch switch
    before its branches' hyperparameters)."""

    # ConfigDict sorts its keys, so inside a config that order is alphabetical per level; either
    # way it is deterministic, which is all the designers need.
    params: tuple[Hyperparameter, ...] = ()
    # Values a branch fixes: (switch path, branch, namespaced path, value).
    fixed: tuple = ()
    # The paths of the sections chosen among branches (their switches' paths).
    switches: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "fixed", tuple(self.fixed))
        object.__setattr__(self, "switches", tuple(self.switches))

    @property
    def paths(self) -> tuple[str, ...]:
        """Dotted paths of the searched hyperparameters (a branch's namespaced)."""
        return tuple(p.path for p in self.params)

    @property
    def config_paths(self) -> frozenset[str]:
        """The config paths the searched hyperparameters set (a branch's under its section)."""
        return frozenset(p.config_path for p in self.params)

    @property
    def conditional(self) -> bool:
        """True when a section is chosen among branches (spaces.branches)."""
        return bool(self.switches)

    @staticmethod
    def active(p: Hyperparameter, params: Mapping) -> bool:
        """Whether p exists in a trial with these values: always, or when its branch is chosen."""
        return p.when is None or params.get(p.when[0]) == p.when[1]

    def complete(self, params: dict) -> dict:
        """A trial's values with the fixed values of its chosen branches added."""
        for switch, branch, path, value in self.fixed:
            if params.get(switch) == branch:
                params.setdefault(path, value)
        return params

    def from_unit(self, u) -> dict[str, object]:
        """Dotted path -> value for a point u of the unit cube (one coordinate per param); the
        coordinates of branches not chosen are ignored."""
        if len(u) != len(self.params):
            raise ValueError(f"need {len(self.params)} coordinates, got {len(u)}")
        out: dict[str, object] = {}
        for p, x in zip(self.params, u):
            if self.active(p, out):
                out[p.path] = p.from_unit(float(x))
        return self.complete(out)

    def to_unit(self, params: dict) -> list[float] | None:
        """The unit-cube point of a trial's values (inverse of from_unit), or None when a value lies
        outside this space (e.g. a parent study's trial outside a refined space). A hyperparameter
        of a branch the trial did not take sits at the middle, 0.5, for every such trial: the
        GP then sees one well-defined point per trial."""
        u = []
        for p in self.params:
            if not self.active(p, params):
                u.append(0.5)
                continue
            if p.path not in params:
                return None
            x = p.to_unit(params[p.path])
            if x is None or not 0.0 <= x <= 1.0:
                return None
            u.append(x)
        return u

    def grid(self, points_per_float: int) -> list[dict[str, object]]:
        """Every combination of each hyperparameter's grid, in search-space order; each branch
        enumerates only its own hyperparameters."""
        out, seen = [], set()
        for values in itertools.product(*(p.grid(points_per_float) for p in self.params)):
            trial: dict[str, object] = {}
            for p, value in zip(self.params, values):
                if self.active(p, trial):
                    trial[p.path] = value
            key = tuple((k, type(v), v) for k, v in trial.items())
            if key not in seen:
                seen.add(key)
                out.append(self.complete(trial))
        return out

    def by_role(self, role: str) -> tuple[Hyperparameter, ...]:
        """The hyperparameters with the given role ('scientific' or 'nuisance')."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of {ROLES}")
        return tuple(p for p in self.params if p.role == role)

    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self) -> Iterator[Hyperparameter]:
        return iter(self.params)


# ----------------------------------------------------------------------------------------------
# Validation.


def parse(search, base=None) -> SearchSpace:
    """Validates a search tree (against the base config when given) and returns its SearchSpace."""
    if search is None:
        return SearchSpace()
    if not _is_section(search) or "space" in search:
        raise ConfigError(
            f"search: must be a tree of spaces that mirrors the config (got {search!r}); "
            "e.g. c.search = dict(optimizer=dict(learning_rate=spaces.log(1e-4, 1e-1)))"
        )
    params, fixed, switches = [], [], []
    for path, declaration in _declarations(search, ""):
        if declaration["space"] == "branches":
            switch, branch_params, branch_fixed = _parse_branches(path, declaration, base)
            params += [switch, *branch_params]
            fixed += branch_fixed
            switches.append(path)
            continue
        param = _parse_one(path, declaration)
        if base is not None:
            _check_against_base(param, base)
        params.append(param)
    return SearchSpace(tuple(params), tuple(fixed), tuple(switches))


def _parse_branches(section: str, decl, base) -> tuple[Hyperparameter, list, list]:
    """The switch (a categorical at the section's path), each branch's hyperparameters and each
    branch's fixed values."""
    where = f"search.{section}"
    unknown = sorted(set(decl.keys()) - {"space", "role", "choices"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for spaces.branches; use role only")
    choices = decl.get("choices")
    if not _is_section(choices) or len(choices) < 2:
        raise ConfigError(
            f"{where}: spaces.branches needs two or more branches, e.g. spaces.branches("
            "adam=dict(learning_rate=spaces.log(1e-4, 1e-2)), sgd=dict(...))"
        )
    if base is not None:
        node = base
        for key in section.split("."):
            node = node.get(key) if _is_section(node) else None
        if not _is_section(node) or "name" not in node:
            raise ConfigError(
                f"{where}: spaces.branches chooses the {section} section's `name`, so the base "
                f"config needs c.{section} = dict(name=..., ...) (one of {list(choices)})"
            )
    switch = Hyperparameter(
        section,
        "categorical",
        values=tuple(choices),
        role=_parse_role(where, decl.get("role", "scientific")),
    )
    params, fixed = [], []
    for branch, tree in choices.items():
        if not _is_section(tree):
            raise ConfigError(
                f"{where}.{branch}: a branch is a dict of spaces and fixed values (got {tree!r})"
            )
        for field, value in _branch_leaves(tree, ""):
            path = branch_path(section, branch, field)
            if field == "name":
                raise ConfigError(
                    f"search.{path}: the branch's name is its key ({branch!r}); drop the field"
                )
            if _is_section(value) and "space" in value:
                if value["space"] == "branches":
                    raise ConfigError(f"search.{path}: branches inside a branch are not supported")
                param = _parse_one(path, value)
                params.append(
                    dataclasses.replace(param, when=(section, branch), target=f"{section}.{field}")
                )
            else:
                fixed.append((section, branch, path, value))
    return switch, params, fixed


def _branch_leaves(node, prefix):
    """(field path, value) of a branch's tree: its spaces and its fixed values."""
    for key, child in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if _is_section(child) and "space" not in child:
            yield from _branch_leaves(child, path)
        elif child is not None:
            yield path, child


def _is_section(node) -> bool:
    """True for the dict-like nodes of a config tree."""
    return isinstance(node, (Mapping, ml_collections.ConfigDict))


def _declarations(node, prefix):
    """Yields (path, declaration) for each leaf of a search tree; None entries are skipped."""
    for key, child in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if child is None:
            continue  # lets an override drop an entry: overrides={'search.optimizer.b1': None}
        if not _is_section(child):
            raise ConfigError(
                f"search.{path}: expected a space such as spaces.log(1e-4, 1e-1) or a section of "
                f"them (got {child!r}); declare it with jaxplay.spaces, or set a fixed value in "
                "the base config instead"
            )
        if "space" in child:
            yield path, child
        else:
            yield from _declarations(child, path)


def _parse_one(path: str, decl) -> Hyperparameter:
    """Validates one declaration and returns it as a Hyperparameter."""
    where = f"search.{path}"
    if path == "train.steps":
        raise ConfigError(
            f"{where}: the number of training steps must not be tuned (playbook: 'Never tune "
            "max_train_steps'); fix it in the base config"
        )
    space = decl["space"]
    if space not in SPACES:
        raise ConfigError(
            f"{where}: unknown space type {space!r}; use spaces.linear/log (float), "
            "spaces.int_linear/int_log (int), spaces.discrete (ordered numbers) or "
            "spaces.categorical (unordered choices)"
        )
    for key in decl.keys():
        if key not in _KEYS[space]:
            hint = _did_you_mean(key, _KEYS[space])
            raise ConfigError(
                f"{where}: unknown key {key!r} for a {space} space{hint}; use only "
                f"{', '.join(_KEYS[space])}"
            )
    role = _parse_role(where, decl.get("role", "nuisance"))
    if space in ("float", "int"):
        scale, lo, hi = _parse_range(where, space, decl)
        return Hyperparameter(path, space, scale=scale, min=lo, max=hi, role=role)
    return Hyperparameter(path, space, values=_parse_values(where, space, decl), role=role)


def _parse_role(where, role) -> str:
    """Checks that a search entry is scientific or nuisance."""
    if role == "fixed":
        raise ConfigError(
            f"{where}: role 'fixed' does not belong in search; set the value in the base config "
            "and remove it from search (hyperparameters not in search are fixed)"
        )
    if role not in ROLES:
        raise ConfigError(
            f"{where}: unknown role {role!r}; use 'scientific' or 'nuisance' (hyperparameters not "
            "in search are fixed)"
        )
    return role


def _parse_range(where, space, decl):
    """Checks scale, min and max of a float or int space; returns (scale, min, max)."""
    scale = decl.get("scale")
    if scale is None:
        raise ConfigError(f"{where}: scale is missing; set scale='linear' or scale='log'")
    if scale not in SCALES or (space, scale) not in _CONSTRUCTORS:
        known = "'linear', 'log' or 'reverse_log'" if space == "float" else "'linear' or 'log'"
        article = "an" if space == "int" else "a"
        raise ConfigError(
            f"{where}: unknown scale {scale!r} for {article} {space} space; use {known}"
        )
    example = f"spaces.{_CONSTRUCTORS[space, scale]}(min, max)"
    bounds = {}
    for name in ("min", "max"):
        value = decl.get(name)
        if value is None:
            raise ConfigError(f"{where}: missing {name}; give both min and max, e.g. {example}")
        if space == "float":
            if not is_real(value) or not math.isfinite(value):
                raise ConfigError(
                    f"{where}: {name} must be a finite number (got {value!r}); e.g. {example}"
                )
            bounds[name] = float(value)
        else:
            if not is_int(value):
                raise ConfigError(
                    f"{where}: an int space needs whole-number bounds (got {name}={value!r}); use "
                    "ints, or spaces.linear/log for a float"
                )
            bounds[name] = int(value)
    lo, hi = bounds["min"], bounds["max"]
    if lo > hi:
        raise ConfigError(
            f"{where}: min must be < max (got min={decl['min']!r}, max={decl['max']!r}); swap them"
        )
    if lo == hi:
        raise ConfigError(
            f"{where}: min must be < max (got min={decl['min']!r}, max={decl['max']!r}); a single "
            "value is not a search: set it in the base config and remove it from search"
        )
    if scale == "log" and lo <= 0:
        fix = "a min >= 1" if space == "int" else "a positive min"
        raise ConfigError(
            f"{where}: log scale needs min > 0 (got {decl['min']!r}); use {fix} or scale='linear'"
        )
    if scale == "reverse_log" and hi >= 1:
        raise ConfigError(
            f"{where}: reverse_log scale needs max < 1 (got {decl['max']!r}); it is uniform in "
            "log(1 - value), e.g. spaces.reverse_log(0.9, 0.999)"
        )
    return scale, lo, hi


def _parse_values(where, space, decl) -> tuple:
    """Checks the values of a discrete or categorical space; returns them as plain scalars."""
    values = decl.get("values")
    example = (
        "spaces.discrete([128, 256, 512])"
        if space == "discrete"
        else "spaces.categorical(['adam', 'sgd'])"
    )
    if values is None:
        raise ConfigError(f"{where}: values is missing; list them, e.g. {example}")
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        raise ConfigError(f"{where}: values must be a list (got {values!r}); e.g. {example}")
    if not values:
        raise ConfigError(f"{where}: values is empty; list at least one value")
    values = [v.item() if isinstance(v, np.generic) else v for v in values]
    if space == "discrete":
        for v in values:
            if not is_real(v) or not math.isfinite(v):
                raise ConfigError(
                    f"{where}: discrete values must be finite numbers (got {v!r}); use "
                    "spaces.categorical for strings, bools or other unordered choices"
                )
        values = sorted(values)
        seen = [v for i, v in enumerate(values) if i and v == values[i - 1]]
    else:
        for v in values:
            if not isinstance(v, (str, bool, int, float)):
                raise ConfigError(
                    f"{where}: categorical values must be strings, bools or numbers (got {v!r}); "
                    "name each choice with a string and build the object from it in code"
                )
        # (type, value) so that 1, 1.0 and True count as different choices.
        keys = [(type(v), v) for v in values]
        seen = [v for i, v in enumerate(values) if keys[i] in keys[:i]]
    if seen:
        raise ConfigError(f"{where}: values lists {seen[0]!r} twice; list each value once")
    return tuple(values)


def _check_against_base(param: Hyperparameter, base) -> None:
    """Checks that the base config has the searched field and that the space fits its type."""
    where = f"search.{param.path}"
    parts = param.path.split(".")
    node = base
    for i, key in enumerate(parts):
        section = ".".join(parts[:i])
        if not _is_section(node):
            raise ConfigError(
                f"{where}: {section} is a value ({node!r}) in the base config, not a section; fix "
                "the name"
            )
        if key not in node:
            names = sorted(str(k) for k in node.keys())
            owner = section or "the top level"
            hint = _did_you_mean(key, names)
            raise ConfigError(
                f"{where}: no such field in the base config ({owner} has: {', '.join(names)}); "
                f"fix the name{hint} or add it to the base config"
            )
        node = node[key]
    if _is_section(node):
        raise ConfigError(
            f"{where}: {param.path} is a section of the base config, not a value; search its "
            f"fields ({', '.join(sorted(str(k) for k in node.keys()))}) instead"
        )
    if not _fits(param, node):
        raise ConfigError(
            f"{where}: {_article(param.space)} {param.space} space cannot set {param.path}, which "
            f"is {_article(type(node).__name__)} {type(node).__name__} ({node!r}) in the base "
            f"config; {_fix_for(node)}"
        )


def _fits(param: Hyperparameter, value) -> bool:
    """Whether every value the space can produce suits a base field holding `value`."""
    if value is None:
        return True  # e.g. a placeholder: nothing to compare against
    choices = param.values or ()
    if isinstance(value, bool):
        return param.space == "categorical" and all(isinstance(v, bool) for v in choices)
    if isinstance(value, numbers.Integral):
        if param.space == "int":
            return True
        return param.space in ("discrete", "categorical") and all(is_int(v) for v in choices)
    if isinstance(value, numbers.Real):
        if param.space in ("float", "int"):
            return True
        return all(is_real(v) for v in choices)
    if isinstance(value, str):
        return param.space == "categorical" and all(isinstance(v, str) for v in choices)
    return False


def _fix_for(value) -> str:
    """The spaces that can set a base field holding `value`."""
    if isinstance(value, bool):
        return "use spaces.categorical([False, True])"
    if isinstance(value, numbers.Integral):
        return "use spaces.int_linear/int_log or spaces.discrete([...]) of ints"
    if isinstance(value, numbers.Real):
        return "use spaces.linear/log, spaces.int_linear/int_log or spaces.discrete([...])"
    if isinstance(value, str):
        return "use spaces.categorical([...]) of strings"
    return (
        "only int, float, str and bool fields can be searched; search a scalar field that "
        "selects this value instead"
    )


def _did_you_mean(name, choices) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _article(word: str) -> str:
    """'a' or 'an' for the word."""
    return "an" if word[:1].lower() in "aeiou" else "a"
