"""Language models over token ids, as pure functions of a params pytree.

  recurrent (a cell of `lib.nets.cells`)  an embedding, `num_layers` stacked cells,
      a dense softmax readout at every step. apply(params, tokens (B, T), carry, key) ->
      (logits (B, T, V), carry after the last step): the state comes in and goes out, so that
      training carries it from one segment of a stream to the next (truncated BPTT).
  transformer  lib.nets.transformer's Transformer over token ids: an embedding, learned or
      sinusoidal positions, `num_layers` pre-LN blocks of causal multi-head attention and a GELU
      MLP (4x wide), a final layer norm and a dense readout over a window of at most
      `context_len` tokens. Its carry is () (it has none).

Initialisers (`init`):
  default  cells by their explicit rules (`lib.nets.cells.CellInit`: sigma_w2, sigma_v2,
           sigma_b2, recurrent_init, gate_bias); the embedding N(0, 1) (so that a cell's input
           kernel, N(0, sigma_v2 / D), gives its pre-activations variance sigma_v2); dense and
           attention kernels LeCun normal (`lib.nets.layers`), biases zero, layer norms one and
           zero; learned positions N(0, 0.02^2)
  uniform  every parameter U[-init_scale, init_scale] (Zaremba et al. 2014's recipe, biases
           and embedding included), for the recurrent models
Dropout (rate `dropout`, Zaremba's placement): on the embedding's output, between layers and
before the readout of a recurrent model, never on the recurrent connection; on each residual
branch and the embedding of the transformer. With key None, none (evaluation).
"""

import dataclasses
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from lib.nets import cells
from lib.nets import layers
from lib.nets import losses
from lib.nets import transformer
from lib.runtime.errors import UserError

LM_INITS = ('default', 'uniform')
POSITIONS = transformer.POSITIONS
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
                 init_scale: float = 0.1, cell_init: cells.CellInit = cells.CellInit(),
                 linear: cells.LinearOptions | None = None,
                 hoist: bool = True) -> LanguageModel:
  """hoist: each layer's input projection for the whole segment in one matmul before its scan
  (`lib.nets.cells.hoisted`), else the Flax cell's step as it is (the same to float rounding;
  bench/run.py's lm_hoisted_vs_cell times the two); a linear cell (`linear`: its ring and scan,
  `lib.nets.cells.LinearOptions`) runs by lru's scan either way (`lib.nets.cells.states`)."""
  cells.check_cell_name(cell_name)
  cell = cells.make_cell(cell_name, hidden_size, linear=linear)
  readout = layers.dense(vocab_size)
  inputs = [embed_size] + [hidden_size] * (num_layers - 1)

  def init_fn(key):
    k = lambda i: jax.random.fold_in(key, i)
    params = {
        'embed': jax.random.normal(k(0), (vocab_size * embed_size,)).reshape(vocab_size,
                                                                             embed_size),
        'cells': [cells.init_params(cell_name, cell, k(2 + i), d,
                                    **dataclasses.asdict(cell_init))
                  for i, d in enumerate(inputs)],
        'readout': readout.init(k(1), jnp.zeros((1, hidden_size)))}
    return _uniform(params, k(num_layers + 2), init_scale) if init == 'uniform' else params

  def zero_carry(batch_size: int):
    return [cells.zero_carry(cell, batch_size, d) for d in inputs]

  def apply(params, tokens, carry, key=None):
    keys = [None] * (num_layers + 1) if key is None else list(
        jax.random.split(key, num_layers + 1))
    h = layers.dropout(params['embed'][tokens.T], dropout, keys[0])  # (T, B, D)
    new_carry = []
    for layer in range(num_layers):
      states = cells.states(cell_name, cell, params['cells'][layer], carry[layer], h, hoist)
      new_carry.append(jax.tree.map(lambda s: s[-1], states))
      h = layers.dropout(cells.output(cell_name, states), dropout, keys[layer + 1])
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
      return -losses.cross_entropy(logits, targets)  # float32 at least
    return (lambda tokens: params['embed'][tokens.T]), step, log_prob

  return LanguageModel(init_fn, apply, zero_carry, True, reader)


def transformer_lm(vocab_size: int, *, width: int, num_heads: int, num_layers: int,
                   context_len: int, positions: str = 'learned',
                   dropout: float = 0.0) -> LanguageModel:
  """apply(params, tokens, carry, key=None, embed_delta=None): embed_delta (B, T, width) is
  added to the embeddings (lib.nets.transformer.Transformer)."""
  transformer.check_width(width, num_heads)
  if positions not in POSITIONS:
    raise UserError(f'unknown positions {positions!r}; valid choices: {", ".join(POSITIONS)}')
  module = transformer.Transformer(
      width, num_layers, vocab_size, transformer.BlockOptions(num_heads, dropout=dropout),
      vocab_size=vocab_size, positions=positions, context_len=context_len)

  def apply(params, tokens, carry, key=None, embed_delta=None):
    return module.apply(params, tokens, key, embed_delta), carry

  return LanguageModel(lambda key: module.init(key, jnp.zeros((1, 2), jnp.int32)), apply,
                       lambda batch_size: (), False)


# the parameters that map tokens and positions in and out (`non_embedding_params` leaves them out)
_EMBEDDING = ('embed', 'Embed_0', 'positions', 'readout')


def non_embedding_params(params) -> int:
  """The parameters of a language model's params that neither embed tokens nor read them out:
  all but the token embedding, the learned positions and the readout (Kaplan et al. 2020's
  count, which leaves out every vocabulary and positional embedding). The transformer's readout
  is its last Dense layer (Flax numbers them in the order they are made)."""
  paths = jax.tree_util.tree_flatten_with_path(params)[0]
  names = [[getattr(k, 'key', getattr(k, 'name', None)) for k in path] for path, _ in paths]
  dense = [int(n[6:]) for ns in names for n in ns
           if isinstance(n, str) and n.startswith('Dense_') and n[6:].isdigit()]
  readout = f'Dense_{max(dense)}' if dense else 'readout'
  return sum(int(leaf.size) for ns, (_, leaf) in zip(names, paths)
             if not any(n in _EMBEDDING or n == readout for n in ns))


def state_size(name: str, model: LanguageModel, params, context_len: int) -> int:
  """The numbers model `name` holds about the past when it predicts a token: a recurrent
  model's carry over its layers, less a linear cell's output (which its recurrence does not
  read; the LRU's complex state counts 2 numbers a unit); the transformer's keys and values, 2
  width numbers per position of its window and per block."""
  if model.recurrent:
    carry = jax.eval_shape(lambda: model.zero_carry(1))
    return sum(leaf.size for leaf in jax.tree.leaves(
        [cells.feedback_state(name, layer) for layer in carry]))
  kernels = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
             if 'key' in [getattr(k, 'key', None) for k in path] and path[-1].key == 'kernel']
  return 2 * context_len * sum(int(k.shape[1] * k.shape[2]) for k in kernels)
