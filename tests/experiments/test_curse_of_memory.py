"""The curse-of-memory experiment: the teacher is the linear system it claims to be, a tiny run
writes its records (measured beside closed form) and resumes with nothing left to do, and bad
input fails with one line. The closed forms themselves are tested against Monte Carlo in
tests/measure/test_memory.py."""

import json
import os
import runpy

import numpy as np
import pytest

from lib import experiments
from lib.experiments import curse_of_memory
from lib.measure import memory
from lib.runtime.errors import UserError
from tests.conftest import ROOT

CONFIG = os.path.join(ROOT, 'experiments', 'curse_of_memory.py')
TINY = dict(lambdas=(0.5, 0.9), rhos=(0.0, 1.0), num_chains=2000, models=('lru',),
            teacher_nus=(0.5,), teacher_hidden=3, hidden_size=4, seq_len=12,
            learning_rates=(1e-2,), batch_size=4, test_size=8, num_steps=20, log_every=10,
            num_seeds=2)


def config(**overrides):
  cfg = runpy.run_path(CONFIG)['get_config']()
  cfg.update(overrides)
  return cfg


def test_the_teacher_is_its_linear_system():
  """The impulse response (by the eigendecomposition) against the recursion itself, in float64:
  y = M x (M the Toeplitz matrix of K) equals h_t = A h_{t-1} + B x_t, y_t = C h_t + D x_t,
  stepped over 40 inputs; A's eigenvalues lie on [nu0, 1) (a D dropped, or K shifted by one
  step, is O(1) off)."""
  nu0, hidden, length = 0.8, 6, 40
  a, b, c, d = curse_of_memory.teacher_system(nu0, hidden, seed=3)
  modulus = np.abs(np.linalg.eigvals(a))
  assert nu0 - 1e-9 <= modulus.min() and modulus.max() < 1
  x = np.random.default_rng(0).standard_normal(length)
  h, expected = np.zeros(hidden), []
  for x_t in x:
    h = a @ h + b * x_t
    expected.append(c @ h + d * x_t)
  kernel = curse_of_memory.teacher(nu0, hidden, length, seed=3)
  np.testing.assert_allclose(curse_of_memory.toeplitz(kernel) @ x, expected, rtol=1e-10,
                             atol=1e-10)


def test_a_tiny_run_records_both_parts_and_resumes(tmp_path):
  workdir = str(tmp_path / 'w')
  cfg = experiments.validate(config(**TINY))
  experiments.run(cfg, workdir)
  records = [json.loads(line) for line in open(os.path.join(workdir, 'results.jsonl'))]
  moments = [r for r in records if r['part'] == 'moments']
  students = [r for r in records if r['part'] == 'teacher_student']
  assert len(moments) == 2 * 3 * 2 * 2 and len(students) == 2
  for r in moments:
    assert r['theory'] == memory.theory(r['lambda'], r['rho'], r['parametrisation'])[
        r['quantity']]
    assert r['measured'] == pytest.approx(r['theory'], rel=0.25)  # 2,000 chains: about 3%
    assert abs(r['z']) < 4
  for r in students:
    assert r['status'] == 'ok' and r['steps'] == 20 and 0 < r['test_relative_loss']
  assert sorted(os.listdir(os.path.join(workdir, 'plots'))) == ['curse_of_memory.png',
                                                                'teacher_student.png']
  before = open(os.path.join(workdir, 'results.jsonl')).read()
  experiments.run(cfg, workdir)  # resumed: nothing left
  assert open(os.path.join(workdir, 'results.jsonl')).read() == before


@pytest.mark.parametrize('overrides, message', [
    (dict(lambdas=(0.5, 1.0)), r'config.lambdas: 1.0 is not in \(0, 1\)'),
    (dict(rhos=(1.5,)), r'config.rhos: 1.5 is not a correlation'),
    (dict(teacher_nus=(0.9995,)), r'config.teacher_nus: 0.9995 is above config.r_max'),
    (dict(models=('lstm',)), "unknown model 'lstm'; valid choices: lru, linear"),
    (dict(parts=('figure',)), "unknown part 'figure'; valid choices: moments, teacher_student"),
    (dict(tolerance=0.0), r'config.tolerance \(0.0\) must be in \(0, 1\)'),
])
def test_bad_input_is_a_user_error(overrides, message):
  with pytest.raises(UserError, match=message):
    experiments.validate(config(**overrides))
