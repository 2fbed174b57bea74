"""Khandelwal et al.'s context measurements (lib/measure/context) on models whose answer is
known: n-gram models of order k, which read exactly the last k tokens."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.measure import context
from lib.runtime.errors import UserError

VOCAB = 5


def _log_p(order: int, seed: int = 0):
  table = 3.0 * jax.random.normal(jax.random.key(seed), (VOCAB,) * order + (VOCAB,))
  return jax.nn.log_softmax(table, axis=-1)


def ngram(order: int, seed: int = 0):
  """next_loss of an n-gram model of `order`: -log softmax(table[last `order` tokens])[target],
  tokens before the context's start read as token 0 (a truncated context's zero state)."""
  log_p = _log_p(order, seed)

  @jax.jit
  def next_loss(contexts, targets):
    pad = jnp.zeros((contexts.shape[0], order), contexts.dtype)
    last = jnp.concatenate([pad, contexts], axis=1)[:, -order:]
    return -log_p[tuple(last.T) + (targets,)]
  return next_loss


def _stream(order: int, length=3000, seed=1):
  """A stream drawn from the n-gram model itself (so that what it reads is what predicts)."""
  p = np.exp(np.asarray(_log_p(order), np.float64))
  rng = np.random.default_rng(seed)
  ids = [0] * order
  for _ in range(length):
    q = p[tuple(ids[-order:])]
    ids.append(int(rng.choice(VOCAB, p=q / q.sum())))
  return np.asarray(ids[order:])


def _curves(order, lags=(1, 2, 3, 4, 6, 8), max_lag=8, perturbations=context.PERTURBATIONS):
  ids = _stream(order)
  positions = context.target_positions(ids.size, max_lag, 500, jax.random.key(2))
  contexts, targets = context.windows(ids, positions, max_lag)
  return context.curves(ngram(order), contexts, targets, lags, perturbations,
                        jax.random.key(3), context.unigram(ids, VOCAB)), lags


def test_an_order_one_model_reads_one_token():
  """Effective context 1; shuffling or replacing anything before the last token changes no loss
  (increase exactly 0 at every lag, so the shuffle curve is flat and meets zero at d = 1)."""
  result, lags = _curves(1)
  full = result['full'][0]
  truncated = [result['truncate'][d][0] for d in lags]
  assert context.effective_context(lags, truncated, full, 0.01) == 1
  for how in ('truncate', 'shuffle', 'replace'):
    assert all(result[how][d][2] == 0.0 and result[how][d][3] == 0.0 for d in lags), how
  assert context.zero_crossing(lags, [result['shuffle'][d][2] for d in lags],
                               [result['shuffle'][d][3] for d in lags]) == 1


def test_an_order_three_model_reads_three_tokens():
  """Truncated to 1 or 2 tokens its loss rises far beyond 1% (the third token matters); from 3
  on it is exactly the full loss; shuffle and replace first stop mattering at d = 3."""
  result, lags = _curves(3)
  full = result['full'][0]
  truncated = [result['truncate'][d][0] for d in lags]
  assert context.effective_context(lags, truncated, full, 0.01) == 3
  assert truncated[1] > 1.1 * full
  for how in ('shuffle', 'replace'):
    increases = [result[how][d][2] for d in lags]
    stderrs = [result[how][d][3] for d in lags]
    assert increases[1] > 5 * stderrs[1] > 0  # d = 2: the third token perturbed
    assert context.zero_crossing(lags, increases, stderrs) == 3


def test_perturbations_never_touch_the_last_tokens():
  """Token by token: the last d of every context are kept; shuffle keeps each row's far tokens as
  a multiset; replace draws from the unigram it is given (all mass on one token: all of them
  become it); truncate keeps exactly the last d."""
  rng = np.random.default_rng(4)
  contexts = jnp.asarray(rng.integers(0, VOCAB, (50, 12)), jnp.int32)
  for d in (1, 5, 11, 12):
    for how in context.PERTURBATIONS:
      out = np.asarray(context.perturb(contexts, d, how, jax.random.key(d),
                                       np.eye(VOCAB)[3]))
      np.testing.assert_array_equal(out[:, -d:], np.asarray(contexts)[:, -d:])
      if how == 'truncate':
        assert out.shape == (50, d)
      elif how == 'shuffle':
        np.testing.assert_array_equal(np.sort(out[:, :12 - d], axis=1),
                                      np.sort(np.asarray(contexts)[:, :12 - d], axis=1))
      else:
        assert np.all(out[:, :12 - d] == 3)
  shuffled = np.asarray(context.perturb(contexts, 1, 'shuffle', jax.random.key(0)))
  assert np.mean(shuffled[:, :11] != np.asarray(contexts)[:, :11]) > 0.5  # it does permute


def test_replace_draws_from_the_unigram():
  """200,000 replaced tokens: each token's frequency within 4 standard errors of its
  probability, a token of probability 0 never drawn (at a 10,000-word vocabulary too: the draw
  is by the inverse distribution, no (N, L, V) noise)."""
  p = np.asarray([0.1, 0.2, 0.0, 0.3, 0.4])
  out = np.asarray(context.perturb(jnp.zeros((400, 501), jnp.int32), 1, 'replace',
                                   jax.random.key(7), p))[:, :500]
  freq = np.bincount(out.ravel(), minlength=VOCAB) / out.size
  np.testing.assert_array_less(np.abs(freq - p), 4 * np.sqrt(p * (1 - p) / out.size) + 1e-12)
  words = np.full(10_000, 1e-5)
  words[123] = 1.0 - words.sum() + 1e-5
  many = np.asarray(context.perturb(jnp.zeros((1000, 300), jnp.int32), 1, 'replace',
                                    jax.random.key(8), words))
  assert 0.88 < np.mean(many[:, :299] == 123) < 0.92


def test_estimates_are_reproducible_per_key():
  a, _ = _curves(2, lags=(1, 4), perturbations=('shuffle', 'replace'))
  b, _ = _curves(2, lags=(1, 4), perturbations=('shuffle', 'replace'))
  assert a == b
  ids = _stream(1)
  p1 = context.target_positions(ids.size, 8, 100, jax.random.key(0))
  p2 = context.target_positions(ids.size, 8, 100, jax.random.key(1))
  assert not np.array_equal(p1, p2) and p1.min() >= 8 and len(set(p1)) == 100


@pytest.mark.parametrize('args, message', [
    ((100, 0, (1,), 10), r'max_lag \(0\) must be at least 1'),
    ((100, 8, (1, 9), 10), r'lag 9 is not in 1..max_lag \(8\)'),
    ((8, 8, (1,), 10), r'the stream \(8 tokens\) is not longer than max_lag \(8\)'),
    ((100, 8, (1,), 1), r'num_targets \(1\) must be at least 2'),
])
def test_bad_sizes_fail_with_one_line(args, message):
  with pytest.raises(UserError, match=message):
    context.check(*args)
  with pytest.raises(UserError, match="unknown perturbation 'drop'"):
    context.perturb(jnp.zeros((2, 4), jnp.int32), 1, 'drop', jax.random.key(0))


@pytest.mark.parametrize('length', [50, 10_000])
def test_gradient_reach_of_a_linear_recurrence_has_slope_two_ln_a(length):
  """h_t = a h_{t-1} + e_t read out by log p = <w, h_T> (linear, so its gradient is w at every
  state): ||d log p / d e_t||^2 = a^(2 (T-1-t)) ||w||^2 exactly, a slope of 2 ln a per token of
  lag; in float32 also at T = 10,000, where it reaches e^-2107, far below float32's e^-103 (to
  3e-4 relative there: the float32 sum of 10,000 renormalisation logs, as in the lru's test)."""
  a, width, batch = 0.9, 4, 3
  w = jnp.asarray([0.5, -1.0, 2.0, 0.25], jnp.float32)
  inputs = jax.random.normal(jax.random.key(0), (length, batch, width))
  reach = jax.jit(lambda x: context.log_gradient_reach(
      lambda h, e: a * h + e, lambda h, targets: h @ w, jnp.zeros((batch, width)), x,
      jnp.zeros((batch,), jnp.int32)))(inputs)
  lag = length - 1 - np.arange(length)
  expected = np.log(float(w @ w)) + 2 * lag * np.log(a)
  np.testing.assert_allclose(np.asarray(reach, np.float64), expected, rtol=3e-4, atol=1e-4)
  assert np.polyfit(lag, np.asarray(reach, np.float64), 1)[0] == pytest.approx(2 * np.log(a),
                                                                            rel=3e-4)


def test_a_transformer_has_no_gradient_beyond_its_window():
  """A transformer language model of window w = 4 measured on contexts of 9 tokens: the reach
  is exactly -inf (a gradient of exactly 0) at the 5 positions it cannot see, finite at the 4 it
  reads; and inside the window the direct gradient equals a central difference in float64."""
  from lib.nets import language  # pylint: disable=g-import-not-at-top
  with jax.enable_x64(True):
    model = language.transformer_lm(VOCAB, width=8, num_heads=2, num_layers=1, context_len=4)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), jax.jit(model.init)(jax.random.key(0)))
    rng = np.random.default_rng(5)
    contexts = jnp.asarray(rng.integers(0, VOCAB, (6, 9)), jnp.int32)
    targets = jnp.asarray(rng.integers(0, VOCAB, 6), jnp.int32)
    seen, unseen = context.windowed(contexts, 4)

    @jax.jit
    def log_prob(delta):
      logits = model.apply(params, seen, (), None, delta[:, unseen:])[0][:, -1]
      return jnp.take_along_axis(jax.nn.log_softmax(logits), targets[:, None], 1)[:, 0]
    reach = np.asarray(jax.jit(lambda: context.log_gradient_reach_direct(
        log_prob, (6, 9, 8), jnp.float64))())
    assert unseen == 5 and np.all(np.isneginf(reach[:5])) and np.all(np.isfinite(reach[5:]))
    # one coordinate of one embedding, by central difference
    step = 1e-6
    bump = jnp.zeros((6, 9, 8), jnp.float64).at[:, 7, 2].set(step)
    numeric = (log_prob(bump) - log_prob(-bump)) / (2 * step)
    exact = jax.jit(jax.grad(lambda d: jnp.sum(log_prob(d))))(jnp.zeros((6, 9, 8), jnp.float64))
    np.testing.assert_allclose(exact[:, 7, 2], numeric, rtol=1e-6, atol=1e-9)


def test_the_summaries_of_a_curve_by_hand():
  """Worked by hand: the effective context is one-sided (a truncation that lowers the loss, as
  the transformer's last window position does, costs nothing: 2, not the 8 of a two-sided
  rule); the zero crossing is the first lag within 2 standard errors (2, not the 8 that asking
  every later lag to pass gives after one chance excursion at 4)."""
  lags = (1, 2, 4, 8)
  assert context.effective_context(lags, (2.0, 1.5, 1.4, 1.5), 1.5, 0.01) == 2
  assert context.effective_context(lags, (2.0, 1.6, 1.52, 1.5), 1.5, 0.01) == 8
  assert context.effective_context(lags, (2.0, 1.6, 1.52, 1.53), 1.5, 0.01) is None
  assert context.zero_crossing(lags, (1.0, 0.01, 0.05, 0.0), (0.1, 0.01, 0.01, 0.0)) == 2
  assert context.zero_crossing(lags, (1.0, 0.5, 0.3, 0.2), (0.1, 0.1, 0.1, 0.05)) is None


# (lags, increases, their standard errors, the zero crossing), worked by hand with 2 standard
# errors; dyadic numbers, so that a value at exactly 2 standard errors is exactly on the boundary
ZERO_CROSSINGS = [
    # 2: |1.0| > 2 x 0.125; 4: |0.5| = 2 x 0.25, on the boundary, within: 4 (with < instead of
    # <=, or 1 standard error instead of 2: 8; the last crossing: 16; the index 1, not the lag)
    ((2, 4, 8, 16), (1.0, 0.5, 0.0, 0.0), (0.125, 0.25, 0.25, 0.25), 4),
    # 2: |-1.0| = 8 standard errors, far from 0 (the increase signed, m <= 2 s: 2); 4: 0.25 =
    # 2 x 0.125: 4
    ((2, 4, 8, 16), (-1.0, 0.25, 0.0, 0.0), (0.125, 0.125, 0.125, 0.125), 4),
    # 1: 1.5 standard errors, within 2: 1 (1 standard error: 3; the index 0)
    ((1, 3, 5, 7), (0.375, 0.0, 0.0, 0.0), (0.25, 0.25, 0.25, 0.25), 1),
    # 3: 1.5 standard errors: 3 (1 standard error: 7; index 1, index + 1 2, next lag 5)
    ((1, 3, 5, 7), (1.0, -0.375, 0.5, 0.0), (0.125, 0.25, 0.125, 0.125), 3),
    # no increase within 2 standard errors: None (a lag past the last: an IndexError)
    ((1, 3, 5, 7), (1.0, -1.0, 0.75, 0.5), (0.125, 0.25, 0.25, 0.125), None),
]


@pytest.mark.parametrize('lags, increases, stderrs, expect', ZERO_CROSSINGS)
def test_zero_crossing_worked_by_hand(lags, increases, stderrs, expect):
  """The first lag whose increase m has |m| <= 2 s (s its standard error), the boundary
  included, as a lag (not its index), worked by hand in ZERO_CROSSINGS."""
  assert context.zero_crossing(lags, increases, stderrs) == expect


# (lags, truncated losses, the full history's loss, relative tolerance, the effective context),
# worked by hand; full loss 4 and tolerance 0.25 allow an excess of at most 1.0
EFFECTIVE_CONTEXTS = [
    # excess 2, 1 (exactly the tolerance: within), 0.5, 0: 4 (with < instead of <=: 8; the
    # tolerance absolute, 0.25 nats: 16; the index 1, not the lag)
    ((2, 4, 8, 16), (6.0, 5.0, 4.5, 4.0), 4.0, 0.25, 4),
    # excess 2, 0.5, 1.5, 0: lag 4 is within but lag 8 is not, so 16 (the first lag within
    # alone: 4; every later lag but not the lag itself: 8)
    ((2, 4, 8, 16), (6.0, 4.5, 5.5, 4.0), 4.0, 0.25, 16),
    # excess 0.5, -1.5 (below the full loss costs nothing: a two-sided rule gives 8), 0.75,
    # 0: 2
    ((2, 4, 8, 16), (4.5, 2.5, 4.75, 4.0), 4.0, 0.25, 2),
    # the last lag's excess 1.5: None
    ((2, 4, 8, 16), (6.0, 5.0, 4.5, 5.5), 4.0, 0.25, None),
]


@pytest.mark.parametrize('lags, losses, full, tolerance, expect', EFFECTIVE_CONTEXTS)
def test_effective_context_worked_by_hand(lags, losses, full, tolerance, expect):
  """The smallest lag d from which on every loss (d's included) is at most tolerance x the full
  loss above the full loss, the boundary included, as a lag, worked by hand in
  EFFECTIVE_CONTEXTS."""
  assert context.effective_context(lags, losses, full, tolerance) == expect
