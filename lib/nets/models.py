"""Trained models as (init, apply) pairs of pure functions over a params pytree.

Inputs are float arrays: a sequence (B, T, D) for the sequence models (tokens arrive one-hot), or
a signal (B, L, C) / an image (B, H, W, C) for the classifiers. Every parameter comes from an
explicit rule, never from a library default:
  recurrent cells   `lib.nets.cells.init_params`: the recurrent kernel by `recurrent_init` and
                    sigma_w2, input kernels N(0, sigma_v2 / D), biases N(0, sigma_b2), plus
                    `gate_bias` on the LSTM forget / GRU update gate (`cells.CellInit`); `irnn`
                    the IRNN (Le, Jaitly & Hinton 2015): identity recurrent kernel, zero biases;
                    the linear cells (`lru`, `linear`) their ring init by r_min, r_max,
                    max_phase (and parallel_scan: how they run over time, `lib.nets.cells.states`;
                    `cells.LinearOptions`)
  dense, conv, attention kernels   LeCun normal, N(0, 1 / fan_in); biases zero (lib.nets.layers)
  layer norms       scale one, offset zero
The transformer is lib.nets.transformer's, read out at every step or at the last.

`input_profile(params, x, u)` measures how far back the trained signal reaches: ln mean_b
||d <u, y_b> / d x_t||^2 for t = 0..T-1, where y_b is the model's output at the last step and u a
fixed direction in output space. Recurrent models measure it in the log domain
(`lib.measure.gradients.log_grad_profile`), so that a gradient that vanishes over thousands of
steps is still a number; attention has no product of per-step Jacobians to underflow.
"""

import dataclasses
import functools
import math
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lib.measure import gradients
from lib.nets import cells
from lib.nets import layers
from lib.nets import lru
from lib.nets import transformer

KERNEL_INIT = layers.KERNEL_INIT
BIAS_INIT = layers.BIAS_INIT


class Model(NamedTuple):
  init: Callable  # key -> params
  apply: Callable  # (params, x) -> outputs: (B, C) at the last step, or (B, T, C) at every step
  input_profile: Callable  # (params, x (B, T, D), u (C,)) -> (T,) ln mean_b ||d<u, y_b>/dx_t||^2


def _direct_input_profile(apply, every_step: bool):
  """ln mean_b ||d <u, y_b(last)> / d x_t||^2 by one jax.grad (no long Jacobian products)."""
  def profile(params, x, u):
    def out(x):
      y = apply(params, x)
      return jnp.sum((y[:, -1] if every_step else y) * u)
    g = jax.grad(out)(x)  # (B, T, D)
    return jnp.log(jnp.mean(jnp.sum(jnp.square(g), axis=-1), axis=0))
  return profile


# ---- recurrent sequence models ------------------------------------------------------------------

def recurrent(cell_name: str, hidden_size: int, input_size: int, num_outputs: int,
              every_step: bool, *, cell_init: cells.CellInit = cells.CellInit(),
              linear: cells.LinearOptions | None = None, dtype=jnp.float32) -> Model:
  """A cell read out by a dense layer at the last step (or at every step)."""
  cell = cells.make_cell(cell_name, hidden_size, dtype, linear)
  readout = nn.Dense(num_outputs, kernel_init=KERNEL_INIT, bias_init=BIAS_INIT, dtype=dtype,
                     param_dtype=dtype)

  def init(key):
    k_cell, k_readout = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    return {'cell': cells.init_params(cell_name, cell, k_cell, input_size,
                                      **dataclasses.asdict(cell_init)),
            'readout': readout.init(k_readout, jnp.zeros((1, hidden_size), dtype))}

  def read(params, carry):
    return readout.apply(params['readout'], cells.output(cell_name, carry))

  def apply(params, x):
    xs = jnp.swapaxes(x, 0, 1)  # (T, B, D)
    carry0 = cells.zero_carry(cell, x.shape[0], input_size)
    states = cells.states(cell_name, cell, params['cell'], carry0, xs, hoist=False)
    if not every_step:
      return read(params, jax.tree.map(lambda s: s[-1], states))
    return jnp.swapaxes(jax.vmap(functools.partial(read, params))(states), 0, 1)

  def input_profile(params, x, u):
    carry0 = cells.zero_carry(cell, x.shape[0], input_size)
    profile = gradients.log_grad_profile(
        cells.step_of(cell, params['cell']), functools.partial(read, params), carry0,
        jnp.swapaxes(x, 0, 1), u)
    return profile.log_grad_sq_input

  return Model(init, apply, input_profile)


# ---- stacked linear recurrences (the LRU's architecture) ----------------------------------------

class LinearRecurrentStack(nn.Module):
  """minimal-LRU's stack (Orvieto et al. 2023) around a linear cell (lib/nets/lru): an encoder
  Dense(width), then per layer h = h + GLU(gelu(lru(LayerNorm(h)))) with GLU(u) = Dense(u) *
  sigmoid(Dense(u)), then a Dense readout at every step or the last. The recurrence is linear;
  the pointwise nonlinearity between layers is what lets a stack compute what one linear layer
  cannot (a product of two inputs, as the adding problem needs). Causal: y_t reads x_0..x_t."""
  kind: str  # lru | linear
  width: int
  num_layers: int
  num_outputs: int
  every_step: bool
  linear: cells.LinearOptions

  @nn.compact
  def __call__(self, x):  # (B, T, D)
    h = layers.dense(self.width)(x)
    for i in range(self.num_layers):
      p = self.param(f'recurrence_{i}', lambda key: lru.init(
          self.kind, key, self.width, self.width, self.width, r_min=self.linear.r_min,
          r_max=self.linear.r_max, max_phase=self.linear.max_phase))
      y, _ = lru.apply(p, jnp.swapaxes(layers.layer_norm()(h), 0, 1),
                       parallel=self.linear.parallel_scan)
      u = nn.gelu(jnp.swapaxes(y, 0, 1))
      h = h + layers.dense(self.width)(u) * jax.nn.sigmoid(layers.dense(self.width)(u))
    y = layers.dense(self.num_outputs)(h)
    return y if self.every_step else y[:, -1]


def linear_stack(cell_name: str, width: int, input_size: int, num_outputs: int,
                 every_step: bool, *, num_layers: int,
                 linear: cells.LinearOptions | None = None) -> Model:
  """A LinearRecurrentStack of `cell_name` (cells.LINEAR_CELLS); its input profile by one
  jax.grad (no product of per-step Jacobians: |lambda| <= r_max bounds how fast it falls)."""
  module = LinearRecurrentStack(cell_name, width, num_layers, num_outputs, every_step,
                                linear or cells.LinearOptions())
  return Model(lambda key: module.init(key, jnp.zeros((1, 2, input_size))), module.apply,
               _direct_input_profile(module.apply, every_step))


# ---- causal self-attention ----------------------------------------------------------------------

def attention(width: int, input_size: int, num_outputs: int, every_step: bool, *,
              num_heads: int, num_layers: int, mlp: bool = True) -> Model:
  """lib.nets.transformer's Transformer over vectors: a dense projection, sinusoidal positions,
  `num_layers` pre-LN causal blocks (a GELU MLP 2x wide, or attention alone where not `mlp`), a
  final LayerNorm, a dense readout."""
  transformer.check_width(width, num_heads, 'attention')
  module = transformer.Transformer(width, num_layers, num_outputs,
                                   transformer.BlockOptions(num_heads, mlp=mlp, mlp_ratio=2))
  apply = module.apply if every_step else lambda params, x: module.apply(params, x)[:, -1]
  return Model(lambda key: module.init(key, jnp.zeros((1, 2, input_size))), apply,
               _direct_input_profile(apply, every_step))


# 'transformer' is the name across experiments (lib.nets.language's language model is one too);
# 'attention', the name this model had first, stays an alias
ATTENTION_NAMES = ('transformer', 'attention')
SEQUENCE_MODELS = cells.CELL_NAMES + ATTENTION_NAMES


# ---- classifiers (MNIST-1D models of Greydanus & Kobak 2024) -------------------------------------

class PatchConv(nn.Module):
  """nn.Conv(features, (kernel,) * dims, strides=stride, padding=[(pad, pad)] * dims) with the
  same parameters ('kernel' (*window, C_in, C_out), 'bias'), computed as one matmul of the
  input's patches (im2col: a strided slice per window offset) by the flattened kernel.

  Why: XLA:CPU's convolution kernels are slow on these small strided convolutions; training
  the MNIST-1D CNN (25 channels, batch 100) ran 4.75 times faster this way (bench/run.py's
  cnn_train_vs_torch). The patches cost window-size times the input's memory, small here.
  """
  features: int
  kernel: int
  stride: int
  pad: int

  @nn.compact
  def __call__(self, x):  # (B, *spatial, C_in)
    dims = x.ndim - 2
    window = (self.kernel,) * dims
    kernel = self.param('kernel', KERNEL_INIT, window + (x.shape[-1], self.features), x.dtype)
    bias = self.param('bias', BIAS_INIT, (self.features,), x.dtype)
    x = jnp.pad(x, [(0, 0)] + [(self.pad, self.pad)] * dims + [(0, 0)])
    out = [(size - self.kernel) // self.stride + 1 for size in x.shape[1:-1]]
    patches = []
    for offset in np.ndindex(*window):  # row-major, as kernel.reshape flattens the window
      index = tuple(slice(o, o + self.stride * (n - 1) + 1, self.stride)
                    for o, n in zip(offset, out))
      patches.append(x[(slice(None),) + index])
    patches = jnp.stack(patches, axis=-2)  # (B, *out, window size, C_in)
    patches = patches.reshape(patches.shape[:-2] + (-1,))
    return patches @ kernel.reshape(-1, self.features) + bias


class ConvNet(nn.Module):
  """Three strided convolutions (kernel 5, 3, 3; stride 2; padding 1) with relu, then dense."""
  channels: int
  num_outputs: int

  @nn.compact
  def __call__(self, x):  # (B, *spatial, C)
    for i, kernel in enumerate((5, 3, 3)):  # named as nn.Conv would be: the same initial params
      x = nn.relu(PatchConv(self.channels, kernel, stride=2, pad=1, name=f'Conv_{i}')(x))
    return layers.dense(self.num_outputs)(x.reshape(x.shape[0], -1))


class ResidualMLP(nn.Module):
  """h = relu(W1 x); h = h + relu(W2 h); y = W3 h."""
  width: int
  num_outputs: int

  @nn.compact
  def __call__(self, x):
    h = nn.relu(layers.dense(self.width)(x.reshape(x.shape[0], -1)))
    h = h + nn.relu(layers.dense(self.width)(h))
    return layers.dense(self.num_outputs)(h)


class Logistic(nn.Module):
  num_outputs: int

  @nn.compact
  def __call__(self, x):
    return layers.dense(self.num_outputs)(x.reshape(x.shape[0], -1))


def _no_profile(params, x, u):
  """Classifiers have no input profile (it is a sequence models' measurement)."""
  raise NotImplementedError('input profiles are defined for sequence models')


def module_model(module: nn.Module, example_shape: tuple) -> Model:
  """A classifier of examples of example_shape (*spatial, C) from its Flax module."""
  return Model(lambda key: module.init(key, jnp.zeros((1,) + example_shape)), module.apply,
               _no_profile)


def recurrent_classifier(cell_name: str, hidden_size: int, example_shape: tuple,
                         num_outputs: int, *, bidirectional: bool,
                         cell_init: cells.CellInit = cells.CellInit(),
                         linear: cells.LinearOptions | None = None) -> Model:
  """Reads the input's positions as a sequence (pixels in raster order; channels are the input),
  one cell forwards and, if bidirectional, one backwards; a dense layer reads every output."""
  length, input_size = math.prod(example_shape[:-1]), example_shape[-1]
  cell = cells.make_cell(cell_name, hidden_size, linear=linear)
  readout = layers.dense(num_outputs)
  directions = 2 if bidirectional else 1

  def init_fn(key):
    return {'cells': [cells.init_params(cell_name, cell, jax.random.fold_in(key, d), input_size,
                                        **dataclasses.asdict(cell_init))
                      for d in range(directions)],
            'readout': readout.init(jax.random.fold_in(key, directions),
                                    jnp.zeros((1, directions * hidden_size * length)))}

  def apply(params, x):
    xs = jnp.swapaxes(x.reshape(x.shape[0], length, input_size), 0, 1)  # (T, B, D)
    carry0 = cells.zero_carry(cell, x.shape[0], input_size)
    outputs = []
    for d, cell_params in enumerate(params['cells']):
      states = cells.states(cell_name, cell, cell_params, carry0, xs if d == 0 else xs[::-1],
                            hoist=False)
      h = cells.output(cell_name, states)  # (T, B, N)
      outputs.append(h if d == 0 else h[::-1])
    h = jnp.concatenate(outputs, axis=-1)  # (T, B, directions * N)
    return readout.apply(params['readout'], jnp.swapaxes(h, 0, 1).reshape(x.shape[0], -1))

  return Model(init_fn, apply, _no_profile)


CLASSIFIERS = ('cnn', 'mlp', 'logistic') + cells.CELL_NAMES
