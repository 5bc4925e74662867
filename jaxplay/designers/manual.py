"""Manual trials: configurations listed in the study file (playbook: a study's trials come from a
search algorithm "or specify configurations manually").

`c.study.trials = [{'optimizer.learning_rate': 0.01, 'seed': 1}, ...]`, each a dict of dotted
config paths. Round 2 and reruns of the best trial are such studies (jaxplay.tuning.actions).
"""

from jaxplay.errors import ConfigError
from jaxplay.spaces import SearchSpace


class ManualDesigner:
    """The listed trials, in order."""

    def __init__(self, space: SearchSpace, seed: int, trials: list[dict]):
        self.space = space
        self.seed = seed
        self.trials = [dict(t) for t in trials]
        self.max_trials = len(self.trials)

    def suggest(self, start: int, count: int) -> list[dict[str, object]]:
        """Dotted path -> value for trials start .. start + count - 1."""
        if start < 0 or count < 0:
            raise ValueError(f"start and count must be >= 0 (got start={start}, count={count})")
        if start + count > self.max_trials:
            raise ConfigError(
                f"study.num_trials: study.trials lists only {self.max_trials} trials; set "
                f"num_trials <= {self.max_trials} or None"
            )
        return [dict(t) for t in self.trials[start : start + count]]
