"""Views of a study the store already allows: how many trials lie near the best on the axis
plots (playbook "Not sampling enough points": how many points are in the "good" region), each
trial's best step as a fraction of its train.steps against the 10% and 25% rules (playbook
"Deciding how long to train"), the best trials' gradient norms with the clipping threshold
("Gradient clipping") and the early-instability probe's per-step losses ("Identifying unstable
workloads"). Their data, the report's figures and the dashboard's payload."""

import html
import json
import math

import numpy as np
import pytest

from factories import constructed_study
from jaxplay import spaces
from jaxplay.analysis import diagnostics, plot_data, plots, variance
from jaxplay.analysis.diagnostics import (
    CLIP_PERCENTILE,
    NOT_CONVERGED_FRACTION,
    SATURATED_FRACTION,
    SPIKE_FACTOR,
    SPIKE_WINDOW,
)
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


# ------------------------------------------------------------------------------------------------
# Gradient norms (items 82, 87).

PERIODS = list(range(100, 1001, 100))


def _period_norms(scale: float, spike_at: int | None = None) -> dict:
    """Each period's gradient-norm summary as the trainer logs it: median `scale`, 90th percentile
    1.5 x, largest step 4 x (40 x at `spike_at`), mean 1.1 x; 30% of the updates clipped."""
    return {
        "train/grad_norm": [(s, 1.1 * scale) for s in PERIODS],
        "train/grad_norm_p50": [(s, scale) for s in PERIODS],
        "train/grad_norm_p90": [(s, 1.5 * scale) for s in PERIODS],
        "train/grad_norm_max": [(s, (40 if s == spike_at else 4) * scale) for s in PERIODS],
        "train/clip_fraction": [(s, 0.3) for s in PERIODS],
    }


def _norm_study(values, scales, *, clip=2.0, extra=()):
    """_study's trials (best values `values`) each logging _period_norms(scale), all with
    train.grad_clip_norm `clip`."""
    study = _study(values, extra=extra)
    for t, scale in zip(study.trials, scales):
        for name, points in _period_norms(scale).items():
            t.curves[name] = (np.array([p for p, _ in points]), np.array([v for _, v in points]))
    study.record["config"]["train"]["grad_clip_norm"] = clip
    return study


def test_grad_norms_of_the_best_trials_per_period():
    study = _norm_study([0.3, 0.2, 0.25, 0.4], [1.0, 2.0, 3.0, 4.0])
    study.trials[1].curves["train/grad_norm_p50"] = (np.array([100, 300]), np.array([2.0, 2.0]))
    data = plot_data.grad_norms(study)
    assert [q["trial"].index for q in data["trials"]] == [1, 2, 0]  # the best 3, best first
    best = data["trials"][0]
    assert best["label"] == "trial 1 (0.2)" and best["per_step"] is None
    periods = best["periods"]
    assert periods["steps"].tolist() == PERIODS
    assert periods["p90"].tolist() == [3.0] * 10 and periods["max"].tolist() == [8.0] * 10
    # A metric missing at an evaluation is NaN there, not shifted onto another step.
    assert periods["p50"][[0, 2]].tolist() == [2.0, 2.0] and np.isnan(periods["p50"][1])
    # The playbook's threshold as the diagnostics compute it: the median of the periods' p90s.
    assert best["threshold"] == diagnostics.clip_threshold(study.trials[1]) == 3.0
    assert best["clip"] == 2.0 and best["clipped"] == pytest.approx(0.3)
    assert data["histogram"] is None and not data["log"] and data["percentile"] == CLIP_PERCENTILE


def test_grad_norms_show_feasible_trials_only_when_there_are_some():
    error = "training loss diverged at step 7"
    diverged = {"params": {"optimizer.learning_rate": 1e-1}, "status": "infeasible",
                "curves": _period_norms(1e4), "error": error}  # fmt: skip
    study = _norm_study([0.3], [1.0], extra=[diverged])
    assert [q["trial"].index for q in plot_data.grad_norms(study)["trials"]] == [0]


def test_grad_norms_without_a_clip_or_a_feasible_trial():
    running = {"params": {"optimizer.learning_rate": 1e-3}, "status": "running",
               "curves": _period_norms(1.0, spike_at=500)}  # fmt: skip
    study = _study([], extra=[running])
    data = plot_data.grad_norms(study)
    [q] = data["trials"]
    assert q["trial"].index == 0 and q["label"] == "trial 0 (running)"
    assert q["clip"] is None and q["clipped"] is None  # train.grad_clip_norm 0: off
    assert data["log"]  # the largest step, 40 x the median: a log axis


def test_grad_norms_need_a_logged_norm():
    study = _study([0.3, 0.2])
    with pytest.raises(plot_data.NothingToPlot):
        plot_data.grad_norms(study)
    assert "Gradient norms" not in [s for s, _, _ in plots.figures(study)]
    assert dashboard_data.payload(study)["grad_norms"] is None


def test_grad_norm_plot_draws_the_band_the_threshold_and_the_clip():
    study = _norm_study([0.3, 0.2, 0.25], [1.0, 2.0, 3.0])
    fig = plots.grad_norm_plot(study)
    [ax] = fig.axes  # no per-step norms: no histogram
    [band] = [c for c in ax.collections if "median to 90th percentile" in c.get_label()]
    assert band.get_label().startswith("trial 1 (0.2)")
    lines = {ln.get_label(): ln for ln in ax.lines}
    threshold = lines["90th percentile: the playbook's clipping threshold (3)"]
    assert threshold.get_linestyle() == "--" and threshold.get_ydata()[0] == 3.0
    clip = lines["train.grad_clip_norm = 2, 30% of updates clipped"]
    assert clip.get_ydata()[0] == 2.0
    assert lines["trial 1 (0.2): largest step of each period"].get_ydata().tolist() == [8.0] * 10
    # The other top trials: their mean only.
    assert {"trial 2 (0.25): mean of each period", "trial 0 (0.3): mean of each period"} <= set(
        lines
    )
    assert "trial 2 (0.25): largest step of each period" not in lines
    assert ax.get_title() == "Gradient norm of the best 3 trials, per evaluation period"
    assert ax.get_yscale() == "linear"
    caption = next(c for s, c, _ in plots.figures(study) if s == "Gradient norms")
    assert "90th percentile" in caption and "clipping threshold" in caption
    assert "No histogram: it needs every step's norm" in caption and "50%" in caption


# ------------------------------------------------------------------------------------------------
# The early-instability probe's per-step losses (items 83, 99) and its per-step norms.

PROBE_STEPS = np.arange(1, 201)


def _probe(spike_at=2, diverge_at=10, path="optimizer.learning_rate"):
    """A probe study: steps 1..200 of loss falling from 2 to 0.5 (x5 over steps 60-90 in the trial
    at `spike_at` x), gradient norms around `factor` each step (the 4th step of every 10 at 20 x
    it: the outliers clipping is for); the trial at `diverge_at` x diverged at step 12, its last
    logged period running to step 15."""
    search = {"optimizer": {"learning_rate": spaces.log(1e-4, 1.0)}}
    trials = []
    for i, factor in enumerate((1, 2, 5, 10)):
        loss = 0.5 + 1.5 * np.exp(-PROBE_STEPS / 40)
        if factor == spike_at:
            loss = np.where((PROBE_STEPS >= 60) & (PROBE_STEPS <= 90), 5 * loss, loss)
        norms = factor * (1 + 0.01 * (PROBE_STEPS % 7)) * np.where(PROBE_STEPS % 10 == 4, 20, 1)
        curves = {
            "train/step_loss": list(zip(PROBE_STEPS.tolist(), loss.tolist())),
            "train/step_grad_norm": list(zip(PROBE_STEPS.tolist(), norms.tolist())),
            "val/error": [(100, 0.4 - 0.01 * i), (200, 0.3 - 0.01 * i)],
        }
        t = {"params": {path: 0.01 * factor}, "curves": curves}
        if factor == diverge_at:
            t.update(status="infeasible", error="training loss diverged at step 12: 900 (> 230)")
            steps = list(range(1, 16))
            t["curves"] = {"train/step_loss": [(s, 900.0 if s >= 12 else 2.0) for s in steps],
                           "train/step_grad_norm": [(s, 1e4) for s in steps]}  # fmt: skip
        trials.append(t)
    return constructed_study(search, trials, steps=200, name="round1-probe")


def test_grad_norms_keep_every_step_and_their_histogram():
    study = _probe()
    data = plot_data.grad_norms(study)
    # The feasible trials best first (5x, 2x, 1x), not the diverged 10x.
    assert [q["trial"].index for q in data["trials"]] == [2, 1, 0]
    best = data["trials"][0]
    steps, values = best["per_step"]
    assert steps.tolist() == PROBE_STEPS.tolist() and best["periods"] is None
    assert best["threshold"] == pytest.approx(np.percentile(values, 90))
    h = data["histogram"]
    assert h["trial"].index == 2 and h["steps"] == 200 and h["counts"].sum() == 200
    assert len(h["edges"]) == plot_data.HISTOGRAM_BINS + 1
    assert data["log"]  # 20 x outliers of norms from 1 to 5: over LOG_SPAN
    # Log bins: equal ratios, from the smallest norm to the largest.
    ratios = h["edges"][1:] / h["edges"][:-1]
    assert ratios == pytest.approx(np.full(plot_data.HISTOGRAM_BINS, ratios[0]))
    assert h["edges"][0] == pytest.approx(values.min()) and h["edges"][-1] == pytest.approx(
        values.max()
    )


def test_grad_norm_plot_has_the_histogram_panel_with_the_threshold():
    study = _probe()
    fig = plots.grad_norm_plot(study)
    ax, hist = fig.axes
    assert ax.get_yscale() == "log" and hist.get_xscale() == "log"
    threshold = plot_data.grad_norms(study)["trials"][0]["threshold"]
    [vline] = [ln for ln in hist.lines if ln.get_linestyle() == "--"]
    assert vline.get_xdata()[0] == pytest.approx(threshold)
    assert "Histogram of trial 2's 200 steps" == hist.get_title()
    assert ax.get_title() == "Gradient norm of the best 3 trials, every step"
    assert sum(len(ln.get_xdata()) for ln in ax.lines if "every step" in ln.get_label()) == 600
    caption = next(c for s, c, _ in plots.figures(study) if s == "Gradient norms")
    assert "histogram of the best trial's per-step norms aggregated over all steps" in caption


def test_step_losses_by_learning_rate_multiple_with_the_diagnostics_median():
    study = _probe(spike_at=2, diverge_at=10)
    points = plot_data.step_losses(study)
    assert [q["factor"] for q in points] == pytest.approx([1, 2, 5, 10])
    assert [q["label"] for q in points] == [
        "1x: trial 0, learning rate 0.01", "2x: trial 1, learning rate 0.02",
        "5x: trial 2, learning rate 0.05", "10x: trial 3, learning rate 0.1",
    ]  # fmt: skip
    one = points[0]
    steps, values = study.trials[0].finite(diagnostics.STEP_LOSS)
    assert one["steps"].tolist() == steps.tolist()
    # The running median the diagnostic reads: SPIKE_WINDOW values, at each window's last step.
    assert one["median_steps"][0] == SPIKE_WINDOW
    assert one["median"][0] == pytest.approx(np.median(values[:SPIKE_WINDOW]))
    assert len(one["median"]) == len(values) - SPIKE_WINDOW + 1
    # The spike at 2x: the median passes SPIKE_FACTOR x its lowest within the spike's window.
    rise = points[1]["rise"]
    assert 60 <= rise["step"] <= 60 + SPIKE_WINDOW
    lowest = points[1]["median"][points[1]["median_steps"] < rise["step"]].min()
    assert rise["value"] > SPIKE_FACTOR * lowest
    # One step at 900 moves no 10-step median: the 10x trial's rise is its divergence alone.
    assert [q["rise"] is None for q in points] == [True, False, True, True]
    # The 10x trial diverged at step 12: drawn up to it (the trainer ignores the rest), marked.
    ten = points[3]
    assert ten["steps"].tolist() == list(range(1, 13)) and ten["stop"] == {"step": 12, "value": 900}
    assert all(q["stop"] is None for q in points[:3])
    assert plot_data.step_loss_log(points)
    # The diagnostic names the same trials.
    [finding] = diagnostics.check_early_instability(study)
    assert finding.trials == (1, 3)


def test_step_losses_read_a_branchs_learning_rate():
    study = _probe(spike_at=None, diverge_at=None, path="optimizer[sgd].learning_rate")
    points = plot_data.step_losses(study)
    assert [q["factor"] for q in points] == pytest.approx([1, 2, 5, 10])
    assert all(q["rise"] is None and q["stop"] is None for q in points)
    # Without a learning rate, a trial is labelled by its number alone.
    study = _probe(spike_at=None, diverge_at=None, path="model.width")
    assert [q["label"] for q in plot_data.step_losses(study)] == [f"trial {i}" for i in range(4)]


def test_step_loss_plot_marks_the_rise_and_the_divergence():
    study = _probe(spike_at=2, diverge_at=10)
    fig = plots.step_loss_plot(study)
    [ax] = fig.axes
    assert ax.get_yscale() == "log"
    labels = [ln.get_label() for ln in ax.lines]
    assert "2x: trial 1, learning rate 0.02" in labels
    assert f"{SPIKE_WINDOW}-step median first above {SPIKE_FACTOR:g}x its lowest" in labels
    assert "diverged here" in labels
    stops = [ln for ln in ax.lines if ln.get_marker() == "X" and len(ln.get_xdata())]
    assert [(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in stops] == [(12, 900.0)]
    rises = [ln for ln in ax.lines if ln.get_marker() == "^" and len(ln.get_xdata())]
    assert [ln.get_xdata()[0] for ln in rises] == [plot_data.step_losses(study)[1]["rise"]["step"]]
    assert "4 learning rates" in ax.get_title()
    caption = next(c for s, c, _ in plots.figures(study) if s == "Per-step loss")
    assert "goes up, not down" in caption and "2x the best learning rate limits" in caption
    assert "--lineage probe" in caption and f"{SPIKE_WINDOW}-step running median" in caption


def test_the_views_appear_exactly_when_their_data_exists():
    def sections(study):
        return [s for s, _, _ in plots.figures(study)]

    plain = sections(_study([0.3, 0.2]))
    assert "Gradient norms" not in plain and "Per-step loss" not in plain
    periods = sections(_norm_study([0.3, 0.2], [1.0, 2.0]))
    assert periods.count("Gradient norms") == 1 and "Per-step loss" not in periods
    probe = sections(_probe())
    assert probe.count("Gradient norms") == 1 and probe.count("Per-step loss") == 1
    # The probe's views follow the training curves, before the best step.
    assert probe.index("Training curves") < probe.index("Per-step loss")
    assert probe.index("Gradient norms") < probe.index("Best step")
    for study in (_norm_study([0.3, 0.2], [1.0, 2.0]), _probe()):
        for section, _, fig in plots.figures(study):
            if section in ("Gradient norms", "Per-step loss"):
                assert fig.get_figwidth() > 7 and fig.legends  # the report's full width


def test_dashboard_payload_carries_the_grad_norms_and_step_losses():
    payload = json.loads(json.dumps(dashboard_data.payload(_probe()), allow_nan=False))
    g = payload["grad_norms"]
    assert [t["trial"] for t in g["trials"]] == [2, 1, 0] and g["log"]
    best = g["trials"][0]
    assert best["label"] == "trial 2 (0.28)" and best["periods"] is None
    assert best["per_step"]["steps"] == PROBE_STEPS.tolist()
    assert best["threshold"] == pytest.approx(
        plot_data.grad_norms(_probe())["trials"][0]["threshold"]
    )
    assert best["clip"] is None and best["clipped"] is None
    h = g["histogram"]
    assert h["trial"] == 2 and sum(h["counts"]) == h["steps"] == 200
    assert len(h["edges"]) == len(h["counts"]) + 1 and g["percentile"] == CLIP_PERCENTILE
    s = payload["step_losses"]
    assert s["window"] == SPIKE_WINDOW and s["factor"] == SPIKE_FACTOR and s["log"]
    assert [t["label"] for t in s["trials"]][1] == "2x: trial 1, learning rate 0.02"
    assert [t["factor"] for t in s["trials"]] == pytest.approx([1, 2, 5, 10])
    assert s["trials"][3]["stop"] == {"step": 12, "value": 900.0}
    assert s["trials"][3]["loss"]["steps"] == list(range(1, 13))
    assert s["trials"][1]["median"]["steps"][0] == SPIKE_WINDOW and s["trials"][1]["rise"]
    # Per period: the summaries, NaN as null.
    study = _norm_study([0.3, 0.2], [1.0, 2.0])
    study.trials[1].curves["train/grad_norm_p50"] = (np.array([100]), np.array([math.nan]))
    payload = json.loads(json.dumps(dashboard_data.payload(study), allow_nan=False))
    best = payload["grad_norms"]["trials"][0]
    assert best["per_step"] is None and best["periods"]["steps"] == PERIODS
    assert best["periods"]["p50"] == [None] * 10 and best["periods"]["max"] == [8.0] * 10
    assert best["clip"] == 2.0 and best["clipped"] == pytest.approx(0.3)
    assert payload["step_losses"] is None


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_dashboard_escapes_the_step_views():
    # The views' own strings are numbers and statuses; the hover label each of their points shows
    # carries the user's strings (an error, here), escaped like every other.
    study = _probe()
    study.trials[3].error = "training loss diverged at step 12 <script>alert(1)</script>"
    payload = dashboard_data.payload(study)
    for part in ("grad_norms", "step_losses"):
        strings = list(_strings(payload[part]))
        assert strings
        for text in strings:
            assert text == html.escape(html.unescape(text), quote=True), text
    assert payload["step_losses"]["trials"][3]["stop"]["step"] == 12
    assert "<script>" not in json.dumps(payload["text"])
    assert "&lt;script&gt;" in payload["text"][3]
