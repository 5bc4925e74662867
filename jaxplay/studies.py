"""Read studies: `python -m jaxplay.studies list|show|report|compare|export --workdir DIR`.

list     the studies of a store, one line each
show     the tracking fields and a table of trials, best first (--json: the whole record)
report   the self-contained HTML report: plots, diagnostics, trials; prints its path
compare  two studies side by side (--study A --other B, or --other_workdir for another store)
export   every trial as CSV or JSON (--format, --output)
"""

from __future__ import annotations

import json
import sys

from jaxplay import analysis, cli
from jaxplay import store as store_lib
from jaxplay.analysis import record as record_lib

EXAMPLES = [
    "python -m jaxplay.studies list --workdir runs/mnist1d_mlp",
    "python -m jaxplay.studies show --workdir runs/mnist1d_mlp --json",
    "python -m jaxplay.studies compare --workdir runs/mlp --study mnist1d-mlp-width "
    "--other mnist1d-mlp-width-refine",
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
    c = command("export", "every trial as CSV or JSON")
    c.add_argument("--format", choices=("csv", "json"), default="csv")
    c.add_argument("--output", metavar="FILE", help="write there instead of standard output")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m jaxplay.studies`; argv without the program name."""
    return cli.run(_main, argv, resumable=False)


def _main(argv: list[str]) -> int:
    args = cli.parse(_parser(), argv)
    url = cli.store_url(args, must_exist=True)
    if args.command == "list":
        store = store_lib.Store(url, readonly=True)
        try:
            for name in store.study_names():
                r = store.record(store.study_id(name))
                best = record_lib.format_value(r["best_value"])
                print(
                    f"{name}  {r['num_trials']} trials  best {r['objective']} {best}  {r['notes']}"
                )
        finally:
            store.close()
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


if __name__ == "__main__":
    sys.exit(main())
