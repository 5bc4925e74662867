"""The playbook's training-curve, best-step and best-of-k plots of a study, and the helpers every
plot shares
(figure, label text, the cap infeasible trials are drawn at, legend); `jaxplay.analysis.plots` holds
the search-space plots and `figures()`, and re-exports everything public here.

Like the search-space plots, each function returns a `matplotlib.figure.Figure` built without
pyplot.
"""

from __future__ import annotations

import itertools
import math
import textwrap

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from jaxplay.analysis.plot_data import (
    EARLY_FRACTION,
    LATE_FRACTION,
    MAX_LABEL,
    NothingToPlot,
    best_of_k,
    best_steps,
    default_ks,
    infeasible_cap,
    short_label,
    train_metric,
)
from jaxplay.analysis.study import StudyData, TrialData

__all__ = [
    "FEASIBLE",
    "INFEASIBLE",
    "MAX_LABEL",
    "NEAR",
    "TOP",
    "TOP_COLORS",
    "NothingToPlot",
    "best_of_k",
    "best_of_k_plot",
    "best_step_plot",
    "best_steps",
    "curves_plot",
    "default_ks",
    "infeasible_cap",
    "new_figure",
    "outside_legend",
    "safe_text",
    "short_label",
    "train_metric",
]

TOP_COLORS = (
    "tab:green",
    "tab:orange",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
)

# How a trial is drawn on every scatter plot: feasible, near the best, top 3, infeasible.
FEASIBLE = dict(color="tab:blue", marker="o", s=28, alpha=0.8, zorder=3)
NEAR = dict(color="#98df8a", marker="o", s=34, edgecolors="tab:green", linewidths=0.8, zorder=3)
TOP = dict(color="tab:green", marker="*", s=190, edgecolors="black", linewidths=0.6, zorder=4)
INFEASIBLE = dict(color="tab:red", marker="x", s=40, linewidths=1.5, zorder=3)


# ----------------------------------------------------------------------------------------------
# Helpers every plot shares (plots.py imports them from here).


def new_figure(width: float = 6.0, height: float = 4.0) -> Figure:
    # Constrained layout keeps titles, rotated ticks and the outside legend from overlapping.
    return Figure(figsize=(width, height), layout="constrained")


def safe_text(value) -> str:
    """A user string safe for matplotlib: '$' would otherwise start mathtext (and can fail to
    parse)."""
    return str(value).replace("$", r"\$")


def outside_legend(fig: Figure, ax) -> None:
    """The legend below the axes, where it cannot cover a point."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        # One row when it fits the figure's width, otherwise two columns.
        ncols = len(labels) if sum(len(s) for s in labels) < 70 else 2
        fig.legend(
            handles, labels, loc="outside lower center", ncols=ncols, fontsize=8, frameon=False
        )


def brief_params(study: StudyData, t: TrialData) -> str:
    """'lr=0.0012, b1=0.9' with each path shortened to its last component."""
    return ", ".join(
        f"{path.rsplit('.', 1)[-1]}={short_label(t.params[path])}"
        for path in study.space.paths
        if path in t.params
    )


# ----------------------------------------------------------------------------------------------
# Training curves.


def curves_plot(study: StudyData, top: int = 3) -> Figure:
    """Training and validation curves of every trial, the best `top` in colour (playbook
    "Examining the training curves"); infeasible trials dashed and muted."""
    train = train_metric(study)
    if train is None and not any(len(t.curve(study.objective)[0]) for t in study.trials):
        raise NothingToPlot(f"study {study.name!r} has no logged curves yet")
    best = study.feasible[:top]
    best_ids = {t.index for t in best}
    fig = new_figure(10.0, 4.2)
    axes = fig.subplots(1, 2)
    others = [t for t in study.trials if t.index not in best_ids]
    for ax, metric, title in (
        (axes[0], train, "training"),
        (axes[1], study.objective, "validation"),
    ):
        ax.set_title(safe_text(f"{title}: {metric or 'not logged'}"), fontsize=11)
        ax.set_xlabel("step")
        ax.set_ylabel(safe_text(metric or ""))
        ax.grid(alpha=0.3)
        if metric is None:
            continue
        for t in others:
            steps, values = t.curve(metric)
            if t.status in ("infeasible", "failed"):
                ax.plot(steps, values, color="tab:red", lw=0.8, ls="--", alpha=0.35, zorder=1)
            else:
                ax.plot(steps, values, color="0.55", lw=0.8, alpha=0.6, zorder=2)
        for color, t in zip(itertools.cycle(TOP_COLORS), best):
            steps, values = t.curve(metric)
            ax.plot(
                steps,
                values,
                color=color,
                lw=2,
                zorder=3,
                label=safe_text(_curve_label(study, t)),
            )
            if metric == study.objective and t.best_step is not None:
                ax.plot(
                    [t.best_step],
                    [t.best_value],
                    marker="*",
                    ms=12,
                    color=color,
                    mec="black",
                    mew=0.5,
                    zorder=4,
                )
        # Diverged trials reach huge values; the axis follows the trials that trained.
        finite = np.concatenate(
            [t.curve(metric)[1] for t in study.trials if t.status not in ("infeasible", "failed")]
            or [np.zeros(0)]
        )
        finite = finite[np.isfinite(finite)]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 0.05
            ax.set_ylim(lo - pad, hi + pad)
    handles, labels = axes[1].get_legend_handles_labels()
    if any(
        t.status not in ("infeasible", "failed") and len(t.curve(study.objective)[0])
        for t in others
    ):
        handles.append(Line2D([], [], color="0.55", lw=0.8))
        labels.append("other trials")
    if study.infeasible:
        handles.append(Line2D([], [], color="tab:red", lw=0.8, ls="--", alpha=0.5))
        labels.append("infeasible trials")
    # Long labels (many searched parameters) get a row each rather than running off the figure.
    ncols = (
        1
        if max(map(len, labels), default=0) > 75
        else 2
        if len(labels) > 3
        else max(len(labels), 1)
    )
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=8, frameon=False)
    shown = (
        f"best {len(best)} in colour ({study.objective} at its best step in brackets, star = best "
        "step)"
        if best
        else "no feasible trial yet"
    )
    fig.suptitle(
        safe_text(
            textwrap.fill(f"{study.name}: curves of {len(study.trials)} trials, {shown}", 130)
        ),
        fontsize=10,
    )
    return fig


# ----------------------------------------------------------------------------------------------
# Best step.


def best_step_plot(study: StudyData, top: int = 3) -> Figure:
    """Each feasible trial's best step as a fraction of its train.steps against its best objective,
    with the playbook's 10% and 25% rules for train.steps as bands (playbook "Deciding how long to
    train": plot the step retrospective checkpoint selection finds)."""
    points = best_steps(study)
    top_ids = {t.index for t in study.feasible[:top]}
    fig = new_figure()
    ax = fig.add_subplot()
    ax.axhspan(-0.05, EARLY_FRACTION, color="tab:orange", alpha=0.12, lw=0, zorder=0)
    ax.axhspan(LATE_FRACTION, 1.05, color="tab:purple", alpha=0.10, lw=0, zorder=0)
    for y, label in (
        (EARLY_FRACTION, f"first {EARLY_FRACTION:.0%}: saturated early"),
        (LATE_FRACTION, f"last {1 - LATE_FRACTION:.0%}: still improving"),
    ):
        ax.axhline(y, color="0.35", ls="--", lw=1, zorder=1)
        ax.annotate(
            label,
            xy=(0, y),
            xycoords=("axes fraction", "data"),
            xytext=(4, -3 if y == EARLY_FRACTION else 3),
            textcoords="offset points",
            va="top" if y == EARLY_FRACTION else "bottom",
            fontsize=8,
            color="0.25",
        )
    for keep, style, label in (
        (lambda q: q["trial"].index not in top_ids, FEASIBLE, "Feasible trials"),
        (lambda q: q["trial"].index in top_ids, TOP, f"Top {min(top, len(points))} trials"),
    ):
        group = [q for q in points if keep(q)]
        if group:
            ax.scatter(
                [q["trial"].best_value for q in group],
                [q["fraction"] for q in group],
                label=label,
                **style,
            )
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([0, EARLY_FRACTION, 0.25, 0.5, LATE_FRACTION, 1.0])
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    better = "lower" if study.mode == "min" else "higher"
    ax.set_xlabel(safe_text(f"best {study.objective} over training ({better} is better)"))
    ax.set_ylabel("best step / train.steps")
    late = sum(q["zone"] == "late" for q in points)
    early = sum(q["zone"] == "early" for q in points)
    ax.set_title(
        f"Best step of {len(points)} feasible trials: {late} in the last "
        f"{1 - LATE_FRACTION:.0%}, {early} in the first {EARLY_FRACTION:.0%}",
        fontsize=10,
    )
    ax.margins(x=0.08)
    ax.grid(alpha=0.3)
    outside_legend(fig, ax)
    return fig


# ----------------------------------------------------------------------------------------------
# Best-of-k bootstrap.


def _curve_label(study, t) -> str:
    """'trial 3 (0.2810): lr=0.003', without the colon when nothing was searched."""
    values = brief_params(study, t)
    return f"trial {t.index} ({t.best_value:.4g})" + (f": {values}" if values else "")


def best_of_k_plot(study: StudyData, repeats: int = 1000, seed: int = 0) -> Figure:
    """Box plots of the best objective a study of k trials would have found (playbook item 79:
    is the study sampled densely enough?), by bootstrap from this study's finished trials."""
    samples = best_of_k(study, repeats=repeats, seed=seed)
    ks = list(samples)
    cap = infeasible_cap(study)
    fig = new_figure()
    ax = fig.add_subplot()
    ax.boxplot(
        [samples[k] for k in ks],
        positions=range(len(ks)),
        widths=0.6,
        flierprops=dict(marker=".", markersize=3, alpha=0.4),
        medianprops=dict(color="tab:orange", lw=2),
    )
    step = max(1, math.ceil(len(ks) / 12))  # at most ~12 tick labels
    ax.set_xticks(range(0, len(ks), step), [str(k) for k in ks[::step]])
    # Proxy artists: the box plot's own lines carry no labels, and its colours need one.
    ax.plot([], [], color="tab:orange", lw=2, label="median over simulated studies")
    ax.plot(
        [], [], color="black", lw=1, marker="s", mfc="white", ls="none", label="box: middle half"
    )
    ax.axhline(
        study.feasible[0].best_value,
        color="tab:green",
        ls="--",
        lw=1,
        label=f"best of all {len(study.finished)} trials",
    )
    if any((s == cap).any() for s in samples.values()):
        ax.axhline(cap, color="tab:red", ls=":", lw=1, label="drew no feasible trial (capped)")
    ax.set_xlabel("number of trials k (resampled with replacement)")
    ax.set_ylabel(safe_text(f"best {study.objective} of k trials"))
    ax.set_title(
        f"Is the study sampled densely enough?\nbootstrap of {len(study.finished)} finished "
        f"trials, {repeats} simulated studies per k",
        fontsize=10,
    )
    ax.grid(alpha=0.3, axis="y")
    outside_legend(fig, ax)
    return fig
