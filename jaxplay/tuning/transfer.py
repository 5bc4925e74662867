"""What transfers from short round-1 runs to long round-2 runs (playbook "Round 1"): each
hyperparameter's transfer class, and which classes `--lineage promote --retune` searches again.

The playbook makes no promise that short-run hyperparameters transfer; it ranks its suspicions:

  very_likely  early-training-instability fixes: warmup length, initialization ("the closest
               thing to a sure bet")
  likely       the model architecture (dramatic wins usually transfer; many counterexamples)
  might        the optimizer and its hyperparameters ("loosely"), data augmentation,
               regularization
  unlikely     the learning-rate schedule (a decay tuned on few steps, then stretched, spends
               most of training at too small a learning rate; arXiv:1803.02021)

A config path gets its class from TRANSFER_TABLE, the first pattern it matches; a path no pattern
matches has none (the playbook ranks only these), and the lineage says so.
"""

from __future__ import annotations

import dataclasses
import fnmatch

from jaxplay.errors import ConfigError
from jaxplay.tuning.derivation import Option

VERY_LIKELY, LIKELY, MIGHT, UNLIKELY = "very_likely", "likely", "might", "unlikely"
CLASSES = (VERY_LIKELY, LIKELY, MIGHT, UNLIKELY)
# In the playbook's words, for the lineage's changes.
WORDS = {
    VERY_LIKELY: "very likely to transfer",
    LIKELY: "likely to transfer",
    MIGHT: "might transfer",
    UNLIKELY: "unlikely to transfer",
}
# `--retune none`: re-search nothing, keep every round-1 value.
NONE = "none"
# The learning-rate schedule is the one class the playbook expects not to transfer, so round 2
# searches it again by default.
DEFAULT_RETUNE = UNLIKELY


@dataclasses.dataclass(frozen=True)
class Rule:
    """Config paths matching `pattern` (fnmatch, on the path a trial's value sets) are `klass`;
    `what` is the playbook's name for them."""

    pattern: str
    klass: str
    what: str


# First match wins: the specific fields come before the section-wide patterns that would also
# match them (a warmup is part of the schedule, a dropout rate part of the model).
TRANSFER_TABLE = (
    Rule("schedule.warmup_steps", VERY_LIKELY, "warmup length"),
    Rule("schedule.prepend_warmup", VERY_LIKELY, "warmup length"),
    # A custom workload's initialization fields (the built-in models take none).
    Rule("model.*init*", VERY_LIKELY, "initialization"),
    Rule("model.dropout", MIGHT, "regularization"),
    Rule("model.*", LIKELY, "architecture"),
    Rule("model", LIKELY, "architecture"),  # a choice among model branches (spaces.branches)
    Rule("optimizer.weight_decay", MIGHT, "regularization"),
    Rule("optimizer", MIGHT, "optimization algorithm"),  # a choice among optimizer branches
    Rule("optimizer.*", MIGHT, "optimizer hyperparameters"),
    Rule("train.label_smoothing", MIGHT, "regularization"),
    Rule("data.augment", MIGHT, "data augmentation"),
    Rule("schedule.*", UNLIKELY, "learning-rate schedule"),
)


def rule_of(path: str) -> Rule | None:
    """The TRANSFER_TABLE rule of a config path (a branch's hyperparameter by the path it sets:
    optimizer.learning_rate for optimizer[adam].learning_rate), or None when none matches."""
    return next((r for r in TRANSFER_TABLE if fnmatch.fnmatchcase(path, r.pattern)), None)


def class_of(path: str) -> str | None:
    """The transfer class of a config path, or None when the playbook ranks no such field."""
    rule = rule_of(path)
    return rule.klass if rule else None


def describe(path: str) -> str:
    """'might transfer (optimizer hyperparameters)', or what the playbook leaves unranked."""
    rule = rule_of(path)
    if rule is None:
        return (
            "no transfer class (the playbook ranks warmup, initialization, architecture, the "
            "optimizer, augmentation, regularization and the schedule only)"
        )
    return f"{WORDS[rule.klass]} ({rule.what})"


def parse_retune(value, where: str) -> str:
    """The classes `--retune` names, checked and in CLASSES order, comma-separated; or NONE.
    `where` names the option in an error ('--retune', 'study.parent.retune')."""
    allowed = f"{', '.join(CLASSES)}, a comma-separated list of them, or {NONE}"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: name transfer classes: {allowed} (got {value!r})")
    names = [n.strip() for n in value.split(",") if n.strip()]
    if names == [NONE]:
        return NONE
    if NONE in names:
        raise ConfigError(f"{where}: {NONE} retunes nothing, so it goes alone (got {value!r})")
    unknown = [n for n in names if n not in CLASSES]
    if unknown:
        raise ConfigError(
            f"{where}: unknown transfer class {unknown[0]!r}; use {allowed} (e.g. "
            f"{UNLIKELY},{MIGHT})"
        )
    return ",".join(c for c in CLASSES if c in names)


def retuned_classes(value: str) -> frozenset[str]:
    """The classes of a parse_retune value."""
    return frozenset() if value == NONE else frozenset(value.split(","))


@dataclasses.dataclass(frozen=True)
class RetuneOption(Option):
    """The `--retune` option of a derivation: transfer classes by name, checked here so that a
    bad one is refused before the parent is read."""

    def check(self, value, where: str):
        """The value as parse_retune returns it."""
        return parse_retune(value, where)
