"""1-D convolutional network (for sequences such as MNIST-1D)."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxplay.models.layers import activation, dropout


class Conv1D(nnx.Module):
    """A same-padded 1-D convolution written as im2col + one matmul.

    Measured on XLA:CPU (jax 0.10): a convolution inside `lax.scan` (how the trainer runs its
    steps) is over an order of magnitude slower than the same conv as a per-step jit, while the
    im2col form inside the scan runs close to the per-step jit. On GPUs the matmul is as good as
    cuDNN here.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, rngs: nnx.Rngs):
        self.kernel_size = kernel_size
        self.linear = nnx.Linear(kernel_size * in_channels, out_channels, rngs=rngs)

    def __call__(self, x):  # (batch, length, channels)
        left = (self.kernel_size - 1) // 2
        padded = jnp.pad(x, ((0, 0), (left, self.kernel_size - 1 - left), (0, 0)))
        length = x.shape[1]
        patches = jnp.concatenate(
            [padded[:, i : i + length] for i in range(self.kernel_size)], axis=-1
        )
        return self.linear(patches)


class CNN1D(nnx.Module):
    """`depth` same-padded conv layers of `channels` filters, then a linear head on the flat map."""

    def __init__(
        self,
        input_shape,
        num_classes,
        *,
        channels=32,
        depth=3,
        kernel_size=5,
        activation="relu",
        rngs,
    ):
        self.act = activation
        length = input_shape[0]
        in_ch = input_shape[1] if len(input_shape) > 1 else 1
        convs = []
        for _ in range(depth):
            convs.append(Conv1D(in_ch, channels, kernel_size, rngs=rngs))
            in_ch = channels
        self.convs = nnx.List(convs)
        self.head = nnx.Linear(length * channels, num_classes, rngs=rngs)

    def __call__(self, x, *, train: bool = False, dropout_rate=0.0, key=None):
        act = activation(self.act)
        if x.ndim == 2:
            x = x[..., None]  # (batch, length) -> (batch, length, 1 channel)
        for conv in self.convs:
            x = act(conv(x))
        x = x.reshape(x.shape[0], -1)
        return self.head(dropout(x, dropout_rate, key))
