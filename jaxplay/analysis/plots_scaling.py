"""The playbook's batch-size scaling plot: steps to a result against the batch size, log-log, with
the perfect-scaling line (steps halve as the batch size doubles) through the smallest batch size
(jaxplay.analysis.scaling computes what it draws). Built without pyplot, like the other plots.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from jaxplay.analysis.plots_curves import new_figure, outside_legend, safe_text
from jaxplay.analysis.scaling import Scaling
from jaxplay.values import fmt

__all__ = ["steps_to_result_plot"]


def steps_to_result_plot(result: Scaling) -> Figure | None:
    """Steps to the target per batch size (the bar: the evaluation spacing it is known within),
    the perfect-scaling line through the smallest batch size, the recommended batch size ringed;
    None when fewer than two batch sizes reach the target."""
    reached = [p for p in result.points if p.steps_to_target is not None]
    if len(reached) < 2:
        return None
    fig = new_figure()
    ax = fig.add_subplot()
    sizes = np.array([p.batch_size for p in reached], dtype=float)
    steps = np.array([p.steps_to_target for p in reached], dtype=float)
    below = steps - np.array([p.earliest for p in reached], dtype=float)
    ax.errorbar(sizes, steps, yerr=[below, np.zeros_like(below)], fmt="o-", capsize=3,
                color="tab:blue", label="best trial's first evaluation at the target")  # fmt: skip
    first = reached[0]
    line = first.steps_to_target * first.batch_size / sizes
    ax.plot(sizes, line, "--", color="gray",
            label=f"perfect scaling from batch size {first.batch_size}")  # fmt: skip
    if result.largest_reducing is not None:
        pick = result.largest_reducing
        ax.plot([pick.batch_size], [pick.steps_to_target], "o", markersize=14, fillstyle="none",
                color="tab:green",
                label=f"largest that still reduces the steps: {pick.batch_size}")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [str(int(s)) for s in sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel(f"steps to {safe_text(result.objective)} {fmt(result.target)}")
    ax.set_title(safe_text(f"Steps to the result by batch size: {result.root}"), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    outside_legend(fig, ax)
    return fig
