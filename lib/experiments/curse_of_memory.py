"""The curse of memory (Zucchet & Orvieto 2024, "Recurrent neural networks: vanishing and
exploding gradients are not the end of the story"), in two parts (`config.parts`):

moments          the 1-D recurrence h_{t+1} = lambda h_t + x_{t+1} with inputs of autocorrelation
                 rho^|dt|: E[h^2] and E[(dh/dparameter)^2] measured by float64 Monte Carlo
                 (lib/measure/memory: independent chains run until the start is forgotten)
                 against their closed forms, for the plain, normalized (gamma = sqrt(1 -
                 lambda^2)) and exp (lambda = exp(-exp(nu))) parametrisations. One group per
                 (lambda, rho), its chains shared by the parametrisations; one record per
                 (quantity, parametrisation, lambda, rho). As lambda -> 1 the plain derivative's
                 moment grows like (1 - lambda)^-3, faster than the state's (1 - lambda)^-1:
                 memory makes the state ever more sensitive to its parameter, even though
                 nothing explodes through time.
teacher_student  their linear teacher-student task: a linear teacher (`teacher_hidden` states,
                 dense, its eigenvalues' moduli in [nu0, 1) as in their LinearSystem: nu0 + (1 -
                 nu0) tanh|l| of a Gaussian matrix's eigenvalues l, phases kept) maps N(0, 1)
                 inputs to y_t = C h_t + D x_t over `seq_len` steps; a student (`linear`: the
                 real diagonal recurrence without normalisation, or the `lru`, lib/nets/lru,
                 `hidden_size` states, its ring init on [nu0, r_max] as their
                 force_lsi_min_nu_model) is trained by Adam on the mean squared error; the final
                 loss on held-out sequences per (model, nu0, learning rate, seed). Their linear
                 RNN is dense (A a matrix); ours is diagonal, so part of its loss is what a real
                 diagonal cannot represent (the teacher's complex eigenvalues), at every nu0.

The teacher is linear, so its output is a causal convolution of the input with the impulse
response K_0 = C B + D, K_k = C A^k B, computed once on the host in float64 (numpy's eig) and
applied as one (T, T) Toeplitz matmul per batch: no device-specific code, no scan.
"""

import functools
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

from lib.measure import memory
from lib.nets import lru
from lib.report import tables
from lib.runtime import config as config_lib
from lib.runtime import rng
from lib.runtime import sweep
from lib.runtime import train
from lib.runtime import training
from lib.runtime.errors import UserError
from lib.runtime.results import ResultStore

PARTS = ('moments', 'teacher_student')
SHRINK_KEYS = ('hidden_size', 'batch_size', 'test_size', 'seq_len')  # what makes programs smaller
RECORD_FIELDS = ('part',)
MOMENT_FIELDS = ('quantity', 'parametrisation', 'lambda', 'rho', 'measured', 'stderr', 'theory')

SPEC = {
    'experiment': config_lib.text(),
    'parts': config_lib.choices(PARTS, 'part'),
    # moments
    'lambdas': config_lib.reals(0.0, 'a lambda in (0, 1)'),
    'rhos': config_lib.reals(0.0, 'a correlation in [0, 1]'),
    'parametrisations': config_lib.choices(memory.PARAMETRISATIONS, 'parametrisation'),
    'num_chains': config_lib.integer(2, 'an integer number of chains >= 2'),
    'tolerance': config_lib.real(0.0, 'a relative tolerance in (0, 1)'),
    # teacher-student
    'models': config_lib.choices(lru.LINEAR_CELLS, 'model'),
    'teacher_nus': config_lib.reals(0.0, 'a modulus in (0, 1)'),
    'teacher_hidden': config_lib.integer(1, 'a positive integer'),
    'hidden_size': config_lib.integer(1, 'a positive integer'),
    'seq_len': config_lib.integer(1, 'a positive integer length'),
    'r_max': config_lib.real(0.0, 'a radius in [0, 1)'),
    'max_phase': config_lib.real(0.0, 'an angle >= 0'),
    'parallel_scan': config_lib.flag(),
    'optimizer': config_lib.choice(tuple(train.OPTIMIZERS), 'optimizer'),
    'learning_rates': config_lib.reals(0.0, 'a learning rate > 0'),
    'batch_size': config_lib.integer(1, 'a positive integer'),
    'test_size': config_lib.integer(1, 'a positive integer'),
    'num_steps': config_lib.integer(1, 'a positive integer'),
    'log_every': config_lib.integer(1, 'a positive integer'),
    'checkpoint_every': config_lib.integer(0, 'a non-negative integer'),
    'num_seeds': config_lib.integer(1, 'a positive integer number of seeds'),
    'seed': config_lib.integer(0, 'a non-negative integer below 2**31', maximum=2**31 - 1),
}


def validate(config) -> dict:
  cfg = config_lib.validate(config, SPEC)
  train.check_schedule(cfg)
  for lam in cfg['lambdas']:
    if not 0 < lam < 1:
      raise UserError(f'config.lambdas: {lam} is not in (0, 1) (|lambda| < 1 has a stationary '
                      'state; 0 has no memory)')
  for rho in cfg['rhos']:
    if rho > 1:
      raise UserError(f'config.rhos: {rho} is not a correlation in [0, 1]')
  if not 0 < cfg['tolerance'] < 1:
    raise UserError(f'config.tolerance ({cfg["tolerance"]}) must be in (0, 1)')
  for nu in cfg['teacher_nus']:
    if not 0 < nu < 1:
      raise UserError(f'config.teacher_nus: {nu} is not a modulus in (0, 1)')
    if nu > cfg['r_max']:
      raise UserError(f'config.teacher_nus: {nu} is above config.r_max ({cfg["r_max"]}), the '
                      "top of the student's ring [nu0, r_max]")
  lru.check_ring(min(cfg['teacher_nus']), cfg['r_max'], cfg['max_phase'])
  for lr in cfg['learning_rates']:
    if lr <= 0:
      raise UserError(f'config.learning_rates: {lr} is not a learning rate > 0')
  return cfg


# ---- the grid --------------------------------------------------------------------------------


def point_key(record: dict) -> tuple:
  if record['part'] == 'moments':
    return ('moments', record['quantity'], record['parametrisation'], record['lambda'],
            record['rho'])
  return ('teacher_student', record['model'], record['teacher_nu'], record['learning_rate'],
          record['seed'])


def grid(cfg: dict) -> list:
  groups = []
  if 'moments' in cfg['parts']:
    groups += [(('moments', lam, rho),
                [('moments', q, p, lam, rho) for p in cfg['parametrisations']
                 for q in memory.QUANTITIES])
               for lam in cfg['lambdas'] for rho in cfg['rhos']]
  if 'teacher_student' in cfg['parts']:
    groups += [(('teacher_student', model, nu, lr),
                [('teacher_student', model, nu, lr, s) for s in sweep.seeds(cfg)])
               for model in cfg['models'] for nu in cfg['teacher_nus']
               for lr in cfg['learning_rates']]
  return groups


# ---- moments ---------------------------------------------------------------------------------


def moments_key(cfg: dict, lam: float, rho: float):
  """The chains' key of one (lambda, rho): the seed's, folded with the two values (so that a
  point's numbers do not depend on which other points the grid holds)."""
  key = jax.random.fold_in(jax.random.key(cfg['seed']), 1_000_003)  # not a training stream
  for value in (lam, rho):
    key = jax.random.fold_in(key, int(round(value * 1e9)) % 2**31)
  return key


def compute_moments(cfg: dict, lam: float, rho: float) -> list:
  steps = memory.steps_to_stationary(lam, rho, cfg['tolerance'])
  measured = memory.moments(lam, rho, cfg['num_chains'], moments_key(cfg, lam, rho), steps,
                            cfg['parametrisations'])
  records = []
  for p in cfg['parametrisations']:
    expected = memory.theory(lam, rho, p)
    for q in memory.QUANTITIES:
      mean, stderr = measured[p][q]
      records.append({
          'part': 'moments', 'quantity': q, 'parametrisation': p, 'lambda': lam, 'rho': rho,
          'measured': mean, 'stderr': stderr, 'theory': expected[q],
          'z': (mean - expected[q]) / stderr if stderr > 0 else None,
          'num_chains': cfg['num_chains'], 'num_steps': steps, 'dtype': 'float64',
          'status': 'ok' if math.isfinite(mean) else 'diverged'})
  return records


# ---- teacher-student -------------------------------------------------------------------------


def teacher_system(nu0: float, hidden: int, seed: int) -> tuple:
  """(A (n, n), B (n,), C (n,), D) of the teacher, float64, n = hidden: A = V diag(l') V^-1 with
  l' = (nu0 + (1 - nu0) tanh|l|) e^(i arg l), l the eigenvalues of G ~ N(0, 1 / n) (Zucchet &
  Orvieto's LinearSystem, max_phase pi; real, as G's eigenvalues come in conjugate pairs),
  B ~ N(0, 1), C ~ N(0, 1 / n), D ~ N(0, 1)."""
  draw = np.random.default_rng([seed, int(round(nu0 * 1e6)), hidden])
  g = draw.standard_normal((hidden, hidden)) / math.sqrt(hidden)
  b = draw.standard_normal(hidden)
  c = draw.standard_normal(hidden) / math.sqrt(hidden)
  d = draw.standard_normal()
  eig, vecs = np.linalg.eig(g)
  eig = (nu0 + (1 - nu0) * np.tanh(np.abs(eig))) * np.exp(1j * np.angle(eig))
  return np.real(vecs @ np.diag(eig) @ np.linalg.inv(vecs)), b, c, d


def teacher(nu0: float, hidden: int, seq_len: int, seed: int) -> np.ndarray:
  """The teacher's impulse response K (seq_len,), float64: K_0 = C B + D, K_k = C A^k B, by the
  eigendecomposition of A (C A^k B = sum_i (C V)_i l_i^k (V^-1 B)_i, no matrix powers)."""
  a, b, c, d = teacher_system(nu0, hidden, seed)
  eig, vecs = np.linalg.eig(a)
  left, right = c @ vecs, np.linalg.solve(vecs, b.astype(complex))
  k = np.arange(seq_len)
  kernel = np.real((left * right)[None, :] * eig[None, :] ** k[:, None]).sum(axis=1)
  kernel[0] += d
  return kernel


def toeplitz(kernel: np.ndarray) -> np.ndarray:
  """M (T, T) with M[t, s] = K[t - s] for s <= t, else 0: y = M x is the causal convolution."""
  t = np.arange(kernel.size)
  lag = t[:, None] - t[None, :]
  return np.where(lag >= 0, kernel[np.clip(lag, 0, None)], 0.0)


def make_model(cfg: dict, name: str, nu0: float):
  def init(key):
    return lru.init(name, key, 1, cfg['hidden_size'], 1, r_min=nu0, r_max=cfg['r_max'],
                    max_phase=cfg['max_phase'])

  def apply(params, x):  # (B, T) -> (B, T)
    y, _ = lru.apply(params, jnp.swapaxes(x, 0, 1)[..., None], parallel=cfg['parallel_scan'])
    return jnp.swapaxes(y[..., 0], 0, 1)
  return init, apply


def make_task(cfg: dict, apply) -> train.Task:
  """Inputs x ~ N(0, 1) (B, T) from the seed's stream; targets M_seed x, M the Toeplitz matrix of
  its teacher (data: the seeds' matrices stacked, indexed by seed - config.seed)."""
  def sample(data, seed, key, size):
    x = jax.random.normal(key, (size, cfg['seq_len']))
    return x, x @ data[seed - cfg['seed']].T

  def loss(params, batch):
    x, y = batch
    return jnp.mean(jnp.square(apply(params, x) - y))

  def evaluate(params, data, seed):
    x, y = sample(data, seed, rng.stream_key(seed, 'test'), cfg['test_size'])
    test_loss = loss(params, (x, y))
    # over the targets' mean square: 1 is the loss of predicting 0, whatever the teacher's scale
    return {'test_loss': test_loss, 'test_relative_loss': test_loss / jnp.mean(jnp.square(y))}

  def batch(data, seed, step):
    return sample(data, seed, rng.stream_key(seed, 'teacher', step), cfg['batch_size'])
  return train.Task(batch=batch, loss=loss, evaluate=evaluate)


def setup(cfg: dict, group: tuple) -> training.Setup:
  """The student, its task (the seeds' teachers in its data) and Adam at the group's rate."""
  _, model, nu0, lr = group
  init, apply = make_model(cfg, model, nu0)
  data = np.stack([toeplitz(teacher(nu0, cfg['teacher_hidden'], cfg['seq_len'], s))
                   for s in sweep.seeds(cfg)]).astype(np.float32)
  return training.Setup(init, make_task(cfg, apply)._replace(data=data),
                        train.optimizer(cfg['optimizer'], lr, 0.0),
                        name=f'{model} nu0={nu0:g} lr={lr:g}',
                        folder=f'{model}-nu{nu0!r}-lr{lr!r}')


def records(cfg: dict, group: tuple, trained: training.Trained) -> list:
  """A record per seed; a seed whose final test loss is not finite diverged."""
  _, model, nu0, lr = group
  return [{
      'part': 'teacher_student', 'model': model, 'teacher_nu': nu0, 'learning_rate': lr,
      'seed': s.seed, 'test_loss': s.metrics['test_loss'],
      'test_relative_loss': s.metrics['test_relative_loss'],
      'status': s.status, 'steps': s.steps, 'train_loss': s.curve('train_loss'),
      'test_loss_curve': s.curve('test_loss'), 'log_every': cfg['log_every'],
      **{k: cfg[k] for k in ('num_steps', 'hidden_size', 'teacher_hidden', 'seq_len',
                             'batch_size', 'r_max', 'optimizer')},
  } for s in trained.seeds(finite=(trained.metrics['test_loss'],))]


# ---- the experiment ----------------------------------------------------------------------------


def compute_group(cfg: dict, workdir: str, group: tuple) -> list:
  if group[0] == 'moments':
    return compute_moments(cfg, *group[1:])
  return training.train_group(sys.modules[__name__], cfg, workdir, group)


def programs(cfg: dict, groups) -> list:
  """The teacher-student training programs (the Monte Carlo chains hold a few arrays of
  num_chains floats: nothing to check)."""
  return training.programs(sys.modules[__name__], cfg,
                           [g for g in groups if g[0][0] == 'teacher_student'])


def run(cfg: dict, store: ResultStore) -> int:
  return training.run(sys.modules[__name__], cfg, store, desc='curse of memory',
                      compute=functools.partial(compute_group, cfg, store.workdir))


def plot(records: list, plots_dir: str) -> list:
  from lib.report import memory_plots  # matplotlib: only to draw
  return memory_plots.curse_of_memory(records, plots_dir)


def summary(records: list) -> str:
  return tables.curse_of_memory_table(records)
