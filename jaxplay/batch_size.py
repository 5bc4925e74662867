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

Usage:
  python -m jaxplay.batch_size --config experiments/mnist1d_mlp.py
  python -m jaxplay.batch_size --config experiments/mnist1d_mlp.py --config.model.width=512 \\
      --min_batch_size=32 --max_batch_size=1024 --repeats=3
In a notebook:
  from jaxplay import batch_size, config
  result = batch_size.probe(config.load('experiments/mnist1d_mlp.py'))  # prints the table as it grows
  print(batch_size.report(result))

What is measured, for batch sizes min_batch_size * 2^k: the trainer's own compiled training
period (jaxplay.train._run_period_jit: the study's base config with only data.batch_size changed,
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
import statistics
import sys
import time
from collections.abc import Callable

import jax
import numpy as np

from jaxplay import cli, train, workloads
from jaxplay import config as config_lib
from jaxplay.errors import ConfigError

__all__ = [
    "Row",
    "Probe",
    "Summary",
    "probe",
    "measure",
    "initial_state",
    "analyze",
    "report",
    "is_out_of_memory",
    "default_max_batch_size",
    "main",
]

# "Near doubling": throughput grew by at least this fraction of the batch-size ratio (>= 1.8x for a
# doubling). The playbook asks for "(nearly)" double; 10% slack absorbs run-to-run noise of a
# shared machine yet still flags a real bottleneck or saturation.
NEAR_LINEAR_EFFICIENCY = 0.9
# "No real gain": a larger batch size must buy at least 10% more examples/s to be worth it; less
# is within timing noise and does not repay re-tuning the hyperparameters for a new batch size.
MIN_USEFUL_GAIN = 1.1
# A CPU's host memory is large, so probing to an out-of-memory error would take minutes per
# period, and a CPU saturates at small batch sizes anyway. On accelerators memory is the limit
# the playbook asks to find, so there is no cap there.
CPU_MAX_BATCH_SIZE = 4096
# Timed periods of one batch size that differ by more than this fraction of their median make
# the 10% thresholds above meaningless: the machine was busy, so the report says so.
NOISY_SPREAD = 0.25
DEFAULT_MIN_BATCH_SIZE = 8  # a multiple of 8 keeps XLA's tiles and the eval padding aligned
RETUNE = "remember that changing the batch size requires re-tuning most hyperparameters"


@dataclasses.dataclass(frozen=True)
class Row:
    """The measured training throughput of one batch size."""

    batch_size: int
    steps_per_period: int
    period_seconds: tuple[float, ...]  # every timed period, in order

    @property
    def seconds_per_step(self) -> float:
        """Median time per training step."""
        return statistics.median(self.period_seconds) / self.steps_per_period

    @property
    def steps_per_second(self) -> float:
        """Training steps per second (median)."""
        return 1.0 / self.seconds_per_step

    @property
    def examples_per_second(self) -> float:
        """Training throughput in the playbook's sense: examples processed per second."""
        return self.batch_size / self.seconds_per_step

    @property
    def spread(self) -> float:
        """(slowest - fastest) / median timed period: how far to trust the row on a busy machine."""
        return (max(self.period_seconds) - min(self.period_seconds)) / statistics.median(
            self.period_seconds
        )


@dataclasses.dataclass
class Probe:
    """What `probe` found: the measured batch sizes and why it went no further."""

    rows: list[Row]  # smallest batch size first
    stop: str  # why no larger batch size was measured
    out_of_memory: int | None = None  # the batch size that exceeded device memory, if one did
    device: str = ""


@dataclasses.dataclass(frozen=True)
class Summary:
    """How throughput scales with the batch size, in the playbook's terms."""

    speedups: tuple  # per row: its examples/s over the previous row's (None for the first)
    notes: tuple  # per row: 'near doubling', 'sub-linear', 'no real gain', 'slower' or ''
    doubling_until: int | None  # throughput (nearly) doubled at every step up to this batch size
    still_doubling: bool  # ...and it still did at the largest batch size probed
    max_useful: int | None  # smallest batch size that no larger one beats by MIN_USEFUL_GAIN
    still_growing: bool  # throughput still grew meaningfully at the largest batch size probed
    slower: tuple  # batch sizes clearly slower than the previous one
    recommendation: str


def analyze(rows: list[Row]) -> Summary:
    """The playbook's reading of a probe: where throughput stops doubling, the max useful batch size."""
    rows = sorted(rows, key=lambda r: r.batch_size)
    speedups, notes = [None], [""]
    for prev, row in zip(rows, rows[1:]):
        gain = row.examples_per_second / prev.examples_per_second
        linear = row.batch_size / prev.batch_size  # 2 for a doubling; explicit lists may differ
        speedups.append(gain)
        notes.append(
            "near doubling"
            if gain >= NEAR_LINEAR_EFFICIENCY * linear
            else "sub-linear"
            if gain >= MIN_USEFUL_GAIN
            else "no real gain"
            if gain >= 1 / MIN_USEFUL_GAIN
            else "slower"
        )
    if len(rows) < 2:
        what = (
            "no batch size was measured"
            if not rows
            else f"only batch size {rows[0].batch_size} was measured: probe two or more to see how throughput scales"
        )
        return Summary(
            tuple(speedups[: len(rows)]),
            tuple(notes[: len(rows)]),
            None,
            False,
            rows[0].batch_size if rows else None,
            False,
            (),
            what,
        )

    sizes = [r.batch_size for r in rows]
    first_break = next((i for i in range(1, len(rows)) if notes[i] != "near doubling"), None)
    still_doubling = first_break is None
    doubling_until = sizes[-1] if still_doubling else sizes[first_break - 1]
    # The smallest batch size that no larger one beats meaningfully: robust to a noisy dip or a
    # drop in the middle, unlike "the last step that gained".
    throughput = [r.examples_per_second for r in rows]
    useful = next(
        i
        for i in range(len(rows))
        if all(t < MIN_USEFUL_GAIN * throughput[i] for t in throughput[i + 1 :])
    )
    max_useful = sizes[useful]
    still_growing = useful == len(rows) - 1 and notes[-1] in ("near doubling", "sub-linear")
    slower = tuple(s for s, n in zip(sizes, notes) if n == "slower")

    if still_doubling:
        text = (
            f"throughput (nearly) doubles with every doubling of the batch size up to {sizes[-1]}, the "
            "largest probed: the device is not saturated, so a larger batch size should train faster "
            f"if it fits; {RETUNE}"
        )
    else:
        parts = [f"throughput stops doubling after batch size {doubling_until}"]
        if max_useful > doubling_until:
            parts.append(
                f"it still grows up to {max_useful}"
                + (", the largest probed" if still_growing else "")
            )
        if max_useful < sizes[-1]:
            above = [s for s in slower if s > max_useful]
            parts.append(
                f"batch sizes above {max_useful} bring no speed-up"
                + (f" ({', '.join(map(str, above))} slower)" if above else "")
                + f": use at most {max_useful}, and {RETUNE}"
            )
        else:
            parts.append(f"a larger batch size may still help a little if it fits; {RETUNE}")
        text = "; ".join(parts)
    return Summary(
        tuple(speedups),
        tuple(notes),
        doubling_until,
        still_doubling,
        max_useful,
        still_growing,
        slower,
        text,
    )


# ---------------------------------------------------------------------------------------------
# Measuring


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


def _device() -> str:
    return f"{jax.default_backend()}: {jax.devices()[0].device_kind} x{jax.device_count()}"


# The probe's device arrays, one dataset at a time: each batch size reuses them, and a new
# dataset replaces (frees) the old one instead of piling copies up in device memory.
_PLACED: dict = {}


def _probe_data(dataset, program: train.Program, mesh) -> dict:
    """What the compiled period reads: the training arrays on device, and 'train'/'val' eval splits
    of a handful of examples, so the period's evaluation costs next to nothing."""
    if program.pipeline != "device":
        return {}
    key = (id(dataset), mesh)
    if key not in _PLACED:
        _PLACED.clear()
        multiple = 8 if mesh is None else math.lcm(8, mesh.size)
        x, y = np.asarray(dataset.x_train[:]), np.asarray(dataset.y_train[:])
        tiny = train._padded(x[:multiple], y[:multiple], multiple, multiple)
        if mesh is None:
            _PLACED[key] = jax.device_put({"x": x, "y": y, "train": tiny, "val": tiny})
        else:  # as train.device_data: training arrays replicated, eval batches split
            replicated, split = train._sharding(mesh), train._sharding(mesh, axis=1)
            _PLACED[key] = {
                "x": jax.device_put(x, replicated),
                "y": jax.device_put(y, replicated),
                "train": jax.device_put(tiny, split),
                "val": jax.device_put(tiny, split),
            }
    return _PLACED[key]


def _program(config, workload, batch_size: int, steps_per_period: int, searched: frozenset):
    """The trial's program at `batch_size`; only the scan length differs (schedule lengths stay the study's)."""
    config = config_lib.apply(config, {"data.batch_size": batch_size})
    return config, dataclasses.replace(
        train.make_program(config, workload, searched), eval_every=steps_per_period
    )


def initial_state(config, workload, *, searched: frozenset = frozenset()) -> tuple:
    """init_state's (graphdef, state, hparams, keys) with the state on the host, for `measure`.

    The state does not depend on the batch size, so a probe initializes (and compiles the init)
    once; keeping it on the host leaves the device memory to the batch size being probed.
    """
    _, program = _program(
        config, workload, config.data.batch_size, int(config.train.eval_every), searched
    )
    graphdef, state, hp, keys = train.init_state(config, workload, program)
    return graphdef, jax.device_get(state), hp, keys


def measure(
    config,
    workload,
    batch_size: int,
    *,
    steps_per_period: int,
    warmup: int = 1,
    repeats: int = 5,
    searched: frozenset = frozenset(),
    initial: tuple | None = None,
) -> Row:
    """Times the trainer's compiled period at `batch_size` (may raise jax's out-of-memory error).
    `initial` is `initial_state(...)`, computed here when None."""
    config, program = _program(config, workload, batch_size, steps_per_period, searched)
    mesh = train.data_mesh(program)
    data = _probe_data(workload.dataset, program, mesh)
    graphdef, state, hp, keys = initial or initial_state(config, workload, searched=searched)
    # A fresh device copy (each period donates its input state), replicated over a data mesh.
    replicated = None if mesh is None else train._sharding(mesh)
    state, hp, keys = jax.device_put((state, hp, keys), replicated)
    feed = train.InputFeed(
        config,
        workload.dataset,
        program,
        [int(config.seed)],
        0,
        stacked=False,
        sharding=None if mesh is None else train._sharding(mesh, axis=1),
    )
    times = []
    try:
        for i in range(warmup + repeats):  # the first warm-up period compiles
            start = time.perf_counter()
            state, _, per_step = train._run_period_jit(
                graphdef, workload.task, program, state, hp, keys, feed.next(), data
            )
            jax.block_until_ready((state, per_step))
            if i >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        feed.close()
    return Row(batch_size, steps_per_period, tuple(times))


def _header() -> str:
    return f"{'batch':>7} {'steps/s':>10} {'examples/s':>12} {'ms/step':>10} {'spread':>7} {'speedup':>8}  note"


def _line(row: Row, speedup: float | None, note: str, mark: str = "") -> str:
    gain = "-" if speedup is None else f"{speedup:.2f}x"
    return (
        f"{row.batch_size:>7} {row.steps_per_second:>10.1f} {row.examples_per_second:>12.0f} "
        f"{1e3 * row.seconds_per_step:>10.3f} {row.spread:>7.0%} {gain:>8}  {note}{mark}"
    ).rstrip()


def _check_positive(name: str, value, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name}: must be an int >= {minimum} (got {value!r})")


def _checked(config) -> tuple[frozenset, workloads.Instance]:
    """Validates the study as the sweep does; returns its searched paths and its workload."""
    space = config_lib.validate(config)
    train.check(config)
    # The searched paths shape the trials' program: a searched dropout keeps the stochastic path.
    return frozenset(space.paths), workloads.get(config)


def probe(
    config,
    batch_sizes: list[int] | None = None,
    *,
    min_batch_size: int | None = None,
    max_batch_size: int | None = None,
    steps_per_period: int | None = None,
    warmup: int = 1,
    repeats: int = 5,
    log: Callable[[str], None] | None = print,
) -> Probe:
    """Measures training throughput at doubling batch sizes until memory, data or max_batch_size ends it.

    `batch_sizes` replaces the doubling sequence from `min_batch_size` (default: 8, rounded up to a
    multiple of the device count). `max_batch_size` None means default_max_batch_size().
    `steps_per_period` defaults to the study's train.eval_every (a trial's scan length). `log`
    gets the table line by line as each batch size finishes (None: silent).
    """
    say = log or (lambda line: None)
    searched, workload = _checked(config)
    num_train = len(workload.dataset.x_train)
    devices = jax.device_count()
    steps = int(config.train.eval_every) if steps_per_period is None else steps_per_period
    _check_positive("steps_per_period", steps)
    _check_positive("warmup", warmup)  # the first period compiles: it must not be timed
    _check_positive("repeats", repeats)
    if max_batch_size is None:
        max_batch_size = default_max_batch_size()
    else:
        _check_positive("max_batch_size", max_batch_size)
    if batch_sizes is None:
        start = (
            math.lcm(DEFAULT_MIN_BATCH_SIZE, devices) if min_batch_size is None else min_batch_size
        )
        _check_positive("min_batch_size", start)
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
        _check_positive("batch_sizes" if batch_sizes is not None else "min_batch_size", s)
        if s % devices:
            raise ConfigError(
                f"{'batch_sizes' if batch_sizes is not None else 'min_batch_size'}: {s} does not "
                f"split evenly over {devices} devices; use multiples of {devices}"
            )

    result = Probe([], "every requested batch size was measured", device=_device())
    initial = None  # on the first batch size, inside the out-of-memory guard: the model may not fit
    say(_header())
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
                initial = initial_state(config, workload, searched=searched)
            row = measure(
                config,
                workload,
                s,
                steps_per_period=steps,
                warmup=warmup,
                repeats=repeats,
                searched=searched,
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
        say(_line(row, summary.speedups[-1], summary.notes[-1]))
    return result


def report(result: Probe, summary: Summary | None = None) -> str:
    """The whole table, why the probe stopped and the recommendation, as text."""
    summary = summary or analyze(result.rows)
    lines = [_header()]
    for row, gain, note in zip(result.rows, summary.speedups, summary.notes):
        lines.append(
            _line(
                row, gain, note, "  <- max useful" if row.batch_size == summary.max_useful else ""
            )
        )
    if result.out_of_memory is not None:
        lines.append(f"{result.out_of_memory:>7}  out of memory")
    lines += _conclusion(result, summary)
    return "\n".join(lines)


def _conclusion(result: Probe, summary: Summary) -> list[str]:
    advice = summary.recommendation
    if not result.rows and result.out_of_memory is not None:
        advice = (
            f"even batch size {result.out_of_memory} does not fit: try a smaller --min_batch_size, a "
            "smaller model or train.compute_dtype='bfloat16'"
        )
    lines = [f"stopped: {result.stop}", f"recommendation: {advice}"]
    noisy = [r.batch_size for r in result.rows if r.spread > NOISY_SPREAD]
    if noisy:
        lines.append(
            f"warning: timings of batch size {', '.join(map(str, noisy))} vary by more than "
            f"{NOISY_SPREAD:.0%} between repeats (other work on this machine?); the reading above is "
            "unreliable: rerun on an idle machine or with more --repeats"
        )
    if summary.max_useful is not None and not summary.still_doubling:
        if result.device.startswith("cpu"):
            lines.append(
                "note: CPU cores saturate at small batch sizes; measure on the accelerator you will "
                "train on before choosing a batch size"
            )
        else:
            lines.append(
                "note: if throughput stops doubling well before memory runs out, look for a bottleneck "
                "(input pipeline, host-device synchronization) before choosing a batch size"
            )
    return lines


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv=None) -> int:
    """Entry point of `python -m jaxplay.batch_size`."""
    from absl import flags
    from absl import logging as absl_logging
    from ml_collections import config_flags

    argv = list(sys.argv if argv is None else argv)
    fl = flags.FlagValues()
    cli.define_config(
        fl,
        "Study file: path/to/study.py[:arg]; its base training config is probed (no search "
        "applied).",
    )
    flags.DEFINE_integer(
        "min_batch_size",
        None,
        "Smallest batch size (default: 8, rounded up to a multiple of "
        "the device count); each next one doubles it.",
        flag_values=fl,
    )
    flags.DEFINE_integer(
        "max_batch_size",
        None,
        f"Largest batch size to try (default: {CPU_MAX_BATCH_SIZE} on "
        "CPU, none on accelerators, where running out of memory ends the probe).",
        flag_values=fl,
    )
    flags.DEFINE_integer(
        "steps_per_period",
        None,
        "Training steps per timed call (default: the study's train.eval_every, as in a trial).",
        flag_values=fl,
    )
    flags.DEFINE_integer(
        "warmup", 1, "Untimed periods per batch size (the first compiles).", flag_values=fl
    )
    flags.DEFINE_integer(
        "repeats", 5, "Timed periods per batch size; the median is reported.", flag_values=fl
    )
    if not cli.parse(fl, argv):
        return 2
    if fl.config is None:
        print(
            "usage: python -m jaxplay.batch_size --config experiments/x.py[:arg] [--config.a.b=value ...] "
            "[--min_batch_size=8] [--max_batch_size=N] [--repeats=5]",
            file=sys.stderr,
        )
        return 2
    absl_logging.set_verbosity(absl_logging.WARNING)
    config = fl.config
    started = time.perf_counter()
    try:
        _checked(config)  # before the header: a bad config prints only its error
        steps = fl.steps_per_period or int(config.train.eval_every)
        print(f"device: {_device()}  jax {jax.__version__}")
        print(
            f"config: {config_flags.get_config_filename(fl['config'])} (base config), model: {_model_text(config)}"
        )
        print(
            f"each batch size: {fl.warmup} untimed warm-up period(s) (compile), then the median of {fl.repeats} "
            f"timed periods of {steps} steps; evaluation excluded"
        )
        result = probe(
            config,
            min_batch_size=fl.min_batch_size,
            max_batch_size=fl.max_batch_size,
            steps_per_period=fl.steps_per_period,
            warmup=fl.warmup,
            repeats=fl.repeats,
        )
    except ConfigError as e:
        # Flag-level problems name the flag; config ones name the field.
        name = str(e).split(":", 1)[0]
        flag = (
            f"--{name}"
            if name
            in (
                "min_batch_size",
                "max_batch_size",
                "steps_per_period",
                "warmup",
                "repeats",
                "batch_sizes",
            )
            else None
        )
        print(f"error: {flag + str(e)[len(name) :] if flag else e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    summary = analyze(result.rows)
    if summary.max_useful is not None:
        print(f"max useful batch size: {summary.max_useful}")
    for line in _conclusion(result, summary):
        print(line)
    print(f"probe took {time.perf_counter() - started:.1f} s")
    return 0


def _model_text(config) -> str:
    model = config.get("model", {})
    return ", ".join(f"{k}={v}" for k, v in model.items()) if model else "(none)"


if __name__ == "__main__":
    sys.exit(main())
