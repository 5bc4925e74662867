"""ResNet v1.5 (He et al. 2016) with batch norm, for CIFAR-size and ImageNet-size images.

`stem='cifar'`: one 3x3 conv, no pooling (32x32 inputs). `stem='imagenet'`: 7x7 stride-2 conv
and 3x3 stride-2 max pool (224x224 inputs). `block='basic'` (two 3x3 convs: ResNet-18/34) or
`'bottleneck'` (1x1, 3x3, 1x1 with 4x expansion: ResNet-50). Batch norm is GhostBatchNorm with
`virtual_batch_size` examples per statistics group (None: the whole batch).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxplay.models.layers import GhostBatchNorm, activation, dropout

# ImageNet's per-channel mean and std (on 0-255 pixels); close enough for CIFAR too. numpy, not
# jnp: importing jaxplay must not start a jax backend (jax.distributed.initialize comes first).
_MEAN = np.array([123.7, 116.3, 103.5], np.float32)
_STD = np.array([58.4, 57.1, 57.4], np.float32)


def _conv(cin, cout, k, stride, rngs):
    return nnx.Conv(
        cin,
        cout,
        (k, k),
        strides=(stride, stride),
        padding="SAME",
        use_bias=False,
        kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
        rngs=rngs,
    )


class Block(nnx.Module):
    """A residual block; the last norm's scale starts at zero so each block starts as identity."""

    def __init__(self, cin, width, stride, *, bottleneck, vbs, rngs):
        shapes = (
            [(cin, width, 1, 1), (width, width, 3, stride), (width, 4 * width, 1, 1)]
            if bottleneck
            else [(cin, width, 3, stride), (width, width, 3, 1)]
        )
        cout = shapes[-1][1]
        self.convs = nnx.List([_conv(a, b, k, s, rngs) for a, b, k, s in shapes])
        self.norms = nnx.List([GhostBatchNorm(b, virtual_batch_size=vbs) for _, b, _, _ in shapes])
        self.norms[-1].scale[...] = jnp.zeros_like(self.norms[-1].scale[...])
        # A projection shortcut where the shape changes (an empty list otherwise: nnx attributes
        # keep one kind, data or static).
        self.project = nnx.List([])
        if stride != 1 or cin != cout:
            self.project = nnx.List(
                [_conv(cin, cout, 1, stride, rngs), GhostBatchNorm(cout, virtual_batch_size=vbs)]
            )

    def __call__(self, x, act, train):
        y = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            y = norm(conv(y), train=train)
            if i < len(self.convs) - 1:
                y = act(y)
        if len(self.project):
            conv, norm = self.project
            x = norm(conv(x), train=train)
        return act(x + y)


class ResNet(nnx.Module):
    """Stages of residual blocks (`stage_sizes`), widths doubling from `width` each stage."""

    def __init__(
        self,
        input_shape,
        num_classes,
        *,
        stage_sizes=(2, 2, 2, 2),
        width=64,
        block="basic",
        stem="cifar",
        virtual_batch_size=None,
        activation="relu",
        rngs,
    ):
        self.act, self.stem = activation, stem
        channels = input_shape[-1]
        self.stem_conv = _conv(
            channels, width, 3 if stem == "cifar" else 7, 1 if stem == "cifar" else 2, rngs
        )
        self.stem_norm = GhostBatchNorm(width, virtual_batch_size=virtual_batch_size)
        blocks, cin = [], width
        for i, size in enumerate(stage_sizes):
            for j in range(size):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(
                    Block(
                        cin,
                        width * 2**i,
                        stride,
                        bottleneck=block == "bottleneck",
                        vbs=virtual_batch_size,
                        rngs=rngs,
                    )
                )
                cin = width * 2**i * (4 if block == "bottleneck" else 1)
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(cin, num_classes, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, x, *, train: bool, dropout_rate=0.0, key=None):
        act = activation(self.act)
        # uint8 pixels in; compute in the dtype of the weights (bfloat16 under mixed precision).
        x = (x.astype(jnp.float32) - _MEAN[: x.shape[-1]]) / _STD[: x.shape[-1]]
        x = x.astype(self.stem_conv.kernel.dtype)
        x = act(self.stem_norm(self.stem_conv(x), train=train))
        if self.stem == "imagenet":
            x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for block in self.blocks:
            x = block(x, act, train)
        x = jnp.mean(x, axis=(1, 2))
        return self.head(dropout(x, dropout_rate, key))
