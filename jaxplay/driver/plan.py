"""A study's plan: its trials (a window at a time, or as an adaptive designer creates them), each
resolved and checked before it trains, and how they run: one at a time, or stacked in groups that
share one compiled program."""

from __future__ import annotations

import dataclasses

import jax

from jaxplay.errors import ConfigError

EXECUTORS = ("auto", "sequential", "batched")
# On one CPU a vmap of many small trials is slower than a few (XLA:CPU's batched matmuls are
# slower than its plain ones; scripts/bench_batched.py): batches of up to 4 match one trial at a
# time there. Running the batches one after another, not interleaved period by period, also keeps
# each batch short enough that its checkpoints are written once, at its end.
CPU_BATCH_TRIALS = 4
# A non-adaptive study is designed, resolved and checked this many trials at a time: a study of
# num_trials=100000 starts at once instead of planning every trial first, and a study of up to
# WINDOW trials (nearly all) is still checked whole before anything trains.
WINDOW = 256


@dataclasses.dataclass
class Plan:
    """A resolved study (jaxplay.spec.StudySpec), its designer, and the trials known so far."""

    spec: object
    designer: object
    num_trials: int
    params: list[dict] = dataclasses.field(default_factory=list)
    trials: list = dataclasses.field(default_factory=list)  # a TrialSpec per params

    @property
    def adaptive(self) -> bool:
        """True for designers that suggest trials from the results so far (e.g. the GP)."""
        return getattr(self.designer, "adaptive", False)

    def grow(self, end: int) -> None:
        """A non-adaptive study's trials up to `end` (at most num_trials), designed and checked."""
        end = min(end, self.num_trials)
        if end > len(self.params):
            self.extend(self.designer.suggest(len(self.params), end - len(self.params)))

    def extend(self, params: list[dict]) -> None:
        """Resolves and checks trials len(self.params).. and adds them."""
        for p in params:
            try:
                trial = self.spec.trial(p)
            except ConfigError as e:
                raise ConfigError(f"trial {len(self.params)} ({p}): {e}") from None
            self.trials.append(trial)
            self.params.append(p)


def plan(spec) -> Plan:
    """A study's plan; a non-adaptive study's first WINDOW trials resolved and checked (before
    anything trains), the rest as the study reaches them (Plan.grow)."""
    designer = spec.designer()
    num_trials = spec.study.num_trials
    if num_trials is None:
        num_trials = designer.max_trials
    study_plan = Plan(spec, designer, num_trials)
    if not study_plan.adaptive:
        if designer.max_trials is not None:  # a grid or a list: refuse a num_trials past its end
            designer.suggest(num_trials - 1, 1)
        study_plan.grow(WINDOW)
    return study_plan


def choose_executor(requested: str) -> tuple[str, str]:
    """(executor, why) for `--executor`: 'auto' batches on accelerators only."""
    if requested not in EXECUTORS:
        raise ConfigError(f"--executor: unknown {requested!r}; use one of {list(EXECUTORS)}")
    backend = jax.default_backend()
    if jax.process_count() > 1:
        # Stacked trials would spread over hosts, each holding some trials' states; a multi-host
        # job instead trains one trial at a time, its batch split over every host's devices.
        if requested == "batched":
            raise ConfigError(
                f"--executor=batched: runs on one host; this job has {jax.process_count()} "
                "processes, which train each trial together (use --executor=sequential or auto)"
            )
        return "sequential", f"auto: {jax.process_count()} processes split each trial's batch"
    if requested != "auto":
        return requested, f"{requested}: asked for on {backend}"
    if backend == "cpu":
        # Measured (scripts/bench_batched.py): a small model's step already keeps the CPU cores
        # busy, so stacking trials adds no throughput there.
        return "sequential", "auto: on cpu batching measured no faster than one trial at a time"
    return "batched", f"auto: batching trials fills the {backend} accelerator"


def default_batch_trials(count: int) -> int:
    """How many of a group's `count` trials to stack when --batch_trials is not given: all of them
    on accelerators; on one CPU the largest divisor of `count` up to CPU_BATCH_TRIALS, so every
    batch has one shape and the group compiles once."""
    if jax.default_backend() != "cpu" or jax.device_count() > 1:
        return count
    return max(d for d in range(1, min(count, CPU_BATCH_TRIALS) + 1) if count % d == 0)


def work_units(study_plan: Plan, pending: list[int], stack_size) -> list[list[int]]:
    """Pending trial indices in the order they run: in groups that share one compiled program,
    each split into stacks of `stack_size(group's trials)` (1: one at a time)."""
    groups: dict = {}
    for i in pending:
        groups.setdefault(study_plan.trials[i].group_key, []).append(i)
    units = []
    for indices in groups.values():
        size = stack_size([study_plan.trials[i] for i in indices])
        units.extend(indices[k : k + size] for k in range(0, len(indices), size))
    return sorted(units)
