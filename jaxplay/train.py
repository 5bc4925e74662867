"""One trial end to end: build the model, train in scanned periods, evaluate, checkpoint.

Shape of the loop (Flax examples style, `train_and_evaluate(config, workdir)`):
  * the train state is a plain dict {params, opt_state, step} of the model's `nnx.split` state;
  * one compiled call runs `train.eval_every` steps inside `lax.scan` and then evaluates on the
    train and validation sets, so the host syncs once per evaluation, not once per step;
  * float hyperparameters are traced arguments (see optim.py), so trials that differ only in them
    share the compiled program;
  * the model's batch-norm statistics (nnx.BatchStat) ride in the state next to the params;
    `train.compute_dtype='bfloat16'` runs the model in bf16 on float32 master weights;
  * data either lives on the device (`data.pipeline='device'`: batches are gathered there from
    host-computed indices) or streams from the host (`'grain'`: jaxplay.data.pipeline), in which
    case evaluation streams too;
  * after each period the host checks for divergence, logs metrics and saves a checkpoint when the
    objective enters the best N (retrospective optimal checkpoint selection) or at the end.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxplay import optim, paths, workloads
from jaxplay.checkpoints import TrialCheckpoints
from jaxplay.data import augment
from jaxplay.errors import ConfigError

# How often each compiled function was traced; a trace is what triggers a compilation, so tests
# can assert "16 learning rates -> 1 compilation".
TRACES: collections.Counter = collections.Counter()

COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


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
    pipeline: str = "device"  # 'device' or 'grain' (jaxplay.data.arrays.PIPELINES)
    augment: str = "none"  # jaxplay.data.augment.AUGMENTATIONS, applied on device in the train step
    compute_dtype: str = "float32"


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
    workload = workloads.get(config)  # resolves the workload, checks its config, loads the data
    train = config.train
    objective = config.study.objective
    modes = workload.task.metrics_mode
    allowed = [f"{split}/{m}" for split in ("val", "train") for m in modes]
    if objective not in allowed:
        raise ConfigError(f"study.objective: unknown metric {objective!r}; use one of {allowed}")
    better = modes[objective.split("/", 1)[1]]
    if config.study.mode != better:
        raise ConfigError(
            f"study.mode: {objective} is better when {'lower' if better == 'min' else 'higher'}; "
            f"set study.mode={better!r}"
        )
    if train.get("compute_dtype", "float32") not in COMPUTE_DTYPES:
        raise ConfigError(
            f"train.compute_dtype: unknown {train.compute_dtype!r}; use one of {list(COMPUTE_DTYPES)}"
        )
    if train.get("train_eval_examples", 1) < 1:
        raise ConfigError(
            "train.train_eval_examples: evaluate at least 1 training example each period"
        )
    if train.get("keep_best", 3) < 1:
        raise ConfigError(
            f"train.keep_best: keep at least 1 best checkpoint (got {train.keep_best})"
        )
    batch = config.data.get("batch_size", 0)
    if not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"data.batch_size: must be a positive int (got {batch!r})")
    if train.get("eval_batch_size", batch) < batch:
        raise ConfigError(
            f"train.eval_batch_size: the playbook evaluates with batches at least as large "
            f"as training batches; use >= data.batch_size={batch}"
        )
    if train.get("divergence_factor", 100.0) <= 1:
        raise ConfigError(
            "train.divergence_factor: must be > 1 (a trial is infeasible once its batch loss "
            "exceeds this multiple of the initial loss)"
        )
    make_program(config, workload)  # batch size vs dataset size


def make_program(
    config, workload: workloads.Workload, searched: frozenset = frozenset()
) -> Program:
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
        dropout=config.get("model", {}).get("dropout", 0.0) > 0 or "model.dropout" in searched,
        pipeline=config.data.get("pipeline", "device"),
        augment=config.data.get("augment", "none"),
        compute_dtype=config.train.get("compute_dtype", "float32"),
    )


def program_key(config, workload: workloads.Workload, searched: frozenset = frozenset()) -> tuple:
    """Everything that changes the compiled program. Trials with equal keys share one compilation
    and can be batched: they differ only in float hyperparameters (and seeds)."""
    return (
        make_program(config, workload, searched),
        _model_key(config),
        workload.name,
        json.dumps(config.data.to_dict(), sort_keys=True),
        config.train.get("train_eval_examples", DEFAULT_TRAIN_EVAL_EXAMPLES),
    )


def _model_key(config) -> str:
    # The workload contract: config.model holds everything that shapes the model. Dropout's rate
    # is traced, not part of the shape.
    model = config.get("model", {})
    return json.dumps(
        {k: v for k, v in model.items() if k != "dropout"}, sort_keys=True, default=str
    )


# ---------------------------------------------------------------------------------------------
# Data on device


def _padded(x, y, batch, multiple: int = 8):
    """An eval split as (num_batches, batch, ...) arrays plus weights that are 0 on the padding
    (playbook item 64). A split smaller than `batch` is one batch of its own size (rounded up to
    a multiple of 8, or of the device count): evaluating it then needs no loop, and XLA:CPU runs
    ops inside loops slowly."""
    n = len(x)
    batch = min(batch, -(-n // multiple) * multiple)
    num_batches = math.ceil(n / batch)
    total = num_batches * batch
    w = np.zeros(total, np.float32)
    w[:n] = 1.0

    def padded(a):  # zeros after the last example; targets may have axes of their own (tokens)
        a = np.pad(a, [(0, total - n)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape((num_batches, batch) + a.shape[1:])

    return padded(x), padded(y), w.reshape(num_batches, batch)


# Training examples evaluated each period (a fixed random subset when the train split is
# larger): enough for a train/validation gap, without a full pass over a large corpus per eval.
DEFAULT_TRAIN_EVAL_EXAMPLES = 10_000


class _Rows:
    """Rows `index` of an array, read on demand (a lazy subset of a possibly lazy array)."""

    def __init__(self, array, index):
        self.array, self.index = array, index
        self.shape, self.dtype = (len(index),) + tuple(array.shape[1:]), array.dtype

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        return np.asarray(self.array[self.index[i]])


def eval_splits(dataset, train_eval_examples: int) -> dict:
    """{'train', 'val'} -> (x, y): what each periodic evaluation scores, a fixed subset of the
    training set and the whole validation set (the test set is for evaluate_checkpoint only)."""
    splits = {name: dataset.splits[name] for name in ("train", "val")}
    x, y = splits["train"]
    if len(x) > train_eval_examples:
        # Seeded apart from the study: every trial is scored on the same training examples.
        index = np.sort(np.random.default_rng(0).choice(len(x), train_eval_examples, replace=False))
        splits["train"] = (_Rows(x, index), _Rows(y, index))
    return splits


_DEVICE_DATA: dict = {}


def device_data(
    dataset, program: Program, train_eval_examples: int = DEFAULT_TRAIN_EVAL_EXAMPLES, mesh=None
) -> dict:
    """What the compiled period reads: under the 'device' pipeline the training arrays and the
    padded eval splits, placed once per process and reused by every trial; under 'grain' nothing
    (batches arrive with each period). With a data `mesh` the training arrays are replicated (each
    device gathers its share of a batch) and eval batches are split over the devices."""
    if program.pipeline != "device":
        return {}
    key = (id(dataset), program.eval_batch_size, train_eval_examples, mesh)
    if key not in _DEVICE_DATA:
        # x[:] reads a lazy array (a tfds source) whole: 'device' means the dataset fits.
        arrays = {"x": np.asarray(dataset.x_train[:]), "y": np.asarray(dataset.y_train[:])}
        multiple = 8 if mesh is None else math.lcm(8, mesh.size)
        for name, (x, y) in eval_splits(dataset, train_eval_examples).items():
            arrays[name] = _padded(
                np.asarray(x[:]), np.asarray(y[:]), program.eval_batch_size, multiple
            )
        if mesh is None:
            _DEVICE_DATA[key] = jax.device_put(arrays)
        else:
            replicated, split = _sharding(mesh), _sharding(mesh, axis=1)
            _DEVICE_DATA[key] = {
                k: jax.device_put(v, replicated if k in ("x", "y") else split)
                for k, v in arrays.items()
            }
    return _DEVICE_DATA[key]


# ---------------------------------------------------------------------------------------------
# Data parallelism: one trial's batch split over this process's devices


def data_mesh(program: Program):
    """A 1-D 'data' mesh over all devices when there are several (None with one). Each batch is
    split over it with `jax.jit` and NamedSharding; params and optimizer state are replicated,
    and XLA inserts the gradient all-reduce."""
    n = jax.device_count()
    if n == 1:
        return None
    for field, value in (
        ("data.batch_size", program.batch_size),
        ("train.eval_batch_size", program.eval_batch_size),
    ):
        if value % n:
            raise ConfigError(
                f"{field}: {value} does not split evenly over {n} devices; use a multiple of {n}"
            )
    return _make_mesh(n)


@functools.lru_cache(maxsize=4)
def _make_mesh(n: int, axis: str = "data"):
    """A 1-D mesh of `n` devices. Auto axes: XLA propagates the batch (or trial) sharding through
    the step; jax's default Explicit axes make the on-device batch gather an error that asks for
    hand-written shardings."""
    return jax.make_mesh((n,), (axis,), axis_types=(jax.sharding.AxisType.Auto,))


def _sharding(mesh, axis: int | None = None):
    """Replicated (axis None), or split over the mesh along `axis`."""
    from jax.sharding import NamedSharding, PartitionSpec

    return NamedSharding(
        mesh, PartitionSpec() if axis is None else PartitionSpec(*([None] * axis), "data")
    )


def batch_indices(seed: int, start: int, length: int, batch: int, num: int) -> np.ndarray:
    """Example indices for steps [start, start+length): a fresh permutation per epoch.

    The order is a pure function of (seed, step), so a resumed trial sees the same batches. It is
    computed on the host (microseconds) and gathered on device: an on-device permutation would
    add seconds of compile time to every program for no run-time gain.
    """
    per_epoch = num // batch  # the last partial batch of an epoch is dropped
    first, last = start // per_epoch, (start + length - 1) // per_epoch
    perms = [
        np.random.default_rng([seed, epoch]).permutation(num)[: per_epoch * batch]
        for epoch in range(first, last + 1)
    ]
    flat = np.concatenate(perms)
    offset = (start - first * per_epoch) * batch
    return flat[offset : offset + length * batch].reshape(length, batch).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Compiled functions: pure in (graphdef, program, state, hparams, keys, data)


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


def _apply(graphdef, program, params, stats, x, *, train, hp=None, key=None):
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


def _metric_sums(graphdef, task, program, params, stats, x, y, w):
    """Weight-summed per-example metrics of one eval batch, and the weight (padding counts 0)."""
    outputs, _ = _apply(graphdef, program, params, stats, x, train=False)
    per_example = task.metrics(outputs, y)
    return {k: jnp.sum(per_example[k] * w) for k in task.metrics_mode}, jnp.sum(w)


def _evaluate(graphdef, task, program, params, stats, split):
    """Weighted mean of each eval metric over a padded split of shape (batches, batch, ...)."""
    x, y, w = split
    if x.shape[0] == 1:
        sums, total = _metric_sums(graphdef, task, program, params, stats, x[0], y[0], w[0])
    else:

        def body(acc, b):
            return jax.tree.map(
                jnp.add, acc, _metric_sums(graphdef, task, program, params, stats, *b)
            ), None

        zeros = ({k: jnp.float32(0.0) for k in task.metrics_mode}, jnp.float32(0.0))
        (sums, total), _ = jax.lax.scan(body, zeros, (x, y, w))
    return {k: v / total for k, v in sums.items()}


def _eval_all(graphdef, task, program, params, stats, data):
    out = {}
    for split in ("train", "val"):
        for name, value in _evaluate(graphdef, task, program, params, stats, data[split]).items():
            out[f"{split}/{name}"] = value
    return out


def _run_period(graphdef, task, program, state, hp, keys, xs, data):
    """`eval_every` train steps in one lax.scan, then (device pipeline) evaluation.

    `xs` holds one entry per step: example indices into `data` (device pipeline) or the
    batch itself, (x, y) (grain pipeline; evaluation then streams separately).
    """
    TRACES["train_period"] += 1
    tx = optim.make(program.optimizer, program.nesterov, program.schedule, program.steps, hp)
    lr_fn = optim.learning_rate_fn(program.schedule, program.steps, hp)

    def train_step(carry, item):
        params, stats, opt_state, step = carry
        x, y = (data["x"][item], data["y"][item]) if program.pipeline == "device" else item
        if program.augment != "none":
            x = augment.apply(program.augment, x, jax.random.fold_in(keys["augment"], step))
        dropout_key = jax.random.fold_in(keys["dropout"], step) if program.dropout else None

        def loss_fn(p):
            outputs, new_stats = _apply(
                graphdef, program, p, stats, x, train=True, hp=hp, key=dropout_key
            )
            return jnp.mean(task.loss(outputs, y, hp)), new_stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        # The playbook asks for the *unclipped* norm in the logs (item 87).
        grads, grad_norm = optim.clip_by_global_norm(grads, hp["grad_clip_norm"])
        updates, opt_state = tx.update(grads, opt_state, params)
        carry = (optax.apply_updates(params, updates), stats, opt_state, step + 1)
        return carry, (loss, grad_norm, lr_fn(step))

    carry = (state["params"], state["batch_stats"], state["opt_state"], state["step"])
    (params, stats, opt_state, step), (losses, norms, lrs) = jax.lax.scan(train_step, carry, xs)
    metrics = (
        _eval_all(graphdef, task, program, params, stats, data)
        if program.pipeline == "device"
        else {}
    )
    per_step = {"loss": losses, "grad_norm": norms, "learning_rate": lrs}
    return (
        {"params": params, "batch_stats": stats, "opt_state": opt_state, "step": step},
        metrics,
        per_step,
    )


def _initial_eval(graphdef, task, program, params, stats, data):
    TRACES["initial_eval"] += 1
    return _eval_all(graphdef, task, program, params, stats, data)


_run_period_jit = jax.jit(_run_period, static_argnums=(0, 1, 2), donate_argnums=(3,))
_initial_eval_jit = jax.jit(_initial_eval, static_argnums=(0, 1, 2))
_metric_sums_jit = jax.jit(_metric_sums, static_argnums=(0, 1, 2))


def evaluate_streamed(
    metric_sums, params, stats, splits: dict, batch_size: int, read_threads: int = 8, sharding=None
) -> dict:
    """Eval metrics of each split (name -> (x, y)), reading batches from the host. `metric_sums`
    is `_metric_sums` bound to the model (or its vmap over a stack of trials); sums accumulate on
    the device and come back once per split."""
    from jaxplay.data import pipeline

    out = {}
    for name, (x, y) in splits.items():
        acc = None
        for batch in pipeline.eval_batches(x, y, batch_size, read_threads):
            if sharding is not None:  # each device scores its share of the batch
                batch = jax.device_put(batch, sharding)
            sums = metric_sums(params, stats, *batch)
            acc = sums if acc is None else jax.tree.map(jnp.add, acc, sums)
        sums, total = jax.device_get(acc)
        out.update({f"{name}/{k}": v / total for k, v in sums.items()})
    return out


def _trial_keys(seed: int) -> dict:
    # Independent streams, all from config.seed: init, dropout masks and augmentation here; data
    # order comes from numpy seeded by (seed, epoch) in batch_indices (playbook item 43).
    root = jax.random.PRNGKey(seed)
    return {
        "init": jax.random.fold_in(root, 0),
        "dropout": jax.random.fold_in(root, 2),
        "augment": jax.random.fold_in(root, 3),
    }


_INITIALIZERS: dict = {}


def _initializer(config, workload, program):
    """(graphdef, jitted init(key, hparams) -> (params, opt_state)), one per model and program.

    Building an NNX model eagerly dispatches one small op per initializer: ~0.2 s per trial on
    the 2-core CPU, as long as an MNIST-1D trial's training. Jitted, a trial's init is one call.
    """
    key = (
        program,
        _model_key(config),
        workload.name,
        workload.dataset.name,
        workload.dataset.input_shape,
    )
    if key not in _INITIALIZERS:
        abstract = nnx.eval_shape(lambda: workload.build_model(nnx.Rngs(params=0)))
        graphdef = split_model(abstract)[0]

        def init(init_key, hp):
            _, params, stats = split_model(workload.build_model(nnx.Rngs(params=init_key)))
            tx = optim.make(
                program.optimizer, program.nesterov, program.schedule, program.steps, hp
            )
            return params, stats, tx.init(params)

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
    params, stats, opt_state = init(keys.pop("init"), hp)
    state = {"params": params, "batch_stats": stats, "opt_state": opt_state, "step": jnp.int32(0)}
    return graphdef, state, hp, keys


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

    def __init__(
        self,
        config,
        trial_dir,
        program: Program,
        *,
        on_eval=None,
        on_resume=None,
        write_every_secs: float | None = None,
    ):
        self.config, self.program = config, program
        self.objective, self.mode = config.study.objective, config.study.mode
        self.on_eval, self.on_resume = on_eval, on_resume
        self.hparams = optim.hparams(config)
        if write_every_secs is None:
            write_every_secs = config.train.get("checkpoint_every_secs", 60.0)
        self.ckpt = TrialCheckpoints(
            paths.folder(trial_dir) / "checkpoints",
            mode=self.mode,
            keep_best=config.train.get("keep_best", 3),
            write_every_secs=write_every_secs,
        )
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
        # A task without a "loss" eval metric is measured against its first training batch loss.
        self.meta["initial_loss"] = initial.get("train/loss")
        if self.on_eval:
            self.on_eval(0, initial)

    def after_period(
        self, step: int, get_state, metrics: dict, per_step: dict, *, write_now: bool = False
    ) -> TrialResult | None:
        """Records the period that ended at `step`; returns the result once the trial is over."""
        if self.meta["initial_loss"] is None:
            self.meta["initial_loss"] = float(per_step["loss"][0])
        limit = self.config.train.get("divergence_factor", 100.0) * self.meta["initial_loss"]
        reason = _diverged(per_step["loss"], step - self.program.eval_every, limit)
        metrics = {k: float(v) for k, v in metrics.items()}
        metrics.update(_period_summary(per_step, self.hparams))
        self.last_metrics = metrics
        # Saved with the checkpoint: a run killed after the final checkpoint, before the store
        # heard, still reports the final metrics when rerun (see finished).
        self.meta["last_metrics"] = {k: v if math.isfinite(v) else None for k, v in metrics.items()}
        if self.on_eval:
            self.on_eval(step, metrics)
        value = metrics[self.objective]
        if reason is None and not math.isfinite(value):
            reason = f"{self.objective} is {value} at step {step}"
        if reason:
            self.ckpt.flush(self.meta)  # keep the best checkpoints from before the divergence
            return TrialResult(
                "infeasible", self.meta["best_step"], self.meta["best_value"], step, reason, metrics
            )
        if _is_better(value, self.meta["best_value"], self.mode):
            self.meta["best_step"], self.meta["best_value"] = step, value
        # Retrospective optimal checkpoint selection: keep the best N; the last write of a trial
        # (end, Ctrl-C) also holds the latest state, the resume point.
        done = step >= self.program.steps
        self.last = (step, get_state, value)
        self.ckpt.record(step, get_state, value, self.meta, write_now=write_now or done)
        if done:
            return TrialResult(
                "completed", self.meta["best_step"], self.meta["best_value"], step, None, metrics
            )
        return None

    def write_latest(self) -> None:
        """Writes the pending best states and the state of the last period (Ctrl-C: resume here)."""
        self.ckpt.flush(self.meta, latest=self.last)

    def finished(self, step: int) -> TrialResult:
        """The result of a trial whose final checkpoint was already written."""
        return TrialResult(
            "completed",
            self.meta["best_step"],
            self.meta["best_value"],
            step,
            final_metrics=self.meta.get("last_metrics") or {},
        )

    def close(self) -> None:
        """Waits for checkpoint writes."""
        self.ckpt.close()


def evaluator(
    config, program: Program, data: dict, splits: dict, on_device, metric_sums, sharding=None
):
    """state -> eval metrics, for the sequential and the batched executor alike: `on_device`
    (params, stats, data) scores the device-resident splits under the 'device' pipeline, else the
    splits stream from the host through `metric_sums` (see evaluate_streamed)."""
    threads = int(config.data.get("read_threads", 8))

    def evaluate(state):
        if program.pipeline == "device":
            return on_device(state["params"], state["batch_stats"], data)
        return evaluate_streamed(
            metric_sums,
            state["params"],
            state["batch_stats"],
            splits,
            program.eval_batch_size,
            threads,
            sharding,
        )

    return evaluate


class InputFeed:
    """Each period's training inputs for one trial or a stack of trials (one seed each):
    example indices under the 'device' pipeline, device arrays of streamed batches under
    'grain', prepared `data.prefetch` periods ahead. `input_metrics` reports the fraction of a
    period spent waiting for input (always 0 for the device pipeline: nothing to wait for)."""

    def __init__(
        self,
        config,
        dataset,
        program: Program,
        seeds: list[int],
        start_step: int,
        *,
        stacked: bool,
        sharding=None,
    ):
        self.program, self.seeds, self.step, self.stacked = program, seeds, start_step, stacked
        self.sharding, self._feed = sharding, None
        if program.pipeline == "grain":
            from jaxplay.data import pipeline

            # data.read_threads is the host's budget, shared by the stacked trials' readers.
            threads = max(1, int(config.data.get("read_threads", 8)) // len(seeds))
            iterators = [
                pipeline.train_batches(
                    dataset.x_train,
                    dataset.y_train,
                    batch_size=program.batch_size,
                    seed=seed,
                    start_step=start_step,
                    process_index=jax.process_index(),
                    process_count=jax.process_count(),
                    read_threads=threads,
                )
                for seed in seeds
            ]
            self._feed = pipeline.PeriodFeed(
                iterators,
                program.eval_every,
                stacked=stacked,
                depth=int(config.data.get("prefetch", 2)),
                sharding=sharding,
            )

    def next(self):
        """The next period's inputs."""
        p = self.program
        if self._feed is not None:
            self.step += p.eval_every
            return self._feed.next()
        idx = [
            batch_indices(s, self.step, p.eval_every, p.batch_size, p.num_train) for s in self.seeds
        ]
        self.step += p.eval_every
        if self.stacked:
            return jax.device_put(np.stack(idx), self.sharding)
        return idx[0] if self.sharding is None else jax.device_put(idx[0], self.sharding)

    def input_metrics(self, period_seconds: float) -> dict:
        """{'train/input_wait_fraction': share of the period spent blocked on input} (grain)."""
        if self._feed is None:
            return {}
        return {
            "train/input_wait_fraction": min(
                self._feed.take_wait() / max(period_seconds, 1e-9), 1.0
            )
        }

    def close(self):
        """Stops the background reader."""
        if self._feed is not None:
            self._feed.close()


def train_and_evaluate(
    config,
    trial_dir: str | pathlib.Path,
    *,
    searched: frozenset = frozenset(),
    on_eval: Callable[[int, dict], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrialResult:
    """Trains one trial to `train.steps`, evaluating every `train.eval_every` steps.

    Resumes from the latest checkpoint in `trial_dir` if there is one (`on_resume(step)` is called
    so the caller can drop metrics logged after it). `on_eval(step, metrics)` sees every evaluation,
    including step 0. When `should_stop()` turns true (Ctrl-C), the trial checkpoints the current
    period and raises KeyboardInterrupt, so a rerun resumes exactly there.
    """
    check(config)
    workload = workloads.get(config)
    program = make_program(config, workload, searched)
    examples = config.train.get("train_eval_examples", DEFAULT_TRAIN_EVAL_EXAMPLES)
    mesh = data_mesh(program)
    replicated = None if mesh is None else _sharding(mesh)
    data = device_data(workload.dataset, program, examples, mesh)
    splits = eval_splits(workload.dataset, examples)
    graphdef, state, hp, keys = init_state(config, workload, program)
    if mesh is not None:
        state, hp, keys = jax.device_put((state, hp, keys), replicated)
    task = workload.task
    evaluate = evaluator(
        config,
        program,
        data,
        splits,
        functools.partial(_initial_eval_jit, graphdef, task, program),
        functools.partial(_metric_sums_jit, graphdef, task, program),
        None if mesh is None else _sharding(mesh, axis=0),
    )

    run = TrialRun(config, trial_dir, program, on_eval=on_eval, on_resume=on_resume)
    feed = None
    try:
        resumed = run.resume(state)
        if resumed is None:
            run.start(jax.device_get(evaluate(state)))
        else:
            state = resumed if mesh is None else jax.device_put(resumed, replicated)
        step = int(state["step"])
        if step >= program.steps:  # it crashed after its last checkpoint, before the store heard
            return run.finished(step)
        feed = InputFeed(
            config,
            workload.dataset,
            program,
            [int(config.seed)],
            step,
            stacked=False,
            sharding=None if mesh is None else _sharding(mesh, axis=1),
        )
        while True:
            started = time.perf_counter()
            state, metrics, per_step = _run_period_jit(
                graphdef, task, program, state, hp, keys, feed.next(), data
            )
            if program.pipeline != "device":
                metrics = evaluate(state)
            step += program.eval_every
            metrics, per_step = jax.device_get((metrics, per_step))
            metrics = {**metrics, **feed.input_metrics(time.perf_counter() - started)}
            result = run.after_period(step, lambda: state, metrics, per_step)
            if result is not None:
                return result
            if should_stop is not None and should_stop():
                run.write_latest()
                raise KeyboardInterrupt(f"stopped at step {step}")
    finally:
        if feed is not None:
            feed.close()
        run.close()


def _period_summary(per_step: dict, hp) -> dict:
    """Per-period train metrics from the per-step arrays: mean batch loss, grad norms, clipping."""
    norms = per_step["grad_norm"]
    clip = float(hp["grad_clip_norm"])
    finite = np.isfinite(per_step["loss"])
    return {
        "train/batch_loss": float(np.mean(per_step["loss"][finite]))
        if finite.any()
        else float("nan"),
        "train/grad_norm": float(np.mean(norms)),
        "train/grad_norm_max": float(np.max(norms)),
        "train/clip_fraction": float(np.mean(norms > clip)) if clip > 0 else 0.0,
        "train/learning_rate": float(per_step["learning_rate"][-1]),
    }


def evaluate_checkpoint(
    config, trial_dir: str | pathlib.Path, step: int | None = None, split: str = "val"
) -> dict:
    """Restores a trial's checkpoint (default: its best) and evaluates it on `split`."""
    workload = workloads.get(config)
    program = make_program(config, workload)
    graphdef, state, _, _ = init_state(config, workload, program)
    ckpt = TrialCheckpoints(
        paths.folder(trial_dir) / "checkpoints",
        keep_best=config.train.get("keep_best", 3),
        mode=config.study.mode,
    )
    try:
        step = ckpt.best_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {trial_dir}")
        model = ckpt.restore_model(step, jax.eval_shape(lambda: state))
    finally:
        ckpt.close()
    splits = workload.dataset.splits
    if split not in splits:
        raise ValueError(f"split {split!r}: this dataset has {sorted(splits)}")
    # Streamed, whichever pipeline trained it: the whole split, in eval batches.
    streamed = functools.partial(_metric_sums_jit, graphdef, workload.task, program)
    metrics = evaluate_streamed(
        streamed,
        model["params"],
        model["batch_stats"],
        {split: splits[split]},
        program.eval_batch_size,
    )
    return {k: float(v) for k, v in metrics.items()}
