"""What a group's compiled period asks of the device, known before it trains.

XLA compiles the period ahead of time for a stack of K trials (`jit(...).lower(...).compile()`
on the arguments' shapes alone, nothing allocated) and its `memory_analysis()` gives the bytes
the program holds at its peak; the unoptimized program's `cost_analysis()` gives the FLOPs of a
train step. `stack_size` picks the largest K whose peak fits a memory budget, and
`out_of_memory` recognises the error a device raises when a program did not fit after all.
The compilations are the ones the run then needs: the in-process and on-disk caches reuse them.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from jaxplay import optim, workloads
from jaxplay.train import feed as feed_lib
from jaxplay.train import mesh as mesh_lib
from jaxplay.train import state as state_lib
from jaxplay.train import step as step_lib

# The share of the budget a stack's predicted peak may fill. The rest is for what the period's
# own analysis does not count: the step-0 and streamed evaluations' buffers, the next period's
# inputs prefetched while this one runs, and the allocator's fragmentation.
MARGIN = 0.8


@dataclasses.dataclass(frozen=True)
class Footprint:
    """XLA's figures for one group's period compiled for a stack of `trials` (bytes per device)."""

    trials: int
    peak_bytes: int  # arguments + outputs - donated (aliased) + temporaries + code
    argument_bytes: int
    temp_bytes: int
    flops_per_step: float | None  # one trial's train step; None where the backend does not say
    compile_s: float


_FOOTPRINTS: dict = {}  # (group key, k) -> Footprint: the trials of a group share the figures


def footprint(trial, k: int) -> Footprint:
    """The figures of `trial`'s group period compiled for a stack of `k` trials (cached)."""
    key = (trial.group_key, k)
    if key not in _FOOTPRINTS:
        _FOOTPRINTS[key] = _footprint(trial, k)
    return _FOOTPRINTS[key]


def _footprint(trial, k: int) -> Footprint:
    instance = workloads.bind(trial)
    program = trial.program
    graphdef, init = state_lib.initializer(trial, instance, program)
    hp = optim.as_arrays(trial.hparams)
    keys = state_lib.trial_keys(trial.seed)
    params, stats, opt_state = jax.eval_shape(init.jitted, keys.pop("init"), hp)
    state = {
        "params": params,
        "batch_stats": stats,
        "opt_state": opt_state,
        "step": jax.ShapeDtypeStruct((), np.int32),
    }
    data = feed_lib.device_data(instance.dataset, program, trial.train.train_eval_examples)
    xs = _chunk_inputs(instance.dataset, program)
    stacked = k > 1
    sharding = mesh_lib.trial_sharding(k) if stacked else None
    per_trial_state = _shapes(state)
    per_trial = (per_trial_state, _shapes(hp), _shapes(keys), xs)
    if stacked:
        per_trial = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((k, *a.shape), a.dtype, sharding=sharding), per_trial
        )
    period = step_lib.period_fn(graphdef, instance.task, program, stacked)
    started = time.perf_counter()
    lowered = period.lower(*per_trial, _shapes(data))
    compiled = lowered.compile()
    seconds = time.perf_counter() - started
    memory = compiled.memory_analysis()
    peak = (
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        - memory.alias_size_in_bytes
        + memory.temp_size_in_bytes
        + memory.generated_code_size_in_bytes
    )
    return Footprint(
        trials=k,
        peak_bytes=int(peak),
        argument_bytes=int(memory.argument_size_in_bytes),
        temp_bytes=int(memory.temp_size_in_bytes),
        flops_per_step=_step_flops(
            lowered,
            step_lib.initial_eval_fn(graphdef, instance.task, program),
            per_trial_state,
            _shapes(data),
            k,
            program.pipeline == "device",
        ),
        compile_s=seconds,
    )


def _shapes(tree):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), tree)


def _chunk_inputs(dataset, program):
    """The shapes of one call's inputs for one trial (jaxplay.train.feed.InputFeed)."""
    steps, batch = feed_lib.chunk_steps(program, dataset), program.batch_size
    if program.pipeline == "device":
        return jax.ShapeDtypeStruct((steps, batch), np.int32)
    x, y = (np.asarray(a[:1]) for a in (dataset.x_train, dataset.y_train))
    return tuple(jax.ShapeDtypeStruct((steps, batch, *a.shape[1:]), a.dtype) for a in (x, y))


def _step_flops(lowered, evaluate, state, data, k: int, device_pipeline: bool) -> float | None:
    """FLOPs of one trial's train step. The unoptimized program's analysis counts a loop's body
    once (the optimized one may have unrolled it), so the period's figure is one step of each
    trial plus, under the device pipeline, each trial's evaluation, which is taken off."""
    try:
        flops = lowered.cost_analysis()["flops"]
        if device_pipeline:
            params, stats = state["params"], state["batch_stats"]
            flops -= k * evaluate.lower(params, stats, data).cost_analysis()["flops"]
    except (KeyError, TypeError, NotImplementedError):
        return None
    return float(flops) / k


def stack_size(trial, cap: int, budget: int) -> tuple[int, dict[int, Footprint]]:
    """The largest stack of `trial`'s group, at most `cap` trials, whose predicted peak fits
    `budget` bytes, and the footprints compiled to find it (1 when even one trial does not fit:
    the run then says how it fails).

    Peak memory grows about linearly with K (each trial brings its state and activations; the
    data is shared), so the last two sizes compiled give a line, the K it predicts is compiled to
    check, and the search ends when K fits and K + 1 does not (or K is the cap): usually four or
    five compilations per group, once per run (and the on-disk cache keeps them)."""
    seen: dict[int, Footprint] = {}
    if not _fits(trial, 1, budget, seen) or cap <= 1 or not _fits(trial, 2, budget, seen):
        return 1, seen
    best, miss, low, high = 2, cap + 1, 1, 2
    for _ in range(8):
        if best + 1 >= miss:
            break  # the next size up is known not to fit (or is past the cap)
        slope = max((seen[high].peak_bytes - seen[low].peak_bytes) / (high - low), 1.0)
        guess = int(high + (budget - seen[high].peak_bytes) // slope)
        guess = _multiple_of_devices(min(max(guess, best + 1), miss - 1))
        if guess <= best:
            break
        if _fits(trial, guess, budget, seen):
            best = guess
        else:
            miss = guess
        if guess in seen:  # not when its compilation ran out of memory: no figure to refit with
            low, high = high, guess
    return best, seen


def _fits(trial, k: int, budget: int, seen: dict) -> bool:
    """Whether a stack of `k` fits `budget`; its footprint goes into `seen` (none when compiling
    it ran out of memory, as autotuning on a GPU may)."""
    try:
        seen[k] = footprint(trial, k)
    except Exception as e:
        if not out_of_memory(e):
            raise
        return False
    return seen[k].peak_bytes <= budget


def _multiple_of_devices(k: int) -> int:
    """With several devices a stack splits its trial axis over them only when it divides."""
    n = jax.local_device_count()
    return k if n == 1 or k < n else k - k % n


def device_memory() -> int | None:
    """The bytes this process may allocate on its first device, where the backend says (GPU,
    TPU); None on a CPU."""
    stats = jax.local_devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    return int(limit) if limit else None


def peak_bytes_in_use() -> int | None:
    """The device's peak allocation so far in this process, where the backend says."""
    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return int(peak) if peak is not None else None


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a device that ran out of memory compiling or running a program."""
    return isinstance(error, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(error)
