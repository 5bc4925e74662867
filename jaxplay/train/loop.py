"""The host loop: K trials that share one compiled program, trained period by period.

K = 1 runs the plain program (its batch split over the devices when there are several); K > 1
stacks the trials on a leading axis and runs the same period vmapped, one compilation per stack
size. Each trial keeps its own init and dropout keys, schedule, clipping and optimizer update
(all inside the compiled period, so a global-norm clip or a NaN never mixes trials), its own
batch order (from its seed) and its own bookkeeping (jaxplay.train.trial): divergence, best-N
checkpoints, metrics. A trial that diverges is recorded as infeasible at that step and keeps
riding along in the stack (its numbers are ignored), so the others are untouched.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Callable

import jax
import numpy as np

from jaxplay import distributed, paths, workloads
from jaxplay.checkpoints import TrialCheckpoints
from jaxplay.errors import EnvironmentFault
from jaxplay.train import feed as feed_lib
from jaxplay.train import mesh as mesh_lib
from jaxplay.train import state as state_lib
from jaxplay.train import step as step_lib
from jaxplay.train.profile import PeriodTrace
from jaxplay.train.trial import TrialResult, TrialRun


@dataclasses.dataclass
class Hooks:
    """What the caller sees of training. Trials are named by their position in the list."""

    on_eval: Callable[[int, int, dict], None] | None = None  # (i, step, metrics), step 0 too
    # (i, last step, {name: per-step values of the period}) for trials with train.log_every_step
    on_steps: Callable[[int, int, dict], None] | None = None
    on_resume: Callable[[int, int], None] | None = None  # (i, step resumed from)
    on_period: Callable[[int, dict], None] | None = None  # (step, {i: metrics}) once a period
    should_stop: Callable[[], bool] | None = None  # true: checkpoint this period, then stop
    # (i, message): a checkpoint that cannot be restored was set aside, and what the trial does
    # instead (resumes from an earlier step, or starts again). None: a RuntimeWarning.
    on_warning: Callable[[int, str], None] | None = None
    # (i, step, {name: per-example values}) of the kept validation examples, step 0 too, for
    # trials with train.keep_predictions.
    on_predictions: Callable[[int, int, dict], None] | None = None
    profile: PeriodTrace | None = None  # traces a few periods (sweep --profile)


@dataclasses.dataclass
class _Member:
    i: int
    trial: object
    state: dict
    fresh: bool
    hp: dict
    keys: dict


def run_trials(trials: list, trial_dirs: list, hooks: Hooks | None = None) -> list[TrialResult]:
    """Trains trials (jaxplay.spec.TrialSpec) that share one compiled program; returns their
    results in order. Each resumes from its latest checkpoint in its folder; trials whose
    checkpoints stand at different steps run as separate stacks. When `hooks.should_stop()` turns
    true (Ctrl-C), every unfinished trial checkpoints the current period and KeyboardInterrupt is
    raised, so a rerun resumes exactly there. A checkpoint write that fails (a full disk) raises
    CheckpointWriteError, a storage that cannot be read CheckpointReadError (both
    jaxplay.errors.EnvironmentFault): the trials stay resumable from their last whole checkpoint."""
    hooks = hooks or Hooks()
    first = trials[0]
    for t in trials[1:]:
        if t.group_key != first.group_key:
            raise ValueError(
                "run_trials: the trials do not share one compiled program; group them by "
                "TrialSpec.group_key first"
            )
    instance = workloads.bind(first)
    program = first.program
    stacked = len(trials) > 1
    mesh = None if stacked else mesh_lib.data_mesh(program)
    data = feed_lib.device_data(instance.dataset, program, first.train.train_eval_examples, mesh)
    runs, members = [], []
    try:
        for i, (trial, directory) in enumerate(zip(trials, trial_dirs)):
            graphdef, state, hp, keys = state_lib.init_state(trial, instance, program)
            run = TrialRun(
                trial,
                directory,
                on_eval=None if hooks.on_eval is None else functools.partial(hooks.on_eval, i),
                on_steps=None if hooks.on_steps is None else functools.partial(hooks.on_steps, i),
                on_resume=None
                if hooks.on_resume is None
                else functools.partial(hooks.on_resume, i),
                on_warning=None
                if hooks.on_warning is None
                else functools.partial(hooks.on_warning, i),
                on_predictions=None
                if hooks.on_predictions is None
                else functools.partial(hooks.on_predictions, i),
            )
            runs.append(run)
            resumed = run.resume(state)
            members.append(
                _Member(i, trial, state if resumed is None else resumed, resumed is None, hp, keys)
            )
        results: list = [None] * len(trials)
        by_step: dict[int, list[_Member]] = {}
        for m in members:
            step = int(m.state["step"])
            if step >= program.steps:  # it ended after its last checkpoint, before the store heard
                results[m.i] = runs[m.i].finished(step)
            else:
                by_step.setdefault(step, []).append(m)
        for step, stack in sorted(by_step.items()):
            _Stack(graphdef, instance, program, data, stack, stacked, mesh).train(
                runs, results, step, hooks
            )
    except BaseException as error:
        _close(runs, error)
        raise
    _close(runs)  # the last writes finish here: one that fails is the run's error
    return results


def _close(runs: list[TrialRun], error: BaseException | None = None) -> None:
    """Closes every trial's checkpoints, waiting for their writes, even after one fails. A failed
    write is raised; while another error is on its way out, only a storage failure replaces it
    (the disk must be fixed first, and that error chains the other)."""
    failures = []
    for run in runs:
        try:
            run.close()
        except Exception as e:
            failures.append(e)
    storage = [f for f in failures if isinstance(f, EnvironmentFault)]
    if storage:
        raise storage[0]
    if failures and error is None:
        raise failures[0]


# The final score on the whole training split (train_full/) costs one forward pass per example;
# a training step costs about three per example of its batch (forward and backward). A split of
# at most this fraction of the examples a trial trains on (steps x batch size) adds at most ~10%
# to the trial; a shorter trial (a probe of a few hundred steps on a large corpus) skips it.
WHOLE_SPLIT_MAX_FRACTION = 0.3


def whole_split_affordable(examples: int, steps: int, batch_size: int) -> bool:
    """Whether a trial of `steps` x `batch_size` is long enough to score a training split of
    `examples` once at its end (WHOLE_SPLIT_MAX_FRACTION)."""
    return examples <= WHOLE_SPLIT_MAX_FRACTION * steps * batch_size


class _Stack:
    """The trials of one stack on the device(s): placement, the compiled functions, and how a
    trial's share of the stacked arrays is read back."""

    def __init__(self, graphdef, instance, program, data, members, stacked: bool, mesh):
        self.instance, self.program, self.data = instance, program, data
        self.members, self.stacked = members, stacked
        task, trial = instance.task, members[0].trial
        if stacked:
            self.sharding = mesh_lib.trial_sharding(len(members))
            self.state, self.hp, self.keys = (
                jax.device_put(_stack([getattr(m, k) for m in members]), self.sharding)
                for k in ("state", "hp", "keys")
            )
            # Every trial of the stack scores the same streamed eval batch.
            batch_sharding, eval_sharding = self.sharding, None
        else:
            m = members[0]
            self.state, self.hp, self.keys = m.state, m.hp, m.keys
            batch_sharding = eval_sharding = None
            if mesh is not None:
                replicated = mesh_lib.sharding(mesh)
                self.state, self.hp, self.keys = jax.device_put(
                    (self.state, self.hp, self.keys), replicated
                )
                batch_sharding, eval_sharding = (
                    mesh_lib.sharding(mesh, axis=1),
                    mesh_lib.sharding(mesh, axis=0),
                )
        self.period = step_lib.period_fn(graphdef, task, program, stacked)
        splits = feed_lib.eval_splits(instance.dataset, trial.train.train_eval_examples)
        self.metric_sums = step_lib.metric_sums_fn(graphdef, task, program, stacked)
        # The kept examples travel inside the compiled period's data under the device pipeline;
        # under grain the evaluator scores them.
        kept = None
        if program.pipeline != "device":
            kept = feed_lib.kept_examples(instance.dataset, program.keep_predictions)
        self.evaluate = feed_lib.evaluator(
            trial.data,
            program,
            data,
            splits,
            step_lib.initial_eval_fn(graphdef, task, program, stacked),
            self.metric_sums,
            eval_sharding,
            task=task,
            predict=None
            if kept is None
            else step_lib.predictions_fn(graphdef, task, program, stacked),
            kept=kept,
        )
        self.batch_sharding, self.eval_sharding = batch_sharding, eval_sharding
        # Periodic train metrics score a sample of the training split: the final state is also
        # scored on all of it, so the sample's skew can be read off the record.
        whole = instance.dataset.splits["train"]
        sampled = len(whole[0]) > len(splits["train"][0])
        affordable = whole_split_affordable(len(whole[0]), program.steps, program.batch_size)
        self.full_train = {"train_full": whole} if sampled and affordable else None

    def member(self, tree, j: int):
        """Trial j's share of a stacked tree (the tree itself for one trial)."""
        return jax.tree.map(lambda a: a[j], tree) if self.stacked else tree

    def train(self, runs: list[TrialRun], results: list, step: int, hooks: Hooks) -> None:
        """Trains the stack from `step` until each trial ends, diverges, or a stop is asked."""
        program, members = self.program, self.members
        if any(m.fresh for m in members):  # a stack is all fresh or all resumed at one step
            initial = jax.device_get(self.evaluate(self.state))
            kept = initial.pop(step_lib.PREDICTIONS, None)
            for j, m in enumerate(members):
                runs[m.i].start(self._metrics(initial, j), self._kept(kept, j))
        active = {m.i for m in members}
        write_every = min(m.trial.train.checkpoint_every_secs for m in members)
        last_write = time.monotonic()
        seeds = [m.trial.seed for m in members]
        feed = feed_lib.InputFeed(
            members[0].trial.data,
            self.instance.dataset,
            program,
            seeds,
            step,
            stacked=self.stacked,
            sharding=self.batch_sharding,
        )
        trace = hooks.profile or PeriodTrace()  # none: traces nothing
        try:
            with trace.stack():
                index = 0  # this stack's periods so far (its first compiles)
                while active:
                    with trace.period(index, step + program.eval_every):
                        step, last_write = self._period(
                            feed, runs, results, step, active, hooks, last_write, write_every
                        )
                    index += 1
        finally:
            feed.close()

    def _period(self, feed, runs, results, step, active, hooks, last_write, write_every):
        """One period of train: trains, evaluates and records it for the `active` trials (those
        that end leave the set); returns the step it ended at and the time of the last write."""
        program, members = self.program, self.members
        started = time.perf_counter()
        metrics, per_step = self.run_period(feed)
        step += program.eval_every
        metrics.update(feed.input_metrics(time.perf_counter() - started))
        kept = metrics.pop(step_lib.PREDICTIONS, None)
        if step >= program.steps and self.full_train is not None:
            metrics.update(self.score_full_train())
        # Saves are collective across the hosts of a multi-host job: process 0's clock decides
        # when a write is due.
        write_now = distributed.agree(time.monotonic() - last_write >= write_every)
        reported = {}
        get_state = self._state_getter()
        # The trials' bookkeeping (store writes, checkpoints), named in a profiler trace.
        with jax.profiler.TraceAnnotation("record"):
            for j, m in enumerate(members):
                if m.i not in active:
                    continue  # diverged earlier: it rides along, its numbers are ignored
                result = runs[m.i].after_period(
                    step,
                    functools.partial(get_state, j),
                    self._metrics(metrics, j),
                    self.member(per_step, j),
                    write_now=write_now,
                    predictions=self._kept(kept, j),
                )
                reported[m.i] = runs[m.i].last_metrics
                if result is not None:
                    results[m.i] = result
                    active.discard(m.i)
            if write_now:
                last_write = time.monotonic()
            if hooks.on_period:
                hooks.on_period(step, reported)
        if active and hooks.should_stop is not None and hooks.should_stop():
            for i in active:
                runs[i].write_latest()
            raise KeyboardInterrupt(f"stopped at step {step}")
        return step, last_write

    def score_full_train(self) -> dict:
        """The current state's metrics on the whole training split, as train_full/<metric>,
        beside the periodic sample's train/<metric>: what a check for a skewed sample compares
        (playbook item 66). Streamed in eval batches, once, at a trial's last step."""
        return feed_lib.evaluate_streamed(
            self.metric_sums,
            self.state["params"],
            self.state["batch_stats"],
            self.full_train,
            self.program.eval_batch_size,
            self.members[0].trial.data.read_threads,
            self.eval_sharding,
            self.instance.task,
        )

    def run_period(self, feed) -> tuple[dict, dict]:
        """One evaluation period: its chunks of steps (feed_lib.chunk_steps), then under grain the
        streamed evaluation; the metrics and the per-step logs, on the host. Its phases are
        named in a profiler trace (--profile): waiting for input, dispatching the steps, the
        streamed evaluation, and the fetch, which waits for the device to finish the period."""
        chunks = []
        for _ in range(feed.chunks):
            with jax.profiler.TraceAnnotation("input"):
                inputs = feed.next()
            with jax.profiler.TraceAnnotation("dispatch steps"):
                self.state, metrics, per_step = self.period(
                    self.state, self.hp, self.keys, inputs, self.data
                )
            chunks.append(per_step)
        if self.program.pipeline != "device":
            with jax.profiler.TraceAnnotation("evaluate (streamed)"):
                metrics = self.evaluate(self.state)
        with jax.profiler.TraceAnnotation("fetch metrics"):
            metrics, chunks = jax.device_get((metrics, chunks))
        if len(chunks) == 1:
            return metrics, chunks[0]
        steps_axis = 1 if self.stacked else 0
        return metrics, {k: np.concatenate([c[k] for c in chunks], steps_axis) for k in chunks[0]}

    def _kept(self, kept: dict | None, j: int) -> dict | None:
        """Trial j's kept predictions (None without train.keep_predictions)."""
        return None if kept is None else self.member(kept, j)

    def _metrics(self, metrics: dict, j: int) -> dict:
        if not self.stacked:
            return metrics
        return {k: v if np.ndim(v) == 0 else v[j] for k, v in metrics.items()}

    def _state_getter(self):
        """(j) -> trial j's state after this period. One trial's is the device state itself; a
        stack is copied to the host once, when a first trial needs it as a checkpoint candidate,
        and sliced there (indexing device arrays trial by trial dispatches a gather per leaf)."""
        state = self.state
        if not self.stacked:
            return lambda j: state
        on_host = functools.cache(lambda: jax.device_get(state))
        return lambda j: jax.tree.map(lambda a: np.array(a[j]), on_host())  # a copy, not a view


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds a stack of trials takes on this device (jaxplay.driver.forecast adds them up)."""

    trials: int
    init_first_s: float  # the first trial's init, its compilation included (once per model)
    init_s: float  # each further trial's init
    eval_first_s: float  # the step-0 evaluation, its compilation included (once per stack size)
    eval_s: float  # each further step-0 evaluation
    period_s: float  # one period of `eval_every` steps, compiled (and its evaluation)
    save_s: float  # one trial's whole checkpoint, written and waited for


def time_stack(trials: list, scratch) -> Timing:
    """Times what a stack of `trials` (one group) costs here: init, the step-0 evaluation, and
    periods after a first, untimed one (the median of up to five, as many as fit a second), on
    the trials' real states and inputs; and one checkpoint write into the folder `scratch`.
    Trains nothing that is kept."""
    instance = workloads.bind(trials[0])
    program = trials[0].program
    stacked = len(trials) > 1
    mesh = None if stacked else mesh_lib.data_mesh(program)
    data = feed_lib.device_data(
        instance.dataset, program, trials[0].train.train_eval_examples, mesh
    )

    def init(i, trial):
        graphdef, state, hp, keys = state_lib.init_state(trial, instance, program)
        jax.block_until_ready(state)
        return graphdef, _Member(i, trial, state, True, hp, keys)

    init_first_s, (graphdef, first) = _timed(init, 0, trials[0])
    init_s, (_, again) = _timed(init, 0, trials[0])
    members = [first] + [init(i, t)[1] for i, t in enumerate(trials[1:], 1)]
    one_state = again.state
    stack = _Stack(graphdef, instance, program, data, members, stacked, mesh)
    eval_first_s, _ = _timed(lambda: jax.device_get(stack.evaluate(stack.state)))
    eval_s, _ = _timed(lambda: jax.device_get(stack.evaluate(stack.state)))
    feed = feed_lib.InputFeed(
        trials[0].data, instance.dataset, program, [t.seed for t in trials], 0,
        stacked=stacked, sharding=stack.batch_sharding,
    )  # fmt: skip

    def period():
        stack.run_period(feed)

    try:
        period()  # its first call may still set buffers up
        # The median of a few periods where they are short (a quiet second's worth); one where
        # they are long.
        times: list[float] = []
        while len(times) < 5 and sum(times) < 1.0:
            times.append(_timed(period)[0])
        period_s = float(np.median(times))
    finally:
        feed.close()
    ckpt = TrialCheckpoints(paths.folder(scratch) / "checkpoints", keep_best=1, mode="min")
    try:
        save_s, _ = _timed(lambda: (ckpt.save(1, jax.device_get(one_state), 0.0, {}), ckpt.wait()))
    finally:
        ckpt.close()
    return Timing(len(trials), init_first_s, init_s, eval_first_s, eval_s, period_s, save_s)


def _timed(fn, *args):
    started = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - started, out


def _stack(trees):
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def train_and_evaluate(
    trial,
    trial_dir,
    *,
    on_eval: Callable[[int, dict], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> TrialResult:
    """Trains one trial (a jaxplay.spec.TrialSpec, e.g. `spec.resolve(config).base`) to
    `train.steps`, evaluating every `train.eval_every` steps: run_trials with K = 1.

    Resumes from the latest checkpoint in `trial_dir` if there is one (`on_resume(step)` is called
    so the caller can drop metrics logged after it). `on_eval(step, metrics)` sees every
    evaluation, including step 0. `on_warning(message)` hears of a checkpoint that could not be
    restored and was set aside (default: a RuntimeWarning).
    """
    hooks = Hooks(
        on_eval=None if on_eval is None else lambda i, step, metrics: on_eval(step, metrics),
        on_resume=None if on_resume is None else lambda i, step: on_resume(step),
        should_stop=should_stop,
        on_warning=None if on_warning is None else lambda i, message: on_warning(message),
    )
    return run_trials([trial], [trial_dir], hooks)[0]


def evaluate_checkpoint(trial, trial_dir, step: int | None = None, split: str = "val") -> dict:
    """Restores a trial's checkpoint (default: its best) and evaluates it on `split` ('test' for
    final reporting only): the parameters' moving average where the study's objective is a
    val_ema/ metric (what selected the checkpoint), else the parameters themselves."""
    instance, graphdef, params, stats = _restored(trial, trial_dir, step)
    splits = instance.dataset.splits
    if split not in splits:
        raise ValueError(f"split {split!r}: this dataset has {sorted(splits)}")
    # Streamed, whichever pipeline trained it: the whole split, in eval batches.
    metrics = feed_lib.evaluate_streamed(
        step_lib.metric_sums_fn(graphdef, instance.task, trial.program),
        params,
        stats,
        {split: splits[split]},
        trial.program.eval_batch_size,
    )
    return {k: float(v) for k, v in metrics.items()}


def export_model(trial, trial_dir, step: int | None = None):
    """The trial's model at its checkpoint (default: its best) as a `jax.export.Exported`: the
    forward pass in evaluation mode with the restored weights inside, for any batch size (a
    symbolic leading dimension). Its `serialize()` bytes load with `jax.export.deserialize` and
    run with jax alone, neither jaxplay nor flax (the playbook's "exportable artifacts")."""
    instance, graphdef, params, stats = _restored(trial, trial_dir, step)
    x = np.asarray(instance.dataset.splits["val"][0][:1])
    program = trial.program

    def forward(inputs):
        return step_lib.apply_model(graphdef, program, params, stats, inputs, train=False)[0]

    (batch,) = jax.export.symbolic_shape("batch")
    spec = jax.ShapeDtypeStruct((batch, *x.shape[1:]), x.dtype)
    return jax.export.export(jax.jit(forward))(spec)


def _restored(trial, trial_dir, step: int | None):
    """(workload instance, graphdef, params, batch stats) of a trial's checkpoint `step` (default:
    its best); the parameters' moving average where the objective is a val_ema/ metric."""
    instance = workloads.bind(trial)
    graphdef, state, _, _ = state_lib.init_state(trial, instance, trial.program)
    ckpt = TrialCheckpoints(
        paths.folder(trial_dir) / "checkpoints", keep_best=trial.train.keep_best, mode=trial.mode
    )
    for note in ckpt.notes:  # a step whose metrics could not be read, set aside on opening
        warnings.warn(note, RuntimeWarning, stacklevel=3)
    try:
        step = ckpt.best_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {trial_dir}")
        model = ckpt.restore_model(step, jax.eval_shape(lambda: state))
    finally:
        ckpt.close()
    averaged = trial.objective.startswith("val_ema/") and "ema_params" in model
    return instance, graphdef, model["ema_params" if averaged else "params"], model["batch_stats"]
