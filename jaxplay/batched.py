"""Many trials in one compiled program: the members of a group share everything that shapes the
program (model, batch size, steps, optimizer and schedule family) and differ only in float
hyperparameters, which are stacked on a leading trial axis and run as one `jit(vmap(period))`.

Each member keeps its own init and dropout keys, schedule, clipping and optimizer update (all
inside the vmapped function, so a global-norm clip or a NaN never mixes members), its own batch
order (from its seed), and its own host-side bookkeeping (`train.TrialRun`): divergence,
best-N checkpoints, metrics. A member that diverges is recorded as infeasible at that step; it
keeps riding along in the stack (its numbers are ignored), so the others are untouched.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxplay import train, workloads

# Measured on the 2-core CPU (16 MNIST-1D MLP trials, one 150-step period): one vmap of all 16
# took 2.95 s against 2.35 s for 16 single-trial calls (XLA:CPU's batched matmuls are slower
# than its plain ones). Batches of up to 4 match one trial at a time. Running the batches one
# after another (not interleaved period by period) also keeps each batch short enough that its
# checkpoints are written once, at its end, as a sequential trial's are: interleaving 64
# members made the periodic all-member writes cost more than batching saved.
CPU_BATCH_TRIALS = 4


def default_batch_trials(count: int) -> int:
    """How many of a group's `count` trials to stack when --batch_trials is not given: all of them
    on accelerators; on one CPU the largest divisor of `count` up to CPU_BATCH_TRIALS, so every
    batch has one shape and the group compiles once."""
    if jax.default_backend() != "cpu" or jax.device_count() > 1:
        return count
    return max(d for d in range(1, min(count, CPU_BATCH_TRIALS) + 1) if count % d == 0)


@functools.lru_cache(maxsize=32)
def _batched_period(graphdef, task, program):
    # One jitted function per program; it compiles once per chunk size.
    fn = functools.partial(train._run_period, graphdef, task, program)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, 0, 0, None)), donate_argnums=(0,))


@functools.lru_cache(maxsize=32)
def _batched_initial_eval(graphdef, task, program):
    fn = functools.partial(train._initial_eval, graphdef, task, program)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, None)))


@functools.lru_cache(maxsize=32)
def _batched_metric_sums(graphdef, task, program):
    # Streamed evaluation: every member scores the same host batch.
    fn = functools.partial(train._metric_sums, graphdef, task, program)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, None, None, None)))


def _stack(trees):
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def _trial_sharding(count: int) -> NamedSharding | None:
    """Spreads the trial axis over the devices when there are several and it divides evenly."""
    n = jax.device_count()
    if n == 1 or count % n:
        return None
    return NamedSharding(train._make_mesh(n, "trials"), PartitionSpec("trials"))


def train_group(
    configs: list,
    trial_dirs: list,
    *,
    searched: frozenset = frozenset(),
    on_eval: Callable[[int, int, dict], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
    on_period: Callable[[int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[train.TrialResult]:
    """Trains trials that share one program together; returns their results in order.

    Callbacks get the member's position first: `on_eval(i, step, metrics)`, `on_resume(i, step)`.
    `on_period(step, {i: metrics})` sees each period once. Members resume from their latest
    checkpoints; members whose checkpoints stand at different steps run as separate stacks.
    """
    workload = workloads.get(configs[0])
    program = train.make_program(configs[0], workload, searched)
    key = train.program_key(configs[0], workload, searched)
    for cfg in configs[1:]:
        if train.program_key(cfg, workload, searched) != key:
            raise ValueError(
                "train_group: the trials do not share one compiled program; group them by "
                "train.program_key first"
            )
    examples = configs[0].train.get("train_eval_examples", train.DEFAULT_TRAIN_EVAL_EXAMPLES)
    data = train.device_data(workload.dataset, program, examples)
    members, runs = [], []
    try:
        for i, (cfg, directory) in enumerate(zip(configs, trial_dirs)):
            graphdef, state, hp, keys = train.init_state(cfg, workload, program)
            # The group decides when to write, so all members' latest checkpoints share a step.
            run = train.TrialRun(
                cfg,
                directory,
                program,
                write_every_secs=math.inf,
                on_eval=None if on_eval is None else functools.partial(on_eval, i),
                on_resume=None if on_resume is None else functools.partial(on_resume, i),
            )
            runs.append(run)
            resumed = run.resume(state)
            members.append(
                {
                    "i": i,
                    "config": cfg,
                    "state": state if resumed is None else resumed,
                    "fresh": resumed is None,
                    "hp": hp,
                    "keys": keys,
                }
            )
        results: list = [None] * len(configs)
        by_step: dict[int, list] = {}
        for m in members:
            step = int(m["state"]["step"])
            if step >= program.steps:
                results[m["i"]] = runs[m["i"]].finished(step)
            else:
                by_step.setdefault(step, []).append(m)
        for step, stack in sorted(by_step.items()):
            _train_stack(
                graphdef,
                workload,
                program,
                data,
                stack,
                runs,
                results,
                step,
                on_period,
                should_stop,
            )
        return results
    finally:
        for run in runs:
            run.close()


def _train_stack(
    graphdef, workload, program, data, stack, runs, results, step, on_period, should_stop
):
    task, config = workload.task, stack[0]["config"]
    sharding = _trial_sharding(len(stack))
    state, hp, keys = (
        jax.device_put(_stack([m[k] for m in stack]), sharding) for k in ("state", "hp", "keys")
    )
    examples = config.train.get("train_eval_examples", train.DEFAULT_TRAIN_EVAL_EXAMPLES)
    splits = train.eval_splits(workload.dataset, examples)

    evaluate = train.evaluator(
        config,
        program,
        data,
        splits,
        _batched_initial_eval(graphdef, task, program),
        _batched_metric_sums(graphdef, task, program),
    )

    if any(m["fresh"] for m in stack):  # a stack is all fresh or all resumed at one step
        initial = jax.device_get(evaluate(state))
        for j, m in enumerate(stack):
            runs[m["i"]].start({k: v[j] for k, v in initial.items()})
    period = _batched_period(graphdef, task, program)
    active = {m["i"] for m in stack}
    write_every = min(m["config"].train.get("checkpoint_every_secs", 60.0) for m in stack)
    last_write = time.monotonic()
    feed = train.InputFeed(
        config,
        workload.dataset,
        program,
        [int(m["config"].seed) for m in stack],
        step,
        stacked=True,
        sharding=sharding,
    )
    try:
        while active:
            started = time.perf_counter()
            state, metrics, per_step = period(state, hp, keys, feed.next(), data)
            if program.pipeline != "device":
                metrics = evaluate(state)
            step += program.eval_every
            metrics, per_step = jax.device_get((metrics, per_step))
            metrics.update(feed.input_metrics(time.perf_counter() - started))
            write_now = time.monotonic() - last_write >= write_every
            reported = {}
            # A member's state is copied to the host only when it becomes a checkpoint candidate; one
            # transfer of the whole stack then serves every member (indexing device arrays member by
            # member dispatched a gather per leaf: 2.4 s of a 16-trial study).
            on_host = functools.cache(lambda state=state: jax.device_get(state))
            for j, m in enumerate(stack):
                i = m["i"]
                if i not in active:
                    continue  # diverged earlier: it rides along, its numbers are ignored
                result = runs[i].after_period(
                    step,
                    lambda j=j: jax.tree.map(
                        lambda a: np.array(a[j]), on_host()
                    ),  # a copy, not a view
                    {k: v if np.ndim(v) == 0 else v[j] for k, v in metrics.items()},
                    {k: v[j] for k, v in per_step.items()},
                    write_now=write_now,
                )
                reported[i] = runs[i].last_metrics
                if result is not None:
                    results[i] = result
                    active.discard(i)
            if write_now:
                last_write = time.monotonic()
            if on_period:
                on_period(step, reported)
            if active and should_stop is not None and should_stop():
                for i in active:
                    runs[i].write_latest()
                raise KeyboardInterrupt(f"stopped at step {step}")
    finally:
        feed.close()
