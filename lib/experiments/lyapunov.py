"""The Lyapunov spectrum of each cell's state dynamics under the gradient sweep's inputs: the
whole distribution of growth rates that the gradient's norm averages into one number.

Every (cell, sigma_w2, sigma_b2, seed) is the gradient sweep's own network and inputs
(lib/experiments/gradient_decay.network). Each example of the batch is one trajectory of
`seq_len` steps; lib/measure/lyapunov.spectrum carries `num_exponents` tangent vectors along it
(0: all, the state's size) and averages the growth of each over the steps from `burn_in` on.
Beside the spectrum, each record holds half the decay rate of the same networks' gradient
(lib/measure/gradients, fitted over fit_k_min..fit_k_max): the top exponent's estimate by the
one-vector method. For gaussian and orthogonal tanh RNNs it holds the free-probability spectrum
(lib/measure/theory.tanh_lyapunov_spectrum) at the fractions (i - 1/2) / N.

The state is the part of the cell's carry that feeds back (lib/nets/cells.feedback_state): h
(tanh, relu, GRU), (c, h) for the LSTM, (Re h, Im h) for the LRU and h for `linear` (their
output y rides in the carry but is not read by the next step: its directions would be -inf).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lib.experiments import gradient_decay
from lib.experiments import model_settings
from lib.measure import decay
from lib.measure import gradients
from lib.measure import lyapunov
from lib.measure import theory
from lib.nets import cells
from lib.report import tables
from lib.runtime import compiled
from lib.runtime import config as config_lib
from lib.runtime import devices
from lib.runtime import sweep
from lib.runtime.errors import UserError
from lib.runtime.results import ResultStore
from lib.runtime.results import json_floats

GRID_KEYS = ('cells', 'sigma_w2', 'sigma_b2')
SHRINK_KEYS = ('hidden_size', 'num_exponents', 'batch_size', 'seq_len')
RECORD_FIELDS = ('cell', 'sigma_w2', 'sigma_b2', 'seed', 'status', 'state_size', 'exponents',
                 'top_exponent', 'half_decay_rate', 'theory_exponents')

SPEC = {
    **{key: check for key, check in gradient_decay.SPEC.items()
       if key not in ('seq_lens', 'length_buckets')},
    'seq_len': config_lib.integer(2, 'an integer number of steps >= 2'),
    'burn_in': config_lib.integer(0, 'a non-negative integer number of steps'),
    'num_exponents': config_lib.integer(0, 'a non-negative integer (0: all)'),
}


def num_exponents(cfg: dict, cell: str) -> int:
  size = cells.feedback_size(cell, cfg['hidden_size'])
  return size if cfg['num_exponents'] == 0 else min(cfg['num_exponents'], size)


def validate(config) -> dict:
  cfg = config_lib.validate(config, SPEC)
  sweep.check_seed_range(cfg)
  sweep.check_float_range(cfg, ('sigma_w2', 'sigma_b2', 'sigma_v2', 'gate_bias'))
  model_settings.linear_options(cfg)
  if 'irnn' in cfg['cells']:
    raise UserError('config.cells: irnn fixes its recurrent kernel and biases; use relu with '
                    'recurrent_init=identity')
  if cfg['burn_in'] >= cfg['seq_len']:
    raise UserError(f'config.burn_in ({cfg["burn_in"]}) leaves no step of config.seq_len '
                    f'({cfg["seq_len"]}) to average; valid: burn_in <= {cfg["seq_len"] - 1}')
  cfg['seq_lens'], cfg['length_buckets'] = (cfg['seq_len'],), ()  # the gradient sweep's keys
  return decay.check_fit_window(cfg, 'seq_lens')


def point_key(record: dict) -> tuple:
  return (record['cell'], record['sigma_w2'], record['sigma_b2'], record['seed'])


def grid(cfg: dict) -> list:
  """[(cell, [point keys in record order]), ...]"""
  return [(cell, [(cell, w, b, s) for w, b in gradient_decay.cell_scales(cfg, cell)
                  for s in sweep.seeds(cfg)])
          for cell in cfg['cells']]


def measure_point(cell_name: str, cfg: dict, sigma_w2, sigma_b2, seed):
  """(exponents (k,) mean over the batch's trajectories, finite, the gradient's log profile
  (T,)) of one network of the gradient sweep."""
  length = cfg['seq_len']
  cell, params, readout, xs, carry0 = gradient_decay.network(
      cell_name, length, cfg, sigma_w2, sigma_b2, seed)
  step = cells.step_of(cell, params)
  profile = gradients.log_grad_profile(step, functools.partial(cells.output, cell_name), carry0,
                                       xs, readout)
  state_step = lambda state, x: cells.feedback_state(
      cell_name, step(cells.with_feedback(cell_name, state), x))
  k = num_exponents(cfg, cell_name)
  key = jax.random.fold_in(jax.random.key(seed), 2)

  def one(carry, inputs):  # one trajectory: a batch of one
    return lyapunov.spectrum(state_step, jax.tree.map(lambda a: a[None], carry),
                             inputs[:, None], k, key, cfg['burn_in'])

  exponents, finite = jax.vmap(one, in_axes=(0, 1))(cells.feedback_state(cell_name, carry0), xs)
  return (jnp.mean(exponents, axis=0), jnp.all(finite) & profile.forward_finite,
          profile.log_grad_sq)


@compiled.cached
def program(cfg: dict, cell: str):
  """Every (sigma_w2, sigma_b2, seed) of one cell in one program."""
  return decay.points_program(functools.partial(measure_point, cell, cfg), cfg,
                              num_scales=len(gradient_decay.cell_scales(cfg, cell)))


def programs(cfg: dict, groups=None) -> list:
  from lib.runtime import dry_run  # pylint: disable=g-import-not-at-top
  groups = grid(cfg) if groups is None else groups
  out = []
  for cell, _ in groups:
    count = len(gradient_decay.cell_scales(cfg, cell)) * cfg['num_seeds']
    args = (dry_run.points_args(count, cfg['dtype'], cfg['dtype'], 'int32',
                                batch=devices.points_batch_of(cfg)),)
    out.append(dry_run.Program(f'{cell} T={cfg["seq_len"]}', program(cfg, cell), args, 1))
  return out


def theory_exponents(cell: str, cfg: dict, sigma_w2, sigma_b2, k: int):
  """The free-probability exponents at (i - 1/2) / N, i = 1..k, for a tanh RNN of gaussian or
  orthogonal kernels; None for the others."""
  if cell != 'tanh' or cfg['recurrent_init'] not in ('gaussian', 'orthogonal'):
    return None
  return list(_free_probability(sigma_w2, sigma_b2, cfg['sigma_v2'], cfg['recurrent_init'],
                                min(k, cfg['hidden_size']), cfg['hidden_size']))


@functools.lru_cache(maxsize=None)
def _free_probability(sigma_w2, sigma_b2, sigma_v2, init: str, k: int, n: int) -> tuple:
  """theory.tanh_lyapunov_spectrum at (i - 1/2) / n, i = 1..k: once per scale, not per seed."""
  return tuple(theory.tanh_lyapunov_spectrum((np.arange(k) + 0.5) / n, sigma_w2, sigma_b2,
                                             sigma_v2, init).tolist())


def compute_group(cfg: dict, cell: str) -> list:
  point_scales = gradient_decay.cell_scales(cfg, cell)
  linear = cell in cells.LINEAR_CELLS
  exponents, finite, log_h = decay.run_points(program(cfg, cell), cfg,
                                              point_scales=[(0.0, 0.0)] if linear else point_scales)
  k = num_exponents(cfg, cell)
  records = []
  for i, (sigma_w2, sigma_b2) in enumerate(point_scales):
    for j, seed in enumerate(sweep.seeds(cfg)):
      status = gradients.status_of(log_h[i, j], bool(finite[i, j]))
      if status == 'ok' and not np.all(np.isfinite(exponents[i, j])):
        status = 'diverged' if np.isnan(exponents[i, j]).any() else 'ok'
      rate = (gradients.fit_decay_rate(log_h[i, j], cfg['fit_k_min'], cfg['fit_k_max'])
              if status == 'ok' else None)
      records.append({
          'cell': cell, 'sigma_w2': sigma_w2, 'sigma_b2': sigma_b2, 'seed': seed,
          'sigma_v2': None if linear else cfg['sigma_v2'],
          'recurrent_init': None if linear else cfg['recurrent_init'],
          'gate_bias': None if linear else cfg['gate_bias'],
          'hidden_size': cfg['hidden_size'], 'input_size': cfg['input_size'],
          'seq_len': cfg['seq_len'], 'burn_in': cfg['burn_in'],
          'batch_size': cfg['batch_size'], 'dtype': cfg['dtype'],
          'state_size': cells.feedback_size(cell, cfg['hidden_size']), 'num_exponents': k,
          'status': status,
          'exponents': json_floats(exponents[i, j]) if status == 'ok' else None,
          'top_exponent': json_floats(exponents[i, j, :1])[0] if status == 'ok' else None,
          'half_decay_rate': None if rate is None else rate / 2.0,
          'theory_exponents': (None if linear else
                               theory_exponents(cell, cfg, sigma_w2, sigma_b2, k)),
      })
  return records


def run(cfg: dict, store: ResultStore) -> int:
  return sweep.run_groups(grid(cfg), functools.partial(compute_group, cfg), point_key, store,
                          desc='lyapunov')


def plot(records: list, plots_dir: str) -> list:
  from lib.report import lyapunov_plots  # matplotlib: only to draw
  return lyapunov_plots.plots(records, plots_dir)


def summary(records: list) -> str:
  return tables.lyapunov_lines(records)
