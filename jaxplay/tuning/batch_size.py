"""Feasible batch sizes and training throughput: the playbook's batch-size probe.

What the playbook says (checklist items 5-15):
  * § "Choosing the batch size": the batch size governs training speed and is not a knob for
    validation performance; "often, the ideal batch size will be the largest batch size
    supported by the available hardware".
  * § "Determining the feasible batch sizes and estimating training throughput": what fits is
    hard to know without running the training program, so run it at increasing powers of 2 for a
    few steps until one exceeds memory, and measure "training throughput = (# examples processed
    per second)", or "time per step = (batch size) / (training throughput)". While the
    accelerators are not saturated, doubling the batch size should (nearly) double throughput;
    if it does not, look for a bottleneck (I/O, synchronization). Once throughput stops
    increasing, only consider batch sizes up to that maximum: "all benefits of using a larger
    batch size assume the training throughput increases". Repeat whenever the model or the
    optimizer changes.
  * § "Changing the batch size requires re-tuning most hyperparameters": a new batch size means
    tuning the optimizer and regularization hyperparameters again.

Usage (the probe is recorded in the workdir's store; the study's report shows it):
  python -m jaxplay.batch_size --config experiments/mnist1d_mlp.py --workdir runs/mnist1d_mlp
  python -m jaxplay.batch_size --config experiments/mnist1d_mlp.py --workdir runs/mnist1d_mlp \\
      --config.model.width=512 --min_batch_size=32 --max_batch_size=1024 --repeats=3
In a notebook:
  from jaxplay import config, spec
  from jaxplay.analysis import throughput
  from jaxplay.tuning import batch_size
  result = batch_size.probe(spec.resolve(config.load('experiments/mnist1d_mlp.py')))
  print(throughput.report(result))

What is measured, for batch sizes min_batch_size * 2^k: the trainer's own compiled training
period (jaxplay.train.step.period_fn: the study's base config with only data.batch_size changed,
the same model, optimizer, dropout/augmentation, data pipeline and device mesh), run after
`warmup` untimed periods, then timed `repeats` times; each timed period includes preparing its
inputs (host-side batch indices, or waiting for streamed batches under data.pipeline='grain'),
as a trial's loop pays them, and ends with jax.block_until_ready. The table reports the median.
Excluded: compilation and initialization (the warm-up), and the periodic evaluation (the
compiled period scores 8 examples instead of the train and validation sets), so the numbers are
training throughput, not a trial's wall time.
The probe ends at the first batch size that runs out of device memory, at the first one above
the training set size, or above `max_batch_size` (default 4096 on CPU, unbounded on
accelerators).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import jax
import numpy as np

from jaxplay import workloads
from jaxplay.analysis.throughput import Probe, Row, analyze, header, line
from jaxplay.errors import ConfigError
from jaxplay.train import feed as feed_lib
from jaxplay.train import mesh as mesh_lib
from jaxplay.train import state as state_lib
from jaxplay.train import step as step_lib

# A CPU's host memory is large, so probing to an out-of-memory error would take minutes per
# period, and a CPU saturates at small batch sizes anyway. On accelerators memory is the limit
# the playbook asks to find, so there is no cap there.
CPU_MAX_BATCH_SIZE = 4096
DEFAULT_MIN_BATCH_SIZE = 8  # a multiple of 8 keeps XLA's tiles and the eval padding aligned


def is_out_of_memory(error: BaseException) -> bool:
    """True for the errors jax raises when a program does not fit in device memory."""
    if isinstance(error, MemoryError):  # host memory (batch indices, CPU buffers)
        return True
    # jax raises jax.errors.JaxRuntimeError (XlaRuntimeError in older jax) with status
    # RESOURCE_EXHAUSTED, at compile time (TPU: "Ran out of memory in memory space hbm") or when
    # allocating (GPU: "Out of memory while trying to allocate ...").
    text = str(error)
    return isinstance(error, jax.errors.JaxRuntimeError) and (
        "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()
    )


def default_max_batch_size() -> int | None:
    """CPU_MAX_BATCH_SIZE on a CPU backend; None (no cap: memory decides) on accelerators."""
    return CPU_MAX_BATCH_SIZE if jax.default_backend() == "cpu" else None


# The probe's device arrays, one dataset at a time: each batch size reuses them, and a new
# dataset replaces (frees) the old one instead of piling copies up in device memory.
_PLACED: dict = {}


def _probe_data(dataset, program, mesh) -> dict:
    """What the compiled period reads: the training arrays on device, and 'train'/'val' eval splits
    of a handful of examples, so the period's evaluation costs next to nothing."""
    if program.pipeline != "device":
        return {}
    key = (id(dataset), mesh)
    if key not in _PLACED:
        _PLACED.clear()
        multiple = 8 if mesh is None else math.lcm(8, mesh.size)
        x, y = np.asarray(dataset.x_train[:]), np.asarray(dataset.y_train[:])
        tiny = feed_lib.padded(x[:multiple], y[:multiple], multiple, multiple)
        if mesh is None:
            _PLACED[key] = jax.device_put({"x": x, "y": y, "train": tiny, "val": tiny})
        else:  # as train.feed.device_data: training arrays replicated, eval batches split
            replicated, split = mesh_lib.sharding(mesh), mesh_lib.sharding(mesh, axis=1)
            _PLACED[key] = {
                "x": jax.device_put(x, replicated),
                "y": jax.device_put(y, replicated),
                "train": jax.device_put(tiny, split),
                "val": jax.device_put(tiny, split),
            }
    return _PLACED[key]


def _check_positive(name: str, value, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name}: must be an int >= {minimum} (got {value!r})")


def probe(
    study,
    batch_sizes: list[int] | None = None,
    *,
    min_batch_size: int | None = None,
    max_batch_size: int | None = None,
    steps_per_period: int | None = None,
    warmup: int = 1,
    repeats: int = 5,
    log: Callable[[str], None] | None = print,
) -> Probe:
    """Measures a study's (jaxplay.spec.StudySpec) training throughput at doubling batch sizes
    until memory, data or max_batch_size ends it.

    `batch_sizes` replaces the doubling sequence from `min_batch_size` (default: 8, rounded up to a
    multiple of the device count). `max_batch_size` None means default_max_batch_size().
    `steps_per_period` defaults to the study's train.eval_every (a trial's scan length). `log`
    gets the table line by line as each batch size finishes (None: silent).
    """
    say = log or (lambda text: None)
    trial = study.base  # the study's base config: the program every trial would share
    instance = workloads.bind(trial)
    num_train = len(instance.dataset.x_train)
    devices = jax.device_count()
    steps = trial.train.eval_every if steps_per_period is None else steps_per_period
    _check_positive("--steps_per_period", steps)
    _check_positive("--warmup", warmup)  # the first period compiles: it must not be timed
    _check_positive("--repeats", repeats)
    if max_batch_size is None:
        max_batch_size = default_max_batch_size()
    else:
        _check_positive("--max_batch_size", max_batch_size)
    if batch_sizes is None:
        start = (
            math.lcm(DEFAULT_MIN_BATCH_SIZE, devices) if min_batch_size is None else min_batch_size
        )
        _check_positive("--min_batch_size", start)
        # Doubling up to and including the first size past the cap (memory may end it sooner):
        # that last one is not run, it records why the probe stopped.
        limit = min(num_train, max_batch_size or num_train)
        if start > limit:
            raise ConfigError(
                f"min_batch_size: {start} is above max_batch_size={max_batch_size} or the "
                f"{num_train} training examples; lower it"
            )
        sizes = [start]
        while sizes[-1] <= limit:
            sizes.append(sizes[-1] * 2)
    else:
        sizes = sorted(set(batch_sizes))
    for s in sizes:
        _check_positive("--batch_sizes" if batch_sizes is not None else "--min_batch_size", s)
        if s % devices:
            raise ConfigError(
                f"{'batch_sizes' if batch_sizes is not None else 'min_batch_size'}: {s} does not "
                f"split evenly over {devices} devices; use multiples of {devices}"
            )

    result = Probe([], "every requested batch size was measured", device=mesh_lib.device_kind())
    initial = None  # on the first batch size, inside the out-of-memory guard: the model may not fit
    say(header())
    for s in sizes:
        if s > num_train:
            result.stop = f"batch size {s} exceeds the {num_train} training examples"
            break
        if max_batch_size is not None and s > max_batch_size:
            cpu = (
                " (the CPU default; raise --max_batch_size to go further)"
                if max_batch_size == CPU_MAX_BATCH_SIZE and jax.default_backend() == "cpu"
                else ""
            )
            result.stop = f"batch size {s} is above max_batch_size={max_batch_size}{cpu}"
            break
        try:
            if initial is None:
                initial = initial_state(trial, instance)
            row = measure(
                trial,
                instance,
                s,
                steps_per_period=steps,
                warmup=warmup,
                repeats=repeats,
                initial=initial,
            )
        except (jax.errors.JaxRuntimeError, MemoryError) as e:
            if not is_out_of_memory(e):
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            result.out_of_memory = s
            result.stop = f"batch size {s} ran out of memory: {first[:300]}"
            say(f"{s:>7}  out of memory")
            break
        prev = result.rows[-1] if result.rows else None
        result.rows.append(row)
        summary = analyze([prev, row] if prev else [row])
        say(line(row, summary.speedups[-1], summary.notes[-1]))
    return result


def at_batch_size(trial, batch_size: int, steps_per_period: int):
    """(trial, program) of the study's base trial at `batch_size`; only the scan length differs
    from a trial's program (schedule lengths stay the study's)."""
    train = dataclasses.replace(
        trial.train, eval_batch_size=max(batch_size, trial.train.eval_batch_size)
    )
    trial = trial.replace(data=dataclasses.replace(trial.data, batch_size=batch_size), train=train)
    return trial, dataclasses.replace(trial.program, eval_every=steps_per_period)


def initial_state(trial, instance) -> tuple:
    """init_state's (graphdef, state, hparams, keys) with the state on the host, for `measure`.

    The state does not depend on the batch size, so a probe initializes (and compiles the init)
    once; keeping it on the host leaves the device memory to the batch size being probed.
    """
    graphdef, state, hp, keys = state_lib.init_state(trial, instance, trial.program)
    return graphdef, jax.device_get(state), hp, keys


def measure(
    trial,
    instance,
    batch_size: int,
    *,
    steps_per_period: int,
    warmup: int = 1,
    repeats: int = 5,
    initial: tuple | None = None,
) -> Row:
    """Times the trainer's compiled period at `batch_size` (may raise jax's out-of-memory error).
    `initial` is `initial_state(...)`, computed here when None."""
    trial, program = at_batch_size(trial, batch_size, steps_per_period)
    mesh = mesh_lib.data_mesh(program)
    data = _probe_data(instance.dataset, program, mesh)
    graphdef, state, hp, keys = initial or initial_state(trial, instance)
    # A fresh device copy (each period donates its input state), replicated over a data mesh.
    replicated = None if mesh is None else mesh_lib.sharding(mesh)
    state, hp, keys = jax.device_put((state, hp, keys), replicated)
    feed = feed_lib.InputFeed(
        trial.data,
        instance.dataset,
        program,
        [trial.seed],
        0,
        stacked=False,
        sharding=None if mesh is None else mesh_lib.sharding(mesh, axis=1),
    )
    period = step_lib.period_fn(graphdef, instance.task, program)
    times = []
    try:
        for i in range(warmup + repeats):  # the first warm-up period compiles
            start = time.perf_counter()
            state, _, per_step = period(state, hp, keys, feed.next(), data)
            jax.block_until_ready((state, per_step))
            if i >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        feed.close()
    return Row(batch_size, steps_per_period, tuple(times))
