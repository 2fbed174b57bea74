"""The long-range tasks: structure, determinism, and the baselines by Monte Carlo."""

import math

import jax
import numpy as np
import pytest

from lib.data import tasks
from lib.runtime.errors import UserError


def test_adding_problem_structure_and_target():
  x, y = tasks.adding_problem(tasks.batch_key('adding', 0, 0), 64, 11)
  x, y = np.asarray(x), np.asarray(y)
  assert x.shape == (64, 11, 2) and y.shape == (64,)
  values, markers = x[..., 0], x[..., 1]
  assert np.all((values >= 0) & (values <= 1))
  assert np.all(markers[:, :5].sum(axis=1) == 1) and np.all(markers[:, 5:].sum(axis=1) == 1)
  expect = [values[b, np.flatnonzero(markers[b])].sum() for b in range(64)]
  np.testing.assert_allclose(y, expect, rtol=1e-6)


def test_adding_baseline_is_one_sixth():
  """The constant predictor's MSE (the target's variance) by Monte Carlo: 2e5 sequences."""
  _, y = tasks.adding_problem(jax.random.key(1), 200_000, 20)
  y = np.asarray(y, np.float64)
  assert y.mean() == pytest.approx(1.0, abs=0.005)
  assert np.mean((y - 1.0) ** 2) == pytest.approx(tasks.ADDING_BASELINE_MSE, rel=0.02)


def test_copy_memory_structure():
  seq_len = 7
  x, y = tasks.copy_memory(tasks.batch_key('copy', 0, 0), 32, seq_len)
  x, y = np.asarray(x), np.asarray(y)
  assert x.shape == y.shape == (32, seq_len + 20)
  symbols = x[:, :10]
  assert np.all((symbols >= 1) & (symbols <= 8))
  assert np.all(x[:, 10:10 + seq_len - 1] == 0)
  assert np.all(x[:, 10 + seq_len - 1] == tasks.COPY_MARKER)
  assert np.all(x[:, -10:] == 0)
  assert np.all(y[:, :-10] == 0) and np.array_equal(y[:, -10:], symbols)


def test_copy_baseline_by_monte_carlo():
  """The best memoryless model predicts each step's marginal target distribution; its
  cross-entropy, estimated from 1e5 sequences, is 10 ln 8 / (T + 20)."""
  seq_len = 30
  _, y = tasks.copy_memory(jax.random.key(2), 100_000, seq_len)
  y = np.asarray(y)
  entropy = 0.0
  for step in range(y.shape[1]):
    p = np.bincount(y[:, step], minlength=tasks.COPY_CLASSES) / y.shape[0]
    entropy -= np.sum(p[p > 0] * np.log(p[p > 0]))
  assert entropy / y.shape[1] == pytest.approx(tasks.copy_baseline_loss(seq_len), rel=0.01)
  assert tasks.copy_baseline_loss(seq_len) == 10 * math.log(8) / 50


def test_batches_depend_only_on_seed_and_step():
  a = tasks.adding_problem(tasks.batch_key('adding', 3, 5), 4, 6)
  b = tasks.adding_problem(tasks.batch_key('adding', 3, 5), 4, 6)
  c = tasks.adding_problem(tasks.batch_key('adding', 3, 6), 4, 6)
  np.testing.assert_array_equal(a[0], b[0])
  assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))
  assert not np.array_equal(np.asarray(tasks.copy_memory(tasks.batch_key('copy', 3, 5), 4, 6)[0]),
                            np.asarray(tasks.copy_memory(tasks.batch_key('copy', 4, 5), 4, 6)[0]))


def test_too_short_sequences_are_user_errors():
  with pytest.raises(UserError, match='needs seq_len >= 2'):
    tasks.adding_problem(jax.random.key(0), 2, 1)
  with pytest.raises(UserError, match='needs seq_len >= 1'):
    tasks.copy_memory(jax.random.key(0), 2, 0)


@pytest.mark.parametrize('seq_len, num_pairs, vocab_size', [(16, 4, 12), (40, 7, 64), (8, 2, 4)])
def test_associative_recall_answers_each_key_once_with_its_value(seq_len, num_pairs,
                                                                 vocab_size):
  """Against a hand-built pair table: keys distinct and in the first half of the vocabulary,
  values in the second; targets only after the pairs, exactly D of them per sequence, each at a
  position holding a key of the table (each key once) and equal to the value paired with it."""
  x, y = tasks.associative_recall(jax.random.key(0), 64, seq_len, num_pairs,
                                  vocab_size)
  x, y = np.asarray(x), np.asarray(y)
  assert x.shape == y.shape == (64, seq_len) and x.dtype == y.dtype == np.int32
  half, context = vocab_size // 2, 2 * num_pairs
  assert np.all((x >= 0) & (x < vocab_size))
  for b in range(64):
    keys, values = x[b, 0:context:2], x[b, 1:context:2]
    assert len(set(keys)) == num_pairs and np.all(keys < half)
    assert len(set(values)) == num_pairs and np.all(values >= half)
    table = dict(zip(keys, values))
    asked = np.flatnonzero(y[b] != tasks.RECALL_IGNORE)
    assert len(asked) == num_pairs and np.all(asked >= context)
    assert sorted(x[b, asked]) == sorted(keys)  # each key queried once
    assert [table[k] for k in x[b, asked]] == list(y[b, asked])


def test_associative_recall_noise_and_determinism():
  """The tokens after the pairs that are not queries are noise over the whole vocabulary (both
  halves appear); a batch is a function of its key alone, and another key draws another."""
  a = tasks.associative_recall(jax.random.key(35), 256, 64, 4, 16)
  b = tasks.associative_recall(jax.random.key(35), 256, 64, 4, 16)
  c = tasks.associative_recall(jax.random.key(36), 256, 64, 4, 16)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))
  x, y = np.asarray(a[0]), np.asarray(a[1])
  noise = x[:, 8:][y[:, 8:] == tasks.RECALL_IGNORE]
  assert set(noise) == set(range(16))


@pytest.mark.parametrize('seq_len, num_pairs, vocab_size, message', [
    (15, 4, 64, r'needs seq_len >= 4 num_pairs .* got seq_len 15 for 4 pairs'),
    (64, 9, 16, r'needs 1 <= num_pairs <= vocab_size / 2 = 8 \(distinct keys\), got 9'),
    (64, 0, 16, r'needs 1 <= num_pairs <= vocab_size / 2 = 8 \(distinct keys\), got 0'),
    (64, 2, 15, r'needs an even vocab_size >= 4 .*, got 15'),
    (64, 1, 2, r'needs an even vocab_size >= 4 .*, got 2'),
])
def test_associative_recall_bad_sizes_are_user_errors(seq_len, num_pairs, vocab_size, message):
  with pytest.raises(UserError, match=message):
    tasks.associative_recall(jax.random.key(0), 2, seq_len, num_pairs, vocab_size)
