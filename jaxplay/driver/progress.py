"""What a running study prints: each trial's hyperparameters, one line per evaluation period with
the step, loss, objective, speed and ETAs (for a batch: its best trial), then each outcome."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

from jaxplay.values import duration, fmt


class Progress:
    """Prints each trial's hyperparameters, then one line per evaluation period with the step,
    loss, objective, speed and ETAs (for a batch: the best member), then each trial's outcome."""

    def __init__(self, objective: str, mode: str, log: Callable[[str], None]):
        self.objective, self.mode, self.log = objective, mode, log
        self.unit_times: list[tuple[float, int]] = []  # (seconds, trials) of finished work units

    def start(self, indices: list[int], params: list[dict], remaining: int):
        self.count, self.remaining, self.t0 = len(indices), remaining, time.perf_counter()
        self.first_step, self.mark = 0, None  # mark: (step, time) of the first period's end
        for index, p in zip(indices, params):
            shown = ", ".join(f"{k}={fmt(v)}" for k, v in p.items())
            self.log(f"trial {index} ({remaining} left in this run) {shown}")
            remaining -= 1
        if len(indices) > 1:
            self.log(f"  trials {_ranges(indices)} run batched in one compiled program")

    def resumed(self, index: int, step: int):
        self.first_step = step
        self.log(f"  resuming{'' if self.count == 1 else f' trial {index}'} from step {step}")

    def period(self, step: int, steps: int, reported: dict[int, dict]):
        if not reported:
            return
        now = time.perf_counter()
        first = self.mark is None
        if first:
            # The first period includes compiling the program (and the step-0 evaluation): its
            # speed says nothing of training, so the speed and the ETAs wait for the next one.
            self.mark = (step, now)
        rate = 0.0 if first else (step - self.mark[0]) / max(now - self.mark[1], 1e-9)
        eta = (steps - step) / max(rate, 1e-9)
        # A trial's time: the median of the finished units' per-trial times (the compilation
        # makes only the first unit of a program slow), else this unit's training rate.
        per_trial = (
            statistics.median(t / n for t, n in self.unit_times)
            if self.unit_times
            else (steps - self.first_step) / max(rate, 1e-9)
        )
        eta_study = eta + per_trial * (self.remaining - self.count)
        sign = 1 if self.mode == "min" else -1
        finite = {
            i: m for i, m in reported.items() if math.isfinite(m.get(self.objective, math.nan))
        }
        best = (
            min(finite, key=lambda i: sign * finite[i][self.objective])
            if finite
            else next(iter(reported))
        )
        m = reported[best]
        who = "" if self.count == 1 else f"  {len(reported)} trials, best #{best}:"
        speed = (
            f"{rate:,.0f} steps/s"
            if self.count == 1
            else f"{rate * len(reported):,.0f} trial-steps/s"
        )
        if "train/input_wait_fraction" in m:  # streamed input: how long training waited for it
            speed += f", input wait {m['train/input_wait_fraction']:.0%}"
        loss = m.get("train/batch_loss", math.nan)
        timing = (
            "compiling: speed and ETA from the next period"
            if first
            else f"{speed}  ETA {duration(eta)} (study {duration(eta_study)})"
        )
        self.log(
            f"  step {step:>{len(str(steps))}}/{steps}{who}  loss {loss:.4f}"
            f"  {self.objective} {m.get(self.objective, math.nan):.4f}  {timing}"
        )

    def finished_unit(self):
        self.unit_times.append((time.perf_counter() - self.t0, self.count))

    def done(self, index: int, status: str, result_text: str):
        self.log(
            f"trial {index} {status}: {result_text}"
            + (f" in {duration(time.perf_counter() - self.t0)}" if self.count == 1 else "")
        )


def _ranges(indices: list[int]) -> str:
    return (
        f"{indices[0]}-{indices[-1]}"
        if indices == list(range(indices[0], indices[-1] + 1))
        else str(indices)
    )
