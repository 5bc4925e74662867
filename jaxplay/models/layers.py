"""Pieces shared by the model families."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxplay.spaces import ConfigError

ACTIVATIONS = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "tanh": jnp.tanh, "silu": jax.nn.silu}


def activation(name: str):
    """Looks up an activation function by name."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"model.activation: unknown {name!r}; use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def dropout(x, rate, key):
    """Inverted dropout whose rate is a traced array.

    nnx.Dropout keeps its rate as a Python attribute, which would put it in the graphdef and
    recompile the train step for every dropout value a study tries; a traced rate compiles once.
    `key=None` means evaluation: no dropout.
    """
    if key is None:
        return x
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, x.shape)
    return jnp.where(mask, x / jnp.maximum(keep, 1e-6), 0.0)
