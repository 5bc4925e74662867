"""Bayesian optimization for a study: the GP designer (jaxplay.designers.gp) on the search space.

The playbook prefers quasi-random search while exploring and Bayesian optimization once the search
space is settled ("After exploration concludes"). This adapter maps the study's trials to the unit
cube, turns them into observations and asks the GP for the next trials:

- completed trials are observations (negated for mode='max': the GP minimizes);
- infeasible and failed trials are observations *marked infeasible* (NaN), which the GP places
  below every feasible one, never a made-up large loss (playbook item 46);
- running and pending trials are "pending" points, so parallel workers and the members of a
  batched group get different suggestions;
- a parent study's trials (lineage 'exploit') seed the model like the study's own.

Until `initial_trials` observations exist the trials are quasi-random (the same Halton points the
quasi-random designer gives), since a GP fitted to a handful of points mostly reflects its prior.
Suggestions are seeded by (study seed, trial index): a study run one trial at a time by one worker
is reproducible; with several workers the order in which results arrive differs, and the store's
record of each trial's parameters is the reproducible account.
"""

from __future__ import annotations

import json
import math

import numpy as np

from jaxplay.designers.quasirandom import QuasiRandomDesigner
from jaxplay.errors import ConfigError
from jaxplay.spaces import SearchSpace

ACQUISITIONS = ("ei", "ucb")


def default_initial_trials(dims: int) -> int:
    """Quasi-random trials before the GP takes over: d + 1 points pin down a linear trend in d
    dimensions, and at least 5 keep a 1-2 dimensional study from trusting 2-3 points."""
    return max(5, dims + 1)


class BayesianDesigner:
    """Trials suggested by GP expected improvement (or UCB) from the outcomes so far."""

    adaptive = True
    max_trials = None

    def __init__(
        self,
        space: SearchSpace,
        seed: int,
        *,
        mode: str = "min",
        acquisition: str = "ei",
        initial_trials: int | None = None,
    ):
        if acquisition not in ACQUISITIONS:
            raise ConfigError(
                f"study.acquisition: unknown {acquisition!r}; use 'ei' (expected improvement) "
                "or 'ucb' (upper confidence bound)"
            )
        if initial_trials is not None and (
            not isinstance(initial_trials, int) or initial_trials < 1
        ):
            raise ConfigError(
                f"study.initial_trials: must be an int >= 1 (got {initial_trials!r}); e.g. "
                f"{default_initial_trials(len(space))}"
            )
        if not len(space):
            raise ConfigError(
                "study.algorithm: 'gp' needs a search space; declare c.search or use "
                "algorithm='grid'/'manual'"
            )
        self.space, self.seed, self.mode, self.acquisition = space, seed, mode, acquisition
        self.initial_trials = initial_trials or default_initial_trials(len(space))
        self._quasirandom = QuasiRandomDesigner(space, seed)

    def suggest(self, start: int, count: int, history: list[dict] = ()) -> list[dict[str, object]]:
        """Dotted path -> value for trials start .. start + count - 1, given `history`: dicts with
        'params', 'status' and 'value' (the objective, for completed trials) of every trial known
        so far, this study's and its parent's."""
        x, y, pending = self.observations(history)
        if len(y) < self.initial_trials:
            return self._explore(start, count, history)
        from jaxplay.designers import gp  # jax work: imported only when a GP is needed

        points = gp.suggest(
            x,
            y,
            count,
            seed=int(np.random.SeedSequence([self.seed, start]).generate_state(1)[0]),
            pending=pending,
            acquisition=self.acquisition,
        )
        return [self.space.from_unit(u) for u in points]

    def _explore(self, start: int, count: int, history) -> list[dict[str, object]]:
        """Quasi-random trials from point `start` on, skipping the points already tried: a parent
        study with the same space and seed ran the same sequence."""
        seen = {json.dumps(t["params"], sort_keys=True) for t in history}
        out, index = [], start
        while len(out) < count:
            [params] = self._quasirandom.suggest(index, 1)
            index += 1
            if json.dumps(params, sort_keys=True) not in seen:
                seen.add(json.dumps(params, sort_keys=True))
                out.append(params)
        return out

    def observations(self, history) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, pending) on the unit cube; y is minimized and NaN marks an infeasible trial.
        Trials outside the space (a parent's, before a refinement) are left out."""
        sign = 1.0 if self.mode == "min" else -1.0
        xs, ys, pending = [], [], []
        for trial in history:
            u = self.space.to_unit(trial["params"])
            if u is None:
                continue
            status, value = trial["status"], trial.get("value")
            if status in ("running", "pending"):
                pending.append(u)
            elif status == "completed" and value is not None and math.isfinite(value):
                xs.append(u)
                ys.append(sign * value)
            elif status in ("completed", "infeasible", "failed"):
                xs.append(u)
                ys.append(math.nan)
        d = len(self.space)
        return (
            np.asarray(xs, float).reshape(-1, d),
            np.asarray(ys, float),
            np.asarray(pending, float).reshape(-1, d),
        )
