"""The transformer: one encoder block (`encoder_block`), and the two networks built of it.

A block maps the tokens X (B, T, d) through two sublayers, attention f = Attn and, if `mlp`, the
MLP f = act(. W1) W2 of width `mlp_ratio` d, each wrapped by the block's normalisation and skip
(`BlockOptions`), its branch dropped out in training:

    post_ln  X <- LN(X + alpha f(X))        (skip) | LN(alpha f(X))       (no skip)
    pre_ln   X <- X + alpha f(LN(X))        (skip) | alpha f(LN(X))       (no skip)
    none     X <- X + alpha f(X)            (skip) | alpha f(X)           (no skip)

Attn(X) = concat_h softmax(Q_h K_h^T / sqrt(d/H) [+ causal mask]) V_h W_O with Q = X W_Q,
K = X W_K, V = X W_V (heads the d/H-wide column blocks). LayerNorms have a unit scale and a zero
offset (parameters, epsilon `LN_EPSILON`).

The block makes its layers in the calling Flax module's scope, from one of two sets. A Flax
parameter's initial draw depends on its path, so each set keeps its layout and its arithmetic:
  FlaxLayers   the trained transformers': Flax's MultiHeadDotProductAttention (Q, K, V, O with
               biases; Q scaled by 1/sqrt(d/H) before Q K^T), dense layers with biases, LeCun
               normal kernels and zero biases (lib/nets/layers), named by Flax in the order they
               are made (MultiHeadDotProductAttention_0, LayerNorm_0, Dense_0, ...)
  PlainLayers  the depth study's: bias-free kernels named query, key, value, out (d x d),
               mlp_in, mlp_out, layer norms ln_attention and ln_mlp, Q K^T scaled after the
               product; kernels `gaussian` W ~ N(0, sigma_w2 / fan_in) or `xavier`
               W ~ N(0, 2 sigma_w2 / (fan_in + fan_out)) (Glorot's normal, untruncated)

The networks:
  Transformer  the trained one (lib.nets.models' attention, lib.nets.language's transformer):
               token ids embedded (nn.Embed, N(0, 1)) or vectors projected (a dense layer), an
               optional perturbation of the embeddings, positions (learned N(0, 0.02^2), or
               sinusoidal), dropout, `num_layers` blocks of FlaxLayers, a final LayerNorm and a
               dense readout at every position.
  Block        one block of PlainLayers, stacked over depth (transformers through depth):
               `init_params` puts the blocks' parameters on a leading axis (like lib.nets.cnn),
               so that the network is a recurrence over depth that lib.measure.gradients
               measures as it measures an RNN over time. Its output is LN(X_L) for pre_ln
               (Xiong et al. 2020's final LayerNorm) and X_L otherwise.

A depth variant is named `<norm>[+noskip][+nomlp][+scaled | +alpha=<a>]`: e.g. `pre_ln`,
`post_ln+scaled` (alpha = 1/sqrt(L), L the number of blocks), `none+noskip+nomlp` (pure
attention, Dong et al. 2021).
"""

import dataclasses
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lib.nets import layers
from lib.runtime.errors import UserError

NORMS = ('post_ln', 'pre_ln', 'none')
INITS = ('gaussian', 'xavier')
ACTIVATIONS = {'relu': nn.relu, 'gelu': nn.gelu, 'tanh': jnp.tanh}
POSITIONS = ('learned', 'sinusoidal')
LN_EPSILON = 1e-6
SCALED = '1/sqrt(L)'


# ---- the block ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BlockOptions:
  """What a block computes (module docstring); its layers come from FlaxLayers or PlainLayers."""
  num_heads: int
  norm: str = 'pre_ln'  # NORMS
  skip: bool = True
  mlp: bool = True
  mlp_ratio: int = 4  # the MLP's hidden width, in units of d
  activation: str = 'gelu'  # the MLP's (ACTIVATIONS)
  causal: bool = True  # y_t reads x_0..x_t only
  dropout: float = 0.0  # the rate on each branch, where the block is given keys


class FlaxLayers(NamedTuple):
  """The trained transformers' layers (module docstring). Named by Flax in the order they are
  made; `encoder_block` makes them in the order these models always have (an MLP's output layer
  before its input layer), so that their parameters keep their paths, and their draws."""
  mask: Any = None  # the attention mask of the stack's inputs (nn.make_causal_mask), or None

  def dense(self, features: int, name: str) -> nn.Dense:
    del name  # Flax's: Dense_<n>
    return layers.dense(features)

  def norm(self, name: str) -> nn.LayerNorm:
    del name  # Flax's: LayerNorm_<n>
    return layers.layer_norm()

  def attention(self, x, options: BlockOptions):
    return nn.MultiHeadDotProductAttention(options.num_heads, kernel_init=layers.KERNEL_INIT,
                                           bias_init=layers.BIAS_INIT)(x, mask=self.mask)


def kernel_init(init: str, sigma_w2: float):
  if init not in INITS:
    raise UserError(f'unknown transformer init {init!r}; valid choices: {", ".join(INITS)}')
  mode = 'fan_in' if init == 'gaussian' else 'fan_avg'  # fan_avg: 2 / (fan_in + fan_out)
  return nn.initializers.variance_scaling(sigma_w2, mode, 'normal')


@dataclasses.dataclass(frozen=True)
class PlainLayers:
  """The depth study's layers (module docstring), each named."""
  init: str = 'gaussian'  # INITS
  sigma_w2: float = 1.0
  dtype: Any = jnp.float32

  def dense(self, features: int, name: str) -> nn.Dense:
    return nn.Dense(features, use_bias=False, kernel_init=kernel_init(self.init, self.sigma_w2),
                    dtype=self.dtype, param_dtype=self.dtype, name=name)

  def norm(self, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=LN_EPSILON, dtype=self.dtype, param_dtype=self.dtype, name=name)

  def attention(self, x, options: BlockOptions):
    batch, length, width = x.shape
    heads, head_width = options.num_heads, width // options.num_heads
    split = lambda y: y.reshape(batch, length, heads, head_width)
    q, k, v = (split(self.dense(width, n)(x)) for n in ('query', 'key', 'value'))
    logits = jnp.einsum('bqhc,bkhc->bhqk', q, k) / jnp.sqrt(jnp.asarray(head_width, self.dtype))
    if options.causal:
      mask = jnp.tril(jnp.ones((length, length), bool))
      logits = jnp.where(mask, logits, jnp.finfo(self.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum('bhqk,bkhc->bqhc', weights, v).reshape(batch, length, width)
    return self.dense(width, 'out')(out)


def encoder_block(x, options: BlockOptions, make, alpha=None, keys=(None, None)):
  """One block (module docstring) on x (B, T, d), its layers from `make` (FlaxLayers or
  PlainLayers) made in the scope of the Flax module whose compact method calls it: their
  parameters are that module's, at the paths their names give. alpha scales each branch (None:
  unscaled); keys: dropout's on the attention and the MLP branch (None: none)."""
  x = _sublayer(x, lambda y: make.attention(y, options), make, 'attention', options, alpha,
                keys[0])
  if options.mlp:
    x = _sublayer(x, lambda y: _mlp(y, options, make), make, 'mlp', options, alpha, keys[1])
  return x


def _mlp(x, options: BlockOptions, make):
  width = x.shape[-1]
  out = make.dense(width, 'mlp_out')  # made before mlp_in: FlaxLayers' names (Dense_<n>)
  return out(ACTIVATIONS[options.activation](make.dense(options.mlp_ratio * width, 'mlp_in')(x)))


def _sublayer(x, f, make, name: str, options: BlockOptions, alpha, key):
  """x through the branch f, wrapped by the options' normalisation and skip."""
  norm = lambda y: make.norm(f'ln_{name}')(y)
  branch = lambda y: layers.dropout(f(y) if alpha is None else alpha * f(y), options.dropout, key)
  if options.norm == 'pre_ln':
    y = branch(norm(x))
    return x + y if options.skip else y
  y = branch(x)
  z = x + y if options.skip else y
  return norm(z) if options.norm == 'post_ln' else z


# ---- the trained transformer -------------------------------------------------------------------

def sinusoidal_positions(length: int, width: int) -> np.ndarray:
  """Vaswani et al. (2017) position encodings: sin/cos of t / 10000^(2i/width), (length, width)."""
  t = np.arange(length)[:, None]
  freq = np.exp(-np.log(10000.0) * np.arange(0, width, 2) / width)
  enc = np.zeros((length, width), np.float32)
  enc[:, 0::2] = np.sin(t * freq)
  enc[:, 1::2] = np.cos(t * freq)[:, :width // 2]
  return enc


def check_width(width: int, num_heads: int, what: str = 'transformer') -> None:
  if width % num_heads or width % 2:
    raise UserError(f'{what} width {width} must be even and divisible by num_heads {num_heads}')


class Transformer(nn.Module):
  """The trained transformer (module docstring): inputs (B, T) token ids where vocab_size, else
  (B, T, D) vectors; outputs (B, T, num_outputs), y_t reading x_0..x_t where block.causal."""
  width: int
  num_layers: int
  num_outputs: int
  block: BlockOptions
  vocab_size: int = 0  # > 0: token ids in, embedded; 0: vectors in, projected
  positions: str = 'sinusoidal'  # POSITIONS
  context_len: int = 0  # the rows of learned positions: the longest input

  @nn.compact
  def __call__(self, inputs, key=None, embed_delta=None):
    """key: dropout's (None: none); embed_delta (B, T, width) is added to the embeddings, so
    that d/d e_t is d/d delta_t."""
    length, depth = inputs.shape[1], self.num_layers
    keys = [None] * (2 * depth + 1) if key is None else list(
        jax.random.split(key, 2 * depth + 1))
    if self.vocab_size:
      h = nn.Embed(self.vocab_size, self.width,
                   embedding_init=nn.initializers.normal(1.0))(inputs)
    else:
      h = layers.dense(self.width)(inputs)
    if embed_delta is not None:
      h = h + embed_delta
    if self.positions == 'learned':
      h = h + self.param('positions', nn.initializers.normal(0.02),
                         (self.context_len, self.width))[:length]
    else:
      h = h + sinusoidal_positions(length, self.width)
    h = layers.dropout(h, self.block.dropout, keys[0])
    make = FlaxLayers(nn.make_causal_mask(jnp.ones(inputs.shape[:2])) if self.block.causal
                      else None)
    for i in range(depth):
      h = encoder_block(h, self.block, make, keys=keys[2 * i + 1:2 * i + 3])
    return layers.dense(self.num_outputs)(layers.layer_norm()(h))


# ---- blocks stacked over depth -----------------------------------------------------------------

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


class Block(nn.Module):
  """One block of PlainLayers (module docstring), its MLP 4 d wide; __call__(x (B, T, d),
  alpha)."""
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

  @nn.compact
  def __call__(self, x, alpha):
    options = BlockOptions(self.num_heads, self.norm, self.skip, self.mlp,
                           activation=self.activation, causal=self.causal)
    return encoder_block(x, options, PlainLayers(self.initializer, self.sigma_w2, self.dtype),
                         alpha)


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
