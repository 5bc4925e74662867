"""Multi-layer perceptron."""

from __future__ import annotations

import math

import jax
from flax import nnx

from jaxplay.models.layers import activation, dropout


class MLP(nnx.Module):
    """`depth` hidden layers of `width` units, dropout after each hidden activation."""

    def __init__(self, input_shape, num_classes, *, width=256, depth=2, activation="relu", rngs):
        self.act = activation
        sizes = [math.prod(input_shape)] + [width] * depth
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.head = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

    def __call__(self, x, *, train: bool = False, dropout_rate=0.0, key=None):
        act = activation(self.act)
        x = x.reshape(x.shape[0], -1)
        keys = (
            [None] * len(self.hidden)
            if key is None
            else list(jax.random.split(key, len(self.hidden)))
        )
        for layer, k in zip(self.hidden, keys):
            x = dropout(act(layer(x)), dropout_rate, k)
        return self.head(x)
