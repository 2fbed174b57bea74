"""Sweeps and training over several devices (simulated on CPU with
--xla_force_host_platform_device_count): the points are sharded over the devices in one program,
padded to a multiple of the device count, and the records are bit-identical to the one-device
run's, with no padding in them.

A process's device count is fixed when JAX starts, so the many-device side runs in subprocesses
and the one-device side in this (pytest's, one CPU device) process. Two processes of 4 devices
start with the module (`started`) and compute while this one does: run.py end to end
(--points_batch, the device count recorded in the workdir), and tests/runtime/many_devices.py's
`four`, which runs a
sweep, two trainings and the fewer-points programs that several tests below compare with this
process's. The tests that start processes are in the slow tier. Every draw is seeded (the
sweeps' by their config's seeds, training by its seeds)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import device_env
from tests.conftest import records
from tests.conftest import ROOT
from tests.conftest import TINY
from tests.conftest import TINY_FLAGS
from tests.conftest import validated
from tests.runtime import many_devices
from tests.runtime.many_devices import FEWER
from tests.runtime.many_devices import SWEEP
from tests.runtime.many_devices import TRAIN_SEEDS

MANY_DEVICES = os.path.join(ROOT, 'tests', 'runtime', 'many_devices.py')
# --points_batch=2: one group of 7 scales x 1 seed, 7 points: on 4 devices 2 a batch on each (8,
# 1 of them padding); on one device 4 batches (8 as well)
SCALES = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
BATCHED_FLAGS = [f for f in TINY_FLAGS if not f.startswith(
    ('--config.sigma_w2', '--config.cells', '--config.seq_lens', '--config.num_seeds'))] + [
        f'--config.sigma_w2={",".join(map(str, SCALES))}', '--config.cells=gru',
        '--config.seq_lens=5', '--config.num_seeds=1', '--points_batch=2']
BATCHED = {**TINY, 'sigma_w2': SCALES, 'cells': ('gru',), 'seq_lens': (5,), 'num_seeds': 1}


def _devices_recorded(workdir) -> int:
  with open(os.path.join(workdir, 'environment.json')) as f:
    return len(json.load(f)['runs'][-1]['devices'])


class _Started:
  """A subprocess started at once, its output in files (no pipe to fill up); `wait()` checks
  that it succeeded and returns its stderr."""

  def __init__(self, folder, args, devices: int, defaults: bool = False):
    self.folder = folder
    self._err = open(folder / 'stderr', 'w+')
    self._process = subprocess.Popen(args, cwd=ROOT, env=device_env(devices, defaults),
                                     stdout=subprocess.DEVNULL, stderr=self._err, text=True)

  def wait(self) -> str:
    try:
      self._process.wait(timeout=300)
    finally:
      self._process.kill()
    self._err.seek(0)
    err = self._err.read()
    assert self._process.returncode == 0, err
    return err


@pytest.fixture(scope='module')
def started(tmp_path_factory):
  """The subprocesses, started by the first test that asks (the first in the file), so that they
  compile while this process computes its side: 'four' (many_devices.py four, 4 devices) and
  'run.py' and 'run.py one' (BATCHED_FLAGS on 4 devices and on 1, each a workdir 'w' in its
  folder, at JAX's default compile settings: see the batch test)."""
  four = tmp_path_factory.mktemp('four')
  batched, one = tmp_path_factory.mktemp('batched'), tmp_path_factory.mktemp('batched_one')
  run_py = [sys.executable, os.path.join(ROOT, 'run.py'), *BATCHED_FLAGS]
  processes = {
      'four': _Started(four, [sys.executable, MANY_DEVICES, 'four', str(four)], 4),
      'run.py': _Started(batched, [*run_py, f'--workdir={batched / "w"}'], 4, defaults=True),
      'run.py one': _Started(one, [*run_py, f'--workdir={one / "w"}'], 1, defaults=True)}
  yield processes
  for process in processes.values():
    process._process.kill()  # pylint: disable=protected-access  (a test that failed first)


def _four_devices(started_) -> tuple:
  """(the folder many_devices.py four wrote, its out.json), once that process has ended well."""
  started_['four'].wait()
  with open(started_['four'].folder / 'out.json') as f:
    return started_['four'].folder, json.load(f)


@pytest.fixture(scope='module')
def one_device():
  """This process (one CPU device), its plots not drawn (the records are compared)."""
  import jax  # pylint: disable=g-import-not-at-top
  from lib.experiments import gradient_decay  # pylint: disable=g-import-not-at-top
  assert jax.device_count() == 1, 'the one-device side needs a process of one device'
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(gradient_decay, 'plot', lambda records, plots_dir: [])
    yield


@pytest.mark.slow
def test_sharded_sweep_is_bit_identical_to_the_single_device_run(tmp_path, started,
                                                                  one_device):
  """6 points per group on 4 devices (padded to 8, 2 a device) against one device (6 in one
  lax.map): every record, profile and rate to the last bit (each device maps the same
  per-point program over its points; lib/runtime/devices), of one config, with no padding."""
  from lib import experiments  # pylint: disable=g-import-not-at-top
  del one_device
  experiments.run(validated(**SWEEP), str(tmp_path / 'one'))
  many = _four_devices(started)[0] / 'sweep'
  assert _devices_recorded(many) == 4 and _devices_recorded(tmp_path / 'one') == 1
  assert json.loads((many / 'config.json').read_text()) == json.loads(
      (tmp_path / 'one' / 'config.json').read_text())
  assert records(many) == records(tmp_path / 'one')
  assert len(records(many)) == 2 * 6  # 2 lengths x 6 points
  assert len({(r['sigma_w2'], r['seed']) for r in records(many)}) == 6  # no padding


@pytest.mark.slow
def test_a_points_batch_is_bit_identical_across_device_counts(started):
  """--points_batch=2 (run.py end to end): 7 points vmapped two at a time on each of 4 devices
  (padded to 8) agree bit for bit with one device's (4 batches of 2), no padding in the records;
  the workdir records the batch and the 4 devices, so a rerun without the batch is refused (exit
  status 2, one line) rather than mixed.

  Both runs compile at JAX's defaults, as users' runs do: under the tests' fast-compile settings
  together (tests/compiling.py: LLVM -O0 and XLA's loop emitters) the 4-device batch differed
  from the 1-device one in the last bits of 1 of the 7 records (measured, the same in 3 runs of
  each; under each setting alone, and at the defaults, they agree)."""
  from lib import experiments  # pylint: disable=g-import-not-at-top
  from lib.runtime.errors import UserError  # pylint: disable=g-import-not-at-top
  started['run.py'].wait()
  started['run.py one'].wait()
  four, one = started['run.py'].folder / 'w', started['run.py one'].folder / 'w'
  assert _devices_recorded(four) == 4 and _devices_recorded(one) == 1
  for workdir in (four, one):
    with open(workdir / 'config.json') as f:
      assert json.load(f)['points_batch'] == 2
  assert records(four) == records(one)
  assert len({(r['sigma_w2'], r['seed']) for r in records(four)}) == len(records(four)) == 7
  before = (four / 'results.jsonl').read_bytes()
  with pytest.raises(UserError, match='differs in: points_batch') as error:
    experiments.run(validated(**BATCHED), str(four))
  assert error.value.exit_status == 2 and '\n' not in str(error.value)
  assert (four / 'results.jsonl').read_bytes() == before


@pytest.mark.slow
def test_training_stopped_on_4_devices_resumes_on_1_to_the_same_bits(tmp_path, started,
                                                                       one_device):
  """A run stopped on 4 devices in its third chunk, after its checkpoint at step 20 (5 seeds
  padded to 8), resumes on 1 device (the checkpoint holds no padding) and runs only the last 2
  chunks, to the very bits of an uninterrupted 4-device run, which ran 4. (Training on 1 device
  against 4 in two processes: tests/runtime/test_distributed.py.)"""
  import jax  # pylint: disable=g-import-not-at-top
  del one_device
  out, reported = _four_devices(started)
  four = list(np.load(out / 'four.npz').values())
  shutil.copytree(out / 'ckpt', tmp_path / 'ckpt')
  resumed, resumed_chunks = many_devices.train(str(tmp_path / 'ckpt'))
  assert len(jax.tree.leaves(resumed['params'])[0]) == len(TRAIN_SEEDS)  # no padded seed
  assert (reported['chunks'], resumed_chunks) == (4, 2)  # steps 20..39: 0..19 were checkpointed
  resumed = [np.asarray(leaf) for leaf in jax.tree.leaves(resumed)]
  assert len(four) == len(resumed)
  for a, b in zip(four, resumed):
    np.testing.assert_array_equal(b, a)


def test_cpu_device_count_defaults_to_one_per_core_and_yields_to_the_environment(monkeypatch):
  """Without XLA_FLAGS or JAX_NUM_CPU_DEVICES: one device per core this process may use; an
  explicit count wins (and 0 is a one-line error); a device count already in XLA_FLAGS or
  JAX_NUM_CPU_DEVICES is left alone (None)."""
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


@pytest.mark.slow
def test_a_program_of_fewer_points_than_devices_uses_only_that_many(started):
  """On 4 devices: 1 point runs on 1 device, 3 on 3, 6 on all 4 (padded to 8); with points
  batched 2 at a time, 3 points need 2 devices (padded to 4), and 4 at a time 6 need 2 (padded
  to 8); the padded input and the output sit on those devices alone, and the outputs are the
  points', no padding."""
  for (count, batch, used), got in zip(FEWER, _four_devices(started)[1]['fewer'], strict=True):
    assert got['used'] == got['input_devices'] == got['output_devices'] == used, (count, batch)
    assert got['padded'] == -(-count // (used * batch)) * used * batch, (count, batch)
    np.testing.assert_array_equal(got['out'], 2.0 * np.arange(count, dtype=np.float32))


@pytest.mark.slow
def test_batched_qr_inside_programs_on_every_core_does_not_deadlock():
  """2 CPU devices on 2 cores, each computing 2 points at a time of 8 delta-orthogonal layers
  (a QR each): jaxlib's batched CPU QR waits on XLA's thread pool, which both devices occupy,
  and hung here before `devices.one_at_a_time`. (The hang is a race: with the layers' QRs
  batched again, these 20 calls hung in about 1 run of 4 on a 2-core machine; the next test
  checks its cause, every time.)"""
  result = subprocess.run([sys.executable, MANY_DEVICES, 'qr_on_2'], cwd=ROOT,
                          env=device_env(2), capture_output=True, text=True, timeout=60)
  assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr


def test_every_qr_of_a_batched_program_takes_one_matrix():
  """The program of the test above (8 delta-orthogonal layers vmapped, points 2 at a time),
  lowered: each LAPACK call of its QRs (geqrf, and orgqr, which forms Q) takes a single 64 x 64
  matrix, never a batch of them, so none waits on XLA's thread pool (`devices.one_at_a_time`).
  With the layers' QRs batched they take (2, 8, 64, 64)."""
  import re  # pylint: disable=g-import-not-at-top
  from lib.runtime import devices  # pylint: disable=g-import-not-at-top
  program = many_devices.delta_orthogonal_program(2)
  seeds = devices.abstract(np.arange(8, dtype=np.int32), True, 8, 2)
  text = program.trace(seeds).lower().as_text()
  calls = re.findall(r'custom_call @(lapack_\w*(?:geqrf|orgqr)\w*)\(.*: \(tensor<([\dx]+)x\w+>',
                     text)
  assert {name for name, _ in calls} == {'lapack_sgeqrf_ffi', 'lapack_sorgqr_ffi'}, calls
  assert all(shape == '64x64' for _, shape in calls), calls


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_one_at_a_time_gives_the_batched_values(dtype):
  """QR of a (2, 3, 5, 5) batch (normal draws of a seeded numpy generator: jax.random's would
  compile a program of its own) under two vmaps, one matrix at a time: the same bits as the
  batched LAPACK call."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from lib.runtime import devices  # pylint: disable=g-import-not-at-top
  with jax.enable_x64(dtype == np.float64):
    z = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(dtype))
    assert z.dtype == dtype
    ours = jax.jit(jax.vmap(jax.vmap(devices.one_at_a_time(jnp.linalg.qr))))(z)
    for a, b in zip(ours, jnp.linalg.qr(z), strict=True):
      np.testing.assert_array_equal(a, b)
