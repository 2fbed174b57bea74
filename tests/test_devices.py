"""Sweeps over several devices (simulated on CPU with --xla_force_host_platform_device_count):
the scales are sharded over every local device in one program, padded to a multiple of the device
count, and the records equal the one-device run's, with no padding in them."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.test_run import TINY_FLAGS

# 3 scales: padded to 4 on 4 devices and to 8 on 8
FLAGS = [f for f in TINY_FLAGS if 'sigma_w2' not in f] + ['--config.sigma_w2=0.5,1,4']


def _run(workdir, devices: int):
  env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
  result = subprocess.run([sys.executable, os.path.join(ROOT, 'run.py'), *FLAGS,
                           f'--workdir={workdir}'], env=env, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr
  with open(os.path.join(workdir, 'environment.json')) as f:
    assert len(json.load(f)['runs'][-1]['devices']) == devices
  return [json.loads(line) for line in open(os.path.join(workdir, 'results.jsonl'))]


@pytest.fixture(scope='module')
def one_device(tmp_path_factory):
  return _run(tmp_path_factory.mktemp('one'), 1)


@pytest.mark.parametrize('devices', [4, 8])
def test_sharded_sweep_equals_the_single_device_run(tmp_path, devices, one_device):
  """Same points in the same order, same statuses, and profiles and rates equal to float32
  rounding: the per-device batch is smaller, and a CPU matmul's blocking (so the order of its
  sums) may depend on it, which moves some values by an ulp (see the README, Determinism)."""
  one, many = one_device, _run(tmp_path / 'many', devices)
  assert [(r['cell'], r['seq_len'], r['sigma_w2'], r['seed']) for r in many] == \
      [(r['cell'], r['seq_len'], r['sigma_w2'], r['seed']) for r in one]
  for a, b in zip(one, many):
    assert a['status'] == b['status']
    for field in ('log_grad_sq', 'log_grad_sq_input'):
      np.testing.assert_allclose(b[field], a[field], rtol=1e-6, atol=1e-6)
    assert b['decay_rate'] == pytest.approx(a['decay_rate'], rel=1e-5, abs=1e-6)
