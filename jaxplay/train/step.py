"""The compiled functions of a trial: pure in (graphdef, task, program, state, hparams, keys, data).

One call of `run_period` runs `train.eval_every` steps inside `lax.scan` and then (device
pipeline) evaluates on the train and validation sets, so the host syncs once per evaluation, not
once per step. Float hyperparameters are traced arguments, so trials that differ only in them
share the program; `period_fn(..., stacked=True)` is the same period vmapped over a stack of
trials, each with its own keys, schedule, clipping and optimizer update.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxplay import optim
from jaxplay.data import augment

COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}
# The key of an evaluation's output under which the kept predictions travel
# (train.keep_predictions): {name: per-example array}, split off by the host loop before the
# metrics are recorded.
PREDICTIONS = "predictions"


def apply_model(graphdef, program, params, stats, x, *, train, hp=None, key=None):
    """The model's outputs (float32) and its updated batch stats. Under bf16 compute the float32
    master params and float inputs are cast to bf16 here, inside the differentiated function, so
    gradients and optimizer state stay float32; batch-norm statistics stay float32 too."""
    dtype = COMPUTE_DTYPES[program.compute_dtype]
    if dtype is not None:
        cast = lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
        params, x = jax.tree.map(cast, params), cast(x)
    # copy=True: fresh Variables belong to this trace, so batch norm may update its statistics
    # inside jax.grad (merging the caller's Variables would be a mutation from another trace).
    model = nnx.merge(graphdef, params, stats, copy=True)
    kwargs = {"dropout_rate": hp["dropout"], "key": key} if (train and program.dropout) else {}
    outputs = model(x, train=train, **kwargs)
    return outputs.astype(jnp.float32), nnx.state(model, nnx.BatchStat)


def metric_sums(graphdef, task, program, params, stats, x, y, w):
    """Weight-summed per-example metrics of one eval batch, and the weight (padding counts 0)."""
    outputs, _ = apply_model(graphdef, program, params, stats, x, train=False)
    per_example = task.metrics(outputs, y)
    return {k: jnp.sum(per_example[k] * w) for k in task.metrics_mode}, jnp.sum(w)


def correct_count(task, sums, total, one_target_per_example: bool) -> dict:
    """{'correct': examples predicted correctly} beside the error rate, from the split's summed
    per-example errors, for a task with an 'error' metric and one target per example (the
    playbook's count for rare classes, item 66: a rate hides whether one example changed; a
    sequence's error is a fraction of its tokens, no count). Exact in float32 up to 2**24
    examples."""
    if "error" not in task.metrics_mode or not one_target_per_example:
        return {}
    return {"correct": total - sums["error"]}


def evaluate_split(graphdef, task, program, params, stats, split, counts: bool = False):
    """Weighted mean of each eval metric over a padded split of shape (batches, batch, ...);
    with `counts`, also the number of examples predicted correctly (correct_count)."""
    x, y, w = split
    if x.shape[0] == 1:
        sums, total = metric_sums(graphdef, task, program, params, stats, x[0], y[0], w[0])
    else:

        def body(acc, b):
            return jax.tree.map(
                jnp.add, acc, metric_sums(graphdef, task, program, params, stats, *b)
            ), None

        zeros = ({k: jnp.float32(0.0) for k in task.metrics_mode}, jnp.float32(0.0))
        (sums, total), _ = jax.lax.scan(body, zeros, (x, y, w))
    out = {k: v / total for k, v in sums.items()}
    if counts:
        out.update(correct_count(task, sums, total, y.ndim == 2))  # (batches, batch)
    return out


def eval_all(graphdef, task, program, params, stats, data):
    """The train-subset and validation metrics (val/correct among them) and, with
    train.keep_predictions, the kept examples' predictions under PREDICTIONS."""
    out = {}
    for split in ("train", "val"):
        for name, value in evaluate_split(
            graphdef, task, program, params, stats, data[split], counts=split == "val"
        ).items():
            out[f"{split}/{name}"] = value
    # Data placed without the kept examples (the batch-size probe's) keeps none.
    if program.keep_predictions and "kept" in data:
        out[PREDICTIONS] = predictions(graphdef, task, program, params, stats, *data["kept"])
    return out


def predictions(graphdef, task, program, params, stats, x, y):
    """The task's per-example predictions (task.predictions) on the kept examples `x`, `y`."""
    outputs, _ = apply_model(graphdef, program, params, stats, x, train=False)
    return task.predictions(outputs, y)


def ema_update(ema, params, decay, step):
    """The parameters' exponential moving average after update `step` (1, 2, ...). The decay is
    min(decay, (1 + step) / (10 + step)), as TensorFlow's ExponentialMovingAverage does with
    num_updates: early on the average follows the parameters instead of dragging their random
    initialization along for ~1 / (1 - decay) steps."""
    t = step.astype(jnp.float32)
    d = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
    return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)


def run_period(graphdef, task, program, state, hp, keys, xs, data):
    """`eval_every` train steps in one lax.scan, then (device pipeline) evaluation.

    `xs` holds one entry per step: example indices into `data` (device pipeline) or the
    batch itself, (x, y) (grain pipeline; evaluation then streams separately).
    """
    tx = optim.make(program.optimizer, program.nesterov, program.schedule, program.steps, hp)
    lr_fn = optim.learning_rate_fn(program.schedule, program.steps, hp)

    def train_step(carry, item):
        params, stats, opt_state, step, ema = carry
        x, y = (data["x"][item], data["y"][item]) if program.pipeline == "device" else item
        if program.augment != "none":
            x = augment.apply(program.augment, x, jax.random.fold_in(keys["augment"], step))
        dropout_key = jax.random.fold_in(keys["dropout"], step) if program.dropout else None

        def loss_fn(p):
            outputs, new_stats = apply_model(
                graphdef, program, p, stats, x, train=True, hp=hp, key=dropout_key
            )
            return jnp.mean(task.loss(outputs, y, hp)), new_stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        # The playbook asks for the *unclipped* norm in the logs (item 87).
        grads, grad_norm = optim.clip_by_global_norm(grads, hp["grad_clip_norm"])
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if program.ema:
            ema = ema_update(ema, params, hp["ema_decay"], step + 1)
        carry = (params, stats, opt_state, step + 1, ema)
        return carry, (loss, grad_norm, lr_fn(step))

    ema = state["ema_params"] if program.ema else None
    carry = (state["params"], state["batch_stats"], state["opt_state"], state["step"], ema)
    (params, stats, opt_state, step, ema), (losses, norms, lrs) = jax.lax.scan(
        train_step, carry, xs
    )
    metrics = {}
    if program.pipeline == "device":
        metrics = eval_all(graphdef, task, program, params, stats, data)
        if program.ema:
            metrics.update(ema_eval(graphdef, task, program, ema, stats, data))
    per_step = {"loss": losses, "grad_norm": norms, "learning_rate": lrs}
    new_state = {"params": params, "batch_stats": stats, "opt_state": opt_state, "step": step}
    if program.ema:
        new_state["ema_params"] = ema
    return new_state, metrics, per_step


def ema_eval(graphdef, task, program, ema, stats, data):
    """The averaged parameters' validation metrics, as val_ema/<metric>."""
    val = evaluate_split(graphdef, task, program, ema, stats, data["val"], counts=True)
    return {f"val_ema/{name}": value for name, value in val.items()}


def initial_eval(graphdef, task, program, params, stats, data):
    return eval_all(graphdef, task, program, params, stats, data)


# One jitted function per (model, task, program): trials of a group share it, and its cache size
# is the number of compilations it cost (one per stack size when stacked).


@functools.lru_cache(maxsize=64)
def period_fn(graphdef, task, program, stacked: bool = False):
    """run_period, jitted; the train state is donated (updated in place)."""
    fn = functools.partial(run_period, graphdef, task, program)
    if stacked:
        return jax.jit(jax.vmap(fn, in_axes=(0, 0, 0, 0, None)), donate_argnums=(0,))
    return jax.jit(fn, donate_argnums=(0,))


@functools.lru_cache(maxsize=64)
def initial_eval_fn(graphdef, task, program, stacked: bool = False):
    """initial_eval, jitted: the step-0 evaluation of device-resident splits."""
    fn = functools.partial(initial_eval, graphdef, task, program)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, None)) if stacked else fn)


@functools.lru_cache(maxsize=64)
def predictions_fn(graphdef, task, program, stacked: bool = False):
    """predictions, jitted: the kept examples scored outside the compiled period (grain)."""
    fn = functools.partial(predictions, graphdef, task, program)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, None, None)) if stacked else fn)


@functools.lru_cache(maxsize=64)
def metric_sums_fn(graphdef, task, program, stacked: bool = False):
    """metric_sums, jitted: one streamed eval batch; stacked, every trial scores the same batch."""
    fn = functools.partial(metric_sums, graphdef, task, program)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, None, None, None)) if stacked else fn)
