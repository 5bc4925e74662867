"""The study record as the store gives it (`Store.record`, `studies show --json`), typed, and the
helpers every reader of it shares: trial order, the lineage link, the text view."""

from __future__ import annotations

import math
import re
from typing import NotRequired, TypedDict

from jaxplay import spaces
from jaxplay.analysis import importance
from jaxplay.values import cell, fmt, is_int


class TrialRecord(TypedDict):
    """One trial of a study record."""

    index: int
    status: str  # pending, running, completed, infeasible, failed
    params: dict
    best_value: float | None
    best_step: int | None
    steps_run: int | None
    duration_s: float | None
    shared_s: NotRequired[float | None]  # its share of its worker's time (a stack's split)
    checkpoint_dir: str | None
    error: str | None
    worker: str | None
    final_metrics: dict | None
    started_at: str | None
    finished_at: str | None


class StudyRecord(TypedDict):
    """A study's tracking fields and its trials."""

    name: str
    config_path: str
    notes: str
    objective: str
    mode: str
    algorithm: str
    seed: int
    num_trials: int
    status_counts: dict[str, int]
    best_value: float | None
    best_trial: int | None
    command: str
    git_commit: str | None
    git_dirty: bool | None
    study_git_commit: str | None  # the study file's own repository, where it is one
    study_git_dirty: bool | None
    versions: dict
    device_kind: str
    executor: str
    executor_reason: str
    created_at: str
    updated_at: str
    config: dict
    trials: list[TrialRecord]
    # analysis.load's record, for trials with train.keep_predictions: one entry per trial and
    # evaluation, {'trial', 'step', name: one value per kept validation example, ...}.
    predictions: NotRequired[list[dict]]


STATUS_ORDER = ("completed", "infeasible", "failed", "running", "pending")

# How a study or probe records its devices (jaxplay.train.mesh.device_kind): 'gpu: NVIDIA H200 x8'.
_DEVICE_COUNT = re.compile(r" x(\d+)$")


def device_count(device_kind: str | None) -> int | None:
    """The number of devices in a recorded device kind ('cpu: cpu x1' -> 1); None when unknown."""
    match = _DEVICE_COUNT.search(device_kind or "")
    return int(match.group(1)) if match else None


def device_hours(record: StudyRecord, trial: TrialRecord) -> float | None:
    """A finished trial's accelerator time (the playbook's resource consumption: consumption per
    step x steps, here measured rather than multiplied): devices x its share of wall-clock time,
    in hours. Devices: all of the study's (its recorded device kind), busy or not, because the
    sweep holds every device of its process, a lone trial splitting its batch over them and a
    stack its trials. Time: the store's `shared_s`, its worker's time split equally among the
    trials it held at once, so each trial of a vmapped stack of K counts 1/K of the stack's time
    (duration_s for a record without it). It spans the trial's last claim to its end: compilation,
    evaluations and checkpoints included; the time of an attempt that was interrupted and resumed
    is not. None for a trial without a recorded time or a study without a device count."""
    devices = device_count(record.get("device_kind"))
    seconds = trial.get("shared_s")
    if seconds is None:
        seconds = trial.get("duration_s")
    if devices is None or seconds is None:
        return None
    return devices * seconds / 3600.0


def study_device_hours(record: StudyRecord) -> float | None:
    """The study's accelerator time: the sum of its trials' device_hours (None when no trial has
    one yet)."""
    hours = [h for t in record["trials"] if (h := device_hours(record, t)) is not None]
    return sum(hours) if hours else None


def hours_text(hours: float | None) -> str:
    """Device-hours to 3 significant digits, '-' when unknown."""
    return "-" if hours is None else f"{hours:.3g}"


# The batch size a result was tuned at tags it (analysis.diagnostics.batch_size says why).
BATCH_SIZE = "data.batch_size"


def config_path(path: str) -> str:
    """The config path a trial's value of `path` sets: 'optimizer[sgd].momentum' ->
    'optimizer.momentum'."""
    match = spaces.BRANCH_PATH.fullmatch(path)
    return f"{match['section']}.{match['field']}" if match else path


def batch_size_of(record: dict) -> int | None:
    """The batch size a study's result was tuned at: its best trial's own value when its trials
    set data.batch_size (searched), else the config's data.batch_size; None when unknown (no
    config, or searched with no best trial yet)."""
    best = next(
        (t for t in record.get("trials") or [] if t["index"] == record.get("best_trial")), None
    )
    own = [v for p, v in ((best or {}).get("params") or {}).items() if config_path(p) == BATCH_SIZE]
    if own:
        return int(own[0]) if is_int(own[0]) else None
    if best is None and searched_batch_sizes(record):
        return None
    value = ((record.get("config") or {}).get("data") or {}).get("batch_size")
    return int(value) if is_int(value) else None


def searched_batch_sizes(record: dict) -> list[int]:
    """The distinct batch sizes its trials set themselves, ascending (empty when none does)."""
    return sorted(
        {
            int(value)
            for t in record.get("trials") or []
            for path, value in (t.get("params") or {}).items()
            if config_path(path) == BATCH_SIZE and is_int(value)
        }
    )


def sorted_trials(record: StudyRecord) -> list[TrialRecord]:
    """Trials best first: completed by objective, then infeasible, failed, running, pending."""
    sign = 1 if record["mode"] == "min" else -1

    def key(t):
        done = t["status"] == "completed" and t["best_value"] is not None
        value = sign * t["best_value"] if done else math.inf
        return (STATUS_ORDER.index(t["status"]), value, t["index"])

    return sorted(record["trials"], key=key)


def parent_of(record: StudyRecord) -> dict | None:
    """The study.parent section of a derived study's record (its lineage), or None."""
    return ((record.get("config") or {}).get("study") or {}).get("parent") or None


def error_summary(text: str | None) -> str:
    """A recorded error in one line, '' for none: its first line ('Type: message', followed by the
    traceback), or for a record of an older jaxplay (the traceback alone) its last line."""
    lines = text.strip().splitlines() if text else []
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def format_record(record: StudyRecord) -> str:
    """The study as text (`studies show`): tracking fields, then the trials best first."""
    counts = ", ".join(f"{n} {s}" for s, n in record["status_counts"].items() if n)
    best = f"best {format_value(record['best_value'])}"
    if record["best_trial"] is not None:
        best += f" (trial {record['best_trial']})"
    dirty = " (dirty)" if record["git_dirty"] else ""
    study_code = ""
    if record.get("study_git_commit"):
        study_dirty = " (dirty)" if record.get("study_git_dirty") else ""
        study_code = f"; study file git {record['study_git_commit']}{study_dirty}"
    versions = record["versions"]
    lines = [
        f"study      {record['name']}  ({record['num_trials']} trials: {counts})",
        f"config     {record['config_path']}",
        f"notes      {record['notes'] or '-'}",
        f"objective  {record['objective']} ({record['mode']}), {best}",
        f"code       git {record['git_commit'] or '?'}{dirty}, jax {versions.get('jax')}, "
        f"flax {versions.get('flax')}, {record['device_kind']}{study_code}",
        f"reproduce  {record['command']}",
    ]
    total = study_device_hours(record)
    if total is not None:
        lines.append(
            f"compute    {hours_text(total)} device-hours ({record['device_kind']}; devices x "
            "each finished trial's wall-clock time, a stack's shared among its trials)"
        )
    lines.append("")
    if record.get("final_evaluation"):
        lines.insert(4, f"final      {format_final(record['final_evaluation'])}")
    parent = parent_of(record)
    if parent:  # a derived study (jaxplay.tuning): where it comes from
        lines.insert(3, f"lineage    --lineage {parent.get('action')} of {parent.get('study')}")
    paths = []
    for t in record["trials"]:
        paths.extend(p for p in t["params"] if p not in paths)
    header = ["trial", "status", record["objective"], "best step", "device-h", *paths]
    rows = [
        [str(t["index"]), t["status"], format_value(t["best_value"]), cell(t["best_step"]),
         hours_text(device_hours(record, t))]
        + [fmt(t["params"].get(p, "")) for p in paths]
        for t in sorted_trials(record)
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(len(header))]
    lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)
    for t in record["trials"]:
        if t["status"] in ("infeasible", "failed") and t["error"]:
            lines.append(f"trial {t['index']} {t['status']}: {error_summary(t['error'])}")
    lines.extend(importance.lines(importance.analyze(record)))
    return "\n".join(lines)


def format_list(records: list[dict], incumbent: dict | None = None) -> str:
    """The studies of a store, one line each under a header (`studies list`): how many trials
    finished, how many are running (a study still going shows it), the best value, the notes; the
    study holding the `incumbent` (Store.incumbent) is marked '*' and named below."""
    header = ["study", "trials", "finished", "running", "pending", "best", "notes"]
    rows = []
    for r in records:
        counts = r["status_counts"]
        finished = sum(counts.get(s, 0) for s in ("completed", "infeasible", "failed"))
        best = f"{r['objective']} {format_value(r['best_value'])}"
        holds = incumbent is not None and incumbent["study"] == r["name"]
        rows.append([r["name"] + (" *" if holds else ""), str(r["num_trials"]), str(finished),
                     str(counts.get("running", 0)), str(counts.get("pending", 0)), best,
                     r["notes"] or "-"])  # fmt: skip
    if not rows:
        return "no studies in this store"
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    table = "\n".join(
        "  ".join(
            c.ljust(w) if i in (0, 5) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row[:-1], widths))
        )
        + "  "
        + row[-1]
        for row in [header, *rows]
    )
    if incumbent is None:
        return table
    when = (incumbent.get("created_at") or "")[:19].replace("T", " ")
    return (
        f"{table}\n* incumbent: trial {incumbent.get('trial')} of {incumbent['study']}, launched "
        f"{when} (goal: {incumbent.get('goal')})"
    )


def format_final(final: dict) -> str:
    """A final evaluation in one line: the split, the trial and step, its metrics, once-only."""
    metrics = ", ".join(f"{k} {format_value(v)}" for k, v in sorted(final["metrics"].items()))
    once = (
        " (scored once: the playbook keeps the test set for the end)"
        if final["split"] == "test" and not final.get("again")
        else " (the test set scored again)"
        if final["split"] == "test"
        else ""
    )
    return (
        f"{final['split']} set, trial {final['trial']} at step {final['step']}: {metrics}, "
        f"{final['when']}{once}"
    )


def format_value(v) -> str:
    """An objective value in the text view: 4 decimals, '-' when missing."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"
