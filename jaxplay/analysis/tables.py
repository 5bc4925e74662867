"""Studies as tables: `export` (every trial as CSV or JSON) and `compare` (two studies side by side,
e.g. round 1 against round 2, each tagged with the batch size it was tuned at)."""

from __future__ import annotations

import csv
import io
import json

from jaxplay.analysis import comparison, diagnostics, variance
from jaxplay.analysis import record as record_lib
from jaxplay.analysis.record import BATCH_SIZE, batch_size_of, searched_batch_sizes
from jaxplay.analysis.study import StudyData
from jaxplay.values import cell

EXPORT_FORMATS = ("csv", "json")


def trial_rows(study: StudyData) -> list[dict]:
    """One flat dict per trial, best first: outcome, each searched hyperparameter, final metrics."""
    metric_names = sorted(
        {name for t in study.record["trials"] for name in (t.get("final_metrics") or {})}
    )
    rows = []
    # The record's trials: they also hold timings and final metrics.
    for t in record_lib.sorted_trials(study.record):
        row = {
            "trial": t["index"],
            "status": t["status"],
            f"best {study.objective}": t["best_value"],
            "best_step": t["best_step"],
            "steps_run": t["steps_run"],
            "duration_s": t.get("duration_s"),
            # Accelerator time: devices x its share of wall-clock time (record.device_hours).
            "device_hours": record_lib.device_hours(study.record, t),
        }
        row.update({path: t["params"].get(path) for path in study.param_paths})
        row.update(
            {f"final {name}": (t.get("final_metrics") or {}).get(name) for name in metric_names}
        )
        row["error"] = record_lib.error_summary(t.get("error")) or None
        rows.append(row)
    return rows


def export(study: StudyData, fmt: str = "csv") -> str:
    """The study's trials as CSV (one row per trial) or JSON (the tracking fields plus the rows)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format: unknown {fmt!r}; use one of {list(EXPORT_FORMATS)}")
    rows = trial_rows(study)
    if fmt == "json":
        fields = {k: v for k, v in study.record.items() if k != "trials"}
        return json.dumps({**fields, "trials": rows}, indent=2, default=str)
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=list(rows[0]) if rows else ["trial"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _space_text(p) -> str:
    return f"{comparison.range_text(p)} ({p.role})"


def _batch_size_text(record: dict) -> str:
    """The batch size a study was tuned at: '128', or '64 (best trial; searched 32, 64, 128)'."""
    searched = searched_batch_sizes(record)
    if not searched:
        return cell(batch_size_of(record))
    return f"{cell(batch_size_of(record))} (best trial; searched {', '.join(map(str, searched))})"


def compare(a: StudyData, b: StudyData, findings: bool = True) -> str:
    """Two studies side by side: outcome, best trial, the batch size each was tuned at, search
    spaces, differing fixed values, (with `findings`) each study's diagnostics, and whether their
    difference is fair (batch sizes) and beyond the noise."""
    rows = [
        ("study", a.name, b.name),
        ("notes", a.record["notes"] or "-", b.record["notes"] or "-"),
        ("objective", f"{a.objective} ({a.mode})", f"{b.objective} ({b.mode})"),
    ]
    for label, fn in (
        (
            "trials",
            lambda s: ", ".join(f"{n} {k}" for k, n in s.record["status_counts"].items() if n),
        ),
        (
            "best",
            lambda s: (
                f"{cell(s.record['best_value'])} (trial {s.record['best_trial']})"
                if s.record["best_trial"] is not None
                else "-"
            ),
        ),
        ("train.steps", lambda s: cell(s.train_steps)),
        ("batch size", lambda s: _batch_size_text(s.record)),
        ("algorithm", lambda s: f"{s.record['algorithm']} seed {s.record['seed']}"),
    ):
        rows.append((label, fn(a), fn(b)))
    best_a, best_b = (s.feasible[0].params if s.feasible else {} for s in (a, b))
    spaces_a, spaces_b = ({p.path: p for p in s.space} for s in (a, b))
    for path in sorted(set(spaces_a) | set(spaces_b)):
        rows.append(
            (
                f"search {path}",
                _space_text(spaces_a[path]) if path in spaces_a else "fixed",
                _space_text(spaces_b[path]) if path in spaces_b else "fixed",
            )
        )
        rows.append(
            (
                f"  best {path}",
                cell(best_a.get(path, a.fixed.get(path))),
                cell(best_b.get(path, b.fixed.get(path))),
            )
        )
    for path in sorted(set(a.fixed) | set(b.fixed)):
        va, vb = a.fixed.get(path), b.fixed.get(path)
        if (
            va != vb
            and path not in spaces_a
            and path not in spaces_b
            and not path.startswith("study.")
            and path != BATCH_SIZE  # its own row above
        ):
            rows.append((f"fixed {path}", cell(va), cell(vb)))
    width = [max(len(str(r[i])) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]}" for r in rows]
    if findings:
        for s in (a, b):
            found = diagnostics.diagnose(s)
            lines.append(
                f"\ndiagnostics of {s.name}: " + ("no problems found" if not found else "")
            )
            lines.extend(f"  [{f.severity}] {f.title}" for f in found)
    records = {r["name"]: r for r in [*a.family, *b.family, a.record, b.record]}
    stale = variance.batch_size_lines(a.record, b.record, list(records.values()))
    if stale:
        lines.append("\nWas each tuned at its own batch size? (playbook: re-tune after a change)")
        lines.extend(f"  {line}" for line in stale)
    noise = variance.verdict(a.record, b.record, list(records.values()))
    if noise:
        lines.append(
            "\nIs the difference beyond the noise? "
            "(playbook: weigh it against the trial and study variance)"
        )
        lines.extend(f"  {line}" for line in noise)
    return "\n".join(lines)
