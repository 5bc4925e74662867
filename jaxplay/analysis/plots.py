"""The playbook's plots of a study: axis plots, isolation plots, training curves, the probe's
per-step losses, gradient norms, best step, best-of-k.

Each function returns a `matplotlib.figure.Figure` built without pyplot, so no global state is
touched (nothing to close, nothing leaks between calls, safe in threads and notebooks). Save one
with `fig.savefig('x.png')`; `figures(study)` gives every plot of a study with a caption.

Conventions shared by the plots (playbook "Identifying bad search space boundaries", Fig 1):
a trial's y value is the best objective it reached over training; infeasible trials (diverged or
failed) are red x pinned at a capped y just beyond the worst feasible value, so they stay visible
without stretching the axis; the top 3 trials are green stars; a green band marks the values near
the best (plot_data.near_best) and the other trials in it are light green.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
from matplotlib.figure import Figure

from jaxplay.analysis.diagnostics import (
    CLIP_AGGRESSIVE_FRACTION,
    LIMITING_FACTOR,
    SPIKE_FACTOR,
    SPIKE_WINDOW,
)
from jaxplay.analysis.plot_data import (
    CLIP_PERCENTILE,
    EARLY_FRACTION,
    LATE_FRACTION,
    MAX_LABEL,
    SAMPLING_MIN_TRIALS,
    NothingToPlot,
    best_of_k,
    categories_of,
    default_ks,
    grad_norms,
    infeasible_cap,
    isolation_baseline,
    isolation_groups,
    near_best,
    searched,
    short_label,
    x_positions,
)
from jaxplay.analysis.plots_curves import (
    FEASIBLE,
    INFEASIBLE,
    NEAR,
    TOP,
    TOP_COLORS,
    best_of_k_plot,
    best_step_plot,
    curves_plot,
    new_figure,
    outside_legend,
    safe_text,
)
from jaxplay.analysis.plots_steps import grad_norm_plot, step_loss_plot
from jaxplay.analysis.study import StudyData
from jaxplay.spaces import Hyperparameter

__all__ = [
    "FEASIBLE",
    "INFEASIBLE",
    "MAX_LABEL",
    "NEAR",
    "TOP",
    "TOP_COLORS",
    "NothingToPlot",
    "axis_plot",
    "best_of_k",
    "best_of_k_plot",
    "best_step_plot",
    "curves_plot",
    "default_ks",
    "figures",
    "grad_norm_plot",
    "isolation_groups",
    "isolation_plot",
    "near_best",
    "step_loss_plot",
]

# A baseline's line on the isolation plots: apart from the blue points and the red infeasible x.
BASELINE = "tab:purple"

# ----------------------------------------------------------------------------------------------
# Helpers of the axis and isolation plots.


def _objective_label(study: StudyData) -> str:
    better = "lower" if study.mode == "min" else "higher"
    return safe_text(f"best {study.objective} over training\n({better} is better)")


def _draw_cap(ax, study: StudyData, cap: float) -> None:
    """A faint labelled line at the cap so the red x read as 'infeasible', not as measured values
    (call it last: it fixes the y range to leave room for its label beyond the cap)."""
    lo, hi = ax.get_ylim()
    room = 0.12 * (hi - lo)
    ax.set_ylim((lo, max(hi, cap + room)) if study.mode == "min" else (min(lo, cap - room), hi))
    ax.axhline(cap, color="tab:red", lw=0.8, ls=":", alpha=0.6, zorder=1)
    above = study.mode == "min"
    ax.annotate(
        "infeasible",
        xy=(1, cap),
        xycoords=("axes fraction", "data"),
        xytext=(-3, 5 if above else -5),
        textcoords="offset points",
        ha="right",
        va="bottom" if above else "top",
        color="tab:red",
        fontsize=8,
    )


def _category_ticks(ax, labels: list[str]) -> None:
    """Category tick labels that never run into each other: horizontal when they fit, else rotated
    30 degrees, else vertical and, when even that is too dense, only every k-th one."""
    size = 9  # points
    line = 1.3 * size  # the space a line of text needs
    spacing = (
        ax.figure.get_figwidth() * 72 * 0.8 / len(labels)
    )  # the axes span about 80% of the figure
    longest = max(len(s) for s in labels) * 0.6 * size  # average glyph width is about 0.6 em
    if longest <= 0.9 * spacing:
        rotation, step = 0, 1
    elif (
        0.5 * spacing >= line
    ):  # labels rotated 30 degrees are parallel strips sin(30) * spacing apart
        rotation, step = 30, 1
    else:
        rotation, step = 90, math.ceil(line / spacing)
    ax.set_xticks(
        range(0, len(labels), step),
        labels[::step],
        rotation=rotation,
        fontsize=size,
        ha="right" if rotation == 30 else "center",
    )
    if step > 1:
        ax.set_xticks(range(len(labels)), minor=True)


def _setup_x(ax, p: Hyperparameter, categories: list | None) -> None:
    """Log axis for log-scaled parameters, labelled categories for discrete/categorical ones, and
    dashed search-range bounds for numbers (so 'best near the boundary' is visible)."""
    ax.set_xlabel(safe_text(f"{p.path} ({p.role})"))
    if categories is not None:
        _category_ticks(ax, [safe_text(short_label(v)) for v in categories])
        ax.set_xlim(-0.6, len(categories) - 0.4)
        return
    if p.scale == "log":
        ax.set_xscale("log")  # matplotlib's log axis labels ticks in scientific notation (10^-3)
        pad = (p.max / p.min) ** 0.04
        ax.set_xlim(p.min / pad, p.max * pad)
    elif p.scale == "reverse_log":  # even steps in log(1 - value): 0.9, 0.99, 0.999
        warp, unwarp = np.vectorize(p.warp, otypes=[float]), np.vectorize(p.unwarp, otypes=[float])
        ax.set_xscale("function", functions=(warp, unwarp))
        lo, hi = p.warp(p.min), p.warp(p.max)
        pad = 0.04 * (hi - lo)
        ax.set_xlim(p.unwarp(lo - pad), p.unwarp(hi + pad))
    else:
        pad = 0.04 * (p.max - p.min)
        ax.set_xlim(p.min - pad, p.max + pad)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    for bound in (p.min, p.max):
        ax.axvline(
            bound,
            color="0.35",
            ls="--",
            lw=1,
            zorder=1,
            label="Search range" if bound == p.min else None,
        )


# ----------------------------------------------------------------------------------------------
# Axis plot.


def axis_plot(study: StudyData, path: str) -> Figure:
    """Best objective of each trial against one searched hyperparameter (playbook Fig 1)."""
    p = searched(study, path)
    cap = infeasible_cap(study)
    trials = [t for t in study.finished if p.path in t.params]
    categories = categories_of(p, trials) if p.space in ("discrete", "categorical") else None
    # A completed trial that never trained is infeasible too (jaxplay.analysis.study): a red x.
    feasible = {t.index for t in study.feasible}
    top = study.feasible[:3]
    top_ids = {t.index for t in top}
    near = near_best(study)
    near_ids = set(near.trials) - top_ids
    fig = new_figure()
    ax = fig.add_subplot()
    _setup_x(ax, p, categories)
    groups = (
        ([t for t in trials if t.index in feasible - top_ids - near_ids], FEASIBLE,
         "Feasible trials"),
        ([t for t in trials if t.index in near_ids], NEAR, "Near-best trials"),
        ([t for t in trials if t.index in top_ids], TOP, f"Top {len(top)} trials"),
        ([t for t in trials if t.index not in feasible], INFEASIBLE, "Infeasible trials"),
    )  # fmt: skip
    for group, style, label in groups:
        if group:
            y = [t.best_value if t.index in feasible else cap for t in group]
            ax.scatter(x_positions(p, group, categories), y, label=label, **style)
    # The "good" region the playbook asks to count points in: from the best to epsilon beyond it.
    ax.axhspan(
        min(near.best, near.bound),
        max(near.best, near.bound),
        color="tab:green",
        alpha=0.12,
        lw=0,
        zorder=0,
        label=f"Within {near.epsilon:.2g} of the best",
    )
    count = sum(t.index in near.trials for t in trials)
    unfinished = len(study.trials) - len(study.finished)
    ax.set_title(
        safe_text(
            textwrap.fill(
                f"{path}: {len(trials)} finished trials, {count} within {near.epsilon:.2g} of "
                "the best" + (f" ({unfinished} unfinished not shown)" if unfinished else ""),
                70,
            )
        ),
        fontsize=11 if len(path) < 30 and not unfinished else 10,
    )
    ax.set_ylabel(_objective_label(study))
    ax.grid(alpha=0.3)
    if any(t.index not in feasible for t in trials):
        _draw_cap(ax, study, cap)
    outside_legend(fig, ax)
    return fig


# ----------------------------------------------------------------------------------------------
# Isolation plot.


def _centre(p: Hyperparameter, edges: tuple[float, float]) -> float:
    """The middle of a bucket on the parameter's scale."""
    return float(p.unwarp((p.warp(edges[0]) + p.warp(edges[1])) / 2))


def isolation_plot(
    study: StudyData, path: str, buckets: int = 8, baseline: StudyData | None = None
) -> Figure:
    """Best trial per value of a (scientific) hyperparameter with the nuisance ones optimized away
    (playbook "isolation plots", Fig 2); numbers are bucketed into `buckets` equal-width bins. A
    `baseline` study's best is drawn across it, in the band of their trial noise when measured."""
    p = searched(study, path)
    line = isolation_baseline(study, baseline) if baseline is not None else None
    cap = infeasible_cap(study)
    groups = isolation_groups(study, path, buckets)
    categorical = p.space in ("discrete", "categorical")
    fig = new_figure()
    ax = fig.add_subplot()
    _setup_x(ax, p, [g["label"] for g in groups] if categorical else None)
    best = [g for g in groups if g["best"] is not None]
    x = [g["position"] if categorical else float(g["best"].params[path]) for g in best]
    y = [g["best"].best_value for g in best]
    # Categories have no order to connect; discrete values and buckets do.
    ax.plot(
        x,
        y,
        ls="none" if p.space == "categorical" else "-",
        color="tab:blue",
        marker="o",
        ms=7,
        label="Best trial per value" if categorical else "Best trial per bucket",
        zorder=3,
    )
    for xi, yi, g in zip(x, y, best):
        infeasible = len(g["trials"]) - g["feasible"]
        note = f"best of {g['feasible']}" + (f" (+{infeasible} inf.)" if infeasible else "")
        ax.annotate(
            note,
            (xi, yi),
            xytext=(0, 8),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8),
        )  # readable over the line
    lost = [g for g in groups if g["trials"] and g["best"] is None]
    if lost:
        lx = [g["position"] if categorical else _centre(p, g["edges"]) for g in lost]
        ax.scatter(lx, [cap] * len(lost), label="All trials infeasible", **INFEASIBLE)
    if not categorical:
        for g in groups[1:]:
            ax.axvline(g["edges"][0], color="0.8", lw=0.6, zorder=0)
    if line is not None:
        ax.axhline(line.value, color=BASELINE, ls="--", lw=1.2, label=safe_text(line.label),
                   zorder=2)  # fmt: skip
        # Named on the line itself too, at the left: the cap's 'infeasible' sits at the right.
        ax.annotate(safe_text(f"{line.name}: best of {line.feasible}"), xy=(0, line.value),
                    xycoords=("axes fraction", "data"), xytext=(3, 3), textcoords="offset points",
                    ha="left", va="bottom", color=BASELINE, fontsize=8)  # fmt: skip
        if line.band is not None:
            ax.axhspan(*line.band, color=BASELINE, alpha=0.12, lw=0, zorder=0,
                       label=f"its trial noise, +/- {line.noise.threshold:.2g}")  # fmt: skip
    nuisance = [q.path for q in study.space.by_role("nuisance") if q.path != path]
    others = [q.path for q in study.space.by_role("scientific") if q.path != path]
    title = f"{path}: best trial over " + (
        ", ".join(nuisance) if nuisance else "no nuisance hyperparameters"
    )
    if others:
        title += f" (and over scientific {', '.join(others)})"
    ax.set_title(safe_text(textwrap.fill(title, 75)), fontsize=10)
    ax.set_ylabel(_objective_label(study))
    ax.margins(y=0.15)  # room for the 'best of n' labels above the top points
    ax.grid(alpha=0.3)
    if lost:
        _draw_cap(ax, study, cap)
    outside_legend(fig, ax)
    return fig


# ----------------------------------------------------------------------------------------------
# Every plot of a study.


def figures(study: StudyData, baseline: StudyData | None = None) -> list[tuple[str, str, Figure]]:
    """(section, caption, figure) for every plot of the study that has data to show; a `baseline`
    study's best is drawn on each isolation plot."""
    objective = study.objective
    line = isolation_baseline(study, baseline).describe() if baseline is not None else ""
    near = near_best(study)
    near_text = (
        f" The green band holds the trials {near.describe()}: the title counts them; one lone "
        "trial in it means the good region is barely sampled."
        if near
        else ""
    )
    plots = []
    for p in study.space:
        plots.append(
            (
                "Axis plots",
                f"{p.path} ({p.role}): each finished trial's best {objective} over training. Best "
                "trials next to a dashed search bound mean the range should be widened; red x are "
                "infeasible trials (diverged, crashed or never trained), drawn at a cap above the "
                "worst feasible value." + near_text,
                lambda p=p: axis_plot(study, p.path),
            )
        )
    for p in study.space.by_role("scientific"):
        nuisance = (
            ", ".join(q.path for q in study.space.by_role("nuisance"))
            or "no nuisance hyperparameters"
        )
        plots.append(
            (
                "Isolation plots",
                f"{p.path}: the best trial for each value (or bucket of values), the nuisance "
                f"hyperparameters ({nuisance}) optimized away. Compare values only where each is "
                "the best of enough trials ('best of n')." + (f" {line}" if line else ""),
                lambda p=p: isolation_plot(study, p.path, baseline=baseline),
            )
        )
    plots.append(
        (
            "Training curves",
            "Training and validation curves of every trial, the best 3 in colour. Check the best "
            "trials for validation curves that rise again (overfitting), still falling at the end "
            "(more steps may help), noisy ends, and a training loss that increases (a bug).",
            lambda: curves_plot(study),
        )
    )
    plots.append(
        (
            "Per-step loss",
            "Every step's training loss of the trials that kept it (the early-instability probe, "
            "--lineage probe: the best trial at 1x, 2x, 5x and 10x its learning rate for the "
            f"first steps), thin, with its {SPIKE_WINDOW}-step running median thick, labelled by "
            "its learning rate as a multiple of the smallest (log loss axis). Look for a loss "
            "that goes up, not down, early in training, even one that recovers: evaluations "
            "every few hundred steps miss it. A triangle marks where a median first rose past "
            f"{SPIKE_FACTOR:g}x its lowest (the diagnostics' instability), an X where a trial "
            f"diverged. Instability at up to {LIMITING_FACTOR:g}x the best learning rate limits "
            "the learning rate: fix it with warmup (--lineage warmup) or clipping (--lineage "
            "clip); at 5x or 10x only, it is expected (every workload is unstable at a large "
            "enough learning rate).",
            lambda: step_loss_plot(study),
        )
    )
    plots.append(("Gradient norms", _grad_norm_caption(study), lambda: grad_norm_plot(study)))
    plots.append(
        (
            "Best step",
            f"The step of each feasible trial's best {objective} (the checkpoint retrospective "
            "selection keeps) as a fraction of its train.steps, against that value; the top 3 "
            f"starred. Best steps gathered in the last {1 - LATE_FRACTION:.0%} (top band) mean "
            "the trials were still improving: train longer and retune the decay schedule. Best "
            f"steps always in the first {EARLY_FRACTION:.0%} (bottom band) mean train.steps is "
            "far higher than needed. Never tune train.steps per trial: change it for the whole "
            "next study.",
            lambda: best_step_plot(study),
        )
    )
    # Studies of k trials drawn from this one say something only of a search of several trials:
    # not of a promoted or rerun study's few fixed configurations.
    if len(study.space) and len(study.finished) >= SAMPLING_MIN_TRIALS:
        plots.append(
            (
                "Sampling density",
                f"Best {objective} that studies of k trials drawn from this one would have "
                "found. Wide boxes at the full budget mean a luckier or unluckier study would "
                "have concluded differently: run more trials before trusting small differences.",
                lambda: best_of_k_plot(study),
            )
        )
    out = []
    for section, caption, draw in plots:
        if caption is None:
            continue  # its data is missing: nothing to draw
        try:
            out.append((section, caption, draw()))
        except NothingToPlot:
            continue  # e.g. no feasible trial yet: the report says so in its summary
    return out


def _grad_norm_caption(study: StudyData) -> str | None:
    """The gradient-norm figure's caption, which says what it shows (every step's norm or each
    period's summary; a histogram or why none); None when no trial logged a norm."""
    try:
        data = grad_norms(study)
    except NothingToPlot:
        return None
    best = data["trials"][0]
    shown = (
        "every step's norm"
        if best["per_step"]
        else "each evaluation period's steps as a band from their median to their 90th "
        "percentile, the largest step dotted and the mean solid (the other trials: the mean)"
    )
    histogram = (
        " Right: the histogram of the best trial's per-step norms aggregated over all steps."
        if data["histogram"]
        else " No histogram: it needs every step's norm, which only trials with "
        "train.log_every_step=True keep (--lineage probe does)."
    )
    estimate = "" if best["per_step"] else ", estimated as the median of its periods' own"
    return (
        "The unclipped global gradient norm of the best trials against the step: "
        f"{shown}. The dashed line is the {CLIP_PERCENTILE}th percentile of the best trial's "
        f"per-step norms{estimate}: the playbook's clipping threshold, just above the typical "
        "norm, the "
        "train.grad_clip_norm to try (--lineage clip tries thresholds around it); a dotted red "
        "line is the configured train.grad_clip_norm. Rare norms far above the rest can cause "
        "spurious instability that clipping fixes; a clip under most norms (more than "
        f"{CLIP_AGGRESSIVE_FRACTION:.0%} of updates clipped) in effect lowers the learning rate: "
        "lower it instead." + histogram
    )
