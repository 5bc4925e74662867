"""Random search: i.i.d. uniform points, the playbook's "slightly less efficient" fallback.

Trial i draws from its own stream seeded by (seed, i), so it does not depend on which trials were
drawn before it or in the same batch.
"""

import numpy as np

from jaxplay.spaces import SearchSpace


class RandomDesigner:
    """Trials drawn uniformly from the unit cube, one random stream per trial."""

    max_trials = None

    def __init__(self, space: SearchSpace, seed: int):
        self.space = space
        self.seed = seed

    def suggest(self, start: int, count: int) -> list[dict[str, object]]:
        """Dotted path -> value for trials start .. start + count - 1."""
        if start < 0 or count < 0:
            raise ValueError(f"start and count must be >= 0 (got start={start}, count={count})")
        return [
            self.space.from_unit(np.random.default_rng([self.seed, i]).random(len(self.space)))
            for i in range(start, start + count)
        ]
