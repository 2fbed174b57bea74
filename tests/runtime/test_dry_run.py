"""--dry_run: operation counts against closed forms, and a dry run that prints the grid, points
and programs of a sweep and writes nothing."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from lib.runtime import dry_run
from tests.conftest import ROOT
from tests.test_run import TINY_FLAGS


def test_cost_counts_every_step_of_a_scan():
  """A scan of 7 steps of (3, 4) @ (4, 5) then tanh: 7 x (2 x 4 flops per output x 15 outputs
  + 15 tanh) = 945 flops, in 7 x 2 operations."""
  def f(w, xs):
    return lax.scan(lambda h, x: (h, jnp.tanh(x @ w)), 0.0, xs)[1]
  w, xs = jnp.ones((4, 5)), jnp.ones((7, 3, 4))
  np.testing.assert_allclose(dry_run.cost(jax.jit(f), (w, xs)), [7 * (2 * 4 * 15 + 15), 14])


def test_cost_of_a_convolution():
  """A 3x3 convolution, 2 -> 6 channels, 'SAME' on 5x5, batch 1: 2 x (3 x 3 x 2) flops for
  each of 150 outputs."""
  x, k = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 6))
  conv = lambda x, k: lax.conv_general_dilated(x, k, (1, 1), 'SAME',
                                               dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(dry_run.cost(conv, (x, k)), [2 * 18 * 150, 1])


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
  """run.py --dry_run on 2 CPU devices: the points and groups, the programs (one per cell at the
  bucket T=5) over up to 2 devices, a row per program with a positive estimate of seconds per
  call; no workdir, no runs/ folder, nothing in the working directory. (TINY_FLAGS: on a 2-core
  machine, where run.py's default is 2 devices, these are tests/test_run.py's main job's
  programs, which the session's compilation cache may already hold.)"""
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
  assert all(float(row[3]) > 0 for row in rows)  # estimated seconds per call
  assert os.listdir(tmp_path) == []  # no workdir, no runs/ in the working directory
