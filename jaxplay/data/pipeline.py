"""The streaming input pipeline (`data.pipeline='grain'`), for datasets that do not fit on the
device: grain reads examples from host arrays or tfds sources, a background thread stacks a
period's batches and puts them on the device ahead of the trainer, and the time the trainer
spends waiting for input is measured, so an input-bound study shows up in its metrics
(`train/input_wait_fraction`) and in the diagnostics (playbook: "Optimizing the input pipeline").

Why grain and not tf.data: it is JAX-native and pure Python (no TensorFlow install, ~1 MB),
reads the tfds array_record sources directly, and a grain MapDataset is random-access, so the
batch at step k is a pure function of (seed, k): a resumed trial continues with exactly the
batches it would have seen, without saving iterator state.
"""

from __future__ import annotations

import queue
import threading
import time

import grain
import jax
import numpy as np

from jaxplay.errors import ConfigError


def host_seed(seed: int, process_index: int) -> int:
    """The shuffle seed of one host: the same study seed gives each host its own stream
    (playbook: data seeds differ across hosts, model-init seeds do not)."""
    return int(np.random.SeedSequence([seed, process_index]).generate_state(1)[0])


def train_batches(
    x,
    y,
    *,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    read_threads: int = 8,
):
    """Iterator over this host's (x, y) numpy batches for steps start_step, start_step + 1, ...

    Each host reads its own disjoint shard of the examples (every process_count-th example),
    reshuffled every epoch from `seed` and its index, in batches of batch_size / process_count.
    """
    if batch_size % process_count:
        raise ConfigError(
            f"data.batch_size: {batch_size} does not split evenly over {process_count} hosts; "
            f"use a multiple of {process_count}"
        )
    # Grain shuffles and batches example *indices*; each batch is then one indexed read x[idx]:
    # a single gather for numpy arrays and memmaps, and a per-record decode for lazy tfds sources.
    # Measured with scripts/bench_workloads.py --only none (README, Performance): about twice the
    # examples/s of grain reading and stacking the examples one by one.
    ds = grain.MapDataset.range(len(x))[process_index::process_count]
    ds = ds.shuffle(seed=host_seed(seed, process_index)).repeat()
    ds = ds.batch(batch_size // process_count, drop_remainder=True)
    ds = ds.slice(slice(start_step, None)).map(lambda idx: (np.asarray(x[idx]), np.asarray(y[idx])))
    return iter(
        ds.to_iter_dataset(
            grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=max(read_threads, 4))
        )
    )


def eval_batches(x, y, batch_size: int, read_threads: int = 8):
    """Iterator over (x, y, weights) batches covering a split once, in order; the last batch is
    padded to batch_size with weight-0 examples (playbook item 64)."""
    n = len(x)

    def read(b):
        lo, hi = b * batch_size, min((b + 1) * batch_size, n)
        xb, yb = np.asarray(x[lo:hi]), np.asarray(y[lo:hi])
        pad = batch_size - (hi - lo)
        w = np.concatenate([np.ones(hi - lo, np.float32), np.zeros(pad, np.float32)])
        if pad:
            xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
            yb = np.concatenate([yb, np.zeros((pad,) + yb.shape[1:], yb.dtype)])
        return xb, yb, w

    ds = grain.MapDataset.range(-(-n // batch_size)).map(read)
    return iter(
        ds.to_iter_dataset(
            grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=max(read_threads, 2))
        )
    )


class _Failed:
    def __init__(self, error):
        self.error = error


class PeriodFeed:
    """Device arrays of `steps` stacked batches per period, prepared `depth` periods ahead.

    With several iterators (one per batched trial) the period's arrays get a leading trial axis.
    `take_wait()` returns the seconds the trainer spent blocked on input since the last call.
    """

    def __init__(
        self, iterators: list, steps: int, *, stacked: bool, depth: int = 2, sharding=None
    ):
        self._iterators, self._steps, self._stacked, self._sharding = (
            iterators,
            steps,
            stacked,
            sharding,
        )
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._wait = 0.0
        self.examples = 0
        self._thread = threading.Thread(target=self._fill, daemon=True, name="jaxplay-input")
        self._thread.start()

    def _period(self):
        members = []
        for it in self._iterators:
            batches = [next(it) for _ in range(self._steps)]
            members.append(tuple(np.stack(parts) for parts in zip(*batches)))
        arrays = tuple(np.stack(p) for p in zip(*members)) if self._stacked else members[0]
        self.examples += sum(len(m[0]) * m[0].shape[1] for m in members)
        if self._sharding is not None and not self._sharding.is_fully_addressable:
            # Several hosts: each read its own share of every batch; together they are the batch.
            return jax.tree.map(
                lambda a: jax.make_array_from_process_local_data(self._sharding, a), arrays
            )
        return jax.device_put(arrays, self._sharding)

    def _fill(self):
        try:
            while not self._stop.is_set():
                item = self._period()
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:
            self._queue.put(_Failed(e))

    def next(self):
        """The next period's (x, y) device arrays."""
        start = time.perf_counter()
        item = self._queue.get()
        self._wait += time.perf_counter() - start
        if isinstance(item, _Failed):
            raise item.error
        return item

    def take_wait(self) -> float:
        """Seconds spent waiting for input since the last call."""
        wait, self._wait = self._wait, 0.0
        return wait

    def close(self):
        """Stops the background thread."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
