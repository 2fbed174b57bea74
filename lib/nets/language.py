"""Language models over token ids, as pure functions of a params pytree.

  recurrent (tanh, relu, lstm, gru: `lib.nets.cells`)  an embedding, `num_layers` stacked cells,
      a dense softmax readout at every step. apply(params, tokens (B, T), carry, key) ->
      (logits (B, T, V), carry after the last step): the state comes in and goes out, so that
      training carries it from one segment of a stream to the next (truncated BPTT).
  transformer  a token embedding, learned or sinusoidal positions, `num_layers` pre-LN blocks of
      causal multi-head attention and a GELU MLP (4x wide), a final layer norm and a dense
      readout over a window of at most `context_len` tokens. Its carry is () (it has none).

Initialisers (`init`):
  default  cells by their explicit rules (`lib.nets.cells`: sigma_w2, sigma_v2, sigma_b2,
           recurrent_init, gate_bias); the embedding N(0, 1) (so that a cell's input kernel,
           N(0, sigma_v2 / D), gives its pre-activations variance sigma_v2); dense and attention
           kernels LeCun normal (`lib.nets.models`), biases zero, layer norms one and zero;
           learned positions N(0, 0.02^2)
  uniform  every parameter U[-init_scale, init_scale] (Zaremba et al. 2014's recipe, biases
           and embedding included), for the recurrent models
Dropout (rate `dropout`, Zaremba's placement): on the embedding's output, between layers and
before the readout of a recurrent model, never on the recurrent connection; on each residual
branch and the embedding of the transformer. With key None, none (evaluation).
"""

from typing import Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lib.nets import cells
from lib.nets import models
from lib.runtime.errors import UserError

LM_INITS = ('default', 'uniform')
POSITIONS = ('learned', 'sinusoidal')
TRANSFORMER = 'transformer'
LM_MODELS = cells.CELL_NAMES + (TRANSFORMER,)


class LanguageModel(NamedTuple):
  init: Callable  # key -> params
  apply: Callable  # (params, tokens (B, T), carry, dropout key or None) -> (logits, carry)
  zero_carry: Callable  # batch size -> the carry before the first token (zeros)
  recurrent: bool  # whether the carry holds a state (else the context is the window)
  # recurrent models: params -> (embed: tokens (N, T) -> (T, N, E), step: (carry, e_t) -> carry
  # through every layer, log_prob: (carry, targets (N,)) -> (N,)): the model one token at a
  # time, for measurements through its steps (lib/measure/context.log_gradient_reach)
  reader: Optional[Callable] = None


def _dropout(x, rate: float, key):
  if key is None or rate == 0:
    return x
  keep = jax.random.bernoulli(key, 1 - rate, x.shape)
  return jnp.where(keep, x / (1 - rate), 0).astype(x.dtype)


def _uniform(params, key, scale: float):
  """Every leaf of `params` redrawn U[-scale, scale], one draw for all (one generator to
  compile)."""
  leaves, treedef = jax.tree.flatten(params)
  sizes = [leaf.size for leaf in leaves]
  flat = jax.random.uniform(key, (sum(sizes),), jnp.float32, -scale, scale)
  out, start = [], 0
  for leaf, size in zip(leaves, sizes):
    out.append(flat[start:start + size].reshape(leaf.shape).astype(leaf.dtype))
    start += size
  return jax.tree.unflatten(treedef, out)


def recurrent_lm(cell_name: str, vocab_size: int, *, embed_size: int, hidden_size: int,
                 num_layers: int, dropout: float = 0.0, init: str = 'default',
                 init_scale: float = 0.1, sigma_w2=1.0, sigma_v2=1.0, sigma_b2=0.0,
                 recurrent_init='gaussian', gate_bias=0.0, linear=None,
                 hoist: bool = True) -> LanguageModel:
  """hoist: each layer's input projection for the whole segment in one matmul before its scan
  (`lib.nets.cells.hoisted`), else the Flax cell's step as it is (the same to float rounding;
  bench/run.py's lm_hoisted_vs_cell times the two); a linear cell (`linear`: its ring and scan,
  `lib.nets.cells.LINEAR_DEFAULTS`) runs by lru's scan either way (`lib.nets.cells.states`)."""
  cells.check_cell_name(cell_name)
  cell = cells.make_cell(cell_name, hidden_size, linear=linear)
  readout = models._dense(vocab_size)  # pylint: disable=protected-access
  inputs = [embed_size] + [hidden_size] * (num_layers - 1)
  if cell_name == 'relu':  # the IRNN, as everywhere in the suite
    recurrent_init, sigma_w2, sigma_b2 = 'identity', 1.0, 0.0

  def init_fn(key):
    k = lambda i: jax.random.fold_in(key, i)
    params = {
        'embed': jax.random.normal(k(0), (vocab_size * embed_size,)).reshape(vocab_size,
                                                                             embed_size),
        'cells': [cells.init_params(cell_name, cell, k(2 + i), d, sigma_w2=sigma_w2,
                                    sigma_v2=sigma_v2, sigma_b2=sigma_b2,
                                    recurrent_init=recurrent_init, gate_bias=gate_bias)
                  for i, d in enumerate(inputs)],
        'readout': readout.init(k(1), jnp.zeros((1, hidden_size)))}
    return _uniform(params, k(num_layers + 2), init_scale) if init == 'uniform' else params

  def zero_carry(batch_size: int):
    return [cells.zero_carry(cell, batch_size, d) for d in inputs]

  def apply(params, tokens, carry, key=None):
    keys = [None] * (num_layers + 1) if key is None else list(
        jax.random.split(key, num_layers + 1))
    h = _dropout(params['embed'][tokens.T], dropout, keys[0])  # (T, B, D)
    new_carry = []
    for layer in range(num_layers):
      states = cells.states(cell_name, cell, params['cells'][layer], carry[layer], h, hoist)
      new_carry.append(jax.tree.map(lambda s: s[-1], states))
      h = _dropout(cells.output(cell_name, states), dropout, keys[layer + 1])
    return readout.apply(params['readout'], jnp.swapaxes(h, 0, 1)), new_carry  # (B, T, V)

  def reader(params):
    steps = [cells.step_of(cell, p) for p in params['cells']]

    def step(carry, e):
      new, h = [], e
      for layer_step, state in zip(steps, carry):
        state = layer_step(state, h)
        new.append(state)
        h = cells.output(cell_name, state)
      return new

    def log_prob(carry, targets):
      logits = readout.apply(params['readout'], cells.output(cell_name, carry[-1]))
      logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))  # float32 at least
      return jnp.take_along_axis(jax.nn.log_softmax(logits),
                                 targets[:, None], axis=-1)[:, 0]
    return (lambda tokens: params['embed'][tokens.T]), step, log_prob

  return LanguageModel(init_fn, apply, zero_carry, True, reader)


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


def transformer_lm(vocab_size: int, *, width: int, num_heads: int, num_layers: int,
                   context_len: int, positions: str = 'learned',
                   dropout: float = 0.0) -> LanguageModel:
  if width % num_heads or width % 2:
    raise UserError(f'transformer width {width} must be even and divisible by num_heads '
                    f'{num_heads}')
  if positions not in POSITIONS:
    raise UserError(f'unknown positions {positions!r}; valid choices: {", ".join(POSITIONS)}')
  module = _Transformer(vocab_size, width, num_heads, num_layers, context_len, positions,
                        dropout)

  def apply(params, tokens, carry, key=None, embed_delta=None):
    return module.apply(params, tokens, key, embed_delta), carry

  return LanguageModel(lambda key: module.init(key, jnp.zeros((1, 2), jnp.int32)), apply,
                       lambda batch_size: (), False)


def language_model(name: str, cfg: dict, vocab_size: int, context_len: int,
                   hoist: bool = True) -> LanguageModel:
  """Model `name` of LM_MODELS, configured by cfg (lib/experiments/language_model's keys), the
  transformer's window context_len; hoist: as recurrent_lm's."""
  if name == TRANSFORMER:
    return transformer_lm(vocab_size, width=cfg['hidden_size'], num_heads=cfg['num_heads'],
                          num_layers=cfg['num_layers'], context_len=context_len,
                          positions=cfg['positions'], dropout=cfg['dropout'])
  if name not in cells.CELLS:
    raise UserError(f'unknown model {name!r}; valid choices: {", ".join(LM_MODELS)}')
  return recurrent_lm(name, vocab_size, embed_size=cfg['embed_size'],
                      hidden_size=cfg['hidden_size'], num_layers=cfg['num_layers'],
                      dropout=cfg['dropout'], init=cfg['init'], init_scale=cfg['init_scale'],
                      sigma_w2=cfg['sigma_w2'], sigma_v2=cfg['sigma_v2'],
                      sigma_b2=cfg['sigma_b2'], recurrent_init=cfg['recurrent_init'],
                      gate_bias=cfg['gate_bias'], linear=cells.linear_options(cfg), hoist=hoist)
