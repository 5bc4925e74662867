"""The workload contract: what the trainer needs to know about a task, and nothing more.

The trainer sees a dataset on device, a model builder and per-example loss/metric functions; it
never names a dataset or a model family. Built-in classification workloads (MNIST-1D, digits)
go through the same contract a user's own workload will.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
import optax
from flax import nnx

from jaxplay import data as data_lib
from jaxplay import models


@dataclasses.dataclass(frozen=True)
class Classification:
    """Loss and metrics of a classifier. Hashable and field-free: it is a static argument of the
    compiled step, so every trial of a study must get an equal one."""

    # Names of the metrics that `metrics` returns; the study objective is `val/<name>` or `train/<name>`.
    metric_names = ("loss", "error")

    @staticmethod
    def loss(logits, labels, label_smoothing):
        """Per-example training loss: softmax cross-entropy with (traced) label smoothing."""
        targets = optax.smooth_labels(jax_one_hot(labels, logits.shape[-1]), label_smoothing)
        return optax.softmax_cross_entropy(logits, targets)

    @staticmethod
    def metrics(logits, labels) -> dict:
        """Per-example evaluation metrics: unsmoothed cross-entropy and misclassification."""
        return {
            "loss": optax.softmax_cross_entropy_with_integer_labels(logits, labels),
            "error": (jnp.argmax(logits, -1) != labels).astype(jnp.float32),
        }


@dataclasses.dataclass(frozen=True, eq=False)
class Workload:
    """A dataset on the host, a model builder, and the task (loss and metrics) to judge it by."""

    dataset: data_lib.Dataset
    build_model: Callable[[nnx.Rngs], nnx.Module]
    task: Classification = Classification()


def jax_one_hot(labels, num_classes):
    """One-hot float32 targets."""
    return (labels[..., None] == jnp.arange(num_classes)).astype(jnp.float32)


def get(config) -> Workload:
    """The classification workload that `config.data` and `config.model` describe."""
    dataset = data_lib.load(config.data)

    def build_model(rngs):
        return models.build(config.model, dataset.input_shape, dataset.num_classes, rngs)

    return Workload(dataset=dataset, build_model=build_model)
