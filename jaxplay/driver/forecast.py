"""The dry run: what a study would cost on this device, before it trains a trial or writes one.

Per program group (the trials that share one compiled program): how many of its trials are left,
the stack size the sweep would take (jaxplay.driver.batching, with the same inputs), the
predicted peak memory per trial and per stack and the FLOPs of a train step (XLA's analyses of the
compiled period, jaxplay.train.cost), and seconds measured here: the compilations, a trial's
init, the step-0 evaluation, one period of the stack after a first, untimed one, and one
checkpoint write into a scratch folder that is deleted (jaxplay.train.loop.time_stack). The
study's estimate adds these up the way the sweep spends them, in seconds and in device-hours
(devices x seconds: the sweep holds every device of its process, jaxplay.analysis.record).

It is also the study's budget planner (playbook "Striking a balance between informative and
affordable experiments"): how many scientific settings the study compares (values, continuous ones
counted in the buckets the analysis compares them in), the trials each gets, the nuisance
hyperparameters each setting is tuned over, the cost per setting, and a warning when the trials
per setting per nuisance hyperparameter are too few for the nuisance search to be trusted.

    from jaxplay import config, driver, spec
    forecast = driver.forecast(spec.resolve(config.load('experiments/mnist1d_mlp.py')))
    print(forecast.seconds, forecast.groups[0].stack, forecast.groups[0].stack_bytes)
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import tempfile
import time

import jax

from jaxplay import store as store_lib
from jaxplay.analysis.diagnostics import SCIENTIFIC_BUCKETS
from jaxplay.analysis.diagnostics.common import position
from jaxplay.driver import batching as batching_lib
from jaxplay.driver.plan import WINDOW, choose_executor
from jaxplay.driver.plan import plan as plan_study
from jaxplay.errors import ConfigError, StoreError, describe
from jaxplay.train import cost, loop, mesh
from jaxplay.values import duration, size

# A study of more trials than this is forecast from its first SAMPLE (their groups' shares).
SAMPLE = 4 * WINDOW
FINISHED = ("completed", "infeasible", "failed")
STORE_CALLS_PER_TRIAL = 6
# The fewest trials per scientific setting per nuisance hyperparameter for "the best trial of each
# setting" to stand for a tuned one: the playbook's Adam table tunes two hyperparameters (the
# learning rate and b1) from 10 trials, 5 per tuned hyperparameter, and a third (eps) from 25.
# Fewer, and the playbook's third desideratum fails: some scientific values "get luckier".
MIN_TRIALS_PER_NUISANCE = 5


@dataclasses.dataclass(frozen=True)
class BudgetPlan:
    """How a study spends its trials: scientific settings x trials each, over its nuisance space."""

    scientific: tuple[tuple[str, int, str], ...]  # (path, settings counted, 'values'/'buckets')
    nuisance: tuple[str, ...]
    num_trials: int
    spread: tuple[int, int] | None = None  # fewest and most trials of a setting, when all known

    @property
    def settings(self) -> int:
        """Scientific settings compared: the product of each scientific hyperparameter's count."""
        return math.prod(count for _, count, _ in self.scientific)

    @property
    def trials_per_setting(self) -> float:
        """Trials each scientific setting gets on average."""
        return self.num_trials / self.settings

    @property
    def density(self) -> float | None:
        """Trials per scientific setting per nuisance hyperparameter (None: nothing is tuned)."""
        return self.trials_per_setting / len(self.nuisance) if self.nuisance else None

    @property
    def needed_trials(self) -> int:
        """study.num_trials that reaches MIN_TRIALS_PER_NUISANCE."""
        return MIN_TRIALS_PER_NUISANCE * self.settings * max(len(self.nuisance), 1)

    def lines(self, seconds_per_trial: float | None, devices: int) -> list[str]:
        """The plan as the dry run prints it; warnings start with 'warning:'."""
        if not self.scientific and not self.nuisance:
            return []
        out = []
        if self.scientific:
            counted = ", ".join(f"{path}: {n} {kind}" for path, n, kind in self.scientific)
            spread = (
                f" (fewest {self.spread[0]}, most {self.spread[1]})"
                if self.spread and self.spread[0] != self.spread[1]
                else ""
            )
            text = (
                f"budget: {self.settings} scientific setting(s) ({counted}) x "
                f"{self.trials_per_setting:.3g} trial(s) each{spread}"
            )
        else:
            text = f"budget: no scientific hyperparameter; {self.num_trials} trial(s)"
        if self.nuisance:
            text += (
                f"; tuned over {len(self.nuisance)} nuisance hyperparameter(s) "
                f"({', '.join(self.nuisance)}): {self.density:.3g} trial(s) per setting per "
                "nuisance hyperparameter"
            )
        else:
            text += "; no nuisance hyperparameter: every setting runs at the fixed values"
        if seconds_per_trial is not None and self.scientific:
            each = seconds_per_trial * self.trials_per_setting
            text += (
                f"; about {duration(each)} and {each * devices / 3600:.3g} device-hours per "
                "scientific setting"
            )
        out.append(text)
        if self.scientific and self.settings > self.num_trials:
            out.append(
                f"  warning: {self.num_trials} trial(s) for {self.settings} scientific settings: "
                f"some settings get no trial; raise study.num_trials to {self.needed_trials} or "
                "compare fewer scientific values"
            )
        elif self.density is not None and self.density < MIN_TRIALS_PER_NUISANCE:
            what = "per scientific setting " if self.scientific else ""
            out.append(
                f"  warning: {self.density:.3g} trial(s) {what}per nuisance hyperparameter, "
                f"below {MIN_TRIALS_PER_NUISANCE} (the playbook's Adam table tunes 2 "
                "hyperparameters from 10 trials): the best trial of a setting may be a lucky draw "
                "rather than a tuned one, so some scientific values get luckier; raise "
                f"study.num_trials to {self.needed_trials}, search fewer nuisance hyperparameters"
                + (" or compare fewer scientific values" if self.scientific else "")
            )
        return out


def budget_plan(space, num_trials: int, params: list[dict] | None = None) -> BudgetPlan:
    """The budget plan of a search space (jaxplay.spaces.SearchSpace) and trial count; `params`,
    every trial's values when the designer has given them all, adds the fewest and most trials
    a scientific setting gets."""
    scientific = tuple((p.path, *_settings(p)) for p in space.params if p.role == "scientific")
    nuisance = tuple(p.path for p in space.params if p.role == "nuisance")
    spread = None
    if params is not None and scientific and len(params) >= num_trials:
        counts: dict = {}
        for values in params[:num_trials]:
            key = tuple(_setting_of(p, values.get(p.path)) for p in space.by_role("scientific"))
            counts[key] = counts.get(key, 0) + 1
        total = math.prod(n for _, n, _ in scientific)
        fewest = min(counts.values()) if len(counts) >= total else 0
        spread = (fewest, max(counts.values()))
    return BudgetPlan(scientific, nuisance, num_trials, spread)


def _settings(p) -> tuple[int, str]:
    """How many settings of a scientific hyperparameter the analysis compares: a list's values, an
    int's values up to SCIENTIFIC_BUCKETS, else SCIENTIFIC_BUCKETS buckets of its range."""
    if p.values is not None:
        return len(p.values), "values"
    if p.space == "int" and p.max - p.min + 1 <= SCIENTIFIC_BUCKETS:
        return p.max - p.min + 1, "values"
    return SCIENTIFIC_BUCKETS, "buckets"


def _setting_of(p, value):
    """The setting a trial's value falls in (as jaxplay.analysis.diagnostics buckets it)."""
    if p.values is None and _settings(p)[1] == "buckets":
        u = position(p, value)
        if u is not None:
            return min(int(u * SCIENTIFIC_BUCKETS), SCIENTIFIC_BUCKETS - 1)
    return repr(value)


@dataclasses.dataclass(frozen=True)
class GroupForecast:
    """One program group's share of the study."""

    label: str  # the params that shape its program, and the program in words
    trials: int  # its trials left to run
    stack: int  # K: trials per stack (1: one at a time)
    stacks: int  # how many stacks it runs as
    trial_bytes: int  # predicted peak of one trial alone
    stack_bytes: int  # predicted peak of a stack of K
    flops_per_step: float | None  # one trial's train step
    compile_s: float  # its programs' compilations (period, init, evaluation)
    train_s: float  # init, evaluations and periods of all its stacks, and their store writes
    checkpoint_s: float  # its trials' checkpoint writes
    period_s: float  # one period of a stack, measured
    decision: batching_lib.Decision

    @property
    def seconds(self) -> float:
        """The group's estimated time."""
        return self.compile_s + self.train_s + self.checkpoint_s


@dataclasses.dataclass(frozen=True)
class Forecast:
    """A study's dry run: its groups and the estimated time of the trials left."""

    study: str
    device: str
    executor: str
    executor_reason: str
    num_trials: int
    finished: int
    limit_bytes: int | None
    budget_bytes: int | None
    budget: str  # the budget in words (jaxplay.driver.batching.Batching.explain_budget)
    groups: list[GroupForecast]
    sampled: int | None  # the trials the groups were measured on, when fewer than the study's
    adaptive: str | None = None  # the designer, when it suggests trials from results
    devices: int = 1  # the devices the sweep would hold (jax.device_count())
    plan: BudgetPlan | None = None

    @property
    def seconds(self) -> float:
        """The estimated time of the trials left, compilations and checkpoints included."""
        return sum(g.seconds for g in self.groups)

    @property
    def device_hours(self) -> float:
        """The estimated accelerator time of the trials left: devices x seconds, in hours."""
        return self.devices * self.seconds / 3600.0

    def lines(self) -> list[str]:
        """The dry run as `python -m jaxplay.sweep --dry_run` prints it."""
        left = self.num_trials - self.finished
        out = [
            f"dry run of study {self.study!r} on {self.device}: {left} trial(s) to run "
            f"({self.finished} finished), executor {self.executor} ({self.executor_reason})"
        ]
        if self.limit_bytes is None:
            out.append(
                f"device memory: not reported on {self.device.split(':')[0]} (--device_memory "
                "sets it); stacks are not sized by memory"
            )
        else:
            out.append(f"device memory: a stack may fill {self.budget}")
        if self.adaptive:
            out.append(
                f"designer {self.adaptive} suggests trials from the results so far: the groups "
                "below are its first, exploratory suggestions"
            )
        if self.sampled:
            out.append(
                f"groups measured on the first {self.sampled} trials and scaled to the study's "
                f"{self.num_trials}"
            )
        for g in self.groups:
            flops = "-" if g.flops_per_step is None else f"{g.flops_per_step / 1e9:.3g} GFLOP"
            out.append(
                f"group {g.label}: {g.trials} trial(s) in {g.stacks} stack(s) of {g.stack}; "
                f"peak memory {size(g.trial_bytes)} per trial, "
                f"{size(g.stack_bytes)} per stack; {flops} per trial step; "
                f"one period {g.period_s:.3g} s; about {duration(g.seconds)}"
            )
            if self.budget_bytes is not None and g.trial_bytes > self.budget_bytes:
                out.append(
                    f"  warning: one trial of this group needs {size(g.trial_bytes)}, more "
                    f"than the budget: it may run out of memory and fail; use a smaller "
                    "data.batch_size, train.compute_dtype='bfloat16' or a smaller model"
                )
        if self.plan is not None:
            out += self.plan.lines(self.seconds / left if left else None, self.devices)
        compile_s = sum(g.compile_s for g in self.groups)
        checkpoint_s = sum(g.checkpoint_s for g in self.groups)
        out.append(
            f"estimate: about {duration(self.seconds)} and {self.device_hours:.3g} device-hours "
            f"({self.devices} device(s) x the time) for {left} trial(s) (compilation "
            f"{duration(compile_s)}, training and evaluation "
            f"{duration(self.seconds - compile_s - checkpoint_s)}, checkpoints "
            f"{duration(checkpoint_s)}); the report comes after. Nothing was trained or written."
        )
        return out


def forecast(
    spec,
    workdir=None,
    *,
    store_url: str | None = None,
    executor: str = "auto",
    batch_trials: int | None = None,
    device_memory: int | None = None,
    memory_share: float = 1.0,
    log=None,
) -> Forecast:
    """The dry run of a study (a jaxplay.spec.StudySpec); `workdir`/`store_url` name the store
    whose finished trials are left out (read only: nothing is written). The other arguments are
    jaxplay.driver.run's. `log(line)` hears of each group as it is measured."""
    executor, reason = choose_executor(executor)
    stacking = batching_lib.Batching(executor, batch_trials, device_memory, memory_share)
    study_plan = plan_study(spec)
    num_trials = study_plan.num_trials
    sample = min(num_trials, SAMPLE)
    if study_plan.adaptive:  # its first suggestions stand for the rest (no results yet)
        study_plan.extend(study_plan.designer.suggest(0, sample, []))
    else:
        study_plan.grow(sample)
    done = _finished(spec.study.name, workdir, store_url)
    pending = [i for i in range(sample) if i not in done]
    finished = len([i for i in done if i < num_trials])
    scale = (num_trials - finished) / max(len(pending), 1) if sample < num_trials else 1.0
    groups: dict = {}
    for i in pending:
        groups.setdefault(study_plan.trials[i].group_key, []).append(study_plan.trials[i])
    shaping = batching_lib.shaping_params(spec, study_plan.trials[:sample])
    out = []
    with tempfile.TemporaryDirectory(prefix="jaxplay-dry-run-") as scratch:
        write_s = _store_write_s(scratch)
        for n, trials in enumerate(groups.values()):
            label = batching_lib.group_label(trials[0], shaping)
            if log:
                log(f"measuring group {label} ({len(trials)} trials) ...")
            out.append(_group(trials, label, stacking, scale, write_s, f"{scratch}/{n}"))
    return Forecast(
        study=spec.study.name,
        device=mesh.device_kind(),
        executor=executor,
        executor_reason=reason,
        num_trials=num_trials,
        finished=finished,
        limit_bytes=stacking.limit,
        budget_bytes=stacking.budget,
        budget=stacking.explain_budget() if stacking.limit else "",
        groups=out,
        sampled=sample if sample < num_trials else None,
        adaptive=spec.study.algorithm if study_plan.adaptive else None,
        devices=jax.device_count(),
        plan=budget_plan(
            spec.space, num_trials, None if study_plan.adaptive else study_plan.params
        ),
    )


def _group(
    trials: list, label: str, stacking, scale: float, write_s: float, scratch: str
) -> GroupForecast:
    """Measures one group and adds up its time."""
    decision = stacking.decide(trials)
    k = decision.stack
    while True:  # as the sweep would: a stack that runs out of memory is halved
        try:
            timing = loop.time_stack(trials[:k], scratch)
            break
        except Exception as e:
            if not cost.out_of_memory(e):
                raise
            if k == 1:  # the study's trials of this group would fail: say why, and the fix
                raise ConfigError(
                    f"group {label}: {stacking.too_big(trials[0], describe(e))}"
                ) from None
        k = stacking.shrink(trials, k)
        decision = dataclasses.replace(decision, stack=k)
    one, stack = cost.footprint(trials[0], 1), cost.footprint(trials[0], k)
    count = max(1, round(len(trials) * scale))
    full, rest = divmod(count, k)
    stacks = full + (rest > 0)
    program, train_spec = trials[0].program, trials[0].train
    periods = math.ceil(program.steps / program.eval_every)
    # A smaller last stack: on a CPU its period takes its share of the time; an accelerator
    # runs a stack in about the time of one trial.
    fraction = rest / k if jax.default_backend() == "cpu" else 1.0
    stack_periods = (full + (fraction if rest else 0.0)) * periods
    compile_s = (
        stack.compile_s
        + (stack.compile_s if rest else 0.0)  # the last stack's own size compiles too
        + max(timing.init_first_s - timing.init_s, 0.0)
        + max(timing.eval_first_s - timing.eval_s, 0.0)
    )
    train_s = count * timing.init_s + stacks * timing.eval_s + stack_periods * timing.period_s
    # Each evaluation of each trial is a store write, and so are its claim, checkpoint folder,
    # result, best-value update and a few reads.
    train_s += count * (periods + 1 + STORE_CALLS_PER_TRIAL) * write_s
    # Best-N candidates wait in host memory: a trial writes its kept best and its latest at the
    # end, and everything pending every checkpoint_every_secs.
    every = train_spec.checkpoint_every_secs
    due = periods if every <= 0 else int(periods * timing.period_s // every)
    writes = min(periods, train_spec.keep_best) + 1 + min(due, periods)
    return GroupForecast(
        label=label,
        trials=count,
        stack=k,
        stacks=stacks,
        trial_bytes=one.peak_bytes,
        stack_bytes=stack.peak_bytes,
        flops_per_step=one.flops_per_step,
        compile_s=compile_s,
        train_s=train_s,
        checkpoint_s=count * writes * timing.save_s,
        period_s=timing.period_s,
        decision=decision,
    )


def _finished(name: str, workdir, store_url: str | None) -> set[int]:
    """The indices of the study's finished trials in its store, if the store and study exist."""
    if workdir is None and store_url is None:
        return set()
    try:
        url = store_lib.url_for(workdir, store_url, must_exist=True)
        store = store_lib.Store(url, readonly=True)
    except (ConfigError, StoreError):
        return set()  # no store yet: every trial is to run
    try:
        if not store.has_study(name):
            return set()
        record = store.record(store.study_id(name))
        return {t["index"] for t in record["trials"] if t["status"] in FINISHED}
    finally:
        store.close()


def _store_write_s(scratch: str) -> float:
    """Seconds of one store write (an evaluation's metrics), timed on a SQLite store in the
    scratch folder: what the default store costs on this machine's disk."""
    store = store_lib.Store(f"sqlite:///{scratch}/store-probe.db")
    try:
        study = store.open_study(
            "dry-run", "-", config_path="", config={}, notes="", objective="val/error",
            mode="min", algorithm="-", seed=0, num_trials=1, command="", git_commit=None,
            git_dirty=None, versions={}, device_kind="",
        )  # fmt: skip
        store.add_trials(study, [{}])
        trial_id = store.claim(study, "dry-run", indices=[0])[0]
        metrics = {f"metric/{i}": 0.5 for i in range(12)}
        times = []
        for step in range(5):
            started = time.perf_counter()
            store.log_metrics(trial_id, step, metrics, worker="dry-run")
            times.append(time.perf_counter() - started)
    finally:
        store.close()
    return statistics.median(times)
