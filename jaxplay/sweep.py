"""Run a study: `python -m jaxplay.sweep --config experiments/x.py --workdir DIR`.

Checks the study file, records the study in the store, asks the designer for the trials, then
claims and trains them. Rerunning the same command continues the study: finished trials are kept,
an interrupted one resumes from its checkpoint. With `--from_study PARENT --lineage ACTION` the
study derives from another one in the same store (jaxplay.tuning.lineage). `--dry_run` trains
nothing and writes nothing: it says what the study would cost on this device. From Python:

    from jaxplay import config, sweep
    record = sweep.run_study(config.load('experiments/mnist1d_mlp.py'), 'runs/mnist1d_mlp')
    forecast = sweep.forecast_study(config.load('experiments/mnist1d_mlp.py'), 'runs/mnist1d_mlp')
"""

from __future__ import annotations

import argparse
import sys

import jax

from jaxplay import cli, devices, distributed, driver, spec, values
from jaxplay import store as store_lib
from jaxplay.errors import ConfigError
from jaxplay.tuning import lineage

EXAMPLES = [
    "python -m jaxplay.sweep --config experiments/mnist1d_mlp.py --workdir runs/mnist1d_mlp",
    "python -m jaxplay.sweep --config experiments/mnist1d_mlp.py:smoke --workdir /tmp/smoke "
    "--config.study.num_trials=4",
    "python -m jaxplay.sweep --config experiments/mnist1d_mlp.py --workdir runs/mnist1d_mlp "
    "--from_study mnist1d-mlp-width --lineage promote --top_k 3 --steps_factor 4",
    "python -m jaxplay.sweep --config experiments/mnist1d_cnn.py --workdir runs/cnn --dry_run "
    "--executor batched --device_memory 16GB",
]


# run_study's and forecast_study's keywords that say how the study derives from a parent.
DERIVATION = ("from_study", "lineage_action", "lineage_options", "name", "notes")


def run_study(config, workdir, *, store_url: str | None = None, **kwargs) -> dict:
    """Runs (or continues) the study a study file's config declares; returns its record.

    With `from_study` the study derives from that study of the same store by `lineage_action`
    (with its `lineage_options`), named `name` (else '<parent>-<action>') and described by `notes`
    besides what it is; a config whose study.parent names a parent derives the same way. Every
    other keyword is jaxplay.driver.run's (executor, batch_trials, max_trials_this_run, log, ...).
    """
    derivation = {k: kwargs.pop(k) for k in DERIVATION if k in kwargs}
    study = resolve_study(config, workdir, store_url=store_url, **derivation)
    return driver.run(study, workdir, store_url=store_url, **kwargs)


def forecast_study(config, workdir=None, *, store_url: str | None = None, **kwargs):
    """The dry run of the study run_study would run (a jaxplay.driver.Forecast): its program
    groups, stack sizes, predicted memory, FLOPs and estimated time on this device. Nothing is
    trained or written. Keywords: run_study's derivation ones, and jaxplay.driver.forecast's."""
    derivation = {k: kwargs.pop(k) for k in DERIVATION if k in kwargs}
    study = resolve_study(config, workdir, store_url=store_url, **derivation)
    return driver.forecast(study, workdir, store_url=store_url, **kwargs)


def resolve_study(
    config,
    workdir,
    *,
    store_url: str | None = None,
    from_study: str | None = None,
    lineage_action: str | None = None,
    lineage_options: dict | None = None,
    name: str | None = None,
    notes: str | None = None,
):
    """The resolved study (jaxplay.spec.StudySpec) of a study file's config, derived from its
    parent in the store when `from_study` or its study.parent names one."""
    if from_study is not None or config.study.get("parent"):
        if from_study is not None:
            options = lineage_options or {}
            lineage.check(lineage_action, options)  # before reading the store

            def derive():
                url = store_lib.url_for(workdir, store_url, must_exist=True)
                return lineage.from_parent(
                    config, url, from_study, lineage_action, options, name=name, notes=notes
                )
        else:

            def derive():
                return lineage.declared_parent(
                    config, store_lib.url_for(workdir, store_url, must_exist=True)
                )

        # One process reads the parent for a multi-host job; every process gets the child.
        config = distributed.on_primary(derive)
    return spec.resolve(config)


def _parser():
    p = cli.parser("jaxplay.sweep", __doc__.split("\n\n")[0], EXAMPLES)
    cli.add_study_file(p)
    cli.add_store(
        p, workdir_required=True, workdir_help="folder for the trials' checkpoints, the report "
        "and (without --store) the study store jaxplay.db; created if missing",
    )  # fmt: skip
    p.add_argument("--executor", choices=driver.EXECUTORS, default="auto",
                   help="sequential: one trial at a time; batched: trials that share a compiled "
                   "program run stacked in one vmapped program; auto (default): batched on "
                   "accelerators, sequential on CPU")  # fmt: skip
    p.add_argument("--batch_trials", type=int, metavar="K",
                   help="at most K trials per batch (default: as many of a group as fit the "
                   f"device's memory on accelerators, up to {driver.CPU_BATCH_TRIALS} on a "
                   "CPU)")  # fmt: skip
    p.add_argument("--device_memory", type=_size, metavar="BYTES",
                   help="the device memory that stacks of trials are sized against, e.g. 16GB or "
                   "80GiB (default: what the GPU or TPU reports; a CPU reports none, so its "
                   "stacks are not sized by memory)")  # fmt: skip
    p.add_argument("--device", type=int, metavar="N",
                   help="train on GPU N only (an index among the GPUs this process sees, "
                   "through CUDA_VISIBLE_DEVICES): one worker per GPU")  # fmt: skip
    cli.add_bool(p, "dry_run", False, "train nothing and write nothing: print each program group, "
                 "the stack size it would take, predicted memory, FLOPs per step, the "
                 "estimated time and device-hours of the study on this device, and its budget "
                 "plan (scientific settings x trials each, trials per setting per nuisance "
                 "hyperparameter)")  # fmt: skip
    p.add_argument("--max_trials", type=int, metavar="N",
                   help="stop after N trials in this run (rerun to continue)")  # fmt: skip
    cli.add_bool(p, "report", True, "print the playbook's diagnostics and write the HTML report")
    cli.add_bool(p, "tensorboard", True, "write TensorBoard event files (each trial's curves "
                 "in its folder, the study's HParams table): tensorboard --logdir "
                 "WORKDIR")  # fmt: skip
    cli.add_bool(p, "retry_failed", False, "put the study's failed trials back in the queue "
                 "first; each resumes from its latest checkpoint")  # fmt: skip
    p.add_argument("--profile", metavar="DIR",
                   help="record a jax.profiler trace of a few evaluation periods of the first "
                   "trials (after the first period, which compiles) into DIR, then train on "
                   "untraced: open DIR's perfetto_trace.json.gz in ui.perfetto.dev, or run "
                   "tensorboard --logdir DIR (Profile tab); it changes no result")  # fmt: skip
    p.add_argument("--lease_secs", type=float, default=60.0, metavar="S",
                   help="a running trial whose worker has not renewed its lease for S seconds is "
                   "reclaimed by another worker and resumed from its checkpoint "
                   "(default 60)")  # fmt: skip
    group = p.add_argument_group(
        "lineage", "Derive the study from another one in the same store (the playbook's rounds)."
    )
    group.add_argument("--from_study", metavar="PARENT", help="the study to derive from")
    group.add_argument("--lineage", choices=list(lineage.ACTIONS), metavar="ACTION",
                       help="how: " + "; ".join(f"{d.name}: {d.changes}"
                                                for d in lineage.ACTIONS.values()))  # fmt: skip
    for option in _lineage_options():
        # Each action that takes the option, with its own default (seeds: promote 1, rerun 5).
        takes = {d.name: o.default for d in lineage.ACTIONS.values() for o in d.options
                 if o.name == option.name}  # fmt: skip
        defaults = ", ".join(f"{d} {v}" for d, v in takes.items() if v is not None)
        group.add_argument(f"--{option.name}", type=option.kind, metavar=option.name.upper(),
                           help=f"{', '.join(takes)}: {option.help}"
                           + (f" (default {defaults})" if defaults else ""))  # fmt: skip
    group = p.add_argument_group(
        "multi-host", "Several hosts training each trial together (a TPU VM slice, GPU nodes)."
    )
    group.add_argument("--distributed", action="store_true",
                       help="join the job's other hosts: jax.distributed.initialize() finds them "
                       "(a TPU VM slice, a Slurm job)")  # fmt: skip
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help="without a cluster manager: process 0's address (with "
                       "--num_processes and --process_id)")  # fmt: skip
    group.add_argument("--num_processes", type=int, help="number of processes of the job")
    group.add_argument("--process_id", type=int, help="this process's index (0 writes the store)")
    return p


def _size(text: str) -> int:
    """--device_memory's value in bytes."""
    try:
        return values.parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _lineage_options() -> list:
    """Every option of the lineage actions, once (seeds serves promote and rerun)."""
    seen = {}
    for derivation in lineage.ACTIONS.values():
        for option in derivation.options:
            seen.setdefault(option.name, option)
    return list(seen.values())


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m jaxplay.sweep`; argv without the program name."""
    return cli.run(_main, argv, resumable=True)


def _main(argv: list[str]) -> int:
    args = cli.parse(_parser(), argv)
    given = {o.name: getattr(args, o.name) for o in _lineage_options()}
    given = {k: v for k, v in given.items() if v is not None}
    if args.from_study is None and (args.lineage or given):
        used = ", ".join(f"--{k}" for k in (["lineage"] if args.lineage else []) + sorted(given))
        raise ConfigError(f"{used}: only with --from_study PARENT (the study to start from)")
    if args.batch_trials is not None and args.executor == "sequential":
        raise ConfigError(
            "--batch_trials: sizes the stacks of --executor batched (or auto on an accelerator); "
            "--executor sequential trains one trial at a time"
        )
    if args.profile is not None and args.dry_run:
        raise ConfigError("--profile: traces training, and --dry_run trains nothing; drop one")
    if args.from_study is not None and args.lineage is None:
        raise ConfigError(
            f"--from_study {args.from_study}: say how to derive the study with --lineage, one "
            f"of {', '.join(lineage.ACTIONS)}"
        )
    overrides = dict(args.overrides)
    cli.quiet_libraries()
    cli.enable_compilation_cache()
    # Before anything starts a jax backend: it reads the GPU selection and the memory policy once.
    devices.select(args.device)
    with devices.register() as registration:
        devices.prepare_memory(sharing=bool(registration.sharers()))
        distributed.initialize(
            auto=args.distributed, coordinator=args.coordinator,
            num_processes=args.num_processes, process_id=args.process_id,
        )  # fmt: skip
        # Asked once the backend is up: a worker may have joined meanwhile.
        sharers = registration.sharers()
        warning = devices.sharing_warning(sharers, jax.default_backend(), registration.selection)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        study = dict(
            store_url=cli.store_flag(args),
            from_study=args.from_study,
            lineage_action=args.lineage,
            lineage_options=given,
            # On the command line the study file's name and notes are round 1's: a derived study
            # is named after its parent unless --config.study.name names it.
            name=args.config.study.name if "study.name" in overrides else None,
            notes=args.config.study.get("notes") if "study.notes" in overrides else None,
            executor=args.executor,
            batch_trials=args.batch_trials,
            device_memory=args.device_memory,
            memory_share=devices.memory_share(sharers),
        )
        if args.dry_run:
            forecast = forecast_study(args.config, args.workdir, log=print, **study)
            print("\n".join(forecast.lines()))
            return 0
        record = run_study(
            args.config,
            args.workdir,
            command=cli.command_line("jaxplay.sweep", argv),
            config_path=cli.study_file_path(args),
            max_trials_this_run=args.max_trials,
            report=args.report,
            tensorboard=args.tensorboard,
            lease_s=args.lease_secs,
            retry_failed=args.retry_failed,
            profile=args.profile,
            **study,
        )
    # Infeasible trials are results; failed ones are bugs (their tracebacks are in the store).
    return 1 if record["status_counts"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
