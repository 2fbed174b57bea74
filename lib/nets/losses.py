"""The cross-entropy of integer labels, for every model of the suite that predicts a class or a
token.

`cross_entropy` is optax's softmax_cross_entropy_with_integer_labels: logsumexp(z) - z_y, per
example, in float32 at least. Why optax's: it is kept by the JAX team, and it never forms the
(examples, classes) array of log-probabilities that take_along_axis(log_softmax(z), y) forms
(at PTB's 10,000 words, that array cost a fifth of the readout's gradient time: bench/run.py).
"""

import jax.numpy as jnp
import optax


def cross_entropy(logits, labels):
  """-log softmax(logits)[labels] in nats, one per example: logits (..., C), labels (...) int."""
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
