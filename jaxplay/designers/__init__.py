"""Designers: where trial points come from.

Trial i of a study depends only on (algorithm, space, seed, i). A study that is extended from 8 to
80 trials keeps its first 8, and trials drawn one at a time equal trials drawn in a batch (playbook:
"parallel vs sequential trials give statistically identical results").
"""

from typing import Protocol, runtime_checkable

from jaxplay.designers.grid import GridDesigner
from jaxplay.designers.quasirandom import QuasiRandomDesigner
from jaxplay.designers.random import RandomDesigner
from jaxplay.spaces import ConfigError, SearchSpace

__all__ = ['ALGORITHMS', 'Designer', 'GridDesigner', 'QuasiRandomDesigner', 'RandomDesigner',
           'make']

_DESIGNERS = {
    'quasirandom': QuasiRandomDesigner,
    'random': RandomDesigner,
    'grid': GridDesigner,
}
ALGORITHMS = tuple(_DESIGNERS)


@runtime_checkable
class Designer(Protocol):
    """Suggests the hyperparameter values of trials by index."""

    max_trials: int | None  # None: unbounded

    def suggest(self, start: int, count: int) -> list[dict[str, object]]:
        """Dotted path -> value for trials start .. start + count - 1."""
        ...


def make(algorithm: str, space: SearchSpace, seed: int) -> Designer:
    """The designer for a study's algorithm ('quasirandom', 'random' or 'grid')."""
    if algorithm not in _DESIGNERS:
        raise ConfigError(
            f'study.algorithm: unknown algorithm {algorithm!r}; use one of '
            f'{", ".join(map(repr, ALGORITHMS))}')
    return _DESIGNERS[algorithm](space, seed)
