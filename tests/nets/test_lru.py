"""The diagonal linear recurrences (lib/nets/lru): the lru against a hand-worked complex 2-step
example, the ring init's moduli and phases by their empirical distribution, the parallel scan
against the sequential one in float64, the power-law theory against Monte Carlo, bad keys."""

import cmath
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.nets import lru
from lib.runtime.errors import UserError


def test_lru_two_steps_by_hand():
  """N = D = H = 1: lambda = 0.5 e^(i pi/3), gamma = sqrt(1 - 0.25), b = 1 + 2i, c = 3 - i,
  d = 0.5, inputs 1 then 2: h_0 = gamma b, h_1 = lambda h_0 + 2 gamma b, y_t = Re(c h_t) + d x_t,
  in Python's complex arithmetic."""
  lam, gamma, b, c, d = 0.5 * cmath.exp(1j * math.pi / 3), math.sqrt(0.75), 1 + 2j, 3 - 1j, 0.5
  h0 = gamma * b * 1
  h1 = lam * h0 + gamma * b * 2
  expected_y = [(c * h0).real + d * 1, (c * h1).real + d * 2]
  with jax.enable_x64(True):
    params = {'nu_log': jnp.log(jnp.array([math.log(2.0)])),  # |lambda| = e^-ln2 = 0.5
              'theta_log': jnp.log(jnp.array([math.pi / 3])),
              'gamma_log': jnp.log(jnp.array([gamma])),
              'B_re': jnp.array([[1.0]]), 'B_im': jnp.array([[2.0]]),
              'C_re': jnp.array([[3.0]]), 'C_im': jnp.array([[-1.0]]), 'D': jnp.array([[0.5]])}
    xs = jnp.array([[1.0], [2.0]])
    for parallel in (False, True):
      y, h = jax.jit(lru.apply, static_argnames='parallel')(params, xs, parallel=parallel)
      np.testing.assert_allclose(np.asarray(h)[:, 0], [h0, h1], rtol=1e-14)
      np.testing.assert_allclose(np.asarray(y)[:, 0], expected_y, rtol=1e-14)
    lam_here = complex(lru.lambdas(params)[0])
    assert abs(lam_here - lam) < 1e-15


def _ecdf_distance(samples, cdf) -> float:
  """Kolmogorov-Smirnov distance of the samples from a continuous cdf."""
  s = np.sort(samples)
  n = len(s)
  f = cdf(s)
  return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


def test_ring_init_is_uniform_in_area_and_in_phase():
  """20,000 draws on the ring 0.4 <= |lambda| <= 0.9, phases up to pi: |lambda|^2 uniform on
  [0.16, 0.81] and the phase uniform on [0, pi], each within the KS distance a uniform sample
  exceeds with probability 1% (1.63 / sqrt(n)); a sample uniform in modulus instead (the bug
  this is for) is 0.04 away in |lambda|^2, beyond that bound."""
  n, r_min, r_max = 20_000, 0.4, 0.9
  draw = jax.jit(lambda key, name: lru.init(name, key, 3, n, 2, r_min=r_min, r_max=r_max,
                                           max_phase=math.pi), static_argnums=1)
  params = draw(jax.random.key(0), 'lru')
  lam = np.asarray(lru.lambdas(params))
  bound = 1.63 / math.sqrt(n)

  def uniform(lo, hi):
    return lambda v: np.clip((v - lo) / (hi - lo), 0, 1)
  assert _ecdf_distance(np.abs(lam) ** 2, uniform(r_min**2, r_max**2)) < bound
  assert _ecdf_distance(np.angle(lam) % (2 * math.pi), uniform(0, math.pi)) < bound
  in_modulus = np.random.default_rng(0).uniform(r_min, r_max, n)
  assert _ecdf_distance(in_modulus**2, uniform(r_min**2, r_max**2)) > bound
  gamma = np.exp(np.asarray(params['gamma_log']))
  np.testing.assert_allclose(gamma, np.sqrt(1 - np.abs(lam) ** 2), rtol=1e-5)
  linear = lru.lambdas(draw(jax.random.key(0), 'linear'))
  assert np.all(np.isreal(linear)) and _ecdf_distance(np.asarray(linear) ** 2,
                                                      uniform(r_min**2, r_max**2)) < bound


@pytest.fixture(scope='module')
def flax_cell():
  """kind -> (LinearRecurrentCell, its own init's params) in float64, 4 states of 3 inputs on
  the ring 0.9 <= |lambda| <= 0.999 (slow: every step of a sequence of 40 counts), phases up to
  pi/4; drawn once for this module's tests of a kind (the lru's init compiles for 2-3 s)."""
  drawn = {}

  def get(kind):
    if kind not in drawn:
      with jax.enable_x64(True):
        cell = lru.LinearRecurrentCell(kind=kind, features=4, r_min=0.9, r_max=0.999,
                                       max_phase=math.pi / 4, param_dtype=jnp.float64)
        carry0 = cell.initialize_carry(None, (2, 3))
        drawn[kind] = cell, jax.jit(cell.init)(jax.random.key(0), carry0, jnp.zeros((2, 3)))
    return drawn[kind]
  return get


@pytest.mark.parametrize('name', lru.LINEAR_CELLS)
def test_parallel_scan_is_the_sequential_scan(name, flax_cell):
  """lax.associative_scan against lax.scan, T = 40 from a non-zero state, in float64: the
  states, the outputs and the gradient of a loss of every output with respect to every
  parameter, the inputs and the initial state, to 1e-12 (relative)."""
  params = flax_cell(name)[1]['params']['recurrence']
  with jax.enable_x64(True):
    xs = jax.random.normal(jax.random.key(2), (40, 2, 3), jnp.float64)

    def loss(params, xs, h0, parallel):
      y, h = lru.apply(params, xs, h0, parallel)
      return jnp.sum(jnp.sin(y)) + jnp.sum(jnp.abs(h) ** 2), (y, h)

    @jax.jit  # one program (each costs a compile)
    def both(params, xs):
      h0 = lru.input_projection(params, jnp.ones((2, 3)))
      return [jax.value_and_grad(loss, (0, 1, 2), has_aux=True)(params, xs, h0, p)
              for p in (True, False)]
    parallel, sequential = both(params, xs)
  for a, b in zip(jax.tree.leaves(parallel), jax.tree.leaves(sequential)):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.max(np.abs(b)))


def test_power_law_theory_against_monte_carlo():
  """ln E[|lambda|^(2k)] over the ring against the mean of |lambda|^(2k) over 200,000 float64
  draws (within 3 standard errors, k = 0..2000 on [0.5, 0.999] and k up to 10 on [0, 1)) and
  the exact 1/(k+1) on r_min = 0, r_max -> 1; a float32 |lambda|^(2k) would underflow long
  before the theory does."""
  rng = np.random.default_rng(0)
  for r_min, r_max, ks in ((0.5, 0.999, np.array([0, 1, 10, 100, 1000, 2000])),
                           (0.0, 0.9999999, np.arange(11))):
    s = rng.uniform(r_min**2, r_max**2, 200_000)
    with jax.enable_x64(True):
      theory = np.exp(np.asarray(lru.log_grad_sq_theory(ks, r_min, r_max)))
    for k, t in zip(ks, theory):
      draws = s**k
      assert abs(draws.mean() - t) < 3 * draws.std() / math.sqrt(len(s)) + 1e-15, (r_min, k)
  with jax.enable_x64(True):
    np.testing.assert_allclose(np.exp(lru.log_grad_sq_theory(np.arange(50), 0.0, 1 - 1e-12)),
                               1 / (np.arange(50) + 1), rtol=1e-9)
    assert np.isfinite(lru.log_grad_sq_theory(np.array([10**6]), 0.0, 0.5)).all()


@pytest.mark.parametrize('keys, message', [
    (dict(r_min=0.9, r_max=0.5), r'r_min \(0.9\) and r_max \(0.5\) must satisfy'),
    (dict(r_min=0.5, r_max=1.0), r'r_max \(1.0\) must be below 1'),
    (dict(r_min=0.5, r_max=0.9, max_phase=-1.0), r'max_phase \(-1.0\) must be >= 0'),
])
def test_bad_ring_keys_fail_with_one_line(keys, message):
  with pytest.raises(UserError, match=message):
    lru.init('lru', jax.random.key(0), 2, 4, 2, **keys)


def test_log_domain_profile_of_the_flax_cell_is_the_power_of_lambda():
  """The lru as a Flax cell (LinearRecurrentCell: lib/nets/cells' interface) through the sweep's
  log-domain gradient profile, T = 5,000 in float32, ring [0, 0.99]: the backward recursion is
  exactly g_{t-1} = conj(lambda) g_t, so k >= 1 steps back from the loss <r, y_{T-1}>,
  ||dL/ds||^2 = sum_i |lambda_i|^(2k) |g_i|^2 with g = dL/dh_{T-1} = C^T r (real part
  C_re^T r, imaginary -C_im^T r): computed here in float64 in the log domain, and matched down
  to e^-420, far below float32's smallest normal (1e-38), where a plain backward pass reads 0;
  to 1e-3 nats plus 3e-4 relative, the rounding of 5,000 float32 steps (5000 x 2^-24)."""
  from lib.measure import gradients  # pylint: disable=g-import-not-at-top
  from lib.nets import cells  # pylint: disable=g-import-not-at-top
  n, T = 16, 5000
  cell = lru.LinearRecurrentCell(kind='lru', features=n, r_min=0.0, r_max=0.99)
  xs = jax.random.normal(jax.random.key(1), (T, 2, 3))
  carry0 = cell.initialize_carry(None, (2, 3))
  params = jax.jit(cell.init)(jax.random.key(0), carry0, xs[0])
  r = jax.random.normal(jax.random.key(2), (n,)) / np.sqrt(n)
  profile = jax.jit(lambda p: gradients.log_grad_profile(
      cells.step_of(cell, p), lambda s: s[-1], carry0, xs, r).log_grad_sq)(params)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params['params']['recurrence'])
  r64 = np.asarray(r, np.float64)
  w = (p['C_re'].T @ r64) ** 2 + (p['C_im'].T @ r64) ** 2
  log_mod_sq = -2 * np.exp(p['nu_log'])  # ln |lambda_i|^2
  ks = np.arange(1, T)
  expected = np.logaddexp.reduce(np.log(w)[None, :] + ks[:, None] * log_mod_sq[None, :], axis=1)
  measured = np.asarray(profile)[T - 1 - ks]
  assert expected[-1] < -400 and np.all(np.isfinite(measured))
  np.testing.assert_allclose(measured, expected, rtol=3e-4, atol=1e-3)


@pytest.mark.parametrize('kind', lru.LINEAR_CELLS)
def test_flax_cell_steps_are_the_scan(kind, flax_cell):
  """LinearRecurrentCell stepped by lib/nets/cells' forward scan: its outputs equal lru.apply's
  over the same parameters (its own init) in float64 to 1e-12, and its carry's h parts are the
  real and imaginary parts of apply's states."""
  from lib.nets import cells  # pylint: disable=g-import-not-at-top
  cell, params = flax_cell(kind)
  with jax.enable_x64(True):
    xs = jax.random.normal(jax.random.key(1), (9, 2, 3), jnp.float64)
    carry0 = cell.initialize_carry(None, (2, 3))

    @jax.jit
    def both(params, xs):
      states = cells.forward_states(cells.step_of(cell, params), carry0, xs)
      return states, lru.apply(params['params']['recurrence'], xs)
    states, (y, h) = both(params, xs)
  np.testing.assert_allclose(states[-1], y, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(states[0], np.real(h), rtol=1e-12, atol=1e-12)
  if kind == 'lru':
    np.testing.assert_allclose(states[1], np.imag(h), rtol=1e-12, atol=1e-12)
