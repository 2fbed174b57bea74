"""Plain deep CNNs as pure functions of a stacked parameter pytree.

Layer l = 1..L maps h_{l-1} -> h_l = phi(conv(h_{l-1}; K_l) + b_l), every layer a Flax linen Conv
of C -> C channels with circular padding (so a layer sees no edge, and a delta-orthogonal layer is
exactly norm-preserving), over an input h_0 = x of shape (B, *spatial, C). The layers' parameters
are stacked on a leading axis, {'kernel': (L, k, ..., C, C), 'bias': (L, C)}, so the network is a
recurrence over depth: `lib.measure.gradients` measures it exactly as it measures an RNN over time.

Initializers: `gaussian` K ~ N(0, sigma_w2 / fan_in), fan_in = k^d C; `delta_orthogonal`
(Xiao et al. 2018, jax.nn.initializers.delta_orthogonal) every tap zero but the centre one, an
orthogonal C x C matrix scaled by sqrt(sigma_w2). Biases b ~ N(0, sigma_b2).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from lib.nets.cells import standard_normals
from lib.runtime import devices
from lib.runtime.errors import UserError

CNN_INITS = ('gaussian', 'delta_orthogonal')
ACTIVATIONS = {'tanh': jnp.tanh, 'relu': nn.relu}


def check_init(init: str) -> None:
  if init not in CNN_INITS:
    raise UserError(f'unknown CNN init {init!r}; valid choices: {", ".join(CNN_INITS)}')


def make_layer(width: int, kernel_size: int, spatial_dims: int, dtype=jnp.float32) -> nn.Conv:
  """One C -> C convolution with circular padding."""
  return nn.Conv(width, (kernel_size,) * spatial_dims, padding='CIRCULAR', dtype=dtype,
                 param_dtype=dtype)


def init_params(key, depth: int, width: int, kernel_size: int, spatial_dims: int, *, sigma_w2,
                sigma_b2, init: str, dtype=jnp.float32) -> dict:
  """Stacked parameters of `depth` layers: {'kernel': (L, k, ..., C, C), 'bias': (L, C)}."""
  check_init(init)
  shape = (kernel_size,) * spatial_dims + (width, width)
  k_kernel, k_bias = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
  (bias,) = standard_normals(k_bias, [(depth, width)], dtype)
  if init == 'gaussian':
    (kernel,) = standard_normals(k_kernel, [(depth,) + shape], dtype)
    kernel = jnp.sqrt(sigma_w2 / (math.prod(shape[:-1]))) * kernel
  else:
    orthogonal = jax.nn.initializers.delta_orthogonal()
    # a QR per layer, one at a time: batched, jaxlib's CPU QR can deadlock (lib/runtime/devices)
    kernel = jnp.sqrt(sigma_w2) * jax.vmap(devices.one_at_a_time(
        lambda k: orthogonal(k, shape, dtype)))(jax.random.split(k_kernel, depth))
  return {'kernel': kernel.astype(dtype), 'bias': (jnp.sqrt(sigma_b2) * bias).astype(dtype)}


def layer_step(layer: nn.Conv, activation: str):
  """step(h_{l-1}, layer l's params) -> h_l: the recurrence over depth."""
  phi = ACTIVATIONS[activation]
  return lambda h, params: phi(layer.apply({'params': params}, h))
