"""Tests for jaxplay.designers.gp: the fit, where suggestions go, infeasible trials, batches, seeds
and compilation. Every test works on 1-2 dimensions and fewer than 32 observations, so the whole
file compiles each GP program once per dimension (the padded bucket of 32 rows)."""

import math

import numpy as np
import pytest
from scipy.stats import qmc

from jaxplay.designers import gp


def halton(d, n, seed=0):
    return qmc.Halton(d=d, scramble=True, seed=np.random.default_rng(seed)).random(n)


def smooth(u):
    return np.sin(3.0 * u[..., 0]) + 2.0 * (u[..., 1] - 0.3) ** 2


def bowl(u):
    return (u[..., 0] - 0.3) ** 2 + (u[..., 1] - 0.5) ** 2


def branin(u):
    x1, x2 = 15.0 * u[..., 0] - 5.0, 15.0 * u[..., 1]
    b, c, t = 5.1 / (4 * math.pi**2), 5.0 / math.pi, 1.0 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6.0) ** 2 + 10.0 * (1 - t) * np.cos(x1) + 10.0


def min_distance(points, others):
    return np.min(np.linalg.norm(points[:, None, :] - others[None, :, :], axis=-1))


def test_fill_infeasible_is_worse_than_every_feasible_value():
    y = np.array([1.0, np.nan, 3.0, np.inf, -2.0, -np.inf])
    filled, feasible = gp.fill_infeasible(y)
    np.testing.assert_array_equal(feasible, [True, False, True, False, True, False])
    np.testing.assert_array_equal(filled[feasible], y[feasible])
    assert np.all(filled[~feasible] > y[feasible].max())
    assert np.all(filled[~feasible] == 3.0 + 0.5 * (3.0 - -2.0))
    # One distinct feasible value: no range to scale by, still strictly worse.
    filled, _ = gp.fill_infeasible(np.array([2.0, np.nan, 2.0]))
    assert filled[1] > 2.0


def test_fit_recovers_a_smooth_function_and_its_uncertainty():
    x = halton(2, 20)
    y = smooth(x)
    params = gp.fit(x, y)
    held_out = np.random.default_rng(1).random((50, 2))
    grid = np.random.default_rng(2).random((1000, 2))
    # The points of the square farthest from every observation.
    far = grid[np.argsort(-np.min(np.linalg.norm(grid[:, None] - x[None], axis=-1), axis=1))[:10]]
    mean, std = gp.predict(params, x, y, np.concatenate([held_out, x, far]))

    rmse = np.sqrt(np.mean((mean[:50] - smooth(held_out)) ** 2))
    assert rmse < 0.1 * smooth(held_out).std()
    np.testing.assert_allclose(mean[50:70], y, atol=0.01 * y.std())  # original y units
    assert std[50:70].max() < 0.5 * std[70:].min()
    assert params.lengthscales.shape == (2,)
    assert params.noise_variance >= 1e-6


def test_expected_improvement_explores_away_from_clustered_points():
    # A flat objective measured only in one corner: nothing to exploit, so EI goes where the
    # posterior is most uncertain.
    x = 0.2 * np.random.default_rng(0).random((8, 2))
    for seed in range(2):
        point = gp.suggest(x, np.ones(8), 1, seed=seed)
        assert min_distance(point, x) > 0.5


def test_expected_improvement_finds_the_minimum_of_a_1d_quadratic():
    x = np.array([[0.05], [0.2], [0.3], [0.45], [0.6], [0.75], [0.9]])
    y = (x[:, 0] - 0.37) ** 2
    for acquisition in gp.ACQUISITIONS:
        point = gp.suggest(x, y, 1, seed=0, acquisition=acquisition)
        assert abs(point[0, 0] - 0.37) < 0.03, acquisition


def test_suggestions_avoid_the_infeasible_region():
    x = halton(2, 24, seed=3)
    y = bowl(x)
    y[x[:, 0] > 0.6] = np.nan
    assert 5 <= np.isnan(y).sum() <= 15
    for seed in range(3):
        points = gp.suggest(x, y, 2, seed=seed)
        assert np.all(points[:, 0] < 0.6), points


def test_no_feasible_observation_gives_quasirandom_points():
    x = halton(2, 5)
    for y in (np.full(5, np.nan), np.array([np.inf, np.nan, -np.inf, np.nan, np.nan])):
        points = gp.suggest(x, y, 3, seed=0)
        np.testing.assert_array_equal(
            points, qmc.Halton(2, scramble=True, seed=np.random.default_rng(0)).random(3)
        )
    assert gp.suggest(np.zeros((0, 2)), np.zeros(0), 2, seed=0).shape == (2, 2)


def test_same_seed_same_points_other_seed_other_points():
    x = halton(2, 12)
    y = smooth(x)
    pending = np.array([[0.5, 0.5]])
    first = gp.suggest(x, y, 2, seed=7, pending=pending)
    np.testing.assert_array_equal(first, gp.suggest(x, y, 2, seed=7, pending=pending))
    empty = np.zeros((0, 2))
    assert not np.array_equal(
        gp.suggest(empty, np.zeros(0), 2, seed=0), gp.suggest(empty, np.zeros(0), 2, seed=1)
    )


def test_batch_points_are_distinct_and_avoid_pending_points():
    x = halton(2, 12, seed=4)
    y = smooth(x)
    batch = gp.suggest(x, y, 4, seed=0)
    assert batch.shape == (4, 2) and batch.dtype == np.float64
    assert np.all((batch >= 0) & (batch <= 1))
    pairwise = np.linalg.norm(batch[:, None] - batch[None], axis=-1)[np.triu_indices(4, 1)]
    assert pairwise.min() > 0.01
    assert min_distance(batch, x) > 1e-3

    # The point chosen without pending work is pending now: it is not suggested again.
    pending = np.concatenate([gp.suggest(x, y, 1, seed=0), [[0.5, 0.5]]])
    points = gp.suggest(x, y, 2, seed=0, pending=pending)
    assert min_distance(points, pending) > 0.01


def test_branin_is_optimized_within_25_trials():
    # Quasi-random search with 25 trials typically ends near 3 on Branin; the GP gets close to the
    # global minimum 0.397887 (within ~0.03 on these seeds; the bound leaves room for other BLAS).
    for seed in range(3):
        x = halton(2, 10, seed=seed)
        y = branin(x)
        for trial in range(10, 25):
            point = gp.suggest(x, y, 1, seed=trial)
            x, y = np.concatenate([x, point]), np.append(y, branin(point))
        assert y.min() - 0.397887 < 0.5, (seed, y.min())


def test_one_compilation_per_bucket():
    assert [gp.bucket(n) for n in (0, 1, 31, 32, 33, 64, 65)] == [32, 32, 32, 32, 64, 64, 128]
    x = halton(2, 14, seed=5)
    y = bowl(x)
    gp.suggest(x[:10], y[:10], 1, seed=0)
    sizes = gp.fit_restarts._cache_size(), gp._maximize_acquisition._cache_size()
    for n in range(11, 15):  # new trials, new seeds: the same programs
        gp.suggest(x[:n], y[:n], 1, seed=n)
    assert (gp.fit_restarts._cache_size(), gp._maximize_acquisition._cache_size()) == sizes


def test_rejects_bad_arguments():
    x = halton(2, 4)
    with pytest.raises(ValueError, match="acquisition"):
        gp.suggest(x, bowl(x), 1, seed=0, acquisition="pi")
    with pytest.raises(ValueError, match="unit cube"):
        gp.suggest(x + 1.0, bowl(x), 1, seed=0)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        gp.suggest(x, bowl(x)[:3], 1, seed=0)
