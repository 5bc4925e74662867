"""1-D convolutional network (for sequences such as MNIST-1D)."""
from __future__ import annotations

import jax
from flax import nnx

from jaxplay.models.layers import activation, dropout


class CNN1D(nnx.Module):
    """`depth` same-padded conv layers of `channels` filters, then a linear head on the flattened map."""

    def __init__(self, input_shape, num_classes, *, channels=32, depth=3, kernel_size=5,
                 activation="relu", rngs):
        self.act = activation
        length = input_shape[0]
        in_ch = input_shape[1] if len(input_shape) > 1 else 1
        convs = []
        for _ in range(depth):
            convs.append(nnx.Conv(in_ch, channels, kernel_size=(kernel_size,), padding="SAME", rngs=rngs))
            in_ch = channels
        self.convs = nnx.List(convs)
        self.head = nnx.Linear(length * channels, num_classes, rngs=rngs)

    def __call__(self, x, *, dropout_rate=0.0, key=None):
        act = activation(self.act)
        if x.ndim == 2:
            x = x[..., None]  # (batch, length) -> (batch, length, 1 channel)
        for conv in self.convs:
            x = act(conv(x))
        x = x.reshape(x.shape[0], -1)
        return self.head(dropout(x, dropout_rate, key))
