"""A trial's train state: built from its seed (one compiled init per model and program), or
restored from its checkpoint by the host loop.

The state is a plain dict {params, batch_stats, opt_state, step} of the model's `nnx.split`
state: the model's batch-norm statistics (nnx.BatchStat) ride next to the params.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxplay import optim


def split_model(model) -> tuple:
    """(graphdef, params, batch_stats) of an NNX model; any other state is refused."""
    graphdef, params, stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    if jax.tree.leaves(rest):
        raise ValueError(
            f"{type(model).__name__}: the trainer carries nnx.Param and nnx.BatchStat state "
            f"only, and this model holds more ({sorted(rest.flat_state().keys())[:3]}...); "
            "keep RNG streams out of the model (the trainer passes dropout keys as arguments)"
        )
    return graphdef, params, stats


def trial_keys(seed: int) -> dict:
    """Independent streams, all from the trial's seed: init, dropout masks and augmentation (data
    order comes from numpy seeded by (seed, epoch): jaxplay.train.feed; playbook item 43)."""
    root = jax.random.PRNGKey(seed)
    return {
        "init": jax.random.fold_in(root, 0),
        "dropout": jax.random.fold_in(root, 2),
        "augment": jax.random.fold_in(root, 3),
    }


_INITIALIZERS: dict = {}


def initializer(trial, instance, program):
    """(graphdef, jitted init(key, hparams) -> (params, batch_stats, opt_state)), one per model
    and program: built eagerly, an NNX model dispatches one small op per initializer, which costs
    as much as a small trial's training; jitted, a trial's init is one call."""
    key = (
        program,
        trial.model.shape_key,
        instance.name,
        instance.dataset.name,
        instance.dataset.input_shape,
    )
    if key not in _INITIALIZERS:
        abstract = nnx.eval_shape(lambda: instance.build_model(nnx.Rngs(params=0)))
        graphdef = split_model(abstract)[0]

        def init(init_key, hp):
            _, params, stats = split_model(instance.build_model(nnx.Rngs(params=init_key)))
            tx = optim.make(
                program.optimizer, program.nesterov, program.schedule, program.steps, hp
            )
            return params, stats, tx.init(params)

        _INITIALIZERS[key] = (graphdef, _compiled_once(jax.jit(init), _INIT_COMPILER_OPTIONS))
    return _INITIALIZERS[key]


# Init runs once per trial, so XLA's optimization passes buy nothing there, yet on a CPU they are
# most of its compile time (once per model shape). Without them the params differ from an
# optimized build by an ulp at most, and every trial of every executor gets the same init.
# Accelerator backends keep their defaults.
_INIT_COMPILER_OPTIONS = {"cpu": {"xla_backend_optimization_level": 0}}


def _compiled_once(jitted, options_by_backend: dict):
    """`jitted` compiled on its first call with the backend's compiler options (fixed shapes)."""
    executable = []

    def call(*args):
        if not executable:
            options = options_by_backend.get(jax.default_backend())
            executable.append(jitted.lower(*args).compile(options))
        return executable[0](*args)

    call.jitted = jitted  # for shapes alone (jax.eval_shape): an executable cannot be traced
    return call


def init_state(trial, instance, program):
    """(graphdef, fresh train state, hparams as arrays, keys) of a trial."""
    keys = trial_keys(trial.seed)
    hp = optim.as_arrays(trial.hparams)
    graphdef, init = initializer(trial, instance, program)
    params, stats, opt_state = init(keys.pop("init"), hp)
    state = {"params": params, "batch_stats": stats, "opt_state": opt_state, "step": jnp.int32(0)}
    if program.ema:  # its own buffers: the period donates the state, each buffer once
        state["ema_params"] = jax.tree.map(jnp.copy, params)
    return graphdef, state, hp, keys
