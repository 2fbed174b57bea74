"""The gradient-decay sweep: per-step gradient norms over cells x seq_lens x sigma_w2 x seeds.

Every (cell, seq_len) is one jitted program: scales and seeds are vmapped, so a sweep compiles
len(cells) * len(seq_lens) programs whatever the number of scales and seeds.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lib import cells
from lib import config as config_lib
from lib import gradients
from lib import plots
from lib.errors import UserError
from lib.results import ResultStore
from lib.sweep import run_groups

DTYPES = ('float32', 'float64')

SPEC = {
    'experiment': config_lib.text(),
    'cells': config_lib.choices(cells.CELL_NAMES, 'cell'),
    'seq_lens': config_lib.integers(1, 'a positive integer length'),
    'sigma_w2': config_lib.reals(0.0, 'a variance >= 0'),
    'sigma_b2': config_lib.real(0.0, 'a variance >= 0'),
    'sigma_v2': config_lib.real(0.0, 'a variance >= 0'),
    'recurrent_init': config_lib.choice(cells.RECURRENT_INITS, 'recurrent_init'),
    'gate_bias': config_lib.real(what='a number'),
    'hidden_size': config_lib.integer(1, 'a positive integer'),
    'input_size': config_lib.integer(1, 'a positive integer'),
    'batch_size': config_lib.integer(1, 'a positive integer'),
    'num_seeds': config_lib.integer(1, 'a positive integer number of seeds'),
    'seed': config_lib.integer(0, 'a non-negative integer below 2**31', maximum=2**31 - 1),
    'dtype': config_lib.choice(DTYPES, 'dtype'),
    'fit_k_min': config_lib.integer(0, 'a non-negative integer'),
    'fit_k_max': config_lib.integer(-1, 'a non-negative integer or -1 (up to T-1)'),
}


def validate(config) -> dict:
  cfg = config_lib.validate(config, SPEC)
  if cfg['seed'] + cfg['num_seeds'] > 2**31:
    raise UserError(f'config.seed + config.num_seeds must be at most 2**31, got '
                    f'{cfg["seed"]} + {cfg["num_seeds"]}')
  if 0 <= cfg['fit_k_max'] < cfg['fit_k_min']:
    raise UserError(f'config.fit_k_min ({cfg["fit_k_min"]}) is above config.fit_k_max '
                    f'({cfg["fit_k_max"]}): the fit window is empty')
  return cfg


def seeds(cfg: dict) -> tuple:
  return tuple(range(cfg['seed'], cfg['seed'] + cfg['num_seeds']))


def point_key(record: dict) -> tuple:
  return (record['cell'], record['seq_len'], record['sigma_w2'], record['seed'])


def grid(cfg: dict) -> list:
  """[((cell, seq_len), [point keys in record order]), ...]"""
  return [((cell, seq_len),
           [(cell, seq_len, w, s) for w in cfg['sigma_w2'] for s in seeds(cfg)])
          for cell in cfg['cells'] for seq_len in cfg['seq_lens']]


def measure_point(cell_name: str, seq_len: int, cfg: dict, sigma_w2, seed):
  """(log_grad_sq (T,), log_grad_sq_input (T,), forward_finite) of one network and input batch.

  The draws depend only on (seed, what): params, inputs and readout are the same for every
  sigma_w2 (the recurrent kernel is the same draw, scaled), so scales are compared on equal terms.
  """
  dtype = jnp.dtype(cfg['dtype'])
  batch, hidden, width = cfg['batch_size'], cfg['hidden_size'], cfg['input_size']
  key = jax.random.key(seed)
  k_params, k_inputs = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
  cell = cells.make_cell(cell_name, hidden, dtype)
  params = cells.init_params(
      cell_name, cell, k_params, width, sigma_w2=sigma_w2, sigma_v2=cfg['sigma_v2'],
      sigma_b2=cfg['sigma_b2'], recurrent_init=cfg['recurrent_init'], gate_bias=cfg['gate_bias'])
  xs, readout = cells.standard_normals(k_inputs, [(seq_len, batch, width), (hidden,)], dtype)
  readout = readout / np.sqrt(hidden)  # r ~ N(0, I/N); inputs x_t ~ N(0, I_D)
  carry0 = cells.zero_carry(cell, batch, width)
  return gradients.log_grad_profile(
      cell, functools.partial(cells.output, cell_name), params, carry0, xs, readout)


def make_program(cell_name: str, seq_len: int, cfg: dict):
  """jit(f)(sigma_w2 (S,), seeds (K,)) -> profiles (S, K, T), (S, K, T) and finiteness (S, K)."""
  point = functools.partial(measure_point, cell_name, seq_len, cfg)
  return jax.jit(jax.vmap(jax.vmap(point, in_axes=(None, 0)), in_axes=(0, None)))


def _floats(values: np.ndarray) -> list:
  """A profile as JSON numbers: float32 in its shortest round-trip form, non-finite as None."""
  if values.dtype == np.float32:
    return [float(str(v)) for v in values]
  return values.tolist()


def status_of(log_grad_sq: np.ndarray, forward_finite: bool) -> str:
  """'diverged' if the forward pass or the log profile is NaN/inf (overflow), 'vanished' if the
  gradient became exactly zero (-inf in the log domain), else 'ok'."""
  if not forward_finite or np.isnan(log_grad_sq).any() or np.isposinf(log_grad_sq).any():
    return 'diverged'
  if np.isneginf(log_grad_sq).any():
    return 'vanished'
  return 'ok'


def compute_group(cfg: dict, group: tuple) -> list:
  """Records of every (sigma_w2, seed) of one (cell, seq_len), in grid order."""
  cell_name, seq_len = group
  with jax.enable_x64(cfg['dtype'] == 'float64'):
    program = make_program(cell_name, seq_len, cfg)
    dtype = np.dtype(cfg['dtype'])
    # numpy arguments: jnp.asarray here would compile a conversion program of its own
    log_h, log_x, finite = jax.device_get(program(
        np.asarray(cfg['sigma_w2'], dtype), np.asarray(seeds(cfg), np.int32)))
  records = []
  for i, sigma_w2 in enumerate(cfg['sigma_w2']):
    for j, seed in enumerate(seeds(cfg)):
      status = status_of(log_h[i, j], bool(finite[i, j]))
      rate = (gradients.fit_decay_rate(log_h[i, j], cfg['fit_k_min'], cfg['fit_k_max'])
              if status == 'ok' else None)
      records.append({
          'cell': cell_name, 'seq_len': seq_len, 'seed': seed, 'sigma_w2': sigma_w2,
          'sigma_b2': cfg['sigma_b2'], 'sigma_v2': cfg['sigma_v2'],
          'recurrent_init': cfg['recurrent_init'], 'gate_bias': cfg['gate_bias'],
          'hidden_size': cfg['hidden_size'], 'input_size': cfg['input_size'],
          'batch_size': cfg['batch_size'], 'dtype': cfg['dtype'], 'status': status,
          'decay_rate': rate, 'log_grad_sq': _floats(log_h[i, j]),
          'log_grad_sq_input': _floats(log_x[i, j]),
      })
  return records


def run(cfg: dict, store: ResultStore) -> int:
  """Runs the missing points of the sweep; returns how many were computed."""
  return run_groups(grid(cfg), functools.partial(compute_group, cfg), point_key, store,
                    desc='gradient decay')


def plot(records: list, plots_dir: str) -> list:
  return plots.gradient_decay(records, plots_dir)


def summary(records: list) -> str:
  """A table per (cell, sigma_w2): fitted rate at the longest length and ln||dL/dh_0||^2 per length
  (means over seeds; statuses other than 'ok' are counted, not averaged)."""
  table = plots.group_records(records)
  seq_lens = sorted({r['seq_len'] for r in records})
  head = (f'{"cell":<6} {"sigma_w2":>8} {"rate/step":>10} {"+-":>6}  '
          + ' '.join(f'{"T=" + str(t):>9}' for t in seq_lens) + '   not ok')
  lines = ['ln ||dL/dh_0||^2 (mean over seeds) and the decay rate fitted at the longest T:', head]
  for (cell, sigma_w2), by_len in table.items():
    longest = by_len[max(by_len)]
    rates = [r['decay_rate'] for r in longest if r['decay_rate'] is not None]
    rate = f'{np.mean(rates):>10.4f} {np.std(rates):>6.4f}' if rates else f'{"-":>10} {"":>6}'
    cols = []
    bad = []
    for t in seq_lens:
      ok = [r['log_grad_sq'][0] for r in by_len.get(t, []) if r['status'] == 'ok']
      cols.append(f'{np.mean(ok):>9.2f}' if ok else f'{"-":>9}')
      bad += sorted({f'{r["status"]}@T={t}' for r in by_len.get(t, []) if r['status'] != 'ok'})
    lines.append(f'{cell:<6} {sigma_w2:>8g} {rate}  ' + ' '.join(cols) + '   '
                 + (', '.join(bad) or '-'))
  return '\n'.join(lines)
