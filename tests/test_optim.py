"""Optimizers and schedules: traced hyperparameters must do what optax's own aliases do."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from factories import tiny_config
from jaxplay import optim, spec
from jaxplay.errors import ConfigError


def hp(**values):
    full = dict(optim.HPARAM_DEFAULTS)
    full.update(values)
    return optim.as_arrays(spec.HParams(**full))


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_warmup_ramps_linearly_from_zero_to_peak(schedule):
    fn = optim.learning_rate_fn(schedule, 1000, hp(learning_rate=0.5, warmup_steps=100))
    assert float(fn(0)) == 0.0
    np.testing.assert_allclose(float(fn(50)), 0.25, rtol=1e-6)
    np.testing.assert_allclose(float(fn(100)), 0.5, rtol=1e-6)


def test_decay_shapes_after_warmup():
    peak = hp(learning_rate=2.0, warmup_steps=0)
    const = optim.learning_rate_fn("constant", 1000, peak)
    linear = optim.learning_rate_fn("linear", 1000, peak)
    cosine = optim.learning_rate_fn("cosine", 1000, peak)
    assert float(const(999)) == 2.0
    np.testing.assert_allclose(float(linear(500)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(linear(1000)), 0.0, atol=1e-6)
    np.testing.assert_allclose(float(cosine(500)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(float(cosine(250)), 1.70711, rtol=1e-5)  # a quarter of the way
    floor = optim.learning_rate_fn("linear", 1000, hp(learning_rate=2.0, min_lr_factor=0.1))
    np.testing.assert_allclose(float(floor(1000)), 0.2, rtol=1e-5)


def test_decay_starts_after_warmup():
    fn = optim.learning_rate_fn("linear", 1100, hp(learning_rate=1.0, warmup_steps=100))
    np.testing.assert_allclose(float(fn(600)), 0.5, rtol=1e-6)


def _run(tx, steps=5):
    params = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.3, -0.1])}
    state = tx.init(params)
    loss = lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(jnp.sin(p["b"]))  # noqa: E731
    for _ in range(steps):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    return params


REFERENCE = {
    "sgd": lambda: optax.sgd(0.05, momentum=0.8, nesterov=True),
    "adam": lambda: optax.adam(0.05, b1=0.7, b2=0.95, eps=1e-3),
    "nadam": lambda: optax.nadam(0.05, b1=0.7, b2=0.95, eps=1e-3),
    "adamw": lambda: optax.adamw(
        0.05,
        b1=0.7,
        b2=0.95,
        eps=1e-3,
        weight_decay=0.1,
        mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p),
    ),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_optimizer_matches_optax_alias(name):
    values = hp(
        learning_rate=0.05,
        momentum=0.8,
        b1=0.7,
        b2=0.95,
        eps=1e-3,
        weight_decay=0.1 if name == "adamw" else 0.0,
    )
    ours = _run(optim.make(name, name == "sgd", "constant", 100, values))
    ref = _run(REFERENCE[name]())
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), ours, ref)


def test_nesterov_and_momentum_change_the_update():
    a = _run(optim.make("sgd", True, "constant", 100, hp(learning_rate=0.05, momentum=0.9)))
    b = _run(optim.make("sgd", False, "constant", 100, hp(learning_rate=0.05, momentum=0.9)))
    c = _run(optim.make("sgd", False, "constant", 100, hp(learning_rate=0.05, momentum=0.0)))
    assert not np.allclose(a["w"], b["w"]) and not np.allclose(b["w"], c["w"])


def test_weight_decay_is_l2_on_kernels_only_for_sgd():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    tx = optim.make(
        "sgd", False, "constant", 100, hp(learning_rate=0.1, momentum=0.0, weight_decay=0.5)
    )
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.05 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_allclose(updates["b"], 0.0)


def test_clipping_logs_unclipped_norm():
    grads = {"a": jnp.array([3.0, 4.0])}
    clipped, norm = optim.clip_by_global_norm(grads, jnp.float32(1.0))
    assert float(norm) == 5.0
    np.testing.assert_allclose(float(optax.tree.norm(clipped)), 1.0, rtol=1e-6)
    unclipped, _ = optim.clip_by_global_norm(grads, jnp.float32(0.0))
    np.testing.assert_allclose(unclipped["a"], grads["a"])


@pytest.mark.parametrize(
    "path,value,message",
    [
        ("optimizer.name", "adagrad", "optimizer.name: unknown optimizer 'adagrad'"),
        ("schedule.name", "step", "schedule.name: unknown schedule 'step'"),
        ("schedule.warmup_steps", 100, "schedule.warmup_steps: must be in [0, train.steps=100)"),
    ],
)
def test_bad_optimizer_config(path, value, message):
    with pytest.raises(
        ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        spec.resolve(tiny_config(**{path: value}))


def test_field_of_another_optimizer_is_rejected():
    c = tiny_config()
    c.optimizer.momentum = 0.9
    with pytest.raises(
        ConfigError, match=r"optimizer.momentum: 'adam' has no hyperparameter 'momentum'"
    ):
        spec.resolve(c)


def test_hparams_take_optimizer_defaults():
    c = tiny_config(**{"optimizer.name": "sgd"})
    del c.optimizer["b1"], c.optimizer["b2"], c.optimizer["eps"]
    values = spec.resolve(c).base.hparams.as_dict()
    assert values["momentum"] == optim.OPTIMIZERS["sgd"]["momentum"]
    assert values["learning_rate"] == 3e-3
