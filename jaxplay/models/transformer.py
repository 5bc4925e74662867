"""A decoder-only Transformer language model with pre-norm residual blocks (the playbook's
stable form: x + f(LayerNorm(x)), and a final LayerNorm before the output projection)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxplay.errors import ConfigError
from jaxplay.models.layers import activation, dropout


class CausalSelfAttention(nnx.Module):
    """Multi-head causal self-attention on `jax.nn.dot_product_attention` (cuDNN's fused kernel
    where available)."""

    def __init__(self, dim, heads, *, rngs):
        self.heads = heads
        self.qkv = nnx.Linear(dim, 3 * dim, use_bias=False, rngs=rngs)
        self.out = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)

    def __call__(self, x):
        b, t, d = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(b, t, 3 * self.heads, d // self.heads), 3, axis=2)
        return self.out(jax.nn.dot_product_attention(q, k, v, is_causal=True).reshape(b, t, d))


class Block(nnx.Module):
    """x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim, heads, mlp_ratio, *, rngs):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = CausalSelfAttention(dim, heads, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.up = nnx.Linear(dim, mlp_ratio * dim, rngs=rngs)
        self.down = nnx.Linear(mlp_ratio * dim, dim, rngs=rngs)

    def __call__(self, x, act, dropout_rate, keys):
        x = x + dropout(self.attn(self.norm1(x)), dropout_rate, keys[0])
        return x + dropout(self.down(act(self.up(self.norm2(x)))), dropout_rate, keys[1])


class TransformerLM(nnx.Module):
    """Token ids (batch, length) -> next-token logits (batch, length, vocab)."""

    def __init__(
        self,
        input_shape,
        num_classes,
        *,
        dim=128,
        depth=2,
        heads=4,
        mlp_ratio=4,
        activation="gelu",
        rngs,
    ):
        if dim % heads:
            raise ConfigError(f"model.heads: must divide model.dim={dim} (got {heads})")
        self.act = activation
        self.embed = nnx.Embed(num_classes, dim, rngs=rngs)
        self.position = nnx.Param(0.02 * jax.random.normal(rngs.params(), (input_shape[0], dim)))
        self.blocks = nnx.List([Block(dim, heads, mlp_ratio, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, rngs=rngs)

    def __call__(self, tokens, *, train: bool = False, dropout_rate=0.0, key=None):
        act = activation(self.act)
        x = self.embed(tokens.astype(jnp.int32))
        x = x + self.position[: tokens.shape[1]].astype(x.dtype)
        keys = (
            [[None, None]] * len(self.blocks)
            if key is None
            else jax.random.split(key, (len(self.blocks), 2))
        )
        for block, k in zip(self.blocks, keys):
            x = block(x, act, dropout_rate, k)
        return self.head(self.norm(x))
