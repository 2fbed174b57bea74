"""Random streams: every random draw of a run comes from a key derived from (seed, stream,
index), so the same config gives the same numbers, and a run restored from a checkpoint draws
what an uninterrupted one draws."""

import jax

# Independent random streams of a seed: the data of each task, then what training draws. The
# numbers are part of every result: a new stream takes a new number, never an old one's.
STREAMS = {'adding': 0, 'copy': 1, 'init': 2, 'test': 3, 'probe': 4, 'order': 5,
           'permutation': 6, 'dropout': 7, 'sample': 8, 'teacher': 9, 'context': 10,
           'induction': 11, 'recall': 12}


def stream_key(seed, stream: str, index=0):
  """Key `index` of the named stream of `seed` (a task's batches, 'init' for parameters, 'test'
  for held-out data, 'probe' for measurement directions, 'order' for epoch shuffles,
  'permutation' for a fixed permutation of positions, 'dropout' for dropout masks, 'sample' for
  text drawn from a language model, 'teacher' for a teacher-student task's inputs, 'context'
  for the targets and perturbations of a context measurement, 'induction' for the random
  sequences of the induction diagnostic, 'recall' for associative recall's training
  batches)."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), STREAMS[stream]), index)
