"""optax optimizers and learning-rate schedules built from a config, with traced hyperparameters.

Every float hyperparameter (learning rate, momentum, betas, eps, weight decay, warmup length,
label smoothing, dropout, clipping threshold) enters the compiled train step as a float32 array
in the `hparams` dict, never as a Python constant: one compiled program then serves every trial
of a study that varies only those values (and, later, a vmapped stack of trials).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxplay.errors import ConfigError

# Optimizer name -> its float hyperparameters and their defaults. The update rules are optax's
# (playbook PART C notes where optax differs from the playbook's equations).
OPTIMIZERS = {
    # Momentum as in the playbook: v = momentum * v + g; nesterov=True is "Nesterov momentum".
    "sgd": {"learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.0},
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
    "eps": 1e-8,
    "weight_decay": 0.0,
    "warmup_steps": 0.0,
    "decay_steps": 0.0,
    "min_lr_factor": 0.0,
    "grad_clip_norm": 0.0,
    "label_smoothing": 0.0,
    "dropout": 0.0,
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


def make(
    name: str, nesterov: bool, schedule: str, total_steps: int, hp
) -> optax.GradientTransformation:
    """The optax transformation for one trial; `hp` may hold traced arrays."""
    lr = learning_rate_fn(schedule, total_steps, hp)
    if name == "adamw":
        return optax.adamw(
            lr,
            b1=hp["b1"],
            b2=hp["b2"],
            eps=hp["eps"],
            weight_decay=hp["weight_decay"],
            mask=_decay_mask,
        )
    if name == "sgd":
        core = optax.sgd(lr, momentum=hp["momentum"], nesterov=nesterov)
    elif name == "adam":
        core = optax.adam(lr, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"])
    elif name == "nadam":
        core = optax.nadam(lr, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"])
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
