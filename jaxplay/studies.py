"""Read studies: `python -m jaxplay.studies COMMAND --workdir DIR` (or --store URL).

list      the studies of a store, one line each
show      the tracking fields and a table of trials, best first (--json: the whole record)
report    the self-contained HTML report: plots, diagnostics, trials; prints its path
          (--baseline B: B's best on each isolation plot, and whether both were tuned alike)
compare   two studies side by side (--study A --other B, or --other_workdir for another store),
          three or more by their best trials (--other B --other C), or A against the incumbent's
          study (no --other); each with a caution where they were not tuned with the same care
export    every trial as CSV or JSON (--format, --output), or one trial as a study file of its
          own, its values fixed (--format study), or its model as a jax.export file (--format
          model)
evaluate  the chosen trial (default: the best) scored once on the test set, from its best
          checkpoint, and recorded as the study's final evaluation
launch    the round's decision: launch the chosen trial (default: the best) as the store's
          incumbent, weighed against the current one's noise, or --reject it with --why
decisions the history of rounds: each launch decision, its goal, why, and the incumbent it
          replaced
serve     the live dashboard: a read-only web app over the store while sweeps write to it
scaling   steps to a target per batch size over a study and its --lineage batch_size children:
          the largest batch size that still reduces them, and the fastest in wall-clock time
"""

from __future__ import annotations

import errno
import json
import signal
import sys
import threading

from jaxplay import analysis, cli
from jaxplay import store as store_lib
from jaxplay.analysis import comparison
from jaxplay.analysis import record as record_lib
from jaxplay.errors import ConfigError

EXAMPLES = [
    "python -m jaxplay.studies list --workdir runs/mnist1d_mlp",
    "python -m jaxplay.studies show --workdir runs/mnist1d_mlp --json",
    "python -m jaxplay.studies compare --workdir runs/mlp --study mnist1d-mlp-width "
    "--other mnist1d-mlp-width-refine",
    "python -m jaxplay.studies compare --workdir runs/widths --study w128 --other w256 "
    "--other w512",
    "python -m jaxplay.studies report --workdir runs/mlp --study wd --baseline no-wd",
    "python -m jaxplay.studies decisions --workdir runs/mlp",
    "python -m jaxplay.studies evaluate --workdir runs/mnist1d_mlp",
    "python -m jaxplay.studies export --workdir runs/mnist1d_mlp --format study --output best.py",
    "python -m jaxplay.studies launch --workdir runs/mlp --study mnist1d-mlp-width-refine "
    '--goal "tune Adam at width 256"',
    "python -m jaxplay.studies serve --workdir runs/mnist1d_mlp",
]
_STUDY = "the study (needed when the store holds several)"
# Export formats that rebuild a trial from its checkpoint or config (jax imported for them only).
REBUILT = ("study", "model")
MODEL_USAGE = (
    "load it with jax alone:\n"
    "  exported = jax.export.deserialize(open('{path}', 'rb').read())\n"
    "  outputs = exported.call(inputs)   # any batch size, inputs shaped like the dataset's"
)


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
    c.add_argument("--baseline", metavar="NAME",
                   help="a study of the same store to compare against: its best drawn on each "
                   "isolation plot (in its trial-noise band when a rerun measured it), and a "
                   "caution where the two were not tuned with the same care")  # fmt: skip
    c = command(
        "compare",
        "studies side by side: two in full (e.g. round 1 against round 2), three or more by "
        "their best trials (one study per scientific value), or one against the incumbent's "
        "study (no --other); with a caution where they were not tuned with the same care",
        study_help=None,
    )
    c.add_argument("--study", action="append", metavar="NAME",
                   help="the first study (needed when the store holds several); repeat it to "
                   "name more studies of this store")  # fmt: skip
    c.add_argument("--other", action="append", metavar="NAME",
                   help="a study to compare with; repeat it for several (default: the study of "
                   "the store's incumbent, studies launch)")  # fmt: skip
    c.add_argument("--other_workdir", metavar="DIR",
                   help="the --other studies' workdir, if not the same store")  # fmt: skip
    c.add_argument("--other_store", metavar="URL",
                   help="the --other studies' store, if not the same store")  # fmt: skip
    c = command("export", "every trial as CSV or JSON, or one trial as a study file or a model")
    c.add_argument("--format", choices=("csv", "json", "study", "model"), default="csv",
                   help="study: the trial (--trial, default the best) as a study file of its own, "
                   "its values fixed, that python -m jaxplay.sweep runs as is; model: its best "
                   "checkpoint's forward pass as serialized jax.export bytes, which "
                   "jax.export.deserialize loads without jaxplay")  # fmt: skip
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
    c = command("decisions", "the history of rounds: each launch decision (time, goal, study, "
                "trial, launched or rejected, why, its value and the incumbent it replaced)",
                study_help=None)  # fmt: skip
    c.add_argument("--json", action="store_true", help="print the decisions as JSON, oldest first")
    c = command("scaling", "steps to a target per batch size over a study and its --lineage "
                "batch_size children: the largest batch size that still reduces them",
                "the study (or one of its batch_size children)")  # fmt: skip
    c.add_argument("--target", type=float, metavar="X",
                   help="the objective value to reach (default: the least good of the studies' "
                   "best values, which every study reaches)")  # fmt: skip
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
    if args.command == "evaluate" or (args.command == "export" and args.format in REBUILT):
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
    if args.command == "compare":
        return _compare(args, url)
    if args.command == "decisions":
        store = store_lib.Store(url, readonly=True)
        try:
            decisions = store.decisions()
        finally:
            store.close()
        print(
            json.dumps(decisions[::-1], indent=2, default=str)
            if args.json
            else comparison.format_decisions(decisions)
        )
        return 0
    if args.command == "scaling":
        from jaxplay.analysis import scaling

        print(scaling.text(analysis.load(store=url, study=args.study), args.target))
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
            if args.baseline:
                from jaxplay.analysis import html_report  # matplotlib, as analysis.report

                data = analysis.load(store=url, study=args.study)
                baseline = analysis.load(store=url, study=args.baseline)
                print(html_report.write_report(data, path, baseline=baseline))
            else:
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
    elif args.command == "export":
        text = analysis.export(study, args.format)
        if args.output:
            with open(args.output, "w", newline="") as f:
                f.write(text)
            print(args.output)
        else:
            sys.stdout.write(text)
    return 0


def _compare(args, url: str) -> int:
    """compare: two studies in full, three or more by their best trials, or one against the
    incumbent's study; then the cautions where they were not tuned with the same care."""
    if args.other_workdir or args.other_store:
        other_url = store_lib.url_for(args.other_workdir, args.other_store, must_exist=True)
    else:
        other_url = url
    names, others = args.study or [None], args.other or []
    studies = [analysis.load(store=url, study=name) for name in names]
    head = ""
    if len(names) == 1 and not others:
        store = store_lib.Store(other_url, readonly=True)
        try:
            incumbent = store.incumbent()
            gone = incumbent is not None and not store.has_study(incumbent["study"])
        finally:
            store.close()
        if incumbent is None:
            raise ConfigError(
                "--other: the store holds no incumbent yet to compare with (studies launch "
                "records one); name the study to compare with: --other NAME"
            )
        if gone or (other_url == url and incumbent["study"] == studies[0].name):
            why = "is no longer in the store" if gone else "is this study itself"
            raise ConfigError(
                f"--other: the incumbent's study {incumbent['study']!r} {why}; name the study "
                "to compare with: --other NAME"
            )
        others, head = [incumbent["study"]], comparison.incumbent_line(incumbent) + "\n"
    studies += [analysis.load(store=other_url, study=name) for name in others]
    seen = set()
    for where, s in zip([url] * len(names) + [other_url] * len(others), studies):
        if (where, s.name) in seen:
            raise ConfigError(f"--study/--other {s.name}: named twice; name each study once")
        seen.add((where, s.name))
    if len(studies) > 2:
        print(head + comparison.group(studies))
        return 0
    parity = comparison.parity_text(*studies)
    print(head + analysis.compare(*studies) + (f"\n\n{parity}" if parity else ""))
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
        example = "best.jaxexport" if args.format == "model" else "best.py"
        raise ConfigError(
            f"--output: name the {args.format} file to write, e.g. --output {example}"
        )
    if args.format == "model":
        out = final.export_model(url, args.output, args.study, args.trial, config=args.config)
        print(f"{out}\n{MODEL_USAGE.format(path=out)}")
        return 0
    print(final.export_study_file(url, args.output, args.study, args.trial, config=args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
