"""Best value found within a trial budget: GP Bayesian optimization vs quasi-random search vs TPE.

  python scripts/bench_designers.py                                   # 5 seeds, budget 20
  python scripts/bench_designers.py --seeds 5 --budget 40 --functions hartmann6
  pip install -e '.[bench]'                                           # for the TPE column (optuna)

Target (the issue's): the GP designer reaches quasi-random's 2x-budget result with the 1x budget,
and is no worse than TPE.

Designers, each run once per seed on each objective (minimization on the unit cube):
  quasi-random  scrambled Halton seeded with default_rng(seed), first 100 points skipped, as
                jaxplay.designers.quasirandom does; at the budget and at twice the budget
  gp            jaxplay.designers.gp, one suggestion at a time after an initial design of the
                first max(5, d + 1) quasi-random points (the default of
                jaxplay.designers.bayes.default_initial_trials: d + 1 points pin down a linear
                trend, at least 5 keep a 1-2 dimensional study from trusting 2-3 points); each
                suggestion seeded by (seed, trial index) as the designer does
  tpe           optuna.samplers.TPESampler(seed=seed), one suggest_float(0, 1) per dimension

An objective is a function of a point of the unit cube returning a float, plus a name and
dimension: add one to OBJECTIVES and it gets a row.

`--study experiments/mnist1d_mlp.py` adds a real study trained end to end through
jaxplay.sweep.run_study with study.algorithm = 'quasirandom', 'gp' and 'tpe' (the Optuna adapter)
and study.seed = each seed (the training seed stays the study file's, so only the designers
differ); the objective is the study's (val/error for the MNIST-1D MLP, minimized), the budget
`--study_budget` trials (default: the study's num_trials). Quasi-random's 1x result is the best of
the first half of its 2x run (a quasi-random study's first trials do not depend on its length).
The trials are recorded in `--workdir` (default: a temporary folder), one study per designer and
seed, so `python -m jaxplay.studies list --workdir DIR` shows them.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable

import numpy as np
from scipy.stats import qmc

QUASIRANDOM_SKIP = 100  # as jaxplay.designers.quasirandom.QuasiRandomDesigner


@dataclasses.dataclass(frozen=True)
class Objective:
    """A function to minimize on [0, 1]^dims, and its known minimum if any."""

    name: str
    dims: int
    fn: Callable[[np.ndarray], float]
    minimum: float | None = None


def branin(u: np.ndarray) -> float:
    """Branin on [-5, 10] x [0, 15], rescaled from the unit square; min 0.397887 (3 minimizers)."""
    x1, x2 = 15.0 * u[0] - 5.0, 15.0 * u[1]
    b, c, t = 5.1 / (4 * math.pi**2), 5.0 / math.pi, 1.0 / (8 * math.pi)
    return float((x2 - b * x1**2 + c * x1 - 6.0) ** 2 + 10.0 * (1 - t) * math.cos(x1) + 10.0)


_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann6(u: np.ndarray) -> float:
    """Hartmann-6 on [0, 1]^6; minimum -3.32237."""
    return float(-_H6_ALPHA @ np.exp(-np.sum(_H6_A * (np.asarray(u) - _H6_P) ** 2, axis=1)))


OBJECTIVES = {
    "branin": Objective("branin", 2, branin, 0.397887),
    "hartmann6": Objective("hartmann6", 6, hartmann6, -3.32237),
}


# ----------------------------------------------------------------------------------------------
# Designers: each returns the best value found in `budget` evaluations.


def halton(dims: int, count: int, seed: int) -> np.ndarray:
    """The first `count` points of the quasi-random designer's sequence for this seed."""
    sampler = qmc.Halton(d=dims, scramble=True, seed=np.random.default_rng(seed))
    sampler.fast_forward(QUASIRANDOM_SKIP)
    return sampler.random(count)


def run_quasirandom(objective: Objective, budget: int, seed: int) -> float:
    return min(objective.fn(u) for u in halton(objective.dims, budget, seed))


def initial_trials(dims: int) -> int:
    """Quasi-random trials before the GP takes over (jaxplay.designers.bayes' default)."""
    return max(5, dims + 1)


def run_gp(objective: Objective, budget: int, seed: int) -> float:
    from jaxplay.designers import gp

    x = halton(objective.dims, min(budget, initial_trials(objective.dims)), seed)
    y = np.array([objective.fn(u) for u in x])
    while len(y) < budget:
        trial_seed = int(np.random.SeedSequence([seed, len(y)]).generate_state(1)[0])
        u = gp.suggest(x, y, 1, seed=trial_seed)[0]
        x = np.vstack([x, u])
        y = np.append(y, objective.fn(u))
    return float(np.min(y))


def run_tpe(objective: Objective, budget: int, seed: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), direction="minimize")
    study.optimize(
        lambda trial: objective.fn(
            np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(objective.dims)])
        ),
        n_trials=budget,
    )
    return float(study.best_value)


# ----------------------------------------------------------------------------------------------
# A real study, trained end to end by the sweep.


def study_best(
    spec: str, algorithm: str, budget: int, seed: int, workdir: str
) -> list[float | None]:
    """Each trial's best objective value (None if infeasible), in trial order, of the study `spec`
    run by `algorithm` with `budget` trials and search seed `seed`."""
    from jaxplay import config as config_lib
    from jaxplay import sweep

    c = config_lib.load(spec)
    c.study.algorithm, c.study.num_trials, c.study.seed = algorithm, budget, seed
    c.study.name = f"bench-{c.study.name}-{algorithm}-{budget}-seed{seed}"
    record = sweep.run_study(c, workdir, log=lambda *_: None, report=False)
    sign = 1 if record["mode"] == "min" else -1
    return [
        sign * t["best_value"]
        if t["status"] == "completed" and t["best_value"] is not None
        else None
        for t in record["trials"]
    ]


def run_study_rows(spec: str, budget: int | None, seeds: range, workdir: str) -> None:
    """Prints the table of best values found on a real study, as for the functions."""
    from jaxplay import cli
    from jaxplay import config as config_lib
    from jaxplay import spec as spec_lib

    cli.enable_compilation_cache()
    config = config_lib.load(spec)
    budget = budget or config.study.num_trials
    print(
        f"\nstudy {spec} ({config.study.objective}, {config.study.mode}; "
        f"{len(spec_lib.resolve(config).space)} searched hyperparameters, "
        f"{config.train.steps} steps per trial), "
        f"best value over seeds {seeds.start}..{seeds.stop - 1}"
    )
    print(f"  {'designer':<14}{'budget':>7}  {'mean ± std':>20}  {'median':>10}  {'s/study':>8}")
    algorithms = [("quasirandom", 2), ("gp", 1)] + ([("tpe", 1)] if optuna_available() else [])
    results = {}
    for algorithm, multiple in algorithms:
        start = time.perf_counter()
        runs = [study_best(spec, algorithm, multiple * budget, seed, workdir) for seed in seeds]
        seconds = (time.perf_counter() - start) / len(seeds)
        sizes = [budget, 2 * budget] if algorithm == "quasirandom" else [budget]
        for size in sizes:
            best = np.array(
                [min((v for v in run[:size] if v is not None), default=math.inf) for run in runs]
            )
            if config.study.mode == "max":
                best = -best
            results[algorithm, size] = best
            label = "quasi-random" if algorithm == "quasirandom" else algorithm
            print(
                f"  {label:<14}{size:>7}  {best.mean():>10.4f} ± {best.std():<8.4f}  "
                f"{np.median(best):>10.4f}  "
                f"{seconds if size == multiple * budget else math.nan:>8.1f}",
                flush=True,
            )
    better = np.less_equal if config.study.mode == "min" else np.greater_equal
    gp_best, random_best = results["gp", budget], results["quasirandom", 2 * budget]
    verdict = [
        f"gp@{budget} vs quasi-random@{2 * budget}: mean "
        f"{'met' if better(gp_best.mean(), random_best.mean()) else 'NOT met'}"
        f", median {'met' if better(np.median(gp_best), np.median(random_best)) else 'NOT met'}"
    ]
    if ("tpe", budget) in results:
        tpe_best = results["tpe", budget]
        verdict.append(
            f"gp vs tpe@{budget}: mean "
            f"{'met' if better(gp_best.mean(), tpe_best.mean()) else 'NOT met'}"
            f", median {'met' if better(np.median(gp_best), np.median(tpe_best)) else 'NOT met'}"
        )
    print("  target: " + "; ".join(verdict))


# ----------------------------------------------------------------------------------------------


def optuna_available() -> bool:
    try:
        import optuna  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=20, help="trials per study (the 1x budget)")
    parser.add_argument(
        "--functions", nargs="*", default=list(OBJECTIVES), choices=list(OBJECTIVES)
    )
    parser.add_argument("--study", help="also a real study file, e.g. experiments/mnist1d_mlp.py")
    parser.add_argument(
        "--study_budget", type=int, help="trials per study run (default: its num_trials)"
    )
    parser.add_argument(
        "--study_seeds", type=int, default=3, help="search seeds for the study rows"
    )
    parser.add_argument(
        "--workdir", help="where the study rows' trials are recorded (default: a temp folder)"
    )
    args = parser.parse_args(argv)

    import jax

    print("command:", shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]))
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}, jax {jax.__version__} {jax.devices()}"
    )
    designers = [
        ("quasi-random", run_quasirandom, 1),
        ("quasi-random", run_quasirandom, 2),
        ("gp", run_gp, 1),
    ]
    if optuna_available():
        designers.append(("tpe", run_tpe, 1))
    else:
        print("optuna is not installed: the tpe rows are skipped (pip install -e '.[bench]')")

    print(
        "s/study: wall seconds per study, averaged over seeds; "
        "gp's include its one-off compilations"
    )
    seeds = range(args.seeds)
    for name in args.functions:
        objective = OBJECTIVES[name]
        print(
            f"\n{name} (d={objective.dims}, global minimum {objective.minimum}), "
            f"best value found over seeds 0..{args.seeds - 1}"
        )
        print(
            f"  {'designer':<14}{'budget':>7}  {'mean ± std':>20}  {'median':>10}  {'s/study':>8}"
        )
        results = {}
        for label, run, multiple in designers:
            budget = multiple * args.budget
            start = time.perf_counter()
            best = np.array([run(objective, budget, seed) for seed in seeds])
            seconds = (time.perf_counter() - start) / len(seeds)
            results[label, multiple] = best
            print(
                f"  {label:<14}{budget:>7}  {best.mean():>10.4f} ± {best.std():<8.4f}  "
                f"{np.median(best):>10.4f}  {seconds:>8.2f}",
                flush=True,
            )
        gp_best = results["gp", 1]
        qr2 = results["quasi-random", 2]
        verdict = [
            f"gp@{args.budget} vs quasi-random@{2 * args.budget}: mean "
            f"{'met' if gp_best.mean() <= qr2.mean() else 'NOT met'}, median "
            f"{'met' if np.median(gp_best) <= np.median(qr2) else 'NOT met'}"
        ]
        if ("tpe", 1) in results:
            tpe = results["tpe", 1]
            verdict.append(
                f"gp vs tpe@{args.budget}: mean "
                f"{'met' if gp_best.mean() <= tpe.mean() else 'NOT met'}, "
                f"median {'met' if np.median(gp_best) <= np.median(tpe) else 'NOT met'}"
            )
        print("  target: " + "; ".join(verdict))
    if args.study:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            run_study_rows(
                args.study, args.study_budget, range(args.study_seeds), args.workdir or tmp
            )


if __name__ == "__main__":
    main()
