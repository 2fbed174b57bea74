"""The Lyapunov experiment: a tiny run writes its records and figures from the gradient sweep's
own networks (its half decay rate is the sweep's rate halved, to float32 rounding), resumes with nothing
left to do, and bad input fails with one line. The algorithm and the theory are tested in
tests/measure/test_lyapunov.py."""

import json
import os

import pytest

from lib import experiments
from lib.experiments import gradient_decay
from lib.runtime.errors import UserError
from tests.conftest import validated

# tanh and the LRU (the golden run has the LSTM too): a cell with scales and one without
TINY = dict(cells=('tanh', 'lru'), sigma_w2=(1.0, 4.0), hidden_size=6, input_size=3,
            batch_size=2, seq_len=12, burn_in=2, fit_k_min=0, fit_k_max=-1, num_seeds=2)


def test_a_tiny_run_measures_the_gradient_sweeps_networks(tmp_path):
  cfg = validated('lyapunov', **TINY)
  workdir = str(tmp_path / 'run')
  out = experiments.run(cfg, workdir)
  assert 'rate/2' in out and 'lyapunov_spectrum.png' in out
  records = [json.loads(line) for line in open(os.path.join(workdir, 'results.jsonl'))]
  assert len(records) == 2 * 2 + 2  # tanh at two scales; the lru one ring
  sweep_cfg = validated('gradient_decay', **{k: v for k, v in TINY.items()
                                             if k not in ('seq_len', 'burn_in')},
                        seq_lens=(12,), length_buckets=())
  for cell in ('tanh',):  # one program of the sweep's to compare with
    sweep = gradient_decay.compute_group(sweep_cfg, (cell, 12))
    mine = [r for r in records if r['cell'] == cell]
    assert [r['half_decay_rate'] for r in mine] == pytest.approx(  # another program: float32
        [r['decay_rate'] / 2 for r in sweep], rel=1e-5, abs=1e-7)
  for r in records:
    assert r['status'] == 'ok'
    assert len(r['exponents']) == r['state_size'] == (12 if r['cell'] == 'lru' else 6)
    assert (r['theory_exponents'] is not None) == (r['cell'] == 'tanh')
  assert os.path.isfile(os.path.join(workdir, 'plots', 'lyapunov_top.png'))
  experiments.run(cfg, workdir)
  with open(os.path.join(workdir, 'results.jsonl')) as f:
    assert len(f.readlines()) == len(records)  # a rerun repeats no point


@pytest.mark.parametrize('overrides,message', [
    (dict(seq_len=10, burn_in=10), 'config.burn_in (10) leaves no step'),
    (dict(cells=('irnn',)), 'irnn fixes its recurrent kernel'),
    (dict(num_exponents=-1), 'config.num_exponents'),
])
def test_bad_input_fails_in_one_line(overrides, message):
  with pytest.raises(UserError, match=message.replace('(', r'\(').replace(')', r'\)')):
    validated('lyapunov', **overrides)
