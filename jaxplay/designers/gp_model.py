"""The Gaussian-process model of the 'gp' designer (jaxplay.designers.gp): kernel, priors, fit,
posterior.

A Matern-5/2 ARD kernel with signal variance, Gaussian noise and a constant mean, on standardized
y; hyperparameters maximize the log marginal likelihood plus weak log-normal priors, by projected
Adam from several restarts vmapped in one jit. The training set is padded to a size bucket with
masked rows, so each program compiles once per bucket. See jaxplay.designers.gp for the choices
and why; the acquisition, its maximization and the public API live there. Callers run this
model inside jaxplay.designers.gp's float64 context.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

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
# Host-side helpers.


def bucket(n: int) -> int:
    return max(_MIN_BUCKET, 1 << max(0, n - 1).bit_length())


def pad(x: np.ndarray, y: np.ndarray, *rest: np.ndarray):
    """Pads rows to the bucket size; returns the padded arrays and the mask of real rows."""
    n = len(x)
    size = bucket(n)
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


def fit_theta(x: np.ndarray, ys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    d = x.shape[1]
    center, spread = _prior(d)
    # Restart 0 starts at the prior's centre, the others at prior draws (the noise's capped: a noisy
    # objective needs some restarts from high noise, or Adam settles for short lengthscales that
    # explain the noise). Drawn here rather than with jax.random: threefry in float64 alone takes
    # seconds to compile on a CPU.
    starts = center + np.minimum(spread, 2.0) * rng.standard_normal((_RESTARTS, len(center)))
    starts[0] = center
    low, high = _bounds(d)
    xp, yp, mask = pad(x, ys)
    theta, _ = fit_restarts(
        jnp.asarray(xp), jnp.asarray(yp), jnp.asarray(mask), jnp.asarray(np.clip(starts, low, high))
    )
    return np.asarray(theta)


def posterior_np(theta, x_train, y_train, x_query) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and std in standardized units; queries padded too, to reuse compilations."""
    xp, yp, mask = pad(x_train, y_train)
    q = len(x_query)
    qp = np.zeros((bucket(q), x_query.shape[1]))
    qp[:q] = x_query
    mean, std = _posterior(
        jnp.asarray(theta), jnp.asarray(xp), jnp.asarray(yp), jnp.asarray(mask), jnp.asarray(qp)
    )
    return np.asarray(mean)[:q], np.asarray(std)[:q]


# ----------------------------------------------------------------------------------------------
# Jitted model.


def unpack(theta, d):
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
    lengthscales, signal, noise, _ = unpack(theta, d)
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
    lengthscales, signal, noise, mean = unpack(theta, d)
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
def fit_restarts(x, y, mask, starts):
    """Best of the projected-Adam runs from `starts` on the negative log posterior; (theta,
    losses)."""
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


def posterior_fn(theta, x, y, mask):
    """(a function of query points giving the posterior (mean, std) in standardized units,
    alpha = (K + noise I)^-1 (y - mean))."""
    d = x.shape[1]
    lengthscales, signal, _, mean = unpack(theta, d)
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
    return posterior_fn(theta, x, y, mask)[0](q)
