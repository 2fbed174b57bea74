"""bench/run.py on a tiny grid: the sweep it times and the plain JAX loop it compares against
give the same profiles, and its check rejects profiles that are not the same; the flax.linen.Conv
CNN it times PatchConv against computes the same logits."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from bench import run as bench
from lib.experiments import gradient_decay
from lib.nets import models
from tests.conftest import ROOT
from tests.conftest import config


@pytest.fixture(scope='module')
def tiny_grid():
  """The grid of one cell: the bench's code is the same for every cell (what differs is lib's,
  checked in tests/nets and tests/measure, and bench/run.py checks its own grid of tanh and lstm
  with check_same before it times it); a second cell cost two compiles more (4 CPU-s)."""
  cfg = gradient_decay.validate(config(
      cells=('tanh',), seq_lens=(16,), sigma_w2=(1.0, 3.0), hidden_size=16, input_size=4,
      batch_size=4, num_seeds=2))
  return cfg, bench.our_sweep(cfg)(), bench.user_loop(cfg)()


def test_the_sweep_and_the_plain_jax_loop_give_the_same_profiles(tiny_grid):
  cfg, ours, theirs = tiny_grid
  assert sorted(ours) == sorted(theirs) == [('tanh', 16)]
  for group, profiles in ours.items():
    assert profiles.shape == (2, cfg['num_seeds'], group[1]) == theirs[group].shape
  assert bench.check_same(ours, theirs) < 1e-4


def test_the_check_rejects_a_profile_off_by_a_hundredth(tiny_grid):
  _, ours, theirs = tiny_grid
  off = {group: profiles.copy() for group, profiles in theirs.items()}
  off['tanh', 16][1, 0, 3] += 0.01
  with pytest.raises(AssertionError, match='tanh T=16'):
    bench.check_same(ours, off)


def test_flax_conv_net_computes_what_patch_conv_computes_and_the_check_sees_a_difference():
  patch, xla = models.ConvNet(3, 10), bench.xla_conv_net(3, 10)
  rng = np.random.default_rng(0)  # random inputs and parameters (ConvNet's init compiles slowly)
  x = rng.normal(size=(4, 40, 1)).astype(np.float32)
  params = jax.tree.map(lambda a: rng.normal(size=a.shape).astype(np.float32) * 0.3,
                        jax.eval_shape(lambda: patch.init(jax.random.key(0), x)))
  y = np.arange(4, dtype=np.int32)
  assert bench.check_same_conv(patch.apply, xla.apply, params, x, y, gradients=False) < 1e-5
  with pytest.raises(AssertionError, match='CNN logits'):
    bench.check_same_conv(patch.apply, lambda params, x: xla.apply(params, x[:, ::-1]), params,
                          x, y, gradients=False)


def test_the_device_checks_column_lists_steps_and_figures():
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      'device_check', os.path.join(ROOT, 'bench', 'device_check.py'))
  device_check = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(device_check)
  text = device_check.column('gpu [CudaDevice(id=0)]',
                             {'fast test tier': (0, 61.4, '494 passed in 60.1s'),
                              'main job': (1, 3.0, '')},
                             {'sweep_vs_jax_loop': 12.3456, 'backend': 'gpu'})
  assert text.splitlines() == [
      '| figure | gpu [CudaDevice(id=0)] |', '|---|---|',
      '| fast test tier | passed, 61 s; 494 passed in 60.1s |',
      '| main job | FAILED (exit 1), 3 s |',
      '| `sweep_vs_jax_loop` | 12.35 |', '| `backend` | gpu |']


@pytest.mark.slow
def test_the_device_check_runs_every_step_and_records_a_failure(tmp_path):
  """bench/device_check.py on this CPU at tiny sizes: one test, a tiny main job, and a benchmark
  that does not exist; the column records the two that passed and the one that failed, and the
  exit status is 1."""
  out = tmp_path / 'check'
  result = subprocess.run(
      [sys.executable, 'bench/device_check.py', f'--out={out}',
       '--tests=tests/test_bench.py::test_the_device_checks_column_lists_steps_and_figures '
       '-n 0',
       '--main_job=--config.cells=tanh --config.seq_lens=4 --config.sigma_w2=1 '
       '--config.num_seeds=1 --config.hidden_size=4 --config.batch_size=2',
       '--bench=--only nosuch'], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1, result.stderr
  rows = (out / 'column.md').read_text().splitlines()
  assert rows[0].startswith('| figure | cpu ')
  assert rows[2].startswith('| fast test tier | passed, ') and '1 passed' in rows[2]
  assert rows[3].startswith('| main job (`python run.py`) | passed, ')
  assert rows[4].startswith('| `bench/run.py --only nosuch` | FAILED (exit 2), ')
  assert (out / 'main_job' / 'results.jsonl').exists()
