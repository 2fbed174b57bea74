"""Singular values of a deep network's input-output Jacobian (lib/measure/lyapunov.
log_singular_values) against jax.jacfwd and numpy's SVD in float64, finite where the matrix
itself overflows; free probability's moments (theory.jacobian_sv_moments) against closed forms
and a numpy simulation of fully connected networks; depth_decay's records against an
independent Jacobian of the same CNN."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.experiments import depth_decay
from lib.measure import lyapunov
from lib.measure import theory
from lib.nets import cells
from lib.nets import cnn
from tests.conftest import validated


def _tanh_net(n, depth, scale, seed=0):
  rng = np.random.default_rng(seed)
  ws = rng.normal(size=(depth, n, n)) * np.sqrt(scale / n)
  return (lambda s, w: jnp.tanh(w @ s + 0.1)), rng.normal(size=n), ws


def test_log_singular_values_against_jacfwd_and_svd_in_float64():
  """The largest half of the singular values of a 6-layer tanh network (width 10) to 1e-10
  relative (the smallest are as exact as the matrix's conditioning allows); a renormalisation
  dropped, or a column order swapped, is O(1) off."""
  with jax.enable_x64(True):
    step, x0, ws = _tanh_net(10, 6, 1.5)
    got = np.asarray(lyapunov.log_singular_values(step, jnp.asarray(x0), jnp.asarray(ws)))
    jacobian = jax.jacfwd(lambda x: jax.lax.scan(lambda s, w: (step(s, w), None), x,
                                                 jnp.asarray(ws))[0])(jnp.asarray(x0))
  expected = np.log(np.linalg.svd(np.asarray(jacobian), compute_uv=False))
  np.testing.assert_allclose(got[:5], expected[:5], rtol=1e-10)


def test_log_singular_values_stay_finite_where_the_jacobian_overflows():
  """300 layers of 1.5 Q_l (Q_l orthogonal, width 8): every singular value of the product is
  1.5^300 = e^121.6, beyond float32 (e^88.7); in float32 the ln singular values are 300 ln 1.5
  to 1e-5 relative."""
  qs = np.linalg.qr(np.random.default_rng(2).normal(size=(300, 8, 8)))[0]
  got = np.asarray(lyapunov.log_singular_values(
      lambda s, w: w @ s, jnp.zeros(8), jnp.asarray(1.5 * qs, jnp.float32)))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, 300 * math.log(1.5), rtol=1e-5)


@pytest.mark.parametrize('init,spread', [('gaussian', 2.0), ('orthogonal', 1.0),
                                         ('delta_orthogonal', 1.0)])
def test_relu_moments_in_closed_form(init, spread):
  """relu: mu1 = mu2 = 1/2 at any q, so E[s^2] = (sigma_w2 / 2)^L and Var / E^2 = L (2 - 1 - s1):
  2L for gaussian kernels, L for orthogonal ones."""
  log_mean, norm_var = theory.jacobian_sv_moments('relu', init, 1.7, 0.1, 12)
  assert log_mean == pytest.approx(12 * math.log(0.85), abs=1e-12)
  assert norm_var == pytest.approx(12 * spread, abs=1e-12)


def _fully_connected(activation, init, sigma_w2, sigma_b2, depth, width, repeats, seed=0):
  """ln E[s^2] and Var / E^2 of s^2 of a numpy float64 fully connected network's input-output
  Jacobian, input x ~ N(0, I), averaged over `repeats` networks."""
  rng = np.random.default_rng(seed)
  means, spreads = [], []
  for _ in range(repeats):
    x, jac = rng.normal(size=width), np.eye(width)
    for _ in range(depth):
      if init == 'gaussian':
        w = rng.normal(size=(width, width)) * np.sqrt(sigma_w2 / width)
      else:
        q, r = np.linalg.qr(rng.normal(size=(width, width)))
        w = np.sqrt(sigma_w2) * q * np.sign(np.diag(r))
      a = w @ x + rng.normal(size=width) * np.sqrt(sigma_b2)
      d = 1 - np.tanh(a) ** 2 if activation == 'tanh' else (a > 0).astype(float)
      x = np.tanh(a) if activation == 'tanh' else np.maximum(a, 0.0)
      jac = (d[:, None] * w) @ jac
    s2 = np.linalg.svd(jac, compute_uv=False) ** 2
    means.append(s2.mean())
    spreads.append(s2.var() / s2.mean() ** 2)
  return math.log(np.mean(means)), float(np.mean(spreads))


@pytest.mark.parametrize('init', ['gaussian', 'orthogonal'])
def test_tanh_moments_against_a_simulation_of_fully_connected_networks(init):
  """At the tanh critical line (sigma_b2 = 0.005), depth 8, width 300, 3 networks: ln E[s^2]
  within 0.15 and Var / E^2 within 10% of free probability (measured at width 400: 0.14 and 2%
  gaussian, 0.04 and 1% orthogonal)."""
  log_mean, norm_var = _fully_connected('tanh', init, 1.3317, 0.005, 8, 300, 3)
  predicted = theory.jacobian_sv_moments('tanh', init, 1.3317, 0.005, 8)
  assert log_mean == pytest.approx(predicted[0], abs=0.15)
  assert norm_var == pytest.approx(predicted[1], rel=0.10)


def test_depth_decay_records_hold_the_same_cnns_jacobian():
  """depth_decay with jacobian_spectrum: each record's ln singular values are those of the first
  example's input-output Jacobian of the same CNN (its own draws, rebuilt here; jax.jacfwd and
  numpy's SVD), to float32 rounding; its moments are those of the values."""
  cfg = validated('depth_decay', activations=('tanh',), inits=('delta_orthogonal',),
                  depths=(3,), sigma_w2=(1.5,), sigma_b2=(0.01,), width=4, spatial_shape=(3,),
                  batch_size=2, num_seeds=1, jacobian_spectrum=True)
  (record,) = depth_decay.compute_group(cfg, ('tanh', 'delta_orthogonal', 3))
  key = jax.random.key(0)
  params = cnn.init_params(jax.random.fold_in(key, 0), 3, 4, 3, 1, sigma_w2=1.5,
                           sigma_b2=0.01, init='delta_orthogonal')
  _, x = cells.standard_normals(jax.random.fold_in(key, 1), [(3, 4), (2, 3, 4)], jnp.float32)
  step = cnn.layer_step(cnn.make_layer(4, 3, 1), 'tanh')
  jacobian = jax.jacfwd(lambda h: jax.lax.scan(lambda s, p: (step(s, p), None), h, params)[0])(
      x[:1])
  expected = np.log(np.linalg.svd(np.asarray(jacobian).reshape(12, 12), compute_uv=False))
  np.testing.assert_allclose(record['log_sv'], expected, rtol=1e-4, atol=1e-4)
  s2 = np.exp(2 * expected)
  assert record['log_sv_sq_mean'] == pytest.approx(math.log(s2.mean()), abs=1e-4)
  assert record['sv_sq_norm_var'] == pytest.approx(s2.var() / s2.mean() ** 2, rel=1e-3)
  assert record['theory_sv_sq_norm_var'] == pytest.approx(
      theory.jacobian_sv_moments('tanh', 'delta_orthogonal', 1.5, 0.01, 3)[1])


def test_singular_values_below_the_float_resolution_are_null():
  """s below s_max n eps (numpy's rank tolerance; n = 4, float32: ln 4.8e-7 = -14.5 below the
  largest) is not resolved: -inf (JSON null); the moments take every value as computed."""
  log_sv = np.array([0.0, -5.0, -14.0, -15.0])
  fields = depth_decay.spectrum_fields(log_sv, 'relu', 'gaussian', 2, 2.0, 0.0)
  assert fields['log_sv'][:3] == [0.0, -5.0, -14.0] and fields['log_sv'][3] == -np.inf
  s2 = np.exp(2 * log_sv)
  assert fields['log_sv_sq_mean'] == pytest.approx(math.log(s2.mean()), rel=1e-12)
  assert depth_decay.spectrum_fields(log_sv, 'relu', 'gaussian', 2, 2.0, 0.0, 'float64')[
      'log_sv'][3] == -15.0
