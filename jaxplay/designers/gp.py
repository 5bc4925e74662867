"""Gaussian-process Bayesian optimization on the unit cube (minimization): the core of the 'gp'
designer.

Why GP-EI. Once exploration has settled the search space, the playbook recommends Bayesian
optimization to squeeze out the best configuration ("After exploration concludes ... Bayesian
optimization tools are a compelling option"). A GP with expected improvement is the standard,
well-understood choice for the handful-to-hundreds of trials a study has: it is data efficient,
its uncertainty drives exploration without tuning, and it needs no training budget of its own.

The playbook also says a trial that diverged or failed must be *marked infeasible*, not given a
huge made-up loss (which would wreck any model of the objective). Here a non-finite y means
infeasible; before fitting such a trial gets the value `worst feasible + 0.5 * feasible range`,
just worse than every feasible one, so the GP learns to stay away from its region without the
scale of the fit being set by an arbitrary constant.

Choices:
- Model: Matern-5/2 kernel with one lengthscale per dimension (ARD), signal variance, Gaussian
  noise (floored at 1e-6 of the standardized variance) and a constant mean, on standardized y.
  Hyperparameters maximize the log marginal likelihood plus weak log-normal priors, by Adam from
  several restarts vmapped in one jit, each projected onto bounds (lengthscales in [0.01, 10]).
- Precision: float64 inside a `jax.enable_x64(True)` context (thread-local, so the trainer keeps
  float32; jax.experimental.enable_x64 is gone from jax 0.10). With a nearly noise-free
  objective K's condition number reaches ~1e6-1e8, where a float32 Cholesky fails or needs a
  jitter large enough to blur the fit; float64 costs little on matrices of a few dozen rows.
- Compilation: the training set is padded to a bucket (32, 64, 128, ...) with masked rows that
  leave the likelihood and posterior unchanged, so a study of 1..64 trials compiles each program
  twice; seeds, data and hyperparameters are array arguments, never static. Padding a small
  study to 32 rows costs far less than the compilation it saves (README, Performance).
- Seeds: every random draw (restart points, candidates) comes from numpy's default_rng(seed), so
  the same inputs and seed give bit-identical points. jax.random is not used: its float64 threefry
  alone takes seconds to compile on a CPU.
- Acquisition: log expected improvement (same argmax as EI, but finite and with useful gradients
  where EI underflows to 0) over the incumbent = the lowest posterior mean at a feasible training
  point (for a noise-free objective that is the best observation; with noisy trials it is not
  fooled by one lucky evaluation), or UCB (the lower confidence bound mean - sqrt(beta) * std for
  minimization). It is maximized over 2048 scrambled Sobol points plus Gaussian perturbations of
  the best observed points; the best 16 are refined by projected Adam, all in one jit.
- Batches and pending trials: "kriging believer". Pending points, then each chosen point, join the
  training set with their posterior mean as a fantasized value (hyperparameters kept fixed); the
  posterior variance collapses there, so the next choice goes elsewhere. A suggestion also keeps
  0.1 lengthscales from pending and chosen points (the believer keeps a downhill mean, and would
  otherwise spend a batch on small steps along one slope) and 1e-3 from every observed point.
- Without any feasible observation there is nothing to model: the points are a seeded, scrambled
  Halton sequence, as the quasi-random designer gives.
"""

from __future__ import annotations

import contextlib
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import log_ndtr
from scipy.stats import qmc

# The model lives in gp_model; the names code and tests use as gp.<name> are re-exported here.
from jaxplay.designers.gp_model import GPParams as GPParams
from jaxplay.designers.gp_model import bucket as bucket
from jaxplay.designers.gp_model import fit_restarts as fit_restarts
from jaxplay.designers.gp_model import fit_theta, pad, posterior_fn, posterior_np, unpack

ACQUISITIONS = ("ei", "ucb")

_SOBOL_CANDIDATES = 2048
_LOCAL_CENTERS = 8  # best observed points around which candidates are perturbed
_LOCAL_PER_CENTER = 32
_LOCAL_SCALES = (0.01, 0.03, 0.1, 0.3)
_REFINED = 16
_FALLBACKS = 48  # unrefined runners-up, in case the refined points crowd an existing one
_REFINE_STEPS = 40
_REFINE_LEARNING_RATE = 0.01
_MIN_DISTANCE = 1e-3
_BATCH_SEPARATION = 0.1  # lengthscales between a suggestion and a pending or chosen point


# ----------------------------------------------------------------------------------------------
# Public API.


def suggest(
    x: np.ndarray,
    y: np.ndarray,
    count: int,
    *,
    seed: int,
    pending: np.ndarray | None = None,
    acquisition: str = "ei",
    ucb_beta: float = 2.0,
) -> np.ndarray:
    """`count` new points in [0,1]^d that minimize y, given observations (x, y; NaN =
    infeasible)."""
    if acquisition not in ACQUISITIONS:
        raise ValueError(f"acquisition: unknown {acquisition!r}; use one of {ACQUISITIONS}")
    x, y = _check_observations(x, y)
    d = x.shape[1]
    if count < 0:
        raise ValueError(f"count must be >= 0 (got {count})")
    pending = (
        np.zeros((0, d)) if pending is None else np.asarray(pending, np.float64).reshape(-1, d)
    )
    if not np.isfinite(y).any():
        return _halton(d, count, seed)

    rng = np.random.default_rng(seed)
    filled, feasible = fill_infeasible(y)
    shift, scale = _standardization(filled)
    ys = (filled - shift) / scale
    with _compute_context():
        theta = fit_theta(x, ys, rng)
        x_train, y_train, incumbent_ok = x, ys, feasible
        if len(pending):
            # Adding a point at its own posterior mean leaves the mean everywhere unchanged, so all
            # pending points can be fantasized from one prediction.
            pending_mean, _ = posterior_np(theta, x_train, y_train, pending)
            x_train = np.concatenate([x_train, pending])
            y_train = np.concatenate([y_train, pending_mean])
            incumbent_ok = np.concatenate([incumbent_ok, np.ones(len(pending), bool)])
        chosen = []
        for _ in range(count):
            point, fantasy = _choose_one(
                theta,
                x_train,
                y_train,
                incumbent_ok,
                len(x),
                feasible,
                ys,
                x,
                rng,
                acquisition,
                ucb_beta,
            )
            chosen.append(point)
            x_train = np.concatenate([x_train, point[None]])
            y_train = np.append(y_train, fantasy)
            incumbent_ok = np.append(incumbent_ok, True)
    return np.asarray(chosen, np.float64).reshape(count, d)


def fit(x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> GPParams:
    """GP hyperparameters maximizing the log marginal likelihood (plus weak priors) of (x, y)."""
    x, y = _check_observations(x, y)
    if not np.isfinite(y).any():
        raise ValueError("fit needs at least one finite y (all trials are infeasible or none ran)")
    filled, _ = fill_infeasible(y)
    shift, scale = _standardization(filled)
    with _compute_context():
        theta = fit_theta(x, (filled - shift) / scale, np.random.default_rng(seed))
    d = x.shape[1]
    return GPParams(
        lengthscales=np.exp(theta[:d]),
        signal_variance=float(np.exp(theta[d])),
        noise_variance=float(np.exp(theta[d + 1])),
        mean=float(theta[d + 2]),
        y_shift=shift,
        y_scale=scale,
    )


def predict(
    params: GPParams, x_train: np.ndarray, y_train: np.ndarray, x_query: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and std (of the noise-free objective) at x_query, in the original y units."""
    x_train, y_train = _check_observations(x_train, y_train)
    filled, _ = fill_infeasible(y_train)
    ys = (filled - params.y_shift) / params.y_scale
    theta = np.concatenate(
        [
            np.log(params.lengthscales),
            [math.log(params.signal_variance), math.log(params.noise_variance), params.mean],
        ]
    )
    with _compute_context():
        mean, std = posterior_np(
            theta, x_train, ys, np.asarray(x_query, np.float64).reshape(-1, x_train.shape[1])
        )
    return mean * params.y_scale + params.y_shift, std * params.y_scale


def fill_infeasible(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y with non-finite values replaced by a value worse than every feasible one, feasible
    mask)."""
    y = np.asarray(y, np.float64)
    feasible = np.isfinite(y)
    if feasible.all() or not feasible.any():
        return y.copy(), feasible
    worst, best = y[feasible].max(), y[feasible].min()
    spread = worst - best if worst > best else 1.0
    return np.where(feasible, y, worst + 0.5 * spread), feasible


# ----------------------------------------------------------------------------------------------
# Host-side helpers.


@functools.cache
def _blas_controller():
    try:
        import threadpoolctl  # installed with scikit-learn, a jaxplay dependency
    except ImportError:
        return None
    return threadpoolctl.ThreadpoolController()


def _compute_context():
    """float64 for jax, one BLAS thread for the LAPACK calls that jax makes on CPU.

    jaxlib's CPU Cholesky and triangular solves run in SciPy's OpenBLAS, whose thread pool made
    a solve on 64x64 matrices about two orders of magnitude slower on busy cores. The limit is
    process-wide while it lasts, and restored on exit.
    """
    stack = contextlib.ExitStack()
    stack.enter_context(jax.enable_x64(True))
    controller = _blas_controller()
    if controller is not None:
        stack.enter_context(controller.limit(limits=1, user_api="blas"))
    return stack


def _check_observations(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64).reshape(-1)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x must be (n, d) and y (n,) (got x {x.shape}, y {y.shape})")
    if len(x) and (np.nanmin(x) < 0 or np.nanmax(x) > 1 or not np.isfinite(x).all()):
        raise ValueError("x must lie in the unit cube [0, 1]^d")
    return x, y


def _standardization(filled: np.ndarray) -> tuple[float, float]:
    shift = float(filled.mean())
    scale = float(filled.std())
    return shift, (scale if scale > 0 else 1.0)


def _halton(d: int, count: int, seed: int) -> np.ndarray:
    # A Generator, as in quasirandom.py: the same points whichever of seed=/rng= SciPy expects.
    return qmc.Halton(d=d, scramble=True, seed=np.random.default_rng(seed)).random(count)


def _candidates(
    rng: np.random.Generator, d: int, x_obs: np.ndarray, ys_obs: np.ndarray, feasible: np.ndarray
) -> np.ndarray:
    sobol = qmc.Sobol(d=d, scramble=True, seed=rng).random(_SOBOL_CANDIDATES)
    order = np.argsort(np.where(feasible, ys_obs, np.inf), kind="stable")[
        : min(_LOCAL_CENTERS, feasible.sum())
    ]
    # Fixed count (centres repeated when there are few) so the candidate set never changes shape.
    centers = x_obs[np.resize(order, _LOCAL_CENTERS)]
    scales = np.resize(np.asarray(_LOCAL_SCALES), _LOCAL_PER_CENTER)
    local = centers[:, None, :] + scales[None, :, None] * rng.standard_normal(
        (_LOCAL_CENTERS, _LOCAL_PER_CENTER, d)
    )
    return np.concatenate([sobol, np.clip(local.reshape(-1, d), 0.0, 1.0)])


def _choose_one(
    theta,
    x_train,
    y_train,
    incumbent_ok,
    n_observed,
    feasible,
    ys_obs,
    x_obs,
    rng,
    acquisition,
    ucb_beta,
):
    """The best distinct point of the acquisition and its posterior mean (standardized); training
    rows from `n_observed` on are fantasies (pending or already chosen points)."""
    d = x_train.shape[1]
    cand = _candidates(rng, d, x_obs, ys_obs, feasible)
    fantasy = np.arange(len(x_train)) >= n_observed
    xp, yp, mask, okp, fantasyp = pad(x_train, y_train, incumbent_ok, fantasy)
    points, scores, means = _maximize_acquisition(
        jnp.asarray(theta),
        jnp.asarray(xp),
        jnp.asarray(yp),
        jnp.asarray(mask),
        jnp.asarray(okp),
        jnp.asarray(fantasyp),
        jnp.asarray(cand),
        jnp.asarray(ucb_beta, jnp.float64),
        acquisition=acquisition,
    )
    points, scores, means = np.asarray(points), np.asarray(scores), np.asarray(means)
    # Points that nearly repeat a known one waste a trial (and a near-singular K would follow).
    for i in np.argsort(-scores, kind="stable"):
        if (
            np.isfinite(scores[i])
            and np.min(np.linalg.norm(x_train - points[i], axis=1)) > _MIN_DISTANCE
        ):
            return points[i], means[i]
    # Every runner-up crowds a known point: take the candidate farthest from all of them.
    far = np.argmax(np.min(np.linalg.norm(cand[:, None] - x_train[None], axis=-1), axis=1))
    mean, _ = posterior_np(theta, x_train, y_train, cand[far][None])
    return cand[far], mean[0]


# ----------------------------------------------------------------------------------------------
# Jitted acquisition.


@jax.custom_jvp
def _log_h(z):
    """log(phi(z) + z Phi(z)), the log of EI / std, stable far into the z << 0 tail."""
    log_sqrt_2pi = 0.5 * math.log(2 * math.pi)
    zd = jnp.maximum(z, -1.0)
    direct = jnp.log(jnp.exp(-0.5 * zd * zd - log_sqrt_2pi) + zd * jax.scipy.special.ndtr(zd))
    # For z < -1: h = phi(z) (1 + z Phi(z)/phi(z)), the ratio from log_ndtr to avoid underflow.
    zm = jnp.clip(z, -30.0, -1.0)
    log_phi = -0.5 * zm * zm - log_sqrt_2pi
    middle = log_phi + jnp.log1p(zm * jnp.exp(log_ndtr(zm) - log_phi))
    # Beyond -30 the bracket cancels to ~1/z^2: use its asymptotic series.
    za = jnp.minimum(z, -30.0)
    inv = 1.0 / (za * za)
    tail = (
        -0.5 * za * za
        - log_sqrt_2pi
        + jnp.log(inv)
        + jnp.log1p(inv * (-3.0 + inv * (15.0 - 105.0 * inv)))
    )
    return jnp.where(z > -1.0, direct, jnp.where(z > -30.0, middle, tail))


# h'(z) = Phi(z): a closed-form derivative, where autodiff through the three branches and log_ndtr
# would triple the compile time of the acquisition optimizer.
@_log_h.defjvp
def _log_h_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    value = _log_h(z)
    return value, jnp.exp(log_ndtr(z) - value) * dz


@jax.jit(static_argnames=("acquisition",))
def _maximize_acquisition(
    theta, x, y, mask, incumbent_ok, fantasy, candidates, ucb_beta, *, acquisition
):
    """Refined maximizers of the acquisition: (points, scores, posterior means) of the best few."""
    d = x.shape[1]
    lengthscales, _, noise, _ = unpack(theta, d)
    posterior, alpha = posterior_fn(theta, x, y, mask)
    # Posterior mean at the training points without another kernel matrix: (K + noise I) a = y - m
    # gives m + K a = y - noise a.
    incumbent = jnp.min(jnp.where(mask & incumbent_ok, y - noise * alpha, jnp.inf))

    def score(q):
        """(acquisition values, posterior means) at the points q."""
        mean, std = posterior(q)
        if acquisition == "ei":
            value = jnp.log(std) + _log_h((incumbent - mean) / std)
        else:
            value = -(mean - jnp.sqrt(ucb_beta) * std)
        # A fantasy removes the variance but not a downhill mean, so the believer would otherwise
        # spend a batch on small steps along one slope: keep away from pending and chosen points.
        scaled = (q[:, None, :] - x[None, :, :]) / lengthscales
        crowded = jnp.any(
            fantasy & (jnp.sum(scaled * scaled, axis=-1) < _BATCH_SEPARATION**2), axis=1
        )
        return jnp.where(crowded, -jnp.inf, value), mean

    def objective(q):
        s, mean = score(q)
        return -jnp.sum(s), (s, mean)

    scores, means = score(candidates)
    top_scores, top = jax.lax.top_k(scores, _REFINED + _FALLBACKS)
    start = candidates[top[:_REFINED]]
    optimizer = optax.adam(_REFINE_LEARNING_RATE)

    # Scores of different points are independent, so the gradient of their sum refines all at once.
    # The best iterate of each point is kept: projected Adam need not end at its best.
    def step(carry, _):
        q, state, best_q, best_s, best_mean = carry
        (_, (s, mean)), grad = jax.value_and_grad(objective, has_aux=True)(q)
        better = (s > best_s) & jnp.isfinite(s)
        best_q = jnp.where(better[:, None], q, best_q)
        best_s = jnp.where(better, s, best_s)
        best_mean = jnp.where(better, mean, best_mean)
        grad = jnp.where(jnp.isfinite(grad), grad, 0.0)
        updates, state = optimizer.update(grad, state)
        return (
            jnp.clip(optax.apply_updates(q, updates), 0.0, 1.0),
            state,
            best_q,
            best_s,
            best_mean,
        ), None

    init = (start, optimizer.init(start), start, top_scores[:_REFINED], means[top[:_REFINED]])
    (_, _, best_q, best_s, best_mean), _ = jax.lax.scan(step, init, None, length=_REFINE_STEPS)
    rest = top[_REFINED:]
    return (
        jnp.concatenate([best_q, candidates[rest]]),
        jnp.concatenate([best_s, top_scores[_REFINED:]]),
        jnp.concatenate([best_mean, means[rest]]),
    )
