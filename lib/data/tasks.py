"""Long-range synthetic tasks, generated on the fly; a batch depends only on (seed, step).

Adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015): T steps of two
channels, a value U[0, 1] and a marker that is 1 at exactly one step in each half of the sequence;
the target is the sum of the two marked values. Predicting the mean (1) has MSE Var = 2/12 = 1/6.

Copy memory (Arjovsky, Shah & Bengio 2016): 10 symbols drawn from 8, then T - 1 blanks, a marker,
and 10 more blanks (T + 20 steps in all); the output must be blank until the marker's 10 blanks
end, then the 10 symbols in order. A memoryless model can only say blank for the first T + 10
steps and guess uniformly among 8 symbols for the last 10: cross-entropy 10 ln 8 / (T + 20) per
step.

Associative recall (Arora et al. 2023, "Zoology": multi-query associative recall, MQAR): D
key-value pairs k1 v1 ... kD vD open the sequence, then each key is queried once at a later
position, and the target there is its value (`associative_recall`; nothing is asked elsewhere,
RECALL_IGNORE). A model that stores no pair can only guess among the values: chance 2/V.
"""

import math

import jax
import jax.numpy as jnp

from lib.runtime import rng
from lib.runtime.errors import UserError

ADDING_BASELINE_MSE = 1.0 / 6.0
COPY_SYMBOLS = 8  # symbols 1..8; 0 is blank, 9 is the marker
COPY_LENGTH = 10
COPY_BLANK, COPY_MARKER = 0, COPY_SYMBOLS + 1
COPY_CLASSES = COPY_SYMBOLS + 2
RECALL_IGNORE = -1  # associative recall's target where no key is queried


def copy_baseline_loss(seq_len: int) -> float:
  """Cross-entropy per step of the best memoryless model on copy memory of delay seq_len."""
  return COPY_LENGTH * math.log(COPY_SYMBOLS) / (seq_len + 2 * COPY_LENGTH)


def batch_key(task: str, seed, step):
  """The key of batch `step` of a run with `seed`: data order depends on (seed, step) alone."""
  return rng.stream_key(seed, task, step)


def adding_problem(key, batch_size: int, seq_len: int):
  """x: (B, T, 2) = (value, marker); y: (B,) the sum of the two marked values."""
  if seq_len < 2:
    raise UserError(f'the adding problem needs seq_len >= 2 (a marker in each half), got {seq_len}')
  k_values, k_first, k_second = jax.random.split(key, 3)
  # drawn flat and reshaped, as copy_memory's symbols are: the same values, a faster compile
  values = jax.random.uniform(k_values, (batch_size * seq_len,)).reshape(batch_size, seq_len)
  half = seq_len // 2
  first = jax.random.randint(k_first, (batch_size,), 0, half)
  second = jax.random.randint(k_second, (batch_size,), half, seq_len)
  steps = jnp.arange(seq_len)
  markers = ((steps == first[:, None]) | (steps == second[:, None])).astype(values.dtype)
  return jnp.stack([values, markers], axis=-1), jnp.sum(values * markers, axis=1)


def copy_memory(key, batch_size: int, seq_len: int):
  """x, y: (B, T + 20) integer tokens (0 blank, 1..8 symbols, 9 marker)."""
  if seq_len < 1:
    raise UserError(f'copy memory needs seq_len >= 1, got {seq_len}')
  # drawn flat and reshaped: the same values as a (batch_size, COPY_LENGTH) draw, and XLA:CPU
  # compiles a flat draw in a fraction of the time (0.3-0.7 s against 1.5-2.2 s, measured)
  symbols = jax.random.randint(key, (batch_size * COPY_LENGTH,), 1, COPY_SYMBOLS + 1).reshape(
      batch_size, COPY_LENGTH)
  blanks = jnp.full((batch_size, seq_len - 1), COPY_BLANK, symbols.dtype)
  marker = jnp.full((batch_size, 1), COPY_MARKER, symbols.dtype)
  tail = jnp.full((batch_size, COPY_LENGTH), COPY_BLANK, symbols.dtype)
  x = jnp.concatenate([symbols, blanks, marker, tail], axis=1)
  y = jnp.concatenate([jnp.full((batch_size, seq_len + COPY_LENGTH), COPY_BLANK, symbols.dtype),
                       symbols], axis=1)
  return x, y


def check_recall(seq_len: int, num_pairs: int, vocab_size: int) -> None:
  """A UserError in one line for sizes associative recall cannot draw."""
  if vocab_size < 4 or vocab_size % 2:
    raise UserError(f'associative recall needs an even vocab_size >= 4 (keys in its first half, '
                    f'values in its second), got {vocab_size}')
  if not 1 <= num_pairs <= vocab_size // 2:
    raise UserError(f'associative recall needs 1 <= num_pairs <= vocab_size / 2 = '
                    f'{vocab_size // 2} (distinct keys), got {num_pairs}')
  if 4 * num_pairs > seq_len:
    raise UserError(f'associative recall needs seq_len >= 4 num_pairs (the pairs, then room to '
                    f'query each), got seq_len {seq_len} for {num_pairs} pairs')


def _distinct(key, batch_size: int, choices: int, size: int):
  """(B, size) distinct integers of 0..choices-1 per row: the head of a random permutation."""
  return jnp.argsort(jax.random.uniform(key, (batch_size, choices)), axis=1)[:, :size]


def associative_recall(key, batch_size: int, seq_len: int, num_pairs: int, vocab_size: int):
  """inputs, targets: (B, T) int32. Zoology's MQAR (zoology/data/associative_recall.py `_mqar`).

  As theirs: the D pairs first, keys from the first half of the vocabulary and values from the
  second, each distinct within a sequence; every key queried once after them; every other
  position after the pairs a noise token uniform over the whole vocabulary; the target at a
  query its value, RECALL_IGNORE elsewhere (their -100); 4 D <= T. Where we differ: the D query
  positions are uniform among the T - 2 D after the pairs (theirs: even offsets only, drawn by a
  power law of exponent 0.01 that puts most queries right after the pairs), so that a query
  tests memory held over the whole rest of the sequence; key 0 is a key (theirs is filler).
  """
  check_recall(seq_len, num_pairs, vocab_size)
  half, rest = vocab_size // 2, seq_len - 2 * num_pairs
  k_keys, k_values, k_slots, k_noise = jax.random.split(key, 4)
  keys = _distinct(k_keys, batch_size, half, num_pairs).astype(jnp.int32)
  values = half + _distinct(k_values, batch_size, half, num_pairs).astype(jnp.int32)
  slots = _distinct(k_slots, batch_size, rest, num_pairs)  # query i (asks key i) in the rest
  rows = jnp.arange(batch_size)[:, None]
  noise = jax.random.randint(k_noise, (batch_size, rest), 0, vocab_size, jnp.int32)
  pairs = jnp.stack([keys, values], axis=-1).reshape(batch_size, 2 * num_pairs)
  ignored = jnp.full((batch_size, rest), RECALL_IGNORE, jnp.int32)
  inputs = jnp.concatenate([pairs, noise.at[rows, slots].set(keys)], axis=1)
  targets = jnp.concatenate([jnp.full_like(pairs, RECALL_IGNORE),
                             ignored.at[rows, slots].set(values)], axis=1)
  return inputs, targets
