"""The dashboard's pages: the store's studies with their lineage, a study live, two studies
compared. Server-rendered HTML; every string that came from a user is escaped here (as the report
escapes its pages), and the page's script only arranges what the server escaped.
"""

from __future__ import annotations

import json
import urllib.parse

from jaxplay.analysis import comparison, html_report
from jaxplay.analysis.study import StudyData
from jaxplay.values import fmt

_e = html_report._e
STATUSES = html_report.STATUSES

STYLE = """
.live { color: #555; font-size: 13px; } .live .dot { color: #2e8b57; }
.live.lost .dot, .live.lost { color: #c0392b; }
.plot { width: 100%; height: 420px; } .plot.wide { height: 460px; }
.lineage ul { list-style: none; padding-left: 22px; margin: 2px 0; }
.lineage > ul { padding-left: 0; } .lineage .action { color: #666; font-size: 12px; }
.lineage .beside { color: #666; font-size: 12px; margin-left: 10px; }
.filter { margin: 4px 0 8px; padding: 3px 6px; width: 320px; }
#trials table.trials { max-height: 75vh; overflow: auto; }
#trials table.trials thead th { position: sticky; top: 0; z-index: 1; }
th.sortable { cursor: pointer; user-select: none; } th.sorted-asc::after { content: " \\25B2"; }
th.sorted-desc::after { content: " \\25BC"; }
tr.selected { outline: 2px solid #2c7fb8; }
#selected { position: fixed; right: 16px; bottom: 16px; max-width: 420px; background: #fff;
            border: 1px solid #bbb; box-shadow: 0 2px 8px rgba(0,0,0,.15); padding: 8px 12px;
            font-size: 13px; display: none; } #selected.shown { display: block; }
.columns { display: grid; grid-template-columns: 1fr 1fr; gap: 0 28px; }
.verdict { background: #f6f6f6; padding: 8px; }
form.compare select { max-width: 300px; }
"""


def _page(title: str, body: str, script: bool = True) -> str:
    scripts = (
        '<script defer src="/static/plotly.min.js"></script>'
        '<script defer src="/static/dashboard.js"></script>'
        if script
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>"
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/dashboard.css">'
        f"{scripts}</head>\n"
        f"<body>{body}<footer>jaxplay dashboard: read-only, over the store; "
        '<a href="/">all studies</a></footer></body></html>\n'
    )


def _json(value) -> str:
    """JSON to embed in a <script type="application/json"> block: '<' never appears raw, so no
    string in it can close the block."""
    return json.dumps(value, allow_nan=False).replace("<", "\\u003c").replace("&", "\\u0026")


def study_url(name: str) -> str:
    return "/study/" + urllib.parse.quote(name, safe="")


def _counts(counts: dict) -> str:
    return (
        " ".join(
            f'<span class="badge {s}">{counts[s]} {s}</span>' for s in STATUSES if counts.get(s)
        )
        or "no trials"
    )


# ----------------------------------------------------------------------------------------------
# Home: every study, and how they derive from one another.


def home(url: str, studies: list[dict]) -> str:
    body = (
        "<header><h1>Studies</h1>"
        f'<p class="live" id="live" data-refresh="/fragment/home"><span class="dot">&#9679;</span> '
        f"store <code>{_e(url)}</code>, read-only; this page follows it</p></header>"
        f'<div id="home">{home_fragment(studies)}</div>'
    )
    return _page("jaxplay studies", body)


def home_fragment(studies: list[dict]) -> str:
    if not studies:
        return (
            "<p>The store holds no study yet: start one with "
            "<code>python -m jaxplay.sweep</code>.</p>"
        )
    rows = []
    for s in studies:
        best = (
            f"{fmt(s['best_value'])} (trial {s['best_trial']})"
            if s["best_trial"] is not None
            else "-"
        )
        rows.append(
            [
                f'<td><a href="{_e(study_url(s["name"]))}">{_e(s["name"])}</a>'
                + (' <strong class="incumbent">incumbent</strong>' if s.get("incumbent") else "")
                + "</td>",
                f"<td>{_e(s['notes'] or '')}</td>",
                f"<td>{_e(s['objective'])} ({_e(s['mode'])})</td>",
                f"<td>{_counts(s['status_counts'])}</td>",
                f'<td class="num">{_e(best)}</td>',
                f"<td>{_e((s['created_at'] or '')[:19].replace('T', ' '))}</td>",
                f"<td>{_e((s['updated_at'] or '')[:19].replace('T', ' '))}</td>",
            ]
        )
    table = html_report._table(
        ["study", "notes", "objective", "trials", "best", "created (UTC)", "updated (UTC)"],
        rows,
        "trials studies",
    )

    def options(chosen: int) -> str:
        return "".join(
            f'<option value="{_e(s["name"])}"{" selected" if i == chosen else ""}>'
            f"{_e(s['name'])}</option>"
            for i, s in enumerate(studies)
        )

    compare = (
        '<form class="compare" method="get" action="/compare"><h2>Compare two studies</h2>'
        f'<select name="a" aria-label="first study">{options(0)}</select> against '
        f'<select name="b" aria-label="second study">{options(len(studies) - 1)}</select> '
        '<button type="submit">compare</button></form>'
        if len(studies) > 1
        else ""
    )
    return (
        f'<section id="studies">{table}</section>'
        f'<section class="lineage" id="lineage"><h2>Lineage</h2>{lineage_tree(studies)}</section>'
        f"{compare}"
    )


# Derivations that repeat the parent's configurations (noise measurements) rather than start a new
# round: shown beside their parent, not as a step down the tree.
BESIDE = ("rerun", "reseed")


def lineage_tree(studies: list[dict]) -> str:
    """The studies as a tree: round 1 -> refine -> exploit -> round 2..., with each study's reruns
    and reseeds beside it."""
    names = {s["name"] for s in studies}
    children: dict[str | None, list[dict]] = {}
    for s in studies:
        parent = s["parent"] if s["parent"] in names else None
        children.setdefault(parent, []).append(s)

    def node(s: dict) -> str:
        kids = children.get(s["name"], [])
        beside = [k for k in kids if k["action"] in BESIDE]
        below = [k for k in kids if k["action"] not in BESIDE]
        action = f' <span class="action">{_e(s["action"])}</span>' if s["action"] else ""
        best = f" best {fmt(s['best_value'])}" if s["best_value"] is not None else ""
        side = "".join(
            f'<span class="beside">{_e(k["action"])}: <a href="{_e(study_url(k["name"]))}">'
            f"{_e(k['name'])}</a>{_e(_best(k))}</span>"
            for k in beside
        )
        sub = "".join(node(k) for k in below)
        return (
            f'<li>{action} <a href="{_e(study_url(s["name"]))}">{_e(s["name"])}</a>'
            f'<span class="beside">{_e(best)}</span>{side}'
            + (f"<ul>{sub}</ul>" if sub else "")
            + "</li>"
        )

    return "<ul>" + "".join(node(s) for s in children.get(None, [])) + "</ul>"


def _best(s: dict) -> str:
    return f" (best {fmt(s['best_value'])})" if s["best_value"] is not None else ""


# ----------------------------------------------------------------------------------------------
# A study, live.


def study(data: StudyData, payload: dict, sections: list, version: str) -> str:
    name = data.name
    labels = {anchor: label for anchor, label, _ in sections}
    nav = " ".join(
        f'<a href="#{anchor}">{_e(labels.get(anchor, "Running"))}</a>'
        for anchor in ("running", *PARTS)
        if anchor in labels or anchor == "running"
    )
    body = (
        f'<header><h1>Study {_e(name)}</h1><p class="notes">{_e(data.record.get("notes") or "")}'
        f"</p><nav>{nav}</nav>"
        f'<p class="live" id="live" data-api="/api{_e(study_url(name))}" '
        f'data-version="{_e(version)}"><span class="dot">&#9679;</span> '
        f'<span id="evaluations" data-count="{payload["evaluations"]}">'
        f'{payload["evaluations"]} evaluations</span> · <span id="state">live</span></p>'
        "</header>"
        '<section id="running"><h2>Running trials</h2><div id="running-table"></div></section>'
        f'<div id="sections">{sections_html(sections)}</div>'
        '<div id="selected" role="dialog" aria-live="polite"></div>'
        f'<script type="application/json" id="payload">{_json(payload)}</script>'
    )
    return _page(f"Study {name}: jaxplay", body)


# The report's sections, in the order someone watching a study reads them: the plots first, then
# what the playbook concludes, the trials, and the study's record. "plots" is the dashboard's own
# (drawn by its script and updated in place); the others are replaced by the server's fresh HTML
# when the study changes.
PARTS = ("plots", "diagnostics", "trials", "summary", "lineage", "throughput", "fixed")


def parts(sections: list) -> dict[str, str]:
    """{anchor: HTML} of the report's sections but the plots ('' for an absent one)."""
    given = {anchor: body for anchor, _, body in sections}
    return {anchor: given.get(anchor) or "" for anchor in PARTS if anchor != "plots"}


def sections_html(sections: list) -> str:
    html_of = parts(sections)
    return "\n".join(
        '<section id="plots"><h2>Plots</h2><p>Hover over a point for its trial and '
        "hyperparameters; click it to find the trial in the table.</p>"
        '<div class="figures" id="figures"></div></section>'
        if anchor == "plots"
        else f'<div class="part" data-part="{anchor}">{html_of[anchor]}</div>'
        for anchor in PARTS
    )


# ----------------------------------------------------------------------------------------------
# Two studies side by side.


def compare(a: StudyData, b: StudyData, verdict: str, curves: dict) -> str:
    summaries = "".join(
        f'<div><h2><a href="{_e(study_url(s.name))}">{_e(s.name)}</a></h2>'
        f"{html_report._summary(s)}</div>"
        for s in (a, b)
    )
    body = (
        f"<header><h1>{_e(a.name)} against {_e(b.name)}</h1></header>"
        '<section id="verdict"><h2>Comparison</h2><p>What <code>python -m jaxplay.studies '
        "compare</code> says: outcomes, search spaces, differing fixed values, diagnostics, and "
        "whether the difference is beyond the trial and study noise the lineage measured.</p>"
        f'<pre class="verdict">{_e(verdict)}</pre></section>'
        f"{_parity(a, b)}"
        '<section id="progress"><h2>Best so far</h2><div class="plot" id="best-so-far"></div>'
        "</section>"
        f'<div class="columns">{summaries}</div>'
        f'<script type="application/json" id="compare">{_json(curves)}</script>'
    )
    return _page(f"{a.name} against {b.name}: jaxplay", body)


def _parity(a: StudyData, b: StudyData) -> str:
    """The cautions of `studies compare` where the two were not tuned with the same care."""
    cautions = comparison.parity(a, b)
    if not cautions:
        return ""
    items = "".join(f"<li>{_e(c)}</li>" for c in cautions)
    return (
        f'<section id="parity"><h2>Tuned with the same care?</h2><p>'
        f"{_e(comparison.PARITY_HEADING)}</p><ul>{items}</ul></section>"
    )


def best_so_far(s: StudyData) -> dict:
    """The best objective found after each finished trial, in trial order."""
    best, xs, ys = None, [], []
    for t in sorted(s.finished, key=lambda t: t.index):
        if t.feasible and (best is None or s.better(t.best_value, best)):
            best = t.best_value
        xs.append(len(xs) + 1)
        ys.append(best)
    # Escaped: Plotly renders legend and axis titles as a small subset of HTML.
    return {"name": _e(s.name), "objective": _e(s.objective), "n": xs, "best": ys}


def error(status: int, message: str) -> str:
    return _page(
        f"{status}: jaxplay dashboard",
        f"<header><h1>{status}</h1></header><p>{_e(message)}</p>",
        script=False,
    )
