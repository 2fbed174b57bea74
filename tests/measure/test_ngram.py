"""The interpolated Kneser-Ney n-gram model (lib/measure/ngram): proper distributions at every
context, a small text worked by hand from the definition, and its bad input."""

import numpy as np
import pytest

from lib.measure import ngram
from lib.runtime.errors import UserError

# the hand-worked text: a b a b c a over the vocabulary a b c d (d never seen)
TEXT = [0, 1, 0, 1, 2, 0]


def _distribution(model: ngram.NGram, context) -> np.ndarray:
  """P(w | context) for every w of the vocabulary, each by log_prob of the block context + [w]
  (blocks laid end to end: each one's last token reads exactly its own context)."""
  v, n = model.vocab_size, len(context) + 1
  blocks = np.concatenate([list(context) + [w] for w in range(v)])
  return np.exp(ngram.log_prob(model, blocks)[n - 1::n])


@pytest.mark.parametrize('order', [1, 2, 3, 4])
def test_every_context_gives_a_proper_distribution(order):
  """At every context of order - 1 tokens seen in a random text (5 symbols, the vocabulary's
  6th never seen) and at an unseen one (the 6th symbol in it), the probabilities over the
  vocabulary are positive and sum to 1."""
  ids = np.random.default_rng(order).integers(0, 5, 300)
  model = ngram.fit(ids, 6, order)
  contexts = {tuple(ids[t - order + 1:t]) for t in range(order - 1, len(ids))}
  contexts.add((5,) * (order - 1))
  contexts.add(tuple(ids[:order - 2]) + (5,) if order > 1 else ())
  for context in contexts:
    p = _distribution(model, context)
    assert np.all(p > 0) and np.sum(p) == pytest.approx(1.0, abs=1e-12), context


def test_order_two_by_hand():
  """Order 2 on a b a b c a (ids 0 1 0 1 2 0) over 4 symbols, D = 0.5 at both orders.
  Bigrams: c(a b) = 2, c(b a) = c(b c) = c(c a) = 1. Continuation counts of the unigrams (the
  distinct tokens before each): a {b, c} 2, b {a} 1, c {b} 1, d 0: total 4, types 3."""
  d = 0.5
  p1 = np.array([(2 - d) + d * 3 / 4, (1 - d) + d * 3 / 4, (1 - d) + d * 3 / 4,
                 0 + d * 3 / 4]) / 4
  np.testing.assert_allclose(p1, [0.46875, 0.21875, 0.21875, 0.09375], rtol=1e-15)
  # after a: C(a) = 2 (a b twice), one type; after b: C(b) = 2, two types (a, c)
  after_a = np.array([d * p1[0], (2 - d) + d * p1[1], d * p1[2], d * p1[3]]) / 2
  after_b = np.array([(1 - d) + d * 2 * p1[0], d * 2 * p1[1], (1 - d) + d * 2 * p1[2],
                      d * 2 * p1[3]]) / 2
  model = ngram.fit(TEXT, 4, 2, fixed_discount=d)
  np.testing.assert_allclose(_distribution(model, [0]), after_a, rtol=1e-14)
  np.testing.assert_allclose(_distribution(model, [1]), after_b, rtol=1e-14)
  np.testing.assert_allclose(_distribution(model, [3]), p1, rtol=1e-14)  # d never seen
  # a b d: the first token with no context (P_1), then each after the one before
  np.testing.assert_allclose(np.exp(ngram.log_prob(model, [0, 1, 3])),
                             [0.46875, 0.8046875, 0.046875], rtol=1e-14)
  assert ngram.test_loss(model, [0, 1, 3]) == pytest.approx(
      -np.mean(np.log([0.46875, 0.8046875, 0.046875])), rel=1e-14)


def test_the_discounts_are_n1_over_n1_plus_2_n2():
  """The same text, discounts estimated: the bigram counts 2 1 1 1 (n1 = 3, n2 = 1): 3 / 5;
  the continuation counts 2 1 1 (n1 = 2, n2 = 1): 2 / 4; no count of 1: 0.75."""
  assert ngram.fit(TEXT, 4, 2).discounts == pytest.approx((0.5, 0.6), rel=1e-15)
  assert ngram.fit([0, 0, 1, 1], 2, 1).discounts == (ngram.FALLBACK_DISCOUNT,)


def test_order_one_is_the_interpolated_unigram():
  """Order 1 on a b a b c a: the raw counts a 3, b 2, c 1 of 6 (n1 = n2 = 1: D = 1/3), each
  less D, plus D times its 3 types spread over the 4 symbols."""
  d = 1 / 3
  by_hand = np.array([3 - d, 2 - d, 1 - d, 0]) / 6 + d * 3 / 4 / 6
  model = ngram.fit(TEXT, 4, 1)
  np.testing.assert_allclose(np.exp(ngram.log_prob(model, [3, 2, 1, 0])), by_hand[::-1],
                             rtol=1e-14)
  assert np.sum(by_hand) == pytest.approx(1.0, abs=1e-15)


def test_a_text_longer_than_the_order_reads_the_last_tokens():
  """Order 3 on a long text: token t's log-probability is that of the last token of
  ids[t-2..t] alone (its context is the two tokens before it, nothing earlier); the first two
  tokens read the context they have. Fitted on a text shorter than the order: no n-gram, every
  order empty, the uniform distribution."""
  ids = np.random.default_rng(0).integers(0, 4, 50)
  model = ngram.fit(ids, 4, 3)
  whole = ngram.log_prob(model, ids)
  assert whole.shape == (50,)
  for t in range(50):
    assert whole[t] == ngram.log_prob(model, ids[max(t - 2, 0):t + 1])[-1], t
  assert whole[1] != ngram.log_prob(ngram.fit(ids, 4, 2), ids[:2])[1]  # not the order 2 model's
  np.testing.assert_allclose(ngram.log_prob(ngram.fit([1, 2], 4, 3), ids), np.log(1 / 4))


@pytest.mark.parametrize('call, message', [
    (lambda: ngram.fit(TEXT, 4, 0), 'n-gram order 0 must be an integer >= 1'),
    (lambda: ngram.fit(TEXT, 4, 1.5), 'n-gram order 1.5 must be an integer >= 1'),
    (lambda: ngram.fit(TEXT, 2, 2), r'n-gram training ids: id 2 is outside the vocabulary 0..1'),
    (lambda: ngram.fit([0, -1], 4, 2), r'id -1 is outside the vocabulary 0..3'),
    (lambda: ngram.log_prob(ngram.fit(TEXT, 4, 2), [0, 4]),
     r'n-gram scored ids: id 4 is outside the vocabulary 0..3'),
    (lambda: ngram.fit(TEXT, 10000, 5), r'order 5 over a vocabulary of 10000: its codes overflow'),
    (lambda: ngram.fit(TEXT, 4, 2, fixed_discount=0.0), r'discount 0.0 must be in \(0, 1\]'),
])
def test_bad_input_is_one_line(call, message):
  with pytest.raises(UserError, match=message):
    call()
