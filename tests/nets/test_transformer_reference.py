"""The one transformer (lib/nets/transformer) against the three it replaced, kept verbatim in
tests/nets/reference_transformers.py: long-range memory's encoder (lib.nets.models.attention),
the language models' transformer (lib.nets.language.transformer_lm) and the depth study's block
(lib.nets.transformer.block), at tiny sizes, with every option the experiments use.

Each gives the same program as before: its init and its apply trace to the same jaxpr, with the
same constants, as the reference's. The same program on the same inputs computes the same
numbers, bit for bit; so the initial parameters are the same (the same tree: the outputs'
structure is compared too; the same values: Flax draws a parameter from the key folded with its
path, and the folds are the jaxpr's literals), and so are the outputs from any parameters,
dropout keys and embedding perturbations. No experiment's record can move. Tracing is all it
costs: nothing compiles (compiling the same comparison of values took 15 s)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.nets import language
from lib.nets import models
from lib.nets import transformer
from tests.nets import reference_transformers as reference

VOCAB, WIDTH, HEADS, LENGTH, BATCH = 11, 8, 2, 5, 2
_RNG = np.random.default_rng(0)
VECTORS = _RNG.standard_normal((BATCH, LENGTH, 3)).astype(np.float32)
TOKENS = _RNG.integers(0, VOCAB, (BATCH, LENGTH)).astype(np.int32)
DELTA = _RNG.standard_normal((BATCH, LENGTH, WIDTH)).astype(np.float32)


def _memory(every_step: bool, num_layers: int):
  """(reference init, reference apply, our init, our apply), as the models' init reads."""
  ref = reference.CausalEncoder(WIDTH, HEADS, num_layers, 3, every_step)
  # every_step only slices the output; the parameters are made before it, as the every-step
  # model's, which traces to our init (whose output is never sliced)
  ref_init = reference.CausalEncoder(WIDTH, HEADS, num_layers, 3, True)
  ours = models.attention(WIDTH, 3, 3, every_step, num_heads=HEADS, num_layers=num_layers)
  return (lambda key: ref_init.init(key, jnp.zeros((1, 2, 3)))), (
      lambda p: ref.apply(p, VECTORS)), ours.init, lambda p: ours.apply(p, VECTORS)


def _language(positions: str, dropout: float, num_layers: int, key_and_delta: bool):
  ref = reference._Transformer(  # pylint: disable=protected-access
      VOCAB, WIDTH, HEADS, num_layers, LENGTH + 1, positions, dropout)
  ours = language.transformer_lm(VOCAB, width=WIDTH, num_heads=HEADS, num_layers=num_layers,
                                 context_len=LENGTH + 1, positions=positions, dropout=dropout)
  args = (jax.random.key(7), DELTA) if key_and_delta else (None, None)
  return (lambda key: ref.init(key, jnp.zeros((1, 2), jnp.int32))), (
      lambda p: ref.apply(p, TOKENS, *args)), ours.init, (
          lambda p: ours.apply(p, TOKENS, (), *args)[0])


def _depth(name: str, causal: bool, activation: str, init: str, sigma_w2: float,
           dtype=jnp.float32):
  variant = transformer.parse_variant(name)
  alpha = variant.alpha(3)
  ref = reference.Block(WIDTH, HEADS, variant.norm, variant.skip, variant.mlp, causal,
                        activation, init, sigma_w2, dtype)
  ours = transformer.block(variant, WIDTH, HEADS, causal=causal, activation=activation,
                           init=init, sigma_w2=sigma_w2, dtype=dtype)
  x = DELTA.astype(dtype)  # tokens (B, T, d)
  return (lambda key: ref.init(key, x, 1.0)), (lambda p: ref.apply(p, x, alpha)), (
      lambda key: ours.init(key, x, 1.0)), lambda p: ours.apply(p, x, alpha)


CASES = {
    # long-range memory: copy (every step, 2 layers) and adding (the last step)
    'memory every step': lambda: _memory(True, 2),
    'memory last step': lambda: _memory(False, 1),
    # language models: learned positions with dropout and the embedding perturbation (context
    # use), the same model evaluated (no key), sinusoidal positions
    'lm learned dropout delta': lambda: _language('learned', 0.1, 2, True),
    'lm learned evaluation': lambda: _language('learned', 0.1, 2, False),
    'lm sinusoidal': lambda: _language('sinusoidal', 0.0, 1, False),
    # transformers through depth: each norm, skips, MLPs, residual scales, masks, activations,
    # initialisers and dtypes
    'depth post_ln': lambda: _depth('post_ln', False, 'relu', 'gaussian', 1.0),
    'depth pre_ln+scaled': lambda: _depth('pre_ln+scaled', True, 'gelu', 'xavier', 2.0),
    'depth none+noskip': lambda: _depth('none+noskip', False, 'tanh', 'gaussian', 0.5),
    'depth post_ln+nomlp+alpha': lambda: _depth('post_ln+nomlp+alpha=0.5', True, 'relu',
                                                'gaussian', 1.0),
    'depth pre_ln+noskip+nomlp': lambda: _depth('pre_ln+noskip+nomlp', False, 'gelu', 'xavier',
                                                1.0),
    'depth none float64': lambda: _depth('none', True, 'relu', 'gaussian', 1.0, jnp.float64),
}


def _program(f, *args):
  """(jaxpr text, constants as numpy arrays, output shapes) of f traced on args."""
  closed, shapes = jax.make_jaxpr(f, return_shape=True)(*args)
  consts = [np.asarray(jax.random.key_data(c) if jnp.issubdtype(c.dtype, jax.dtypes.prng_key)
                       else c) for c in closed.consts]
  return str(closed.jaxpr), consts, shapes


def _assert_same_program(ours, ref):
  (text, consts, shapes), (ref_text, ref_consts, ref_shapes) = ours, ref
  assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(ref_shapes)
  assert jax.tree.leaves(shapes) == jax.tree.leaves(ref_shapes)
  assert text == ref_text
  assert len(consts) == len(ref_consts)
  for a, b in zip(consts, ref_consts):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('name', CASES)
def test_the_same_program_as_before(name):
  ref_init, ref_apply, init, apply = CASES[name]()
  with jax.enable_x64(name.endswith('float64')):
    key = jax.random.key(3)
    ref_params = _program(ref_init, key)
    _assert_same_program(_program(init, key), ref_params)
    params = ref_params[2]  # the parameters' shapes: apply is traced on any values
    _assert_same_program(_program(apply, params), _program(ref_apply, params))
