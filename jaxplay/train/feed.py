"""What a compiled period reads: the data on the device, each period's inputs, evaluation splits.

Data either lives on the device (`data.pipeline='device'`: batches are gathered there from
host-computed indices) or streams from the host (`'grain'`: jaxplay.data.pipeline), in which case
evaluation streams too.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxplay.data import pipeline
from jaxplay.train import mesh as mesh_lib
from jaxplay.train.step import PREDICTIONS, correct_count

# The streamed batches one call of the compiled period holds, per trial: under the grain pipeline
# a period runs as calls of `chunk_steps` steps each (its evaluation once, at its end), so a long
# period of large examples (ImageNet: 1251 steps of 1024 x 150 KB) never sits on the device whole.
CHUNK_BYTES = 256 << 20


def chunk_steps(program, dataset) -> int:
    """Steps per call of the compiled period: the whole period under the device pipeline (its
    inputs are example indices); under grain the largest divisor of train.eval_every whose
    batches fit CHUNK_BYTES (at least one step)."""
    if program.pipeline == "device":
        return program.eval_every
    example = sum(
        np.dtype(a.dtype).itemsize * math.prod(a.shape[1:])
        for a in (dataset.x_train, dataset.y_train)
    )
    most = max(CHUNK_BYTES // max(example * program.batch_size, 1), 1)
    return max(
        d for d in range(1, min(most, program.eval_every) + 1) if program.eval_every % d == 0
    )


def padded(x, y, batch, multiple: int = 8):
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

    def pad(a):  # zeros after the last example; targets may have axes of their own (tokens)
        a = np.pad(a, [(0, total - n)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape((num_batches, batch) + a.shape[1:])

    return pad(x), pad(y), w.reshape(num_batches, batch)


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


def kept_examples(dataset, keep_predictions: int) -> tuple | None:
    """The validation examples whose predictions every evaluation keeps (train.keep_predictions):
    the split's first ones, the same for every trial and every evaluation; None for none."""
    if not keep_predictions:
        return None
    x, y = dataset.splits["val"]
    n = min(keep_predictions, len(x))
    return np.asarray(x[:n]), np.asarray(y[:n])


_DEVICE_DATA: dict = {}


def device_data(dataset, program, train_eval_examples: int, mesh=None) -> dict:
    """What the compiled period reads: under the 'device' pipeline the training arrays and the
    padded eval splits, placed once per process and reused by every trial; under 'grain' nothing
    (batches arrive with each period). With a data `mesh` the training arrays are replicated (each
    device gathers its share of a batch) and eval batches are split over the devices."""
    if program.pipeline != "device":
        return {}
    key = (
        id(dataset),
        program.eval_batch_size,
        train_eval_examples,
        program.keep_predictions,
        mesh,
    )
    if key not in _DEVICE_DATA:
        # x[:] reads a lazy array (a tfds source) whole: 'device' means the dataset fits.
        arrays = {"x": np.asarray(dataset.x_train[:]), "y": np.asarray(dataset.y_train[:])}
        multiple = 8 if mesh is None else math.lcm(8, mesh.size)
        for name, (x, y) in eval_splits(dataset, train_eval_examples).items():
            arrays[name] = padded(
                np.asarray(x[:]), np.asarray(y[:]), program.eval_batch_size, multiple
            )
        kept = kept_examples(dataset, program.keep_predictions)
        if kept is not None:
            arrays["kept"] = kept
        if mesh is None:
            _DEVICE_DATA[key] = jax.device_put(arrays)
        else:
            replicated, split = mesh_lib.sharding(mesh), mesh_lib.sharding(mesh, axis=1)
            _DEVICE_DATA[key] = {
                k: jax.device_put(v, replicated if k in ("x", "y", "kept") else split)
                for k, v in arrays.items()
            }
    return _DEVICE_DATA[key]


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


def evaluator(
    data_spec, program, data: dict, splits: dict, on_device, metric_sums, sharding=None, *,
    task=None, predict=None, kept=None,
):  # fmt: skip
    """state -> eval metrics, for the sequential and the batched executor alike: `on_device`
    (params, stats, data) scores the device-resident splits under the 'device' pipeline, else the
    splits stream from the host through `metric_sums` (see evaluate_streamed; `task` for the
    counts) and `predict` (params, stats, x, y) scores the `kept` examples (kept_examples) for
    step.PREDICTIONS."""
    threads = data_spec.read_threads

    def evaluate(state):
        out = _evaluate(state["params"], state["batch_stats"], splits)
        if program.pipeline != "device" and kept is not None:
            out[PREDICTIONS] = predict(state["params"], state["batch_stats"], *kept)
        if program.ema:  # the averaged parameters on the validation set, beside the raw ones
            val = _evaluate(state["ema_params"], state["batch_stats"], {"val": splits["val"]})
            out.update(
                {f"val_ema/{k[len('val/') :]}": v for k, v in val.items() if k[:4] == "val/"}
            )
        return out

    def _evaluate(params, stats, chosen):
        if program.pipeline == "device":
            return on_device(params, stats, data)
        return evaluate_streamed(
            metric_sums, params, stats, chosen, program.eval_batch_size, threads, sharding, task
        )

    return evaluate


# The splits whose periodic evaluation also counts the examples predicted correctly: the one
# scored in full each period (the training set's is a sample, whose count says nothing on its own).
COUNTED_SPLITS = ("val",)


def evaluate_streamed(
    metric_sums, params, stats, splits: dict, batch_size: int, read_threads: int = 8,
    sharding=None, task=None,
) -> dict:  # fmt: skip
    """Eval metrics of each split (name -> (x, y)), reading batches from the host. `metric_sums`
    is step.metric_sums bound to the model (or its vmap over a stack of trials); sums accumulate
    on the device and come back once per split. Given the `task`, the splits of COUNTED_SPLITS
    also get <split>/correct (step.correct_count)."""
    out = {}
    for name, (x, y) in splits.items():
        acc = None
        for batch in pipeline.eval_batches(x, y, batch_size, read_threads):
            if sharding is not None:  # each device scores its share of the batch
                batch = jax.device_put(batch, sharding)
            sums = metric_sums(params, stats, *batch)
            acc = sums if acc is None else jax.tree.map(jnp.add, acc, sums)
        sums, total = jax.device_get(acc)
        means = {k: v / total for k, v in sums.items()}
        if name in COUNTED_SPLITS and task is not None:
            means.update(correct_count(task, sums, total, len(y.shape) == 1))
        out.update({f"{name}/{k}": v for k, v in means.items()})
    return out


class InputFeed:
    """Each period's training inputs for one trial or a stack of trials (one seed each), in
    `chunks` calls of `chunk` steps (chunk_steps): example indices under the 'device' pipeline,
    device arrays of streamed batches under 'grain', prepared `data.prefetch` chunks ahead.
    `input_metrics` reports the fraction of a period spent waiting for input (always 0 for the
    device pipeline: nothing to wait for)."""

    def __init__(
        self,
        data_spec,
        dataset,
        program,
        seeds: list[int],
        start_step: int,
        *,
        stacked: bool,
        sharding=None,
    ):
        self.program, self.seeds, self.step, self.stacked = program, seeds, start_step, stacked
        self.chunk = chunk_steps(program, dataset)
        self.chunks = program.eval_every // self.chunk
        self.num_train = len(dataset.x_train)
        self.sharding, self._feed = sharding, None
        if program.pipeline == "grain":
            # data.read_threads is the host's budget, shared by the stacked trials' readers.
            threads = max(1, data_spec.read_threads // len(seeds))
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
                self.chunk,
                stacked=stacked,
                depth=data_spec.prefetch,
                sharding=sharding,
            )

    def next(self):
        """The next chunk's inputs."""
        p = self.program
        if self._feed is not None:
            self.step += self.chunk
            return self._feed.next()
        idx = [
            batch_indices(s, self.step, self.chunk, p.batch_size, self.num_train)
            for s in self.seeds
        ]
        self.step += self.chunk
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
