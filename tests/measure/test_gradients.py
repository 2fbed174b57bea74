"""The per-step gradient profile against independent computations of the same quantity."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.measure import gradients
from lib.nets import cells


def _network(name, seq_len, *, sigma_w2=1.0, hidden=8, width=3, batch=4, seed=0,
             dtype=jnp.float64, recurrent_init='gaussian', params_only=False):
  """(step, output, carry0, xs, readout) of a random cell; or its params alone. Eager: each op
  compiles on its own, once for every test of the file (inside each test's program, the init
  compiled again in each costs more)."""
  cell = cells.make_cell(name, hidden, dtype)
  key = jax.random.key(seed)
  params = cells.init_params(name, cell, jax.random.fold_in(key, 0), width, sigma_w2=sigma_w2,
                             sigma_v2=0.3, sigma_b2=0.05, recurrent_init=recurrent_init,
                             gate_bias=1.0)
  if params_only:
    return params
  # drawn flat (cells.standard_normals): the values of shaped draws, compiled several times faster
  (xs,) = cells.standard_normals(jax.random.fold_in(key, 1), [(seq_len, batch, width)], dtype)
  (readout,) = cells.standard_normals(jax.random.fold_in(key, 2), [(hidden,)], dtype)
  readout = readout / np.sqrt(hidden)
  carry0 = cells.zero_carry(cell, batch, width)
  return cells.step_of(cell, params), functools.partial(cells.output, name), carry0, xs, readout


def _log_mean_sq(tree):
  """ln mean_b ||leaf_b||^2 summed over the leaves of a batched tree (in jnp: inside a jit)."""
  return jnp.log(jnp.mean(sum(jnp.sum(leaf.reshape(leaf.shape[0], -1) ** 2, axis=1)
                              for leaf in jax.tree.leaves(tree))))


# One cell per shape of state: relu runs tanh's code (a single array; only the activation
# differs), the linear cell the lru's with real numbers.
CARRIES = ('tanh', 'lstm', 'gru', 'lru')


@pytest.mark.parametrize('name', CARRIES)
def test_profile_equals_separate_grads_per_step(name):
  """Each ln mean_b ||dl_b/ds_t||^2 equals a jax.grad of the loss taken from s_t onward (all in
  one jitted program: eager, each small op would compile on its own)."""
  with jax.enable_x64(True):
    step, out, carry0, xs, readout = _network(name, seq_len=4)

    def both():
      profile = gradients.log_grad_profile(step, out, carry0, xs, readout)
      states = cells.forward_states(step, carry0, xs)

      def loss_from(t, state, x_t=None):
        """sum_b l_b as a function of s_t (or of x_t, then s_t is recomputed from s_{t-1})."""
        if x_t is not None:
          state = step(state, x_t)
        for x in xs[t + 1:]:
          state = step(state, x)
        return jnp.sum(out(state) @ readout)

      expect_h, expect_x = [], []
      for t in range(xs.shape[0]):
        s_t = jax.tree.map(lambda s: s[t], states)
        s_prev = carry0 if t == 0 else jax.tree.map(lambda s: s[t - 1], states)
        expect_h.append(_log_mean_sq(jax.grad(lambda s: loss_from(t, s))(s_t)))
        expect_x.append(_log_mean_sq(jax.grad(lambda x: loss_from(t, s_prev, x))(xs[t])))
      return profile, jnp.stack(expect_h), jnp.stack(expect_x)

    (log_h, log_x, _, finite, _), expect_h, expect_x = jax.jit(both)()
    np.testing.assert_allclose(log_h, expect_h, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(log_x, expect_x, rtol=1e-10, atol=1e-10)
    assert bool(finite)


def test_hand_worked_three_step_linear_recurrence():
  """Scalar linear RNN h_t = w h_{t-1} + v x_t + b, loss l = r h_2, batch of 2:

      dl/dh_2 = r,  dl/dh_1 = w r,  dl/dh_0 = w^2 r      -> ln ||.||^2 = ln r^2 + 2(2-t) ln w
      dl/dx_t = v dl/dh_t                                -> ln ||.||^2 = ln v^2 + ln ||dl/dh_t||^2
  """
  w, v, r = 0.5, 3.0, 2.0
  cell = nn.SimpleCell(1, activation_fn=lambda a: a, param_dtype=jnp.float32)
  params = {'params': {'h': {'kernel': jnp.array([[w]])},
                       'i': {'kernel': jnp.array([[v]]), 'bias': jnp.array([0.1])}}}
  xs = jnp.array([[[1.0], [-2.0]], [[0.5], [0.0]], [[3.0], [1.0]]])  # (T=3, B=2, D=1)
  log_h, log_x, log_initial, _, _ = jax.jit(lambda: gradients.log_grad_profile(
      cells.step_of(cell, params), lambda c: c, jnp.zeros((2, 1)), xs, jnp.array([r])))()
  expect_h = np.log([r**2 * w**4, r**2 * w**2, r**2])
  np.testing.assert_allclose(log_h, expect_h, rtol=1e-6)
  np.testing.assert_allclose(log_x, expect_h + np.log(v**2), rtol=1e-6)
  np.testing.assert_allclose(log_initial, np.log(r**2 * w**6), rtol=1e-6)  # dl/dh_{-1} = w^3 r


@pytest.mark.parametrize('name', CARRIES)
def test_log_domain_equals_float64_direct(name):
  """Where nothing underflows, the renormalised path equals plain autodiff in float64, and the
  float32 log path agrees with it to float32 precision (the same network cast)."""
  with jax.enable_x64(True):
    net64 = _network(name, seq_len=40, sigma_w2=1.5)
    params = _network(name, seq_len=40, sigma_w2=1.5, params_only=True)
    (direct_h, direct_x), (log_h, log_x, _, _, _) = jax.jit(  # one program for both paths
        lambda: (gradients.direct_grad_profile(*net64), gradients.log_grad_profile(*net64)))()
    np.testing.assert_allclose(log_h, direct_h, rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(log_x, direct_x, rtol=1e-12, atol=1e-11)
  params, carry0, xs, readout = jax.tree.map(
      lambda a: np.asarray(a, np.float32), (params, *net64[2:]))
  log_h32 = jax.jit(lambda *a: gradients.log_grad_profile(
      cells.step_of(cells.make_cell(name, 8, jnp.float32), a[0]),
      functools.partial(cells.output, name), *a[1:]).log_grad_sq)(params, carry0, xs, readout)
  np.testing.assert_allclose(log_h32, direct_h, atol=2e-3 * (1 + np.abs(direct_h).max()))


def _linear_orthogonal(a, hidden, seq_len, batch=3, dtype=jnp.float32):
  """A linear RNN h_t = a Q h_{t-1} + V x_t with Q orthogonal (a float64 draw, cast)."""
  rng = np.random.default_rng(0)
  q, _ = np.linalg.qr(rng.standard_normal((hidden, hidden)))
  cell = nn.SimpleCell(hidden, activation_fn=lambda x: x, dtype=dtype, param_dtype=dtype)
  params = {'params': {'h': {'kernel': jnp.asarray(a * q, dtype)},
                       'i': {'kernel': jnp.asarray(rng.standard_normal((2, hidden)), dtype),
                             'bias': jnp.zeros((hidden,), dtype)}}}
  xs = jnp.asarray(rng.standard_normal((seq_len, batch, 2)), dtype)
  readout = jnp.asarray(rng.standard_normal(hidden), dtype)
  return (cells.step_of(cell, params), lambda c: c, jnp.zeros((batch, hidden), dtype), xs,
          readout)


def test_linear_orthogonal_slope_is_two_ln_a_and_survives_underflow():
  """||a Q^T g|| = a ||g|| exactly, so ln ||dl/dh_{T-1-k}||^2 is a line of slope 2 ln a. At
  T = 5000 with a = 0.8 it falls by 2231 nats, far past float32 (and float64) underflow."""
  a, seq_len = 0.8, 5000
  net = _linear_orthogonal(a, hidden=16, seq_len=seq_len)
  log_h, (direct_h, _) = jax.jit(  # one program for both paths
      lambda *a: (gradients.log_grad_profile(*net[:2], *a).log_grad_sq,
                  gradients.direct_grad_profile(*net[:2], *a)))(*net[2:])
  log_h = np.asarray(log_h, np.float64)
  assert np.all(np.isfinite(log_h))
  k = np.arange(seq_len)
  expect = log_h[-1] + 2 * np.log(a) * k  # ln||r||^2 - 2 k ln(1/a)
  np.testing.assert_allclose(log_h[::-1], expect, atol=5e-3 * seq_len * 1e-2)
  np.testing.assert_allclose(gradients.fit_decay_rate(log_h), 2 * np.log(a), rtol=1e-5)
  assert np.isneginf(np.asarray(direct_h)[0]), 'the direct float32 path should underflow here'


def test_tanh_profile_stays_finite_and_linear_at_5000_steps():
  """A vanishing tanh RNN at T = 5000 (about -0.25 nats per step): finite everywhere, on a line."""
  seq_len = 5000
  net = _network('tanh', seq_len, sigma_w2=1.0, hidden=64, width=8, batch=8,
                 dtype=jnp.float32)
  log_h = jax.jit(gradients.log_grad_profile, static_argnums=(0, 1))(*net).log_grad_sq
  log_h = np.asarray(log_h, np.float64)[::-1]
  assert np.all(np.isfinite(log_h)) and log_h[-1] < -500
  k = np.arange(seq_len)
  slope, intercept = np.polyfit(k, log_h, 1)
  residual = log_h - (slope * k + intercept)
  assert slope < -0.05
  assert 1 - residual.var() / log_h.var() > 0.999


def test_pascanu_bound_for_contracting_tanh():
  """With the largest singular value of W equal to s < 1 and |tanh'| <= 1,
  ||dh_{T-1}/dh_k|| <= s^(T-1-k) (Pascanu et al. 2013), so per example
  ||dl/dh_k||^2 <= s^(2(T-1-k)) ||r||^2; checked on the Jacobian itself and on the profile."""
  s, hidden, seq_len = 0.9, 10, 30
  k = 5
  with jax.enable_x64(True):
    carry0, xs, readout = _network('tanh', seq_len, hidden=hidden, sigma_w2=3.0)[2:]
    params = _network('tanh', seq_len, hidden=hidden, sigma_w2=3.0, params_only=True)
    kernel = params['params']['h']['kernel']
    kernel = kernel * (s / np.linalg.norm(np.asarray(kernel), 2))
    params = {'params': {**params['params'], 'h': {'kernel': kernel}}}
    cell = cells.make_cell('tanh', hidden, jnp.float64)

    @jax.jit  # the profile and the Jacobian in one program
    def measured(params, carry0, xs, readout):
      step = cells.step_of(cell, params)

      def h_last_from_h_k(h):  # one example's h_k -> h_{T-1}
        for x in xs[k + 1:, :1]:
          h = step(h, x)
        return h[0]
      return (gradients.log_grad_profile(step, functools.partial(cells.output, 'tanh'), carry0,
                                         xs, readout).log_grad_sq,
              jax.jacobian(h_last_from_h_k)(
                  cells.forward_states(step, carry0, xs)[k, :1])[:, 0, :])
    log_h, jac = measured(params, carry0, xs, readout)
    bound = 2 * np.arange(seq_len)[::-1] * np.log(s) + np.log(np.sum(np.asarray(readout)**2))
    assert np.all(np.asarray(log_h) <= bound + 1e-9)
    assert np.asarray(log_h)[0] < bound[0] - 1.0  # tanh' < 1 makes it strictly smaller
    assert np.linalg.norm(np.asarray(jac), 2) <= s ** (seq_len - 1 - k)


def test_fit_decay_rate_window_and_missing_points():
  k = np.arange(50)
  line = 3.0 - 0.25 * k
  profile = line[::-1].copy()  # profile[t], t = T-1-k
  assert gradients.fit_decay_rate(profile) == pytest.approx(-0.25, rel=1e-12)
  bent = line.copy()
  bent[:5] += 10.0  # a transient near the loss, and a bend far from it: both outside the window
  bent[41:] += 3.0 * (k[41:] - 40) ** 2
  assert gradients.fit_decay_rate(bent[::-1], k_min=5, k_max=40) == pytest.approx(-0.25)
  assert gradients.fit_decay_rate(np.array([1.0, np.nan, np.inf])) is None


def test_fit_decay_rate_window_is_inclusive_at_both_ends_worked_by_hand():
  """y[k] = ln ||dl/ds_{T-1-k}||^2 for k = 0..7, a profile that bends at every step, so that each
  point in or out of the window moves the slope. By hand: over k = 2..4 (y = 0, 1, 5) the
  least-squares slope of three equally spaced points is (5 - 0) / 2 = 2.5; over k = 2..5
  (y = 0, 1, 5, 20; mean k 3.5, mean y 6.5) it is (1.5*6.5 + 0.5*5.5 - 0.5*1.5 + 1.5*13.5) / 5
  = 32 / 5 = 6.4; over k = 1..7 (mean k 4) it is (12 + 0 - 1 + 0 + 20 - 14 + 9) / 28 = 13 / 14;
  k_max = -1, or past the end, is the end."""
  y = np.array([9.0, -4.0, 0.0, 1.0, 5.0, 20.0, -7.0, 3.0])
  profile = y[::-1]  # profile[t] with t = T-1-k
  assert gradients.fit_decay_rate(profile, 2, 4) == pytest.approx(2.5, rel=1e-12)
  assert gradients.fit_decay_rate(profile, 2, 5) == pytest.approx(6.4, rel=1e-12)
  for k_max in (7, -1, 100):
    assert gradients.fit_decay_rate(profile, 1, k_max) == pytest.approx(13 / 14, rel=1e-12)
  assert gradients.fit_decay_rate(profile, 3, 3) is None  # one point: no slope


@pytest.mark.parametrize('profile, forward_finite, status', [
    ([0.0, -3.5, -7.0], True, 'ok'),
    ([0.0, -3.5, -7.0], False, 'diverged'),  # the forward pass overflowed
    ([0.0, np.inf, 2.0], True, 'diverged'),  # the gradient overflowed, the forward did not
    ([0.0, np.nan, -7.0], True, 'diverged'),
    ([0.0, -np.inf, -np.inf], True, 'vanished'),  # an exactly zero gradient from step 1 on
    ([-np.inf, np.inf], True, 'diverged'),  # an overflow anywhere outranks a zero elsewhere
    ([-np.inf, -7.0], False, 'diverged'),
])
def test_status_of_each_kind_of_profile(profile, forward_finite, status):
  """The status a record gets, by hand: 'diverged' for a non-finite forward pass or a NaN or
  +inf anywhere in the log profile (before 'vanished'), 'vanished' for -inf (a gradient that is
  exactly zero), else 'ok'."""
  assert gradients.status_of(np.array(profile, np.float32), forward_finite) == status


def test_parameter_gradients_need_a_batch_of_one():
  """input_grads='parameters' sums each layer's parameter cotangent over the batch, which is only
  the gradient when every example shares one renormalisation unit: a batch of 2 is refused."""
  step = lambda h, w: jnp.tanh(h @ w)
  ws = jnp.ones((3, 2, 2))
  with pytest.raises(ValueError, match='needs a batch of one example, got 2'):
    gradients.log_grad_profile(step, lambda h: h, jnp.ones((2, 2)), ws, jnp.ones((2, 2)),
                               input_grads='parameters')
  with pytest.raises(ValueError, match="input_grads must be True, False or 'parameters'"):
    gradients.log_grad_profile(step, lambda h: h, jnp.ones((1, 2)), ws, jnp.ones((1, 2)),
                               input_grads='params')
