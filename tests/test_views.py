"""Two views of a study the store already allows: how many trials lie near the best on the axis
plots (playbook "Not sampling enough points": how many points are in the "good" region) and each
trial's best step as a fraction of its train.steps against the 10% and 25% rules (playbook
"Deciding how long to train"). Their data, the report's figures and the dashboard's payload."""

import json

import pytest

from factories import constructed_study
from jaxplay import spaces
from jaxplay.analysis import plot_data, plots, variance
from jaxplay.analysis.diagnostics import NOT_CONVERGED_FRACTION, SATURATED_FRACTION
from jaxplay.dashboard import data as dashboard_data

SEARCH = {"optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)}}


def _study(values, *, mode="min", steps=1000, best_steps=None, extra=(), **kwargs):
    """One trial per value: its objective curve reaches `value` at best_steps[i] (default: the
    last step) and is worse at every other eval; `extra` trials are appended as they are."""
    objective = "val/error" if mode == "min" else "val/accuracy"
    worse = 1.0 if mode == "min" else 0.0
    trials = []
    for i, value in enumerate(values):
        at = best_steps[i] if best_steps else steps
        evals = sorted({0, at, steps})
        curve = [(s, value if s == at else worse) for s in evals]
        trials.append(
            {"params": {"optimizer.learning_rate": 10 ** (-4 + 3 * i / max(len(values), 2))},
             "curves": {objective: curve}}
        )  # fmt: skip
    return constructed_study(
        SEARCH, trials + list(extra), objective=objective, mode=mode, steps=steps, **kwargs
    )


# ------------------------------------------------------------------------------------------------
# Near-best count (item 36).


def test_near_best_counts_the_trials_within_the_default_epsilon():
    # 5% of the best error 0.20 is 0.01: 0.20, 0.205 and exactly 0.21 are near, 0.2101 is not.
    study = _study([0.30, 0.2101, 0.20, 0.21, 0.205])
    near = plot_data.near_best(study)
    assert near.epsilon == pytest.approx(plot_data.NEAR_BEST_RELATIVE * 0.20)
    assert near.trials == (2, 4, 3) and near.count == 3  # best first
    assert near.bound == pytest.approx(0.21) and not near.measured
    assert "5% of the best value's distance from 0" in near.describe()
    assert "--lineage rerun" in near.describe()


def test_near_best_of_an_accuracy_measures_the_distance_from_one():
    # best 0.90: 5% of its distance from 1 is 0.005, so 0.895 is the last value still near.
    study = _study([0.90, 0.896, 0.894, 0.5], mode="max")
    near = plot_data.near_best(study)
    assert near.epsilon == pytest.approx(0.005) and near.bound == pytest.approx(0.895)
    assert near.trials == (0, 1)
    assert "distance from 1" in near.describe()


def test_near_best_uses_the_trial_noise_a_rerun_measured():
    study = _study([0.30, 0.31, 0.33, 0.40], name="round1")
    rerun = _study([0.30, 0.31, 0.32], name="round1-rerun").record
    rerun["config"]["study"] = {"parent": {"study": "round1", "action": "rerun"}}
    study.family = [rerun]
    near = plot_data.near_best(study)
    noise = variance.trial_noise([rerun, study.record], {"round1"})
    assert near.measured and near.epsilon == pytest.approx(noise.threshold)  # 2.83 x std 0.01
    assert near.trials == (0, 1)  # 0.33 is 0.03 from the best: beyond 0.0283
    assert "trial noise std 0.01 measured by round1-rerun over 3 seeds, a rough" in near.describe()


def test_near_best_is_none_before_a_trial_is_feasible():
    study = _study([], extra=[{"params": {"optimizer.learning_rate": 1e-3}, "status": "failed"}])
    assert plot_data.near_best(study) is None


def _collection(fig, label_start):
    found = [c for c in fig.axes[0].collections if c.get_label().startswith(label_start)]
    return found[0] if found else None


def test_axis_plot_counts_and_marks_the_near_best_trials():
    # Near the best 0.20 (epsilon 0.01): five trials; the top 3 stay stars, the other 2 light green.
    study = _study([0.20, 0.202, 0.204, 0.206, 0.21, 0.25, 0.3])
    fig = plots.axis_plot(study, "optimizer.learning_rate")
    ax = fig.axes[0]
    assert "7 finished trials, 5 within 0.01 of the best" in ax.get_title().replace("\n", " ")
    near = _collection(fig, "Near-best")
    assert sorted(y for _, y in near.get_offsets()) == pytest.approx([0.206, 0.21])
    assert len(_collection(fig, "Top 3").get_offsets()) == 3
    assert len(_collection(fig, "Feasible").get_offsets()) == 2
    [band] = [p for p in ax.patches if p.get_label().startswith("Within 0.01 of the best")]
    assert band.get_y() == pytest.approx(0.20)
    assert band.get_y() + band.get_height() == pytest.approx(0.21)
    caption = next(c for s, c, _ in plots.figures(study) if s == "Axis plots")
    assert "within 0.01 of the best (5% of the best value's distance from 0" in caption


# ------------------------------------------------------------------------------------------------
# Best step (item 51).


def test_the_fractions_are_the_diagnostics_thresholds():
    assert plot_data.EARLY_FRACTION == SATURATED_FRACTION
    assert plot_data.LATE_FRACTION == NOT_CONVERGED_FRACTION


def test_best_steps_are_fractions_of_each_trials_length_best_first():
    failed = {"params": {"optimizer.learning_rate": 1e-3}, "status": "failed"}
    study = _study([0.3, 0.2, 0.25, 0.4], best_steps=[100, 900, 500, 750], extra=[failed])
    # A trial whose search set its own train.steps is measured against that length.
    study.trials[3].params["train.steps"] = 3000
    points = plot_data.best_steps(study)
    assert [q["trial"].index for q in points] == [1, 2, 0, 3]  # feasible only, best first
    assert [q["fraction"] for q in points] == pytest.approx([0.9, 0.5, 0.1, 0.25])
    assert [q["zone"] for q in points] == ["late", None, "early", None]
    assert [q["steps"] for q in points] == [1000, 1000, 1000, 3000]
    assert plot_data.zone(0.75) == "late" and plot_data.zone(0.7499) is None
    assert plot_data.zone(0.0) == "early" and plot_data.zone(0.1001) is None


def test_best_steps_need_a_feasible_trial():
    study = _study([], extra=[{"params": {"optimizer.learning_rate": 1e-3}, "status": "failed"}])
    with pytest.raises(plot_data.NothingToPlot):
        plot_data.best_steps(study)
    assert "Best step" not in [s for s, _, _ in plots.figures(study)]


def test_best_step_plot_draws_each_trial_against_the_10_and_25_percent_lines():
    study = _study([0.3, 0.2, 0.25, 0.4, 0.35], best_steps=[50, 1000, 800, 500, 900])
    fig = plots.best_step_plot(study)
    ax = fig.axes[0]
    lines = sorted(ln.get_ydata()[0] for ln in ax.lines if ln.get_linestyle() == "--")
    assert lines == pytest.approx([SATURATED_FRACTION, NOT_CONVERGED_FRACTION])
    labels = [t.get_text() for t in ax.texts]
    assert "first 10%: saturated early" in labels and "last 25%: still improving" in labels
    drawn = {
        (round(x, 6), round(y, 6))
        for c in ax.collections
        for x, y in c.get_offsets()
    }  # fmt: skip
    assert drawn == {(0.3, 0.05), (0.2, 1.0), (0.25, 0.8), (0.4, 0.5), (0.35, 0.9)}
    stars = _collection(fig, "Top 3")
    assert sorted(x for x, _ in stars.get_offsets()) == pytest.approx([0.2, 0.25, 0.3])
    assert ax.get_title() == "Best step of 5 feasible trials: 3 in the last 25%, 1 in the first 10%"
    assert ax.get_ylim() == pytest.approx((-0.05, 1.05))
    caption = next(c for s, c, _ in plots.figures(study) if s == "Best step")
    assert "last 25%" in caption and "train longer" in caption and "first 10%" in caption


# ------------------------------------------------------------------------------------------------
# The dashboard's payload.


def test_dashboard_payload_carries_the_near_best_trials_and_best_steps():
    study = _study([0.20, 0.202, 0.204, 0.206, 0.21, 0.25], best_steps=[950, 500, 80, 0, 1000, 760])
    payload = json.loads(json.dumps(dashboard_data.payload(study), allow_nan=False))
    near = payload["near_best"]
    assert near["trials"] == [0, 1, 2, 3, 4] and near["epsilon_text"] == "0.01"
    assert near["best"] == pytest.approx(0.20) and near["bound"] == pytest.approx(0.21)
    assert "distance from 0" in near["text"] and not near["measured"]
    [axis] = payload["axis"]
    assert axis["near"] == 5
    kinds = {q["trial"]: q["kind"] for q in axis["points"]}
    assert kinds == {0: "top", 1: "top", 2: "top", 3: "near", 4: "near", 5: "feasible"}
    best = payload["best_step"]
    assert best["early"] == SATURATED_FRACTION and best["late"] == NOT_CONVERGED_FRACTION
    assert best["counts"] == {"early": 2, "late": 3}
    assert [(q["trial"], q["step"], q["steps"]) for q in best["points"]] == [
        (0, 950, 1000), (1, 500, 1000), (2, 80, 1000), (3, 0, 1000), (4, 1000, 1000),
        (5, 760, 1000)
    ]  # fmt: skip
    assert [q["kind"] for q in best["points"]][:4] == ["top", "top", "top", "feasible"]
    assert best["points"][0]["y"] == pytest.approx(0.95)


def test_dashboard_payload_without_a_feasible_trial_has_neither_view():
    study = _study([], extra=[{"params": {"optimizer.learning_rate": 1e-3}, "status": "failed"}])
    payload = dashboard_data.payload(study)
    assert payload["near_best"] is None and payload["best_step"] is None
    assert payload["axis"][0]["near"] == 0


def test_dashboard_escapes_the_near_best_text():
    # The source names the rerun study: a user string, HTML-escaped like every other.
    name = "<b>x</b>"
    study = _study([0.30, 0.31], name=name)
    rerun = _study([0.30, 0.31], name=name + "-rerun").record
    rerun["config"]["study"] = {"parent": {"study": name, "action": "rerun"}}
    study.family = [rerun]
    text = dashboard_data.payload(study)["near_best"]["text"]
    assert "&lt;b&gt;x&lt;/b&gt;-rerun" in text and "<b>" not in text
