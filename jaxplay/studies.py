"""Read studies: `python -m jaxplay.studies COMMAND --workdir DIR` (or --store URL).

list      the studies of a store, one line each
show      the tracking fields and a table of trials, best first (--json: the whole record)
report    the self-contained HTML report: plots, diagnostics, trials; prints its path
compare   two studies side by side (--study A --other B, or --other_workdir for another store)
export    every trial as CSV or JSON (--format, --output), or one trial as a study file of its
          own, its values fixed (--format study)
evaluate  the chosen trial (default: the best) scored once on the test set, from its best
          checkpoint, and recorded as the study's final evaluation
launch    the round's decision: launch the chosen trial (default: the best) as the store's
          incumbent, weighed against the current one's noise, or --reject it with --why
serve     the live dashboard: a read-only web app over the store while sweeps write to it
"""

from __future__ import annotations

import errno
import json
import signal
import sys
import threading

from jaxplay import analysis, cli
from jaxplay import store as store_lib
from jaxplay.analysis import record as record_lib
from jaxplay.errors import ConfigError

EXAMPLES = [
    "python -m jaxplay.studies list --workdir runs/mnist1d_mlp",
    "python -m jaxplay.studies show --workdir runs/mnist1d_mlp --json",
    "python -m jaxplay.studies compare --workdir runs/mlp --study mnist1d-mlp-width "
    "--other mnist1d-mlp-width-refine",
    "python -m jaxplay.studies evaluate --workdir runs/mnist1d_mlp",
    "python -m jaxplay.studies export --workdir runs/mnist1d_mlp --format study --output best.py",
    "python -m jaxplay.studies launch --workdir runs/mlp --study mnist1d-mlp-width-refine "
    '--goal "tune Adam at width 256"',
    "python -m jaxplay.studies serve --workdir runs/mnist1d_mlp",
]
_STUDY = "the study (needed when the store holds several)"


def _parser():
    p = cli.parser("jaxplay.studies", __doc__.split("\n\n")[0], EXAMPLES)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, study_help: str | None = _STUDY):
        c = sub.add_parser(name, help=help_text, description=help_text)
        cli.add_store(c, workdir_required=False, workdir_help="the sweep's --workdir (its store)")
        if study_help:
            cli.add_study(c, study_help)
        return c

    command("list", "the studies of a store, one line each", study_help=None)
    c = command("show", "one study and its trials, best first")
    c.add_argument("--json", action="store_true", help="print the whole record as JSON")
    c = command("report", "write the study's HTML report (plots, diagnostics) and print its path")
    c.add_argument("--output", metavar="PATH", help="file or folder (default: the workdir)")
    c = command("compare", "two studies side by side, e.g. round 1 against round 2",
                "the first study (needed when the store holds several)")  # fmt: skip
    c.add_argument("--other", required=True, metavar="NAME", help="the second study")
    c.add_argument("--other_workdir", metavar="DIR", help="its workdir, if not the same store")
    c.add_argument("--other_store", metavar="URL", help="its store, if not the same store")
    c = command("export", "every trial as CSV or JSON, or one trial as a study file")
    c.add_argument("--format", choices=("csv", "json", "study"), default="csv",
                   help="study: the trial (--trial, default the best) as a study file of its own, "
                   "its values fixed, that python -m jaxplay.sweep runs as is")  # fmt: skip
    c.add_argument("--output", metavar="FILE", help="write there instead of standard output")
    _trial_flags(c)
    c = command("evaluate", "score the chosen trial's best checkpoint on the test set, once")
    c.add_argument("--split", default="test", help="the split to score (default test)")
    c.add_argument(
        "--again",
        action="store_true",
        help="score the test set again (refused otherwise: the playbook scores it once)",
    )
    _trial_flags(c)
    c = command("launch", "record the round's decision: launch its best as the incumbent, or not")
    c.add_argument("--trial", type=int, metavar="N", help="the trial (default: the study's best)")
    c.add_argument("--goal", required=True, metavar="TEXT",
                   help="the round's one narrow goal, e.g. \"tune Adam's b1\"")  # fmt: skip
    c.add_argument("--reject", action="store_true",
                   help="record that the round's best is not launched (needs --why)")  # fmt: skip
    c.add_argument("--why", default="", metavar="TEXT", help="the reason (needed with --reject)")
    c.add_argument("--force", action="store_true",
                   help="launch even without strong evidence over the incumbent (worse, "
                   "within the noise, no trial variance measured); recorded as forced")  # fmt: skip
    c = command("serve", "the live dashboard: every study of the store, followed as it runs",
                study_help=None)  # fmt: skip
    c.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 "
                   "lets other machines in, with no password)")  # fmt: skip
    c.add_argument(
        "--port",
        type=int,
        default=6007,
        help="port (default 6007, beside TensorBoard's 6006; 0: any free port)",
    )
    return p


def _trial_flags(c) -> None:
    c.add_argument("--trial", type=int, metavar="N", help="the trial (default: the study's best)")
    c.add_argument("--config", metavar="FILE[:ARG]",
                   help="the study file, for a study that ran its own workload (its code is "
                   "taken from there, never from the store)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m jaxplay.studies`; argv without the program name."""
    return cli.run(_main, argv, resumable=False)


def _main(argv: list[str]) -> int:
    args = cli.parse(_parser(), argv)
    url = cli.store_url(args, must_exist=True)
    if args.command == "evaluate" or (args.command == "export" and args.format == "study"):
        return _final(args, url, argv)
    if args.command == "serve":
        return _serve(args, url)
    if args.command == "list":
        store = store_lib.Store(url, readonly=True)
        try:
            records = [store.record(store.study_id(name)) for name in store.study_names()]
            incumbent = store.incumbent()
        finally:
            store.close()
        print(record_lib.format_list(records, incumbent))
        return 0
    if args.command == "launch":
        from jaxplay.tuning import rounds

        decision = rounds.decide(
            url, args.study, args.goal, trial=args.trial, reject=args.reject, why=args.why,
            force=args.force, command=cli.command_line("jaxplay.studies", argv),
        )  # fmt: skip
        print(decision.describe())
        return 0
    if args.command == "report":
        path = args.output or args.workdir
        try:
            print(analysis.report(store=url, study=args.study, path=path))
        except OSError as e:
            raise OSError(
                e.errno, f"{e.strerror}: cannot write the report there; pass --output FILE", path
            ) from e
        return 0
    study = analysis.load(store=url, study=args.study)
    if args.command == "show":
        record = study.record
        print(
            json.dumps(record, indent=2, default=str)
            if args.json
            else record_lib.format_record(record)
        )
    elif args.command == "compare":
        if args.other_workdir or args.other_store:
            other_url = store_lib.url_for(args.other_workdir, args.other_store, must_exist=True)
        else:
            other_url = url
        print(analysis.compare(study, analysis.load(store=other_url, study=args.other)))
    elif args.command == "export":
        text = analysis.export(study, args.format)
        if args.output:
            with open(args.output, "w", newline="") as f:
                f.write(text)
            print(args.output)
        else:
            sys.stdout.write(text)
    return 0


def _serve(args, url: str) -> int:
    """Serves the dashboard until Ctrl-C, which is how it is meant to stop (exit 0)."""
    from jaxplay.dashboard import Dashboard

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port: {args.port} is not a port; use 1-65535, or 0 for any free one")
    try:
        server = Dashboard(url, args.host, args.port)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"--port {args.port}: already in use (another dashboard or TensorBoard?); pass "
                "--port N, or --port 0 for any free one"
            ) from e
        raise ConfigError(
            f"--host {args.host}: cannot listen there ({e.strerror or e}); use an address of this "
            "machine: 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
        ) from e
    print(
        f"jaxplay dashboard on {server.url} (store {server.store_text}, read-only); "
        "Ctrl-C stops it",
        flush=True,
    )
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C stops it even in a process started with SIGINT ignored (a shell's background
        # job, a supervisor): Python then installs no handler of its own.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _final(args, url: str, argv: list[str]) -> int:
    """evaluate, and export --format study: the commands that rebuild a trial. jax and the trainer
    are imported here only, so that list, show and the other exports answer at once."""
    from jaxplay.tuning import final

    if args.command == "evaluate":
        result = final.evaluate(
            url, args.study, args.trial, args.split, again=args.again, config=args.config,
            command=cli.command_line("jaxplay.studies", argv),
        )  # fmt: skip
        print(record_lib.format_final(result))
        return 0
    if not args.output:
        raise ConfigError("--output: name the study file to write, e.g. --output best.py")
    print(final.export_study_file(url, args.output, args.study, args.trial, config=args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
