"""Optimizers and schedules: the update rules of the playbook's PART C, with traced
hyperparameters, checked against the equations written out by hand."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from factories import tiny_config, write_study_file
from jaxplay import config as config_lib
from jaxplay import optim, spec, train
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


# ---- PART C of the playbook, written out by hand --------------------------------------------
# "What are the update rules for all the popular optimization algorithms?" (PART C of
# shared/reference/playbook-checklist.md), with t counted from 0 and g the gradient at step t:
#   SGD       theta -= lr g
#   Momentum  v0 = 0;  v = momentum v + g;  theta -= lr v
#   Nesterov  v0 = 0;  v = momentum v + g;  theta -= lr (momentum v + g)
#   RMSProp   v0 = 1, m0 = 0;  v = rho v + (1 - rho) g^2;  m = momentum m + lr g / sqrt(v + eps);
#             theta -= m
#   Adam      m0 = v0 = 0;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
#             b = sqrt(1 - b2^(t+1)) / (1 - b1^(t+1));  theta -= lr m / (sqrt(v) + eps) b
#   NAdam     as Adam, with theta -= lr (b1 m + (1 - b1) g) / (sqrt(v) + eps) b
# Not in PART C: weight_decay is an L2 term, g += weight_decay theta, on kernels (ndim > 1) only;
# AdamW instead decays decoupled (Loshchilov & Hutter): theta -= lr (Adam's step + wd theta).
# Reference arithmetic is float64; the optimizer runs in float32 (24-bit mantissa, 6e-8 per
# rounding). A step is a few dozen float32 operations on state carried over 6 steps, so its
# relative error is ~1e-6; rtol 1e-5 leaves margin and is still far below the differences the
# rules make (eps placement, v0, Nesterov move steps by percents here). The atol covers entries
# whose step is near 0 (a momentum crossing zero), where a relative test means nothing.
RTOL = 1e-5
STEPS = 6


def _part_c(name, nesterov, h, theta0, grads):
    """Each step's update (theta_{t+1} - theta_t) by PART C's equations, in float64."""
    theta = {k: np.asarray(x, np.float64) for k, x in theta0.items()}
    state = {k: {"v": np.ones_like(x) if name == "rmsprop" else np.zeros_like(x),
                 "m": np.zeros_like(x)} for k, x in theta.items()}  # fmt: skip
    lr, mom, rho, b1, b2, eps, wd = (
        h[k] for k in ("learning_rate", "momentum", "rho", "b1", "b2", "eps", "weight_decay")
    )
    steps = []
    for t, grad in enumerate(grads):
        step = {}
        for k, x in theta.items():
            kernel = x.ndim > 1
            g = np.asarray(grad[k], np.float64)
            if name != "adamw" and kernel:
                g = g + wd * x  # L2
            s = state[k]
            if name == "sgd":
                s["v"] = mom * s["v"] + g
                step[k] = -lr * (mom * s["v"] + g if nesterov else s["v"])
            elif name == "rmsprop":
                s["v"] = rho * s["v"] + (1 - rho) * g**2
                s["m"] = mom * s["m"] + lr / np.sqrt(s["v"] + eps) * g
                step[k] = -s["m"]
            else:
                s["m"] = b1 * s["m"] + (1 - b1) * g
                s["v"] = b2 * s["v"] + (1 - b2) * g**2
                b = np.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
                numerator = b1 * s["m"] + (1 - b1) * g if name == "nadam" else s["m"]
                adam = numerator / (np.sqrt(s["v"]) + eps) * b
                decay = wd * x if name == "adamw" and kernel else 0.0
                step[k] = -lr * (adam + decay)
        theta = {k: theta[k] + step[k] for k in theta}
        steps.append(step)
    return steps


@functools.partial(jax.jit, static_argnames=("name", "nesterov"))
def _update(name, nesterov, hparams, grads, state, params):
    """One compiled step with the hyperparameters traced, as the trainer runs it."""
    return optim.make(name, nesterov, "constant", 100, hparams).update(grads, state, params)


def _ours(name, nesterov, hparams, theta0, grads):
    """Each step's update from optim.make, in float32."""
    params = {k: jnp.asarray(x, jnp.float32) for k, x in theta0.items()}
    state = optim.make(name, nesterov, "constant", 100, hparams).init(params)
    steps = []
    for grad in grads:
        updates, state = _update(name, nesterov, hparams, grad, state, params)
        params = optax.apply_updates(params, updates)
        steps.append(updates)
    return steps


def _problem(seed=0):
    """Start parameters (a kernel and a bias) and fixed gradients over a wide range of scales."""
    rng = np.random.default_rng(seed)
    theta0 = {"w": rng.normal(size=(2, 3)), "b": rng.normal(size=3)}
    grads = [
        {
            k: (rng.normal(size=x.shape) * 10 ** rng.uniform(-2, 0, x.shape)).astype(np.float32)
            for k, x in theta0.items()
        }  # fmt: skip
        for _ in range(STEPS)
    ]
    return theta0, grads


MOMENTUM = dict(learning_rate=0.05, momentum=0.8)
RMSPROP = dict(learning_rate=0.05, rho=0.8, eps=1e-3)
ADAM = dict(learning_rate=0.05, b1=0.7, b2=0.95, eps=1e-3)
PART_C_CASES = {
    # id: (name, nesterov, hyperparameters)
    "sgd": ("sgd", False, dict(learning_rate=0.05, momentum=0.0)),
    "momentum": ("sgd", False, MOMENTUM),
    "nesterov": ("sgd", True, MOMENTUM),
    "nesterov_l2": ("sgd", True, {**MOMENTUM, "weight_decay": 0.1}),
    "rmsprop": ("rmsprop", False, {**RMSPROP, "momentum": 0.0}),
    "rmsprop_momentum": ("rmsprop", False, {**RMSPROP, "momentum": 0.7}),
    "rmsprop_l2": ("rmsprop", False, {**RMSPROP, "momentum": 0.7, "weight_decay": 0.1}),
    "adam": ("adam", False, ADAM),
    "adam_l2": ("adam", False, {**ADAM, "weight_decay": 0.1}),
    "nadam": ("nadam", False, ADAM),
    "adamw": ("adamw", False, {**ADAM, "weight_decay": 0.1}),
}


@pytest.mark.parametrize("case", sorted(PART_C_CASES))
def test_optimizer_follows_playbook_part_c(case):
    name, nesterov, values = PART_C_CASES[case]
    # The reference takes the float32 values the optimizer sees: 0.95 rounds in float32, and
    # 1 - b2 would magnify that rounding 19 times before any arithmetic is compared.
    h = {k: float(np.float32(v)) for k, v in {**optim.HPARAM_DEFAULTS, **values}.items()}
    theta0, grads = _problem()
    ours = _ours(name, nesterov, hp(**values), theta0, grads)
    ref = _part_c(name, nesterov, h, theta0, grads)
    for t, (a, b) in enumerate(zip(ours, ref)):
        for k in b:
            np.testing.assert_allclose(
                a[k], b[k], rtol=RTOL, atol=1e-6 * np.abs(b[k]).max(), err_msg=f"step {t}, {k}"
            )


def test_the_part_c_reference_tells_the_rules_apart():
    """The hand-written rules differ from each other far beyond RTOL, so the test above would see
    a swapped or misplaced term (it is not comparing near-identical numbers)."""
    theta0, grads = _problem()
    base = {**optim.HPARAM_DEFAULTS, "learning_rate": 0.05, "momentum": 0.8, "rho": 0.8}
    base.update(b1=0.7, b2=0.95, eps=1e-3)
    runs = {
        case: _part_c(*PART_C_CASES[case][:2], base, theta0, grads)[-1]["b"]
        for case in ("momentum", "nesterov", "rmsprop", "adam", "nadam")
    }
    for a, b in itertools.combinations(runs.values(), 2):
        assert not np.allclose(a, b, rtol=100 * RTOL)


def test_adam_bias_correction_multiplies_after_eps_unlike_optax():
    """PART C: lr m / (sqrt(v) + eps) b; on the first step that is lr g / (|g| + eps / sqrt(1 -
    b2)), where optax.adam takes lr g / (|g| + eps). The playbook's eps is larger early on."""
    g = {"b": jnp.array([1e-3, -2e-2, 0.5])}
    lr, b2, eps = 0.1, 0.99, 1e-3
    values = hp(learning_rate=lr, b1=0.9, b2=b2, eps=eps)
    params = {"b": jnp.zeros(3)}
    tx = optim.make("adam", False, "constant", 100, values)
    first, _ = tx.update(g, tx.init(params), params)
    want = -lr * g["b"] / (jnp.abs(g["b"]) + eps / np.sqrt(1 - b2))
    np.testing.assert_allclose(first["b"], want, rtol=RTOL)
    optax_adam = optax.adam(lr, b1=0.9, b2=b2, eps=eps)
    theirs, _ = optax_adam.update(g, optax_adam.init(params), params)
    assert not np.allclose(first["b"], theirs["b"], rtol=0.1)


def test_rmsprop_starts_its_average_at_one_not_zero():
    """PART C's v0 = 1: the first step is lr g / sqrt(rho + (1 - rho) g^2 + eps), about lr g for
    small g. With optax's default v0 = 0 it would be about lr sign(g) / sqrt(1 - rho)."""
    g = {"b": jnp.array([1e-3, -2e-2, 0.5])}
    lr, rho, eps = 0.1, 0.9, 1e-10
    params = {"b": jnp.zeros(3)}
    tx = optim.make("rmsprop", False, "constant", 100, hp(learning_rate=lr, rho=rho, eps=eps))
    first, _ = tx.update(g, tx.init(params), params)
    want = -lr * g["b"] / np.sqrt(rho + (1 - rho) * g["b"] ** 2 + eps)
    np.testing.assert_allclose(first["b"], want, rtol=RTOL)
    zero_start = optax.rmsprop(lr, decay=rho, eps=eps)  # optax's default initial_scale=0
    theirs, _ = zero_start.update(g, zero_start.init(params), params)
    assert not np.allclose(first["b"], theirs["b"], rtol=0.1)


def test_adam_state_keeps_optax_layout():
    """Checkpoints written before the PART C rule restore: the opt_state tree of the optax.adam,
    optax.nadam and optax.adamw chains jaxplay built before."""
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    lr = optim.learning_rate_fn("constant", 100, hp())
    mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)  # noqa: E731
    before = {
        "adam": optax.chain(optax.add_decayed_weights(0.0, mask=mask), optax.adam(lr)),
        "nadam": optax.chain(optax.add_decayed_weights(0.0, mask=mask), optax.nadam(lr)),
        "adamw": optax.adamw(lr, mask=mask),
    }
    for name, tx in before.items():
        ours = optim.make(name, False, "constant", 100, hp()).init(params)
        assert jax.tree.structure(ours) == jax.tree.structure(tx.init(params)), name


def test_rho_is_traced_one_compilation_serves_every_value():
    theta0, grads = _problem()
    _update.clear_cache()
    for rho in (0.5, 0.9, 0.99):
        _ours("rmsprop", False, hp(rho=rho, momentum=0.5), theta0, grads[:1])
    assert _update._cache_size() == 1


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


def test_rmsprop_study_resolves_and_trains(tmp_path):
    c = tiny_config()
    c.optimizer = dict(name="rmsprop", learning_rate=3e-3, rho=0.95, momentum=0.9, eps=1e-10)
    study = spec.resolve(config_lib.load(write_study_file(tmp_path / "study.py", c)))
    trial = study.base
    assert trial.optimizer.name == "rmsprop" and not trial.optimizer.nesterov
    assert trial.hparams.rho == 0.95 and trial.hparams.momentum == 0.9
    assert trial.optimizer.weight_decay == 0.0  # rmsprop's default
    # rho is a traced float: another rho shares the compiled program.
    assert study.trial({"optimizer.rho": 0.9}).group_key == trial.group_key
    curve = {}
    result = train.train_and_evaluate(trial, tmp_path / "t", on_eval=curve.__setitem__)
    assert result.status == "completed"
    assert curve[100]["train/loss"] < curve[0]["train/loss"]


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("b1", 0.9, r"optimizer.b1: 'rmsprop' has no hyperparameter 'b1'; it takes \['eps', "
         r"'learning_rate', 'momentum', 'rho', 'weight_decay'\]"),
        # PART C gives RMSProp no Nesterov variant.
        ("nesterov", True, r"optimizer.nesterov: 'rmsprop' has no hyperparameter 'nesterov'"),
        ("rho", 1.0, r"optimizer.rho: must be in \[0, 1\) \(got 1.0\); e.g. 0.9"),
    ],
)  # fmt: skip
def test_bad_rmsprop_config_names_the_field(key, value, message):
    c = tiny_config()
    c.optimizer = dict(name="rmsprop", learning_rate=1e-3)
    c.optimizer[key] = value
    with pytest.raises(ConfigError, match=message) as info:
        spec.resolve(c)
    assert "\n" not in str(info.value)


def test_rho_belongs_to_rmsprop_alone():
    c = tiny_config()
    c.optimizer.rho = 0.9
    with pytest.raises(ConfigError, match=r"optimizer.rho: 'adam' has no hyperparameter 'rho'"):
        spec.resolve(c)
