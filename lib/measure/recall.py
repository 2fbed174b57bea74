"""Which tokens of a text a model could predict by recalling its own context.

Each position t of a text (its token x_t, predicted from the `window` tokens before it) is one
of three classes. Its suffix s = x_{t-n} .. x_{t-1} (n = `order` tokens) is looked up among the
earlier n-grams inside the window, x_{e-n} .. x_{e-1} = s with t - window <= e - n and e < t
(so that the match and the token after it, x_e, are both in the window):
  RECALL      the latest such match was followed by x_t: copying what followed it is right;
  MISLEADING  it was followed by another token: copying it is wrong;
  REST        there is none (or t < n): the context holds nothing to copy.
The latest match is what an induction head (Olsson et al. 2022) or a copy cache copies. A
model's loss on each class, and each class's share of the gap between two models' losses
(lib/report/tables.gap_shares), say where a model's advantage comes from: recall, or everything
else.
"""

import numpy as np

RECALL, MISLEADING, REST = 0, 1, 2
CLASSES = ('recall', 'misleading', 'rest')


def classes(ids, window: int, order: int) -> np.ndarray:
  """(len(ids),) int32: the class of each position of `ids` (module docstring); all REST where
  window <= order (no match and the token after it fit)."""
  ids = np.asarray(ids)
  if order < 1:
    raise ValueError(f'order {order} is not a positive number of tokens')
  out = np.full(len(ids), REST, np.int32)
  grams = np.lib.stride_tricks.sliding_window_view(ids, order) if len(ids) >= order else []
  latest = {}  # n-gram -> the latest e with x_{e-n} .. x_{e-1} equal to it, among e < t
  for t in range(order, len(ids)):
    key = grams[t - order].tobytes()  # x_{t-n} .. x_{t-1}
    e = latest.get(key)
    if e is not None and e - order >= t - window:
      out[t] = RECALL if ids[e] == ids[t] else MISLEADING
    latest[key] = t
  return out


def class_means(losses, labels) -> tuple:
  """(fraction of positions in each class, mean loss in each class or None where empty) of
  per-position `losses` and their `labels`."""
  losses, labels = np.asarray(losses, np.float64), np.asarray(labels)
  fractions, means = [], []
  for c in range(len(CLASSES)):
    chosen = labels == c
    fractions.append(float(np.mean(chosen)))
    means.append(float(np.mean(losses[chosen])) if chosen.any() else None)
  return fractions, means
