"""Golden records: every config of experiments/ run at a tiny size (tests/golden/__init__.py's
TINY: every kind of record and every model family of each experiment) equals its results.jsonl
kept in tests/golden/, field by field: exactly in the environment the records were made in (the
package versions and the CPU of tests/golden/environment.json), else within RTOL. The records
were computed by this code; what checks them against independent computations are the tests of
each experiment. These guard the numbers as a whole: a change of any number in any record fails,
naming the run, the record, the field and both values.

To regenerate (only when a number is meant to change, in a commit of its own that says which
numbers moved and why): python -m tests.golden [NAME ...]."""

import json
import os

import numpy as np
import pytest

from tests import golden
from tests.conftest import config
from tests.conftest import ROOT


@pytest.mark.parametrize('name', golden.runs_of('sweeps'))
def test_records_equal_the_golden_records(name, data_dir, tmp_path):
  """The sweeps' runs (the training runs: tests/test_golden_training.py and
  tests/test_golden_language.py): results.jsonl against tests/golden/<name>.jsonl, the same
  records in the same order, every field equal (exactly; at RTOL where the environment
  differs)."""
  golden.check(name, str(tmp_path / 'w'), data_dir)


@pytest.mark.parametrize('name', [name for name in golden.TINY if name not in golden.SLOW])
def test_each_experiment_draws_its_plots_from_its_golden_records(name, tmp_path):
  """The golden runs skip their plots: here each experiment's `plot` (what --plot_only calls)
  draws every figure of its golden records, each a non-empty PNG (the figures' content is for a
  person to look at; the numbers they show are the records')."""
  from lib import experiments  # pylint: disable=g-import-not-at-top
  experiment = experiments.get(config(golden.TINY[name][0])['experiment'])
  paths = experiment.plot(golden.read_golden(name), str(tmp_path / 'plots'))
  assert paths and all(p.endswith('.png') and os.path.getsize(p) > 0 for p in paths), paths


def test_every_config_has_a_golden_run_and_every_run_a_file():
  """Each config file of experiments/ is the config of a fast run (a new config cannot be
  added without its golden records); tests/golden/ holds a file of records for each run and no
  other, and the environment they were made in."""
  configs = {f[:-len('.py')] for f in os.listdir(os.path.join(ROOT, 'experiments'))
             if f.endswith('.py') and not f.startswith('_')}
  fast = {config for name, (config, _) in golden.TINY.items() if name not in golden.SLOW}
  assert fast == configs
  files = {f[:-len('.jsonl')] for f in os.listdir(golden.GOLDEN_DIR) if f.endswith('.jsonl')}
  assert files == set(golden.TINY)
  assert sorted(name for names in golden.FILES.values() for name in names) == sorted(configs)
  assert set(golden.PACKAGES) <= set(golden.read_environment())


# ---- the comparison itself, on hand-made records ----------------------------------------------

RECORD = {'cell': 'tanh', 'seq_len': 5, 'seed': 1, 'status': 'ok', 'decay_rate': -0.25,
          'steps': 4, 'log_grad_sq': [1.5, -2.0, None], 'fit': {'slope': 0.5}}


def _changed(path, value):
  """RECORD with the value at `path` (keys and list indices) replaced."""
  record = json.loads(json.dumps(RECORD))
  where = record
  for key in path[:-1]:
    where = where[key]
  where[path[-1]] = value
  return record


@pytest.mark.parametrize('exact', [True, False])
def test_a_changed_number_is_named_by_record_field_and_values(exact):
  """One number moved by 1e-3 (relative) in the second of two records: one line naming the run,
  the record (index and key fields), the path into the field and both values, exact or not."""
  moved = _changed(('log_grad_sq', 1), -2.002)
  lines = golden.compare('x', [RECORD, RECORD], [RECORD, moved], exact=exact)
  assert lines == ['x record 1 (cell=tanh seq_len=5 seed=1): log_grad_sq[1]: expected -2.0, '
                   'got -2.002']
  # named by the fields of the experiment's key alone (sigma_b2 0.0 and seed 0 both in it)
  key = lambda r: (r['cell'], r['sigma_b2'], r['seed'])
  moved = {**moved, 'sigma_b2': 0.0, 'seed': 0, 'model': 'unkeyed'}
  lines = golden.compare('x', [moved], [RECORD], exact=exact, key=key)
  assert lines[0].startswith('x record 0 (cell=tanh sigma_b2=0.0 seed=0): ')


def test_exact_sees_one_ulp_and_tolerance_sees_past_rtol():
  """Exact: one ulp (float64) of a value is a difference, and so is 4 against 4.0 (int against
  float, as JSON reads them). At tolerance: one ulp and 0.5 RTOL pass, 2 RTOL does not."""
  ulp = np.nextafter(-0.25, 0.0)
  assert len(golden.compare('x', [RECORD], [_changed(('decay_rate',), ulp)])) == 1
  assert len(golden.compare('x', [RECORD], [_changed(('steps',), 4.0)])) == 1
  for factor, count in ((0.0, 0), (0.5, 0), (2.0, 1)):
    value = -0.25 * (1 + factor * golden.RTOL) if factor else ulp
    assert len(golden.compare('x', [RECORD], [_changed(('decay_rate',), value)],
                              exact=False)) == count, factor


@pytest.mark.parametrize('path, value, field', [
    (('status',), 'diverged', 'status'),  # text: always exactly
    (('log_grad_sq', 2), 1e-9, 'log_grad_sq[2]'),  # null (non-finite, as stored) against a number
    (('log_grad_sq',), [1.5, -2.0], 'log_grad_sq (length)'),
    (('fit', 'slope'), 0.6, 'fit.slope'),  # a nested field
    (('fit', 'extra'), 1, 'fit.extra'),  # a field added
])
def test_other_differences_are_named_at_any_tolerance(path, value, field):
  for exact in (True, False):
    lines = golden.compare('x', [RECORD], [_changed(path, value)], exact=exact)
    assert lines and all(f': {field}: ' in line for line in lines), lines


def test_missing_records_and_long_lists_of_differences():
  """A record fewer is said with both counts; a field missing is named; more than MAX_LINES
  differences are cut to MAX_LINES lines and a count of the rest."""
  assert golden.compare('x', [RECORD, RECORD], [RECORD]) == ['x: 1 records, expected 2']
  del_status = {k: v for k, v in RECORD.items() if k != 'status'}
  assert golden.compare('x', [RECORD], [del_status]) == [
      "x record 0 (cell=tanh seq_len=5 seed=1): status: expected 'ok', got '(missing)'"]
  many = [_changed(('decay_rate',), float(i)) for i in range(golden.MAX_LINES + 5)]
  lines = golden.compare('x', [RECORD] * len(many), many)
  assert len(lines) == golden.MAX_LINES + 1
  assert lines[-1] == 'x: ... and 5 more differences'


@pytest.mark.slow
@pytest.mark.parametrize('name', ['ptb_char', 'ptb_word'])
def test_the_cut_penn_treebank_is_the_builders_corpus_cut(name, tmp_path):
  """golden.ptb_corpus (the stand-in the runs read) against lib.data.text.corpus built by TFDS
  from the package: the same vocabulary and level, and each split the builder's first
  PTB_TOKENS ids."""
  from lib.data import text  # pylint: disable=g-import-not-at-top
  built = text.corpus(name, str(tmp_path / 'tfds'))
  cut = golden.ptb_corpus(name)
  assert cut['vocabulary'] == built['vocabulary'] and cut['level'] == built['level']
  for split, n in golden.PTB_TOKENS.items():
    np.testing.assert_array_equal(cut[split], built[split][:n])
