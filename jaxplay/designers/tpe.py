"""An Optuna sampler driving a jaxplay study (`study.algorithm='tpe'`): the adapter.

For researchers who trust Optuna's TPE, or want to compare it with the GP designer on their own
study (scripts/bench_designers.py does). Everything else stays jaxplay's: the study, the store,
the trainer, resumption, workers. Each suggestion builds an in-memory Optuna study from the trials
so far (completed ones with their objective, infeasible and failed ones as FAIL, running ones as
RUNNING, which TPE's constant liar treats as pending) and asks it for the next trials. The sampler
is seeded by (study seed, trial index), so one worker reproduces a study. Needs `pip install
optuna` (or the `bench` extra).
"""

from __future__ import annotations

import math

import numpy as np

from jaxplay.errors import ConfigError
from jaxplay.spaces import SearchSpace


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            "study.algorithm: 'tpe' drives the study with Optuna's TPE sampler, which is not "
            "installed; pip install optuna (or pip install -e '.[bench]'), or use 'gp'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class TPEDesigner:
    """Trials suggested by Optuna's TPE sampler from the outcomes so far."""

    adaptive = True
    max_trials = None

    def __init__(self, space: SearchSpace, seed: int, *, mode: str = "min"):
        if not len(space):
            raise ConfigError("study.algorithm: 'tpe' needs a search space; declare c.search")
        self.optuna = _optuna()
        self.space, self.seed, self.mode = space, seed, mode
        self.distributions = {p.path: self._distribution(p) for p in space}

    def _distribution(self, p):
        d = self.optuna.distributions
        if p.space == "float" and p.scale == "reverse_log":
            # Optuna has no such scale: it samples the axis the scale is uniform on,
            # -log(1 - value), and _plain maps the point back.
            return d.FloatDistribution(p.warp(p.min), p.warp(p.max))
        if p.space == "float":
            return d.FloatDistribution(p.min, p.max, log=p.scale == "log")
        if p.space == "int":
            return d.IntDistribution(p.min, p.max, log=p.scale == "log")
        return d.CategoricalDistribution(list(p.values))

    def suggest(self, start: int, count: int, history: list[dict] = ()) -> list[dict[str, object]]:
        """Dotted path -> value for trials start .. start + count - 1 given `history` (as for
        the GP)."""
        optuna = self.optuna
        seed = int(np.random.SeedSequence([self.seed, start]).generate_state(1)[0])
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        study = optuna.create_study(
            direction="minimize" if self.mode == "min" else "maximize", sampler=sampler
        )
        state = optuna.trial.TrialState
        for trial in history:
            if self.space.to_unit(trial["params"]) is None:
                continue  # outside the space (a parent's trial before a refinement)
            # A conditional space's trial holds its own branch's hyperparameters only: Optuna
            # takes trials over different sets of parameters (its define-by-run spaces).
            active = [p for p in self.space if self.space.active(p, trial["params"])]
            params = {p.path: self._to_optuna(p, trial["params"][p.path]) for p in active}
            distributions = {p.path: self.distributions[p.path] for p in active}
            value = trial.get("value")
            if trial["status"] == "completed" and value is not None and math.isfinite(value):
                frozen = optuna.trial.create_trial(
                    params=params, distributions=distributions, value=value
                )
            elif trial["status"] in ("running", "pending"):
                frozen = optuna.trial.create_trial(
                    params=params, distributions=distributions, state=state.RUNNING
                )
            else:
                frozen = optuna.trial.create_trial(
                    params=params, distributions=distributions, state=state.FAIL
                )
            study.add_trial(frozen)
        # Each asked trial stays RUNNING in the study, so the next ask treats it as pending.
        return [self._ask(study) for _ in range(count)]

    def _ask(self, study) -> dict[str, object]:
        """One suggestion, define-by-run: a branch's hyperparameters are asked for only when the
        trial takes that branch, so TPE models each branch on its own trials."""
        trial = study.ask()
        out: dict[str, object] = {}
        for p in self.space:
            if self.space.active(p, out):
                out.update(self._plain({p.path: self._suggest(trial, p)}, [p]))
        return self.space.complete(out)

    def _suggest(self, trial, p):
        d = self.distributions[p.path]
        if isinstance(d, self.optuna.distributions.FloatDistribution):
            return trial.suggest_float(p.path, d.low, d.high, log=d.log)
        if isinstance(d, self.optuna.distributions.IntDistribution):
            return trial.suggest_int(p.path, d.low, d.high, log=d.log)
        return trial.suggest_categorical(p.path, d.choices)

    def _plain(self, params: dict, space) -> dict[str, object]:
        """Optuna's values as the plain Python scalars of the space, in search-space order."""
        out = {}
        for p in space:
            value = params[p.path]
            if p.space == "float" and p.scale == "reverse_log":
                value = float(min(max(p.unwarp(value), p.min), p.max))
            out[p.path] = (
                float(value) if p.space == "float" else int(value) if p.space == "int" else value
            )
        return out

    @staticmethod
    def _to_optuna(p, value):
        """A trial's value on the axis optuna samples it on (see _distribution)."""
        return p.warp(value) if p.space == "float" and p.scale == "reverse_log" else value
