"""Pieces shared by the model families."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxplay.errors import ConfigError

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


class GhostBatchNorm(nnx.Module):
    """Batch norm whose statistics come from groups of `virtual_batch_size` examples (Ghost Batch
    Norm, Hoffer et al. 2017; playbook "Batch normalization implementation details"), so the
    statistics batch does not change when a study changes the global batch size.

    `virtual_batch_size=None` (or the whole batch) is plain batch norm. A batch that is not a
    multiple of the virtual size is an error: padding would bias the statistics.

    Under `jax.jit` with the batch sharded over devices, the groups are slices of one global
    array, so each device computes its own groups' statistics and the running averages (a mean
    over all groups) are already reduced across devices: they are synchronised at every step,
    not only before evaluation and checkpointing.
    """

    def __init__(
        self,
        num_features: int,
        *,
        virtual_batch_size: int | None = None,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        rngs: nnx.Rngs | None = None,
    ):
        self.virtual_batch_size, self.momentum, self.epsilon = virtual_batch_size, momentum, epsilon
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

    def __call__(self, x, *, train: bool):
        dtype = x.dtype
        if train:
            batch = x.shape[0]
            v = self.virtual_batch_size or batch
            if batch % v:
                raise ValueError(
                    f"GhostBatchNorm: batch {batch} is not a multiple of virtual_batch_size {v}; "
                    "pick a data.batch_size divisible by it"
                )
            # Statistics in float32 even under bf16 compute: a variance in bf16 loses most digits.
            groups = x.astype(jnp.float32).reshape((batch // v, v) + x.shape[1:])
            axes = tuple(range(1, groups.ndim - 1))  # per group: its examples and spatial positions
            mean = groups.mean(axis=axes, keepdims=True)
            var = jnp.maximum((groups * groups).mean(axis=axes, keepdims=True) - mean * mean, 0.0)
            y = ((groups - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(x.shape)
            m = self.momentum
            flat = lambda s: s.reshape(batch // v, -1).mean(axis=0)  # noqa: E731 - mean over groups
            self.mean[...] = m * self.mean[...] + (1 - m) * flat(mean)
            self.var[...] = m * self.var[...] + (1 - m) * flat(var)
        else:
            y = (x.astype(jnp.float32) - self.mean[...]) * jax.lax.rsqrt(
                self.var[...] + self.epsilon
            )
        return (y * self.scale[...] + self.bias[...]).astype(dtype)
