"""Model families: shapes, and the im2col convolution equals a real convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxplay import models, spec
from jaxplay.models.cnn import Conv1D


@pytest.mark.parametrize("kernel_size", [1, 3, 4, 5])
def test_conv1d_matches_lax_conv(kernel_size):
    conv = Conv1D(3, 4, kernel_size, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 11, 3))
    kernel = conv.linear.kernel[...].reshape(
        kernel_size, 3, 4
    )  # (width, in, out) as im2col lays it out
    expected = jax.lax.conv_general_dilated(
        x, kernel, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC")
    )
    np.testing.assert_allclose(conv(x), expected + conv.linear.bias[...], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "cfg",
    [
        dict(name="mlp", width=16, depth=2, activation="gelu"),
        dict(name="cnn", channels=4, depth=2, kernel_size=3, activation="tanh"),
    ],
)
def test_models_map_examples_to_logits(cfg):
    fields = {k: v for k, v in cfg.items() if k != "name"}
    model_spec = spec.ModelSpec(name=cfg["name"], options=spec.Fields(fields))
    model = models.build(model_spec, (40,), 10, nnx.Rngs(0))
    x = jnp.ones((5, 40))
    assert model(x).shape == (5, 10)
    a = model(x, dropout_rate=jnp.float32(0.5), key=jax.random.PRNGKey(0))
    b = model(x, dropout_rate=jnp.float32(0.5), key=jax.random.PRNGKey(1))
    assert not np.allclose(a, b)  # dropout is live in training
    np.testing.assert_allclose(
        model(x, dropout_rate=jnp.float32(0.0), key=jax.random.PRNGKey(0)), model(x), rtol=1e-6
    )
