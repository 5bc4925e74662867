"""Running a resolved study: record it in the store, create its trials, then claim and train them,
one at a time or stacked, until none is left. Rerunning continues it: finished trials are kept
and an interrupted one resumes from its checkpoint. Several workers (processes, hosts) may run one
study on one store: each claims trials atomically and renews a lease on them, and a trial whose
lease expired (its worker died) is reclaimed by another and resumed.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
import pathlib
import platform
import subprocess
import time
import traceback
from collections.abc import Callable

from jaxplay import distributed, paths, train, workloads
from jaxplay import store as store_lib
from jaxplay.analysis import record as record_lib
from jaxplay.analysis.diagnostics import chance as chance_lib
from jaxplay.driver import batching as batching_lib
from jaxplay.driver import events as events_lib
from jaxplay.driver.plan import WINDOW, Plan, choose_executor, default_batch_trials, work_units
from jaxplay.driver.plan import plan as plan_study
from jaxplay.driver.progress import Progress
from jaxplay.driver.worker import GracefulInterrupt, Lease, LeaseLost, dead_on_this_host, worker_id
from jaxplay.errors import ConfigError, EnvironmentFault, StoreUnavailable, describe
from jaxplay.train import cost, mesh
from jaxplay.train.profile import PeriodTrace

PACKAGES = (
    "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections", "numpy", "scipy",
    "sqlalchemy", "jaxplay",
)  # fmt: skip


def run(
    spec,
    workdir,
    *,
    store_url: str | None = None,
    config_path: str = "",
    command: str = "",
    worker: str | None = None,
    log: Callable[[str], None] = print,
    max_trials_this_run: int | None = None,
    executor: str = "auto",
    batch_trials: int | None = None,
    report: bool = True,
    lease_s: float = 60.0,
    retry_failed: bool = False,
    device_memory: int | None = None,
    memory_share: float = 1.0,
    tensorboard: bool = True,
    profile: str | None = None,
) -> dict:
    """Runs (or continues) a study (a jaxplay.spec.StudySpec); returns its record.

    `executor`: 'sequential' trains one trial at a time, 'batched' stacks the trials that share a
    compiled program (at most `batch_trials` at once; default: driver.plan.default_batch_trials),
    'auto' batches on accelerators only. Where the device's memory is known (GPU, TPU) or given
    as `device_memory` bytes, a stack holds at most the trials whose compiled period fits
    `memory_share` of it (jaxplay.driver.batching); a stack that runs out of memory is halved and
    resumed. `max_trials_this_run` stops after that many trials (the
    rest stay pending). `report` prints the playbook's diagnostics and writes the HTML report into
    the workdir at the end. A trial whose lease is older than `lease_s` is reclaimed; trials
    other workers hold are waited for, so a run that returns leaves none running. `retry_failed`
    puts failed trials back to pending first (each resumes from its latest checkpoint).
    `tensorboard` writes TensorBoard event files as the trials train (jaxplay.driver.events): each
    trial's evaluations in its folder, the study's HParams summary in the study's folder, so
    `tensorboard --logdir WORKDIR` shows the curves and the HParams table; process 0 alone writes.
    `profile`: a folder that receives a jax.profiler trace of a few evaluation periods of the
    first stack of trials, after its first period (jaxplay.train.profile).
    """
    if not lease_s > 0:
        raise ConfigError(f"--lease_secs: must be > 0 (got {lease_s}); e.g. 60")
    parent = spec.study.parent
    if parent and "changes" not in parent:
        raise ConfigError(
            f"study.parent: {spec.study.name!r} declares a parent but was not derived from it; "
            "run it through python -m jaxplay.sweep (or jaxplay.sweep.run_study), which derives it"
        )
    executor, executor_reason = choose_executor(executor)
    stacking = batching_lib.Batching(executor, batch_trials, device_memory, memory_share)
    study_plan = plan_study(spec)
    study = spec.study
    workdir = paths.folder(workdir)
    url = store_lib.url_for(workdir, store_url)  # refuses a bucket without --store
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(
            f"--workdir: {workdir} is a file; pass a directory (it is created if missing)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    multihost = distributed.multiprocess()
    if not distributed.is_primary():
        log = _quiet  # process 0 prints for the job (and writes the store and the report)
    # Several hosts training together: process 0 alone opens the store; the others get its answers.
    primary_store = distributed.on_primary(lambda: store_lib.Store(url), share=False)
    store = distributed.PrimaryStore(primary_store) if multihost else primary_store
    worker = worker or worker_id()
    events = None
    try:
        if parent:
            changes = "".join(f"\n  {change}" for change in parent["changes"])
            log(
                f"study {study.name!r} derives from {parent['study']!r} "
                f"(--lineage {parent['action']}):{changes}"
            )
        if not store.has_study(study.name):
            _refuse_lost_store(workdir, study.name, store_lib.redact(url))
        study_id = store.open_study(
            study.name,
            spec.hash(),
            config_path=config_path,
            config=spec.tree,
            notes=study.notes,
            objective=study.objective,
            mode=study.mode,
            algorithm=study.algorithm,
            seed=study.seed,
            num_trials=study_plan.num_trials,
            command=command,
            executor=executor,
            executor_reason=executor_reason,
            **provenance(config_path),
        )
        # The first window is recorded whatever this run then trains (even --max_trials 0); the
        # worker adds later windows as it reaches them.
        store.add_trials(study_id, study_plan.params)
        # A trial left 'running' by a dead process of this host resumes now; other hosts' trials
        # are reclaimed when their lease expires.
        stale = store.reset_running(study_id, dead_on_this_host)
        if stale:
            log(f"resuming interrupted trial(s) {stale} from their latest checkpoints")
        if retry_failed:
            requeued = store.requeue_failed(study_id)
            log(
                f"retrying failed trial(s) {requeued} from their latest checkpoints"
                if requeued
                else "--retry_failed: no trial of the study has failed"
            )
        record = store.record(study_id)
        events = events_lib.StudyEvents(
            study_dir(workdir, study.name),
            spec,
            curves=lambda index: store.curves(study_id, index),
            log=log,
            enabled=tensorboard and distributed.is_primary(),
        )
        # Earlier runs' metric names: the study's HParams summary is complete from the start.
        events.metrics_seen(name for t in record["trials"] for name in t["final_metrics"] or {})
        done = sum(
            t["status"] != "pending" and t["index"] < study_plan.num_trials
            for t in record["trials"]
        )
        processes = (
            f"; {distributed.process_count()} processes train each trial together"
            if multihost
            else ""
        )
        log(
            f"study {study.name!r}: {study_plan.num_trials} trials ({done} already finished), "
            f"objective {study.objective} ({study.mode}), designer {study.algorithm}, executor "
            f"{executor} ({executor_reason}), store {store_lib.redact(url)}{processes}"
        )
        _Worker(
            store=store,
            study_id=study_id,
            worker=worker,
            plan=study_plan,
            workdir=workdir,
            progress=Progress(study.objective, study.mode, log),
            remaining=min(
                study_plan.num_trials - done,
                study_plan.num_trials if max_trials_this_run is None else max_trials_this_run,
            ),
            executor=executor,
            batching=stacking,
            lease_s=lease_s,
            budget=max_trials_this_run,
            events=events,
            trace=None if profile is None else PeriodTrace(profile, log=log),
        ).work()
        store.update_best(study_id)
        store.check_study(study_id)
        record = store.record(study_id)
    finally:
        if events is not None:
            events.close()
        store.close()
    log(record_lib.format_record(record))
    if report and distributed.is_primary():
        _write_report(url, study.name, workdir, log)
    return record


@dataclasses.dataclass
class _Worker:
    """This process's share of a study: claims trials, trains them, records their outcomes."""

    store: object
    study_id: int
    worker: str  # this process's id in the store
    plan: Plan
    workdir: object
    progress: Progress
    remaining: int  # trials of the study left when this run started
    executor: str
    batching: batching_lib.Batching
    lease_s: float
    budget: int | None  # at most this many trials in this run (--max_trials)
    events: events_lib.StudyEvents  # TensorBoard's event files (off: it writes nothing)
    trace: PeriodTrace | None = None  # --profile: a trace of a few periods, once
    ran: int = 0

    def __post_init__(self):
        self.lease = Lease(self.store, self.worker, self.lease_s)
        self.interrupt = GracefulInterrupt(self.progress.log)
        self._announced: dict = {}  # group key -> the stack size last said and recorded
        self._chance_recorded = False

    def work(self) -> None:
        """Runs the study's pending trials (a window at a time), then any trial whose worker died
        (lease expired) while this one ran, and under an adaptive designer the new trials it
        suggests; then waits for the trials other workers still hold."""
        adaptive = self.plan.adaptive
        with self.interrupt, self.lease:
            if not adaptive:
                for start in range(0, self.plan.num_trials, WINDOW):
                    if self._spent():
                        break
                    self._claim_and_run(self._units(self._window(start)))
            parent_history = self._parent_history() if adaptive else []
            while not self._spent():
                self._check_stop()
                if self._reclaim():
                    continue
                if not adaptive:
                    break
                created = self._suggest(parent_history)
                if created is None:
                    break  # every trial of the study exists and none is left to claim
                self._claim_and_run(self._units(created))
            if not self._spent():
                self._wait_for_others()

    def _spent(self) -> bool:
        return self.budget is not None and self.ran >= self.budget

    def _window(self, start: int) -> list[int]:
        """The pending trials of the window start..start+WINDOW, added to the store first (a
        study's later windows are designed and checked only when it reaches them)."""
        end = min(start + WINDOW, self.plan.num_trials)
        self.plan.grow(end)
        if start > 0:  # the first window was added when the run started
            self.store.add_trials(self.study_id, self.plan.params[start:end], start)
        pending = self.store.pending(self.study_id, start, end)
        return pending if self.budget is None else pending[: self.budget - self.ran]

    def _reclaim(self) -> bool:
        """Claims and runs one trial left claimable (pending, or its lease expired); whether it
        did."""
        claimed = self.store.claim(
            self.study_id, self.worker, max_index=self.plan.num_trials, lease_s=self.lease_s
        )
        if claimed is None:
            return False
        if not self.plan.adaptive:
            self.plan.grow(claimed[1] + 1)
            self.progress.log(
                f"reclaimed trial {claimed[1]} (its worker stopped renewing its lease)"
            )
        self._run([claimed])
        return True

    def _wait_for_others(self) -> None:
        """Waits while other workers hold some of the study's trials: a live one finishes them, a
        dead one's lease expires and this worker resumes them. A run that ends therefore leaves no
        trial running, and its summary is the study's."""
        announced: set = set()
        while True:
            held = [
                h
                for h in self.store.held_elsewhere(self.study_id, self.worker)
                if h["index"] < self.plan.num_trials
            ]
            if not held:
                return
            fresh = [h for h in held if h["index"] not in announced]
            if fresh:
                announced.update(h["index"] for h in fresh)
                holders = ", ".join(
                    f"trial {h['index']} by {h['worker']} (lease renewed "
                    f"{h['lease_age_s'] or 0:.0f} s ago)"
                    for h in fresh
                )
                self.progress.log(
                    f"waiting for {holders}; a lease not renewed for {self.lease_s:g} s is "
                    "reclaimed and the trial resumed here (Ctrl-C stops waiting: the study stays "
                    "incomplete until they finish)"
                )
            if self._reclaim():
                continue
            self._pause(min(self.lease_s / 3, 5.0))

    def _pause(self, seconds: float) -> None:
        """Sleeps, stopping at once on Ctrl-C or SIGTERM."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._check_stop()
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
        self._check_stop()

    def should_stop(self) -> bool:
        """A signal may reach one host only: all stop together."""
        return distributed.any_process(self.interrupt.requested())

    def _check_stop(self) -> None:
        if self.should_stop():
            raise KeyboardInterrupt

    def _units(self, indices: list[int]) -> list[list[int]]:
        return work_units(self.plan, indices, self._stack_size)

    def _stack_size(self, trials: list) -> int:
        """The stack size of a group's pending `trials`; where the device's memory decided it, the
        decision is said and recorded in the store (probe 'batching') once per group and size."""
        decision = self.batching.decide(trials)
        if decision.footprints:
            self._announce(trials, decision, "fits the memory budget")
        return decision.stack

    def _record_chance(self, trial) -> None:
        """Once per run: the validation split's majority-class rate, from the data the trials
        train on (loaded for them anyway), so the chance-level diagnostic judges any dataset or
        workload whose labels are classes (analysis.diagnostics.chance)."""
        if self._chance_recorded:
            return
        self._chance_recorded = True
        if self.store.probes(self.plan.spec.study.name, chance_lib.KIND):
            return  # an earlier run of the study recorded it: same config, same data
        splits = workloads.bind(trial).dataset.splits
        rate = chance_lib.majority_rate(splits["val"][1]) if "val" in splits else None
        if rate is None:
            return  # not one class label per example (a sequence, a regression target)
        self.store.add_probe(
            self.plan.spec.study.name,
            chance_lib.KIND,
            config={"split": "val"},
            result={"majority_rate": rate, "examples": int(len(splits["val"][1]))},
            device_kind=mesh.device_kind(),
            command="",
        )

    def _announce(self, trials: list, decision, reason: str) -> None:
        key = trials[0].group_key
        if self._announced.get(key) == decision.stack:
            return
        self._announced[key] = decision.stack
        stacking = self.batching
        label = batching_lib.group_label(
            trials[0], batching_lib.shaping_params(self.plan.spec, self.plan.trials)
        )
        self.progress.log(batching_lib.describe(decision, label, len(trials), stacking))
        self.store.add_probe(
            self.plan.spec.study.name,
            "batching",
            config={"group": label, "trials": len(trials), "cap": decision.cap},
            result={
                "stack": decision.stack,
                "predicted_peak_bytes": decision.stack_bytes,
                "per_trial_bytes": decision.per_trial_bytes,
                "budget_bytes": decision.budget,
                "limit_bytes": stacking.limit,
                "source": stacking.source,
                "reason": reason,
            },
            device_kind=mesh.device_kind(),
            command="",
        )

    def _claim_and_run(self, units: list[list[int]]) -> None:
        for planned in units:
            # A stack of the group may have run out of memory since: later stacks are smaller.
            trials = [self.plan.trials[i] for i in planned]
            size = min(len(planned), self.batching.cap_after_shrink(trials))
            for unit in (planned[k : k + size] for k in range(0, len(planned), size)):
                self._claim_unit(unit)

    def _claim_unit(self, unit: list[int]) -> None:
        self._check_stop()
        # Claim each trial: another worker sharing the store may have taken some.
        claim = self.store.claim
        claimed = [
            c
            for i in unit
            if (c := claim(self.study_id, self.worker, indices=[i], lease_s=self.lease_s))
        ]
        if claimed:
            self._run(claimed)

    def _run(self, claimed: list) -> None:
        self.lease.hold([c[0] for c in claimed])
        try:
            self._train(claimed)
        finally:
            self.lease.hold([])
        self.ran += len(claimed)
        # A store replaced while the trials ran (the SQLite file is checked at every call) would
        # otherwise take the next trials' results into nothing.
        self.store.check_study(self.study_id)

    def _train(self, claimed: list) -> None:
        """Trains claimed trials (one, or a stack sharing a program) and records their outcomes.
        Every write is fenced by this worker's lease: a trial taken over is left to its new
        owner."""
        indices = [index for _, index, _ in claimed]
        name = self.plan.spec.study.name
        dirs = [trial_dir(self.workdir, name, index) for index in indices]
        for (trial_id, index, params), directory in zip(claimed, dirs):
            self.store.set_checkpoint_dir(trial_id, str(directory / "checkpoints"))
            self.events.claim(index, directory, params)
        try:
            self._train_stack(claimed, dirs)
        finally:
            self.events.release(indices)  # those left unfinished: a resume rewrites their runs

    def _train_stack(self, claimed: list, dirs: list) -> None:
        """_train's work, in the trials' folders `dirs`."""
        store, progress, worker, events = self.store, self.progress, self.worker, self.events
        ids = [trial_id for trial_id, _, _ in claimed]
        indices = [index for _, index, _ in claimed]
        trials = [self.plan.trials[index] for index in indices]
        self._record_chance(trials[0])
        progress.start(indices, [params for _, _, params in claimed], self.remaining - self.ran)
        steps = trials[0].train.steps

        def on_eval(j, step, metrics):
            if step == 0:  # a fresh start: forget what a run killed before its first checkpoint
                store.drop_metrics_after(ids[j], -1)
            # Renews the lease in the same transaction; stop (before checkpointing) if it was lost.
            if not store.log_metrics(ids[j], step, metrics, worker=worker):
                raise LeaseLost(
                    f"trial {indices[j]} was taken over by another worker at step {step}"
                )
            if step == 0:
                events.start(indices[j])
            events.scalars(indices[j], step, metrics)

        def on_steps(j, step, series):  # every step of the period (train.log_every_step)
            values = {name: [float(v) for v in array] for name, array in series.items()}
            if not store.log_steps(ids[j], step, values, worker=worker):
                raise LeaseLost(
                    f"trial {indices[j]} was taken over by another worker at step {step}"
                )
            events.steps(indices[j], step, values)

        def on_predictions(j, step, values):  # the kept examples' (train.keep_predictions)
            if not store.log_predictions(ids[j], step, values, worker=worker):
                raise LeaseLost(
                    f"trial {indices[j]} was taken over by another worker at step {step}"
                )

        def on_resume(j, step):
            store.drop_metrics_after(ids[j], step)
            events.start(indices[j], resumed=True)  # its run again, from the store, up to `step`
            progress.resumed(indices[j], step)

        def on_period(step, reported):
            events.flush()
            progress.period(step, steps, {indices[j]: m for j, m in reported.items()})

        def on_warning(j, message):  # a damaged checkpoint set aside, and what the trial does now
            progress.log(f"  {message}" if len(ids) == 1 else f"  trial {indices[j]}: {message}")

        hooks = train.Hooks(
            on_eval=on_eval, on_steps=on_steps, on_resume=on_resume, on_period=on_period,
            should_stop=self.should_stop, on_warning=on_warning, on_predictions=on_predictions,
            profile=self.trace,
        )  # fmt: skip
        out_of_memory = None
        try:
            results = train.run_trials(trials, dirs, hooks)
        except KeyboardInterrupt:
            # The trials keep their checkpoints; 'pending' makes the next run resume them.
            for trial_id in ids:
                store.release(trial_id, worker=worker)
            store.update_best(self.study_id)
            raise
        except EnvironmentFault:
            # The machine or the store failed, not the trials (a full disk, a store gone or
            # unreachable): they stay resumable, and the command stops with the reason.
            for trial_id in ids:
                try:
                    store.release(trial_id, worker=worker)
                except Exception:  # the store itself may be what failed: the next run resets it
                    pass
            raise
        except LeaseLost as e:
            # Its new owner resumes it from its checkpoint; this worker writes nothing more to it,
            # and the other trials of its stack go back to pending.
            progress.log(
                f"{e}: this worker had stopped renewing its lease; leaving it to that worker"
            )
            for trial_id in ids:
                store.release(trial_id, worker=worker)
            return
        except Exception as e:  # one broken trial must not end the study
            if cost.out_of_memory(e):
                # Only the message: the traceback's frames hold the stack's device arrays, which
                # must be freed before a smaller stack can fit.
                out_of_memory = describe(e)
            else:
                self._failed(ids, indices, describe(e), traceback.format_exception(e))
                return
        if out_of_memory is not None:
            gc.collect()
            self._out_of_memory(claimed, trials, out_of_memory)
            return
        progress.finished_unit()
        objective = self.plan.spec.study.objective
        for trial_id, index, result in zip(ids, indices, results):
            recorded = store.finish(
                trial_id, result.status, worker=worker, best_step=result.best_step,
                best_value=result.best_value, steps_run=result.steps_run, error=result.reason,
                final_metrics=result.final_metrics,
            )  # fmt: skip
            if recorded is False:
                progress.log(
                    f"trial {index}: another worker took it over before it finished here; its "
                    "result is that worker's"
                )
                continue
            events.end(index, result.status)
            best = (
                "no finite value"
                if result.best_value is None
                else f"best {objective} {result.best_value:.4f} at step {result.best_step}"
            )
            reason = f" ({result.reason})" if result.reason else ""
            progress.done(index, result.status, best + reason)
        store.update_best(self.study_id)

    def _failed(self, ids: list, indices: list[int], summary: str, where: list[str]) -> None:
        """Records trials as failed: what it was first (the summary every view shows), then
        where."""
        error = summary + ("\n\n" + "".join(where) if where else "")
        for trial_id, index in zip(ids, indices):
            if self.store.finish(trial_id, "failed", worker=self.worker, error=error) is not False:
                self.events.end(index, "failed")
            self.progress.done(
                index, "FAILED", f"{summary} (rerun with --retry_failed to try it again)"
            )
        self.store.update_best(self.study_id)

    def _out_of_memory(self, claimed: list, trials: list, message: str) -> None:
        """A stack that ran out of device memory is halved (for the rest of the group too) and its
        trials resume from their checkpoints; one trial alone that does not fit fails, saying
        what it needs and what to change."""
        indices = [index for _, index, _ in claimed]
        if len(claimed) == 1:
            why = self.batching.too_big(trials[0], message)
            self._failed([claimed[0][0]], indices, f"DeviceOutOfMemory: {why}", [])
            return
        half = self.batching.shrink(trials, len(claimed))
        self.progress.log(
            f"out of device memory with {len(claimed)} trials stacked ({message}): halving to "
            f"stacks of {half}; trials {indices} resume from their latest checkpoints"
        )
        decision = batching_lib.Decision(half, half, {}, self.batching.budget)
        self._announce(trials, decision, f"out of memory with stacks of {len(claimed)}")
        for k in range(0, len(claimed), half):
            self._train(claimed[k : k + half])

    def _parent_history(self) -> list[dict]:
        """The finished parent's trials that seed an exploit study's designer (read once: they do
        not change)."""
        parent = self.plan.spec.study.parent
        if not parent or parent.get("action") != "exploit":
            return []
        return _history(self.store.record(self.store.study_id(parent["study"]))["trials"])

    def _suggest(self, parent_history: list[dict]) -> list[int] | None:
        """Creates the adaptive designer's next trials (one, or a stack for the batched executor)
        and returns their indices; None when the study has all its trials. Another worker creating
        trials at the same time wins the race and this one asks again with the news."""
        study_plan, store = self.plan, self.store
        while True:
            record = store.record(self.study_id)
            trials = sorted(record["trials"], key=lambda t: t["index"])
            # Other workers' new trials.
            study_plan.extend([t["params"] for t in trials[len(study_plan.params) :]])
            start = len(trials)
            count = study_plan.num_trials - start
            if count <= 0:
                return None
            if self.executor == "batched":
                count = min(count, self.batching.batch_trials or default_batch_trials(count))
            else:
                count = 1
            if self.budget is not None:
                count = min(count, self.budget - self.ran)
            history = parent_history + _history(record["trials"])
            # Process 0 suggests for a multi-host job: every host then trains the same trials.
            params = distributed.on_primary(
                lambda: study_plan.designer.suggest(start, count, history)  # noqa: B023
            )
            if store.append_trials(self.study_id, params, start):
                study_plan.extend(params)
                return list(range(start, start + count))


def _history(trials: list[dict]) -> list[dict]:
    """What an adaptive designer learns from: each trial's status, params and objective."""
    return [
        {"params": t["params"], "status": t["status"], "value": t["best_value"]} for t in trials
    ]


def _refuse_lost_store(workdir, name: str, url: str) -> None:
    """A study that is not in the store but whose trials have checkpoints in the workdir: the
    store was lost (deleted, emptied) or --store names another one. Starting afresh would train
    over those checkpoints and fabricate records from them: refuse, and say how to recover."""
    folder = paths.folder(workdir) / name
    if not folder.exists():
        return
    trained = [
        d.name for d in sorted(folder.glob("trial_*")) if any((d / "checkpoints").glob("[0-9]*"))
    ]
    if trained:
        raise StoreUnavailable(
            f"store {url} holds no study {name!r}, but {folder} holds checkpoints of its trials "
            f"({', '.join(trained[:3])}{', ...' if len(trained) > 3 else ''}): the store was lost "
            "or emptied, or --store names another one. Restore the store from a backup (or pass "
            f"the --store that holds the study), or move {folder} aside to start the study afresh; "
            "nothing was written"
        )


def _quiet(*_args) -> None:
    """The log of processes other than 0 in a multi-host job."""


def study_dir(workdir, study_name: str) -> pathlib.Path:
    """The folder of a study's trials (and of its TensorBoard HParams summary)."""
    return paths.folder(workdir) / study_name


def trial_dir(workdir, study_name: str, index: int) -> pathlib.Path:
    """Where a trial's checkpoints (and its TensorBoard event files) live."""
    return study_dir(workdir, study_name) / f"trial_{index:04d}"


def provenance(config_path: str = "") -> dict:
    """What ran: library versions, device, the git state of the jaxplay checkout and of the
    study file's own repository (a researcher's code lives there, not in jaxplay)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    # Not a git checkout (an installed wheel): the versions above identify jaxplay's code.
    commit, dirty = _git_state(pathlib.Path(__file__).resolve().parent.parent.parent)
    study_commit, study_dirty = (
        _git_state(pathlib.Path(config_path).resolve().parent) if config_path else (None, None)
    )
    return {
        "versions": versions,
        "git_commit": commit,
        "git_dirty": dirty,
        "study_git_commit": study_commit,
        "study_git_dirty": study_dirty,
        "device_kind": mesh.device_kind(),
    }


def _git_state(folder) -> tuple[str | None, bool | None]:
    """(HEAD commit, uncommitted changes to tracked files) of the git repository holding
    `folder`; (None, None) outside one."""
    try:
        git = ["git", "-C", str(folder)]
        commit = _output([*git, "rev-parse", "HEAD"]).strip() or None
        if commit is None:
            return None, None
        status = _output([*git, "status", "--porcelain", "--untracked-files=no"])
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def _output(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, timeout=10, check=False).stdout


def _write_report(url: str, name: str, workdir, log: Callable[[str], None]) -> None:
    """Prints the playbook's findings and writes the HTML report; a plotting problem is reported,
    never allowed to fail a study whose trials are already safe in the store."""
    from jaxplay import analysis  # matplotlib: imported only when a report is written
    from jaxplay.analysis import html_report

    try:
        data = analysis.load(store=url, study=name)
        findings = analysis.diagnose(data)
        log("\nplaybook diagnostics: " + ("no problems found" if not findings else ""))
        for f in findings:
            log(f"  [{f.severity}] {f.title}\n      -> {f.action}")
        log(f"report: {html_report.write_report(data, workdir, findings=findings)}")
    except Exception as e:  # the trials are safe in the store; say how to retry
        log(
            f"could not write the report ({type(e).__name__}: {e}); "
            f"retry with `python -m jaxplay.studies report --workdir {workdir}`"
        )
