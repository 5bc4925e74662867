"""Read studies: `python -m jaxplay.studies list|show|report|compare|export --workdir DIR`.

show     the tracking fields and a table of trials, best first (`--json`: the whole record)
report   the self-contained HTML report: plots, diagnostics, trials; prints its path
compare  two studies side by side (`--study A --other B`, or `--other_workdir` for another store)
export   every trial as CSV or JSON (`--format`, `--output`)
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from jaxplay import store as store_lib
from jaxplay.errors import StoreError


def _value(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _param(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def sorted_trials(record: dict) -> list[dict]:
    """Trials best first: completed by objective, then infeasible, failed, running, pending."""
    rank = {"completed": 0, "infeasible": 1, "failed": 2, "running": 3, "pending": 4}
    sign = 1 if record["mode"] == "min" else -1

    def key(t):
        value = (
            t["best_value"]
            if t["status"] == "completed" and t["best_value"] is not None
            else math.inf
        )
        return (rank[t["status"]], sign * value if value != math.inf else value, t["index"])

    return sorted(record["trials"], key=key)


def format_record(record: dict) -> str:
    """The study as text: tracking fields, then a table of trials sorted by objective."""
    counts = ", ".join(f"{n} {s}" for s, n in record["status_counts"].items() if n)
    lines = [
        f"study      {record['name']}  ({record['num_trials']} trials: {counts})",
        f"config     {record['config_path']}",
        f"notes      {record['notes'] or '-'}",
        f"objective  {record['objective']} ({record['mode']}), best {_value(record['best_value'])}"
        + (f" (trial {record['best_trial']})" if record["best_trial"] is not None else ""),
        f"code       git {record['git_commit'] or '?'}{' (dirty)' if record['git_dirty'] else ''}, "
        f"jax {record['versions'].get('jax')}, flax {record['versions'].get('flax')}, {record['device_kind']}",
        f"reproduce  {record['command']}",
        "",
    ]
    from jaxplay.analysis.variance import parent_of

    parent = parent_of(record)
    if parent:  # a derived study (jaxplay.lineage): where it comes from
        lines.insert(3, f"lineage    --lineage {parent.get('action')} of {parent.get('study')}")
    paths = []
    for t in record["trials"]:
        paths.extend(p for p in t["params"] if p not in paths)
    header = ["trial", "status", record["objective"], "best step"] + paths
    rows = [
        [
            str(t["index"]),
            t["status"],
            _value(t["best_value"]),
            "-" if t["best_step"] is None else str(t["best_step"]),
        ]
        + [_param(t["params"].get(p, "")) for p in paths]
        for t in sorted_trials(record)
    ]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)
    problems = [
        t for t in record["trials"] if t["status"] in ("infeasible", "failed") and t["error"]
    ]
    for t in problems:
        lines.append(f"trial {t['index']} {t['status']}: {t['error'].strip().splitlines()[-1]}")
    return "\n".join(lines)


def _add_store_args(
    p: argparse.ArgumentParser,
    study_help: str | None = "study name (needed when the store holds several)",
):
    p.add_argument("--workdir", help="the sweep's --workdir (its SQLite store)")
    p.add_argument("--store", help="SQLAlchemy URL of the store instead of --workdir")
    if study_help:
        p.add_argument("--study", help=study_help)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jaxplay.studies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_store_args(sub.add_parser("list", help="list the studies in a store"), study_help=None)
    p = sub.add_parser("show", help="print one study and its trials")
    _add_store_args(p)
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p = sub.add_parser(
        "report", help="write the study's HTML report (plots, diagnostics) and print its path"
    )
    _add_store_args(p)
    p.add_argument("--output", help="file or directory for the report (default: the workdir)")
    p = sub.add_parser("compare", help="two studies side by side, e.g. round 1 against round 2")
    _add_store_args(p, "the first study (needed when the store holds several)")
    p.add_argument("--other", required=True, help="name of the second study")
    p.add_argument("--other_workdir", help="the second study's workdir, if not the same store")
    p.add_argument("--other_store", help="the second study's store URL, if not the same store")
    p = sub.add_parser("export", help="the trials as CSV or JSON")
    _add_store_args(p)
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--output", help="write to this file instead of standard output")
    return parser


def main(argv=None) -> int:
    """Entry point of `python -m jaxplay.studies`."""
    from jaxplay import analysis
    from jaxplay.analysis.study import store_url

    parser = _parser()
    args = parser.parse_args(argv)
    if not args.store and not args.workdir:
        parser.error("pass --workdir DIR or --store URL")
    try:
        url = store_url(args.workdir, args.store)
        if args.command == "list":
            store = store_lib.Store(url)
            try:
                for name in store.study_names():
                    r = store.record(store.study_id(name))
                    print(
                        f"{name}  {r['num_trials']} trials  best {r['objective']} {_value(r['best_value'])}  "
                        f"{r['notes']}"
                    )
            finally:
                store.close()
            return 0
        if args.command == "report":
            print(
                analysis.report(args.workdir, store=args.store, study=args.study, path=args.output)
            )
            return 0
        study = analysis.load(store=url, study=args.study)
        if args.command == "show":
            print(
                json.dumps(study.record, indent=2, default=str)
                if args.json
                else format_record(study.record)
            )
        elif args.command == "compare":
            other_url = (
                store_url(args.other_workdir, args.other_store)
                if args.other_workdir or args.other_store
                else url
            )
            print(analysis.compare(study, analysis.load(store=other_url, study=args.other)))
        elif args.command == "export":
            text = analysis.export(study, args.format)
            if args.output:
                with open(args.output, "w", newline="") as f:
                    f.write(text)
                print(args.output)
            else:
                sys.stdout.write(text)
    except (StoreError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
