"""Early instability (playbook "Identifying unstable workloads", items 81, 83, 85, 99): what the
probe study (`--lineage probe`: the best trial at 1x, 2x, 5x, 10x its learning rate for the first
steps, every step's training loss kept) shows that sparse evaluations miss, a loss that "goes up
not down during periods of training", even when it recovers before the next evaluation.

Instability matters "only when it forces us to use a learning rate that's too small": a rise at 2x
the best learning rate (the playbook's early-instability check) is a warning, one at 5x or 10x only
(every workload is unstable at a large enough rate) is information.
"""

from __future__ import annotations

import re

import numpy as np

from jaxplay.analysis.diagnostics.common import Finding, finite
from jaxplay.analysis.study import StudyData, TrialData
from jaxplay.values import fmt

# Every step's training loss, kept by trials with train.log_every_step (jaxplay.train.trial).
STEP_LOSS = "train/step_loss"
# A rise is read on the running median of SPIKE_WINDOW steps, so that one noisy batch is not an
# episode; it is an instability when that median climbs to SPIKE_FACTOR times its lowest value so
# far: batch noise averaged over 10 batches does not double a loss.
SPIKE_WINDOW = 10
SPIKE_FACTOR = 2.0
# A trial's learning rate: optimizer.learning_rate, or its branch's
# optimizer[<branch>].learning_rate (spaces.branches: each branch's is a hyperparameter of its own).
LEARNING_RATE = re.compile(r"optimizer(\[[^\]]+\])?\.learning_rate")
# The largest multiple of the best learning rate whose instability limits the learning rate (the
# playbook's early-instability check runs at 2x).
LIMITING_FACTOR = 2.0


def check_early_instability(study: StudyData) -> list[Finding]:
    """The probe's trials: the smallest learning-rate multiple whose training loss rose (or
    diverged) early, as a warning at up to 2x and information beyond; or, with none, that the
    workload is stable up to the largest multiple probed."""
    probed = [t for t in study.trials if len(finite(t, STEP_LOSS)[1]) or _diverged(t)]
    if len(probed) < 2 or not any(len(finite(t, STEP_LOSS)[1]) for t in probed):
        return []
    factors = _factors(probed)
    episodes = [(factors[t.index], t, _episode(t)) for t in probed]
    unstable = sorted((e for e in episodes if e[2]), key=lambda e: e[0])
    shown = "; ".join(
        f"{fmt(f)}x (trial {t.index}): {what or 'the loss fell steadily'}"
        for f, t, what in sorted(episodes, key=lambda e: e[0])
    )
    if not unstable:
        top = max(factors.values())
        return [
            Finding(
                "early_instability",
                "info",
                f"No early instability up to {fmt(top)}x the best learning rate",
                f"The probe kept every step's training loss ({shown}). No loss rose by "
                f"{SPIKE_FACTOR:g}x over its lowest {SPIKE_WINDOW}-step median.",
                "warmup or clipping are unlikely to allow a higher learning rate here; tune "
                "other hyperparameters",
                tuple(t.index for t in probed),
            )
        ]
    factor, first, _ = unstable[0]
    limiting = factor <= LIMITING_FACTOR
    return [
        Finding(
            "early_instability",
            "warning" if limiting else "info",
            f"Early instability at {fmt(factor)}x the best learning rate",
            f"The probe kept every step's training loss: {shown}. "
            + (
                "Instability this close to the best learning rate may be what keeps the "
                "learning rate, and the result, from being better; evaluations every few hundred "
                "steps would not show a rise that recovers between them."
                if limiting
                else f"Up to {fmt(LIMITING_FACTOR)}x the loss fell steadily: every workload is "
                "unstable at a large enough learning rate, and this instability does not limit "
                "the best one."
            ),
            (
                "fix the instability before tuning further: learning-rate warmup "
                "(schedule.warmup_steps; --lineage warmup from the study the probe came from) "
                "or gradient clipping (--lineage clip), then probe again"
                if limiting
                else "nothing to fix for now; if a later study's best learning rate moves up to "
                "this region, try warmup (--lineage warmup)"
            ),
            tuple(t.index for _, t, _ in unstable),
        )
    ]


def _episode(t: TrialData) -> str | None:
    """How the trial's training loss rose, in words, or None when it did not."""
    if _diverged(t):
        return f"diverged ({(t.error or '').strip().splitlines()[0]})"
    steps, values = finite(t, STEP_LOSS)
    if len(values) < 2 * SPIKE_WINDOW:
        return None
    at, median = running_median(steps, values)
    lowest = np.minimum.accumulate(median)
    rising = median > SPIKE_FACTOR * lowest
    if not rising.any():
        return None
    start = int(np.argmax(rising))
    low = int(np.argmin(median[: start + 1]))
    peak = start + int(np.argmax(median[start:]))
    text = (
        f"the {SPIKE_WINDOW}-step median loss rose from {fmt(float(median[low]))} at step "
        f"{int(at[low])} to {fmt(float(median[peak]))} at step {int(at[peak])}"
    )
    back = np.nonzero(median[peak:] <= SPIKE_FACTOR * lowest[start])[0]
    return text + (
        f", back down by step {int(at[peak + back[0]])}" if len(back) else ", and stayed up"
    )


def _diverged(t: TrialData) -> bool:
    return t.status == "infeasible" and "diverged" in (t.error or "")


def _factors(trials: list[TrialData]) -> dict[int, float]:
    """Each probe trial's learning rate as a multiple of the smallest (the 1x reference)."""
    rates = {t.index: learning_rate(t) for t in trials}
    known = [r for r in rates.values() if r]
    base = min(known) if known else None
    return {i: (r / base if r and base else float(i + 1)) for i, r in rates.items()}


def learning_rate(t: TrialData) -> float | None:
    """The trial's learning rate (optimizer.learning_rate or optimizer[<branch>].learning_rate);
    None when it set neither."""
    for path, value in t.params.items():
        if LEARNING_RATE.fullmatch(path) and isinstance(value, int | float) and value > 0:
            return float(value)
    return None


def running_median(
    steps: np.ndarray, values: np.ndarray, window: int = SPIKE_WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """The median of each `window` consecutive values at its window's last step (empty when there
    are fewer values): the curve a rise is read on, and the plots draw."""
    if len(values) < window:
        return np.zeros(0, int), np.zeros(0)
    windows = np.lib.stride_tricks.sliding_window_view(values, window)
    return steps[window - 1 :], np.median(windows, axis=1)
