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

# one cell, 2 lengths, 3 scales x 2 seeds: 6 points per group, padded to 8 on 8 devices
FLAGS = [f for f in TINY_FLAGS if 'sigma_w2' not in f and 'cells' not in f] + [
    '--config.sigma_w2=0.5,1,4', '--config.cells=gru']


def _run(workdir, devices: int, *flags):
  env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
  result = subprocess.run([sys.executable, os.path.join(ROOT, 'run.py'), *FLAGS, *flags,
                           f'--workdir={workdir}'], env=env, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr
  with open(os.path.join(workdir, 'environment.json')) as f:
    assert len(json.load(f)['runs'][-1]['devices']) == devices
  return [json.loads(line) for line in open(os.path.join(workdir, 'results.jsonl'))]


@pytest.fixture(scope='module')
def one_device(tmp_path_factory):
  return _run(tmp_path_factory.mktemp('one'), 1)


def test_sharded_sweep_is_bit_identical_to_the_single_device_run(tmp_path, one_device):
  """6 points per group on 8 devices (padded to 8): every record, profile and rate to the last
  bit (each device maps the same per-point program over its points; lib/runtime/devices)."""
  many = _run(tmp_path / 'many', 8)
  assert many == one_device
  assert len({(r['sigma_w2'], r['seed']) for r in many}) == 6  # 3 scales x 2 seeds, no padding


def test_a_points_batch_is_bit_identical_across_device_counts(tmp_path):
  """--points_batch=2: points vmapped two at a time on each device; 1 device and 4 devices
  (6 points padded to 8) agree bit for bit, and the workdir records the batch, so a rerun
  without it is refused rather than mixed."""
  one_group = ['--config.cells=tanh', '--config.seq_lens=5', '--points_batch=2']
  one = _run(tmp_path / 'one', 1, *one_group)
  assert _run(tmp_path / 'four', 4, *one_group) == one
  with open(tmp_path / 'one' / 'config.json') as f:
    assert json.load(f)['points_batch'] == 2
  result = subprocess.run([sys.executable, os.path.join(ROOT, 'run.py'), *FLAGS,
                           *one_group[:2], f'--workdir={tmp_path / "one"}'],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2 and 'differs in: points_batch' in result.stderr


# Trains a tiny GRU on 3 seeds (padded to 4 on 4 devices) in a process with `devices` devices,
# optionally stopping in its third chunk (after the checkpoint at step 20), and saves the result.
TRAIN_SCRIPT = '''
import sys
import numpy as np
import jax
from lib.runtime import train
from tests.runtime.test_train import _setup
checkpoint_dir, out, stop = sys.argv[1:]
model, task = _setup('gru')
real, calls = train.chunk_program, []
def counted(*args):
  chunk = real(*args)
  def wrapped(*chunk_args):
    calls.append(1)
    if stop == 'stop' and len(calls) == 3:
      sys.exit(3)
    return chunk(*chunk_args)
  return wrapped
train.chunk_program = counted
final = train.train(model.init, task, train.optimizer('adam', 1e-2, 1.0), [3, 4, 5], 40, 10,
                    checkpoint_dir or None, checkpoint_every=20)
assert len(jax.tree.leaves(final['params'])[0]) == 3  # no padded seed
np.savez(out, *[np.asarray(leaf) for leaf in jax.tree.leaves(final)])
print(f'chunks run: {len(calls)}')
'''


def _train(tmp_path, name: str, devices: int, checkpoint_dir: str = '', stop: bool = False):
  env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
  out = str(tmp_path / f'{name}.npz')
  result = subprocess.run([sys.executable, '-c', TRAIN_SCRIPT, checkpoint_dir, out,
                           'stop' if stop else 'run'], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == (3 if stop else 0), result.stderr
  return None if stop else (list(np.load(out).values()), result.stdout.split()[-1])


def test_training_stopped_on_4_devices_resumes_on_1_to_the_same_bits(tmp_path):
  """A run stopped on 4 devices after its checkpoint (3 seeds padded to 4) resumes on 1 device
  (the checkpoint holds no padding) to the very bits of an uninterrupted 4-device run. (Training
  on 1 device against 4 is compared in tests/runtime/test_distributed.py.)"""
  four, chunks = _train(tmp_path, 'four', 4)
  _train(tmp_path, 'stopped', 4, str(tmp_path / 'ckpt'), stop=True)
  resumed, resumed_chunks = _train(tmp_path, 'resumed', 1, str(tmp_path / 'ckpt'))
  assert (chunks, resumed_chunks) == ('4', '2')  # steps 20..39 only: 0..19 came from the checkpoint
  assert len(four) == len(resumed)
  for a, b in zip(four, resumed):
    np.testing.assert_array_equal(b, a)


def test_cpu_device_count_defaults_to_one_per_core_and_yields_to_the_environment(monkeypatch):
  from lib.runtime import cli  # pylint: disable=g-import-not-at-top
  from lib.runtime.errors import UserError  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  monkeypatch.delenv('JAX_NUM_CPU_DEVICES', raising=False)
  assert cli.cpu_device_count(None) == cli.cores() <= len(os.sched_getaffinity(0))
  assert cli.cpu_device_count(3) == 3
  with pytest.raises(UserError, match='--cpu_devices=0: need a positive integer'):
    cli.cpu_device_count(0)
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
  assert cli.cpu_device_count(None) is None and cli.cpu_device_count(2) == 2
  monkeypatch.delenv('XLA_FLAGS')
  monkeypatch.setenv('JAX_NUM_CPU_DEVICES', '4')
  assert cli.cpu_device_count(None) is None


def test_a_container_cpu_quota_caps_the_core_count(tmp_path):
  """cgroup v2 cpu.max and v1 cfs quota/period: quota / period rounded up, none without one."""
  from lib.runtime import cli  # pylint: disable=g-import-not-at-top

  def limit(*contents):
    paths = []
    for i, text in enumerate(contents):
      (tmp_path / f'f{i}').write_text(text)
      paths.append(str(tmp_path / f'f{i}'))
    return cli.cgroup_cpu_limit(((str(tmp_path / 'missing'),), tuple(paths)))
  assert limit('200000 100000\n') == 2
  assert limit('150000 100000\n') == 2
  assert limit('50000 100000\n') == 1
  assert limit('max 100000\n') is None
  assert limit('-1\n', '100000\n') is None  # v1: no quota
  assert limit('300000\n', '100000\n') == 3  # v1
  assert cli.cgroup_cpu_limit(((str(tmp_path / 'missing'),),)) is None


FEWER_POINTS = '''
import numpy as np, jax
from lib.runtime import devices
double = lambda p: 2.0 * p
for count, batch, used in [(1, 1, 1), (3, 1, 3), (6, 1, 4), (3, 2, 2), (6, 4, 2)]:
  devices.set_points_batch(batch)
  program = devices.map_points(double, count)
  points = np.arange(count, dtype=np.float32)
  out = devices.run_points(program, points)
  assert len(devices.used_devices(count)) == used, (count, batch)
  assert devices.padded_count(count) == -(-count // (used * batch)) * used * batch
  padded = devices.put(devices.pad(points, count), True, count)
  assert len(padded.sharding.device_set) == len(program(padded).sharding.device_set) == used
  np.testing.assert_array_equal(out, 2.0 * points)
print('ok')
'''


def test_a_program_of_fewer_points_than_devices_uses_only_that_many():
  """On 4 devices: 1 point runs on 1 device, 3 on 3, 6 on all 4 (padded to 8); with points
  batched 2 at a time, 3 points need 2 devices; the outputs are the points', no padding."""
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}
  result = subprocess.run([sys.executable, '-c', FEWER_POINTS], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr


DELTA_ORTHOGONAL_ON_2_DEVICES = '''
import numpy as np, jax
from lib.nets import cnn
from lib.runtime import devices
devices.set_points_batch(2)
program = devices.map_points(lambda seed: cnn.init_params(
    jax.random.key(seed), 8, 64, 3, 1, sigma_w2=1.0, sigma_b2=0.0, init='delta_orthogonal',
    dtype=np.float32)['kernel'].sum(), 8)
for i in range(20):
  devices.run_points(program, np.arange(8, dtype=np.int32) + 8 * i)
print('ok')
'''


def test_batched_qr_inside_programs_on_every_core_does_not_deadlock():
  """2 CPU devices on 2 cores, each computing 2 points at a time of 8 delta-orthogonal layers
  (a QR each): jaxlib's batched CPU QR waits on XLA's thread pool, which both devices occupy,
  and hung here before `devices.one_at_a_time`."""
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  result = subprocess.run([sys.executable, '-c', DELTA_ORTHOGONAL_ON_2_DEVICES], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_one_at_a_time_gives_the_batched_values(dtype):
  """QR of a (2, 3, 5, 5) batch under two vmaps, one matrix at a time: the same bits as the
  batched LAPACK call."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from lib.runtime import devices  # pylint: disable=g-import-not-at-top
  with jax.enable_x64(dtype == np.float64):
    z = jax.random.normal(jax.random.key(0), (2, 3, 5, 5), dtype)
    ours = jax.jit(jax.vmap(jax.vmap(devices.one_at_a_time(jnp.linalg.qr))))(z)
    for a, b in zip(ours, jnp.linalg.qr(z), strict=True):
      np.testing.assert_array_equal(a, b)
