"""--dry_run: operation counts against closed forms; the printed estimates of time and memory
against their definitions on programs counted by hand; and a dry run of run.py that prints the
grid, points and programs of a sweep and writes nothing."""

import os
import re
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest

from lib.runtime import compiled
from lib.runtime import dry_run
from lib.runtime import limits
from tests.conftest import ROOT
from tests.conftest import TINY_FLAGS

UNITS = {'B': 1, 'KiB': 2**10, 'MiB': 2**20, 'GiB': 2**30}


def _scan(w, xs):
  """7 steps of (3, 4) @ (4, 5) then tanh."""
  return lax.scan(lambda h, x: (h, jnp.tanh(x @ w)), 0.0, xs)[1]


def _conv(x, k):
  return lax.conv_general_dilated(x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def test_cost_counts_every_step_of_a_scan():
  """A scan of 7 steps of (3, 4) @ (4, 5) then tanh: 7 x (2 x 4 flops per output x 15 outputs
  + 15 tanh) = 945 flops, in 7 x 2 operations."""
  w, xs = jnp.ones((4, 5)), jnp.ones((7, 3, 4))
  np.testing.assert_allclose(dry_run.cost(jax.jit(_scan), (w, xs)), [7 * (2 * 4 * 15 + 15), 14])


def test_cost_of_a_convolution():
  """A 3x3 convolution, 2 -> 6 channels, 'SAME' on 5x5, batch 1: 2 x (3 x 3 x 2) flops for
  each of 150 outputs."""
  x, k = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 6))
  np.testing.assert_allclose(dry_run.cost(_conv, (x, k)), [2 * 18 * 150, 1])


def test_calibration_solves_for_the_cost_per_flop_and_per_operation(monkeypatch):
  """With the reference programs' seconds made flops x 2e-11 + operations x 3e-7 (instead of
  timed), the calibration gives back exactly those costs (a transposed or swapped fit does not)."""
  rates = np.asarray([2e-11, 3e-7])
  monkeypatch.setattr(dry_run, '_seconds',
                      lambda fn, args, repeats: float(dry_run.cost(fn, args) @ rates))
  np.testing.assert_allclose(dry_run.calibrate(), rates, rtol=1e-9)


def _size(text: str) -> float:
  number, unit = text.split()
  return float(number) * UNITS[unit]


def test_report_prints_each_programs_time_and_memory_by_their_definitions(monkeypatch):
  """report() of an experiment of three programs counted by hand, at a calibration of 1 ns per
  flop and 1 us per operation (patched in, instead of timed):
    scan   7 x (2 x 4 x 15 + 15) = 945 flops in 14 operations (the closed form above): 14.945 us
           a call, 3 calls; arguments (4 x 5 + 7 x 3 x 4) x 4 = 416 bytes, output 7 x 3 x 5 x 4
           = 420 bytes, and the scan's temporaries
    conv   2 x 18 x 150 = 5,400 flops in 1 operation: 6.4 us, 2 calls; arguments
           (50 + 108) x 4 = 632 bytes, output 150 x 4 = 600
    double x * 2 of 16 floats, x donated: 16 flops, 1 operation: 1.016 us, 1 call; 64 bytes in,
           64 out, the same 64 (aliased): 64 bytes
  Each row's s/call (3 significant digits), the total sum of calls x s/call, and each peak
  memory: arguments + outputs - aliased + temporaries, the first three counted by hand (and
  XLA's memory_analysis must agree), the temporaries XLA's; with the scan's need free (it fits
  exactly) the conv is marked as not fitting, the others not."""
  device = jax.devices()[:1]
  f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  programs = [
      dry_run.Program('scan', compiled.Program(jax.jit(_scan), device), (f32(4, 5), f32(7, 3, 4)),
                      3),
      dry_run.Program('conv', compiled.Program(jax.jit(_conv), device),
                      (f32(1, 5, 5, 2), f32(3, 3, 2, 6)), 2),
      dry_run.Program('double', compiled.Program(jax.jit(lambda x: x * 2, donate_argnums=0),
                                                 device), (f32(16),), 1)]
  seconds = {'scan': 945e-9 + 14e-6, 'conv': 5400e-9 + 1e-6, 'double': 16e-9 + 1e-6}
  by_hand = {'scan': (416, 420, 0), 'conv': (632, 600, 0), 'double': (64, 64, 64)}
  temps = {}
  for program in programs:
    analysis = program.fn.compile(*program.args).memory_analysis()
    assert (analysis.argument_size_in_bytes, analysis.output_size_in_bytes,
            analysis.alias_size_in_bytes) == by_hand[program.name]
    temps[program.name] = analysis.temp_size_in_bytes
  need = {name: a + o - alias + temps[name] for name, (a, o, alias) in by_hand.items()}
  assert need['scan'] < need['conv']  # so that 'does not fit' below marks the conv alone

  experiment = types.SimpleNamespace(
      grid=lambda cfg: [(('a',), [1, 2]), (('b',), [3])],
      programs=lambda cfg, groups: programs)
  cfg = {'experiment': 'by_hand', 'seed': 0, 'num_seeds': 1, 'dtype': 'float32'}
  monkeypatch.setattr(dry_run, 'calibrate', lambda dtype: np.asarray([1e-9, 1e-6]))
  monkeypatch.setattr(limits, 'available', lambda devices: (need['scan'], 'patched'))
  lines = dry_run.report(experiment, cfg).splitlines()
  assert 'points: 3 in 2 groups' in lines
  assert 'calibrated here: 1.0 GFLOP/s and 1.00 us per operation (tanh RNNs, forward+backward)' \
      in lines
  rows = {line.split()[0]: line.split() for line in lines
          if line.split() and line.split()[0] in seconds}
  calls = {'scan': 3, 'conv': 2, 'double': 1}
  for name, row in rows.items():
    assert int(row[1]) == calls[name]
    assert float(row[2]) == pytest.approx(seconds[name], rel=5e-3), name
    assert abs(_size(f'{row[3]} {row[4]}') - need[name]) <= 0.05 * UNITS[row[4]], name
    assert (row[5:] == ['does', 'not', 'fit']) == (name == 'conv'), name
  assert len(rows) == 3
  total = re.search(r'estimated compute: (\S+) s', '\n'.join(lines)).group(1)
  assert float(total) == pytest.approx(sum(calls[n] * seconds[n] for n in calls), rel=5e-3)


@pytest.mark.slow  # a run.py process (the calibration timed, two programs compiled): ~8 CPU-s
def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
  """run.py --dry_run on 2 CPU devices: the points and groups, the programs (one per cell at the
  bucket T=5) over up to 2 devices, a row per program with a positive estimate of seconds per
  call and of peak memory, and the total the sum of calls x seconds per call (each printed to
  3 significant digits, so within 2 x 5e-3 relative); no workdir, no runs/ folder, nothing in
  the working directory. (TINY_FLAGS: on a 2-core machine, where run.py's default is 2 devices,
  these are tests/test_run.py's main job's programs, which the session's compilation cache may
  already hold.) What the numbers are is checked in-process above."""
  workdir = tmp_path / 'w'
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'run.py'), *TINY_FLAGS, '--dry_run',
       '--cpu_devices=2', f'--workdir={workdir}'], cwd=tmp_path,
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert 'points: 16 in 4 groups' in lines  # 2 cells x 2 lengths, 2 scales x 2 seeds each
  # a bucket per cell; --cpu_devices splits the CPU into 2 devices
  assert 'programs to compile: 2, each over up to 2 device(s) (cpu; one process)' in lines
  rows = [line.split() for line in lines if line.startswith(('tanh T=', 'gru T='))]
  assert [row[:3] for row in rows] == [['tanh', 'T=5', '2'], ['gru', 'T=5', '2']]
  assert all(float(row[3]) > 0 and _size(f'{row[4]} {row[5]}') > 0 for row in rows)
  total = re.search(r'estimated compute: (\S+) s', result.stdout).group(1)
  assert float(total) == pytest.approx(sum(2 * float(row[3]) for row in rows), rel=1e-2)
  assert os.listdir(tmp_path) == []  # no workdir, no runs/ in the working directory
