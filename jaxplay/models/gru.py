"""A GRU sequence classifier (the MNIST-1D paper's recurrent baseline): one GRU layer over the
sequence, a linear head on its last hidden state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxplay.models.layers import dropout


class GRU(nnx.Module):
    """(batch, length[, features]) -> logits; `hidden` units."""

    def __init__(self, input_shape, num_classes, *, hidden=128, rngs):
        features = input_shape[1] if len(input_shape) > 1 else 1
        self.cell = nnx.GRUCell(features, hidden, rngs=rngs)
        self.hidden = hidden
        self.head = nnx.Linear(hidden, num_classes, rngs=rngs)

    def __call__(self, x, *, train: bool = False, dropout_rate=0.0, key=None):
        if x.ndim == 2:
            x = x[..., None]
        carry = jnp.zeros((x.shape[0], self.hidden), x.dtype)
        # A plain lax.scan over time, closing over the cell (nnx.RNN would add an RNG stream to
        # the model's state, which the trainer does not carry).
        carry, _ = jax.lax.scan(lambda h, xt: self.cell(h, xt), carry, jnp.swapaxes(x, 0, 1))
        return self.head(dropout(carry, dropout_rate, key))
