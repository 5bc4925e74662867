"""optax optimizers and learning-rate schedules built from a config, with traced hyperparameters.

Every float hyperparameter (learning rate, momentum, betas, rho, eps, weight decay, warmup length,
label smoothing, dropout, clipping threshold) enters the compiled train step as a float32 array
in the `hparams` dict, never as a Python constant: one compiled program then serves every trial
of a study that varies only those values (and, later, a vmapped stack of trials).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxplay.errors import ConfigError

# Optimizer name -> its float hyperparameters and their defaults. The update rules are the
# playbook's PART C ("What are the update rules for all the popular optimization algorithms?"),
# written with optax building blocks where optax computes the same thing:
# - sgd: momentum v = momentum * v + g, step lr * v (optax.sgd); nesterov=True steps
#   lr * (momentum * v + g), PART C's "Nesterov".
# - rmsprop: v0 = 1 (optax's default is 0), eps inside the square root, the learning rate inside
#   the momentum buffer. PART C gives no Nesterov and no centered variant, so neither is offered.
#   Defaults are TF1's tf.train.RMSPropOptimizer, whose rule PART C writes (it too starts v at 1).
# - adam, nadam: the bias correction b = sqrt(1 - b2^t) / (1 - b1^t) multiplies the whole step,
#   after eps is added to the uncorrected sqrt(v). optax.adam adds eps to the corrected sqrt(v), so
#   jaxplay's eps is optax's eps * sqrt(1 - b2^t): larger early in training, which matters when
#   eps is tuned. NAdam takes one factor b for both terms (optax corrects them separately).
# - adamw (not in PART C): PART C's Adam step plus decoupled weight decay, lr * weight_decay * w.
# The playbook states no defaults; these are the usual ones.
OPTIMIZERS = {
    "sgd": {"learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.0},
    "rmsprop": {
        "learning_rate": 1e-3,
        "rho": 0.9,
        "momentum": 0.0,
        "eps": 1e-10,
        "weight_decay": 0.0,
    },
    "adam": {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    "nadam": {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    # AdamW decays weights decoupled from the gradient (scaled by the learning rate); the others
    # apply weight_decay as an L2 term added to the gradient.
    "adamw": {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4},
}
SCHEDULES = ("constant", "linear", "cosine")

# All float hyperparameters a trial can carry, with the value used when the config leaves one
# out. Every trial gets every key, so all trials share one pytree structure.
HPARAM_DEFAULTS = {
    "learning_rate": 1e-3,
    "momentum": 0.0,
    "b1": 0.9,
    "b2": 0.999,
    "rho": 0.9,
    "eps": 1e-8,
    "weight_decay": 0.0,
    "warmup_steps": 0.0,
    "decay_steps": 0.0,
    "min_lr_factor": 0.0,
    "grad_clip_norm": 0.0,
    "label_smoothing": 0.0,
    "dropout": 0.0,
    "ema_decay": 0.0,
}


def as_arrays(hparams) -> dict[str, jax.Array]:
    """A trial's HParams (jaxplay.spec) as the float32 arrays the compiled step traces (float32
    even under bf16 params: b2 would round to 1)."""
    return {k: jnp.asarray(v, jnp.float32) for k, v in hparams.as_dict().items()}


def learning_rate_fn(schedule: str, total_steps: int, hp):
    """Step -> learning rate: linear warmup from 0 to the peak, then the decay `schedule`.

    The decay runs over the last `decay_steps` (0: every step after the warmup); in between the
    rate stays at its peak. That constant phase is how round 2 extends a linear schedule the
    playbook's way: keep round 1's decay length, train longer at the peak rate.
    `total_steps` is the whole run. A prepended warmup (schedule.prepend_warmup) is the same
    function over train.steps + warmup_steps: after the ramp, the decay runs over the last
    decay_steps (0: all train.steps after the ramp), exactly the schedule train.steps would have
    had without a warmup, shifted by the ramp. The playbook's warmup study is 'constant' with
    total_steps = warmup + post_warmup steps: 0 -> peak over the warmup, then the peak.
    The decay shape is written with jnp on a static `total_steps` and multiplied by the traced
    peak rate; warmup and decay lengths are traced too (optax schedules need static lengths).
    """

    def fn(count):
        t = jnp.asarray(count, jnp.float32)
        warmup = hp["warmup_steps"]
        decay_start = jnp.where(hp["decay_steps"] > 0, total_steps - hp["decay_steps"], warmup)
        progress = jnp.clip(
            (t - decay_start) / jnp.maximum(total_steps - decay_start, 1.0), 0.0, 1.0
        )
        if schedule == "constant":
            decay = jnp.float32(1.0)
        elif schedule == "linear":
            decay = 1.0 - progress
        else:
            decay = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        floor = hp["min_lr_factor"]
        decay = floor + (1.0 - floor) * decay
        ramp = t / jnp.maximum(warmup, 1.0)
        return hp["learning_rate"] * jnp.where(t < warmup, ramp, decay)

    return fn


def _decay_mask(params):
    # Decay weight matrices and kernels only: decaying biases (and norm scales) is known to hurt.
    return jax.tree.map(lambda p: p.ndim > 1, params)


def scale_by_playbook_adam(b1, b2, eps, *, nesterov: bool = False) -> optax.GradientTransformation:
    """Adam's step direction as PART C writes it (nesterov: NAdam's), before the learning rate:

        m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,  b = sqrt(1 - b2^t) / (1 - b1^t)
        adam:  b m / (sqrt(v) + eps)      nadam:  b (b1 m + (1 - b1) g) / (sqrt(v) + eps)

    optax.scale_by_adam cannot say this: it adds eps to the bias-corrected sqrt(v). The state is
    optax's ScaleByAdamState, so checkpoints keep optax.adam's layout.
    """

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)  # t + 1 in PART C's indices
        t = count.astype(jnp.float32)
        correction = jnp.sqrt(1 - b2**t) / (1 - b1**t)

        def step(g, m, v):
            numerator = b1 * m + (1 - b1) * g if nesterov else m
            return (correction * numerator / (jnp.sqrt(v) + eps)).astype(g.dtype)

        updates = jax.tree.map(step, updates, mu, nu)
        mu, nu = optax.tree.cast_like(mu, state.mu), optax.tree.cast_like(nu, state.nu)
        return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def make(
    name: str, nesterov: bool, schedule: str, total_steps: int, hp
) -> optax.GradientTransformation:
    """The optax transformation for one trial, PART C's rule for `name`; `hp` may hold traced
    arrays. `nesterov` applies to sgd alone (PART C gives no other Nesterov variant)."""
    lr = learning_rate_fn(schedule, total_steps, hp)
    if name == "adamw":
        # optax.adamw's chain with PART C's Adam step in place of optax's.
        return optax.chain(
            scale_by_playbook_adam(hp["b1"], hp["b2"], hp["eps"]),
            optax.add_decayed_weights(hp["weight_decay"], mask=_decay_mask),
            optax.scale_by_learning_rate(lr),
        )
    if name == "sgd":
        core = optax.sgd(lr, momentum=hp["momentum"], nesterov=nesterov)
    elif name == "rmsprop":
        # PART C: v0 = 1, v = rho v + (1 - rho) g^2, m = momentum m + lr g / sqrt(v + eps),
        # w -= m: optax's chain (scale_by_rms, then the learning rate, then trace) once v0 = 1.
        core = optax.rmsprop(
            lr,
            decay=hp["rho"],
            eps=hp["eps"],
            initial_scale=1.0,
            eps_in_sqrt=True,
            momentum=hp["momentum"],
        )
    elif name in ("adam", "nadam"):
        core = optax.chain(
            scale_by_playbook_adam(hp["b1"], hp["b2"], hp["eps"], nesterov=name == "nadam"),
            optax.scale_by_learning_rate(lr),
        )
    else:
        raise ConfigError(
            f"optimizer.name: unknown optimizer {name!r}; use one of {sorted(OPTIMIZERS)}"
        )
    return optax.chain(optax.add_decayed_weights(hp["weight_decay"], mask=_decay_mask), core)


def clip_by_global_norm(grads, max_norm):
    """Returns (clipped grads, unclipped global norm); max_norm <= 0 turns clipping off."""
    norm = optax.tree.norm(grads)
    scale = jnp.where((max_norm > 0) & (norm > max_norm), max_norm / jnp.maximum(norm, 1e-12), 1.0)
    return jax.tree.map(lambda g: g * scale.astype(g.dtype), grads), norm
