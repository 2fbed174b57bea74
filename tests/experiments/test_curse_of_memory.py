"""The curse-of-memory experiment: the teacher is the linear system it claims to be, a tiny run
writes its records (measured beside closed form) and resumes with nothing left to do, and bad
input fails with one line. The closed forms themselves are tested against Monte Carlo in
tests/measure/test_memory.py."""

import json
import os

import jax
import numpy as np
import pytest

from lib import experiments
from lib.experiments import curse_of_memory
from lib.runtime import rng
from lib.runtime.errors import UserError
from tests.conftest import validated

TINY = dict(lambdas=(0.5, 0.9), rhos=(0.0, 1.0), num_chains=2000, models=('lru',),
            teacher_nus=(0.5,), teacher_hidden=3, hidden_size=4, seq_len=12,
            learning_rates=(1e-2,), batch_size=4, test_size=8, num_steps=20, log_every=10,
            num_seeds=2)


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


def _weights(lam: float, parametrisation: str, quantity: str) -> np.ndarray:
  """c_k (k = 0..19,999) with the quantity's variable = sum_k c_k x_{t-k}: h_t = sum_k lambda^k
  x_{t-k}, so dh/dlambda has k lambda^(k-1); gamma h and d(gamma h)/dlambda = gamma' h + gamma
  dh/dlambda (gamma = sqrt(1 - lambda^2)), times dlambda/dnu = lambda ln lambda for exp. Float64
  series, independent of lib.measure.memory's closed forms."""
  k = np.arange(20_000.0)
  h, dh = lam**k, k * lam ** np.maximum(k - 1, 0)
  if parametrisation == 'plain':
    return h if quantity == 'h_sq' else dh
  gamma = np.sqrt(1 - lam**2)
  if quantity == 'h_sq':
    return gamma * h
  d = -lam / gamma * h + gamma * dh
  return d * lam * np.log(lam) if parametrisation == 'exp' else d


def _np_teacher_student_losses(cfg, nu0, seed, params):
  """(test loss, test loss / mean square of the targets) of one seed's student, in numpy: the
  seed's 'test' inputs (jax.random, the one draw to share), the targets by stepping the
  teacher's system h_t = A h_{t-1} + B x_t, y_t = C h_t + D x_t (float64), and the LRU's
  recursion h_t = lambda h_{t-1} + gamma (B x_t), y_t = Re(C h_t) + D x_t (complex128) from
  the trained parameters."""
  x = np.asarray(jax.random.normal(rng.stream_key(seed, 'test'),
                                   (cfg['test_size'], cfg['seq_len'])), np.float64)
  a, b, c, d = curse_of_memory.teacher_system(nu0, cfg['teacher_hidden'], seed)
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  lam = np.exp(-np.exp(p['nu_log']) + 1j * np.exp(p['theta_log']))
  gamma, b_s = np.exp(p['gamma_log']), p['B_re'][:, 0] + 1j * p['B_im'][:, 0]
  c_s = p['C_re'][0] + 1j * p['C_im'][0]
  h, s = np.zeros((len(x), len(b))), np.zeros((len(x), len(lam)), complex)
  y, out = np.zeros_like(x), np.zeros_like(x)
  for t in range(x.shape[1]):
    h = h @ a.T + np.outer(x[:, t], b)
    y[:, t] = h @ c + d * x[:, t]
    s = lam * s + gamma * np.outer(x[:, t], b_s)
    out[:, t] = (s @ c_s).real + p['D'][0, 0] * x[:, t]
  loss = np.mean((out - y) ** 2)
  return loss, loss / np.mean(y**2)


def test_a_tiny_run_records_both_parts_and_resumes(tmp_path, monkeypatch, finals):
  """The whole run of TINY (lambda 0.5, 0.9; rho 0, 1; 2,000 chains; an LRU student of 4
  states on a teacher of 3, nu0 0.5, 20 steps, 2 seeds), then resumed with nothing left to do.

  Moments, against float64 series of the weights c_k of each variable sum_k c_k x_{t-k}
  (`_weights`): rho = 0 (independent unit inputs) gives E = sum c_k^2, rho = 1 (one N(0, 1)
  input throughout) E = (sum c_k)^2; the recorded closed form within rel 1e-9. The recorded
  standard error against the one the inputs imply, sqrt(Var / 2000): Var = 2 (sum c_k)^4 at
  rho = 1 (a Gaussian squared), 2 (sum c_k^2)^2 - 2 sum c_k^4 at rho = 0 (random signs,
  kurtosis 1), within 20% (a 2,000-chain estimate of a standard error is itself uncertain by
  up to 5.5%: 3.6 of those). It is at most sqrt(2 / 2000) = 3.2% of the moment (within the
  same 20%), the config's "about 3%". z is (measured - closed form) / standard error, and
  every measured moment is within 3 standard errors of its closed form (the README's default
  run: 150 within 1.9).

  Teacher-student: each seed's recorded test loss and relative loss recomputed in numpy from
  the trained parameters (`_np_teacher_student_losses`: its own teacher, stepped, not the
  Toeplitz matrix of its impulse response), within rel 1e-5 (float32); a wrong teacher, seed
  or normalisation is off by far more. The plots are drawn; the resumed run (plots not redrawn)
  leaves results.jsonl as it was."""
  workdir = str(tmp_path / 'w')
  cfg = validated('curse_of_memory', **TINY)
  experiments.run(cfg, workdir)
  records = [json.loads(line) for line in open(os.path.join(workdir, 'results.jsonl'))]
  moments = [r for r in records if r['part'] == 'moments']
  students = [r for r in records if r['part'] == 'teacher_student']
  assert len(moments) == 2 * 3 * 2 * 2 and len(students) == 2
  assert {(r['lambda'], r['rho']) for r in moments} == {(0.5, 0.0), (0.5, 1.0), (0.9, 0.0),
                                                        (0.9, 1.0)}
  for r in moments:
    c = _weights(r['lambda'], r['parametrisation'], r['quantity'])
    moment = np.sum(c**2) if r['rho'] == 0 else np.sum(c) ** 2
    variance = (2 * moment**2 - 2 * np.sum(c**4)) if r['rho'] == 0 else 2 * moment**2
    assert r['theory'] == pytest.approx(moment, rel=1e-9), r
    assert r['stderr'] == pytest.approx(np.sqrt(variance / 2000), rel=0.2), r
    assert r['stderr'] <= np.sqrt(2 / 2000) * r['theory'] * 1.2
    assert r['z'] == pytest.approx((r['measured'] - r['theory']) / r['stderr'], rel=1e-12)
    assert abs(r['z']) < 3 and r['status'] == 'ok', r
  assert len(finals) == 1
  for j, r in enumerate(students):
    assert (r['model'], r['teacher_nu'], r['seed'], r['status'], r['steps']) == (
        'lru', 0.5, j, 'ok', 20)
    params = jax.tree.map(lambda a, j=j: a[j], finals[0]['params'])
    loss, relative = _np_teacher_student_losses(cfg, 0.5, j, params)
    assert r['test_loss'] == pytest.approx(loss, rel=1e-5)
    assert r['test_relative_loss'] == pytest.approx(relative, rel=1e-5)
  assert sorted(os.listdir(os.path.join(workdir, 'plots'))) == ['curse_of_memory.png',
                                                                'teacher_student.png']
  before = open(os.path.join(workdir, 'results.jsonl')).read()
  monkeypatch.setattr(curse_of_memory, 'plot', lambda records, plots_dir: [])
  experiments.run(cfg, workdir)  # resumed: nothing left
  assert open(os.path.join(workdir, 'results.jsonl')).read() == before
  assert len(finals) == 1  # nothing trained again


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
    validated('curse_of_memory', **overrides)
