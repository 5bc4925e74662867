"""A study's report: one self-contained HTML page (tracking fields, diagnostics, trials, plots and
the fixed hyperparameters that bound its conclusions).

The page has no external resources and no JavaScript: plots are embedded PNG data URIs and the CSS
is inline, so it can be mailed, attached to an issue or opened from a file share. Every string
that came from a user (study name, notes, hyperparameter names and values, error messages, paths,
commands) is HTML-escaped; a Content-Security-Policy forbidding scripts backs that up.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import io
import math
import pathlib
import re

from jaxplay import paths
from jaxplay.analysis import comparison, diagnostics, importance, throughput, variance
from jaxplay.analysis import record as record_lib
from jaxplay.analysis.study import StudyData, TrialData
from jaxplay.values import size

# Only data: images and the inline style sheet may load; scripts never run, even if some
# unescaped markup slipped in.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STATUSES = ("completed", "infeasible", "failed", "running", "pending")
SEVERITIES = ("warning", "info")
# The sensitivity section lists the strongest pairs only: a study of d hyperparameters has
# d(d-1)/2 of them, and past the first few they are the noise floor.
PAIRS_SHOWN = 6

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; \
margin: 0 auto;
       max-width: 1800px; padding: 0 20px 40px; }
h1 { margin: 24px 0 4px; font-size: 26px; } h2 { margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { margin-top: 20px; }
nav a { margin-right: 14px; } .notes { color: #555; font-style: italic; margin-top: 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 3px 10px 3px 4px; text-align: left; \
vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.fields th { background: none; width: 190px; font-weight: 600; }
.trials { display: block; overflow-x: auto; } tr.best { background: #eefbea; }
code, pre { font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace; background: #f6f6f6; \
padding: 1px 4px;
            white-space: pre-wrap; word-break: break-all; }
.badge { display: inline-block; border-radius: 4px; padding: 0 6px; font-size: 12px; \
font-weight: 600;
         color: #fff; background: #888; }
.badge.warning, .badge.infeasible, .badge.failed { background: #c0392b; } \
.badge.info { background: #2c7fb8; }
.badge.completed { background: #2e8b57; } .badge.running { background: #d68910; }
.finding { border-left: 4px solid #2c7fb8; background: #f7fafd; padding: 6px 12px; margin: 10px 0; }
.finding.warning { border-color: #c0392b; background: #fdf6f5; }
.finding p { margin: 4px 0; } .ok { color: #2e8b57; font-weight: 600; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); \
gap: 0 28px; }
figure { margin: 14px 0 26px; } figure.wide { grid-column: 1 / -1; }
figure img { width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: 13px; }
details summary { cursor: pointer; color: #555; font-size: 12px; }
footer { margin-top: 40px; color: #888; font-size: 12px; }
"""


def _e(value) -> str:
    """HTML-escaped text of any value (quotes included, so it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


def _num(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _table(
    header: list[str],
    rows: list[list[str]],
    cls: str = "",
    highlight: int | None = None,
    row_ids: list[str] | None = None,
) -> str:
    """A table from already-escaped cell HTML (header cells are escaped here); row `highlight`
    is marked; `row_ids` (plain identifiers) let a page link to a row."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr"
        + (' class="best"' if i == highlight else "")
        + (f' id="{_e(row_ids[i])}"' if row_ids else "")
        + ">"
        + "".join(cells)
        + "</tr>"
        for i, cells in enumerate(rows)
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# ----------------------------------------------------------------------------------------------
# Sections.


def _decision(r: dict) -> str:
    """The study's launch decision (goal, launched or rejected, why, when) and whether it holds the
    store's incumbent; '' when neither a decision nor an incumbent is recorded."""
    d, incumbent = r.get("decision"), r.get("incumbent")
    holds = incumbent is not None and incumbent.get("study") == r.get("name")
    parts = []
    if d:
        what = (
            f"launched trial {d.get('trial')}"
            if d.get("launched")
            else f"rejected trial {d.get('trial')}"
        )
        parts.append(
            f"<strong>{_e(what)}</strong>{' (forced)' if d.get('forced') else ''}, "
            f"{_e((d.get('created_at') or '')[:19].replace('T', ' '))}: goal {_e(d.get('goal'))}"
            + (f"; why: {_e(d['why'])}" if d.get("why") else "")
        )
    if holds:
        parts.append(f"<strong>holds the incumbent</strong> (trial {_e(incumbent.get('trial'))})")
    elif incumbent is not None:
        parts.append(
            f"the incumbent is trial {_e(incumbent.get('trial'))} of {_e(incumbent.get('study'))}"
        )
    return "; ".join(parts) if d or holds else ""


def _summary(study: StudyData) -> str:
    r = study.record
    counts = r.get("status_counts") or {}
    best = (
        f"{_e(_num(r['best_value']))} (trial {_e(r['best_trial'])})"
        if r.get("best_trial") is not None
        else "no feasible trial yet"
    )
    commit = r.get("git_commit") or "unknown"
    dirty = (
        " (dirty: uncommitted changes, so the commit alone does not reproduce it)"
        if r.get("git_dirty")
        else ""
    )
    if r.get("study_git_commit"):
        dirty += f"; the study file's repository: git <code>{_e(r['study_git_commit'])}</code>" + (
            " (dirty)" if r.get("study_git_dirty") else ""
        )
    fields = [
        ("Notes", _e(r.get("notes") or "-")),
        (
            "Objective",
            f"{_e(study.objective)} ({'minimized' if study.mode == 'min' else 'maximized'})",
        ),
        ("Best", best),
        (
            "Trials",
            f"{_e(r.get('num_trials', len(study.trials)))}: "
            + (", ".join(f"{counts[s]} {s}" for s in STATUSES if counts.get(s)) or "none"),
        ),
        ("Steps per trial", _e(_num(study.train_steps))),
        ("Search", f"{_e(r.get('algorithm', '-'))}, seed {_e(r.get('seed', '-'))}"),
        ("Config", f"<code>{_e(r.get('config_path') or '-')}</code>"),
        ("Reproduce", f"<code>{_e(r.get('command') or '-')}</code>"),
        ("Code", f"git <code>{_e(commit)}</code>{dirty}"),
        (
            "Libraries",
            _e(", ".join(f"{k} {v}" for k, v in (r.get("versions") or {}).items()) or "-"),
        ),
        ("Device", _e(r.get("device_kind") or "-")),
        ("Device time", _device_time(r)),
        ("Executor", f"{_e(r.get('executor') or '-')} ({_e(r.get('executor_reason') or '-')})"),
        (
            "Created / updated",
            f"{_e(r.get('created_at') or '-')} / {_e(r.get('updated_at') or '-')}",
        ),
    ]
    final = r.get("final_evaluation")
    if final:  # the chosen trial scored on the test set (studies evaluate): the study's number
        fields.insert(3, ("Final", f"<strong>{_e(record_lib.format_final(final))}</strong>"))
    decision = _decision(r)
    if decision:  # the round's launch decision (studies launch) and who holds the incumbent
        fields.insert(1, ("Decision", decision))
    stacks = _stacks(study.probes)
    if stacks:  # where the device's memory sized the stacks of trials
        fields.insert(-1, ("Stacks", stacks))
    rows = "".join(f"<tr><th>{_e(label)}</th><td>{value}</td></tr>" for label, value in fields)
    space = [
        [
            f"<td><code>{_e(p.path)}</code></td>",
            f"<td>{_e(p.role)}</td>",
            f"<td>{_e(p.space)}</td>",
            "<td>"
            + _e(
                f"{p.scale} [{_num(p.min)}, {_num(p.max)}]" if p.values is None else list(p.values)
            )
            + "</td>",
        ]
        for p in study.space
    ]
    if space:
        searched = _table(["searched hyperparameter", "role", "space", "range"], space)
    elif r.get("algorithm") == "manual":
        searched = (
            "<p>Nothing searched: the trials were listed (study.trials); "
            "their values are in the table of trials.</p>"
        )
    else:
        searched = "<p>Nothing searched: every trial ran the same configuration.</p>"
    return (
        f'<section id="summary"><h2>Summary</h2><table class="fields">{rows}</table>'
        f"<h3>Search space</h3>{searched}</section>"
    )


def _device_time(r: dict) -> str:
    """The study's accelerator time (jaxplay.analysis.record.device_hours): its total, and how it
    is counted."""
    total = record_lib.study_device_hours(r)
    if total is None:
        return "- (no finished trial with a recorded time yet)"
    finished = sum(record_lib.device_hours(r, t) is not None for t in r["trials"])
    return (
        f"<strong>{_e(record_lib.hours_text(total))} device-hours</strong> over {finished} "
        f"finished trial(s): devices ({_e(record_lib.device_count(r.get('device_kind')))}) x each "
        "trial's wall-clock time, a stack's time shared equally among its trials (per trial in "
        "the table of trials)"
    )


def _stacks(probes: list[dict]) -> str:
    """How the batched executor stacked each group where the device's memory decided it: the
    latest 'batching' probe per group (jaxplay.driver.batching)."""
    latest: dict = {}
    for p in probes:  # newest first
        if p["kind"] == "batching":
            latest.setdefault(p["config"]["group"], p)
    parts = []
    for group, p in latest.items():
        r = p["result"]
        parts.append(
            f"{_e(group)}: {_e(r['stack'])} per stack ({_e(r['reason'])}; predicted peak "
            f"{_e(size(r.get('predicted_peak_bytes')))}, budget {_e(size(r.get('budget_bytes')))} "
            f"of {_e(size(r.get('limit_bytes')))}, {_e(r.get('source') or '-')})"
        )
    return "<br>".join(parts)


def _diagnostics(findings: list) -> str:
    if not findings:
        return (
            '<section id="diagnostics"><h2>Diagnostics</h2>'
            '<p class="ok">No problems found.</p></section>'
        )
    items = []
    for f in findings:
        severity = (
            f.severity if f.severity in SEVERITIES else "info"
        )  # also keeps the class attribute fixed
        where = []
        if f.param:
            where.append(f"hyperparameter <code>{_e(f.param)}</code>")
        if f.trials:
            where.append("trials " + ", ".join(_e(i) for i in f.trials))
        items.append(
            f'<div class="finding {severity}"><p>'
            f'<span class="badge {severity}">{_e(f.severity)}</span> '
            f"<strong>{_e(f.title)}</strong></p><p>{_e(f.detail)}</p>"
            f"<p><strong>Action:</strong> {_e(f.action)}</p>"
            + (
                f"<p><small>{'; '.join(where)} · check {_e(f.check)}</small></p>"
                if where
                else f"<p><small>check {_e(f.check)}</small></p>"
            )
            + "</div>"
        )
    warnings = sum(f.severity == "warning" for f in findings)
    return (
        f'<section id="diagnostics"><h2>Diagnostics</h2><p>{warnings} warning(s), '
        f"{len(findings) - warnings} note(s) from the playbook's checks.</p>"
        f"{''.join(items)}</section>"
    )


def _error_cell(t: TrialData) -> str:
    if not t.error:
        return "<td></td>"
    lines = t.error.strip().splitlines() or [""]
    cell = _e(lines[-1])
    if len(lines) > 1:
        cell += (
            f"<details><summary>full message</summary><pre>{_e(t.error.strip())}</pre></details>"
        )
    return f"<td>{cell}</td>"


def _trials(study: StudyData) -> str:
    order = study.ranked
    best = study.feasible[0].index if study.feasible else None
    paths = study.param_paths
    records = {t["index"]: t for t in study.record.get("trials", [])}
    rows = []
    for t in order:
        status = t.status if t.status in STATUSES else ""
        hours = record_lib.device_hours(study.record, records.get(t.index, {}))
        numbers = [
            t.index,
            t.best_value,
            t.best_step,
            t.steps_run,
            None if hours is None else float(f"{hours:.3g}"),
            *(t.params.get(p, "-") for p in paths),
        ]
        cells = [f'<td class="num">{_e(_num(v))}</td>' for v in numbers]
        cells.insert(1, f'<td><span class="badge {status}">{_e(t.status)}</span></td>')
        cells.append(_error_cell(t))
        rows.append(cells)
    header = [
        "trial",
        "status",
        f"best {study.objective}",
        "best step",
        "steps run",
        "device-hours",
        *paths,
        "problem",
    ]
    table = _table(
        header,
        rows,
        "trials",
        highlight=next((i for i, t in enumerate(order) if t.index == best), None),
        row_ids=[f"trial-{t.index}" for t in order],
    )
    return (
        '<section id="trials"><h2>Trials</h2>'
        "<p>Best first; the best trial is highlighted. A trial's value "
        f"is the best {_e(study.objective)} it reached over training (the playbook's choice).</p>"
        f"{table}</section>"
    )


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plots(study: StudyData, baseline: StudyData | None = None) -> str:
    """Every plot in one grid that uses the page's width (a heading per kind of plot would end a
    row after each kind's one or two plots): each caption names its kind. With a `baseline`
    study, its best is drawn on the isolation plots, under the cautions where the two were not
    tuned with the same care."""
    from jaxplay.analysis import plots  # matplotlib: the live dashboard shows the rest without it

    figures = []
    for name, caption, fig in plots.figures(study, baseline=baseline):
        wide = (
            ' class="wide"' if fig.get_figwidth() > 7 else ""
        )  # two-panel plots get the full width
        data = _png(fig)
        fig.clear()  # the page holds the PNG now; free the artists before the next plot is drawn
        figures.append(
            f'<figure{wide}><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
            f"<figcaption><strong>{_e(name)}</strong>: {_e(caption)}</figcaption></figure>"
        )
    if not figures:
        body = "<p>No plots yet: the study has no finished trial with a result.</p>"
    else:
        body = f'<div class="figures">{"".join(figures)}</div>'
    if baseline is not None:
        cautions = comparison.parity(study, baseline)
        drawn = (
            "its best is drawn on each isolation plot"
            if study.space.by_role("scientific")
            else "no isolation plot to draw it on (the study searches no scientific hyperparameter)"
        )
        body = (
            f"<p>Against baseline <strong>{_e(baseline.name)}</strong> ({drawn}): "
            + (
                f"{_e(comparison.PARITY_HEADING)}</p><ul>"
                + "".join(f"<li>{_e(c)}</li>" for c in cautions)
                + "</ul>"
                if cautions
                else "tuned with the same care (trial budgets within "
                f"{comparison.PARITY_BUDGET_RATIO:g}x, the same nuisance searches).</p>"
            )
            + body
        )
    return f'<section id="plots"><h2>Plots</h2>{body}</section>'


def _lineage(study: StudyData) -> str:
    """Where the study comes from (its parent and what was derived), the studies derived from it,
    and the trial and study variance measured by its lineage; '' for a study with no relatives."""
    parent = study.parent
    if parent is None and not study.family:
        return ""
    parts = []
    if parent:
        changes = "".join(f"<li>{_e(c)}</li>" for c in parent.get("changes") or [])
        parts.append(
            f"<p>Derived from study <b>{_e(parent.get('study'))}</b> by <code>--lineage "
            f"{_e(parent.get('action'))}</code>:</p><ul>{changes}</ul>"
        )
    rows, records = [], [*study.family, study.record]
    for r in study.family:
        link = variance.parent_of(r) or {}
        relation = (
            "parent"
            if parent and r["name"] == parent.get("study")
            else f"derived from it ({link.get('action')})"
            if link.get("study") == study.name
            else f"{link.get('action')} of {link.get('study')}"
            if link
            else "ancestor"
        )
        counts = ", ".join(f"{n} {k}" for k, n in (r.get("status_counts") or {}).items() if n)
        rows.append(
            [
                f"<td>{_e(r['name'])}</td>",
                f"<td>{_e(relation)}</td>",
                f"<td>{_e(_num(r.get('best_value')))}</td>",
                f"<td>{_e(variance.difference_text(study.record, r, records))}</td>",
                f"<td>{_e(counts or '-')}</td>",
            ]
        )
    if rows:
        parts.append(
            _table(
                [
                    "study",
                    "relation",
                    f"best {study.objective}",
                    "compared with this study",
                    "trials",
                ],
                rows,
            )
        )
    noise = [
        n
        for n in (
            variance.trial_noise(records, {study.name}),
            variance.study_noise(records, study.name),
        )
        if n
    ]
    if noise:
        items = "".join(
            f"<li>{_e(n.describe())}; two results closer than {_e(_num(n.threshold))} are within "
            "this noise</li>"
            for n in noise
        )
        parts.append(
            f"<p>Noise measured by this lineage (playbook: weigh every difference against it):</p>"
            f"<ul>{items}</ul>"
        )
    return f'<section id="lineage"><h2>Lineage</h2>{"".join(parts)}</section>'


def _throughput(study: StudyData) -> str:
    """The study's batch-size probe ('' when none was recorded): the newest that measured its
    model and optimizer on its device, reused; else the newest, marked stale with what changed and
    the command that probes again."""
    choice = throughput.choose_probe(
        study.probes, study.record.get("config") or {}, study.record.get("device_kind")
    )
    if choice is None:
        return ""
    probe = choice.probe
    verdict = choice.describe(throughput.reprobe_command(study.record))
    verdict = (
        f'<div class="finding warning"><p><span class="badge warning">stale</span> '
        f"{_e(verdict)}</p></div>"
        if choice.stale
        else f"<p>{_e(verdict[:1].upper() + verdict[1:])}.</p>"
    )
    result = throughput.Probe.from_json(probe["result"])
    summary = throughput.analyze(result.rows)
    rows = []
    for row, gain, note in zip(result.rows, summary.speedups, summary.notes):
        mark = " (max useful)" if row.batch_size == summary.max_useful else ""
        cells = [row.batch_size, f"{row.steps_per_second:.1f}", f"{row.examples_per_second:.0f}",
                 "-" if gain is None else f"{gain:.2f}x"]  # fmt: skip
        rows.append(
            [f'<td class="num">{_e(c)}</td>' for c in cells] + [f"<td>{_e(note + mark)}</td>"]
        )
    table = _table(["batch size", "steps/s", "examples/s", "speedup", "note"], rows)
    # The same reading as the command printed: why it stopped, the advice, how far to trust it.
    lines = "".join(f"<p>{_e(line[:1].upper() + line[1:])}</p>" for line in
                    throughput.conclusion(result, summary))  # fmt: skip
    when = probe["created_at"][:16].replace("T", " ")
    return (
        '<section id="throughput"><h2>Throughput by batch size</h2>'
        f"<p>Measured on {_e(probe['device_kind'])} on {_e(when)} UTC by "
        f"<code>{_e(probe['command'] or 'jaxplay.tuning.batch_size.probe')}</code>: the trainer's "
        f"own compiled period at each batch size, evaluation excluded.</p>{verdict}{table}{lines}"
        "</section>"
    )


def _scaling(study: StudyData) -> str:
    """Steps to a common target per batch size over the study's batch-size family (jaxplay.
    analysis.scaling), its plot and verdict; '' for a study with no --lineage batch_size
    relative."""
    from jaxplay.analysis import scaling

    result = scaling.of_study(study)
    if result is None:
        return ""
    from jaxplay.analysis import plots_scaling  # matplotlib: only for a study with the section

    rows = [
        [f"<td>{_e(c)}</td>" for c in (p.batch_size, p.study, _num(p.train_steps),
                                         _num(p.examples_budget), _num(p.best_value))]
        + [f"<td>{_e(p.steps_to_target if p.steps_to_target is not None else p.why_missing)}</td>",
           f"<td>{_e(_num(p.time_to_target))}</td>"]
        for p in result.points
    ]  # fmt: skip
    table = _table(["batch size", "study", "train.steps", "examples budget", "best",
                    "steps to target", "seconds to target"], rows)  # fmt: skip
    fig = plots_scaling.steps_to_result_plot(result)
    plot = ""
    if fig is not None:
        plot = (
            f'<figure><img src="data:image/png;base64,{_png(fig)}" alt="steps to the result by '
            'batch size"><figcaption>Steps to the target by batch size, log-log; the dashed line '
            "is perfect scaling (steps halve as the batch size doubles).</figcaption></figure>"
        )
        fig.clear()
    steps = "".join(f"<li>{_e(d.describe())}</li>" for d in result.doublings)
    verdict = "".join(f"<p>{_e(line[:1].upper() + line[1:])}</p>" for line in result.verdict())
    return (
        '<section id="scaling"><h2>Batch-size scaling</h2>'
        f"<p>Target {_e(result.objective)} {_e(_num(result.target))} ({_e(result.target_from)}). "
        "Steps to it are known to within each study's train.eval_every.</p>"
        f"{table}<ul>{steps}</ul>{plot}{verdict}</section>"
    )


def _sensitivity(study: StudyData) -> str:
    """Which searched hyperparameters the objective is sensitive to, which interact, which could
    be fixed (jaxplay.analysis.importance); a line saying why when it cannot tell yet, '' when
    nothing was searched."""
    found = importance.analyze(study.record)
    if not found.roles:
        return ""
    head = '<section id="sensitivity"><h2>Sensitivity</h2>'
    if found.reason is not None:
        return f"{head}<p>No sensitivity analysis: it {_e(found.reason)}.</p></section>"
    rows = [
        [
            f"<td><code>{_e(e.paths[0])}</code></td>",
            f"<td>{_e(found.roles.get(e.paths[0], '-'))}</td>",
            f'<td class="num">{e.share:.1%}</td>',
            f'<td class="num">{e.p:.3f}</td>',
            f"<td>{_e(found.verdict(e.paths[0]))}</td>",
        ]
        for e in found.mains
    ] + [
        [f"<td><code>{_e(path)}</code></td>", f"<td>{_e(found.roles.get(path, '-'))}</td>",
         "<td>-</td>", "<td>-</td>", "<td>one value among the feasible trials</td>"]
        for path in found.constant
    ]  # fmt: skip
    table = _table(["hyperparameter", "role", "share", "p (adjusted)", "verdict"], rows)
    pairs = [
        [
            f"<td><code>{_e(' x '.join(e.paths))}</code></td>",
            f'<td class="num">{e.share:.1%}</td>',
            f'<td class="num">{e.p:.3f}</td>',
            f"<td>{'interact: re-tune them together' if e.significant else 'no interaction found'}"
            "</td>",
        ]
        for e in found.pairs[:PAIRS_SHOWN]
    ]
    interactions = (
        "<h3>Interactions (strongest first)</h3>"
        + _table(["pair", "share", "p (adjusted)", "verdict"], pairs)
        if pairs
        else ""
    )
    return (
        f"{head}<p>Which hyperparameters the objective is sensitive to (playbook: exploration "
        f"is for insight): {_e(importance.summary(found))}. A share is the part of the variance "
        "of the objective a hyperparameter's bins explain beyond what as many bins explain by "
        "chance; insensitive means no effect this study could see within its ranges.</p>"
        f"{table}{interactions}</section>"
    )


def _fixed(study: StudyData) -> str:
    rows = [
        [f"<td><code>{_e(path)}</code></td>", f"<td>{_e(_num(value))}</td>"]
        for path, value in sorted(study.fixed.items())
    ]
    table = _table(["fixed hyperparameter", "value"], rows) if rows else "<p>None recorded.</p>"
    return (
        '<section id="fixed"><h2>Fixed hyperparameters: caveats of the conclusions</h2>'
        "<p>Everything the study did not search was fixed. "
        "Its conclusions hold for these fixed values; "
        "with a different value of any of them (another batch size, model depth, schedule...) "
        "they may not, until a study that searches it says so.</p>" + table + "</section>"
    )


# ----------------------------------------------------------------------------------------------
# The page.


def sections(study: StudyData, findings: list | None = None) -> list[tuple[str, str, str]]:
    """(anchor, label, HTML) of every section but the plots, in page order (diagnostics computed
    unless given): the report's body, which the live dashboard (jaxplay.dashboard) shows too."""
    if findings is None:
        findings = diagnostics.diagnose(study)
    parts = [
        ("summary", "Summary", _summary(study)),
        ("lineage", "Lineage", _lineage(study)),
        ("diagnostics", f"Diagnostics ({len(findings)})", _diagnostics(findings)),
        ("trials", "Trials", _trials(study)),
        ("plots", "Plots", None),
        ("sensitivity", "Sensitivity", _sensitivity(study)),
        ("throughput", "Throughput", _throughput(study)),
        ("scaling", "Batch-size scaling", _scaling(study)),
        ("fixed", "Fixed hyperparameters", _fixed(study)),
    ]
    return [(anchor, label, body) for anchor, label, body in parts if body != ""]


def render_html(
    study: StudyData, findings: list | None = None, *, baseline: StudyData | None = None
) -> str:
    """The study's report as one self-contained HTML page (diagnostics computed unless given;
    a `baseline` study drawn on its isolation plots)."""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    parts = sections(study, findings)
    nav = " ".join(f'<a href="#{anchor}">{_e(label)}</a>' for anchor, label, _ in parts)
    body = "\n".join(_plots(study, baseline) if html is None else html for _, _, html in parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Study {_e(study.name)}: jaxplay report</title>"
        f"<style>{STYLE}</style></head>\n<body>"
        f"<header><h1>Study {_e(study.name)}</h1>"
        f'<p class="notes">{_e(study.record.get("notes") or "")}</p><nav>{nav}</nav></header>\n'
        f"{body}\n"
        f"<footer>Written by jaxplay on {now}. The study itself lives in its store; rerun "
        "<code>python -m jaxplay.studies report</code> for a fresh copy.</footer>\n</body></html>\n"
    )


def report_name(study: StudyData) -> str:
    """The report's default file name: report-<study name>.html. Study names are safe file names
    (jaxplay.spec checks them); a name recorded before that rule gets its unsafe characters
    replaced plus a digest of the name, so two names never share a report (a/b and a-b)."""
    name = study.name
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        return f"report-{name}.html"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80] or "study"
    return f"report-{slug}-{hashlib.sha256(name.encode()).hexdigest()[:10]}.html"


def write_report(
    study: StudyData,
    path: str | pathlib.Path | None = None,
    *,
    findings: list | None = None,
    baseline: StudyData | None = None,
) -> pathlib.Path:
    """Writes the report and returns its path: `path` ending in .html is the file itself, any other
    path is a directory (created if missing) that gets `report_name(study)`; default: the current
    one. A `baseline` study is drawn on the isolation plots."""
    target = pathlib.Path.cwd() if path is None else paths.folder(path)  # a gs:// workdir too
    if target.suffix.lower() not in (".html", ".htm") or target.is_dir():
        target = target / report_name(study)
    page = (
        render_html(study, findings)
        if baseline is None  # the call it was before baselines, which code wrapping it expects
        else render_html(study, findings, baseline=baseline)
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target
