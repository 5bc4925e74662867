"""Read the study record: `python -m jaxplay.studies show|list --workdir DIR [--json]`."""
from __future__ import annotations

import argparse
import json
import math
import sys

from jaxplay import store as store_lib


def _value(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _param(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def sorted_trials(record: dict) -> list[dict]:
    """Trials best first: completed by objective, then infeasible, failed, running, pending."""
    rank = {"completed": 0, "infeasible": 1, "failed": 2, "running": 3, "pending": 4}
    sign = 1 if record["mode"] == "min" else -1

    def key(t):
        value = t["best_value"] if t["status"] == "completed" and t["best_value"] is not None else math.inf
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
    paths = []
    for t in record["trials"]:
        paths.extend(p for p in t["params"] if p not in paths)
    header = ["trial", "status", record["objective"], "best step"] + paths
    rows = [[str(t["index"]), t["status"], _value(t["best_value"]),
             "-" if t["best_step"] is None else str(t["best_step"])]
            + [_param(t["params"].get(p, "")) for p in paths] for t in sorted_trials(record)]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)
    problems = [t for t in record["trials"] if t["status"] in ("infeasible", "failed") and t["error"]]
    for t in problems:
        lines.append(f"trial {t['index']} {t['status']}: {t['error'].strip().splitlines()[-1]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Entry point of `python -m jaxplay.studies`."""
    parser = argparse.ArgumentParser(prog="python -m jaxplay.studies", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("show", "print one study and its trials"), ("list", "list the studies")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--workdir", help="the sweep's --workdir (its SQLite store)")
        p.add_argument("--store", help="SQLAlchemy URL of the store instead of --workdir")
        if name == "show":
            p.add_argument("--study", help="study name (needed when the store holds several)")
            p.add_argument("--json", action="store_true", help="print the record as JSON")
    args = parser.parse_args(argv)
    if not args.store and not args.workdir:
        parser.error("pass --workdir DIR or --store URL")
    url = args.store or store_lib.default_url(args.workdir)
    if url.startswith("sqlite:///") and not args.store:
        from pathlib import Path
        if not Path(url[len("sqlite:///"):]).exists():
            print(f"error: no study store in {args.workdir} (looked for {store_lib.DB_NAME}); "
                  "run `python -m jaxplay.sweep --workdir` there first", file=sys.stderr)
            return 2
    store = store_lib.Store(url)
    try:
        if args.command == "list":
            for name in store.study_names():
                r = store.record(store.study_id(name))
                print(f"{name}  {r['num_trials']} trials  best {r['objective']} {_value(r['best_value'])}  {r['notes']}")
            return 0
        record = store.record(store.study_id(args.study))
    except store_lib.StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(json.dumps(record, indent=2, default=str) if args.json else format_record(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
