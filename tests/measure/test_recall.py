"""The recall split (lib/measure/recall) against a brute-force scan of every window, a
hand-worked text, and a lookup model that copies what followed the latest match; the
report's share of a gap by class (lib/report/tables.gap_shares)."""

import numpy as np
import pytest

from lib.measure import recall
from lib.report import tables


def _brute_force(ids, window, order):
  """Each position's class by scanning its window from the nearest earlier end backwards."""
  out = []
  for t in range(len(ids)):
    label = recall.REST
    if t >= order:
      suffix = list(ids[t - order:t])
      for e in range(t - 1, order - 1, -1):  # latest first
        if e - order < t - window:
          break
        if list(ids[e - order:e]) == suffix:
          label = recall.RECALL if ids[e] == ids[t] else recall.MISLEADING
          break
    out.append(label)
  return np.asarray(out)


@pytest.mark.parametrize('seed, vocab, window, order', [
    (0, 2, 8, 1), (1, 3, 16, 2), (2, 4, 40, 3), (3, 2, 3, 2), (4, 3, 2, 2), (5, 5, 100, 1)])
def test_classes_equal_a_brute_force_scan(seed, vocab, window, order):
  ids = np.random.default_rng(seed).integers(0, vocab, 400)
  assert (recall.classes(ids, window, order) == _brute_force(ids, window, order)).all()


def test_a_hand_worked_text():
  """'abcabdab?' with order 2, window 8: position 3 ('a' after 'bc'): 'bc' seen? no -> rest;
  position 5 ('d' after 'ab'): 'ab' at 0-1 followed by 'c' -> misleading; position 8 after
  'ab': the latest 'ab' (3-4) was followed by 'd'."""
  text = 'abcabdabd'
  ids = np.asarray([ord(c) for c in text])
  labels = recall.classes(ids, 8, 2)
  r, m, o = recall.RECALL, recall.MISLEADING, recall.REST
  assert labels.tolist() == [o, o, o, o, o, m, o, o, r]
  # with a window of 5, position 8's match (3-4, followed by 5) still fits; position 5's
  # (0-1 followed by 2) needs a window of 5 too, and not of 4
  assert recall.classes(ids, 5, 2)[[5, 8]].tolist() == [m, r]
  assert recall.classes(ids, 4, 2)[[5, 8]].tolist() == [o, o]


def test_a_copying_lookup_model_is_exact_on_recall_and_wrong_on_misleading_tokens():
  """A model that gives probability 1 to what followed the latest earlier match of the last n
  tokens in its window (uniform where there is none): loss 0 on every recall token, infinite on
  every misleading one (it put no mass there), ln V on the rest."""
  vocab, window, order = 3, 24, 2
  ids = np.random.default_rng(7).integers(0, vocab, 600)
  labels = recall.classes(ids, window, order)
  losses = []
  for t in range(len(ids)):
    guess = None
    for e in range(t - 1, order - 1, -1):
      if e - order < t - window:
        break
      if (ids[e - order:e] == ids[t - order:t]).all() and t >= order:
        guess = ids[e]
        break
    losses.append(np.log(vocab) if guess is None else (0.0 if guess == ids[t] else np.inf))
  fractions, means = recall.class_means(losses, labels)
  assert means[recall.RECALL] == 0.0 and means[recall.MISLEADING] == np.inf
  assert means[recall.REST] == pytest.approx(np.log(vocab))
  assert sum(fractions) == pytest.approx(1.0) and min(fractions) > 0.05


def test_gap_shares_sum_to_one_and_weigh_each_class_by_its_positions():
  """Model a is worse than b by 1 nat on recall tokens (30% of positions) and by 0.1 on the
  rest (70%): a gap of 0.37, of which 0.3 / 0.37 comes from recall."""
  shares = tables.gap_shares([0.3, 0.0, 0.7], [2.0, None, 1.1], [1.0, None, 1.0])
  assert shares == pytest.approx([0.3 / 0.37, 0.0, 0.07 / 0.37])
  assert tables.gap_shares([0.5, 0.5, 0.0], [1.0, 1.0, None], [1.0, 1.0, None]) == [None] * 3


def test_the_report_names_the_classes_in_the_records_order():
  """lib/report cannot import lib/measure: its copy of the class names is the measure's."""
  assert tables.RECALL_CLASSES == recall.CLASSES
  assert (recall.RECALL, recall.MISLEADING, recall.REST) == (0, 1, 2)
