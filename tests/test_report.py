"""The HTML report: every section, escaping of user strings, and what headless Chromium makes of
it."""

import html
import re
import subprocess

from factories import constructed_study, float_only_study
from jaxplay import spaces
from jaxplay.analysis import diagnostics
from jaxplay.analysis import html_report as report
from jaxplay.analysis.diagnostics import Finding
from test_plots import example_study

SCRIPT = "<script>document.title='PWNED'</script>"
IMG = "<img src=x onerror=\"document.title='PWNED'\">"
KEY = "<script>alert(1)</script>"  # a config key cannot contain '.', so this payload has none


FINDINGS = [
    Finding(
        "search_boundary",
        "warning",
        "Best learning rate near the upper search bound",
        "The top 3 trials lie in the outer 10% of optimizer.learning_rate's range.",
        "Widen optimizer.learning_rate beyond 0.1 and run another round.",
        (4, 1),
        "optimizer.learning_rate",
    ),
    Finding(
        "overfitting",
        "info",
        "Validation error rises late in trial 4",
        "val/error rose 5% after its minimum at step 600.",
        "Add dropout or label smoothing.",
    ),
]


def _trial_rows(page: str) -> list[int]:
    """Trial indices in the order of the trials table's rows (the only rows that open with a
    number)."""
    rows = re.findall(r'<tr(?: class="best")? id="trial-(\d+)"><td class="num">(\d+)</td>', page)
    assert all(a == b for a, b in rows)  # each row's id names its own trial
    return [int(i) for i, _ in rows]


def test_report_has_every_section_finding_trial_and_fixed_value():
    study = example_study(
        notes="round 1: width vs tuned Adam",
        fixed={"model": {"depth": 3}, "data": {"batch_size": 128}},
    )
    page = report.render_html(study, FINDINGS)
    for section in ("summary", "diagnostics", "trials", "plots", "fixed"):
        assert f'<section id="{section}">' in page
    assert "<h1>Study constructed</h1>" in page and "round 1: width vs tuned Adam" in page
    record = study.record
    for field in (
        "val/error",
        "quasirandom",
        record["git_commit"],
        record["command"],
        "jax 0.10.2",
        "cpu: cpu x1",
        record["executor_reason"],
        record["created_at"],
        record["config_path"],
    ):
        assert html.escape(str(field)) in page, field
    counts = [
        sum(t.status == s for t in study.trials)
        for s in ("completed", "infeasible", "failed", "pending")
    ]
    assert "18: {} completed, {} infeasible, {} failed, {} pending".format(*counts) in page
    for f in FINDINGS:
        assert f.title in page and f.action in page
    assert (
        page.count('<span class="badge warning">') == 1
        and page.count('<span class="badge info">') == 1
    )
    assert sorted(_trial_rows(page)) == [t.index for t in study.trials]
    assert _trial_rows(page)[:3] == [t.index for t in study.feasible[:3]]  # best first
    best = study.feasible[0].index
    assert f'<tr class="best" id="trial-{best}"><td class="num">{best}</td>' in page
    assert "ValueError: out of memory" in page and "loss is NaN at step 300" in page
    for path in study.space.paths:
        assert f"<th>{path}</th>" in page
    fixed = page[page.index('<section id="fixed">') :]
    assert "Its conclusions hold for these fixed values" in fixed
    for path in ("model.depth", "data.batch_size", "train.steps", "seed"):
        assert f"<code>{path}</code>" in fixed
    assert "optimizer.learning_rate" not in fixed  # searched, not fixed
    # 4 axis, 1 isolation, curves, best step, best-of-k
    assert page.count('src="data:image/png;base64,') == 8


def test_report_is_self_contained_without_javascript():
    page = report.render_html(example_study(), [])
    assert '<p class="ok">No problems found.</p>' in page
    assert "<script" not in page.lower() and not re.search(r"\son\w+=", page)
    assert not re.search(
        r'(src|href)="(?!data:image/png;base64,|#)', page
    )  # nothing loaded from elsewhere
    assert "<link" not in page and "@import" not in page


def test_findings_default_to_the_studys_diagnostics():
    study = example_study()
    page = report.render_html(study)
    found = diagnostics.diagnose(study)
    assert (
        found
    )  # the example study has infeasible trials: at least the infeasible fraction is reported
    for f in found:
        assert html.escape(f.title) in page


def payload_study():
    """A study with script payloads in every user-written string the report shows."""
    search = {
        "model": {KEY: spaces.linear(0.0, 1.0)},
        "optimizer": {"name": spaces.categorical([SCRIPT, IMG])},
    }
    path = f"model.{KEY}"
    trials = [
        {
            "params": {path: 0.5, "optimizer.name": SCRIPT},
            "curves": {"val/error": [(0, 0.5), (100, 0.3)]},
        },
        {
            "params": {path: 0.7, "optimizer.name": IMG},
            "curves": {"val/error": [(0, 0.6), (100, 0.4)]},
        },
        {
            "params": {path: 0.9, "optimizer.name": IMG},
            "status": "failed",
            "error": f"Traceback\nValueError: {IMG}",
        },
        {"params": {path: 0.2, "optimizer.name": SCRIPT}, "status": "infeasible", "error": SCRIPT},
    ]
    study = constructed_study(search, trials, name=SCRIPT, notes=IMG, fixed={"data": {"name": IMG}})
    study.record.update(
        config_path=IMG,
        command=f"python -m jaxplay.sweep --config '{SCRIPT}'",
        executor_reason=SCRIPT,
        device_kind=IMG,
        versions={SCRIPT: IMG},
    )
    return study


PAYLOAD_FINDINGS = [
    Finding(SCRIPT, "warning", SCRIPT, IMG, SCRIPT, (0,), f"model.{KEY}"),
    Finding("x", IMG, IMG, SCRIPT, IMG),
]


def test_user_strings_are_escaped():
    page = report.render_html(payload_study(), PAYLOAD_FINDINGS)
    assert "<script" not in page.lower()
    assert all(
        tag.startswith('<img src="data:image/png;base64,')
        for tag in re.findall(r"<img\b[^>]*>", page)
    )
    assert "&lt;script&gt;" in page
    for payload in (SCRIPT, IMG, KEY):
        assert html.escape(payload) in page


def test_write_report_takes_a_directory_or_a_file(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "render_html", lambda study, findings=None: "<!DOCTYPE html>")
    study = example_study()
    assert (
        report.write_report(study, tmp_path / "new", findings=[])
        == tmp_path / "new" / "report-constructed.html"
    )
    assert report.write_report(study, tmp_path / "a" / "r.html", findings=[]).is_file()
    named = report.write_report(payload_study(), tmp_path, findings=[])
    assert named.parent == tmp_path and re.fullmatch(r"report-[A-Za-z0-9._-]+\.html", named.name)


def test_report_names_never_collide_or_leave_the_folder():
    def name_of(study_name):
        study = example_study()
        study.record["name"] = study_name
        return report.report_name(study)

    # Names recorded before study names were checked (a/b) get a digest: a-b keeps its own.
    names = ["a/b", "a-b", "a-b-", "../../escaped", "dup", "dup/", "dup/."]
    files = [name_of(n) for n in names]
    assert len(set(files)) == len(names), files
    assert all(re.fullmatch(r"report-[A-Za-z0-9._-]+\.html", f) for f in files), files
    assert name_of("a-b") == "report-a-b.html"


# ----------------------------------------------------------------------------------------------
# In a browser.

PROBE = """<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  document.body.dataset.images = images.length;
  document.body.dataset.broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  const figures = [...document.querySelectorAll('.figures figure:not(.wide)')];
  document.body.dataset.figures = figures.length;
  document.body.dataset.rows = new Set(
    figures.map(f => f.parentElement.id + Math.round(f.getBoundingClientRect().top))).size;
});
</script>"""


def _dump_dom(chromium: str, page, tmp_path) -> str:
    """The DOM of a local HTML file after headless Chromium loaded it and ran its scripts."""
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            "--window-size=1600,1200",
            "--virtual-time-budget=5000",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0 and "<body" in result.stdout, result.stderr[-3000:]
    return result.stdout


def test_chromium_shows_every_image(chromium, tmp_path):
    path = report.write_report(example_study(), tmp_path / "report.html", findings=FINDINGS)
    page = path.read_text()
    csp = f'content="{report.CSP}"'
    assert csp in page
    # The probe is a script, which the page's policy forbids; allow it and nothing else (images stay
    # under the page's own img-src, so a blocked image would still show as broken).
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.replace(csp, f"content=\"{report.CSP}; script-src 'unsafe-inline'\"").replace(
            "</body>", PROBE + "</body>"
        )
    )
    body = re.search(r"<body[^>]*>", _dump_dom(chromium, probe, tmp_path)).group(0)
    counts = dict(re.findall(r'data-(images|broken|figures|rows)="(\d+)"', body))
    assert counts, f"the probe script did not run: {body}"
    assert int(counts["images"]) == page.count("<img ") == 8
    assert int(counts["broken"]) == 0
    # The plots use the page's width: on a 1600-pixel window a row holds two or more (one grid
    # for every plot; a heading per kind of plot ended a row after each kind's one or two).
    assert 2 * int(counts["rows"]) <= int(counts["figures"]), counts  # two or more a row


def test_chromium_runs_no_payload(chromium, tmp_path):
    path = report.write_report(payload_study(), tmp_path / "report.html", findings=PAYLOAD_FINDINGS)
    page = path.read_text()
    # Also without the page's script-forbidding policy: the escaping alone must hold.
    bare = tmp_path / "no-csp.html"
    bare.write_text(
        page.replace(f'<meta http-equiv="Content-Security-Policy" content="{report.CSP}">', "")
    )
    assert "Content-Security-Policy" not in bare.read_text()
    for copy in (path, bare):
        dom = _dump_dom(chromium, copy, tmp_path)
        title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
        assert (
            title == f"Study {html.escape(SCRIPT, quote=False)}: jaxplay report"
        )  # not set to PWNED
        assert (
            f"<h1>Study {html.escape(SCRIPT, quote=False)}</h1>" in dom
        )  # the payload shows as text
        assert html.escape(IMG, quote=False) in dom
        assert not re.search(r'<img[^>]*src="x"', dom)


# ----------------------------------------------------------------------------------------------
# A real study.


def test_report_of_a_trained_study(tmp_path):
    from jaxplay import analysis, sweep

    sweep.run_study(float_only_study(num_trials=3), tmp_path, log=lambda s: None, report=False)
    study = analysis.load(tmp_path)
    path = report.write_report(study, tmp_path)
    assert path == tmp_path / "report-tiny.html"
    page = path.read_text()
    assert sorted(_trial_rows(page)) == [0, 1, 2]
    # 4 axis plots (nothing scientific), the curves, the gradient norms (every trial logs them)
    # and the best step; 3 trials are too few for best-of-k.
    assert page.count('src="data:image/png;base64,') == 7
    assert (
        '<section id="diagnostics">' in page
        and "model.width" in page[page.index('<section id="fixed">') :]
    )
