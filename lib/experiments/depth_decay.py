"""The depth sweep: per-layer gradient norms of plain CNNs over activations x inits x depths x
scales x seeds, measured like the gradient-decay sweep with depth in the role of time.

Every (activation, init, depth) is one jitted program over every (sigma_w2, sigma_b2, seed)
point. Records follow the gradient-decay format with `depth` for `seq_len`: log_grad_sq[i]
is ln mean_b ||dL/dh_{i+1}||^2 for the outputs of layers 1..L (the last next to the loss), and
log_grad_sq_input is [ln mean_b ||dL/dx||^2] at the network's input.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from lib.measure import decay
from lib.measure import gradients
from lib.measure import lyapunov
from lib.measure import theory
from lib.nets import cells
from lib.nets import cnn
from lib.report import tables
from lib.runtime import compiled
from lib.runtime import config as config_lib
from lib.runtime import devices
from lib.runtime import sweep
from lib.runtime.errors import UserError
from lib.runtime.results import ResultStore
from lib.runtime.results import json_floats

LENGTH = 'depth'
GRID_KEYS = ('activations', 'inits', 'depths', 'sigma_w2', 'sigma_b2')  # the dry run's grid
SHRINK_KEYS = ('width', 'batch_size', 'depths', 'spatial_shape')  # what makes programs smaller
RECORD_FIELDS = ('activation', 'init', LENGTH, 'sigma_w2', 'sigma_b2', 'seed', 'status',
                 'decay_rate', 'theory_decay_rate', 'log_grad_sq')

SPEC = {
    'experiment': config_lib.text(),
    'activations': config_lib.choices(tuple(cnn.ACTIVATIONS), 'activation'),
    'inits': config_lib.choices(cnn.CNN_INITS, 'CNN init'),
    'depths': config_lib.integers(1, 'a positive integer depth'),
    'sigma_w2': config_lib.reals(0.0, 'a variance >= 0'),
    'sigma_b2': config_lib.reals(0.0, 'a variance >= 0'),
    'width': config_lib.integer(1, 'a positive integer number of channels'),
    'kernel_size': config_lib.integer(1, 'a positive integer'),
    'spatial_shape': config_lib.shape('a positive integer size'),
    'batch_size': config_lib.integer(1, 'a positive integer'),
    'num_seeds': config_lib.integer(1, 'a positive integer number of seeds'),
    'seed': config_lib.integer(0, 'a non-negative integer below 2**31', maximum=2**31 - 1),
    'dtype': config_lib.choice(('float32', 'float64'), 'dtype'),
    'fit_k_min': config_lib.integer(0, 'a non-negative integer'),
    'fit_k_max': config_lib.integer(-1, 'a non-negative integer or -1 (up to L-1)'),
    'jacobian_spectrum': config_lib.flag(),
}


def validate(config) -> dict:
  cfg = decay.check_fit_window(config_lib.validate(config, SPEC), 'depths')
  sweep.check_float_range(cfg, ('sigma_w2', 'sigma_b2'))
  if not 1 <= len(cfg['spatial_shape']) <= 3:
    raise UserError(f'config.spatial_shape: {len(cfg["spatial_shape"])} spatial dimensions; '
                    'valid: 1 to 3 (e.g. 32 or 8,8)')
  return cfg


def point_key(record: dict) -> tuple:
  return (record['activation'], record['init'], record[LENGTH], record['sigma_w2'],
          record['sigma_b2'], record['seed'])


def grid(cfg: dict) -> list:
  """[((activation, init, depth), [point keys in record order]), ...]"""
  return [((a, i, depth),
           [(a, i, depth, w, b, s) for w, b in decay.scales(cfg) for s in sweep.seeds(cfg)])
          for a in cfg['activations'] for i in cfg['inits'] for depth in cfg['depths']]


def measure_point(activation: str, init: str, depth: int, cfg: dict, sigma_w2, sigma_b2, seed):
  """(log_grad_sq (L,), ln mean ||dL/dx||^2 (), forward_finite, and with
  cfg['jacobian_spectrum'] the ln singular values of the first example's input-output Jacobian
  (P C,), else an empty array) of one CNN and input batch.

  Input x ~ N(0, 1) per entry; loss l_b = <R, h_L> with R ~ N(0, 1/(P C)), P spatial positions.
  The draws depend only on (seed, what), so every scale sees the same (scaled) weights.
  """
  dtype = jnp.dtype(cfg['dtype'])
  spatial, width = tuple(cfg['spatial_shape']), cfg['width']
  key = jax.random.key(seed)
  params = cnn.init_params(
      jax.random.fold_in(key, 0), depth, width, cfg['kernel_size'], len(spatial),
      sigma_w2=sigma_w2, sigma_b2=sigma_b2, init=init, dtype=dtype)
  readout, x = cells.standard_normals(
      jax.random.fold_in(key, 1), [spatial + (width,), (cfg['batch_size'],) + spatial + (width,)],
      dtype)
  readout = readout / np.sqrt(readout.size)
  layer = cnn.make_layer(width, cfg['kernel_size'], len(spatial), dtype)
  step = cnn.layer_step(layer, activation)
  profile = gradients.log_grad_profile(step, lambda h: h, x, params, readout, input_grads=False)
  log_sv = (lyapunov.log_singular_values(step, x[:1], params) if cfg['jacobian_spectrum']
            else jnp.zeros((0,), dtype))
  return profile.log_grad_sq, profile.log_grad_sq_initial, profile.forward_finite, log_sv


@compiled.cached
def program(cfg: dict, activation: str, init: str, depth: int):
  """The program of every (sigma_w2, sigma_b2, seed) of one (activation, init, depth): one object
  for the memory check and the run (`lib.runtime.compiled.cached`)."""
  return decay.points_program(functools.partial(measure_point, activation, init, depth, cfg), cfg)


def programs(cfg: dict, groups) -> list:
  """One `lib.runtime.dry_run.Program` per (activation, init, depth) group."""
  from lib.runtime import dry_run  # pylint: disable=g-import-not-at-top
  args = (dry_run.points_args(len(decay.scales(cfg)) * cfg['num_seeds'], cfg['dtype'],
                              cfg['dtype'], 'int32', batch=devices.points_batch_of(cfg)),)
  return [dry_run.Program('{} {} depth {}'.format(*group), program(cfg, *group), args, 1)
          for group, _ in groups]


def compute_group(cfg: dict, group: tuple) -> list:
  """Records of every (sigma_w2, sigma_b2, seed) of one (activation, init, depth), grid order."""
  activation, init, depth = group
  log_h, log_x, finite, log_sv = decay.run_points(program(cfg, activation, init, depth), cfg)
  records = []
  for i, (sigma_w2, sigma_b2) in enumerate(decay.scales(cfg)):
    for j, seed in enumerate(sweep.seeds(cfg)):
      records.append({
          'model': 'cnn', 'activation': activation, 'init': init, LENGTH: depth, 'seed': seed,
          'sigma_w2': sigma_w2, 'sigma_b2': sigma_b2, 'width': cfg['width'],
          'kernel_size': cfg['kernel_size'], 'spatial_shape': list(cfg['spatial_shape']),
          'batch_size': cfg['batch_size'], 'dtype': cfg['dtype'],
          **decay.profile_fields(cfg, log_h[i, j], log_x[i, j][None], bool(finite[i, j]),
                                 activation, init, sigma_w2, sigma_b2, 0.0),
          **(spectrum_fields(log_sv[i, j], activation, init, depth, sigma_w2, sigma_b2,
                             cfg['dtype']) if cfg['jacobian_spectrum'] else {}),
      })
  return records


def spectrum_fields(log_sv, activation: str, init: str, depth: int, sigma_w2, sigma_b2,
                    dtype: str = 'float32') -> dict:
  """The Jacobian's ln singular values, the first two moments of s^2 (ln of the mean, and the
  variance over the mean squared, from the logs: no overflow) and free probability's
  (theory.jacobian_sv_moments; None where the theory does not apply). A singular value below
  s_max n eps (numpy's rank tolerance, n of them, eps of the dtype) is not resolved: -inf, JSON
  null (a direction a relu network kills is one); the moments take the values as computed. None
  throughout where the forward pass overflowed (NaN or +inf)."""
  log_sv = np.asarray(log_sv, np.float64)
  finite = not (np.isnan(log_sv).any() or np.isposinf(log_sv).any())
  log_m1 = float(special.logsumexp(2 * log_sv) - np.log(log_sv.size)) if finite else None
  log_m2 = float(special.logsumexp(4 * log_sv) - np.log(log_sv.size)) if finite else None
  predicted = (None, None) if theory.not_applicable(activation, init) else (
      theory.jacobian_sv_moments(activation, init, sigma_w2, sigma_b2, depth))
  floor = np.max(log_sv) + np.log(log_sv.size * np.finfo(dtype).eps) if finite else 0.0
  resolved = np.where(log_sv >= floor, log_sv, -np.inf)
  return {'log_sv': json_floats(resolved.astype(np.float32)) if finite else None,
          'log_sv_sq_mean': log_m1,
          'sv_sq_norm_var': None if not finite else float(np.expm1(log_m2 - 2 * log_m1)),
          'theory_log_sv_sq_mean': predicted[0], 'theory_sv_sq_norm_var': predicted[1]}


def run(cfg: dict, store: ResultStore) -> int:
  """Runs the missing points of the sweep; returns how many were computed."""
  return sweep.run_groups(grid(cfg), functools.partial(compute_group, cfg), point_key, store,
                          desc='depth decay')


def panel(record: dict) -> str:
  return f'{record["activation"]}, {record["init"]}'


def no_theory_reason(record: dict):
  return theory.not_applicable(record['activation'], record['init'])


def plot(records: list, plots_dir: str) -> list:
  from lib.report import decay_plots  # matplotlib: only to draw
  records = list(records)
  paths = decay_plots.decay_sweep(records, plots_dir, LENGTH, panel, no_theory_reason)
  if any(r.get('log_sv') is not None for r in records):
    paths += decay_plots.jacobian_spectrum(records, plots_dir, panel)
  return paths


def summary(records: list) -> str:
  records = list(records)
  spectrum = tables.jacobian_lines(records, panel)
  return tables.decay_table(records, LENGTH, panel) + ('\n' + spectrum if spectrum else '')
