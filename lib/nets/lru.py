"""Diagonal linear recurrences: the LRU of Orvieto et al. (2023) and its real baseline.

  lru     h_t = lambda . h_{t-1} + gamma . (B x_t),  y_t = Re(C h_t) + D x_t
          lambda complex diagonal, lambda = exp(-exp(nu_log) + i exp(theta_log)); gamma =
          sqrt(1 - |lambda|^2) (exp(gamma_log), a parameter as in minimal-LRU) unless
          normalize=False (then gamma = 1); B (N x D) and C (H x N) complex.
  linear  h_t = lambda . h_{t-1} + B x_t,  y_t = C h_t + D x_t, everything real,
          lambda = exp(-exp(nu_log))
          with the same law of |lambda|, no normalisation: the baseline of the curse of memory
          (Zucchet & Orvieto 2024).

The ring init (`ring`): |lambda| uniform in area on r_min <= |lambda| <= r_max (|lambda|^2 ~
U[r_min^2, r_max^2]), the phase U[0, max_phase] (lru only). B_re, B_im ~ N(0, 1 / (2 D)) (so that
B x has unit variance per state for unit inputs), C_re, C_im ~ N(0, 1 / N): minimal-LRU's scales;
the linear cell's B ~ N(0, 1 / D) and C ~ N(0, 1 / N). minimal-LRU's D is a vector (its output
width is its input width); ours maps D inputs to H outputs, so D is a matrix, N(0, 1 / D), in
both cells (the skip term of Zucchet & Orvieto's linear RNN too).

Because the recurrence is diagonal and linear in h, the state after T steps is an associative
product: `scan` computes it sequentially (lax.scan, the reference) or in parallel
(lax.associative_scan: O(log T) depth), the same to float rounding.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from lib.runtime.errors import UserError

LINEAR_CELLS = ('lru', 'linear')


def check_ring(r_min: float, r_max: float, max_phase: float) -> None:
  """One line naming the bad key: 0 <= r_min <= r_max < 1 (|lambda| = 1 never decays: no
  stationary state), max_phase >= 0."""
  if not 0 <= r_min <= r_max:
    raise UserError(f'r_min ({r_min}) and r_max ({r_max}) must satisfy 0 <= r_min <= r_max')
  if r_max >= 1:
    raise UserError(f'r_max ({r_max}) must be below 1 (|lambda| = 1 never forgets)')
  if max_phase < 0:
    raise UserError(f'max_phase ({max_phase}) must be >= 0')


def ring(key, n: int, r_min: float, r_max: float, max_phase: float, dtype=jnp.float32) -> dict:
  """{'nu_log', 'theta_log'} (n,) of lambdas drawn uniformly in area on the ring r_min <=
  |lambda| <= r_max, phases U[0, max_phase] (minimal-LRU's nu_init and theta_init)."""
  u1, u2 = jax.random.uniform(key, (2, n), dtype)
  # |lambda|^2 = exp(-2 exp(nu_log)) = u1 (r_max^2 - r_min^2) + r_min^2
  nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
  return {'nu_log': nu_log, 'theta_log': jnp.log(max_phase * u2)}


def init(name: str, key, input_size: int, hidden_size: int, output_size: int, *,
         r_min: float, r_max: float, max_phase: float = 2 * jnp.pi, normalize: bool = True,
         dtype=jnp.float32) -> dict:
  """The parameters of cell `name` (LINEAR_CELLS) by the module docstring's rules."""
  if name not in LINEAR_CELLS:
    raise UserError(f'unknown linear cell {name!r}; valid choices: {", ".join(LINEAR_CELLS)}')
  check_ring(r_min, r_max, max_phase)
  k_ring, k_b, k_c, k_d = jax.random.split(key, 4)
  lam = ring(k_ring, hidden_size, r_min, r_max, max_phase, dtype)
  d = jax.random.normal(k_d, (output_size, input_size), dtype) / jnp.sqrt(input_size)
  if name == 'linear':
    return {'nu_log': lam['nu_log'],
            'B': jax.random.normal(k_b, (hidden_size, input_size), dtype) / jnp.sqrt(input_size),
            'C': jax.random.normal(k_c, (output_size, hidden_size), dtype) / jnp.sqrt(hidden_size),
            'D': d}
  b = jax.random.normal(k_b, (2, hidden_size, input_size), dtype) / jnp.sqrt(2 * input_size)
  c = jax.random.normal(k_c, (2, output_size, hidden_size), dtype) / jnp.sqrt(hidden_size)
  modulus_sq = jnp.exp(-2 * jnp.exp(lam['nu_log']))
  gamma_log = 0.5 * jnp.log(1 - modulus_sq) if normalize else jnp.zeros_like(modulus_sq)
  return {**lam, 'gamma_log': gamma_log, 'B_re': b[0], 'B_im': b[1], 'C_re': c[0],
          'C_im': c[1], 'D': d}


def lambdas(params: dict):
  """The diagonal of the recurrence: complex for the lru, real for the linear cell."""
  if 'theta_log' in params:
    return jnp.exp(-jnp.exp(params['nu_log']) + 1j * jnp.exp(params['theta_log']))
  return jnp.exp(-jnp.exp(params['nu_log']))


def input_projection(params: dict, xs):
  """gamma . (B x_t) for every step at once: xs (..., D) -> (..., N)."""
  if 'theta_log' not in params:
    return xs @ params['B'].T
  gamma = jnp.exp(params['gamma_log'])
  # two real matmuls, not one complex (x is real): 3.3x faster fwd+bwd on a CPU (measured)
  return lax.complex(xs @ params['B_re'].T, xs @ params['B_im'].T) * gamma


def readout(params: dict, hs, xs):
  """y_t = Re(C h_t) + D x_t (lru) or C h_t + D x_t (linear)."""
  if 'theta_log' not in params:
    return hs @ params['C'].T + xs @ params['D'].T
  # Re(C h) = C_re Re h - C_im Im h: real matmuls, the imaginary part never computed
  return hs.real @ params['C_re'].T - hs.imag @ params['C_im'].T + xs @ params['D'].T


def scan(lam, bu, h0, parallel: bool = False):
  """States h_0..h_{T-1} of h_t = lam . h_{t-1} + bu_t from h_{-1} = h0, bu (T, ..., N): a
  sequential lax.scan, or (parallel) lax.associative_scan over the pairs (a, b) composed as
  (a_j a_i, a_j b_i + b_j), with h0 folded into the first input."""
  bu = bu.at[0].add(lam * h0)
  if not parallel:
    def step(h, b):
      h = lam * h + b
      return h, h
    return lax.scan(step, jnp.zeros_like(bu[0]), bu)[1]
  a = jnp.broadcast_to(lam, bu.shape)

  def combine(first, second):
    a_i, b_i = first
    a_j, b_j = second
    return a_j * a_i, a_j * b_i + b_j
  return lax.associative_scan(combine, (a, bu))[1]


def apply(params: dict, xs, h0=None, parallel: bool = False):
  """(outputs y (T, ..., H), states h (T, ..., N)) of the cell over inputs xs (T, ..., D)."""
  bu = input_projection(params, xs)
  h0 = jnp.zeros_like(bu[0]) if h0 is None else h0
  hs = scan(lambdas(params), bu, h0, parallel)
  return readout(params, hs, xs), hs


def log_grad_sq_theory(ks, r_min: float, r_max: float):
  """ln E[|lambda|^(2k)] over the ring init, k = ks (array): the backward recursion of these
  cells is g_{t-1} = conj(lambda) . g_t, so the squared state gradient k steps back from the
  loss is |lambda|^(2k) |g_0|^2 per coordinate, and with |lambda|^2 ~ U[a, b] (a = r_min^2,
  b = r_max^2) its mean is (b^(k+1) - a^(k+1)) / ((k+1)(b - a)): a power law in k (1/(k+1)
  on [0, 1]), not an exponential. In the log domain, so that it stays a number where the
  gradient itself would underflow; b^k where r_min = r_max."""
  ks = jnp.asarray(ks, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
  a, b = r_min**2, r_max**2
  if a == b:
    return ks * jnp.log(b)
  # ln(b^(k+1) - a^(k+1)) = (k+1) ln b + ln(1 - (a/b)^(k+1)), a < b
  return ((ks + 1) * jnp.log(b) + jnp.log1p(-(a / b) ** (ks + 1)) - jnp.log(ks + 1)
          - jnp.log(b - a))


class LinearRecurrentCell(nn.RNNCellBase):
  """`lru` or `linear` with the interface of lib/nets/cells' Flax cells: (carry, x_t) ->
  (carry, y_t), a carry of real arrays (h_re, h_im, y) for the lru, (h, y) for the linear cell
  (the state's real and imaginary parts as separate coordinates, so that ||dL/ds_t||^2 is
  |dL/dh_t|^2 summed, and the output y_t = Re(C h_t) + D x_t (lru) or C h_t + D x_t kept in the
  carry, because it reads x_t), output width = `features` = the state's width. Its parameters are
  `init`'s, drawn by this module's own init (the explicit ring rules, no Flax default)."""
  kind: str  # 'lru' | 'linear' (a Flax module's `name` is its own)
  features: int
  r_min: float = 0.0
  r_max: float = 0.99
  max_phase: float = 2 * math.pi
  normalize: bool = True
  parallel_scan: bool = True  # how lib/nets/cells.states runs it over a sequence (not a step)
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, carry, x):
    p = self.param('recurrence', lambda key: init(
        self.kind, key, x.shape[-1], self.features, self.features, r_min=self.r_min,
        r_max=self.r_max, max_phase=self.max_phase, normalize=self.normalize,
        dtype=self.param_dtype))
    lam, bu = lambdas(p), input_projection(p, x)
    if self.kind == 'lru':
      h = lam * (carry[0] + 1j * carry[1]) + bu
      y = readout(p, h, x)
      return (h.real, h.imag, y), y
    h = lam * carry[0] + bu
    y = readout(p, h, x)
    return (h, y), y

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    del rng
    zeros = jnp.zeros((*input_shape[:-1], self.features), self.param_dtype)
    return (zeros,) * (3 if self.kind == 'lru' else 2)

  @property
  def num_feature_axes(self) -> int:
    return 1
