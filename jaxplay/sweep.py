"""The study driver: `python -m jaxplay.sweep --config experiments/x.py --workdir DIR`.

Validates the study file, records the study in the store, asks the designer for the trials,
then claims and trains them one at a time. Re-running the same command on the same workdir
continues the study: finished trials are kept, an interrupted one resumes from its checkpoint.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import pathlib
import platform
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Callable

from jaxplay import config as config_lib
from jaxplay import designers, store as store_lib, train
from jaxplay.spaces import ConfigError

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections", "numpy",
            "scipy", "sqlalchemy", "jaxplay")


@dataclasses.dataclass(frozen=True)
class Plan:
    """A validated study: its config, search space and every trial's hyperparameters."""

    config: object
    space: object
    params: list[dict]

    @property
    def searched(self) -> frozenset:
        """Dotted paths of the searched hyperparameters."""
        return frozenset(self.space.paths)


def plan(config) -> Plan:
    """Validates the study and every trial's config before anything trains."""
    space = config_lib.validate(config)
    train.check(config)
    study = config.study
    designer = designers.make(study.algorithm, space, study.seed)
    num_trials = study.num_trials if study.num_trials is not None else designer.max_trials
    params = designer.suggest(0, num_trials)
    for i, p in enumerate(params):
        try:
            train.check(config_lib.apply(config, p))
        except ConfigError as e:
            raise ConfigError(f"trial {i} ({p}): {e}") from None
    return Plan(config, space, params)


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
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
        if commit:
            status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout
            dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass  # not a git checkout (an installed wheel): the versions above identify the code
    return {"versions": versions, "git_commit": commit, "git_dirty": dirty,
            "device_kind": f"{jax.default_backend()}: {devices[0].device_kind} x{len(devices)}"}


def trial_dir(workdir, study_name: str, index: int) -> pathlib.Path:
    """Where a trial's checkpoints live."""
    return pathlib.Path(workdir).absolute() / study_name / f"trial_{index:04d}"


class Progress:
    """Prints one line per evaluation with the step, loss, objective and ETAs."""

    def __init__(self, num_trials: int, objective: str, log: Callable[[str], None]):
        self.num_trials, self.objective, self.log = num_trials, objective, log
        self.trial_times: list[float] = []

    def start(self, index: int, params: dict, remaining: int):
        self.index, self.remaining, self.t0 = index, remaining, time.perf_counter()
        self.mark = None  # (step, time) of the trial's first evaluation after training began
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        self.log(f"trial {index} ({remaining} left in this run) {shown}")

    def eval(self, step: int, steps: int, first_step: int, metrics: dict):
        if step == 0:
            return
        now = time.perf_counter()
        elapsed = now - self.t0
        if self.mark is None:
            # The first period includes compiling the program: say so rather than report a
            # misleadingly low speed; later lines measure from here.
            self.mark = (step, now)
            rate, note = (step - first_step) / max(elapsed, 1e-9), " (incl. compile)"
        else:
            rate, note = (step - self.mark[0]) / max(now - self.mark[1], 1e-9), ""
        eta_trial = (steps - step) / max(rate, 1e-9)
        per_trial = sum(self.trial_times) / len(self.trial_times) if self.trial_times else elapsed + eta_trial
        eta_study = eta_trial + per_trial * (self.remaining - 1)
        self.log(f"  step {step:>{len(str(steps))}}/{steps}  loss {metrics.get('train/batch_loss', float('nan')):.4f}"
                 f"  {self.objective} {metrics.get(self.objective, float('nan')):.4f}  {rate:,.0f} steps/s{note}"
                 f"  ETA {_duration(eta_trial)} (study {_duration(eta_study)})")

    def done(self, index: int, status: str, result_text: str):
        self.trial_times.append(time.perf_counter() - self.t0)
        self.log(f"trial {index} {status}: {result_text} in {_duration(self.trial_times[-1])}")


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def run_study(config, workdir, *, store_url: str | None = None, config_path: str = "",
              command: str = "", worker: str | None = None, log: Callable[[str], None] = print,
              max_trials_this_run: int | None = None) -> dict:
    """Runs (or continues) the study that `config` declares; returns the study record.

    `max_trials_this_run` stops after that many trials (the rest stay pending for a later run).
    """
    study_plan = plan(config)
    cfg, study = study_plan.config, study_plan.config.study
    workdir = pathlib.Path(workdir).absolute()
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir: {workdir} is a file; pass a directory (it is created if missing)")
    workdir.mkdir(parents=True, exist_ok=True)
    store = store_lib.Store(store_url or store_lib.default_url(workdir))
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    try:
        study_id = store.open_study(
            study.name, config_lib.config_hash(cfg), config_path=config_path,
            config=_json_config(cfg), notes=study.get("notes", ""), objective=study.objective,
            mode=study.mode, algorithm=study.algorithm, seed=study.seed,
            num_trials=len(study_plan.params), command=command, executor="sequential", **provenance())
        store.add_trials(study_id, study_plan.params)
        # One worker per study for now: a trial left 'running' was interrupted by a crash.
        stale = store.reset_running(study_id)
        if stale:
            log(f"resuming interrupted trial(s) {stale} from their latest checkpoints")
        record = store.record(study_id)
        todo = [t for t in record["trials"] if t["status"] == "pending" and t["index"] < len(study_plan.params)]
        done = len(study_plan.params) - len(todo)
        log(f"study {study.name!r}: {len(study_plan.params)} trials ({done} already finished), "
            f"objective {study.objective} ({study.mode}), store {store.url}")
        progress = Progress(len(study_plan.params), study.objective, log)
        ran = 0
        with _GracefulInterrupt(log) as interrupt:
            while max_trials_this_run is None or ran < max_trials_this_run:
                if interrupt.requested():
                    raise KeyboardInterrupt
                claimed = store.claim(study_id, worker, max_index=len(study_plan.params))
                if claimed is None:
                    break
                _run_trial(store, study_id, claimed, study_plan, workdir, progress, len(todo) - ran,
                           interrupt.requested)
                ran += 1
        store.update_best(study_id)
        record = store.record(study_id)
    finally:
        store.close()
    from jaxplay import studies  # the summary table is the `studies show` view

    log(studies.format_record(record))
    return record


class _GracefulInterrupt:
    """First Ctrl-C: finish the current evaluation period, checkpoint it, then stop.
    Second Ctrl-C: stop at once (the trial resumes from its last checkpoint)."""

    def __init__(self, log):
        self.log, self.flag, self.previous = log, False, None

    def requested(self) -> bool:
        return self.flag

    def _handle(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True
        self.log("\nCtrl-C: stopping after this evaluation period and saving a checkpoint "
                 "(press Ctrl-C again to stop now)")

    def __enter__(self):
        # Signal handlers can only be set from the main thread (not, e.g., in a notebook worker).
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _run_trial(store, study_id, claimed, study_plan: Plan, workdir, progress: Progress, remaining: int,
               should_stop: Callable[[], bool]):
    trial_id, index, params = claimed
    cfg = config_lib.apply(study_plan.config, params)
    directory = trial_dir(workdir, cfg.study.name, index)
    store.set_checkpoint_dir(trial_id, str(directory / "checkpoints"))
    progress.start(index, params, remaining)
    first = {"step": 0}

    def on_eval(step, metrics):
        store.log_metrics(trial_id, step, metrics)
        progress.eval(step, cfg.train.steps, first["step"], metrics)

    def on_resume(step):
        first["step"] = step
        store.drop_metrics_after(trial_id, step)
        progress.log(f"  resuming from step {step}")

    try:
        result = train.train_and_evaluate(cfg, directory, searched=study_plan.searched,
                                          on_eval=on_eval, on_resume=on_resume, should_stop=should_stop)
    except KeyboardInterrupt:
        # The trial keeps its checkpoints; 'pending' makes the next run resume it.
        store.release(trial_id)
        store.update_best(study_id)
        raise
    except Exception as e:  # noqa: BLE001 — one broken trial must not end the study
        store.finish(trial_id, "failed", error="".join(traceback.format_exception(e)))
        store.update_best(study_id)
        progress.done(index, "FAILED", f"{type(e).__name__}: {e}")
        return
    store.finish(trial_id, result.status, best_step=result.best_step, best_value=result.best_value,
                 steps_run=result.steps_run, error=result.reason, final_metrics=result.final_metrics)
    store.update_best(study_id)
    best = "no finite value" if result.best_value is None else \
        f"best {cfg.study.objective} {result.best_value:.4f} at step {result.best_step}"
    progress.done(index, result.status, best + (f" ({result.reason})" if result.reason else ""))


def _json_config(cfg) -> dict:
    import json

    return json.loads(config_lib.to_json(cfg))


# ---------------------------------------------------------------------------------------------
# CLI

def main(argv=None) -> int:
    """Entry point of `python -m jaxplay.sweep`."""
    from absl import flags, logging as absl_logging
    from ml_collections import config_flags

    argv = list(sys.argv if argv is None else argv)
    fl = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "Study file: path/to/study.py[:arg].", flag_values=fl,
                                    lock_config=False)
    flags.DEFINE_string("workdir", None, "Directory for the study's database and checkpoints.", flag_values=fl)
    flags.DEFINE_string("store", None, "SQLAlchemy URL of the study store (default: SQLite file in --workdir).",
                        flag_values=fl)
    flags.DEFINE_integer("max_trials", None, "Stop after this many trials in this run (rerun to continue).",
                         flag_values=fl)
    try:
        fl(argv)
        if fl.config is not None:
            fl.config.get("study")  # config_flags defers a load failure to the first access
    except (flags.Error, ConfigError, OSError, AttributeError, TypeError, ValueError) as e:
        # config_flags wraps a missing file or a get_config error; its message names both.
        print(f"error: {e}", file=sys.stderr)
        return 2
    if fl.config is None or fl.workdir is None:
        print("usage: python -m jaxplay.sweep --config experiments/x.py[:arg] --workdir DIR "
              "[--config.a.b=value ...] [--store URL]", file=sys.stderr)
        return 2
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    _enable_compilation_cache()
    command = f"cd {shlex.quote(os.getcwd())} && python -m jaxplay.sweep {shlex.join(argv[1:])}"
    try:
        record = run_study(fl.config, fl.workdir, store_url=fl.store, command=command,
                  config_path=str(pathlib.Path(config_flags.get_config_filename(fl["config"])).absolute()),
                  max_trials_this_run=fl.max_trials)
    except (ConfigError, store_lib.StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are saved; run the same command again to continue.",
              file=sys.stderr)
        return 130
    # Infeasible trials are results; failed ones are bugs (tracebacks are in the store).
    return 1 if record["status_counts"]["failed"] else 0


def _enable_compilation_cache():
    # Repeated CLI runs of a study reuse compiled programs from disk instead of recompiling.
    import jax

    cache = os.environ.get("JAXPLAY_COMPILATION_CACHE",
                           os.path.join(os.path.expanduser("~"), ".cache", "jaxplay", "xla"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


if __name__ == "__main__":
    sys.exit(main())
