"""The study driver: `python -m jaxplay.sweep --config experiments/x.py --workdir DIR`.

Validates the study file, records the study in the store, asks the designer for the trials,
then claims and trains them one at a time. Re-running the same command on the same workdir
continues the study: finished trials are kept, an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable

import ml_collections

from jaxplay import (
    batched,
    cli,
    designers,
    distributed,
    lineage,
    paths,
    train,
    workloads,
)
from jaxplay import config as config_lib
from jaxplay import (
    store as store_lib,
)
from jaxplay.errors import ConfigError, StoreError

PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "ml-collections",
    "numpy",
    "scipy",
    "sqlalchemy",
    "jaxplay",
)


@dataclasses.dataclass
class Plan:
    """A validated study: its config, search space, designer and the trials known so far (all of
    them up front, except under an adaptive designer, which creates them as results arrive)."""

    config: object
    space: object
    params: list[dict]
    keys: list  # per trial: what shapes its compiled program (train.program_key)
    designer: object = None
    num_trials: int = 0

    @property
    def searched(self) -> frozenset:
        """Dotted paths of the searched hyperparameters (and of manually listed ones)."""
        return frozenset(self.space.paths) | frozenset(p for params in self.params for p in params)

    @property
    def adaptive(self) -> bool:
        """True for designers that suggest trials from the results so far (Bayesian optimization)."""
        return getattr(self.designer, "adaptive", False)

    def extend(self, params: list[dict]) -> None:
        """Validates trials len(self.params).. and adds them with their program keys."""
        searched = self.searched | frozenset(p for trial in params for p in trial)
        for p in params:
            trial_config = config_lib.apply(self.config, p)
            try:
                train.check(trial_config)
            except ConfigError as e:
                raise ConfigError(f"trial {len(self.params)} ({p}): {e}") from None
            self.keys.append(train.program_key(trial_config, workloads.get(trial_config), searched))
            self.params.append(p)


def plan(config) -> Plan:
    """Validates the study and every trial's config before anything trains."""
    space = config_lib.validate(config)
    train.check(config)
    study = config.study
    designer = designers.make(study.algorithm, space, study.seed, study)
    num_trials = study.num_trials if study.num_trials is not None else designer.max_trials
    study_plan = Plan(config, space, [], [], designer, num_trials)
    if not study_plan.adaptive:
        study_plan.extend(designer.suggest(0, num_trials))
    return study_plan


EXECUTORS = ("auto", "sequential", "batched")


def choose_executor(requested: str) -> tuple[str, str]:
    """(executor, why) for `--executor`: 'auto' batches on accelerators only."""
    import jax

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


def work_units(
    study_plan: Plan, pending: list[int], executor: str, batch_trials: int | None
) -> list[list[int]]:
    """Pending trial indices in the order they run: alone, or in batches sharing one program."""
    if executor == "sequential":
        return [[i] for i in pending]
    groups: dict = {}
    for i in pending:
        groups.setdefault(study_plan.keys[i], []).append(i)
    units = []
    for indices in groups.values():
        size = batch_trials or batched.default_batch_trials(len(indices))
        units.extend(indices[k : k + size] for k in range(0, len(indices), size))
    return sorted(units)


def provenance() -> dict:
    """What ran: library versions, device, and the git state of the jaxplay checkout."""
    import jax

    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    devices = jax.devices()
    repo = pathlib.Path(__file__).resolve().parent.parent
    commit = dirty = None
    try:
        commit = (
            subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or None
        )
        if commit:
            status = subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
            dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass  # not a git checkout (an installed wheel): the versions above identify the code
    return {
        "versions": versions,
        "git_commit": commit,
        "git_dirty": dirty,
        "device_kind": f"{jax.default_backend()}: {devices[0].device_kind} x{len(devices)}",
    }


def trial_dir(workdir, study_name: str, index: int) -> pathlib.Path:
    """Where a trial's checkpoints live."""
    return paths.folder(workdir) / study_name / f"trial_{index:04d}"


class Progress:
    """Prints each trial's hyperparameters, then one line per evaluation period with the step,
    loss, objective, speed and ETAs (for a batch: the best member), then each trial's outcome."""

    def __init__(self, objective: str, mode: str, log: Callable[[str], None]):
        self.objective, self.mode, self.log = objective, mode, log
        self.unit_times: list[tuple[float, int]] = []  # (seconds, trials) of finished work units

    def start(self, indices: list[int], params: list[dict], remaining: int):
        self.count, self.remaining, self.t0 = len(indices), remaining, time.perf_counter()
        self.first_step, self.mark = 0, None  # mark: (step, time) of the first period's end
        for index, p in zip(indices, params):
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in p.items())
            self.log(f"trial {index} ({remaining} left in this run) {shown}")
            remaining -= 1
        if len(indices) > 1:
            self.log(f"  trials {_ranges(indices)} run batched in one compiled program")

    def resumed(self, index: int, step: int):
        self.first_step = step
        self.log(f"  resuming{'' if self.count == 1 else f' trial {index}'} from step {step}")

    def period(self, step: int, steps: int, reported: dict[int, dict]):
        if not reported:
            return
        now = time.perf_counter()
        if self.mark is None:
            # The first period includes compiling the program: say so rather than report a
            # misleadingly low speed; later lines measure from here.
            self.mark = (step, now)
            rate, note = (step - self.first_step) / max(now - self.t0, 1e-9), " (incl. compile)"
        else:
            rate, note = (step - self.mark[0]) / max(now - self.mark[1], 1e-9), ""
        eta = (steps - step) / max(rate, 1e-9)
        if self.unit_times:
            per_trial = sum(t for t, _ in self.unit_times) / sum(n for _, n in self.unit_times)
        else:
            per_trial = (now - self.t0 + eta) / self.count
        eta_study = eta + per_trial * (self.remaining - self.count)
        sign = 1 if self.mode == "min" else -1
        finite = {
            i: m for i, m in reported.items() if math.isfinite(m.get(self.objective, math.nan))
        }
        best = (
            min(finite, key=lambda i: sign * finite[i][self.objective])
            if finite
            else next(iter(reported))
        )
        m = reported[best]
        who = "" if self.count == 1 else f"  {len(reported)} trials, best #{best}:"
        speed = (
            f"{rate:,.0f} steps/s"
            if self.count == 1
            else f"{rate * len(reported):,.0f} trial-steps/s"
        )
        if "train/input_wait_fraction" in m:  # streamed input: how long training waited for it
            speed += f", input wait {m['train/input_wait_fraction']:.0%}"
        self.log(
            f"  step {step:>{len(str(steps))}}/{steps}{who}  loss {m.get('train/batch_loss', math.nan):.4f}"
            f"  {self.objective} {m.get(self.objective, math.nan):.4f}  {speed}{note}"
            f"  ETA {_duration(eta)} (study {_duration(eta_study)})"
        )

    def finished_unit(self):
        self.unit_times.append((time.perf_counter() - self.t0, self.count))

    def done(self, index: int, status: str, result_text: str):
        self.log(
            f"trial {index} {status}: {result_text}"
            + (f" in {_duration(time.perf_counter() - self.t0)}" if self.count == 1 else "")
        )


def _ranges(indices: list[int]) -> str:
    return (
        f"{indices[0]}-{indices[-1]}"
        if indices == list(range(indices[0], indices[-1] + 1))
        else str(indices)
    )


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def run_study(
    config,
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
) -> dict:
    """Runs (or continues) the study that `config` declares; returns the study record.

    `executor`: 'sequential' trains one trial at a time, 'batched' stacks the trials that share a
    compiled program (at most `batch_trials` at once; default batched.default_batch_trials),
    'auto' batches on accelerators only.
    `max_trials_this_run` stops after that many trials (the rest stay pending for a later run).
    `report` prints the playbook's diagnostics and writes the HTML report into the workdir at the end.
    Several workers (processes, hosts) may run the same study on one store: each claims trials
    atomically and renews a lease on them; a trial whose lease is older than `lease_s` (its worker
    died) is reclaimed by another worker and resumed from its latest checkpoint.
    """
    if batch_trials is not None and batch_trials < 1:
        raise ConfigError(f"--batch_trials: must be >= 1 (got {batch_trials})")
    if not lease_s > 0:
        raise ConfigError(f"--lease_secs: must be > 0 (got {lease_s}); e.g. 60")
    executor, executor_reason = choose_executor(executor)
    study_plan = plan(config)
    cfg, study = study_plan.config, study_plan.config.study
    workdir = paths.folder(workdir)
    if paths.is_remote(workdir) and not store_url:
        raise ConfigError(
            f"--workdir {workdir}: a bucket can hold the checkpoints but not the SQLite store; "
            "pass --store postgresql://user:password@host/db (or a SQLite file on a local disk: "
            "--store sqlite:////path/jaxplay.db)"
        )
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(
            f"--workdir: {workdir} is a file; pass a directory (it is created if missing)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    url = store_url or store_lib.default_url(workdir)
    multihost = distributed.multiprocess()
    if not distributed.is_primary():
        log = _quiet  # process 0 prints for the job (and writes the store and the report)
    # Several hosts training together: process 0 alone opens the store; the others get its answers.
    primary_store = distributed.on_primary(lambda: store_lib.Store(url), share=False)
    store = distributed.PrimaryStore(primary_store) if multihost else primary_store
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    try:
        if lineage.options(cfg) is not None:  # derived from a parent study in this store
            derived = distributed.on_primary(
                lambda: config_lib.to_json(lineage.resolve(cfg, primary_store))
            )
            study_plan = plan(ml_collections.ConfigDict(json.loads(derived)))
            cfg, study = study_plan.config, study_plan.config.study
            log(
                f"study {study.name!r} derives from {study.parent.study!r} (--lineage {study.parent.action}):"
                + "".join(f"\n  {change}" for change in study.parent.changes)
            )
        study_id = store.open_study(
            study.name,
            config_lib.config_hash(cfg),
            config_path=config_path,
            config=_json_config(cfg),
            notes=study.get("notes", ""),
            objective=study.objective,
            mode=study.mode,
            algorithm=study.algorithm,
            seed=study.seed,
            num_trials=study_plan.num_trials,
            command=command,
            executor=executor,
            executor_reason=executor_reason,
            **provenance(),
        )
        store.add_trials(study_id, study_plan.params)
        # A trial left 'running' by a dead process of this host resumes now; other hosts' trials
        # are reclaimed when their lease expires.
        stale = store.reset_running(study_id, _dead_on_this_host)
        if stale:
            log(f"resuming interrupted trial(s) {stale} from their latest checkpoints")
        record = store.record(study_id)
        todo = [
            t
            for t in record["trials"]
            if t["status"] == "pending" and t["index"] < study_plan.num_trials
        ]
        done = len(record["trials"]) - len(todo)
        remaining = study_plan.num_trials - done
        log(
            f"study {study.name!r}: {study_plan.num_trials} trials ({done} already finished), "
            f"objective {study.objective} ({study.mode}), designer {study.algorithm}, executor {executor} "
            f"({executor_reason}), store {store_lib.redact(url)}"
            + (
                f"; {distributed.process_count()} processes train each trial together"
                if multihost
                else ""
            )
        )
        progress = Progress(study.objective, study.mode, log)
        pending = [t["index"] for t in todo]
        if max_trials_this_run is not None:
            pending = pending[:max_trials_this_run]
        ran = 0
        lease = _Lease(store, worker, lease_s)
        with _GracefulInterrupt(log) as interrupt, lease:

            def stop_requested() -> bool:  # a signal may reach one host only: all stop together
                return distributed.any_process(interrupt.requested())

            def run(claimed):
                nonlocal ran
                lease.hold([c[0] for c in claimed])
                try:
                    _run_unit(
                        store,
                        study_id,
                        worker,
                        claimed,
                        study_plan,
                        workdir,
                        progress,
                        remaining - ran,
                        executor,
                        stop_requested,
                    )
                finally:
                    lease.hold([])
                ran += len(claimed)

            def claim_and_run(units):
                for unit in units:
                    if stop_requested():
                        raise KeyboardInterrupt
                    # Claim each trial: another worker sharing the store may have taken some.
                    claimed = [
                        c
                        for i in unit
                        if (c := store.claim(study_id, worker, indices=[i], lease_s=lease_s))
                    ]
                    if claimed:
                        run(claimed)

            if not study_plan.adaptive:
                claim_and_run(work_units(study_plan, pending, executor, batch_trials))
            parent_history = _parent_history(store, study_plan) if study_plan.adaptive else []
            # Trials this worker did not plan for: those whose worker died (lease expired) while
            # this one ran, one at a time, each resuming from its checkpoint; and under an adaptive
            # designer, the new trials it suggests from the results so far.
            while max_trials_this_run is None or ran < max_trials_this_run:
                if stop_requested():
                    raise KeyboardInterrupt
                claimed = store.claim(
                    study_id, worker, max_index=study_plan.num_trials, lease_s=lease_s
                )
                if claimed is not None:
                    if not study_plan.adaptive:
                        log(f"reclaimed trial {claimed[1]} (its worker stopped renewing its lease)")
                    run([claimed])
                    continue
                if not study_plan.adaptive:
                    break
                created = _suggest(
                    store,
                    study_id,
                    study_plan,
                    parent_history,
                    executor,
                    batch_trials,
                    None if max_trials_this_run is None else max_trials_this_run - ran,
                )
                if created is None:
                    break  # every trial of the study exists and none is left to claim
                claim_and_run(work_units(study_plan, created, executor, batch_trials))
        store.update_best(study_id)
        record = store.record(study_id)
    finally:
        store.close()
    from jaxplay import studies  # the summary table is the `studies show` view

    log(studies.format_record(record))
    if report and distributed.is_primary():
        _write_report(url, study.name, workdir, log)
    return record


def _history(trials: list[dict]) -> list[dict]:
    """What an adaptive designer learns from: each trial's status, params and objective."""
    return [
        {"params": t["params"], "status": t["status"], "value": t["best_value"]} for t in trials
    ]


def _parent_history(store, study_plan: Plan) -> list[dict]:
    """The finished parent's trials that seed an exploit study's designer (read once: they do not change)."""
    parent = study_plan.config.study.get("parent")
    if not parent or parent.get("action") != "exploit":
        return []
    return _history(store.record(store.study_id(parent.study))["trials"])


def _suggest(
    store,
    study_id: int,
    study_plan: Plan,
    parent_history: list[dict],
    executor: str,
    batch_trials: int | None,
    budget: int | None,
) -> list[int] | None:
    """Creates the adaptive designer's next trials (one, or a batch for the batched executor) and
    returns their indices; None when the study has all its trials. Another worker creating trials
    at the same time wins the race and this one asks again with the news."""
    while True:
        record = store.record(study_id)
        trials = sorted(record["trials"], key=lambda t: t["index"])
        study_plan.extend(
            [t["params"] for t in trials[len(study_plan.params) :]]
        )  # other workers' new trials
        start = len(trials)
        count = study_plan.num_trials - start
        if count <= 0:
            return None
        if executor == "batched":
            count = min(count, batch_trials or batched.default_batch_trials(count))
        else:
            count = 1
        if budget is not None:
            count = min(count, budget)
        history = parent_history + _history(record["trials"])
        # Process 0 suggests for a multi-host job: every host then trains the same trials.
        params = distributed.on_primary(lambda: study_plan.designer.suggest(start, count, history))
        if store.append_trials(study_id, params, start):
            study_plan.extend(params)
            return list(range(start, start + count))


def _quiet(*_args) -> None:
    """The log of processes other than 0 in a multi-host job."""


def _dead_on_this_host(worker: str) -> bool:
    """True for a worker id 'host:pid' of this host whose process is gone (or is this process:
    a trial it left running was interrupted before this call)."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


class _Lease:
    """Renews this worker's lease on the trials it holds, from a background thread, every third of
    the lease (a long compile or evaluation period does not make the trial look abandoned)."""

    def __init__(self, store, worker: str, lease_s: float):
        self.store, self.worker, self.every = store, worker, max(lease_s / 3, 0.05)
        self.ids: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._renew, daemon=True, name="jaxplay-lease")

    def hold(self, ids: list[int]) -> None:
        self.ids = list(ids)

    def _renew(self):
        while not self.stop.wait(self.every):
            try:
                self.store.heartbeat(self.worker, self.ids)
            except Exception:
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def _write_report(url: str, name: str, workdir: pathlib.Path, log: Callable[[str], None]) -> None:
    """Prints the playbook's findings and writes the HTML report; a plotting problem is reported,
    never allowed to fail a study whose trials are already safe in the store."""
    from jaxplay import analysis
    from jaxplay.analysis import html_report as report_lib

    try:
        data = analysis.load(store=url, study=name)
        findings = analysis.diagnose(data)
        log("\nplaybook diagnostics: " + ("no problems found" if not findings else ""))
        for f in findings:
            log(f"  [{f.severity}] {f.title}\n      -> {f.action}")
        log(f"report: {report_lib.write_report(data, workdir, findings=findings)}")
    except Exception as e:
        log(
            f"could not write the report ({type(e).__name__}: {e}); "
            f"retry with `python -m jaxplay.studies report --workdir {workdir}`"
        )


class _GracefulInterrupt:
    """First Ctrl-C or SIGTERM (a preempted TPU VM or cloud node, `kill`): finish the current
    evaluation period, checkpoint it, then stop. A second one: stop at once (the trial resumes
    from its last checkpoint)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, log):
        self.log, self.flag, self.previous = log, False, {}

    def requested(self) -> bool:
        return self.flag

    def _handle(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self.log(
            f"\n{name}: stopping after this evaluation period and saving a checkpoint "
            f"(press Ctrl-C again to stop now)"
        )

    def __enter__(self):
        # Signal handlers can only be set from the main thread (not, e.g., in a notebook worker).
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


class LeaseLost(Exception):
    """Another worker took over a trial of this one: this worker stopped renewing its lease (it
    stalled or lost the store for longer than the lease) and the trial was reclaimed."""


def _run_unit(
    store,
    study_id,
    worker: str,
    claimed: list,
    study_plan: Plan,
    workdir,
    progress: Progress,
    remaining: int,
    executor: str,
    should_stop: Callable[[], bool],
):
    """Trains claimed trials (one, or a batch sharing a program) and records their outcomes.
    Every write is fenced by `worker`'s lease: a trial taken over by another worker is left to it."""
    ids = [trial_id for trial_id, _, _ in claimed]
    indices = [index for _, index, _ in claimed]
    configs = [config_lib.apply(study_plan.config, params) for _, _, params in claimed]
    dirs = [trial_dir(workdir, study_plan.config.study.name, index) for index in indices]
    for trial_id, directory in zip(ids, dirs):
        store.set_checkpoint_dir(trial_id, str(directory / "checkpoints"))
    progress.start(indices, [params for _, _, params in claimed], remaining)
    steps = study_plan.config.train.steps

    def on_eval(j, step, metrics):
        if step == 0:  # a fresh start: forget what a run killed before its first checkpoint logged
            store.drop_metrics_after(ids[j], -1)
        # Renews the lease in the same transaction; stop (before checkpointing) if it was lost.
        if not store.log_metrics(ids[j], step, metrics, worker=worker):
            raise LeaseLost(f"trial {indices[j]} was taken over by another worker at step {step}")

    def on_resume(j, step):
        store.drop_metrics_after(ids[j], step)
        progress.resumed(indices[j], step)

    def on_period(step, reported):
        progress.period(step, steps, {indices[j]: m for j, m in reported.items()})

    try:
        if executor == "batched":
            results = batched.train_group(
                configs,
                dirs,
                searched=study_plan.searched,
                on_eval=on_eval,
                on_resume=on_resume,
                on_period=on_period,
                should_stop=should_stop,
            )
        else:

            def on_eval_one(step, metrics):
                on_eval(0, step, metrics)
                if step:
                    on_period(step, {0: metrics})

            results = [
                train.train_and_evaluate(
                    configs[0],
                    dirs[0],
                    searched=study_plan.searched,
                    on_eval=on_eval_one,
                    on_resume=lambda step: on_resume(0, step),
                    should_stop=should_stop,
                )
            ]
    except KeyboardInterrupt:
        # The trials keep their checkpoints; 'pending' makes the next run resume them.
        for trial_id in ids:
            store.release(trial_id, worker=worker)
        store.update_best(study_id)
        raise
    except LeaseLost as e:
        # Its new owner resumes it from its checkpoint; this worker writes nothing more to it, and
        # the other trials of its batch go back to pending.
        progress.log(f"{e}: this worker had stopped renewing its lease; leaving it to that worker")
        for trial_id in ids:
            store.release(trial_id, worker=worker)
        return
    except Exception as e:
        error = "".join(traceback.format_exception(e))
        for trial_id, index in zip(ids, indices):
            store.finish(trial_id, "failed", worker=worker, error=error)
            progress.done(index, "FAILED", f"{type(e).__name__}: {e}")
        store.update_best(study_id)
        return
    progress.finished_unit()
    for trial_id, index, result in zip(ids, indices, results):
        if (
            store.finish(
                trial_id,
                result.status,
                worker=worker,
                best_step=result.best_step,
                best_value=result.best_value,
                steps_run=result.steps_run,
                error=result.reason,
                final_metrics=result.final_metrics,
            )
            is False
        ):
            progress.log(
                f"trial {index}: another worker took it over before it finished here; its result is that worker's"
            )
            continue
        best = (
            "no finite value"
            if result.best_value is None
            else f"best {study_plan.config.study.objective} {result.best_value:.4f} at step {result.best_step}"
        )
        progress.done(index, result.status, best + (f" ({result.reason})" if result.reason else ""))
    store.update_best(study_id)


def _json_config(cfg) -> dict:
    import json

    return json.loads(config_lib.to_json(cfg))


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv=None) -> int:
    """Entry point of `python -m jaxplay.sweep`."""
    from absl import flags
    from absl import logging as absl_logging
    from ml_collections import config_flags

    argv = list(sys.argv if argv is None else argv)
    fl = flags.FlagValues()
    cli.define_study_flags(fl)
    flags.DEFINE_bool(
        "report",
        True,
        "At the end, print the playbook's diagnostics and write the HTML report.",
        flag_values=fl,
    )
    flags.DEFINE_integer(
        "max_trials",
        None,
        "Stop after this many trials in this run (rerun to continue).",
        flag_values=fl,
    )
    flags.DEFINE_enum(
        "executor",
        "auto",
        list(EXECUTORS),
        "sequential: one trial at a time; batched: trials that share a compiled program run "
        "stacked in one vmapped program; auto: batched on accelerators, sequential on CPU.",
        flag_values=fl,
    )
    flags.DEFINE_float(
        "lease_secs",
        60.0,
        "A running trial whose worker has not renewed its lease for this "
        "long is reclaimed by another worker and resumed from its checkpoint.",
        flag_values=fl,
    )
    flags.DEFINE_bool(
        "distributed",
        False,
        "Join the other hosts of this job (a TPU VM slice, a Slurm "
        "job): jax.distributed.initialize() finds them; all hosts train each trial together.",
        flag_values=fl,
    )
    flags.DEFINE_string(
        "coordinator",
        None,
        "Multi-host without a cluster manager: host:port of process 0 "
        "(with --num_processes and --process_id).",
        flag_values=fl,
    )
    flags.DEFINE_integer(
        "num_processes", None, "Number of processes of a multi-host job.", flag_values=fl
    )
    flags.DEFINE_integer(
        "process_id",
        None,
        "This process's index in a multi-host job (0 writes the store).",
        flag_values=fl,
    )
    flags.DEFINE_integer(
        "batch_trials",
        None,
        "At most this many trials in one batch (default: a whole "
        f"group on accelerators, up to {batched.CPU_BATCH_TRIALS} on a CPU).",
        flag_values=fl,
    )
    flags.DEFINE_string(
        "from_study",
        None,
        "Start this study from another one in the same store (its parent; see --lineage).",
        flag_values=fl,
    )
    flags.DEFINE_enum(
        "lineage",
        None,
        list(lineage.ACTIONS),
        "How the study derives from --from_study: refine (search space from the parent's "
        "diagnostics), exploit (Bayesian optimization seeded by the parent's trials), promote "
        "(round 2: top_k trials, train.steps x steps_factor), rerun (the best trial with --seeds "
        "seeds), reseed (the next search seed), warmup or clip (instability studies).",
        flag_values=fl,
    )
    flags.DEFINE_integer(
        "top_k",
        None,
        f"promote: how many of the parent's best trials (default {lineage.DEFAULTS['top_k']}).",
        flag_values=fl,
    )
    flags.DEFINE_float(
        "steps_factor",
        None,
        f"promote: train.steps multiplier (default {lineage.DEFAULTS['steps_factor']:g}).",
        flag_values=fl,
    )
    flags.DEFINE_integer(
        "seeds",
        None,
        f"promote, rerun: training seeds per trial (default "
        f"{lineage.DEFAULTS['seeds']}; rerun {lineage.RERUN_SEEDS}).",
        flag_values=fl,
    )
    flags.DEFINE_float(
        "lr_factor",
        None,
        f"warmup: the learning rate as a multiple of the smallest that "
        f"diverged in the parent (default {lineage.DEFAULTS['lr_factor']:g}).",
        flag_values=fl,
    )
    if not cli.parse(fl, argv):
        return 2
    if fl.config is None or fl.workdir is None:
        print(
            "usage: python -m jaxplay.sweep --config experiments/x.py[:arg] --workdir DIR "
            "[--config.a.b=value ...] [--store URL]",
            file=sys.stderr,
        )
        return 2
    try:
        _set_parent(fl.config, fl, argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    cli.enable_compilation_cache()
    command = cli.command_line("jaxplay.sweep", argv)
    try:
        distributed.initialize(
            auto=fl.distributed,
            coordinator=fl.coordinator,  # before any jax backend
            num_processes=fl.num_processes,
            process_id=fl.process_id,
        )
        record = run_study(
            fl.config,
            fl.workdir,
            store_url=cli.store_url(fl),
            command=command,
            config_path=str(
                pathlib.Path(config_flags.get_config_filename(fl["config"])).absolute()
            ),
            max_trials_this_run=fl.max_trials,
            executor=fl.executor,
            batch_trials=fl.batch_trials,
            report=fl.report,
            lease_s=fl.lease_secs,
        )
    except (ConfigError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return cli.interrupted()
    # Infeasible trials are results; failed ones are bugs (tracebacks are in the store).
    return 1 if record["status_counts"]["failed"] else 0


def _set_parent(config, fl, argv: list[str]) -> None:
    """--from_study and --lineage (with their options) become the study's `study.parent`. The
    derived study is named after its parent unless --config.study.name names it, and its notes say
    what it is (plus --config.study.notes when given)."""
    given = {
        k: fl[k].value
        for k in ("top_k", "steps_factor", "seeds", "lr_factor")
        if fl[k].value is not None
    }
    if fl.from_study is None:
        if fl.lineage or given:
            used = ", ".join(f"--{k}" for k in (["lineage"] if fl.lineage else []) + sorted(given))
            raise ConfigError(f"{used}: only with --from_study PARENT (the study to start from)")
        return
    if fl.lineage is None:
        raise ConfigError(
            f"--from_study {fl.from_study}: say how to derive the study with --lineage, one of "
            f"{', '.join(lineage.ACTIONS)}"
        )
    with config.unlocked():

        def given_on_command_line(path):
            return any(a.startswith(f"--config.{path}=") or a == f"--config.{path}" for a in argv)

        config.study.parent = ml_collections.ConfigDict(
            {
                "study": fl.from_study,
                "action": fl.lineage,
                **given,
                "name_from_parent": not given_on_command_line("study.name"),
                "notes_given": given_on_command_line("study.notes"),
            }
        )


if __name__ == "__main__":
    sys.exit(main())
