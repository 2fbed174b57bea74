"""How far back a trained sequence model reads: Khandelwal, He, Qi & Jurafsky (2018, "Sharp
Nearby, Fuzzy Far Away: How Neural Language Models Use Context"; their code
urvashik/lm-context-analysis, context_size.py and perturb.py), for any model given as a function
of its context.

Targets are positions t of a token stream with at least `max_lag` tokens of history; the
context of t is ids[t - max_lag .. t - 1], the target ids[t]. A model is measured through
`next_loss(contexts (N, d) int32, targets (N,)) -> (N,)` nats, the loss of each target after
reading its context from the start (a zero state for an RNN, a window of d for a transformer;
the caller decides what the model sees: a transformer whose window w < d reads the last w).

  truncation    the loss with only the last d tokens, against d; the effective context is the
                smallest d whose mean loss is within `relative_tolerance` of the full history's
  shuffle       the last d tokens kept, everything further back permuted (per target)
  replace       the last d tokens kept, everything further back drawn from the unigram
                distribution
The increase over the full-history loss is paired per target (the same targets, the same
model), so its standard error is that of the differences.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from lib.runtime.errors import UserError

PERTURBATIONS = ('truncate', 'shuffle', 'replace')


def check(num_tokens: int, max_lag: int, lags, num_targets: int) -> None:
  if max_lag < 1:
    raise UserError(f'max_lag ({max_lag}) must be at least 1')
  bad = [d for d in lags if not 1 <= d <= max_lag]
  if bad:
    raise UserError(f'lag {bad[0]} is not in 1..max_lag ({max_lag})')
  if num_tokens <= max_lag:
    raise UserError(f'the stream ({num_tokens} tokens) is not longer than max_lag ({max_lag}): '
                    'no target has that much history')
  if num_targets < 2:
    raise UserError(f'num_targets ({num_targets}) must be at least 2 (a standard error)')


def target_positions(num_tokens: int, max_lag: int, num_targets: int, key) -> np.ndarray:
  """`num_targets` distinct positions t in [max_lag, num_tokens), drawn from `key`, sorted (all of
  them, in order, if there are no more)."""
  count = num_tokens - max_lag
  if num_targets >= count:
    return np.arange(max_lag, num_tokens)
  chosen = jax.random.choice(key, count, (num_targets,), replace=False)
  return np.sort(np.asarray(chosen)) + max_lag


def windows(ids, positions, max_lag: int):
  """(contexts (N, max_lag), targets (N,)): ids[t - max_lag .. t - 1] and ids[t] per t."""
  ids = np.asarray(ids)
  positions = np.asarray(positions)
  index = positions[:, None] + np.arange(-max_lag, 0)[None, :]
  return ids[index].astype(np.int32), ids[positions].astype(np.int32)


def unigram(ids, vocab_size: int) -> np.ndarray:
  """The tokens' frequencies in `ids` (the replace perturbation's distribution)."""
  counts = np.bincount(np.asarray(ids), minlength=vocab_size).astype(np.float64)
  return counts / counts.sum()


def perturb(contexts, d: int, how: str, key, probabilities=None):
  """Contexts (N, L) with the last d tokens kept and the first L - d perturbed: 'shuffle'
  permutes them within each row (one permutation per row), 'replace' draws each from
  `probabilities` (the unigram); 'truncate' returns the last d tokens alone (N, d). One
  compiled program serves every d (shuffle and replace keep the shape (N, L))."""
  if how == 'truncate':
    return contexts[:, contexts.shape[1] - d:]
  if how not in PERTURBATIONS:
    raise UserError(f'unknown perturbation {how!r}; valid choices: {", ".join(PERTURBATIONS)}')
  return _perturb(jnp.asarray(contexts), jnp.int32(d), how, key,
                  None if how == 'shuffle' else jnp.asarray(probabilities, jnp.float32))


@functools.partial(jax.jit, static_argnames='how')
def _perturb(contexts, d, how, key, probabilities):
  n, length = contexts.shape
  position = jnp.arange(length)[None, :]
  far = position < length - d  # (1, L): the positions perturbed
  if how == 'shuffle':
    # random keys in [0, 1) at the far positions and 1 + position at the kept ones, sorted: a
    # uniform permutation of the far tokens among the far positions, the last d in place
    keys = jnp.where(far, jax.random.uniform(key, (n, length)), 1.0 + position)
    return jnp.take_along_axis(contexts, jnp.argsort(keys, axis=1), axis=1)
  # by the inverse of the cumulative distribution: memory O(N L), where jax.random.categorical's
  # Gumbel noise is O(N L V) (48 GB for 1,000 contexts of 300 words of a 10,000-word vocabulary)
  cdf = jnp.cumsum(probabilities)
  u = jax.random.uniform(key, (n, length)) * cdf[-1]
  drawn = jnp.minimum(jnp.searchsorted(cdf, u, side='right'), probabilities.shape[0] - 1)
  return jnp.where(far, drawn.astype(contexts.dtype), contexts)


def mean_and_stderr(values) -> tuple:
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def curves(next_loss, contexts, targets, lags, perturbations, key, probabilities=None,
           progress=None) -> dict:
  """{'full': (mean, stderr), perturbation: {d: (mean loss, its stderr, mean increase over the
  full history's loss, the increase's stderr)}} over the targets; each (perturbation, d) draws
  from its own key (fold_in of `key` by perturbation and d), so a curve does not depend on the
  other lags asked for. progress: called after each (perturbation, d), if given."""
  full = np.asarray(next_loss(jnp.asarray(contexts), jnp.asarray(targets)), np.float64)
  out = {'full': mean_and_stderr(full)}
  for p_index, how in enumerate(perturbations):
    if how not in PERTURBATIONS:
      raise UserError(f'unknown perturbation {how!r}; valid choices: {", ".join(PERTURBATIONS)}')
    out[how] = {}
    for d in lags:
      k = jax.random.fold_in(jax.random.fold_in(key, p_index), d)
      loss = np.asarray(next_loss(perturb(contexts, d, how, k, probabilities),
                                  jnp.asarray(targets)), np.float64)
      out[how][d] = (*mean_and_stderr(loss), *mean_and_stderr(loss - full))
      if progress is not None:
        progress()
  return out


def effective_context(lags, losses, full_loss: float, relative_tolerance: float):
  """The smallest lag d whose loss is at most relative_tolerance above the full history's (and
  every longer lag's too), or None if none is. One-sided: a truncation that lowers the loss
  costs nothing (a transformer trained on windows of 64 characters predicts worse at its last
  position than at its 48th, so reading 48 tokens beats reading its whole window)."""
  lags, losses = list(lags), list(losses)
  for i, d in enumerate(lags):
    if all(loss - full_loss <= relative_tolerance * abs(full_loss) for loss in losses[i:]):
      return d
  return None


def zero_crossing(lags, increases, stderrs, num_stderr: float = 2.0):
  """The first lag whose increase is within num_stderr standard errors of 0: where the curve
  meets zero (how far back perturbing what lies further back still matters), or None.

  The first, not the one from which on every increase is: past the crossing each lag is a
  test of a null effect, and asking all of ten of them to pass at 2 standard errors fails
  four times in ten by chance (and on float32 rounding: an increase of 3e-8 nats with a
  standard error of 1.4e-8 at a lag of 128 in a tanh RNN whose gradient halves every
  1.3 tokens)."""
  for d, m, s in zip(lags, increases, stderrs):
    if abs(m) <= num_stderr * s:
      return d
  return None


def log_gradient_reach(step, log_prob, carry0, inputs, targets, weights=None):
  """ln of the mean over targets of ||d log p(target) / d input_t||^2, t = 0..T-1, for a
  recurrent model read as step(carry, input_t) -> carry over inputs (T, N, E) (the embeddings
  of each target's context, the last one read at t = T - 1: lag T - t) and log_prob(carry,
  targets) -> (N,) the log-probability of each target after its context. In the log domain
  (lib/measure/gradients.log_grad_profile: each step's cotangent renormalised), so a
  sensitivity of e^-3000 is a number, not 0. log_prob's gradient is the cotangent the reverse
  pass starts from: d log p / d input_t = (d log p / d out)(d out / d input_t) exactly.
  weights (N,): each target's log p scaled by it (default 1): a target of weight 0 adds an
  exact 0 to the mean (padding), the mean still over all N."""
  from lib.measure import gradients  # pylint: disable=g-import-not-at-top
  if weights is None:
    weights = jnp.ones((jnp.asarray(targets).shape[0],), jax.tree.leaves(carry0)[0].dtype)
  profile = gradients.log_grad_profile(step, lambda carry: log_prob(carry, targets), carry0,
                                       inputs, weights)
  return profile.log_grad_sq_input


def log_gradient_reach_direct(log_prob_of_delta, delta_shape, dtype=jnp.float32, weights=None):
  """ln of the mean over targets of ||d log p(target) / d e_t||^2, t = 0..T-1, for a model read
  as one function log_prob_of_delta(delta (N, T, E)) -> (N,): each target's log-probability with
  delta added to the embeddings of its context (a transformer: no product of per-step
  Jacobians to underflow, so one jax.grad at delta = 0). A position the model does not read
  has a gradient of exactly 0: ln 0 = -inf. weights: as log_gradient_reach's."""
  weights = jnp.ones(delta_shape[:1], dtype) if weights is None else weights
  g = jax.grad(lambda d: jnp.sum(weights * log_prob_of_delta(d)))(jnp.zeros(delta_shape, dtype))
  return jnp.log(jnp.mean(jnp.sum(jnp.square(g), axis=-1), axis=0))


def windowed(contexts, window: int):
  """The last `window` tokens of each context (what a transformer of that window reads) and how
  many earlier positions it cannot see (their reach is -inf)."""
  contexts = jnp.asarray(contexts)
  unseen = max(0, contexts.shape[1] - window)
  return contexts[:, unseen:], unseen
