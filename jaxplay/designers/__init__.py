"""Designers: where trial points come from.

For the non-adaptive designers (quasi-random, random, grid, manual), trial i of a study depends
only on (algorithm, space, seed, i). A study that is extended from 8 to 80 trials keeps its first
8, and trials drawn one at a time equal trials drawn in a batch (playbook: "parallel vs sequential
trials give statistically identical results"). The Bayesian-optimization designer ('gp') and
the Optuna TPE adapter ('tpe') are adaptive: each suggests a new trial from the outcomes of the
finished ones (and of a parent study's, see jaxplay.tuning), so its trials are created as the
study runs.
"""

from typing import Protocol, runtime_checkable

from jaxplay.designers.bayes import BayesianDesigner
from jaxplay.designers.grid import GridDesigner
from jaxplay.designers.manual import ManualDesigner
from jaxplay.designers.quasirandom import QuasiRandomDesigner
from jaxplay.designers.random import RandomDesigner
from jaxplay.designers.tpe import TPEDesigner
from jaxplay.errors import ConfigError
from jaxplay.spaces import SearchSpace

__all__ = [
    "ALGORITHMS",
    "BayesianDesigner",
    "Designer",
    "GridDesigner",
    "ManualDesigner",
    "QuasiRandomDesigner",
    "RandomDesigner",
    "TPEDesigner",
    "make",
]

_DESIGNERS = {
    "quasirandom": QuasiRandomDesigner,
    "random": RandomDesigner,
    "grid": GridDesigner,
    "manual": ManualDesigner,
    "gp": BayesianDesigner,
    "tpe": TPEDesigner,
}
ALGORITHMS = tuple(_DESIGNERS)


@runtime_checkable
class Designer(Protocol):
    """Suggests the hyperparameter values of trials by index."""

    max_trials: int | None  # None: unbounded

    def suggest(self, start: int, count: int) -> list[dict[str, object]]:
        """Dotted path -> value for trials start .. start + count - 1."""
        ...


def make(
    algorithm: str,
    space: SearchSpace,
    seed: int,
    *,
    mode: str = "min",
    trials=(),
    acquisition: str | None = None,
    initial_trials: int | None = None,
) -> Designer:
    """The designer for a study's algorithm, with the algorithm's own settings: `trials` for
    'manual', `mode` for 'gp' and 'tpe', `acquisition` and `initial_trials` for 'gp'."""
    if algorithm not in _DESIGNERS:
        raise ConfigError(
            f"study.algorithm: unknown algorithm {algorithm!r}; use one of "
            f"{', '.join(map(repr, ALGORITHMS))}"
        )
    if algorithm == "manual":
        return ManualDesigner(space, seed, list(trials or []))
    if algorithm == "tpe":
        return TPEDesigner(space, seed, mode=mode)
    if algorithm == "gp":
        return BayesianDesigner(
            space, seed, mode=mode, acquisition=acquisition or "ei", initial_trials=initial_trials
        )
    return _DESIGNERS[algorithm](space, seed)
