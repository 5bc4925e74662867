"""Chance level: is the best trial "much better than random chance on the validation set"?

The playbook ("Choosing the initial configuration") asks a starting configuration for a
"reasonable" result, at the very least one much better than chance. Chance here is the strongest
guess that ignores the input: always predicting the validation split's most frequent class. Its
error, 1 - (majority-class rate), is at most the uniform guess's 1 - 1/K and equals it on
balanced classes, so a model has to beat the class prior, not only a coin.

The majority-class rate comes from the validation labels themselves: the sweep records it from the
data its trials train on (a probe of kind `chance_level`), for any dataset or workload whose
labels are one class per example. A study recorded before that, of a generated or packaged
dataset (`CHANCE_DATASETS`: the same on every machine and cheap to read), has its labels read
again with the dataset loader that trained it (`jaxplay.data.arrays.LOADERS`, numpy only) from the
stored `config.data`, so the split (data.val_size, data.split_seed) is the one the trials were
scored on; any other study without the probe is left alone rather than judged against a guess.
"""

from __future__ import annotations

import functools
import json

import numpy as np

from jaxplay.analysis.diagnostics.common import Finding, finite
from jaxplay.analysis.study import StudyData
from jaxplay.data.arrays import LOADERS
from jaxplay.errors import ConfigError
from jaxplay.values import fmt

# Datasets whose validation labels are read to find the majority class: generated or packaged,
# so they are the same on every machine and load in about a second. Left out: pystdlib (its
# corpus is the analysing machine's standard library, and its per-token error needs the whole
# corpus read) and tfds (reading every label decodes the whole split).
CHANCE_DATASETS = ("mnist1d", "digits", "synthetic_images")
# Objective metrics judged against chance, and which way is better: an error rate (chance =
# 1 - majority rate) or an accuracy (chance = majority rate). A loss has no such level.
CHANCE_METRICS = {"error": "min", "accuracy": "max"}
# "Much better" than chance: the best trial makes at most half the errors of the majority-class
# guess (it gets right at least half of what guessing gets wrong). The playbook gives no number;
# half is the smallest share that still reads as "much" rather than "some". On MNIST-1D (chance
# error 0.874 on the default split) it asks for val/error <= 0.437: the README quickstart's best
# trial (about 0.28) clears it, a 200-step smoke run (about 0.52) does not, and is told so.
CHANCE_ERROR_FRACTION = 0.5


# The probe the sweep records: the validation split's majority-class rate.
KIND = "chance_level"


def majority_rate(labels) -> float | None:
    """The share of the most frequent class among integer class labels, one per example; None
    for anything else (sequences of tokens, real-valued targets, no labels)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not len(labels) or not np.issubdtype(labels.dtype, np.integer):
        return None
    if labels.min() < 0:
        return None
    return float(np.bincount(labels).max() / len(labels))


def chance_level(record: dict, probes: list[dict] = ()) -> float | None:
    """The validation split's majority-class rate (the accuracy of always guessing the most
    frequent class): the newest one the sweep recorded among `probes`, else, for a study of the
    classification workload on one of CHANCE_DATASETS, read from its data; None otherwise, or
    when its data cannot be loaded."""
    recorded = [p for p in probes if p.get("kind") == KIND]
    if recorded:
        return float(recorded[0]["result"]["majority_rate"])  # probes come newest first
    config = record.get("config") or {}
    if config.get("workload", "classification") != "classification":
        return None  # a workload from outside jaxplay: its labels are its own business
    data = config.get("data") or {}
    if not isinstance(data, dict) or data.get("name") not in CHANCE_DATASETS:
        return None
    return _majority_rate(json.dumps(data, sort_keys=True))


@functools.lru_cache(maxsize=8)
def _majority_rate(data_json: str) -> float | None:
    """The majority-class rate of the validation labels of a `config.data` (as JSON, so a
    report, the dashboard and compare read each dataset once per process)."""
    data = json.loads(data_json)
    try:
        labels = LOADERS[data["name"]][0](data).y_val
    except (ConfigError, ImportError, OSError, KeyError, TypeError, ValueError):
        return None  # a record this machine cannot reload: no verdict rather than a wrong one
    return majority_rate(labels)


def check_chance_level(study: StudyData) -> list[Finding]:
    """A warning when the best trial's validation error (or accuracy) is not much better than
    chance: more than CHANCE_ERROR_FRACTION of the majority-class guess's error. Only for error
    and accuracy objectives (CHANCE_METRICS) of studies whose chance level is known."""
    metric = study.objective.split("/")[-1]
    if metric not in CHANCE_METRICS or not study.feasible:
        return []
    majority = chance_level(study.record, study.probes)
    if majority is None:
        return []
    # The objective's own curve when it is a validation metric (val/, val_ema/), else val/.
    name = study.objective if study.objective.startswith("val") else f"val/{metric}"
    mode = CHANCE_METRICS[metric]
    best = study.feasible[0]
    values = finite(best, name)[1]
    if not len(values):
        return []
    value = float(values.min() if mode == "min" else values.max())
    error = value if mode == "min" else 1 - value
    chance_error = 1 - majority
    if error <= CHANCE_ERROR_FRACTION * chance_error:
        return []
    data = (study.record.get("config") or {}).get("data") or {}
    split = f"{data['name']} validation split" if data.get("name") else "validation split"
    chance = chance_error if mode == "min" else majority
    limit = (
        CHANCE_ERROR_FRACTION * chance_error
        if mode == "min"
        else 1 - CHANCE_ERROR_FRACTION * chance_error
    )
    return [
        Finding(
            "chance_level",
            "warning",
            f"The best trial is not much better than chance: {name} {fmt(value)} against "
            f"{fmt(chance)} for guessing the majority class",
            f"Trial {best.index}'s best {name} is {fmt(value)}. Always guessing the most frequent "
            f"class of the {split} ({majority:.1%} of its labels) "
            f"gives {name} {fmt(chance)}; the playbook asks even a first configuration for a "
            f'result "much better than random chance on the validation set", read here as at '
            f"most {CHANCE_ERROR_FRACTION:.0%} of the guess's error ({name} "
            f"{'at most' if mode == 'min' else 'at least'} {fmt(limit)}). Conclusions drawn "
            "from trials this close to guessing say little about the question.",
            "find a configuration that learns before tuning anything: check the training loss "
            "falls (the learning rate and the schedule first), that labels match inputs, and "
            "that the model can fit a small training subset; then rerun the study",
            trials=(best.index,),
        )
    ]
