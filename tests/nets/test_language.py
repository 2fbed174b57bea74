"""Language models: the transformer is causal, the recurrent model's carry is its state, TBPTT
cuts the gradient at the segment boundary and carries the state across it, and the split
evaluations against plain numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.experiments import language_model
from lib.nets import cells
from lib.nets import language
from lib.runtime.errors import UserError

VOCAB = 7


def _lstm(**kw):
  return language.recurrent_lm('lstm', VOCAB, embed_size=3, hidden_size=4, num_layers=2,
                               cell_init=cells.CellInit(sigma_b2=0.1, gate_bias=1.0), **kw)


def _lru(parallel_scan=True):
  return language.recurrent_lm('lru', VOCAB, embed_size=3, hidden_size=4, num_layers=2,
                               linear=cells.LinearOptions(r_min=0.5, r_max=0.99,
                                                          parallel_scan=parallel_scan))


def _init(model, seed):
  """model's params, from a program of its own: the same program for every test of a model
  (and the lru's whatever its scan), compiled once (the session's compilation cache loads it),
  since an init is most of what these small models compile (the lru's: 4-5 CPU-s)."""
  return jax.jit(model.init)(jax.random.key(seed))


def _tokens(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, VOCAB, shape), jnp.int32)


def test_transformer_is_causal():
  """Changing the tokens after position t leaves the logits at 0..t as they were, to the bit;
  changing token t changes them at t."""
  model = language.transformer_lm(VOCAB, width=8, num_heads=2, num_layers=2, context_len=6)
  x = _tokens((2, 6))
  y = x.at[:, 4:].set((x[:, 4:] + 1) % VOCAB)

  @jax.jit  # the init and both reads in one program (each program costs a compile)
  def read(key, x, y):
    params = model.init(key)
    return model.apply(params, x, ())[0], model.apply(params, y, ())[0]
  a, b = read(jax.random.key(0), x, y)
  np.testing.assert_array_equal(a[:, :4], b[:, :4])
  assert not np.allclose(a[:, 4], b[:, 4])
  with pytest.raises(UserError, match='width 6 must be even and divisible by num_heads 4'):
    language.transformer_lm(VOCAB, width=6, num_heads=4, num_layers=1, context_len=4)


def _read_whole_and_in_two(model, params, x, **more):
  """(logits of x read at once, of its first 4 tokens, of the rest from the carry they left,
  {name: fn(params, x)} of `more`), in one program (each program costs a compile)."""
  @jax.jit
  def read(params, x):
    whole, _ = model.apply(params, x, model.zero_carry(x.shape[0]))
    first, carry = model.apply(params, x[:, :4], model.zero_carry(x.shape[0]))
    return (whole, first, model.apply(params, x[:, 4:], carry)[0],
            {name: fn(params, x) for name, fn in more.items()})
  return read(params, x)


def test_recurrent_carry_is_the_state_of_the_stream():
  """Two segments read one after the other, the carry passed on, give the logits of the whole
  sequence read at once; the uniform init draws every parameter in [-a, a]."""
  model = _lstm()
  x = _tokens((3, 10))
  uniform_init = _lstm(init='uniform', init_scale=0.05).init
  whole, first, second, more = _read_whole_and_in_two(
      model, _init(model, 1), x, uniform=lambda *_: uniform_init(jax.random.key(1)))
  np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, rtol=1e-6,
                             atol=1e-6)
  leaves = jax.tree.leaves(more['uniform'])
  assert all(np.abs(leaf).max() <= 0.05 for leaf in leaves)
  assert max(np.abs(leaf).max() for leaf in leaves) > 0.045  # the whole range is used


@pytest.mark.parametrize('parallel_scan', [True, False])
def test_an_lru_language_model_carries_its_state(parallel_scan):
  """The lru in a language model: two segments with the carry passed on (the parallel scan's
  h0 folded into its first input, or the sequential scan) give the whole sequence's logits."""
  model = _lru(parallel_scan)
  x = _tokens((3, 10))
  whole, first, second, more = _read_whole_and_in_two(
      model, _init(model, 1), x,
      from_zeros=lambda params, x: model.apply(params, x[:, 4:], model.zero_carry(3))[0])
  np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, rtol=1e-5,
                             atol=1e-5)
  assert not np.allclose(second, more['from_zeros'], atol=1e-3)  # the carry matters


def _tiny_task(model, context_len=4, batch_size=2):
  cfg = {'batch_size': batch_size, 'eval_tokens': 50, 'eval_streams': 2, 'dropout': 0.0}
  rng = np.random.default_rng(3)
  corpus = {'train': rng.integers(0, VOCAB, 200).astype(np.int32),
            'valid': rng.integers(0, VOCAB, 50).astype(np.int32)}
  return language_model.make_task(cfg, model, corpus, context_len), corpus


def test_tbptt_carries_the_state_and_cuts_the_gradient():
  """Step 1 of training reads segment 1 of each stream from the state segment 0 left: its
  gradient is jax.grad of the loss of segment 1 alone from that state held constant (a plain
  cross-entropy written here), and differs from the gradient through both segments. Step 0
  starts from zeros and so does the first step of the next epoch."""
  model = _lstm()
  task, corpus = _tiny_task(model)
  streams = corpus['train'][:200].reshape(2, 100)
  per_epoch = (100 - 1) // 4

  def plain(p, x, y, c):
    logits, _ = model.apply(p, x, c)
    log_p = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_p, y[..., None], axis=-1))

  @jax.jit
  def compute(params):
    b0, b1 = task.batch(task.data, 0, 0), task.batch(task.data, 0, 1)
    _, carry = task.loss(params, b0, task.carry(0))
    grad = jax.grad(lambda p: task.loss(p, b1, carry)[0])(params)
    state = jax.lax.stop_gradient(model.apply(params, streams[:, :4], model.zero_carry(2))[1])
    expected = jax.grad(plain)(params, streams[:, 4:8], streams[:, 5:9], state)
    through = jax.grad(plain)(params, streams[:, :8], streams[:, 1:9], model.zero_carry(2))
    reset = (task.loss(params, b0, jax.tree.map(lambda c: c + 5.0, carry))[0],
             task.loss(params, b0, task.carry(0))[0])
    return (b0, b1, task.batch(task.data, 0, per_epoch)['first'], grad, expected, through,
            reset)
  b0, b1, next_epoch_first, grad, expected, through, reset = compute(_init(model, 2))
  np.testing.assert_array_equal(b1['x'], streams[:, 4:8])
  np.testing.assert_array_equal(b1['y'], streams[:, 5:9])
  for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  cell = lambda g: np.concatenate([np.ravel(x) for x in jax.tree.leaves(g['cells'])])
  assert np.abs(cell(through) - cell(expected)).max() > 1e-4  # the cut is not a no-op
  assert bool(b0['first']) and not bool(b1['first']) and bool(next_epoch_first)
  assert float(reset[0]) == pytest.approx(float(reset[1]), rel=1e-6)  # segment 0 starts at zero


def test_split_losses_against_numpy():
  """stream_loss and position_loss of a bigram model (logits a table of the current token) equal
  a numpy sum over the very tokens each scores: a recurrent model every target but the tail of
  each stream, the transformer's sliding window the same targets; the position loss is flat for
  a model that ignores its context (within 3 standard errors of the overall mean). By label
  (stream_sums): the same numpy sums over the targets of each label."""
  table = jnp.asarray(np.random.default_rng(4).normal(size=(VOCAB, VOCAB)), jnp.float32)
  nll = -np.asarray(jax.nn.log_softmax(table))  # nll[token, next]
  ids = np.asarray(np.random.default_rng(5).integers(0, VOCAB, 4001), np.int32)
  for recurrent in (True, False):
    bigram = language.LanguageModel(
        init=None, apply=lambda p, x, c, key=None: (p[x], c),
        zero_carry=lambda b: jnp.zeros((b, 1)) if recurrent else (), recurrent=recurrent)
    total, count = jax.jit(lambda t, i: language_model.stream_loss(bigram, t, i, 8, 4),
                           static_argnums=())(table, jnp.asarray(ids))
    streams = ids[:4000].reshape(4, 1000)
    scored = 8 * ((1000 - 1) // 8) if recurrent else 8 + ((1000 - 1 - 8) // 4) * 4
    expected = sum(nll[s[t], s[t + 1]] for s in streams for t in range(scored))
    assert count == 4 * scored
    assert float(total) == pytest.approx(expected, rel=1e-5)
    # the same sum by label of each target (labels[i] labels the prediction of ids[i])
    labels = np.asarray(np.random.default_rng(6).integers(0, 3, len(ids)), np.int32)
    _, _, sums, counts = jax.jit(lambda t, i, l: language_model.stream_sums(
        bigram, t, i, 8, 4, l, 3))(table, jnp.asarray(ids), jnp.asarray(labels))
    tags = labels[:4000].reshape(4, 1000)
    for c in range(3):
      chosen = [(s, t) for j, s in enumerate(streams) for t in range(scored)
                if tags[j, t + 1] == c]
      assert int(counts[c]) == len(chosen)
      assert float(sums[c]) == pytest.approx(sum(nll[s[t], s[t + 1]] for s, t in chosen),
                                             rel=1e-5)
  losses = np.asarray(jax.jit(lambda t, i: language_model.position_loss(bigram, t, i, 8, 4))(
      table, jnp.asarray(ids)))
  windows = ids[:4000].reshape(500, 8), ids[1:4001].reshape(500, 8)
  np.testing.assert_allclose(losses, nll[windows[0], windows[1]].mean(axis=0), rtol=1e-5)
  per_token = nll[ids[:-1], ids[1:]]
  assert np.abs(losses - per_token.mean()).max() < 3 * per_token.std() / np.sqrt(500)


@pytest.mark.parametrize('cell', ['lstm', 'lru'])
def test_the_reader_steps_the_model_token_by_token(cell):
  """`reader`'s embed, step through every layer and log_prob give what apply's logits give at
  the last position, to 1e-6 (the language models' Flax cells compute in float32 whatever their
  parameters' dtype, and apply hoists the input projection: a different float32 rounding; a
  layer skipped, or the readout of the wrong state, would be O(1) off)."""
  model = _lstm() if cell == 'lstm' else _lru()
  params = _init(model, 2)  # outside x64: the other tests' init program
  with jax.enable_x64(True):
    @jax.jit  # one program (eager, each small float64 op would compile on its own)
    def both(params, tokens, targets):
      params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
      zeros = jax.tree.map(lambda c: c.astype(jnp.float64), model.zero_carry(3))
      logits, _ = model.apply(params, tokens, zeros)
      expected = jnp.take_along_axis(jax.nn.log_softmax(logits[:, -1]), targets[:, None],
                                     1)[:, 0]
      embed, step, log_prob = model.reader(params)
      carry = zeros
      for e in embed(tokens):
        carry = step(carry, e)
      return log_prob(carry, targets), expected

    read, expected = both(params, _tokens((3, 6)), _tokens((3,), seed=1))
    np.testing.assert_allclose(read, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('num_layers', [1, 2])
def test_non_embedding_parameters_and_state_size_against_closed_forms(num_layers):
  """Counted by hand (vocabulary V, embedding E, width d, L layers, window T): a tanh layer
  holds in d + d d + d (input kernel, recurrent kernel, bias), an LSTM layer 4 (in d + d d +
  d), a GRU layer 3 (in d + d d) + 3 d + d (input biases r, z, n; the n gate's recurrent
  bias), an LRU layer 2 d in + 2 d d + d in + 3 d (B, C re and im, D, nu, theta, gamma); a
  transformer block 4 (d d + d) + 2 (4 d d) + 4 d + d + 4 d (attention, MLP, two layer norms)
  and a final layer norm 2 d; none counts the embedding, the positions or the readout. State:
  d (tanh, GRU), 2 d (LSTM's c and h, the LRU's re and im) a layer; 2 d T a transformer
  block."""
  vocab, embed, width, window = 11, 5, 6, 7
  layer_inputs = [embed] + [width] * (num_layers - 1)
  by_hand = {
      'tanh': sum(i * width + width * width + width for i in layer_inputs),
      'lstm': sum(4 * (i * width + width * width + width) for i in layer_inputs),
      'gru': sum(3 * (i * width + width * width) + 4 * width for i in layer_inputs),
      'lru': sum(2 * width * i + 2 * width * width + width * i + 3 * width
                 for i in layer_inputs)}
  states = {'tanh': width, 'lstm': 2 * width, 'gru': width, 'lru': 2 * width}
  for name, count in by_hand.items():
    model = language.recurrent_lm(name, vocab, embed_size=embed, hidden_size=width,
                                  num_layers=num_layers)
    params = jax.eval_shape(model.init, jax.random.key(0))
    assert language.non_embedding_params(params) == count, name
    assert language.state_size(name, model, params, window) == num_layers * states[name], name
  model = language.transformer_lm(vocab, width=width, num_heads=2, num_layers=num_layers,
                                  context_len=window)
  params = jax.eval_shape(model.init, jax.random.key(0))
  block = 4 * (width * width + width) + 2 * 4 * width * width + 4 * width + width + 4 * width
  assert language.non_embedding_params(params) == num_layers * block + 2 * width
  assert language.state_size('transformer', model, params, window) == (
      num_layers * 2 * width * window)
