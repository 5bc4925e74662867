"""The workload contract: what the trainer needs to know about a task, and nothing more.

A workload is three things (the shape of MLCommons AlgoPerf's workloads):
  * `load_data(config.data) -> Dataset`: train / validation (/ test) splits. jaxplay calls it
    once per distinct `config.data` in a process and keeps the result;
  * `build_model(config, rngs) -> nnx.Module`: the trial's model, from its resolved config (a
    jaxplay.spec.TrialSpec: `config.model.width` reads a field of `c.model`). It is called as
    `model(x, train=bool)` (plus `dropout_rate=` and `key=` when the study uses dropout) and
    returns the outputs the task scores. Everything that shapes it must come from `config.model`
    (and `config.data`): trials with equal `config.model` share one compiled program;
  * `task`: the loss and the per-example eval metrics, with the direction of each, so a study
    objective `val/<metric>` is known to be minimised or maximised; optionally `predictions`
    (outputs, targets) -> per-example arrays kept for chosen examples (train.keep_predictions).

A config names its workload in `config.workload`: a registry name (`'classification'`, the
default: the built-in datasets of `config.data.name` and models of `config.model.name`) or an
import path `'package.module:attribute'` whose attribute is a `Workload` (or a function of no
arguments returning one), so code outside jaxplay plugs in without editing jaxplay.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxplay import data as data_lib
from jaxplay import models
from jaxplay.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Classification:
    """Softmax cross-entropy and error rate. Targets may carry extra axes (a language model's
    per-token targets): each example's loss and error are then the mean over its tokens.

    A task is a static argument of the compiled step, so it must be hashable and every trial of
    a study must get an equal one: a frozen dataclass whose fields are plain values.
    """

    # Metric -> "min" or "max": which way is better. The study objective is `val/<metric>` or
    # `train/<metric>` of one of these.
    metrics_mode: ClassVar[dict] = {"loss": "min", "error": "min"}

    def loss(self, logits, labels, hp):
        """Per-example training loss: softmax cross-entropy with (traced) label smoothing."""
        targets = optax.smooth_labels(one_hot(labels, logits.shape[-1]), hp["label_smoothing"])
        return _per_example(optax.softmax_cross_entropy(logits, targets))

    def metrics(self, logits, labels) -> dict:
        """Per-example evaluation metrics: unsmoothed cross-entropy and misclassification."""
        return {
            "loss": _per_example(optax.softmax_cross_entropy_with_integer_labels(logits, labels)),
            "error": _per_example((jnp.argmax(logits, -1) != labels).astype(jnp.float32)),
        }

    def predictions(self, logits, labels) -> dict:
        """Per-example outputs kept for offline analysis (train.keep_predictions): the predicted
        class, the label, and the probability given to the label (per token for sequence
        targets)."""
        probabilities = jax.nn.softmax(logits, axis=-1)
        true = jnp.take_along_axis(probabilities, labels[..., None], axis=-1)[..., 0]
        return {
            "predicted": jnp.argmax(logits, -1).astype(jnp.int32),
            "label": labels.astype(jnp.int32),
            "true_probability": true,
        }


def _per_example(values):
    """Mean over every axis but the first (tokens of a sequence)."""
    return values.reshape(values.shape[0], -1).mean(axis=1)


def one_hot(labels, num_classes):
    """One-hot float32 targets."""
    return (labels[..., None] == jnp.arange(num_classes)).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Workload:
    """A task the trainer can tune: how to load its data, build its model and judge it."""

    load_data: Callable[[object], data_lib.Dataset]
    build_model: Callable[[object, nnx.Rngs], nnx.Module]
    task: object = Classification()
    # Optional: raises ConfigError for a config this workload cannot run (checked before training).
    check_config: Callable[[object], None] | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Instance:
    """A workload bound to one trial's config: what the trainer runs."""

    name: str
    dataset: data_lib.Dataset
    build_model: Callable[[nnx.Rngs], nnx.Module]
    task: object


def _classification_model(config, rngs):
    dataset = data_lib.load(config.data)
    return models.build(config.model, dataset.input_shape, dataset.num_classes, rngs)


def _classification_check(config):
    models.check(config.model)
    data_lib.check(config.data)


CLASSIFICATION = Workload(
    load_data=data_lib.load,
    build_model=_classification_model,
    check_config=_classification_check,
)

# Registry names; anything with a ':' is an import path instead.
REGISTRY = {"classification": CLASSIFICATION}
DEFAULT = "classification"


def resolve(spec: str) -> Workload:
    """The Workload that a registry name or a 'module:attribute' import path names."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"workload: must be a registry name or 'module:attribute' (got {spec!r})")
    if ":" not in spec:
        if spec not in REGISTRY:
            raise ConfigError(
                f"workload: unknown workload {spec!r}; use one of {sorted(REGISTRY)} "
                "or an import path 'my_package.my_module:my_workload'"
            )
        return REGISTRY[spec]
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(
            f"workload: cannot import {module_name!r} ({e}); put its folder on PYTHONPATH "
            "(or run from the folder that holds it) and check the spelling"
        ) from None
    target = getattr(module, attribute, None)
    if target is None:
        raise ConfigError(
            f"workload: module {module_name!r} has no attribute {attribute!r}; "
            f"define {attribute} = jaxplay.workloads.Workload(...) there"
        )
    if inspect.isfunction(target):  # a factory: def my_workload() -> Workload
        target = target()
    if not isinstance(target, Workload):
        raise ConfigError(
            f"workload: {spec} is a {type(target).__name__}, not a jaxplay.workloads.Workload"
        )
    for name in ("loss", "metrics", "metrics_mode"):
        if not hasattr(target.task, name):
            raise ConfigError(
                f"workload: {spec}'s task has no {name!r}; see jaxplay.workloads.Classification"
            )
    return target


_DATA: dict = {}


def bind(config) -> Instance:
    """The workload that `config.workload` names, bound to one trial's resolved config (a
    jaxplay.spec.TrialSpec), its data loaded once per distinct `config.data` in a process."""
    spec = config.workload
    workload = resolve(spec)
    if workload.check_config is not None:
        workload.check_config(config)
    key = (spec, config.data)
    if key not in _DATA:
        dataset = workload.load_data(config.data)
        if not isinstance(dataset, data_lib.Dataset):
            raise ConfigError(
                f"workload: {spec}'s load_data returned {type(dataset).__name__}; "
                "return a jaxplay.data.Dataset"
            )
        _DATA[key] = dataset
    return Instance(
        spec, _DATA[key], lambda rngs: workload.build_model(config, rngs), workload.task
    )
