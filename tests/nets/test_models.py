"""Trained models: parameter counts of the published MNIST-1D models, causality of attention,
the IRNN's init, and the log-domain input profile against plain autodiff in float64."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.nets import models
from lib.runtime.errors import UserError

CLASSIFIER_CFG = dict(cnn_channels=25, mlp_width=100, hidden_size=6, bidirectional=True,
                      sigma_w2=1.0, sigma_v2=1.0, sigma_b2=0.0, recurrent_init='orthogonal',
                      gate_bias=1.0)
SEQUENCE_CFG = dict(hidden_size=8, num_heads=2, num_layers=1, sigma_w2=1.0, sigma_v2=1.0,
                    sigma_b2=0.1, recurrent_init='gaussian', gate_bias=1.0)


def _count(params) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize('name, expect', [
    # Greydanus & Kobak's models for 40-sample signals, counted by hand from their layer shapes:
    ('logistic', 40 * 10 + 10),
    ('mlp', (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10)),
    # conv 1->25 (k 5), 25->25 (k 3) twice, all stride 2 padding 1: 40 -> 19 -> 10 -> 5 positions
    ('cnn', (5 * 25 + 25) + 2 * (3 * 25 * 25 + 25) + (5 * 25 * 10 + 10)),
])
def test_classifier_sizes_match_the_published_models(name, expect):
  model = models.classifier(name, CLASSIFIER_CFG, (40, 1), 10)
  params = model.init(jax.random.key(0))
  assert _count(params) == expect
  assert model.apply(params, jnp.ones((3, 40, 1))).shape == (3, 10)


def test_recurrent_classifier_reads_both_directions():
  """Bidirectional GRU (hidden 6) read out at one position and direction only: the backward
  cell's output at the last position has read x_39 alone, the forward cell's at the first
  position x_0 alone, and the forward cell's at the last position every x_t."""
  model = models.classifier('gru', CLASSIFIER_CFG, (40, 1), 10)
  params = model.init(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (1, 40, 1))
  # readout features, flattened from (T, 2 directions, 6 units): index 12 t + 6 d + n
  def dependence(t, d):
    kernel = np.zeros((40 * 12, 10), np.float32)
    kernel[12 * t + 6 * d:12 * t + 6 * d + 6] = 1.0
    p = {**params, 'readout': {'params': {**params['readout']['params'], 'kernel': kernel}}}
    jac = jax.jit(jax.jacobian(lambda x: model.apply(p, x)))(x)  # (1, 10, 1, 40, 1)
    return np.flatnonzero(np.abs(np.asarray(jac)).sum(axis=(0, 1, 2, 4)))
  assert dependence(39, 1).tolist() == [39]
  assert dependence(0, 0).tolist() == [0]
  assert dependence(39, 0).tolist() == list(range(40))
  # 2 directions x (input kernels 1x6 with biases + recurrent 6x6, x3 gates, + 'hn' bias 6)
  cell = 3 * (1 * 6 + 6) + 3 * 6 * 6 + 6
  assert _count(params) == 2 * cell + (2 * 6 * 40 * 10 + 10)


def test_images_use_two_dimensional_convolutions():
  model = models.classifier('cnn', CLASSIFIER_CFG, (28, 28, 1), 10)
  params = model.init(jax.random.key(0))
  assert params['params']['Conv_0']['kernel'].shape == (5, 5, 1, 25)
  assert model.apply(params, jnp.ones((2, 28, 28, 1))).shape == (2, 10)


def test_relu_is_the_irnn():
  """Identity recurrent kernel and zero biases whatever sigma_w2, sigma_b2 say (Le et al. 2015)."""
  cfg = {**SEQUENCE_CFG, 'sigma_w2': 3.0, 'sigma_b2': 0.5}
  params = models.sequence_model('relu', cfg, 2, 1, every_step=False).init(jax.random.key(0))
  cell = params['cell']['params']
  np.testing.assert_array_equal(cell['h']['kernel'], np.eye(8))
  np.testing.assert_array_equal(cell['i']['bias'], np.zeros(8))


def test_attention_is_causal():
  """y_t depends on x_0..x_t only: d y_t / d x_s = 0 for s > t, and not for s <= t."""
  model = models.sequence_model('attention', SEQUENCE_CFG, 3, 2, every_step=True)
  params = model.init(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (1, 6, 3))
  jac = np.asarray(jax.jit(jax.jacobian(lambda x: model.apply(params, x)))(x))[0, :, :, 0]
  influence = np.abs(jac).sum(axis=(1, 3))  # (t, s)
  assert np.all(influence[np.triu_indices(6, 1)] == 0)
  assert np.all(influence[np.tril_indices(6)] > 0)


def test_attention_checks_its_width():
  with pytest.raises(UserError, match='divisible by num_heads'):
    models.sequence_model('attention', {**SEQUENCE_CFG, 'hidden_size': 6, 'num_heads': 4}, 3, 2,
                          every_step=False)


@pytest.mark.parametrize('cell', ['tanh', 'lstm', 'gru'])
def test_input_profile_matches_plain_autodiff_in_float64(cell):
  """The log-domain reverse scan against one jax.grad of <u, y_last> with respect to the inputs."""
  with jax.enable_x64(True):
    init = {k: SEQUENCE_CFG[k] for k in ('sigma_w2', 'sigma_v2', 'sigma_b2', 'recurrent_init',
                                          'gate_bias')}
    model = models.recurrent(cell, 8, 3, 2, every_step=True, dtype=jnp.float64, **init)
    params = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 7, 3), jnp.float64)
    u = jnp.asarray([0.6, -0.8])
    got = model.input_profile(params, x, u)
    g = jax.grad(lambda x: jnp.sum(model.apply(params, x)[:, -1] * u))(x)
    expect = np.log(np.mean(np.sum(np.asarray(g) ** 2, axis=-1), axis=0))
  np.testing.assert_allclose(got, expect, rtol=1e-10)


def test_unknown_model_names_the_choices():
  with pytest.raises(UserError, match="unknown model 'rnn'; valid choices: cnn, mlp, logistic"):
    models.classifier('rnn', CLASSIFIER_CFG, (40, 1), 10)


@pytest.mark.parametrize('shape, kernel', [((3, 40, 2), 5), ((2, 9, 8, 3), 3)])
def test_patch_conv_equals_xla_convolution_and_its_gradient(shape, kernel):
  """PatchConv (im2col and one matmul) against flax's nn.Conv (XLA's convolution) with the same
  parameters, in float64: outputs and gradients with respect to the input and every parameter,
  for 1-D and 2-D inputs, odd and even sizes; and the same initial parameters."""
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.key(0), shape, jnp.float64)
    dims = len(shape) - 2
    ours = models.PatchConv(4, kernel, stride=2, pad=1)
    xla = models.nn.Conv(4, (kernel,) * dims, strides=2, padding=[(1, 1)] * dims,
                         kernel_init=models.KERNEL_INIT, bias_init=models.BIAS_INIT,
                         param_dtype=jnp.float64)
    params = ours.init(jax.random.key(1), x)
    reference_params = xla.init(jax.random.key(1), x)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference_params), strict=True):
      np.testing.assert_array_equal(a, b)
    params = jax.tree.map(  # a nonzero bias, so that it is checked too
        lambda a: a + jax.random.normal(jax.random.key(2), a.shape, a.dtype), params)
    probe = jax.random.normal(jax.random.key(3), xla.apply(params, x).shape, jnp.float64)

    def loss(module, params, x):
      return jnp.sum(module.apply(params, x) * probe)
    np.testing.assert_allclose(ours.apply(params, x), xla.apply(params, x), rtol=1e-12,
                               atol=1e-12)
    for a, b in zip(jax.tree.leaves(jax.grad(loss, (1, 2))(ours, params, x)),
                    jax.tree.leaves(jax.grad(loss, (1, 2))(xla, params, x)), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
