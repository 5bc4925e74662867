"""The playbook's plots of what happens between evaluations: the best trials' gradient norms with
the clipping threshold (items 82, 87) and the early-instability probe's per-step training losses
(items 83, 99). `jaxplay.analysis.plots.figures` lists them with their captions; what they draw
comes from `jaxplay.analysis.plot_data`, as the dashboard's does.

Like the other plots, each function returns a `matplotlib.figure.Figure` built without pyplot.
"""

from __future__ import annotations

import itertools

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from jaxplay.analysis.diagnostics import SPIKE_FACTOR, SPIKE_WINDOW
from jaxplay.analysis.plot_data import grad_norms, step_loss_log, step_losses
from jaxplay.analysis.plots_curves import TOP_COLORS, new_figure, safe_text
from jaxplay.values import fmt

__all__ = ["MULTIPLE_COLORS", "grad_norm_plot", "step_loss_plot", "threshold_label"]

# The probe's learning rates, smallest first: blue for the reference, red for the most unstable.
MULTIPLE_COLORS = (
    "tab:blue",
    "tab:green",
    "tab:orange",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
)


def threshold_label(percentile: int, value: float) -> str:
    """The clip threshold's legend entry, as the dashboard writes it too."""
    return f"{percentile}th percentile: the playbook's clipping threshold ({fmt(value, 3)})"


def _figure_legend(fig: Figure, axes) -> None:
    """One legend below the panels, each label once."""
    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        ncols = 1 if max(map(len, seen)) > 80 else 2 if len(seen) > 3 else len(seen)
        fig.legend(
            list(seen.values()),
            [safe_text(s) for s in seen],
            loc="outside lower center",
            ncols=ncols,
            fontsize=8,
            frameon=False,
        )


def _log_scale(ax, which: str) -> None:
    """Puts the axes' x or y axis on a log scale labelled with plain numbers (0.5, 1, 20; not
    5x10^-1): every minor tick within one decade, those at 2 and 5 within three, none beyond."""
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
    decades = np.log10(hi / lo) if lo > 0 and hi > lo else 0.0

    def minor(v, _):
        lead = round(v / 10 ** np.floor(np.log10(v) + 1e-9))
        return f"{v:g}" if decades <= 1 or (decades <= 3 and lead in (2, 5)) else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


# ----------------------------------------------------------------------------------------------
# Gradient norms.


def grad_norm_plot(study, top: int = 3) -> Figure:
    """The best trials' unclipped gradient norm against the step, and the histogram of the best
    per-step norms over all steps, with the playbook's clipping threshold (the 90th percentile)
    and the configured train.grad_clip_norm (playbook "Gradient clipping")."""
    data = grad_norms(study, top)
    histogram = data["histogram"]
    fig = new_figure(10.0, 4.4)
    if histogram:
        ax, hist = fig.subplots(1, 2, width_ratios=(1.6, 1))
    else:
        ax, hist = fig.add_subplot(), None
    best = data["trials"][0]
    for rank, (color, q) in enumerate(zip(itertools.cycle(TOP_COLORS), data["trials"])):
        label = q["label"]
        if q["per_step"]:
            steps, values = q["per_step"]
            ax.plot(
                steps,
                values,
                color=color,
                lw=1.0 if rank == 0 else 0.7,
                alpha=0.9 if rank == 0 else 0.55,
                zorder=3 - rank / 10,
                label=f"{label}: every step",
            )
            continue
        p = q["periods"]
        if rank == 0:
            # The best trial in full: where most of each period's steps lie, and its worst step.
            ax.fill_between(
                p["steps"],
                p["p50"],
                p["p90"],
                color=color,
                alpha=0.25,
                lw=0,
                label=f"{label}: median to 90th percentile of each period's steps",
            )
            ax.plot(
                p["steps"],
                p["max"],
                color=color,
                lw=0.7,
                ls=":",
                label=f"{label}: largest step of each period",
            )
        ax.plot(
            p["steps"],
            p["mean"],
            color=color,
            lw=1.8 if rank == 0 else 0.9,
            alpha=1.0 if rank == 0 else 0.6,
            label=f"{label}: mean of each period",
        )
    _clip_lines(ax.axhline, data["percentile"], best["threshold"], best)
    if data["log"]:
        _log_scale(ax, "y")
    ax.set_xlabel("step")
    ax.set_ylabel("global gradient L2 norm (unclipped)")
    ax.grid(alpha=0.3)
    kind = "every step" if best["per_step"] else "per evaluation period"
    shown = "trial" if len(data["trials"]) == 1 else f"{len(data['trials'])} trials"
    ax.set_title(safe_text(f"Gradient norm of the best {shown}, {kind}"), fontsize=10)
    if hist is not None:
        # The histogram's trial is the best one with every step's norm (the best, but for a study
        # where only some trials kept them).
        rank = next(i for i, q in enumerate(data["trials"]) if q["trial"] is histogram["trial"])
        color = TOP_COLORS[rank % len(TOP_COLORS)]
        counts, edges = histogram["counts"], histogram["edges"]
        hist.stairs(counts, edges, fill=True, color=color, alpha=0.45)
        hist.stairs(counts, edges, color=color, lw=1)
        _clip_lines(hist.axvline, data["percentile"], histogram["threshold"], data["trials"][rank])
        if data["log"]:
            _log_scale(hist, "x")
        hist.set_xlabel("gradient norm of a step")
        hist.set_ylabel("steps")
        hist.grid(alpha=0.3, axis="y")
        hist.set_title(
            f"Histogram of trial {histogram['trial'].index}'s {histogram['steps']} steps",
            fontsize=10,
        )
    _figure_legend(fig, [ax] + ([hist] if hist is not None else []))
    return fig


def _clip_lines(line, percentile: int, threshold: float | None, q: dict) -> None:
    """The playbook's clipping threshold (dashed) and the trial's own train.grad_clip_norm (dotted
    red, with the share of updates it clipped), drawn with `line` (axhline or axvline)."""
    if threshold is not None:
        line(threshold, color="black", ls="--", lw=1.1, zorder=4,
             label=threshold_label(percentile, threshold))  # fmt: skip
    if q["clip"] is not None:
        clipped = f", {q['clipped']:.0%} of updates clipped" if q["clipped"] is not None else ""
        line(q["clip"], color="tab:red", ls=":", lw=1.3, zorder=4,
             label=f"train.grad_clip_norm = {fmt(q['clip'], 3)}{clipped}")  # fmt: skip


# ----------------------------------------------------------------------------------------------
# The early-instability probe.


def step_loss_plot(study) -> Figure:
    """Every step's training loss of the trials that kept it (the early-instability probe), by
    learning-rate multiple, with the SPIKE_WINDOW running median the diagnostic reads, where it rose
    past SPIKE_FACTOR times its lowest, and where diverged trials stopped (playbook "Identifying
    unstable workloads")."""
    points = step_losses(study)
    fig = new_figure(10.0, 4.4)
    ax = fig.add_subplot()
    for color, q in zip(itertools.cycle(MULTIPLE_COLORS), points):
        ax.plot(q["steps"], q["values"], color=color, lw=0.6, alpha=0.35, zorder=2)
        ax.plot(q["median_steps"], q["median"], color=color, lw=1.8, zorder=3, label=q["label"])
        # Where the median first rose past the check's threshold, and where a trial diverged.
        for key, marker, size in (("rise", "^", 9), ("stop", "X", 10)):
            if q[key]:
                ax.plot([q[key]["step"]], [q[key]["value"]], marker=marker, ms=size,
                        color=color, mec="black", mew=0.6, ls="none", zorder=5)  # fmt: skip
    # What the markers mean, once each.
    if any(q["rise"] for q in points):
        ax.plot(
            [],
            [],
            marker="^",
            ms=8,
            color="0.6",
            mec="black",
            ls="none",
            label=f"{SPIKE_WINDOW}-step median first above {SPIKE_FACTOR:g}x its lowest",
        )
    if any(q["stop"] for q in points):
        ax.plot(
            [], [], marker="X", ms=8, color="0.6", mec="black", ls="none", label="diverged here"
        )
    ax.plot([], [], color="0.5", lw=0.6, alpha=0.5, label="every step (thin)")
    if step_loss_log(points):
        _log_scale(ax, "y")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss of the step's batch")
    ax.grid(alpha=0.3)
    ax.set_title(
        safe_text(
            f"{study.name}: every step's training loss at {len(points)} learning rates, "
            f"{SPIKE_WINDOW}-step running median thick"
        ),
        fontsize=10,
    )
    _figure_legend(fig, [ax])
    return fig
