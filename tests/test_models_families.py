"""Every model family of experiments/ trains, sequential and batched, to the same numbers; batch
norm (ghost or plain) and bf16 compute behave as the playbook asks."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxplay import config as config_lib
from jaxplay import driver, spec, train, workloads
from jaxplay.errors import ConfigError
from jaxplay.models.layers import GhostBatchNorm
from jaxplay.train import state as state_lib
from jaxplay.train import step as step_lib

EXPERIMENTS = os.path.join(os.path.dirname(__file__), "..", "experiments")
SMOKE = {
    # experiment: overrides that keep it to a few steps on 2 CPU cores
    "mnist1d_mlp": {"train.steps": 20, "train.eval_every": 10, "schedule.warmup_steps": 5},
    "mnist1d_cnn": {"train.steps": 20, "train.eval_every": 10, "schedule.warmup_steps": 5},
    "mnist1d_gru": {},
    "cifar10_resnet": {},
    # 224x224 images are the point; the fewest of them that still train three periods and evaluate.
    "imagenet_resnet": {
        "train.steps": 3,
        "train.eval_every": 1,
        "data.batch_size": 8,
        "data.num_train": 32,
        "data.num_val": 16,
        "model.virtual_batch_size": 4,
        "train.eval_batch_size": 16,
    },
    "pystdlib_transformer": {},
}


def _study(name):
    """The smoke study of experiments/<name>.py, resolved."""
    c = config_lib.load(os.path.join(EXPERIMENTS, f"{name}.py:smoke"), overrides=SMOKE[name])
    return spec.resolve(c)


def _trials(name):
    study_plan = driver.plan(_study(name))
    # The study's first trial, and the same with half its learning rate: one compiled program.
    first = dict(study_plan.params[0])
    second = {
        **first,
        "optimizer.learning_rate": 0.5 * study_plan.trials[0].optimizer.learning_rate,
    }
    return [study_plan.spec.trial(p) for p in (first, second)]


# How much one operation's result can differ between two programs that sum in different orders,
# relative to it. bfloat16 compute accumulates products in float32 and rounds each result to
# bfloat16: two orders give the same bfloat16 value or values one unit apart (2^-8). In float32 a
# sum of n terms taken in another order moves by about sqrt(n) units of 2^-24 (rounding errors
# add like a random walk), and the sums of these models (fan-ins, batch statistics) run to hundreds
# of terms: 2^-20, sixteen units.
ROUNDING = {"bfloat16": 2.0**-8, "float32": 2.0**-20}


def _moved_init(delta: float, seed: int):
    """state_lib.init_state with every initial parameter moved by `delta` (relative, random
    sign): a rounding-level difference in each of them, the program otherwise the same."""
    original = state_lib.init_state

    def init_state(trial, instance, program):
        graphdef, state, hp, keys = original(trial, instance, program)
        rng = np.random.default_rng(seed)

        def move(p):
            p = np.asarray(p)
            signs = rng.choice(np.array([-1.0, 1.0], p.dtype), size=p.shape)
            return jnp.asarray(p * (1 + delta * signs))

        return graphdef, {**state, "params": jax.tree.map(move, state["params"])}, hp, keys

    return init_state


def _val_losses(trial, folder) -> dict:
    """{step: val/loss} of the plain program training `trial` in `folder`."""
    curve = {}
    train.train_and_evaluate(
        trial, folder, on_eval=lambda s, m: curve.__setitem__(s, m["val/loss"])
    )
    return curve


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_every_model_family_trains_sequential_and_batched_alike(name, tmp_path, monkeypatch):
    trials = _trials(name)
    solo, solo_curves = [], []
    for i, trial in enumerate(trials):
        curve = {}
        solo.append(
            train.train_and_evaluate(
                trial,
                tmp_path / f"solo{i}",
                on_eval=lambda s, m, curve=curve: curve.__setitem__(s, m),
            )
        )
        solo_curves.append(curve)
    curves = {0: {}, 1: {}}
    together = train.run_trials(
        trials,
        [tmp_path / f"b{i}" for i in range(2)],
        train.Hooks(on_eval=lambda i, s, m: curves[i].__setitem__(s, m)),
    )
    # The vmapped and the plain program are compiled to different kernels (and XLA:CPU picks
    # kernels by the CPU's instruction set), so they round differently, and training amplifies
    # those differences. How much, this very run says: each member trains once more with every
    # initial parameter moved by one operation's rounding difference, and `scale` is the largest
    # relative change of val/loss that makes over its evaluations.
    delta = ROUNDING[trials[0].train.compute_dtype]
    scale = []
    for i, trial in enumerate(trials):
        monkeypatch.setattr(state_lib, "init_state", _moved_init(delta, seed=i))
        moved = _val_losses(trial, tmp_path / f"moved{i}")
        monkeypatch.undo()
        plain = {s: m["val/loss"] for s, m in solo_curves[i].items()}
        scale.append(max(abs(moved[s] - plain[s]) / abs(plain[s]) for s in plain))
    # The programs differ by such a rounding difference at every step, the moved run once before
    # the first: each step's difference is amplified by the steps after it, at most as much as the
    # one before them all, so `steps` of them stay within steps x scale. val/loss is a float32
    # mean over the validation examples (losses >= 0), which another summation order moves by at
    # most (n - 1) units of 2^-24 even when every example's loss agrees.
    steps = trials[0].program.steps
    n_val = len(workloads.bind(trials[0]).dataset.splits["val"][1])

    def bound(value: float, i: int) -> float:
        return (steps * scale[i] + n_val * 2.0**-24) * abs(value)

    for i in range(2):
        assert solo[i].status == together[i].status == "completed", (
            solo[i].reason,
            together[i].reason,
        )
        assert sorted(solo_curves[i]) == sorted(curves[i])
        for step, metrics in solo_curves[i].items():
            assert np.isfinite(metrics["train/loss"])
            batched, plain = curves[i][step]["val/loss"], metrics["val/loss"]
            assert abs(batched - plain) <= bound(plain, i), (
                f"{name} member {i} step {step}: val/loss batched {batched} plain {plain}, "
                f"more than {steps} x {scale[i]:.2e} (moved run) apart"
            )
    # The best checkpoint (params and batch-norm statistics) restores to its recorded value: the
    # same parameters, restored bit for bit, but scored by the plain streamed evaluator where the
    # batched run scored them vmapped, so the two differ by one evaluation's rounding (no training
    # amplifies it), within the bound above. The step is the trial's best_step, named: among steps
    # whose objective ties, orbax's best_step is the newest and the trial's the earliest, so by
    # default another checkpoint with the same objective could be scored.
    best = together[0].best_step
    restored = train.evaluate_checkpoint(trials[0], tmp_path / "b0", step=best)
    recorded = curves[0][best]
    assert abs(restored["val/loss"] - recorded["val/loss"]) <= bound(recorded["val/loss"], 0)
    objective = trials[0].objective
    if objective == "val/error":
        # A count over n_val examples: rounding-level logits change it only where an example sits
        # on a tie between two classes, by one example (plus the float32 rounding of each ratio).
        errors_apart = abs(restored[objective] - together[0].best_value) * n_val
        assert errors_apart <= 1 + n_val * 2.0**-23
    else:
        assert abs(restored[objective] - together[0].best_value) <= bound(recorded[objective], 0)


def test_ghost_batch_norm_equals_batch_norm_when_virtual_batch_is_the_batch():
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 5, 5, 3)) * 3 + 1
    ghost = GhostBatchNorm(3, virtual_batch_size=16, momentum=0.9)
    plain = nnx.BatchNorm(3, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
    for _ in range(2):  # two steps: the running averages follow too
        np.testing.assert_allclose(
            ghost(x, train=True), plain(x, use_running_average=False), rtol=1e-5, atol=1e-5
        )
    np.testing.assert_allclose(ghost.mean[...], plain.mean[...], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ghost.var[...], plain.var[...], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        ghost(x, train=False), plain(x, use_running_average=True), rtol=1e-5, atol=1e-5
    )
    whole = GhostBatchNorm(3, virtual_batch_size=None)
    np.testing.assert_allclose(whole(x, train=True), ghost(x, train=True), rtol=1e-6, atol=1e-6)


def test_ghost_batch_norm_normalises_each_virtual_batch_on_its_own():
    x = jax.random.normal(jax.random.PRNGKey(1), (12, 7)) * jnp.arange(1, 13)[:, None]
    ghost = GhostBatchNorm(7, virtual_batch_size=4, momentum=0.0)
    out = ghost(x, train=True)
    for g in range(3):
        part = GhostBatchNorm(7, virtual_batch_size=None)(x[4 * g : 4 * g + 4], train=True)
        np.testing.assert_allclose(out[4 * g : 4 * g + 4], part, rtol=1e-5, atol=1e-5)
    # Momentum 0: the running stats are this step's, averaged over the three groups.
    groups = x.reshape(3, 4, 7)
    np.testing.assert_allclose(ghost.mean[...], groups.mean(1).mean(0), rtol=1e-5)
    np.testing.assert_allclose(ghost.var[...], groups.var(1).mean(0), rtol=1e-5)
    with pytest.raises(ValueError, match="not a multiple of virtual_batch_size 4"):
        ghost(x[:10], train=True)


SHARDED_BN = r"""
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P
from jaxplay.errors import ConfigError
from jaxplay.models.layers import GhostBatchNorm
assert jax.device_count() == 4
x = jax.random.normal(jax.random.PRNGKey(0), (32, 6)) * jnp.arange(1, 33)[:, None]
def step(state, x):
    model = nnx.merge(graphdef, state)
    y = model(x, train=True)
    return y, nnx.state(model)
graphdef, state = nnx.split(GhostBatchNorm(6, virtual_batch_size=4))
y1, s1 = jax.jit(step)(state, x)
mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
xs = jax.device_put(x, NamedSharding(mesh, P("data")))  # each device holds 8 examples: 2 groups
y4, s4 = jax.jit(step)(state, xs)
assert len(xs.sharding.device_set) == 4
np.testing.assert_allclose(y4, y1, rtol=1e-5, atol=1e-5)
for a, b in zip(jax.tree.leaves(s4), jax.tree.leaves(s1)):
    assert a.sharding.is_fully_replicated  # one running average, not one per device
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
print("ok")
"""


def test_ghost_batch_norm_running_stats_are_global_when_the_batch_is_sharded():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    run = subprocess.run(
        [sys.executable, "-c", SHARDED_BN], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]


def test_bf16_compute_keeps_float32_master_weights_and_optimizer_state(tmp_path):
    study_plan = driver.plan(_study("pystdlib_transformer"))
    params = dict(study_plan.params[0])
    t32 = study_plan.trials[0]
    t16 = study_plan.spec.trial({**params, "train.compute_dtype": "bfloat16"})
    instance = workloads.bind(t16)
    program = t16.program
    _, state, hp, _ = state_lib.init_state(t16, instance, program)
    assert {leaf.dtype for leaf in jax.tree.leaves(state["params"])} == {jnp.dtype(jnp.float32)}
    assert {leaf.dtype for leaf in jax.tree.leaves(state["opt_state"]) if leaf.ndim} == {
        jnp.dtype(jnp.float32)
    }
    assert {v.dtype for v in hp.values()} == {jnp.dtype(jnp.float32)}
    graphdef = state_lib.initializer(t16, instance, program)[0]
    x = np.asarray(instance.dataset.x_train[:4])
    jaxpr = str(
        jax.make_jaxpr(
            lambda p: step_lib.apply_model(
                graphdef, program, p, state["batch_stats"], x, train=True
            )[0]
        )(state["params"])
    )
    assert "bf16" in jaxpr and "dot_general" in jaxpr
    r16 = train.train_and_evaluate(t16, tmp_path / "bf16")
    r32 = train.train_and_evaluate(t32, tmp_path / "f32")
    assert r16.status == r32.status == "completed"
    # bf16 really ran (the numbers differ) and stays close to float32.
    assert r16.final_metrics["val/loss"] != r32.final_metrics["val/loss"]
    assert r16.final_metrics["val/loss"] == pytest.approx(r32.final_metrics["val/loss"], rel=0.02)


def test_unknown_compute_dtype_is_refused():
    study = _study("pystdlib_transformer")
    with pytest.raises(ConfigError, match="train.compute_dtype: unknown 'fp8'") as e:
        spec.resolve(config_lib.apply(study.tree, {"train.compute_dtype": "fp8"}))
    assert "use one of ['float32', 'bfloat16']" in str(e.value)
