"""Plots of a hand-built study: each figure renders, and shows what the playbook asks of it."""

import io
import math

import numpy as np
import pytest

from factories import constructed_study
from jaxplay import spaces
from jaxplay.analysis import plots

WIDTHS = (64, 128, 256)
ACTIVATIONS = (
    "relu",
    "gelu",
    "$\\foo$",
)  # '$...$' would be parsed as mathtext (and fail) if not escaped
STEPS = list(range(0, 1001, 100))


def _curves(error: float, diverge_at: int | None = None, objective: str = "val/error") -> dict:
    """Curves falling from 0.9 to `error`; from `diverge_at` on the loss explodes and metrics are
    NaN."""
    curves = {"val/error": [], "train/error": [], "train/loss": []}
    for s in STEPS:
        e = error + (0.9 - error) * math.exp(-s / 200)
        if diverge_at is not None and s >= diverge_at:
            curves["val/error"].append((s, math.nan))
            curves["train/error"].append((s, math.nan))
            curves["train/loss"].append((s, 1e6 * (s - diverge_at + 1)))
        else:
            curves["val/error"].append((s, e + 0.02 * math.sin(s)))
            curves["train/error"].append((s, 0.8 * e))
            curves["train/loss"].append((s, 2.3 * e))
    if objective == "val/accuracy":
        curves["val/accuracy"] = [
            (s, None if math.isnan(v) else 1 - v) for s, v in curves.pop("val/error")
        ]
    return curves


def example_study(mode: str = "min", n: int = 18, **kwargs):
    """18 trials: a log learning rate (infeasible above 3e-2), a linear b1, a discrete scientific
    width, a categorical activation; one failed trial and two pending ones."""
    search = {
        "optimizer": {"learning_rate": spaces.log(1e-4, 1e-1), "b1": spaces.linear(0.8, 0.99)},
        "model": {
            "width": spaces.discrete(list(WIDTHS), role="scientific"),
            "activation": spaces.categorical(list(ACTIVATIONS)),
        },
    }
    objective = "val/error" if mode == "min" else "val/accuracy"
    trials = []
    for i in range(n):
        lr = 1e-4 * 1000 ** ((i * 0.618034) % 1)
        params = {
            "optimizer.learning_rate": lr,
            "optimizer.b1": 0.8 + 0.19 * ((i * 0.414) % 1),
            "model.width": WIDTHS[i % 3],
            "model.activation": ACTIVATIONS[i % 3],
        }
        error = (
            0.2
            + 0.08 * abs(math.log10(lr) + 2.5)
            + 0.02 * (256 / params["model.width"])
            + 0.001 * i
        )
        if i >= n - 2:
            trials.append({"params": params, "status": "pending"})
        elif i == n - 3:
            trials.append(
                {
                    "params": params,
                    "status": "failed",
                    "error": "Traceback ...\nValueError: out of memory",
                }
            )
        elif lr > 3e-2:
            trials.append(
                {
                    "params": params,
                    "status": "infeasible",
                    "error": "loss is NaN at step 300",
                    "curves": _curves(error, diverge_at=300, objective=objective),
                }
            )
        else:
            trials.append({"params": params, "curves": _curves(error, objective=objective)})
    return constructed_study(search, trials, objective=objective, mode=mode, **kwargs)


def _render(fig) -> bytes:
    """PNG bytes: drawing is where bad text (e.g. unescaped mathtext) fails."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _collection(fig, label_start: str):
    """The scatter collection whose legend label starts with `label_start` (None if absent)."""
    found = [c for c in fig.axes[0].collections if c.get_label().startswith(label_start)]
    assert len(found) <= 1
    return found[0] if found else None


@pytest.fixture(scope="module")
def study():
    return example_study()


def test_study_fixture_has_every_kind_of_trial(study):
    statuses = [t.status for t in study.trials]
    assert {"completed", "infeasible", "failed", "pending"} <= set(statuses)
    assert len(study.feasible) >= 6


def test_figures_cover_every_plot_and_render(study):
    import matplotlib.pyplot as plt

    figs = plots.figures(study)
    sections = [section for section, _, _ in figs]
    assert sections.count("Axis plots") == 4
    assert sections.count("Isolation plots") == 1  # one scientific hyperparameter
    assert sections.count("Training curves") == 1 and sections.count("Sampling density") == 1
    assert sections.count("Best step") == 1
    for section, caption, fig in figs:
        assert caption and _render(fig).startswith(b"\x89PNG")
        assert fig.legends, f"{section} figure has no legend"
    assert plt.get_fignums() == []  # built without pyplot: nothing registered globally


def test_axis_plot_scales_and_bounds(study):
    lr = plots.axis_plot(study, "optimizer.learning_rate")
    b1 = plots.axis_plot(study, "optimizer.b1")
    assert lr.axes[0].get_xscale() == "log" and b1.axes[0].get_xscale() == "linear"
    assert tuple(lr.get_size_inches()) == (6.0, 4.0)
    bounds = sorted(
        line.get_xdata()[0] for line in lr.axes[0].lines if line.get_linestyle() == "--"
    )
    assert bounds == pytest.approx([1e-4, 1e-1])
    assert "optimizer.learning_rate" in lr.axes[0].get_xlabel()
    assert "val/error" in lr.axes[0].get_ylabel()


def test_axis_plot_marks_infeasible_feasible_and_top3(study):
    fig = plots.axis_plot(study, "optimizer.learning_rate")
    infeasible, top, feasible = (_collection(fig, s) for s in ("Infeasible", "Top 3", "Feasible"))
    assert len(infeasible.get_offsets()) == len(
        study.infeasible
    )  # failed trials count as infeasible
    worst = max(t.best_value for t in study.feasible)
    assert all(
        y > worst for _, y in infeasible.get_offsets()
    )  # pinned just beyond the worst feasible value
    assert sorted(y for _, y in top.get_offsets()) == pytest.approx(
        [t.best_value for t in study.feasible[:3]]
    )
    assert len(feasible.get_offsets()) == len(study.feasible) - 3  # pending trials are not drawn
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"Infeasible trials", "Feasible trials", "Top 3 trials"} <= set(labels)


def _labels_overlap(fig) -> bool:
    """Whether any two x tick labels of the first axes touch once drawn."""
    fig.draw_without_rendering()
    ticks = [t for t in fig.axes[0].get_xticklabels() if t.get_text()]
    boxes = [t.get_window_extent() for t in ticks]
    angle = ticks[0].get_rotation() % 180
    if angle in (0, 90):
        return any(a.overlaps(b) for a, b in zip(boxes, boxes[1:]))
    # Labels rotated alike are parallel strips (their boxes overlap without the text touching):
    # they clear each other when the distance between baselines exceeds the text height.
    height = ticks[0].get_fontsize() * fig.dpi / 72
    return min(np.diff([b.x1 for b in boxes])) * math.sin(math.radians(angle)) < height


@pytest.mark.parametrize("n", [3, 9, 40])
def test_axis_plot_category_labels_are_readable(n):
    values = [f"activation_variant_{i}" for i in range(n)] if n > 3 else ["relu", "gelu", "tanh"]
    search = {"model": {"activation": spaces.categorical(values)}}
    study = constructed_study(
        search,
        [
            {"params": {"model.activation": v}, "curves": {"val/error": [(0, 0.01 * i)]}}
            for i, v in enumerate(values)
        ],
    )
    fig = plots.axis_plot(study, "model.activation")
    shown = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert shown[0] == plots.short_label(values[0]) and len(set(shown)) == len(
        shown
    )  # shortened, still distinct
    assert len(shown) == n or n == 40  # only a crowd of categories is thinned
    assert not _labels_overlap(fig)


def test_axis_plot_of_discrete_and_mathtext_like_categorical(study):
    width = plots.axis_plot(study, "model.width")
    assert [t.get_text() for t in width.axes[0].get_xticklabels()] == [str(w) for w in WIDTHS]
    activation = plots.axis_plot(study, "model.activation")
    _render(activation)
    assert "relu" in [t.get_text() for t in activation.axes[0].get_xticklabels()]


def test_isolation_plot_shows_best_trial_per_discrete_value(study):
    fig = plots.isolation_plot(study, "model.width")
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_label().startswith("Best trial")]
    assert list(line.get_xdata()) == [0, 1, 2]  # one point per width
    for position, width in enumerate(WIDTHS):
        of_width = [t.best_value for t in study.feasible if t.params["model.width"] == width]
        assert line.get_ydata()[position] == min(of_width)
    notes = [t.get_text() for t in fig.axes[0].texts]
    assert sum(n.startswith("best of ") for n in notes) == 3
    assert (
        "optimizer.b1" in fig.axes[0].get_title()
        and "optimizer.learning_rate" in fig.axes[0].get_title()
    )


def test_isolation_groups_bucket_continuous_values(study):
    groups = plots.isolation_groups(study, "optimizer.learning_rate", buckets=3)
    edges = [1e-4, 1e-3, 1e-2, 1e-1]  # equal width on the log scale
    for g, lo, hi in zip(groups, edges, edges[1:]):
        assert g["edges"] == pytest.approx((lo, hi))
        inside = [t for t in study.finished if lo <= t.params["optimizer.learning_rate"] <= hi]
        assert {t.index for t in g["trials"]} == {t.index for t in inside}
        feasible = [t.best_value for t in inside if t.feasible]
        assert (g["best"].best_value if g["best"] else None) == (
            min(feasible) if feasible else None
        )
    fig = plots.isolation_plot(study, "optimizer.learning_rate", buckets=3)
    assert fig.axes[0].get_xscale() == "log"
    _render(fig)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_best_of_k_improves_with_k(mode):
    study = example_study(mode=mode)
    samples = plots.best_of_k(study, repeats=300)
    assert list(samples) == list(range(1, len(study.finished) + 1))
    medians = np.array([np.median(s) for s in samples.values()])
    steps = np.diff(medians) if mode == "min" else -np.diff(medians)
    assert (steps <= 0).all()
    best = study.feasible[0].best_value
    assert all((s >= best).all() if mode == "min" else (s <= best).all() for s in samples.values())
    fig = plots.best_of_k_plot(study, repeats=300)
    assert "densely enough" in fig.axes[0].get_title()
    drawn = [
        ln.get_ydata()[0]
        for ln in fig.axes[0].lines
        if ln.get_color() == "tab:orange" and len(ln.get_ydata())
    ]
    assert drawn == pytest.approx(medians)  # one box per k, medians as computed


def test_best_of_k_counts_infeasible_draws_as_nothing():
    search = {"optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)}}
    trials = [
        {"params": {"optimizer.learning_rate": 1e-3}, "curves": {"val/error": [(0, 0.3)]}},
        {"params": {"optimizer.learning_rate": 1e-1}, "status": "infeasible"},
    ]
    samples = plots.best_of_k(constructed_study(search, trials), repeats=2000)
    cap = plots.infeasible_cap(constructed_study(search, trials))
    # One draw is infeasible half the time; two draws both are a quarter of the time.
    assert np.mean(samples[1] == cap) == pytest.approx(0.5, abs=0.05)
    assert np.mean(samples[2] == cap) == pytest.approx(0.25, abs=0.05)


def test_curves_plot_highlights_top_trials(study):
    fig = plots.curves_plot(study, top=3)
    assert len(fig.axes) == 2
    train, val = fig.axes
    assert "train/error" in train.get_title() and "val/error" in val.get_title()
    labelled = [ln for ln in val.lines if ln.get_label().startswith("trial ")]
    assert [ln.get_label().split()[1] for ln in labelled] == [
        str(t.index) for t in study.feasible[:3]
    ]
    muted = [ln for ln in train.lines if ln.get_linestyle() == "--"]
    assert len(muted) == len(study.infeasible)  # infeasible curves are drawn (dashed), not dropped
    assert fig.legends and "infeasible trials" in [t.get_text() for t in fig.legends[0].get_texts()]
    _render(fig)


def test_no_feasible_trial_does_not_crash():
    study = example_study()
    for t in study.trials:
        if t.status == "completed":
            t.status, t.best_value = "infeasible", None
    figs = plots.figures(study)
    assert [section for section, _, _ in figs] == [
        "Training curves"
    ]  # divergence is still worth seeing
    _render(figs[0][2])
    with pytest.raises(plots.NothingToPlot):
        plots.axis_plot(study, "optimizer.learning_rate")
    pending = constructed_study(
        {"optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)}},
        [{"params": {"optimizer.learning_rate": 1e-3}, "status": "pending"}],
    )
    assert plots.figures(pending) == []


def test_unknown_param_is_a_clear_error(study):
    with pytest.raises(ValueError, match="not a searched hyperparameter.*optimizer.learning_rate"):
        plots.axis_plot(study, "optimizer.eps")


def test_axis_plot_draws_a_trial_that_never_trained_as_infeasible():
    # Completed without a NaN but stuck at its initial training loss (Adam at a far too high
    # learning rate): infeasible in every view, so the axis plot draws a red x too.
    space = {"optimizer": {"learning_rate": spaces.log(1e-4, 1.0)}}
    stuck = {
        "val/error": [(s, 0.9) for s in STEPS],
        "train/loss": [(s, 2.3 - 1e-4 * s) for s in STEPS],
    }
    trials = [
        {"params": {"optimizer.learning_rate": lr}, "curves": _curves(e)}
        for lr, e in ((1e-3, 0.2), (3e-3, 0.15), (1e-2, 0.25), (3e-4, 0.3))
    ]
    study = constructed_study(
        space, trials + [{"params": {"optimizer.learning_rate": 0.5}, "curves": stuck}]
    )
    fig = plots.axis_plot(study, "optimizer.learning_rate")
    [(x, y)] = _collection(fig, "Infeasible").get_offsets()
    assert x == pytest.approx(0.5) and y > 0.3  # at the cap, beyond the worst feasible value
    assert study.trials[-1].status == "infeasible" and "never trained" in study.trials[-1].error
    assert (
        len(_collection(fig, "Feasible").get_offsets()) == 1
        and len(_collection(fig, "Top 3").get_offsets()) == 3
    )


def test_sampling_density_only_for_a_search_of_enough_trials():
    search = {"optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)}}

    def study(n):
        trials = [
            {"params": {"optimizer.learning_rate": 10 ** (-4 + 3 * i / n)},
             "curves": {"val/error": [(100, 0.5 - 0.01 * i), (1000, 0.4 - 0.01 * i)]}}
            for i in range(n)
        ]  # fmt: skip
        return constructed_study(search, trials)

    sections = lambda s: {name for name, _, _ in plots.figures(s)}  # noqa: E731
    assert "Sampling density" not in sections(study(3))  # a promoted study's few trials
    assert "Sampling density" not in sections(study(plots.SAMPLING_MIN_TRIALS - 1))
    assert "Sampling density" in sections(study(plots.SAMPLING_MIN_TRIALS))
    fixed = constructed_study({}, [{"params": {}, "curves": {"val/error": [(100, 0.5)]}}] * 9)
    assert "Sampling density" not in sections(fixed)  # nothing searched: nothing to sample


def test_a_curve_label_has_no_bare_colon_when_nothing_was_searched():
    study = constructed_study(
        {}, [{"params": {}, "curves": {"val/error": [(100, 0.5), (1000, 0.4)]}}]
    )
    fig = next(f for name, _, f in plots.figures(study) if name == "Training curves")
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    labels = [t.get_text() for legend in legends for t in legend.texts]
    assert labels and not any(label.rstrip().endswith(":") for label in labels), labels
