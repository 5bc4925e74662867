"""Quasi-random search: a scrambled, seeded Halton sequence (playbook PART B).

The playbook prefers quasi-random search during exploration: it spreads trials over the space more
evenly than random search ("jittered, shuffled grid search"), is non-adaptive (the objective can be
redefined after the fact) and gives the same study however many trials run in parallel. Its
references implement a shifted, scrambled Halton sequence (arXiv:1706.03200). Scrambling matters:
an unscrambled Halton in high bases puts the first trials almost on a line. Seeding the scrambling
with the study seed makes each seed a different but reproducible study, so the variance between
studies can be measured by rerunning with other seeds. The first `skip` points are dropped as a
burn-in, as both reference implementations do.
"""

import numpy as np
from scipy.stats import qmc

from jaxplay.spaces import SearchSpace


class QuasiRandomDesigner:
    """Trials from a scrambled Halton sequence; trial i is point skip + i."""

    max_trials = None

    def __init__(self, space: SearchSpace, seed: int, skip: int = 100):
        self.space = space
        self.seed = seed
        self.skip = skip

    def suggest(self, start: int, count: int) -> list[dict[str, object]]:
        """Dotted path -> value for trials start .. start + count - 1."""
        if start < 0 or count < 0:
            raise ValueError(f"start and count must be >= 0 (got start={start}, count={count})")
        if not len(self.space):
            return [{} for _ in range(count)]
        # A Generator rather than the int: SciPy is renaming `seed` to `rng`, and an int means a
        # different stream under each name, whereas a Generator means the same points under both.
        rng = np.random.default_rng(self.seed)
        sampler = qmc.Halton(d=len(self.space), scramble=True, seed=rng)
        sampler.fast_forward(self.skip + start)
        return [self.space.from_unit(u) for u in sampler.random(count)]
