"""Grid search: every combination of a few values per hyperparameter.

The playbook accepts grid search only in 1-2 dimensions; it is here for those studies (e.g. one
scientific hyperparameter with a handful of values). The seed is ignored: a grid has one order.
"""

from jaxplay.errors import ConfigError
from jaxplay.spaces import SearchSpace


class GridDesigner:
    """The cartesian product of each hyperparameter's grid, in search-space order (a branch's
    hyperparameters only in its own trials: jaxplay.spaces.branches)."""

    def __init__(self, space: SearchSpace, seed: int, points_per_float: int = 5):
        self.space = space
        self.seed = seed
        self._points = space.grid(points_per_float)
        self.max_trials = len(self._points)  # 1 for an empty space

    def suggest(self, start: int, count: int) -> list[dict[str, object]]:
        """Dotted path -> value for trials start .. start + count - 1."""
        if start < 0 or count < 0:
            raise ValueError(f"start and count must be >= 0 (got start={start}, count={count})")
        if start + count > self.max_trials:
            raise ConfigError(
                f"study.num_trials: grid has only {self.max_trials} points; set num_trials <= "
                f"{self.max_trials} or None"
            )
        return [dict(point) for point in self._points[start : start + count]]
