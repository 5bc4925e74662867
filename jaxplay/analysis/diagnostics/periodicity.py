"""Periodic patterns in the validation curves of the best trials (playbook, "Setting up periodic
evaluations"): with evaluations at regular step intervals and shuffled data, a validation metric
that rises and falls with a fixed period can reveal a bug, "test data having overlap with the
training data, or the training data not being properly shuffled".

How a curve is tested, for each of the best TOP_K trials:
  1. Its evaluations at one regular step interval after the first PERIOD_SKIP of training (the
     steep start, which no smooth fit follows closely enough).
  2. Detrended: the residuals from a least-squares Legendre polynomial of degree TREND_DEGREE in
     log(step) (training curves are close to power laws in the step). A polynomial of that
     degree turns at most TREND_DEGREE - 1 times, so it follows the trend but not a period seen
     MIN_CYCLES or more times.
  3. Its periodogram (scipy.signal.periodogram) at the Fourier frequencies of MIN_CYCLES or more
     cycles per window, up to the highest below Nyquist, and Fisher's g test: g = the largest
     ordinate / their sum. For Gaussian white noise the ordinates are independent exponentials
     and P(g > x) <= m (1 - x)^(m - 1) over m ordinates (Fisher 1929: the first term of his exact
     series, above the exact value by at most half its own square). The test needs no tuned
     strength, only the false-alarm rate PERIOD_SIGNIFICANCE, split over the curves tested
     (Bonferroni): a study without a period is flagged at most that often when its
     eval-to-eval noise is independent (noise correlated between evaluations raises the rate).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxplay.analysis.diagnostics.common import TOP_K, Finding, finite, trial_list
from jaxplay.analysis.study import StudyData
from jaxplay.values import fmt

# A period must be seen at least 3 times in the window: twice could be two bumps of any curve.
MIN_CYCLES = 3
# The first 10% of training is left out: the drop from the untrained model there is steeper than
# a smooth trend can follow, and its misfit would leak into every frequency.
PERIOD_SKIP = 0.1
# The trend: a degree-5 polynomial in log(step), which turns at most 4 times over the window
# (2 cycles), below the MIN_CYCLES cycles a reported period needs.
TREND_DEGREE = 5
# At least 5 frequencies are tested (MIN_CYCLES to MIN_CYCLES + 4 cycles per window): with 5, a
# period must already carry 84% of the detrended variance to pass at 1% / 3 curves, and with
# fewer the test has next to no power. A window then needs 2 * (MIN_CYCLES + 5 - 1) + 1 = 15
# evaluations after PERIOD_SKIP.
MIN_FREQUENCIES = 5
MIN_EVALS = 2 * (MIN_CYCLES + MIN_FREQUENCIES - 1) + 1
# The false-alarm rate of the whole check: one study without any periodic pattern in 100 is
# flagged, split evenly over the curves tested.
PERIOD_SIGNIFICANCE = 0.01


@dataclasses.dataclass(frozen=True)
class Period:
    """A dominant period of a curve: its length in evaluations and steps, how many times the
    window holds it, its share of the residual variance (Fisher's g) and the g test's p-value."""

    evals: float
    steps: float
    cycles: int
    strength: float
    p_value: float


def fisher_p_value(g: float, m: int) -> float:
    """Upper bound of P(G >= g) for Fisher's g over m periodogram ordinates of white noise."""
    return min(1.0, m * max(0.0, 1.0 - g) ** (m - 1))


def dominant_period(steps: np.ndarray, values: np.ndarray) -> Period | None:
    """The strongest period of a curve's detrended evaluations (see the module docstring), or None
    when its evaluations are too few or not at one regular step interval."""
    steps, values = _regular(np.asarray(steps), np.asarray(values, float))
    n = len(values)
    if n < MIN_EVALS:
        return None
    x = np.log(steps.astype(float))
    x = 2 * (x - x[0]) / (x[-1] - x[0]) - 1  # Legendre polynomials live on [-1, 1]
    residual = values - np.polynomial.legendre.legval(
        x, np.polynomial.legendre.legfit(x, values, TREND_DEGREE)
    )
    # Imported here: scipy.signal takes most of a second to import, which every `studies` command
    # would pay; only a curve long enough to test needs it.
    from scipy import signal

    _, power = signal.periodogram(residual, detrend=False)
    k = np.arange(len(power))
    tested = (k >= MIN_CYCLES) & (k <= (n - 1) // 2)  # no mean term, no Nyquist term
    power, k = power[tested], k[tested]
    if len(power) < MIN_FREQUENCIES or not power.sum() > 0:
        return None
    best = int(np.argmax(power))
    g = float(power[best] / power.sum())
    every = float(steps[1] - steps[0])
    return Period(n / k[best], n / k[best] * every, int(k[best]), g, fisher_p_value(g, len(power)))


def check_periodicity(study: StudyData) -> list[Finding]:
    """A warning when a best trial's validation curve has a dominant period, seen MIN_CYCLES
    times or more, that Fisher's g test finds significant at PERIOD_SIGNIFICANCE (split over
    the curves tested); quiet for curves of fewer than MIN_EVALS regular evaluations."""
    # The objective's own curve when it is a validation metric (val/, val_ema/), else val/loss.
    metric = study.objective if study.objective.startswith("val") else "val/loss"
    periods = []
    for t in study.feasible[:TOP_K]:
        steps, values = finite(t, metric)
        length = study.run_length(t) or (int(steps[-1]) if len(steps) else 0)
        keep = steps > PERIOD_SKIP * length
        found = dominant_period(steps[keep], values[keep])
        if found is not None:
            periods.append((t, found))
    if not periods:
        return []
    limit = PERIOD_SIGNIFICANCE / len(periods)
    flagged = [(t, p) for t, p in periods if p.p_value < limit]
    if not flagged:
        return []
    detail = "; ".join(
        f"trial {t.index}: period {fmt(p.steps)} steps ({fmt(p.evals)} evaluations, seen "
        f"{p.cycles} times), {p.strength:.0%} of the detrended variance, p = {p.p_value:.2g}"
        for t, p in flagged
    )
    return [
        Finding(
            "periodicity",
            "warning",
            f"{metric} rises and falls with a period of about {fmt(flagged[0][1].steps)} steps "
            f"({trial_list([t for t, _ in flagged])})",
            f"{detail} (Fisher's g test at {limit:.2g} for each of the {len(periods)} curves "
            f"tested, {PERIOD_SIGNIFICANCE:.0%} for the study). The playbook: with shuffled data, "
            "periodic patterns in evaluation metrics can reveal bugs, such as validation data "
            "overlapping the training data or training data not properly shuffled.",
            "compare the period with an epoch (training examples / data.batch_size steps): "
            "check that the training data is reshuffled every epoch and that no validation "
            "example also appears in the training split; a learning-rate schedule with restarts "
            "or a cyclic one explains a period of its own length",
            tuple(t.index for t, _ in flagged),
        )
    ]


def _regular(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The longest leading run of evaluations at one step interval (a final evaluation at the
    end of training may fall off the grid); empty when the steps are not increasing."""
    if len(steps) < 2 or not (np.diff(steps) > 0).all() or steps[0] <= 0:
        return steps[:0], values[:0]
    gaps = np.diff(steps)
    off = np.flatnonzero(gaps != gaps[0])
    end = len(steps) if not len(off) else int(off[0]) + 1
    return steps[:end], values[:end]
