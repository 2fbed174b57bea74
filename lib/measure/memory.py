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


def steps_to_stationary(lam: float, rho: float, tolerance: float = 1e-4) -> int:
  """Steps after which the start (h = dh = 0; the inputs are stationary from the first step, so
  rho adds no transient) is forgotten to `tolerance`, relative: the part of the stationary sums
  that the first t steps miss is at most e^-u (1 + u + u^2 / 2), u = t ln(1 / lambda) (the
  weights k lambda^k of the derivative, their squares for white noise, are the slowest),
  so t is the u where that falls below `tolerance`, over ln(1 / lambda). 1e-4 is a hundred times
  below the standard error of the default 2,000 chains."""
  del rho
  u = 1.0
  while math.exp(-u) * (1 + u + u * u / 2) > tolerance:
    u += 0.01
  return int(math.ceil(u / -math.log(lam))) + 1


def monte_carlo(lam: float, rho: float, parametrisation: str, num_chains: int, key,
                num_steps: int | None = None) -> dict:
  """{quantity: (mean, standard error)} of one parametrisation: `moments`'."""
  check(lam, rho, parametrisation)
  return moments(lam, rho, num_chains, key, num_steps, (parametrisation,))[parametrisation]


def moments(lam: float, rho: float, num_chains: int, key, num_steps: int | None = None,
            parametrisations: tuple = PARAMETRISATIONS) -> dict:
  """{parametrisation: {quantity: (mean, standard error)}} over `num_chains` independent float64
  chains of the recurrence (the same chains for every parametrisation), each run `num_steps`
  (default `steps_to_stationary`) from h = dh/dlambda = 0 with stationary AR(1) inputs
  x_{t+1} = rho x_t + sqrt(1 - rho^2) eps_{t+1}, x_0 ~ N(0, 1); dh/dlambda by its own
  recursion d_{t+1} = lambda d_t + h_t (forward-mode), then each parametrisation's chain rule.

  eps are random signs (+-1: zero mean, unit variance, independent), 32 from each random word:
  the closed forms hold for any white noise of unit variance (they are second moments of a
  linear function of the inputs), and a sign costs a thirtieth of a normal draw, which matters
  at lambda = 0.9999 (140,000 steps a chain)."""
  for parametrisation in parametrisations:
    check(lam, rho, parametrisation)
  num_steps = num_steps or steps_to_stationary(lam, rho)
  with jax.enable_x64(True):
    h0, d0 = (np.asarray(a) for a in _chains(jnp.float64(lam), jnp.float64(rho), num_chains,
                                             -(-num_steps // _BLOCK), num_steps, key))
  out = {}
  for parametrisation in parametrisations:
    h, d = h0, d0
    if parametrisation != 'plain':  # the chain rule of the module docstring, in float64
      gamma, d_gamma = math.sqrt(1 - lam**2), -lam / math.sqrt(1 - lam**2)
      h, d = gamma * h, d_gamma * h + gamma * d
      if parametrisation == 'exp':
        d = d * lam * math.log(lam)
    out[parametrisation] = {name: (float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))))
                            for name, v in (('h_sq', h**2), ('grad_sq', d**2))}
  return out


_BLOCK = 32 * 16  # steps of input signs drawn at once: 16 random words per chain


def _signs(key, num_chains):
  """(_BLOCK, num_chains) independent random signs +-1 in float64, 32 bits of each word."""
  words = jax.random.bits(key, (_BLOCK // 32, 1, num_chains), jnp.uint32)
  bits = (words >> jnp.arange(32, dtype=jnp.uint32)[None, :, None]) & 1
  return (2.0 * bits.astype(jnp.float64) - 1.0).reshape(_BLOCK, num_chains)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _chains(lam, rho, num_chains, num_blocks, num_steps, key):
  """(h, dh/dlambda) of each chain after num_steps steps of the plain recurrence (steps past
  num_steps in the last block of signs leave the state as it is)."""
  k0, k1 = jax.random.split(key)
  x0 = jax.random.normal(k0, (num_chains,), jnp.float64)
  noise_scale = jnp.sqrt(1 - rho**2)

  def block(state, args):
    index, k = args

    def step(state, args):
      t, eps = args
      x, h, d = state
      x_new = rho * x + noise_scale * eps
      new = (x_new, lam * h + x_new, lam * d + h)
      return jax.tree.map(lambda a, b: jnp.where(t < num_steps, a, b), new, state), None
    steps = index * _BLOCK + jnp.arange(_BLOCK)
    return lax.scan(step, state, (steps, _signs(k, num_chains)))[0], None

  # h_0 = x_0, d_0 = 0 (the recursion from h_{-1} = 0): step 0 is done, steps 1.. remain
  state = (x0, x0, jnp.zeros_like(x0))
  (_, h, d), _ = lax.scan(lambda s, a: block(s, (a[0], a[1])), state,
                          (jnp.arange(num_blocks), jax.random.split(k1, num_blocks)))
  return h, d
