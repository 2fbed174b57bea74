"""Sweeps over several devices (simulated on CPU with --xla_force_host_platform_device_count):
the points are sharded over every device in one program, padded to a multiple of the device
count, and the records are bit-identical to the one-device run's, with no padding in them."""

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
def test_sharded_sweep_is_bit_identical_to_the_single_device_run(tmp_path, devices, one_device):
  """6 points on 4 devices (padded to 8) and on 8 (padded to 8): every record, profile and rate
  to the last bit (each device maps the same per-point program over its points; lib/devices)."""
  many = _run(tmp_path / 'many', devices)
  assert many == one_device
  assert len({(r['sigma_w2'], r['seed']) for r in many}) == 6  # 3 scales x 2 seeds, no padding


# Trains a tiny GRU on 3 seeds (padded to 4 on 4 devices) in a process with `devices` devices,
# optionally stopping in its third chunk (after the checkpoint at step 20), and saves the result.
TRAIN_SCRIPT = '''
import sys
import numpy as np
import jax
from lib import train
from tests.test_train import _setup
checkpoint_dir, out, stop = sys.argv[1:]
model, task = _setup('gru')
if stop == 'stop':
  real = train.chunk_program
  def stops_in_third_chunk(*args):
    chunk, calls = real(*args), []
    def wrapped(*chunk_args):
      calls.append(1)
      if len(calls) == 3:
        sys.exit(3)
      return chunk(*chunk_args)
    return wrapped
  train.chunk_program = stops_in_third_chunk
final = train.train(model.init, task, train.optimizer('adam', 1e-2, 1.0), [3, 4, 5], 40, 10,
                    checkpoint_dir or None, checkpoint_every=20)
assert len(jax.tree.leaves(final['params'])[0]) == 3  # no padded seed
np.savez(out, *[np.asarray(leaf) for leaf in jax.tree.leaves(final)])
'''


def _train(tmp_path, name: str, devices: int, checkpoint_dir: str = '', stop: bool = False):
  env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
  out = str(tmp_path / f'{name}.npz')
  result = subprocess.run([sys.executable, '-c', TRAIN_SCRIPT, checkpoint_dir, out,
                           'stop' if stop else 'run'], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == (3 if stop else 0), result.stderr
  return None if stop else list(np.load(out).values())


def test_training_is_bit_identical_across_device_counts_and_resumes_on_another(tmp_path):
  """Seeds sharded over 4 devices train to the very bits of 1 device; a run stopped on 4 devices
  after its checkpoint resumes on 1 device (the checkpoint holds no padding) to the same bits."""
  one = _train(tmp_path, 'one', 1)
  four = _train(tmp_path, 'four', 4)
  _train(tmp_path, 'stopped', 4, str(tmp_path / 'ckpt'), stop=True)
  resumed = _train(tmp_path, 'resumed', 1, str(tmp_path / 'ckpt'))
  assert len(one) == len(four) == len(resumed)
  for a, b, c in zip(one, four, resumed):
    np.testing.assert_array_equal(b, a)
    np.testing.assert_array_equal(c, a)
