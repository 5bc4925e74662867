"""Studies weighed against each other (`python -m jaxplay.studies compare`, `report --baseline`,
`decisions`): a group of studies by their best trials, tuning parity between the sides, the
baseline's line on the isolation plots, and the history of the rounds' decisions."""

import hashlib
import json
import math
import re
import statistics

import pytest

from factories import constructed_study, float_only_study, tiny_config
from jaxplay import analysis, spaces, studies
from jaxplay import spec as spec_lib
from jaxplay import store as store_lib
from jaxplay.analysis import comparison, plot_data, plots, variance
from jaxplay.dashboard import pages
from jaxplay.driver.plan import plan
from jaxplay.errors import ConfigError
from jaxplay.tuning import rounds
from jaxplay.values import cell
from test_variance import _record


def _write(url, name, config, results, *, parent=None, action=None):
    """Study `name` of `config` written straight into the store (no training): trial i ends with
    best val/error results[i] (None: infeasible), as a sweep records it."""
    config.study.num_trials = len(results)
    spec = spec_lib.resolve(config)
    tree = json.loads(json.dumps(spec.tree))
    if parent:
        tree["study"]["parent"] = {"study": parent, "action": action, "changes": []}
    store = store_lib.Store(url)
    study_id = store.open_study(
        name, hashlib.sha256((spec.hash() + name).encode()).hexdigest(), config_path="study.py",
        config=tree, notes="", objective=config.study.objective, mode=config.study.mode,
        algorithm="quasirandom", seed=0, num_trials=len(results), command="test", versions={},
        device_kind="cpu",
    )  # fmt: skip
    store.add_trials(study_id, plan(spec).params[: len(results)])
    for index, best in enumerate(results):
        trial_id = store.claim(study_id, "test-worker", indices=[index])[0]
        for step, value in ((0, 0.9), (50, 0.6), (100, best)):
            if value is not None:
                store.log_metrics(trial_id, step, {"val/error": value, "train/loss": 2 * value})
        if best is None:
            store.finish(trial_id, "infeasible", error="train/loss is nan at step 80")
        else:
            store.finish(trial_id, "completed", best_value=best, best_step=100, steps_run=100)
    store.update_best(study_id)
    store.close()


def _width_study(width, num_trials):
    """float_only_study (a nuisance search of the learning rate, b1, smoothing and dropout) at a
    fixed model.width: one study per scientific value."""
    c = float_only_study(num_trials=num_trials)
    c.model.width = width
    return c


def _cli(capsys, *args):
    code = studies.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _columns(line):
    return re.split(r"\s{2,}", line.strip())


# ------------------------------------------------------------------------------------------------
# Row 29: one study per scientific value, compared by their best trials.


def test_three_studies_are_compared_by_their_best_trials_keyed_by_what_differs(store_url, capsys):
    _write(store_url, "w16", _width_study(16, 3), [0.35, 0.30, 0.40])
    _write(store_url, "w32", _width_study(32, 3), [0.20, 0.25, None])
    _write(store_url, "w64", _width_study(64, 3), [0.23, 0.21, 0.30])
    rerun = [0.20, 0.21, 0.19, 0.20]
    _write(store_url, "w32-rerun", _width_study(32, 4), rerun, parent="w32", action="rerun")
    code, out, err = _cli(
        capsys, "compare", f"--store={store_url}", "--study=w16", "--other=w32", "--other=w64"
    )
    assert code == 0, err
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("study"))
    header, *rows = (_columns(line) for line in lines[at : at + 4])
    # Keyed by the one fixed setting that differs: not the searched values, not study.* fields.
    assert header == ["study", "model.width", "best val/error", "trial", "feasible", "against w32"]
    table = {r[0]: r for r in rows}
    assert [r[0] for r in rows] == ["w16", "w32 *", "w64"]  # as named, the best starred
    assert [table[n][1] for n in ("w16", "w32 *", "w64")] == ["16", "32", "64"]
    assert table["w32 *"][2:5] == ["0.2", "0", "2 of 3"] and table["w32 *"][5] == "the best"
    # The verdict is variance.py's rule: the rerun's std, 2.83 x std for both sides.
    threshold = variance.DIFFERENCE_Z * statistics.stdev(rerun)
    assert 0.30 - 0.20 > threshold > 0.21 - 0.20
    assert table["w16"][5].startswith("0.1 worse: beyond trial noise")
    assert table["w64"][5].startswith("0.01 worse: within trial noise")
    # The same group named with --study only gives the same table.
    code, again, _ = _cli(capsys, "compare", f"--store={store_url}", "--study=w16", "--study=w32",
                          "--study=w64")  # fmt: skip
    assert code == 0 and again == out
    # Equal searches and budgets within the ratio: no parity caution.
    assert comparison.PARITY_HEADING not in out
    # A study named twice, and a study of another objective, are refused with the field.
    code, _, err = _cli(capsys, "compare", f"--store={store_url}", "--study=w16", "--other=w32",
                        "--other=w16")  # fmt: skip
    assert code == 2 and "--study/--other w16: named twice" in err
    other = _width_study(128, 2)
    other.study.objective = "val/loss"
    _write(store_url, "loss", other, [0.5, 0.6])
    with pytest.raises(ConfigError, match="--study/--other loss: it optimizes val/loss"):
        comparison.group([analysis.load(store=store_url, study=n) for n in ("w16", "w32", "loss")])


def test_setting_differences_skip_searched_and_study_fields():
    search = {"optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)}}
    trial = [{"params": {"optimizer.learning_rate": 1e-3}, "curves": {"val/error": [(0, 0.3)]}}]
    a = constructed_study(search, trial, name="a", fixed={"model": {"width": 16, "depth": 2}})
    b = constructed_study(search, trial, name="b", fixed={"model": {"width": 32, "depth": 2}})
    c = constructed_study({}, [{"params": {}, "curves": {"val/error": [(0, 0.3)]}}], name="c",
                          fixed={"model": {"width": 32, "depth": 3}})  # fmt: skip
    # optimizer.learning_rate differs too (searched by a and b, fixed in c): not a setting.
    assert comparison.setting_differences([a, b, c]) == {
        "model.depth": [2, 2, 3],
        "model.width": [16, 32, 32],
    }
    assert comparison.setting_differences([a, a]) == {}


def test_two_studies_print_todays_comparison_unchanged(store_url, capsys):
    _write(store_url, "r1", _width_study(32, 3), [0.30, 0.25, 0.28])
    _write(store_url, "r2", _width_study(32, 3), [0.22, 0.26, 0.24])
    code, out, err = _cli(capsys, "compare", f"--store={store_url}", "--study=r1", "--other=r2")
    assert code == 0, err
    a, b = (analysis.load(store=store_url, study=n) for n in ("r1", "r2"))
    assert out == analysis.compare(a, b) + "\n"


# ------------------------------------------------------------------------------------------------
# Row 98: a baseline tuned with the same care.


def _searched(name, n, learning_rate=(1e-4, 1e-1), extra=None):
    search = {"optimizer": {"learning_rate": spaces.log(*learning_rate)}, **(extra or {})}
    trials = [
        {"params": {"optimizer.learning_rate": 1e-3}, "curves": {"val/error": [(0, 0.2 + i / 100)]}}
        for i in range(n)
    ]
    return constructed_study(search, trials, name=name)


def test_parity_cautions_on_trial_budgets_beyond_the_ratio():
    few = 3
    within = math.floor(comparison.PARITY_BUDGET_RATIO * few)
    assert comparison.parity(_searched("a", few), _searched("b", within)) == []
    (line,) = comparison.parity(_searched("a", few), _searched("b", within + 1))
    assert line.startswith(f"trial budgets differ: b has {within + 1} feasible trials, a {few}")
    assert f"{(within + 1) / few:.3g}x" in line and "give a as many feasible trials" in line
    # Infeasible trials are no budget: 3 feasible of 8 weighs as 3.
    failed = _searched("c", 8)
    for t in failed.trials[few:]:
        t.status = "infeasible"
    assert comparison.parity(_searched("a", within), failed) == []


def test_parity_cautions_on_a_nuisance_searched_on_one_side_only(store_url, capsys):
    _write(store_url, "tuned", float_only_study(num_trials=3), [0.20, 0.22, 0.25])
    fixed = tiny_config()  # the same model, its learning rate and the rest fixed
    _write(store_url, "fixed-lr", fixed, [0.24, 0.26, 0.25])
    code, out, err = _cli(capsys, "compare", f"--store={store_url}", "--study=tuned",
                          "--other=fixed-lr")  # fmt: skip
    assert code == 0, err
    assert comparison.PARITY_HEADING in out
    cautions = [line for line in out.splitlines() if line.startswith("  caution: ")]
    searched = ["model.dropout", "optimizer.b1", "optimizer.learning_rate", "train.label_smoothing"]
    for path in searched:
        (line,) = [c for c in cautions if c.startswith(f"  caution: {path}:")]
        value = cell(analysis.load(store=store_url, study="fixed-lr").fixed[path])
        assert "searched by tuned" in line and f"fixed at {value} in fixed-lr" in line
    assert len(cautions) == len(searched)  # budgets are equal: 3 feasible trials each
    # The dashboard's compare page says the same.
    a, b = (analysis.load(store=store_url, study=n) for n in ("tuned", "fixed-lr"))
    page = pages.compare(a, b, "verdict", {"studies": []})
    assert 'id="parity"' in page and "optimizer.learning_rate: a nuisance" in page
    assert 'id="parity"' not in pages.compare(a, a, "verdict", {"studies": []})


def test_parity_cautions_on_different_ranges_of_one_nuisance():
    wide, narrow = _searched("wide", 4), _searched("narrow", 4, learning_rate=(1e-3, 1e-2))
    (line,) = comparison.parity(wide, narrow)
    assert line.startswith(
        "optimizer.learning_rate: searched over log [0.0001, 0.1] in wide but log [0.001, 0.01] "
        "in narrow"
    )
    assert comparison.parity(wide, _searched("same", 4)) == []
    # Scientific on the other side: searched there, compared rather than optimized away.
    width = {"model": {"width": spaces.discrete([16, 32], role="scientific")}}
    science = constructed_study(
        {**width, "optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)}},
        [{"params": {"optimizer.learning_rate": 1e-3, "model.width": 16},
          "curves": {"val/error": [(0, 0.3)]}}] * 4,
        name="science",
    )  # fmt: skip
    nuisance_width = _searched("nw", 4, extra={"model": {"width": spaces.discrete([16, 32])}})
    assert comparison.parity(nuisance_width, science) == []


# ------------------------------------------------------------------------------------------------
# Row 41: the baseline on the isolation plots.

WIDTHS = (16, 32, 64)


def _width_search(name, values):
    """A joint study: model.width scientific, the learning rate nuisance; values[i] per trial."""
    search = {
        "model": {"width": spaces.discrete(list(WIDTHS), role="scientific")},
        "optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)},
    }
    trials = [
        {"params": {"model.width": WIDTHS[i % 3], "optimizer.learning_rate": 1e-3 * (i + 1)},
         "curves": {"val/error": [(0, 0.9), (100, v)]}}
        for i, v in enumerate(values)
    ]  # fmt: skip
    return constructed_study(search, trials, name=name)


def test_isolation_plot_draws_the_baseline_with_its_noise_band():
    study = _width_search("wd", [0.30, 0.22, 0.26, 0.27, 0.21, 0.25])
    base = _width_search("no-wd", [0.28, 0.24, 0.29, 0.31])
    fig = plots.isolation_plot(study, "model.width", baseline=base)
    ax = fig.axes[0]
    (line,) = [ln for ln in ax.lines if ln.get_label().startswith("baseline no-wd")]
    assert set(line.get_ydata()) == {0.24} and "best of 4" in line.get_label()
    assert any(t.get_text() == "no-wd: best of 4" for t in ax.texts)
    assert not ax.patches  # no rerun: no noise band, and the caption says so
    (caption,) = [c for s, c, _ in plots.figures(study, baseline=base) if s == "Isolation plots"]
    assert "no noise band" in caption and "--from_study no-wd --lineage rerun" in caption
    # A rerun of the baseline's best measures the trial noise: the band is 2.83 x its std wide.
    rerun = [0.24, 0.25, 0.23, 0.26]
    base.family = [_record("no-wd-rerun", rerun, parent="no-wd", action="rerun")]
    drawn = plot_data.isolation_baseline(study, base)
    half = variance.DIFFERENCE_Z * statistics.stdev(rerun)
    assert drawn.band == pytest.approx((0.24 - half, 0.24 + half))
    ax = plots.isolation_plot(study, "model.width", baseline=base).axes[0]
    (band,) = ax.patches
    ys = ax.transData.inverted().transform(band.get_verts())[:, 1]
    assert (ys.min(), ys.max()) == pytest.approx(drawn.band, rel=1e-6)
    (caption,) = [c for s, c, _ in plots.figures(study, baseline=base) if s == "Isolation plots"]
    assert f"+/- {half:.2g}" in caption and "beyond the noise" in caption
    # A baseline must share the objective and be another study.
    other = _width_search("acc", [0.9])
    other.record["objective"] = "val/accuracy"
    with pytest.raises(ConfigError, match="--baseline acc: it optimizes val/accuracy"):
        plots.isolation_plot(study, "model.width", baseline=other)
    with pytest.raises(ConfigError, match="--baseline wd: that is the study itself"):
        plot_data.isolation_baseline(study, study)


def test_report_with_a_baseline_draws_it_and_cautions_on_parity(store_url, capsys, tmp_path):
    joint = float_only_study(num_trials=4)
    joint.search.model.width = spaces.discrete([16, 32], role="scientific")
    _write(store_url, "wd", joint, [0.20, 0.22, 0.25, 0.21])
    _write(store_url, "no-wd", tiny_config(), [0.26])
    out = tmp_path / "r.html"
    code, printed, err = _cli(capsys, "report", f"--store={store_url}", "--study=wd",
                              "--baseline=no-wd", f"--output={out}")  # fmt: skip
    assert code == 0, err
    assert printed.strip() == str(out)
    html = out.read_text()
    assert "Against baseline <strong>no-wd</strong> (its best is drawn on each isolation" in html
    assert "optimizer.learning_rate: a nuisance hyperparameter searched by wd" in html
    assert "trial budgets differ: wd has 4 feasible trials, no-wd 1" in html
    assert "The dashed purple line is baseline no-wd&#x27;s best (0.26, trial 0" in html
    code, _, err = _cli(capsys, "report", f"--store={store_url}", "--study=wd",
                        "--baseline=nothing", f"--output={out}")  # fmt: skip
    assert code == 2 and "no study named 'nothing'" in err


# ------------------------------------------------------------------------------------------------
# Rows 21/23/45: the history of rounds, and compare against the incumbent.


def test_decisions_print_the_history_of_rounds(store_url, capsys):
    _write(store_url, "r1", _width_study(32, 2), [0.30, 0.20])
    code, out, _ = _cli(capsys, "decisions", f"--store={store_url}")
    assert code == 0 and out.startswith("no decisions in this store yet")
    _write(store_url, "r2", _width_study(32, 1), [0.25], parent="r1", action="refine")
    _write(store_url, "r3", _width_study(32, 1), [0.22], parent="r1", action="refine")
    rounds.decide(store_url, "r1", "tune the learning rate")
    rounds.decide(store_url, "r2", "narrow b1", reject=True, why="worse than r1")
    rounds.decide(store_url, "r3", "try warmup", why="simpler schedule", force=True)
    code, out, err = _cli(capsys, "decisions", f"--store={store_url}")
    assert code == 0, err
    heads = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("round ")]
    assert heads == [
        "launched trial 1 of r1 (val/error 0.2), the store's first incumbent",
        "rejected trial 0 of r2 (val/error 0.25); the incumbent stays trial 1 of r1 (0.2)",
        "launched trial 0 of r3 (val/error 0.22), forced, replacing trial 1 of r1 (0.2)",
    ]
    assert re.match(r"round 1, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: ", out)
    assert "  goal: narrow b1\n  why: worse than r1" in out and "  why: simpler schedule" in out
    assert out.rstrip().endswith("incumbent now: trial 0 of r3")
    code, text, _ = _cli(capsys, "decisions", f"--store={store_url}", "--json")
    assert [(d["study"], d["launched"]) for d in json.loads(text)] == [
        ("r1", True),
        ("r2", False),
        ("r3", True),
    ]


def test_compare_without_other_weighs_the_study_against_the_incumbent(store_url, capsys):
    _write(store_url, "r1", _width_study(32, 2), [0.30, 0.20])
    _write(store_url, "r2", _width_study(32, 2), [0.25, 0.18], parent="r1", action="refine")
    code, _, err = _cli(capsys, "compare", f"--store={store_url}", "--study=r2")
    assert code == 2 and "--other: the store holds no incumbent yet" in err
    rounds.decide(store_url, "r1", "baseline")
    code, out, err = _cli(capsys, "compare", f"--store={store_url}", "--study=r2")
    assert code == 0, err
    first, table = out.split("\n", 1)
    assert first.startswith("against the incumbent: trial 1 of r1 (0.2), launched ")
    assert first.endswith("(goal: baseline)")
    a, b = (analysis.load(store=store_url, study=n) for n in ("r2", "r1"))
    assert table == analysis.compare(a, b) + "\n"
    code, _, err = _cli(capsys, "compare", f"--store={store_url}", "--study=r1")
    assert code == 2 and "the incumbent's study 'r1' is this study itself" in err
