"""One trial end to end: build the model, train in scanned periods, evaluate, checkpoint.

Shape of the loop (Flax examples style, `train_and_evaluate(config, workdir)`):
  * the train state is a plain dict {params, opt_state, step} of the model's `nnx.split` state;
  * one compiled call runs `train.eval_every` steps inside `lax.scan` and then evaluates on the
    train and validation sets, so the host syncs once per evaluation, not once per step;
  * float hyperparameters are traced arguments (see optim.py), so trials that differ only in them
    share the compiled program;
  * after each period the host checks for divergence, logs metrics and saves a checkpoint when the
    objective enters the best N (retrospective optimal checkpoint selection) or at the end.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
import pathlib
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxplay import models, optim, workloads
from jaxplay.checkpoints import TrialCheckpoints
from jaxplay.spaces import ConfigError

# How often each compiled function was traced; a trace is what triggers a compilation, so tests
# can assert "16 learning rates -> 1 compilation".
TRACES: collections.Counter = collections.Counter()

EVAL_METRICS = ("loss", "error")


@dataclasses.dataclass(frozen=True)
class Program:
    """Everything that shapes the compiled train program; trials with equal Programs share it."""

    optimizer: str
    nesterov: bool
    schedule: str
    steps: int
    eval_every: int
    batch_size: int
    eval_batch_size: int
    num_train: int
    dropout: bool  # False compiles dropout out entirely (no random bits drawn)


@dataclasses.dataclass
class TrialResult:
    """What a finished trial reports to the study."""

    status: str  # 'completed' or 'infeasible'
    best_step: int | None
    best_value: float | None
    steps_run: int
    reason: str | None = None
    final_metrics: dict = dataclasses.field(default_factory=dict)


def check(config) -> None:
    """Validates everything the trainer reads, naming the field and the fix (loads the dataset)."""
    optim.check(config)
    models.check(config.model)
    train = config.train
    objective = config.study.objective
    allowed = [f"{split}/{m}" for split in ("val", "train") for m in EVAL_METRICS]
    if objective not in allowed:
        raise ConfigError(f"study.objective: unknown metric {objective!r}; use one of {allowed}")
    if train.get("keep_best", 3) < 1:
        raise ConfigError(f"train.keep_best: keep at least 1 best checkpoint (got {train.keep_best})")
    batch = config.data.get("batch_size", 0)
    if not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"data.batch_size: must be a positive int (got {batch!r})")
    if train.get("eval_batch_size", batch) < batch:
        raise ConfigError(f"train.eval_batch_size: the playbook evaluates with batches at least as large "
                          f"as training batches; use >= data.batch_size={batch}")
    if train.get("divergence_factor", 100.0) <= 1:
        raise ConfigError("train.divergence_factor: must be > 1 (a trial is infeasible once its batch loss "
                          "exceeds this multiple of the initial loss)")
    make_program(config, workloads.get(config))  # dataset name, batch size vs dataset size


def make_program(config, workload: workloads.Workload, searched: frozenset = frozenset()) -> Program:
    """The static part of a trial's config. `searched` are the study's searched paths."""
    num_train = len(workload.dataset.x_train)
    batch = config.data.batch_size
    if batch > num_train:
        raise ConfigError(f"data.batch_size: {batch} exceeds the {num_train} training examples")
    return Program(
        optimizer=config.optimizer.name,
        nesterov=bool(config.optimizer.get("nesterov", False)),
        schedule=config.schedule.name,
        steps=config.train.steps,
        eval_every=config.train.eval_every,
        batch_size=batch,
        eval_batch_size=config.train.get("eval_batch_size", max(batch, 4096)),
        num_train=num_train,
        # A searched dropout keeps the stochastic path for every trial, so rate 0 and 0.3 share it.
        dropout=config.model.get("dropout", 0.0) > 0 or "model.dropout" in searched,
    )


def program_key(config, workload: workloads.Workload, searched: frozenset = frozenset()) -> tuple:
    """Everything that changes the compiled program. Trials with equal keys share one compilation
    and can be batched: they differ only in float hyperparameters (and seeds)."""
    return (make_program(config, workload, searched), _model_key(config),
            json.dumps(config.data.to_dict(), sort_keys=True))


def _model_key(config) -> str:
    # Dropout's rate is traced, not part of the model's shape.
    return json.dumps({k: v for k, v in config.model.items() if k != "dropout"}, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# Data on device

def _padded(x, y, batch):
    """An eval split as (num_batches, batch, ...) arrays plus weights that are 0 on the padding
    (playbook item 64). A split smaller than `batch` is one batch of its own size (rounded up to
    a multiple of 8): evaluating it then needs no loop, and XLA:CPU runs ops inside loops slowly."""
    n = len(x)
    batch = min(batch, -(-n // 8) * 8)
    num_batches = math.ceil(n / batch)
    total = num_batches * batch
    w = np.zeros(total, np.float32)
    w[:n] = 1.0
    pad = [(0, total - n)] + [(0, 0)] * (x.ndim - 1)
    shape = lambda a: a.reshape((num_batches, batch) + a.shape[1:])  # noqa: E731
    return shape(np.pad(x, pad)), shape(np.pad(y, (0, total - n))), shape(w)


_DEVICE_DATA: dict = {}


def device_data(dataset, eval_batch_size: int) -> dict:
    """The dataset's arrays on device, placed once per process and reused by every trial."""
    key = (id(dataset), eval_batch_size)
    if key not in _DEVICE_DATA:
        _DEVICE_DATA[key] = jax.device_put({
            "x": dataset.x_train, "y": dataset.y_train,
            "train": _padded(dataset.x_train, dataset.y_train, eval_batch_size),
            "val": _padded(dataset.x_val, dataset.y_val, eval_batch_size),
            "test": _padded(dataset.x_test, dataset.y_test, eval_batch_size),
        })
    return _DEVICE_DATA[key]


def batch_indices(seed: int, start: int, length: int, batch: int, num: int) -> np.ndarray:
    """Example indices for steps [start, start+length): a fresh permutation per epoch.

    The order is a pure function of (seed, step), so a resumed trial sees the same batches. It is
    computed on the host (microseconds) and gathered on device: an on-device permutation would
    add seconds of compile time to every program for no run-time gain.
    """
    per_epoch = num // batch  # the last partial batch of an epoch is dropped
    first, last = start // per_epoch, (start + length - 1) // per_epoch
    perms = [np.random.default_rng([seed, epoch]).permutation(num)[: per_epoch * batch]
             for epoch in range(first, last + 1)]
    flat = np.concatenate(perms)
    offset = (start - first * per_epoch) * batch
    return flat[offset: offset + length * batch].reshape(length, batch).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Compiled functions: pure in (graphdef, program, state, hparams, keys, data)

def _evaluate(graphdef, task, params, split):
    """Weighted mean of each eval metric over a padded split of shape (batches, batch, ...)."""
    x, y, w = split

    def sums_of(xb, yb, wb):
        per_example = task.metrics(nnx.merge(graphdef, params)(xb), yb)
        return {k: jnp.sum(per_example[k] * wb) for k in EVAL_METRICS}

    if x.shape[0] == 1:
        sums = sums_of(x[0], y[0], w[0])
    else:
        zeros = {k: jnp.float32(0.0) for k in EVAL_METRICS}
        sums, _ = jax.lax.scan(lambda acc, b: (jax.tree.map(jnp.add, acc, sums_of(*b)), None), zeros, (x, y, w))
    return {k: v / jnp.sum(w) for k, v in sums.items()}


def _eval_all(graphdef, task, program, params, data):
    out = {}
    for split in ("train", "val"):
        for name, value in _evaluate(graphdef, task, params, data[split]).items():
            out[f"{split}/{name}"] = value
    return out


def _run_period(graphdef, task, program, state, hp, keys, idx, data):
    """`eval_every` train steps (batches `idx`: steps x batch) in one lax.scan, then evaluation."""
    TRACES["train_period"] += 1
    tx = optim.make(program.optimizer, program.nesterov, program.schedule, program.steps, hp)
    lr_fn = optim.learning_rate_fn(program.schedule, program.steps, hp)

    def train_step(carry, batch_idx):
        params, opt_state, step = carry
        x, y = data["x"][batch_idx], data["y"][batch_idx]
        dropout_key = jax.random.fold_in(keys["dropout"], step) if program.dropout else None

        def loss_fn(p):
            logits = nnx.merge(graphdef, p)(x, dropout_rate=hp["dropout"], key=dropout_key)
            return jnp.mean(task.loss(logits, y, hp["label_smoothing"]))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        # The playbook asks for the *unclipped* norm in the logs (item 87).
        grads, grad_norm = optim.clip_by_global_norm(grads, hp["grad_clip_norm"])
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, step + 1), (loss, grad_norm, lr_fn(step))

    carry = (state["params"], state["opt_state"], state["step"])
    (params, opt_state, step), (losses, norms, lrs) = jax.lax.scan(train_step, carry, idx)
    metrics = _eval_all(graphdef, task, program, params, data)
    per_step = {"loss": losses, "grad_norm": norms, "learning_rate": lrs}
    return {"params": params, "opt_state": opt_state, "step": step}, metrics, per_step


def _initial_eval(graphdef, task, program, params, data):
    TRACES["initial_eval"] += 1
    return _eval_all(graphdef, task, program, params, data)


_run_period_jit = jax.jit(_run_period, static_argnums=(0, 1, 2), donate_argnums=(3,))
_initial_eval_jit = jax.jit(_initial_eval, static_argnums=(0, 1, 2))


def _trial_keys(seed: int) -> dict:
    # Independent streams, all from config.seed: init and dropout masks here; data order comes
    # from numpy seeded by (seed, epoch) in batch_indices (playbook item 43).
    root = jax.random.PRNGKey(seed)
    return {"init": jax.random.fold_in(root, 0), "dropout": jax.random.fold_in(root, 2)}


_INITIALIZERS: dict = {}


def _initializer(config, workload, program):
    """(graphdef, jitted init(key, hparams) -> (params, opt_state)), one per model and program.

    Building an NNX model eagerly dispatches one small op per initializer: ~0.2 s per trial on
    the 2-core CPU, as long as an MNIST-1D trial's training. Jitted, a trial's init is one call.
    """
    key = (program, _model_key(config), workload.dataset.name, workload.dataset.input_shape)
    if key not in _INITIALIZERS:
        abstract = nnx.eval_shape(lambda: workload.build_model(nnx.Rngs(params=0)))
        graphdef = nnx.split(abstract, nnx.Param)[0]

        def init(init_key, hp):
            _, params = nnx.split(workload.build_model(nnx.Rngs(params=init_key)), nnx.Param)
            tx = optim.make(program.optimizer, program.nesterov, program.schedule, program.steps, hp)
            return params, tx.init(params)

        _INITIALIZERS[key] = (graphdef, _compiled_once(jax.jit(init), _INIT_COMPILER_OPTIONS))
    return _INITIALIZERS[key]


# Init runs once per trial, so XLA's optimization passes buy nothing there, yet on the 2-core CPU
# they were 1.1 s of its 1.6 s compile (once per model shape: the quickstart's 4 widths compile 4
# inits). Without them the params differ from an optimized build by an ulp at most, and every
# trial of every executor gets the same init. Accelerator backends keep their defaults.
_INIT_COMPILER_OPTIONS = {"cpu": {"xla_backend_optimization_level": 0}}


def _compiled_once(jitted, options_by_backend: dict):
    """`jitted` compiled on its first call with the backend's compiler options (fixed shapes)."""
    executable = []

    def call(*args):
        if not executable:
            options = options_by_backend.get(jax.default_backend())
            executable.append(jitted.lower(*args).compile(options))
        return executable[0](*args)

    return call


def init_state(config, workload, program):
    """Returns (graphdef, fresh train state, hparams as arrays, keys)."""
    keys = _trial_keys(int(config.seed))
    hp = optim.as_arrays(optim.hparams(config))
    graphdef, init = _initializer(config, workload, program)
    params, opt_state = init(keys.pop("init"), hp)
    return graphdef, {"params": params, "opt_state": opt_state, "step": jnp.int32(0)}, hp, keys


# ---------------------------------------------------------------------------------------------
# The host loop

def _is_better(value, best, mode):
    return best is None or (value < best if mode == "min" else value > best)


def _diverged(losses: np.ndarray, start: int, limit: float) -> str | None:
    """Reason string if a batch loss in this period is NaN/inf or above `limit`, else None."""
    bad = ~np.isfinite(losses) | (losses > limit)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    what = "NaN/inf" if not np.isfinite(losses[i]) else f"{losses[i]:.4g} (> {limit:.4g})"
    return f"training loss diverged at step {start + i + 1}: {what}"


class TrialRun:
    """Host-side bookkeeping of one trial between compiled periods: resume point, divergence,
    best value and checkpoints. The sequential and the batched executor both drive one per trial."""

    def __init__(self, config, trial_dir, program: Program, *, on_eval=None, on_resume=None,
                 write_every_secs: float | None = None):
        self.config, self.program = config, program
        self.objective, self.mode = config.study.objective, config.study.mode
        self.on_eval, self.on_resume = on_eval, on_resume
        self.hparams = optim.hparams(config)
        if write_every_secs is None:
            write_every_secs = config.train.get("checkpoint_every_secs", 60.0)
        self.ckpt = TrialCheckpoints(pathlib.Path(trial_dir) / "checkpoints", mode=self.mode,
                                     keep_best=config.train.get("keep_best", 3), write_every_secs=write_every_secs)
        self.meta = {"best_step": None, "best_value": None, "initial_loss": None}
        self.last = None  # (step, get_state, objective) of the last recorded period

    def resume(self, fresh_state):
        """The state of the latest checkpoint, or None for a fresh start."""
        latest = self.ckpt.latest_step()
        if latest is None:
            return None
        state, self.meta = self.ckpt.restore(latest, jax.eval_shape(lambda: fresh_state))
        self.ckpt.restore_top(self.meta)
        if self.on_resume:
            self.on_resume(latest)
        return state

    def start(self, initial: dict) -> None:
        """Records the step-0 evaluation; its train loss is the divergence yardstick."""
        initial = {k: float(v) for k, v in initial.items()}
        self.meta["initial_loss"] = initial["train/loss"]
        if self.on_eval:
            self.on_eval(0, initial)

    def after_period(self, step: int, get_state, metrics: dict, per_step: dict, *,
                     write_now: bool = False) -> TrialResult | None:
        """Records the period that ended at `step`; returns the result once the trial is over."""
        limit = self.config.train.get("divergence_factor", 100.0) * self.meta["initial_loss"]
        reason = _diverged(per_step["loss"], step - self.program.eval_every, limit)
        metrics = {k: float(v) for k, v in metrics.items()}
        metrics.update(_period_summary(per_step, self.hparams))
        self.last_metrics = metrics
        if self.on_eval:
            self.on_eval(step, metrics)
        value = metrics[self.objective]
        if reason is None and not math.isfinite(value):
            reason = f"{self.objective} is {value} at step {step}"
        if reason:
            self.ckpt.flush(self.meta)  # keep the best checkpoints from before the divergence
            return TrialResult("infeasible", self.meta["best_step"], self.meta["best_value"], step, reason, metrics)
        if _is_better(value, self.meta["best_value"], self.mode):
            self.meta["best_step"], self.meta["best_value"] = step, value
        # Retrospective optimal checkpoint selection: keep the best N; the last write of a trial
        # (end, Ctrl-C) also holds the latest state, the resume point.
        done = step >= self.program.steps
        self.last = (step, get_state, value)
        self.ckpt.record(step, get_state, value, self.meta, write_now=write_now or done)
        if done:
            return TrialResult("completed", self.meta["best_step"], self.meta["best_value"], step, None, metrics)
        return None

    def write_latest(self) -> None:
        """Writes the pending best states and the state of the last period (Ctrl-C: resume here)."""
        self.ckpt.flush(self.meta, latest=self.last)

    def finished(self, step: int) -> TrialResult:
        """The result of a trial whose final checkpoint was already written."""
        return TrialResult("completed", self.meta["best_step"], self.meta["best_value"], step)

    def close(self) -> None:
        """Waits for checkpoint writes."""
        self.ckpt.close()


def train_and_evaluate(config, trial_dir: str | pathlib.Path, *, searched: frozenset = frozenset(),
                       on_eval: Callable[[int, dict], None] | None = None,
                       on_resume: Callable[[int], None] | None = None,
                       should_stop: Callable[[], bool] | None = None) -> TrialResult:
    """Trains one trial to `train.steps`, evaluating every `train.eval_every` steps.

    Resumes from the latest checkpoint in `trial_dir` if there is one (`on_resume(step)` is called
    so the caller can drop metrics logged after it). `on_eval(step, metrics)` sees every evaluation,
    including step 0. When `should_stop()` turns true (Ctrl-C), the trial checkpoints the current
    period and raises KeyboardInterrupt, so a rerun resumes exactly there.
    """
    check(config)
    workload = workloads.get(config)
    program = make_program(config, workload, searched)
    data = device_data(workload.dataset, program.eval_batch_size)
    graphdef, state, hp, keys = init_state(config, workload, program)
    run = TrialRun(config, trial_dir, program, on_eval=on_eval, on_resume=on_resume)
    try:
        resumed = run.resume(state)
        if resumed is None:
            run.start(jax.device_get(_initial_eval_jit(graphdef, workload.task, program, state["params"], data)))
        else:
            state = resumed
        step = int(state["step"])
        if step >= program.steps:  # it crashed after its last checkpoint, before the store heard
            return run.finished(step)
        while True:
            idx = batch_indices(int(config.seed), step, program.eval_every, program.batch_size, program.num_train)
            state, metrics, per_step = _run_period_jit(graphdef, workload.task, program, state, hp, keys, idx, data)
            step += program.eval_every
            result = run.after_period(step, lambda: state, *jax.device_get((metrics, per_step)))
            if result is not None:
                return result
            if should_stop is not None and should_stop():
                run.write_latest()
                raise KeyboardInterrupt(f"stopped at step {step}")
    finally:
        run.close()


def _period_summary(per_step: dict, hp) -> dict:
    """Per-period train metrics from the per-step arrays: mean batch loss, grad norms, clipping."""
    norms = per_step["grad_norm"]
    clip = float(hp["grad_clip_norm"])
    finite = np.isfinite(per_step["loss"])
    return {
        "train/batch_loss": float(np.mean(per_step["loss"][finite])) if finite.any() else float("nan"),
        "train/grad_norm": float(np.mean(norms)),
        "train/grad_norm_max": float(np.max(norms)),
        "train/clip_fraction": float(np.mean(norms > clip)) if clip > 0 else 0.0,
        "train/learning_rate": float(per_step["learning_rate"][-1]),
    }


def evaluate_checkpoint(config, trial_dir: str | pathlib.Path, step: int | None = None,
                        split: str = "val") -> dict:
    """Restores a trial's checkpoint (default: its best) and evaluates it on `split`."""
    workload = workloads.get(config)
    program = make_program(config, workload)
    data = device_data(workload.dataset, program.eval_batch_size)
    graphdef, state, _, _ = init_state(config, workload, program)
    ckpt = TrialCheckpoints(pathlib.Path(trial_dir) / "checkpoints",
                            keep_best=config.train.get("keep_best", 3), mode=config.study.mode)
    try:
        step = ckpt.best_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {trial_dir}")
        params = ckpt.restore_params(step, jax.eval_shape(lambda: state))
    finally:
        ckpt.close()
    metrics = _evaluate(graphdef, workload.task, params, data[split])
    return {f"{split}/{k}": float(v) for k, v in metrics.items()}


