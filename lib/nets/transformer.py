"""Transformer encoder blocks for studies of depth, as pure functions of a stacked parameter
pytree (the layers' parameters on a leading axis, like `lib.nets.cnn`), so that the network is a
recurrence over depth that `lib.measure.gradients` measures as it measures an RNN over time.

A block maps the tokens X (B, T, d) through two sublayers, attention f = Attn and, if `mlp`, the
MLP f = act(. W1) W2 of width 4d, each wrapped by the variant's normalisation and skip:

    post_ln  X <- LN(X + alpha f(X))        (skip) | LN(alpha f(X))       (no skip)
    pre_ln   X <- X + alpha f(LN(X))        (skip) | alpha f(LN(X))       (no skip)
    none     X <- X + alpha f(X)            (skip) | alpha f(X)           (no skip)

Attn(X) = concat_h softmax(Q_h K_h^T / sqrt(d/H) [+ causal mask]) V_h  W_O with Q = X W_Q,
K = X W_K, V = X W_V (d x d each, heads the d/H-wide column blocks). The network's output is
LN(X_L) for pre_ln (Xiong et al. 2020's final LayerNorm) and X_L otherwise. Kernels carry no
bias; LayerNorms have a unit scale and a zero offset (parameters, epsilon `LN_EPSILON`).

Initializers, explicit (no Flax default): `gaussian` W ~ N(0, sigma_w2 / fan_in), `xavier`
W ~ N(0, 2 sigma_w2 / (fan_in + fan_out)) (Glorot's normal, untruncated).

A variant is named `<norm>[+noskip][+nomlp][+scaled | +alpha=<a>]`: e.g. `pre_ln`,
`post_ln+scaled` (alpha = 1/sqrt(L), L the number of blocks), `none+noskip+nomlp` (pure
attention, Dong et al. 2021).
"""

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lib.runtime.errors import UserError

NORMS = ('post_ln', 'pre_ln', 'none')
INITS = ('gaussian', 'xavier')
ACTIVATIONS = {'relu': nn.relu, 'gelu': nn.gelu, 'tanh': jnp.tanh}
LN_EPSILON = 1e-6
SCALED = '1/sqrt(L)'


class Variant(NamedTuple):
  """One architecture: the normalisation, the skips, the MLP, and the residual scale rule
  (a number, or `SCALED` for 1/sqrt(depth))."""
  name: str
  norm: str
  skip: bool
  mlp: bool
  residual_scale: object  # float | SCALED

  def alpha(self, depth: int) -> float:
    return 1.0 / math.sqrt(depth) if self.residual_scale == SCALED else float(self.residual_scale)


def parse_variant(name: str) -> Variant:
  """The variant a name spells (see the module docstring), or a one-line UserError."""
  norm, *modifiers = str(name).split('+')
  valid = (f'valid: <norm>[+noskip][+nomlp][+scaled | +alpha=<a>] with norm one of '
           f'{", ".join(NORMS)}, e.g. pre_ln, post_ln+scaled, none+noskip+nomlp')
  if norm not in NORMS:
    raise UserError(f'unknown transformer variant {name!r} (norm {norm!r}); {valid}')
  skip, mlp, scale = True, True, None
  for modifier in modifiers:
    if modifier == 'noskip' and skip:
      skip = False
    elif modifier == 'nomlp' and mlp:
      mlp = False
    elif modifier == 'scaled' and scale is None:
      scale = SCALED
    elif modifier.startswith('alpha=') and scale is None:
      try:
        scale = float(modifier[len('alpha='):])
      except ValueError:
        scale = float('nan')
      if not (math.isfinite(scale) and scale > 0):
        raise UserError(f'transformer variant {name!r}: {modifier!r} needs a positive number')
    else:
      raise UserError(f'transformer variant {name!r}: modifier {modifier!r} unknown or repeated; '
                      f'{valid}')
  return Variant(str(name), norm, skip, mlp, 1.0 if scale is None else scale)


def check_sizes(width: int, num_heads: int, seq_len: int) -> None:
  if width < 1 or num_heads < 1 or width % num_heads:
    raise UserError(f'transformer width {width} must be a positive multiple of num_heads '
                    f'{num_heads}')
  if seq_len < 2:
    raise UserError(f'seq_len {seq_len}: the token measures need at least 2 tokens')


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


def block(variant: Variant, width: int, num_heads: int, *, causal: bool = False,
          activation: str = 'relu', init: str = 'gaussian', sigma_w2: float = 1.0,
          dtype=jnp.float32) -> Block:
  if activation not in ACTIVATIONS:
    raise UserError(f'unknown activation {activation!r}; valid choices: '
                    f'{", ".join(ACTIVATIONS)}')
  kernel_init(init, sigma_w2)  # checks the name
  return Block(width, num_heads, variant.norm, variant.skip, variant.mlp, causal, activation, init,
               sigma_w2, dtype)


def init_params(key, module: Block, depth: int, seq_len: int) -> dict:
  """Stacked parameters of `depth` blocks, each leaf (L, ...), block b from fold_in(key, b)."""
  x = jnp.zeros((1, seq_len, module.width), module.dtype)
  keys = jax.vmap(lambda l: jax.random.fold_in(key, l))(jnp.arange(depth))
  return jax.vmap(lambda k: module.init(k, x, 1.0)['params'])(keys)


def step(module: Block, alpha):
  """step(X_{l-1}, block l's params) -> X_l: the recurrence over depth."""
  return lambda x, params: module.apply({'params': params}, x, alpha)


def output(variant: Variant, dtype=jnp.float32):
  """The network's output from X_L: LN(X_L) (unit scale, zero offset) for pre_ln, else X_L."""
  if variant.norm != 'pre_ln':
    return lambda x: x
  final = nn.LayerNorm(epsilon=LN_EPSILON, use_scale=False, use_bias=False, dtype=dtype,
                       param_dtype=dtype)
  return lambda x: final.apply({}, x)


def apply(module: Block, variant: Variant, params: dict, x, depth: int):
  """The network's output for tokens x (B, T, d): every block in turn, then `output`."""
  body = step(module, variant.alpha(depth))
  x, _ = jax.lax.scan(lambda h, p: (body(h, p), None), x, params)
  return output(variant, module.dtype)(x)
