"""Which hyperparameters the objective is sensitive to, which interact (must be re-tuned together)
and which could be fixed: the insight the playbook's exploration phase is for ("Exploration vs
exploitation"), measured on a finished (or running) study.

A functional-ANOVA-style decomposition of the feasible trials' objective over the searched
hyperparameters. Each one is binned on the unit-cube coordinate its space defines
(jaxplay.spaces: a log-scaled one on its log scale) into a few quantile bins (a list's values are
its levels). Least squares on one-hot bins then gives:
  * a main effect per hyperparameter: the share of the objective's variance its bins explain;
  * an interaction per pair: the share a model of every cell of the pair's bins explains beyond
    the two main effects added (what one hyperparameter changes in the effect of the other).
Each share is reported beyond its chance level: the mean share of the same model fitted to
shuffled objectives (many bins explain some variance by chance alone). Significance comes from the
same shuffles: PERMUTATIONS permutations of the objective, and the min-p adjustment over all
effects and pairs together (Westfall and Young; each test's F p-value puts tests with different
numbers of bins on one scale) keep the chance of calling anything significant in a study of pure
noise at ALPHA. No jax: numpy, and scipy for the F distribution.

    from jaxplay import analysis
    from jaxplay.analysis import importance
    found = importance.analyze(analysis.load('runs/mnist1d_mlp').record)
    print('\\n'.join(importance.lines(found)))
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math

import ml_collections
import numpy as np

from jaxplay import spaces

# Quantile bins per hyperparameter: enough for the average cell of a pair of them (bins^2 cells)
# to hold TRIALS_PER_CELL trials, between MIN_BINS and MAX_BINS. Two bins see only a slope; four
# already see a bend (a learning rate's U-shaped valley), and more would leave cells of a pair
# with a trial or two, whose means are that trial's noise.
MIN_BINS, MAX_BINS = 2, 4
TRIALS_PER_CELL = 3
# Below this many feasible trials the analysis says nothing: the smallest pair (2 x 2 bins) needs
# TRIALS_PER_CELL trials in each of its 4 cells for a cell mean to be more than one trial.
MIN_TRIALS = MIN_BINS**2 * TRIALS_PER_CELL
# Shuffles of the objective for the permutation test. The smallest p-value it can give is
# 1 / (PERMUTATIONS + 1) and the 5% threshold it estimates has a standard error of
# sqrt(0.05 * 0.95 / PERMUTATIONS), about 0.007 here: far below the 0.05 it is compared with.
PERMUTATIONS = 1000
# The family-wise rate: the chance that a study whose objective is pure noise shows any effect or
# interaction as significant (the usual 5%).
ALPHA = 0.05
# The shuffles are seeded: the same study gives the same report.
SEED = 0
# Shuffled objectives processed at once (bounds the memory: trials x CHUNK floats).
CHUNK = 250


@dataclasses.dataclass(frozen=True)
class Effect:
    """One main effect (one path) or pairwise interaction (two paths)."""

    paths: tuple[str, ...]
    share: float  # share of the objective's variance beyond chance (>= 0)
    observed: float  # share explained, before subtracting chance
    chance: float  # mean share explained for shuffled objectives
    p: float  # min-p adjusted p-value (family: every effect and pair)

    @property
    def significant(self) -> bool:
        """True when the permutation test rejects "no effect" at ALPHA, family-wise."""
        return self.p <= ALPHA


@dataclasses.dataclass(frozen=True)
class Sensitivity:
    """A study's sensitivity analysis; `reason` says why there is none (too few trials, ...)."""

    trials: int  # feasible trials analysed
    bins: int  # quantile bins per continuous hyperparameter
    mains: tuple[Effect, ...] = ()  # largest share first
    pairs: tuple[Effect, ...] = ()  # largest share first
    roles: dict = dataclasses.field(default_factory=dict)  # path -> scientific or nuisance
    constant: tuple[str, ...] = ()  # searched, but one level among the feasible trials
    reason: str | None = None

    def partners(self, path: str) -> list[str]:
        """The hyperparameters `path` interacts with significantly, strongest first."""
        return [
            other
            for e in self.pairs
            if e.significant and path in e.paths
            for other in e.paths
            if other != path
        ]

    def verdict(self, path: str) -> str:
        """'matters', 'interacts with X', both, 'unclear' (not significant, but explaining more
        than twice what chance does), or 'insensitive: could be fixed'."""
        main = next((e for e in self.mains if e.paths == (path,)), None)
        parts = ["matters"] if main is not None and main.significant else []
        partners = self.partners(path)
        if partners:
            parts.append(f"interacts with {', '.join(partners)}")
        if parts:
            return "; ".join(parts)
        if main is not None and main.share > main.chance:
            # Not significant, yet it explains more than twice what shuffled objectives do: too
            # few trials to tell an effect from none, so nothing to fix on this evidence.
            return (
                f"unclear: {main.share:.0%} of the variance but p {main.p:.2g}; "
                "more trials would tell"
            )
        if self.roles.get(path) == "scientific":
            # The question of the study itself: its answer, not a hyperparameter to fix.
            return "insensitive: no effect found in this range"
        return "insensitive: could be fixed"


def analyze(record: dict) -> Sensitivity:
    """The sensitivity analysis of a study record (Store.record, StudyData.record). It reads only
    the search space and the feasible trials' values, so a record that changed elsewhere (a
    running trial's new evaluation, which the dashboard rereads) reuses the last result."""
    feasible = [
        t
        for t in record.get("trials", [])
        if t["status"] == "completed"
        and t.get("best_value") is not None
        and math.isfinite(t["best_value"])
    ]
    search = (record.get("config") or {}).get("search")
    key = [(t["index"], t["best_value"], t["params"]) for t in feasible]
    return _analyze(json.dumps([search, key], sort_keys=True, default=str))


@functools.lru_cache(maxsize=16)
def _analyze(inputs: str) -> Sensitivity:
    """analyze's work, on its inputs as JSON: [search, [(index, best_value, params), ...]]."""
    search, rows = json.loads(inputs)
    space = spaces.parse(ml_collections.ConfigDict({"search": search}).get("search"))
    feasible = [{"best_value": value, "params": params} for _, value, params in rows]
    n = len(feasible)
    bins = int(min(max(math.isqrt(n // TRIALS_PER_CELL), MIN_BINS), MAX_BINS))
    roles = {p.path: p.role for p in space}
    if not len(space):
        return Sensitivity(n, bins, reason="nothing was searched")
    if n < MIN_TRIALS:
        return Sensitivity(
            n,
            bins,
            roles=roles,
            reason=(
                f"needs at least {MIN_TRIALS} feasible trials (has {n}): {MIN_BINS} bins per "
                f"hyperparameter and {TRIALS_PER_CELL} trials in each cell of a pair of them"
            ),
        )
    y = np.array([t["best_value"] for t in feasible], dtype=float)
    y = y - y.mean()
    if not np.any(y):
        return Sensitivity(n, bins, roles=roles, reason="the objective is the same in every trial")
    codes, constant = {}, []
    for p in space:
        c = _levels(p, [t["params"] for t in feasible], bins)
        if c.max() == 0:
            constant.append(p.path)
        else:
            codes[p.path] = c
    tests = [(path,) for path in codes] + list(itertools.combinations(codes, 2))
    bases = [_bases(codes, paths) for paths in tests]
    observed, observed_p = (a[0] for a in _shares_and_p(bases, y[:, None]))
    null, null_p = _null(bases, y)
    adjusted = _min_p(observed_p, null_p)
    chance = null.mean(axis=0)
    effects = [
        Effect(paths, max(float(o - c), 0.0), float(o), float(c), float(p))
        for paths, o, c, p in zip(tests, observed, chance, adjusted)
    ]
    order = sorted(effects, key=lambda e: (-e.share, e.paths))
    return Sensitivity(
        trials=n,
        bins=bins,
        mains=tuple(e for e in order if len(e.paths) == 1),
        pairs=tuple(e for e in order if len(e.paths) == 2),
        roles=roles,
        constant=tuple(constant),
    )


def _levels(p: spaces.Hyperparameter, params: list[dict], bins: int) -> np.ndarray:
    """Each trial's level of p, 0..L-1: a list's value, or a quantile bin of its unit-cube
    coordinate (on its scale) when it has more distinct values than `bins`. A trial without it
    (a branch it did not take) or with a value outside the space has a level of its own."""
    units, keys = [], []
    for values in params:
        value = values.get(p.path)
        try:
            u = None if value is None or isinstance(value, bool) else p.to_unit(value)
        except (TypeError, ValueError):  # a value of another type than the space's
            u = None
        if u is not None and not math.isfinite(u):
            u = None
        units.append(u)
        keys.append(repr(value) if u is None else None)
    known = np.array([u for u in units if u is not None], dtype=float)
    distinct = np.unique(known)
    if p.space == "categorical" or len(distinct) <= bins:
        labels = [repr(u) if u is not None else k for u, k in zip(units, keys)]
    else:
        edges = np.quantile(known, np.arange(1, bins) / bins)
        labels = [
            int(np.searchsorted(edges, u, side="right")) if u is not None else k
            for u, k in zip(units, keys)
        ]
    _, inverse = np.unique([str(label) for label in labels], return_inverse=True)
    return inverse.astype(int)


def _one_hot(codes: np.ndarray) -> np.ndarray:
    return np.eye(codes.max() + 1)[codes]


def _bases(codes: dict, paths: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """Orthonormal bases of the models a test compares: a main effect's bins; a pair's additive
    model and its model of every cell (the interaction is what the second adds)."""
    if len(paths) == 1:
        return (_orthonormal(_one_hot(codes[paths[0]])),)
    a, b = codes[paths[0]], codes[paths[1]]
    additive = np.hstack([_one_hot(a), _one_hot(b)[:, 1:]])
    cells = np.unique(a * (b.max() + 1) + b, return_inverse=True)[1]
    return _orthonormal(additive), _orthonormal(_one_hot(cells))


def _orthonormal(design: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the design's column space (rank-revealing: aliased bins of a
    pair whose levels always go together add nothing)."""
    u, s, _ = np.linalg.svd(design, full_matrices=False)
    tol = s.max() * max(design.shape) * np.finfo(float).eps
    return u[:, s > tol]


def _explained(bases: tuple[np.ndarray, ...], y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of variance explained, share left unexplained by the largest model), per column of
    centered objectives y (trials x k): a main effect's, or a pair's cells beyond its additive
    model. Every model spans the constant, so the projection of a centered y is its explained
    part."""
    total = np.einsum("ij,ij->j", y, y)
    shares = [np.square(b.T @ y).sum(axis=0) / total for b in bases]
    effect = shares[0] if len(shares) == 1 else shares[1] - shares[0]
    return effect, 1.0 - shares[-1]


def _f_p_values(bases: tuple[np.ndarray, ...], effect, rest, trials: int) -> np.ndarray:
    """The F-test p-values of an effect: only a common scale on which tests with different numbers
    of bins can be compared (the shuffles, not the F distribution, decide significance)."""
    from scipy import stats  # only when there is an analysis to make

    ranks = [b.shape[1] for b in bases]
    df1 = ranks[0] - 1 if len(ranks) == 1 else ranks[1] - ranks[0]
    df2 = trials - ranks[-1]
    if df1 < 1 or df2 < 1:  # aliased or saturated: nothing to test
        return np.ones_like(effect)
    f = (np.maximum(effect, 0.0) / df1) / (np.maximum(rest, 1e-300) / df2)
    return stats.f.sf(f, df1, df2)


def _shares_and_p(bases: list, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every test's (share, F p-value) for centered objectives y (trials x k): (k x tests) each."""
    shares, p = [], []
    for b in bases:
        effect, rest = _explained(b, y)
        shares.append(effect)
        p.append(_f_p_values(b, effect, rest, len(y)))
    return np.stack(shares, axis=1), np.stack(p, axis=1)


def _null(bases: list, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every test's share and F p-value for PERMUTATIONS shuffles of y: (PERMUTATIONS x tests)."""
    rng = np.random.default_rng(SEED)
    shares, p = [], []
    for start in range(0, PERMUTATIONS, CHUNK):
        count = min(CHUNK, PERMUTATIONS - start)
        shuffled = rng.permuted(np.repeat(y[:, None], count, axis=1), axis=0)
        s, q = _shares_and_p(bases, shuffled)
        shares.append(s)
        p.append(q)
    return np.concatenate(shares), np.concatenate(p)


def _min_p(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Min-p adjusted p-values (Westfall and Young) from each test's F p-value for the observed
    objective (tests) and for its shuffles (shuffles x tests): the fraction of the pool of the
    observed objective and its shuffles (exchangeable when nothing matters) whose smallest
    p-value over all tests is at most the test's observed one. Continuous p-values let every
    test reach 1 / (PERMUTATIONS + 1), however many tests there are."""
    smallest = null.min(axis=1)
    # A hair of slack: the same F p-value computed twice may differ in the last bit.
    return np.array([(1 + (smallest <= p * (1 + 1e-9)).sum()) / (len(null) + 1) for p in observed])


def summary(found: Sensitivity) -> str:
    """How the analysis was made, in one sentence."""
    return (
        f"{found.trials} feasible trials; each hyperparameter in up to {found.bins} quantile bins "
        f"on its scale; shares of the objective's variance beyond chance; significance by a "
        f"permutation test ({PERMUTATIONS} shuffles of the objective, {ALPHA:.0%} family-wise "
        "over every effect and pair)"
    )


def lines(found: Sensitivity) -> list[str]:
    """The analysis as `studies show` prints it: a line per hyperparameter, most sensitive first,
    then the significant interactions; nothing when there is no analysis (too few trials)."""
    if found.reason is not None:
        return []
    width = max(len(e.paths[0]) for e in found.mains) if found.mains else 0
    out = ["", f"sensitivity ({summary(found)}):"]
    for e in found.mains:
        path = e.paths[0]
        out.append(f"  {path:<{width}}  {e.share:6.1%}  {found.verdict(path)}")
    for path in found.constant:
        out.append(f"  {path:<{width}}       -  one value among the feasible trials")
    for e in found.pairs:
        if e.significant:
            out.append(f"  interaction {' x '.join(e.paths)}: {e.share:.1%} (p {e.p:.3f})")
    return out
