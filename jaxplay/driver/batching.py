"""How many trials of a group run stacked in one program: the executor, `--batch_trials`, and the
device's memory.

Where the memory is known (the device's own limit on GPUs and TPUs, or `--device_memory`), the
group's period is compiled ahead of time for candidate stack sizes and the largest that fits the
budget is taken (jaxplay.train.cost.stack_size). A stack that runs out of memory all the same is
halved for the rest of the group (`shrink`); a trial that does not fit alone fails with the sizes
involved (`too_big`).
"""

from __future__ import annotations

import dataclasses

import jax

from jaxplay.driver.plan import default_batch_trials
from jaxplay.errors import ConfigError
from jaxplay.train import cost
from jaxplay.values import size


@dataclasses.dataclass(frozen=True)
class Decision:
    """How one group's trials are stacked, and the figures behind it."""

    stack: int  # K: trials per stack
    cap: int  # the most it could be: the group's size, --batch_trials, the CPU default, a halving
    footprints: dict  # K -> jaxplay.train.cost.Footprint, the compilations that decided it
    budget: int | None  # bytes a stack may fill; None: the device's memory is not known

    @property
    def per_trial_bytes(self) -> int | None:
        """What one more trial adds to a stack's peak (the slope of the compiled sizes)."""
        sizes = sorted(self.footprints)
        if len(sizes) < 2:
            return self.footprints[sizes[0]].peak_bytes if sizes else None
        a, b = self.footprints[sizes[-2]], self.footprints[sizes[-1]]
        return int((b.peak_bytes - a.peak_bytes) / (b.trials - a.trials))

    @property
    def stack_bytes(self) -> int | None:
        """The predicted peak of a stack of `stack` trials, where it was compiled."""
        chosen = self.footprints.get(self.stack)
        return chosen.peak_bytes if chosen else None


class Batching:
    """Stack sizes for one run: per group, decided once and kept (a halving after an
    out-of-memory error lowers it for the rest of the run)."""

    def __init__(
        self,
        executor: str,
        batch_trials: int | None = None,
        device_memory: int | None = None,
        share: float = 1.0,
    ):
        if batch_trials is not None and batch_trials < 1:
            raise ConfigError(f"--batch_trials: must be >= 1 (got {batch_trials})")
        if device_memory is not None and device_memory <= 0:
            raise ConfigError(f"--device_memory: must be > 0 bytes (got {device_memory})")
        self.executor, self.batch_trials = executor, batch_trials
        self.limit, self.source = device_memory, "--device_memory"
        if device_memory is None and executor == "batched":
            self.limit, self.source = cost.device_memory(), f"{jax.default_backend()} memory"
        self.share = share  # of the device: 1 / the workers sharing it (jaxplay.devices)
        self._shrunk: dict = {}  # group key -> the stack size an out-of-memory error left
        self.decisions: dict = {}  # group key -> its latest Decision

    @property
    def budget(self) -> int | None:
        """Bytes a stack's predicted peak may fill: this worker's share of the memory, less the
        margin (jaxplay.train.cost.MARGIN)."""
        if self.limit is None:
            return None
        return int(self.limit * self.share * cost.MARGIN)

    def explain_budget(self) -> str:
        """The budget in words: '1.5 GiB (80% of 1.9 GiB, gpu memory)', with the share of a
        device that other workers use too."""
        share = "" if self.share == 1 else f" of this worker's share, 1/{round(1 / self.share)},"
        return (
            f"{size(self.budget)} ({cost.MARGIN:.0%}{share} of {size(self.limit)}, {self.source})"
        )

    def decide(self, trials: list) -> Decision:
        """The stack size for a group's `trials` (TrialSpecs sharing one program)."""
        count = len(trials)
        if self.executor == "sequential":
            return Decision(1, 1, {}, self.budget)
        key = trials[0].group_key
        cap = min(self.batch_trials or default_batch_trials(count), count)
        cap = min(cap, self._shrunk.get(key, cap))
        if self.budget is None:
            decision = Decision(cap, cap, {}, None)
        else:
            stack, footprints = cost.stack_size(trials[0], cap, self.budget)
            decision = Decision(stack, cap, footprints, self.budget)
        self.decisions[key] = decision
        return decision

    def size(self, trials: list) -> int:
        """decide(trials).stack."""
        return self.decide(trials).stack

    def cap_after_shrink(self, trials: list) -> int:
        """The most trials of this group a stack may hold after its out-of-memory halvings."""
        return self._shrunk.get(trials[0].group_key, len(trials))

    def shrink(self, trials: list, failed: int) -> int:
        """The stack size for a group after a stack of `failed` trials ran out of memory: half."""
        smaller = max(1, failed // 2)
        self._shrunk[trials[0].group_key] = smaller
        return smaller

    def too_big(self, trial, error: str) -> str:
        """Why one trial alone does not fit, with the sizes involved and what to change."""
        program = trial.program
        try:
            predicted = size(cost.footprint(trial, 1).peak_bytes)
        except Exception:  # the compilation itself is what ran out of memory
            predicted = "more than the device holds (its compilation ran out of memory)"
        limit = size(self.limit) if self.limit else "not reported"
        return (
            f"out of device memory with one trial: it needs {predicted} at its peak "
            f"(data.batch_size {program.batch_size}, model {trial.model.name or trial.workload}, "
            f"compute {program.compute_dtype}); the device's limit is {limit}. Use a smaller "
            "data.batch_size, train.compute_dtype='bfloat16', a smaller model, or a device with "
            f"more memory ({error})"
        )


def describe(decision: Decision, label: str, count: int, stacking: Batching) -> str:
    """One line on how a group is stacked and why (printed by the sweep)."""
    line = f"group {label}: {count} trial(s), stacks of {decision.stack}"
    if decision.budget is None or not decision.footprints:
        return line
    if decision.stack == decision.cap:
        why = "all of them fit"
    elif decision.stack_bytes > decision.budget:
        why = "even one trial exceeds the budget: it may run out of memory"
    else:
        why = "the most that fit"
    return (
        f"{line} ({why}): predicted peak {size(decision.stack_bytes)} per stack, "
        f"{size(decision.per_trial_bytes)} per trial, budget {stacking.explain_budget()}"
    )


def group_label(trial, shaping: list[str]) -> str:
    """A group in words: the values of the params that shape its program, and the program."""
    p = trial.program
    values = ", ".join(f"{k}={trial.params[k]}" for k in shaping if k in trial.params)
    what = f"{trial.model.name or trial.workload}, batch {p.batch_size}, {p.steps} steps"
    return f"[{values}] ({what})" if values else f"({what})"


def shaping_params(spec, trials: list) -> list[str]:
    """The searched params that shape the program (e.g. model.width, not the learning rate):
    changing one of them alone in a trial changes its group."""
    if not trials:
        return []
    first = trials[0]
    shaping = []
    for key in sorted({k for t in trials for k in t.params}):
        other = next(
            (t for t in trials if repr(t.params.get(key)) != repr(first.params.get(key))), None
        )
        if other is None or key not in other.params:
            continue
        changed = spec.trial({**first.params, key: other.params[key]})
        if changed.group_key != first.group_key:
            shaping.append(key)
    return shaping
