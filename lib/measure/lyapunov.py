"""Lyapunov exponents of a recurrence s_t = f(s_{t-1}, x_t): how fast the directions of its state
grow or shrink, one number per direction (Engelken, Wolf & Abbott 2020; the QR algorithm of
Benettin et al. 1980 as their RNN-LyapunovSpectra code runs it).

`spectrum` carries k orthonormal tangent vectors Q along the trajectory. Each step maps them by
the step's Jacobian J_t = df/ds at (s_{t-1}, x_t) (k Jacobian-vector products: J_t is never
formed) and re-orthonormalises them, J_t Q_{t-1} = Q_t R_t. ln |R_t,ii| is the growth of the i-th
direction that the i-1 before it do not hold; its mean over the steps after `burn_in` is the
i-th exponent lambda_1 >= lambda_2 >= ... in nats per step. The renormalisation at every step is
what keeps the exponents finite however long the trajectory: float32 holds e^-5000 as 5,000
logs of numbers near e^-1, never as the product.

The gradient sweep's per-step renormalisation (lib/measure/gradients) is this algorithm with one
vector, carried backwards: the top exponent is half its decay rate (the rate is of the squared
norm), up to the mean of a log against the log of a mean.

Closed forms for the tests: a fixed linear map has exponents ln |eigenvalue|; products of i.i.d.
N x N gaussian matrices of entry variance s2 / N have lambda_i = 1/2 (ln(2 s2 / N) +
digamma((N - i + 1) / 2)) (Newman 1986), `gaussian_product_exponents`.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree
from scipy import special

from lib.runtime import devices


def _qr(z):
  return jnp.linalg.qr(z)


_QR = devices.one_at_a_time(_qr)  # never a batched LAPACK call: see lib/runtime/devices


def spectrum(step, carry0, xs, num_exponents: int, key, burn_in: int = 0):
  """The top `num_exponents` Lyapunov exponents (nats per step) of s_t = step(s_{t-1}, x_t)
  from carry0 (any pytree of arrays; one trajectory, no batch axis) over xs (T, ...), averaged
  over steps burn_in..T-1; and whether the trajectory stayed finite.

  The tangent vectors start as an orthonormal draw from `key`. Exponents past the state's
  dimension are not defined: num_exponents must not exceed it. A direction the map sends to
  zero (a dead unit) has exponent -inf.
  """
  flat0, unravel = ravel_pytree(carry0)
  size = flat0.size
  if not 1 <= num_exponents <= size:
    raise ValueError(f'num_exponents {num_exponents} is not in 1..{size} (the state size)')
  num_steps = jax.tree.leaves(xs)[0].shape[0]
  if not 0 <= burn_in < num_steps:
    raise ValueError(f'burn_in {burn_in} is not in 0..{num_steps - 1}')
  flat_step = lambda s, x: ravel_pytree(step(unravel(s), x))[0]
  q0, _ = _QR(jax.random.normal(key, (size, num_exponents), flat0.dtype))

  def body(carry, inputs):
    s, q, finite = carry
    x, t = inputs
    s_new, tangent = jax.linearize(lambda state: flat_step(state, x), s)
    q_new, r = _QR(jax.vmap(tangent, in_axes=1, out_axes=1)(q))
    logs = jnp.log(jnp.abs(jnp.diagonal(r)))
    return ((s_new, q_new, finite & jnp.all(jnp.isfinite(s_new))),
            jnp.where(t >= burn_in, logs, 0.0))

  (_, _, finite), logs = lax.scan(body, (flat0, q0, jnp.asarray(True)),
                                  (xs, jnp.arange(num_steps)))
  exponents = jnp.sum(logs, axis=0) / (num_steps - burn_in)
  return -jnp.sort(-exponents), finite


def gaussian_product_exponents(n: int, s2: float) -> np.ndarray:
  """lambda_i, i = 1..n, of products of i.i.d. n x n matrices with N(0, s2 / n) entries
  (Newman 1986): 1/2 (ln(2 s2 / n) + digamma((n - i + 1) / 2))."""
  i = np.arange(1, n + 1)
  return 0.5 * (np.log(2.0 * s2 / n) + special.digamma((n - i + 1) / 2.0))


_SVD = devices.one_at_a_time(lambda m: jnp.linalg.svd(m, compute_uv=False))


def log_singular_values(step, carry0, xs):
  """ln of the singular values (descending) of the whole product's Jacobian d s_{T-1} / d s_{-1}
  of s_t = step(s_{t-1}, x_t) from carry0 (one example, any pytree) over xs (T, ...): for a
  network over depth, its input-output Jacobian. The full tangent matrix (one column per
  direction of the state) is carried and divided by its Frobenius norm at every step, the log of
  which is summed, so no scale overflows; the singular values are those of the last matrix
  times that scale, to float precision relative to the largest."""
  flat0, unravel = ravel_pytree(carry0)
  flat_step = lambda s, x: ravel_pytree(step(unravel(s), x))[0]

  def body(carry, x):
    s, m, log_scale = carry
    s_new, tangent = jax.linearize(lambda state: flat_step(state, x), s)
    m_new = jax.vmap(tangent, in_axes=1, out_axes=1)(m)
    norm = jnp.sqrt(jnp.sum(jnp.square(m_new)))
    return (s_new, m_new / norm, log_scale + jnp.log(norm)), None

  eye = jnp.eye(flat0.size, dtype=flat0.dtype)
  (_, m, log_scale), _ = lax.scan(body, (flat0, eye, jnp.zeros((), flat0.dtype)), xs)
  return jnp.log(_SVD(m)) + log_scale
