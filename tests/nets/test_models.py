"""Trained models: parameter counts of the published MNIST-1D models, causality of attention,
the IRNN's init against the ReLU RNN's, and the log-domain input profile against plain autodiff
in float64. The models are built as the experiments build them, from a config's keys
(lib/experiments/model_settings).

The file is compile-bound, so each test compiles as little as it can: jitted programs (run
eagerly, every operation of an init or a PatchConv compiles as a program of its own), shapes by
jax.eval_shape (nothing compiled), and test inputs from numpy's seeded generator rather than
jax.random (on XLA:CPU each jax.random draw in a program costs seconds to compile, more than the
model). Where a test checks a property that holds for any parameters (causality, which inputs an
output reads, a gradient against autodiff), the parameters are generic numpy draws in the shapes
of the model's init; where the init itself is checked, the model's init runs."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.experiments import model_settings
from lib.nets import layers
from lib.nets import models
from lib.runtime.errors import UserError

CLASSIFIER_CFG = dict(cnn_channels=25, mlp_width=100, hidden_size=6, bidirectional=True,
                      sigma_w2=1.0, sigma_v2=1.0, sigma_b2=0.0, recurrent_init='orthogonal',
                      gate_bias=1.0)
SEQUENCE_CFG = dict(hidden_size=8, num_heads=2, num_layers=1, sigma_w2=1.0, sigma_v2=1.0,
                    sigma_b2=0.1, recurrent_init='gaussian', gate_bias=1.0)


def _count(params) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def _generic(shapes, seed: int):
  """Parameters in the shapes of a pytree (of jax.ShapeDtypeStructs): i.i.d. normal, variance
  1 / fan_in for kernels (the leading axis) and 1 for vectors, from numpy's generator `seed`."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: (rng.standard_normal(s.shape)
                                 / np.sqrt(s.shape[0] if len(s.shape) > 1 else 1)).astype(s.dtype),
                      shapes)


@pytest.mark.parametrize('name, expect', [
    # Greydanus & Kobak's models for 40-sample signals, counted by hand from their layer shapes:
    ('logistic', 40 * 10 + 10),
    ('mlp', (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10)),
    # conv 1->25 (k 5), 25->25 (k 3) twice, all stride 2 padding 1: 40 -> 19 -> 10 -> 5 positions
    ('cnn', (5 * 25 + 25) + 2 * (3 * 25 * 25 + 25) + (5 * 25 * 10 + 10)),
])
def test_classifier_sizes_match_the_published_models(name, expect):
  """The exact parameter count, and logits (3, 10) for a batch of 3 signals (40, 1). Counts and
  shapes are fixed when the functions are traced, so jax.eval_shape gives the very ones that
  running init and apply gives, without compiling either."""
  model = model_settings.classifier(name, CLASSIFIER_CFG, (40, 1), 10)
  params = jax.eval_shape(model.init, jax.random.key(0))
  assert _count(params) == expect
  x = jax.ShapeDtypeStruct((3, 40, 1), jnp.float32)
  assert jax.eval_shape(model.apply, params, x).shape == (3, 10)


def test_recurrent_classifier_reads_both_directions():
  """Bidirectional GRU (hidden 6) read out at one position and direction only: the backward
  cell's output at the last position has read x_39 alone, the forward cell's at the first
  position x_0 alone, and the forward cell's at the last position every x_t. Exact: a position
  the output has not read contributes a Jacobian entry of exactly 0.

  One Jacobian for all three: the readout kernel's column j sums the 6 units of the j-th
  (position, direction) probed, so output j reads that one alone; at generic parameters (which
  inputs an output reads does not depend on their values) in the shapes of the model's init."""
  model = model_settings.classifier('gru', CLASSIFIER_CFG, (40, 1), 10)
  shapes = jax.eval_shape(model.init, jax.random.key(0))
  x = np.random.default_rng(1).standard_normal((1, 40, 1)).astype(np.float32)
  probes = [(39, 1), (0, 0), (39, 0)]  # (position t, direction d: 0 forwards, 1 backwards)
  # readout features, flattened from (T, 2 directions, 6 units): index 12 t + 6 d + n
  kernel = np.zeros((40 * 12, 10), np.float32)
  for j, (t, d) in enumerate(probes):
    kernel[12 * t + 6 * d:12 * t + 6 * d + 6, j] = 1.0
  params = _generic(shapes, 0)
  params = {**params, 'readout': {'params': {**params['readout']['params'], 'kernel': kernel}}}
  jac = jax.jit(jax.jacobian(lambda x: model.apply(params, x)))(x)  # (1, 10, 1, 40, 1)
  reads = np.abs(np.asarray(jac)).sum(axis=(0, 2, 4))  # (output j, position s)
  assert np.flatnonzero(reads[0]).tolist() == [39]
  assert np.flatnonzero(reads[1]).tolist() == [0]
  assert np.flatnonzero(reads[2]).tolist() == list(range(40))
  # 2 directions x (input kernels 1x6 with biases + recurrent 6x6, x3 gates, + 'hn' bias 6)
  cell = 3 * (1 * 6 + 6) + 3 * 6 * 6 + 6
  assert _count(shapes) == 2 * cell + (2 * 6 * 40 * 10 + 10)


def _conv_by_hand(x, kernel, bias, stride=2, pad=1):
  """A 2-D convolution by its definition, one output position at a time: y[b, i, j, o] =
  bias[o] + sum over (di, dj, c) of x0[b, stride i + di, stride j + dj, c] kernel[di, dj, c, o],
  x0 the image with `pad` zeros on every side."""
  k = kernel.shape[0]
  x = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
  rows, cols = ((n - k) // stride + 1 for n in x.shape[1:3])
  y = np.empty((x.shape[0], rows, cols, kernel.shape[-1]))
  for i in range(rows):
    for j in range(cols):
      window = x[:, stride * i:stride * i + k, stride * j:stride * j + k, :]
      y[:, i, j] = np.einsum('bhwc,hwco->bo', window, kernel) + bias
  return y


def test_images_use_two_dimensional_convolutions():
  """The CNN on two 28 x 28 images against numpy in float64 from its own parameters, written out
  layer by layer: three 2-D convolutions (kernel 5, 3, 3; stride 2; 1 zero of padding on each
  side: 28 -> 13 -> 7 -> 4 positions a side) with relu, the (4, 4, 25) features flattened in
  row-major order, then the dense readout; within rtol = atol = 1e-12 (float64 rounding, ~1e-15;
  a transposed or flattened image, a padding on one side, another flattening order: O(1) off).
  At generic parameters in the shapes of the model's init (a 5 x 5 first kernel, 1 -> 25)."""
  model = model_settings.classifier('cnn', CLASSIFIER_CFG, (28, 28, 1), 10)
  shapes = jax.eval_shape(model.init, jax.random.key(0))
  assert shapes['params']['Conv_0']['kernel'].shape == (5, 5, 1, 25)
  params = jax.tree.map(lambda a: a.astype(np.float64), _generic(shapes, 0))
  x = np.random.default_rng(1).standard_normal((2, 28, 28, 1))
  with jax.enable_x64(True):
    got = np.asarray(jax.jit(model.apply)(params, x))
  p = params['params']
  h = x
  for i in range(3):
    h = np.maximum(_conv_by_hand(h, p[f'Conv_{i}']['kernel'], p[f'Conv_{i}']['bias']), 0.0)
  assert h.shape == (2, 4, 4, 25)
  expect = h.reshape(2, -1) @ p['Dense_0']['kernel'] + p['Dense_0']['bias']
  assert got.shape == (2, 10) and got.dtype == np.float64
  np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-12)


def test_irnn_is_relu_with_identity_and_zeros_and_relu_is_drawn():
  """irnn: identity recurrent kernel and zero biases whatever sigma_w2, sigma_b2 and
  recurrent_init say (Le et al. 2015), exact (the identity is written, not drawn), its input
  kernel relu's draw; relu: the config's gaussian kernel and biases. Both inits in one program."""
  cfg = {**SEQUENCE_CFG, 'sigma_w2': 3.0, 'sigma_b2': 0.5}
  inits = [model_settings.sequence_model(name, cfg, 2, 1, every_step=False).init
           for name in ('irnn', 'relu')]
  irnn, relu = (p['cell']['params'] for p in jax.jit(
      lambda key: [init(key) for init in inits])(jax.random.key(0)))
  np.testing.assert_array_equal(irnn['h']['kernel'], np.eye(8))
  np.testing.assert_array_equal(irnn['i']['bias'], np.zeros(8))
  np.testing.assert_array_equal(irnn['i']['kernel'], relu['i']['kernel'])
  assert np.asarray(relu['h']['kernel']).var() == pytest.approx(3.0 / 8, rel=0.5)
  assert np.all(np.asarray(relu['i']['bias']) != 0)


def test_attention_is_causal():
  """y_t depends on x_0..x_t only: d y_t / d x_s = 0 for s > t (exactly: the mask gives the
  future a softmax weight of exactly 0), and not for s <= t, over 6 steps (width 8, 2 heads), at
  generic parameters in the shapes of the model's init (causality must hold for any)."""
  model = model_settings.sequence_model('attention', SEQUENCE_CFG, 3, 2, every_step=True)
  params = _generic(jax.eval_shape(model.init, jax.random.key(0)), 0)
  x = np.random.default_rng(1).standard_normal((1, 6, 3)).astype(np.float32)
  jac = np.asarray(jax.jit(jax.jacobian(lambda x: model.apply(params, x)))(x))[0, :, :, 0]
  influence = np.abs(jac).sum(axis=(1, 3))  # (t, s)
  assert np.all(influence[np.triu_indices(6, 1)] == 0)
  assert np.all(influence[np.tril_indices(6)] > 0)


def test_attention_checks_its_width():
  with pytest.raises(UserError, match='divisible by num_heads'):
    model_settings.sequence_model('attention', {**SEQUENCE_CFG, 'hidden_size': 6, 'num_heads': 4},
                                  3, 2, every_step=False)


@pytest.mark.parametrize('cell', ['tanh', 'lstm', 'gru'])
def test_input_profile_matches_plain_autodiff_in_float64(cell):
  """The log-domain reverse scan against one jax.grad of <u, y_last> with respect to the inputs
  (hidden 8, 7 steps, batch 4), within rtol 1e-10: two exact float64 computations of one number
  that differ only in rounding (~1e-15), where a wrong step or Jacobian is off by far more.
  At generic parameters in the shapes of the model's init (the two must agree at any); profile
  and gradient in one program."""
  with jax.enable_x64(True):
    model = models.recurrent(cell, 8, 3, 2, every_step=True, dtype=jnp.float64,
                             cell_init=model_settings.cell_init(SEQUENCE_CFG))
    params = _generic(jax.eval_shape(model.init, jax.random.key(0)), 0)
    x = np.random.default_rng(1).standard_normal((4, 7, 3))
    u = np.asarray([0.6, -0.8])

    @jax.jit
    def profile_and_grad(params, x, u):
      g = jax.grad(lambda x: jnp.sum(model.apply(params, x)[:, -1] * u))(x)
      return model.input_profile(params, x, u), g
    got, g = profile_and_grad(params, x, u)
    expect = np.log(np.mean(np.sum(np.asarray(g) ** 2, axis=-1), axis=0))
  np.testing.assert_allclose(got, expect, rtol=1e-10)


def test_unknown_model_names_the_choices():
  with pytest.raises(UserError, match="unknown model 'rnn'; valid choices: cnn, mlp, logistic"):
    model_settings.classifier('rnn', CLASSIFIER_CFG, (40, 1), 10)


@pytest.mark.parametrize('shape, kernel', [((3, 40, 2), 5), ((2, 9, 8, 3), 3)])
def test_patch_conv_equals_xla_convolution_and_its_gradient(shape, kernel):
  """PatchConv (im2col and one matmul) against flax's nn.Conv (XLA's convolution) with the same
  parameters, in float64: outputs and gradients with respect to the input and every parameter,
  for 1-D and 2-D inputs, odd and even sizes, within rtol = atol = 1e-12 (the two sum the same
  products in different orders: float64 rounding, ~1e-15; a window off by one position is off
  by O(1)); and the same initial parameters, exactly (one program draws both). The input, the
  perturbation and the probe come from numpy's generator."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    dims = len(shape) - 2
    ours = models.PatchConv(4, kernel, stride=2, pad=1)
    xla = models.nn.Conv(4, (kernel,) * dims, strides=2, padding=[(1, 1)] * dims,
                         kernel_init=models.KERNEL_INIT, bias_init=models.BIAS_INIT,
                         param_dtype=jnp.float64)
    params, reference_params = jax.jit(
        lambda key, x: (ours.init(key, x), xla.init(key, x)))(jax.random.key(1), x)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference_params), strict=True):
      np.testing.assert_array_equal(a, b)
    params = jax.tree.map(  # a nonzero bias, so that it is checked too
        lambda a: a + rng.standard_normal(a.shape), params)
    probe = rng.standard_normal(jax.eval_shape(xla.apply, params, x).shape)

    def loss(module, params, x):
      return jnp.sum(module.apply(params, x) * probe)

    @jax.jit
    def outputs_and_gradients(params, x):
      return [(module.apply(params, x), jax.grad(loss, (1, 2))(module, params, x))
              for module in (ours, xla)]
    (out, grads), (reference_out, reference_grads) = outputs_and_gradients(params, x)
    np.testing.assert_allclose(out, reference_out, rtol=1e-12, atol=1e-12)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(reference_grads), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# float32: dense, attention (in, heads, head) and conv (kh, kw, in, out) shapes; float64, where
# only the dtype is new, a dense and a 3-axis one (each shaped draw of Flax's compiles in 0.5-2.7 s,
# a 4-axis one slowest)
KERNEL_SHAPES = {np.float32: [(5, 7), (40, 32), (32, 2, 16), (3, 3, 8, 16), (1, 9)],
                 np.float64: [(5, 7), (32, 2, 16)]}


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_kernel_init_is_flax_lecun_normal_to_the_bit(dtype):
  """layers.lecun_normal (drawn flat, for a faster compile) against Flax's lecun_normal, as model
  initialisations run them (jitted: here every shape in one program for each, which compiles in
  5.3 s against 8.5 s one by one), for KERNEL_SHAPES: the same values, bit for bit, dtype and
  shape."""
  flax_init = nn.initializers.lecun_normal()
  shapes = KERNEL_SHAPES[dtype]
  keys = [jax.random.key(sum(shape)) for shape in shapes]
  with jax.enable_x64(dtype == np.float64):
    expected = jax.jit(lambda keys: [flax_init(k, s, dtype) for k, s in zip(keys, shapes)])(keys)
    ours = jax.jit(lambda keys: [layers.lecun_normal(k, s, dtype)
                                 for k, s in zip(keys, shapes)])(keys)
  for shape, a, b in zip(shapes, ours, expected, strict=True):
    assert a.dtype == b.dtype == dtype and a.shape == b.shape == shape
    np.testing.assert_array_equal(a, b)


def _gelu(u):  # nn.gelu's default, the tanh approximation
  return 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))


def _layer_norm(h, p):
  mean = h.mean(-1, keepdims=True)
  var = ((h - mean) ** 2).mean(-1, keepdims=True)
  return (h - mean) / np.sqrt(var + 1e-6) * p['scale'] + p['bias']


@pytest.mark.parametrize('kind', ['lru', 'linear'])
def test_linear_stack_is_its_recurrences_and_mixing_by_hand(kind):
  """The LRU stack (two layers) against numpy in float64 from its own parameters, the
  recurrence stepped one t at a time (h_t = lambda h_{t-1} + gamma B z_t, y_t = Re(C h_t) +
  D z_t): the model's parallel scan and Flax layers give the same outputs to float32 rounding
  (a GLU gate on the wrong half, a lost skip, conj(lambda), a missing LayerNorm: O(1) off)."""
  cfg = {'hidden_size': 6, 'lru_layers': 2, 'r_min': 0.5, 'r_max': 0.95, 'max_phase': 3.0,
         'parallel_scan': True}
  model = model_settings.sequence_model(kind, cfg, 3, 2, every_step=True)
  params = model.init(jax.random.key(0))
  x = np.asarray(jax.random.normal(jax.random.key(1), (2, 7, 3)), np.float64)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params['params'])
  dense = lambda name, u: u @ p[name]['kernel'] + p[name]['bias']
  h = dense('Dense_0', x)
  for i in range(2):
    r = p[f'recurrence_{i}']
    z = _layer_norm(h, p[f'LayerNorm_{i}'])
    if kind == 'lru':
      lam = np.exp(-np.exp(r['nu_log']) + 1j * np.exp(r['theta_log']))
      b = (r['B_re'] + 1j * r['B_im']) * np.exp(r['gamma_log'])[:, None]
      c = r['C_re'] + 1j * r['C_im']
    else:
      lam, b, c = np.exp(-np.exp(r['nu_log'])), r['B'], r['C']
    state, ys = np.zeros((2, 6), complex), []
    for t in range(7):
      state = lam * state + z[:, t] @ b.T
      ys.append(np.real(state @ c.T) + z[:, t] @ r['D'].T)
    u = _gelu(np.stack(ys, axis=1))
    h = h + dense(f'Dense_{2 * i + 1}', u) / (1 + np.exp(-dense(f'Dense_{2 * i + 2}', u)))
  expected = dense('Dense_5', h)
  np.testing.assert_allclose(model.apply(params, x.astype(np.float32)), expected, rtol=2e-4,
                             atol=2e-5)
