"""The three transformers that lib/nets/transformer.py replaced, verbatim as they were before
the refactor (issue 30; commit 1536289), for tests/nets/test_transformer_reference.py to check the
one block against: the same parameters (paths and values) and the same outputs.

  CausalEncoder   lib/nets/models.py (long-range memory), with its helpers lecun_normal,
                  _dense, _layer_norm and sinusoidal_positions
  _Transformer    lib/nets/language.py (the language models), with its _dropout
  Block           lib/nets/transformer.py (transformers through depth), with kernel_init

Test-only: not imported by lib/. Do not edit: it is the record of what the models were.
"""

import math
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lib.runtime.errors import UserError


def lecun_normal(key, shape, dtype=jnp.float32):
  """nn.initializers.lecun_normal() to the bit (truncated normal, variance 1 / fan-in, fan-in
  the product of every axis but the last), drawn as one flat array and reshaped: each element of
  a draw comes from its index in the flattened shape, so the values are the same, and XLA:CPU
  compiles a flat draw several times faster than a shaped one (a (3, 3, 8, 16) normal: 0.33 s
  against 2.3 s; a model's initialisation 0.9-1.2 s against 2.0-2.4 s, measured)."""
  variance = jnp.array(1.0 / math.prod(shape[:-1]), dtype)
  stddev = jnp.sqrt(variance) / jnp.array(.87962566103423978, dtype)  # truncated to (-2, 2)
  return (jax.random.truncated_normal(key, -2, 2, (math.prod(shape),), dtype) * stddev).reshape(
      shape)


KERNEL_INIT = lecun_normal
BIAS_INIT = nn.initializers.zeros


def _dense(features: int) -> nn.Dense:
  return nn.Dense(features, kernel_init=KERNEL_INIT, bias_init=BIAS_INIT)


def _layer_norm() -> nn.LayerNorm:
  return nn.LayerNorm(scale_init=nn.initializers.ones, bias_init=nn.initializers.zeros)


def sinusoidal_positions(length: int, width: int) -> np.ndarray:
  """Vaswani et al. (2017) position encodings: sin/cos of t / 10000^(2i/width), (length, width)."""
  t = np.arange(length)[:, None]
  freq = np.exp(-np.log(10000.0) * np.arange(0, width, 2) / width)
  enc = np.zeros((length, width), np.float32)
  enc[:, 0::2] = np.sin(t * freq)
  enc[:, 1::2] = np.cos(t * freq)[:, :width // 2]
  return enc


class CausalEncoder(nn.Module):
  """Pre-norm transformer encoder with a causal mask: y_t depends on x_0..x_t only."""
  width: int
  num_heads: int
  num_layers: int
  num_outputs: int
  every_step: bool

  @nn.compact
  def __call__(self, x):  # (B, T, D)
    h = _dense(self.width)(x) + sinusoidal_positions(x.shape[1], self.width)
    mask = nn.make_causal_mask(jnp.ones(x.shape[:2]))
    for _ in range(self.num_layers):
      h = h + nn.MultiHeadDotProductAttention(
          self.num_heads, kernel_init=KERNEL_INIT, bias_init=BIAS_INIT)(_layer_norm()(h),
                                                                         mask=mask)
      h = h + _dense(self.width)(nn.gelu(_dense(2 * self.width)(_layer_norm()(h))))
    y = _dense(self.num_outputs)(_layer_norm()(h))
    return y if self.every_step else y[:, -1]


# lib/nets/language.py reached these through `from lib.nets import models`
models = types.SimpleNamespace(KERNEL_INIT=KERNEL_INIT, BIAS_INIT=BIAS_INIT, _dense=_dense,
                               _layer_norm=_layer_norm, sinusoidal_positions=sinusoidal_positions)


def _dropout(x, rate: float, key):
  if key is None or rate == 0:
    return x
  keep = jax.random.bernoulli(key, 1 - rate, x.shape)
  return jnp.where(keep, x / (1 - rate), 0).astype(x.dtype)


class _Transformer(nn.Module):
  vocab_size: int
  width: int
  num_heads: int
  num_layers: int
  context_len: int
  positions: str
  dropout: float

  @nn.compact
  def __call__(self, tokens, key=None, embed_delta=None):  # (B, T), T <= context_len
    length = tokens.shape[1]
    keys = [None] * (2 * self.num_layers + 1) if key is None else list(
        jax.random.split(key, 2 * self.num_layers + 1))
    h = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(1.0))(tokens)
    if embed_delta is not None:  # (B, T, width) added to the embeddings: d/d e_t is d/d delta_t
      h = h + embed_delta
    if self.positions == 'learned':
      h = h + self.param('positions', nn.initializers.normal(0.02),
                         (self.context_len, self.width))[:length]
    else:
      h = h + models.sinusoidal_positions(self.context_len, self.width)[:length]
    h = _dropout(h, self.dropout, keys[0])
    mask = nn.make_causal_mask(jnp.ones(tokens.shape))
    for i in range(self.num_layers):
      a = nn.MultiHeadDotProductAttention(
          self.num_heads, kernel_init=models.KERNEL_INIT, bias_init=models.BIAS_INIT)(
              models._layer_norm()(h), mask=mask)  # pylint: disable=protected-access
      h = h + _dropout(a, self.dropout, keys[2 * i + 1])
      m = models._dense(self.width)(nn.gelu(models._dense(4 * self.width)(  # pylint: disable=protected-access
          models._layer_norm()(h))))  # pylint: disable=protected-access
      h = h + _dropout(m, self.dropout, keys[2 * i + 2])
    return models._dense(self.vocab_size)(models._layer_norm()(h))  # pylint: disable=protected-access


INITS = ('gaussian', 'xavier')
ACTIVATIONS = {'relu': nn.relu, 'gelu': nn.gelu, 'tanh': jnp.tanh}
LN_EPSILON = 1e-6


def kernel_init(init: str, sigma_w2: float):
  if init not in INITS:
    raise UserError(f'unknown transformer init {init!r}; valid choices: {", ".join(INITS)}')
  mode = 'fan_in' if init == 'gaussian' else 'fan_avg'  # fan_avg: 2 / (fan_in + fan_out)
  return nn.initializers.variance_scaling(sigma_w2, mode, 'normal')


class Block(nn.Module):
  """One encoder block of a variant (module docstring); __call__(x (B, T, d), alpha)."""
  width: int
  num_heads: int
  norm: str
  skip: bool
  mlp: bool
  causal: bool = False
  activation: str = 'relu'
  initializer: str = 'gaussian'  # `init` would shadow Module.init
  sigma_w2: float = 1.0
  dtype: object = jnp.float32

  def _dense(self, features: int, name: str) -> nn.Dense:
    return nn.Dense(features, use_bias=False,
                    kernel_init=kernel_init(self.initializer, self.sigma_w2), dtype=self.dtype,
                    param_dtype=self.dtype, name=name)

  def _attention(self, x):
    batch, length, _ = x.shape
    heads, head_width = self.num_heads, self.width // self.num_heads
    split = lambda y: y.reshape(batch, length, heads, head_width)
    q, k, v = (split(self._dense(self.width, n)(x)) for n in ('query', 'key', 'value'))
    logits = jnp.einsum('bqhc,bkhc->bhqk', q, k) / jnp.sqrt(jnp.asarray(head_width, self.dtype))
    if self.causal:
      mask = jnp.tril(jnp.ones((length, length), bool))
      logits = jnp.where(mask, logits, jnp.finfo(self.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum('bhqk,bkhc->bqhc', weights, v).reshape(batch, length, self.width)
    return self._dense(self.width, 'out')(out)

  def _mlp(self, x):
    hidden = ACTIVATIONS[self.activation](self._dense(4 * self.width, 'mlp_in')(x))
    return self._dense(self.width, 'mlp_out')(hidden)

  def _sublayer(self, x, f, name: str, alpha):
    norm = lambda y: nn.LayerNorm(epsilon=LN_EPSILON, dtype=self.dtype, param_dtype=self.dtype,
                                  name=f'ln_{name}')(y)
    if self.norm == 'pre_ln':
      y = alpha * f(norm(x))
      return x + y if self.skip else y
    y = alpha * f(x)
    z = x + y if self.skip else y
    return norm(z) if self.norm == 'post_ln' else z

  @nn.compact
  def __call__(self, x, alpha):
    x = self._sublayer(x, self._attention, 'attention', alpha)
    if self.mlp:
      x = self._sublayer(x, self._mlp, 'mlp', alpha)
    return x
