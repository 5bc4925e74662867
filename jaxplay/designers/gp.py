"""Gaussian-process Bayesian optimization on the unit cube (minimization): the core of the 'gp' designer.

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
  float32; jax.experimental.enable_x64 is gone from jax 0.10). With a nearly noise-free objective K's condition number reaches ~1e6-1e8, where a
  float32 Cholesky fails or needs a jitter large enough to blur the fit; float64 costs little on
  matrices of a few dozen rows.
- Compilation: the training set is padded to a bucket (32, 64, 128, ...) with masked rows that
  leave the likelihood and posterior unchanged, so a study of 1..64 trials compiles each program
  twice (a few seconds each on 2 CPU cores); seeds, data and hyperparameters are array arguments,
  never static. Padding small studies to 32 rows costs microseconds; a compilation costs seconds.
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
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import log_ndtr
from scipy.stats import qmc

ACQUISITIONS = ("ei", "ucb")

# Bounds of the hyperparameters, in standardized-y units where they have units. Lengthscales
# outside [0.01, 10] on the unit cube mean "white noise" or "constant", neither worth modelling.
_LENGTHSCALE_BOUNDS = (0.01, 10.0)
_SIGNAL_BOUNDS = (0.05, 20.0)
_NOISE_BOUNDS = (1e-6, 1.0)
_MEAN_BOUNDS = (-3.0, 3.0)
# Weak priors (mean, std) on the log-parameters: a lengthscale around half the cube, ~1 unit of
# standardized signal, and little noise, which the data override readily.
_LOG_LENGTHSCALE_PRIOR = (math.log(0.5), 1.0)
_LOG_SIGNAL_PRIOR = (0.0, 1.0)
_LOG_NOISE_PRIOR = (math.log(1e-3), 3.0)
_MEAN_PRIOR = (0.0, 1.0)

_RESTARTS = 8
_FIT_STEPS = 200
_FIT_LEARNING_RATE = 0.1

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
_MIN_BUCKET = 32
_STD_FLOOR = 1e-9


class GPParams(NamedTuple):
    """Fitted hyperparameters; variances and mean are in standardized y units."""

    lengthscales: np.ndarray  # (d,)
    signal_variance: float
    noise_variance: float
    mean: float
    y_shift: float  # standardized y = (y - y_shift) / y_scale
    y_scale: float


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
    """`count` new points in [0,1]^d that minimize y, given observations (x, y; NaN = infeasible)."""
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
        theta = _fit_theta(x, ys, rng)
        x_train, y_train, incumbent_ok = x, ys, feasible
        if len(pending):
            # Adding a point at its own posterior mean leaves the mean everywhere unchanged, so all
            # pending points can be fantasized from one prediction.
            pending_mean, _ = _posterior_np(theta, x_train, y_train, pending)
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
        theta = _fit_theta(x, (filled - shift) / scale, np.random.default_rng(seed))
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
        mean, std = _posterior_np(
            theta, x_train, ys, np.asarray(x_query, np.float64).reshape(-1, x_train.shape[1])
        )
    return mean * params.y_scale + params.y_shift, std * params.y_scale


def fill_infeasible(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y with non-finite values replaced by a value worse than every feasible one, feasible mask)."""
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

    jaxlib's CPU Cholesky and triangular solves run in SciPy's OpenBLAS; its thread pool costs
    ~100x on 64x64 matrices (15 ms instead of 0.2 ms for a solve on 2 busy cores). The limit is
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


def _bucket(n: int) -> int:
    return max(_MIN_BUCKET, 1 << max(0, n - 1).bit_length())


def _pad(x: np.ndarray, y: np.ndarray, *rest: np.ndarray):
    """Pads rows to the bucket size; returns the padded arrays and the mask of real rows."""
    n = len(x)
    size = _bucket(n)
    mask = np.arange(size) < n
    xp = np.zeros((size, x.shape[1]))
    xp[:n] = x
    yp = np.zeros(size)
    yp[:n] = y
    padded = []
    for r in rest:
        rp = np.zeros(size, r.dtype)
        rp[:n] = r
        padded.append(rp)
    return (xp, yp, mask, *padded)


def _fit_theta(x: np.ndarray, ys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    d = x.shape[1]
    center, spread = _prior(d)
    # Restart 0 starts at the prior's centre, the others at prior draws (the noise's capped: a noisy
    # objective needs some restarts from high noise, or Adam settles for short lengthscales that
    # explain the noise). Drawn here rather than with jax.random: threefry in float64 alone takes
    # seconds to compile on a CPU.
    starts = center + np.minimum(spread, 2.0) * rng.standard_normal((_RESTARTS, len(center)))
    starts[0] = center
    low, high = _bounds(d)
    xp, yp, mask = _pad(x, ys)
    theta, _ = _fit_restarts(
        jnp.asarray(xp), jnp.asarray(yp), jnp.asarray(mask), jnp.asarray(np.clip(starts, low, high))
    )
    return np.asarray(theta)


def _posterior_np(theta, x_train, y_train, x_query) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and std in standardized units; queries padded too, to reuse compilations."""
    xp, yp, mask = _pad(x_train, y_train)
    q = len(x_query)
    qp = np.zeros((_bucket(q), x_query.shape[1]))
    qp[:q] = x_query
    mean, std = _posterior(
        jnp.asarray(theta), jnp.asarray(xp), jnp.asarray(yp), jnp.asarray(mask), jnp.asarray(qp)
    )
    return np.asarray(mean)[:q], np.asarray(std)[:q]


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
    xp, yp, mask, okp, fantasyp = _pad(x_train, y_train, incumbent_ok, fantasy)
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
    mean, _ = _posterior_np(theta, x_train, y_train, cand[far][None])
    return cand[far], mean[0]


# ----------------------------------------------------------------------------------------------
# Jitted model.


def _unpack(theta, d):
    return jnp.exp(theta[:d]), jnp.exp(theta[d]), jnp.exp(theta[d + 1]), theta[d + 2]


def _bounds(d):
    """(low, high) of the log-parameters [log lengthscales, log signal, log noise, mean]."""
    low = np.array(
        [math.log(_LENGTHSCALE_BOUNDS[0])] * d
        + [math.log(_SIGNAL_BOUNDS[0]), math.log(_NOISE_BOUNDS[0]), _MEAN_BOUNDS[0]]
    )
    high = np.array(
        [math.log(_LENGTHSCALE_BOUNDS[1])] * d
        + [math.log(_SIGNAL_BOUNDS[1]), math.log(_NOISE_BOUNDS[1]), _MEAN_BOUNDS[1]]
    )
    return low, high


def _project(theta, d):
    low, high = _bounds(d)
    return jnp.clip(theta, low, high)


def _matern52(a, b, lengthscales, signal):
    diff = (a[:, None, :] - b[None, :, :]) / lengthscales
    r2 = jnp.sum(diff * diff, axis=-1)
    # sqrt has an infinite derivative at 0 (the diagonal): route zeros around it.
    positive = r2 > 0
    r = jnp.where(positive, jnp.sqrt(jnp.where(positive, r2, 1.0)), 0.0)
    s5r = math.sqrt(5.0) * r
    return signal * (1.0 + s5r + 5.0 / 3.0 * r2) * jnp.exp(-s5r)


def _train_covariance(theta, x, mask):
    """K + noise I over the real rows; padded rows form an identity block, decoupled from them."""
    d = x.shape[1]
    lengthscales, signal, noise, _ = _unpack(theta, d)
    k = _matern52(x, x, lengthscales, signal) * (mask[:, None] & mask[None, :])
    return k + jnp.diag(jnp.where(mask, noise, 1.0))


def _train_cholesky(theta, x, mask):
    return jnp.linalg.cholesky(_train_covariance(theta, x, mask))


def _log_posterior_and_grad(theta, x, y, mask):
    """Log marginal likelihood plus log prior, and its gradient, of the log-parameters theta.

    The gradient is written out, 1/2 tr((a a' - K^-1) dK/dtheta) with a = K^-1 (y - mean): autodiff
    through the Cholesky factorization and the kernel gives a program that takes several times
    longer to compile and to run (many small LAPACK calls), and compiling is most of a study's cost.
    """
    d = x.shape[1]
    lengthscales, signal, noise, mean = _unpack(theta, d)
    scaled = (x[:, None, :] - x[None, :, :]) / lengthscales
    sq = scaled * scaled
    r2 = jnp.sum(sq, axis=-1)
    positive = r2 > 0
    r = jnp.where(positive, jnp.sqrt(jnp.where(positive, r2, 1.0)), 0.0)
    decay = jnp.exp(-math.sqrt(5.0) * r)
    pair = mask[:, None] & mask[None, :]
    k_free = jnp.where(pair, signal * (1.0 + math.sqrt(5.0) * r + 5.0 / 3.0 * r2) * decay, 0.0)
    chol = jnp.linalg.cholesky(k_free + jnp.diag(jnp.where(mask, noise, 1.0)))
    resid = jnp.where(mask, y - mean, 0.0)
    alpha = jax.scipy.linalg.cho_solve((chol, True), resid)
    k_inv = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(x.shape[0], dtype=x.dtype))
    n = jnp.sum(mask)
    value = (
        -0.5 * resid @ alpha - jnp.sum(jnp.log(jnp.diag(chol))) - 0.5 * n * math.log(2 * math.pi)
    )

    w = jnp.outer(alpha, alpha) - k_inv
    # d k / d log l_j = 5/3 s (1 + sqrt5 r) exp(-sqrt5 r) (x_j - x'_j)^2 / l_j^2, finite at r = 0.
    dk_common = jnp.where(pair, signal * 5.0 / 3.0 * (1.0 + math.sqrt(5.0) * r) * decay, 0.0)
    grad = jnp.concatenate(
        [
            0.5 * jnp.einsum("ab,abj->j", w * dk_common, sq),
            jnp.stack(
                [
                    0.5 * jnp.sum(w * k_free),
                    0.5 * noise * jnp.sum(jnp.where(mask, jnp.diag(w), 0.0)),
                    jnp.sum(alpha),
                ]
            ),
        ]
    )

    prior_mean, prior_std = _prior(d)
    value = value - 0.5 * jnp.sum(((theta - prior_mean) / prior_std) ** 2)
    grad = grad - (theta - prior_mean) / prior_std**2
    return value, grad


def _prior(d):
    """(mean, std) of the normal priors on the log-parameters."""
    mean = np.array(
        [_LOG_LENGTHSCALE_PRIOR[0]] * d
        + [_LOG_SIGNAL_PRIOR[0], _LOG_NOISE_PRIOR[0], _MEAN_PRIOR[0]]
    )
    std = np.array(
        [_LOG_LENGTHSCALE_PRIOR[1]] * d
        + [_LOG_SIGNAL_PRIOR[1], _LOG_NOISE_PRIOR[1], _MEAN_PRIOR[1]]
    )
    return mean, std


@jax.jit
def _fit_restarts(x, y, mask, starts):
    """Best of the projected-Adam runs from `starts` on the negative log posterior; (theta, losses)."""
    d = x.shape[1]
    optimizer = optax.adam(optax.cosine_decay_schedule(_FIT_LEARNING_RATE, _FIT_STEPS, alpha=0.1))

    def run(theta0):
        def step(carry, _):
            theta, state, best_theta, best_value = carry
            value, grad = _log_posterior_and_grad(theta, x, y, mask)
            # Keep the best iterate: evaluating the last one again would double the program.
            better = value > best_value
            best_theta = jnp.where(better, theta, best_theta)
            best_value = jnp.where(better, value, best_value)
            # A failed Cholesky gives NaN gradients: stay put rather than poison this restart.
            grad = jnp.where(jnp.isfinite(grad), -grad, 0.0)
            updates, state = optimizer.update(grad, state)
            theta = _project(optax.apply_updates(theta, updates), d)
            return (theta, state, best_theta, best_value), None

        init = (theta0, optimizer.init(theta0), theta0, jnp.asarray(-jnp.inf, theta0.dtype))
        (_, _, theta, value), _ = jax.lax.scan(step, init, None, length=_FIT_STEPS)
        return theta, -value

    thetas, losses = jax.vmap(run)(starts)
    losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
    return thetas[jnp.argmin(losses)], losses


def _posterior_fn(theta, x, y, mask):
    """(a function of query points giving the posterior (mean, std) in standardized units,
    alpha = (K + noise I)^-1 (y - mean))."""
    d = x.shape[1]
    lengthscales, signal, _, mean = _unpack(theta, d)
    chol = _train_cholesky(theta, x, mask)
    alpha = jax.scipy.linalg.cho_solve((chol, True), jnp.where(mask, y - mean, 0.0))

    def posterior(q):
        k = _matern52(q, x, lengthscales, signal) * mask[None, :]
        v = jax.scipy.linalg.solve_triangular(chol, k.T, lower=True)
        var = signal - jnp.sum(v * v, axis=0)
        return mean + k @ alpha, jnp.sqrt(jnp.maximum(var, _STD_FLOOR**2))

    return posterior, alpha


@jax.jit
def _posterior(theta, x, y, mask, q):
    return _posterior_fn(theta, x, y, mask)[0](q)


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
    lengthscales, _, noise, _ = _unpack(theta, d)
    posterior, alpha = _posterior_fn(theta, x, y, mask)
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
