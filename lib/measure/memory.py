"""The curse of memory (Zucchet & Orvieto 2024): the 1-D recurrence h_{t+1} = lambda h_t + x_{t+1}
driven by stationary inputs of autocorrelation E[x_t x_{t+dt}] = rho^|dt|, its stationary
second moments in closed form, and the same measured by float64 Monte Carlo.

Parametrisations (`PARAMETRISATIONS`), the derivative taken with respect to the parameter:
  plain       h as above, d/dlambda
  normalized  gamma h with gamma = sqrt(1 - lambda^2) (the LRU's normalisation), d/dlambda of
              gamma h (gamma's own dependence on lambda included)
  exp         normalized, lambda = exp(-exp(nu)) (the LRU's parametrisation), d/dnu

Closed forms, with S(lambda) = E[h^2] = (1 + rho lambda) / ((1 - rho lambda)(1 - lambda^2)) and
E[(dh/dlambda)^2] = ((1 + lambda^2)(1 - lambda^2 rho^2) + 2 (1 - lambda^2) lambda rho) /
((1 - lambda^2)^3 (1 - lambda rho)^2) (the authors' figures/1D-case.ipynb): E[h dh/dlambda] =
S'(lambda) / 2 (E[h^2] = sum_jk lambda^(j+k) rho^|j-k|, and by the symmetry j <-> k its
derivative is twice sum_jk k lambda^(j+k-1) rho^|j-k|), which gives the normalized moments
gamma^2 S and gamma'^2 S + gamma gamma' S' + gamma^2 E[(dh/dlambda)^2]; the exp
parametrisation multiplies the latter by (dlambda/dnu)^2 = (lambda ln lambda)^2. White noise
(rho = 0): normalized E[(gamma h)^2] = 1 and exp E[(d gamma h/dnu)^2] = lambda^2 (ln lambda)^2 /
(1 - lambda^2)^2, bounded (it tends to 1/4 as lambda -> 1), where the plain second moment of the
derivative grows like (1 - lambda)^-3.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lib.runtime.errors import UserError

PARAMETRISATIONS = ('plain', 'normalized', 'exp')
QUANTITIES = ('h_sq', 'grad_sq')  # E[h^2], E[(dh/dparameter)^2]


def check(lam: float, rho: float, parametrisation: str) -> None:
  if parametrisation not in PARAMETRISATIONS:
    raise UserError(f'unknown parametrisation {parametrisation!r}; valid choices: '
                    f'{", ".join(PARAMETRISATIONS)}')
  if not 0 < lam < 1:
    raise UserError(f'lambda ({lam}) must be in (0, 1): the stationary state needs |lambda| < 1')
  if not 0 <= rho <= 1:
    raise UserError(f'rho ({rho}) must be in [0, 1]')


def _plain_h_sq(lam, rho):
  return (1 + rho * lam) / ((1 - rho * lam) * (1 - lam**2))


def _plain_grad_sq(lam, rho):
  return (((1 + lam**2) * (1 - lam**2 * rho**2) + 2 * (1 - lam**2) * lam * rho)
          / ((1 - lam**2) ** 3 * (1 - lam * rho) ** 2))


def theory(lam: float, rho: float, parametrisation: str) -> dict:
  """{'h_sq', 'grad_sq'}: the stationary E[h^2] and E[(dh/dparameter)^2] in closed form (module
  docstring), in float64."""
  check(lam, rho, parametrisation)
  with jax.enable_x64(True):
    lam_, rho_ = jnp.float64(lam), jnp.float64(rho)
    s, ds = jax.value_and_grad(_plain_h_sq)(lam_, rho_)
    d_sq = _plain_grad_sq(lam_, rho_)
    if parametrisation == 'plain':
      return {'h_sq': float(s), 'grad_sq': float(d_sq)}
    gamma, d_gamma = jnp.sqrt(1 - lam_**2), -lam_ / jnp.sqrt(1 - lam_**2)
    grad_sq = d_gamma**2 * s + gamma * d_gamma * ds + gamma**2 * d_sq
    if parametrisation == 'exp':
      grad_sq = grad_sq * (lam_ * jnp.log(lam_)) ** 2
    return {'h_sq': float(gamma**2 * s), 'grad_sq': float(grad_sq)}


def steps_to_stationary(lam: float, rho: float, tolerance: float = 1e-8) -> int:
  """Steps after which the start (h = dh = 0, x stationary) is forgotten to `tolerance`: the
  slowest of the transients lambda^t, t lambda^t (the derivative) and, for the inputs' own
  memory, rho^t (rho < 1; rho = 1 inputs are constant, no transient)."""
  slowest = max(lam, rho if rho < 1 else 0.0)
  # t slowest^t < tolerance  <=  t > (ln(1/tolerance) + ln t) / ln(1/slowest), iterated
  t = 1.0
  for _ in range(50):
    t = (math.log(1 / tolerance) + math.log(max(t, 1.0))) / -math.log(slowest)
  return int(math.ceil(t)) + 1


def monte_carlo(lam: float, rho: float, parametrisation: str, num_chains: int, key,
                num_steps: int | None = None) -> dict:
  """{quantity: (mean, standard error)} over `num_chains` independent float64 chains of the
  recurrence, each run `num_steps` (default `steps_to_stationary`) from h = dh/dlambda = 0 with
  stationary AR(1) inputs x_{t+1} = rho x_t + sqrt(1 - rho^2) eps_{t+1}; dh/dlambda by its own
  recursion d_{t+1} = lambda d_t + h_t (forward-mode), then the parametrisation's chain rule."""
  check(lam, rho, parametrisation)
  num_steps = num_steps or steps_to_stationary(lam, rho)
  with jax.enable_x64(True):
    h, d = (np.asarray(a) for a in _chains(jnp.float64(lam), jnp.float64(rho), num_chains,
                                           num_steps, key))
  if parametrisation != 'plain':  # the chain rule of the module docstring, in float64
    gamma, d_gamma = math.sqrt(1 - lam**2), -lam / math.sqrt(1 - lam**2)
    h, d = gamma * h, d_gamma * h + gamma * d
    if parametrisation == 'exp':
      d = d * lam * math.log(lam)
  return {name: (float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))))
          for name, v in (('h_sq', h**2), ('grad_sq', d**2))}


@functools.partial(jax.jit, static_argnums=(2, 3))
def _chains(lam, rho, num_chains, num_steps, key):
  """(h, dh/dlambda) of each chain after num_steps steps of the plain recurrence."""
  k0, k1 = jax.random.split(key)
  x0 = jax.random.normal(k0, (num_chains,), jnp.float64)
  noise_scale = jnp.sqrt(1 - rho**2)

  def step(state, k):
    x, h, d = state
    x = rho * x + noise_scale * jax.random.normal(k, x.shape, jnp.float64)
    return (x, lam * h + x, lam * d + h), None

  # h_0 = x_0, d_0 = 0: the recursion from h_{-1} = 0
  (_, h, d), _ = lax.scan(step, (x0, x0, jnp.zeros_like(x0)), jax.random.split(k1, num_steps))
  return h, d
