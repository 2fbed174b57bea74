"""The transformer-depth experiment: Xiong et al.'s depth exponent of pre-LN's last-layer W2
gradient measured at width 256, and a tiny sweep run as run.py runs it (records, a divergence
recorded as a status, resume, summary, plots). The networks and the per-layer measurement are
tested against hand-worked and autodiff gradients in tests/nets/test_transformer.py."""

import os
import runpy

import jax
import numpy as np
import pytest

from lib import experiments
from lib.experiments import transformer_depth as td
from lib.runtime.errors import UserError
from lib.runtime.results import ResultStore
from tests.conftest import ROOT


def default_config():
  return runpy.run_path(os.path.join(ROOT, 'experiments', 'transformer_depth.py'))['get_config']()


def validated(**overrides) -> dict:
  config = default_config()
  config.update(overrides)
  return td.validate(config)


def test_pre_ln_last_layer_w2_gradient_falls_like_one_over_sqrt_depth_at_width_256():
  """Xiong et al. (2020), Theorem 1: ||dL/dW2_L||_F = O(d sqrt(ln d / L)) for pre-LN, exponent
  -1/2 (the records hold the square: slope -1 on ln L). Measured over L = 4, 16, 64 at d = 256
  (2 seeds, 16 tokens): -0.546 here; the test holds it within 0.1 of -1/2."""
  cfg = validated(variants=('pre_ln',), depths=(4, 16, 64), width=256, num_heads=4, seq_len=16,
                  num_seeds=2)
  records = [r for depth in cfg['depths'] for r in td.compute_group(cfg, ('pre_ln', depth))]
  assert {r['status'] for r in records} == {'ok'}
  fit = td.depth_fits(records)['pre_ln']
  assert fit['theory'] == -1.0
  assert abs(fit['slope'] / 2 - (-0.5)) < 0.1, fit


def test_a_tiny_sweep_records_resumes_summarises_and_plots(tmp_path):
  """Two variants x two depths: every record has the experiment's fields and per-layer lists of
  the right lengths; none+nomlp+alpha=1e10 (each block multiplies the stream by about 1e10)
  overflows at depth 3 and is recorded 'diverged' (not a crash), and has no W2 gradient (None);
  a second run computes nothing; the summary has a row per variant; the figures are written."""
  cfg = validated(variants=('post_ln', 'none+nomlp+alpha=1e10'), depths=(1, 3), width=16,
                  num_heads=2, seq_len=6, num_seeds=2)
  store = ResultStore.create(str(tmp_path / 'w'), cfg)
  assert td.run(cfg, store) == 8
  records = store.records()
  assert [td.point_key(r) for r in records] == [k for _, keys in td.grid(cfg) for k in keys]
  for r in records:
    assert set(td.RECORD_FIELDS) <= set(r)
    assert len(r['log_grad_sq']) == len(r['rank_residual']) == r['depth'] + 1
    assert len(r['log_qk_grad_sq']) == r['depth']
    assert (r['log_weight_grad_sq'] is None) == (not r['mlp'])
  status = {(r['variant'], r['depth']): r['status'] for r in records}
  assert status == {('post_ln', 1): 'ok', ('post_ln', 3): 'ok',
                    ('none+nomlp+alpha=1e10', 1): 'ok', ('none+nomlp+alpha=1e10', 3): 'diverged'}
  assert td.run(cfg, ResultStore.create(str(tmp_path / 'w'), cfg)) == 0
  table = td.summary(records)
  for v in cfg['variants']:
    assert any(line.startswith(v + ' ') for line in table.splitlines()), table
  assert 'diverged@L=3' in table
  paths = td.plot(records, str(tmp_path / 'plots'))
  assert sorted(os.path.basename(p) for p in paths) == [
      'rank_collapse.png', 'transformer_profiles.png', 'transformer_w2_depth.png']
  assert all(os.path.getsize(p) > 0 for p in paths)


def test_text_inputs_are_a_window_of_the_ids_embedded_row_by_row():
  """ptb inputs: X_0's rows are the embedding table's rows of a contiguous window of the ids, so
  a repeated token gives a repeated row (here ids 0..3 repeating: rows t and t + 4 equal)."""
  cfg = validated(inputs='ptb_char', seq_len=9, width=8, num_heads=2)
  ids = jax.numpy.asarray(np.tile(np.arange(4), 50), np.int32)
  x = np.asarray(td.input_tokens(jax.random.key(3), cfg, ids, vocab_size=4))[0]
  assert x.shape == (9, 8)
  np.testing.assert_array_equal(x[:5], x[4:])
  assert len({tuple(row) for row in x}) == 4


@pytest.mark.parametrize('overrides,message', [
    (dict(variants=('pre_ln', 'pre_lm')), "config.variants: unknown transformer variant 'pre_lm'"),
    (dict(width=30, num_heads=4), 'width 30 must be a positive multiple of num_heads 4'),
    (dict(seq_len=1), 'config.seq_len: 1 is not an integer number of tokens >= 2'),
    (dict(depths=(4, 0)), 'config.depths: 0 is not a positive integer number of blocks'),
    (dict(inputs='imagenet'), "unknown inputs 'imagenet'; valid choices: gaussian, ptb_char"),
    (dict(variants=()), 'config.variants is empty'),
])
def test_bad_configs_are_one_line_errors(overrides, message):
  config = default_config()
  config.update(overrides)
  with pytest.raises(UserError) as e:
    experiments.validate(config)
  assert message in str(e.value) and '\n' not in str(e.value), str(e.value)
