"""What the decay sweeps (over time for RNNs, over depth for CNNs) share: the check of their fit
window, every scale (sigma_w2, sigma_b2) and seed of a config in one program, and a measured
profile as the fields of its record (the status, the fitted decay rate, and the mean-field rate
beside it: None where the theory does not apply)."""

import jax
import numpy as np

from lib.measure import gradients
from lib.measure import theory
from lib.runtime import devices
from lib.runtime import sweep
from lib.runtime.errors import UserError
from lib.runtime.results import json_floats


def check_fit_window(cfg: dict, lengths_key: str) -> dict:
  """The seed range, and a fit window (fit_k_min, fit_k_max) of two points or more at the
  shortest of the config's `lengths_key` (sequence lengths, depths)."""
  sweep.check_seed_range(cfg)
  if 0 <= cfg['fit_k_max'] <= cfg['fit_k_min']:
    raise UserError(f'config.fit_k_min ({cfg["fit_k_min"]}) is not below config.fit_k_max '
                    f'({cfg["fit_k_max"]}): the fit window needs two points or more')
  shortest = min(cfg[lengths_key])
  if shortest >= 2 and cfg['fit_k_min'] > shortest - 2:
    raise UserError(f'config.fit_k_min ({cfg["fit_k_min"]}) leaves fewer than two points to fit '
                    f'at {lengths_key} {shortest}; valid: fit_k_min <= {shortest - 2}')
  return cfg


def scales(cfg: dict) -> list:
  """The (sigma_w2, sigma_b2) pairs, sigma_w2 outermost: computed in one program."""
  return [(w, b) for w in cfg['sigma_w2'] for b in cfg['sigma_b2']]


def points_program(point, cfg: dict, num_shared: int = 0, num_scales: int | None = None):
  """point(sigma_w2, sigma_b2, seed, *shared) as one program over the config's points (every
  scale and seed; `num_scales` scales where given), in the run's points batch, for
  `run_points`."""
  num_scales = len(scales(cfg)) if num_scales is None else num_scales
  return devices.map_points(lambda p, *shared: point(*p, *shared),
                            num_scales * cfg['num_seeds'], num_shared,
                            batch=devices.points_batch_of(cfg))


def run_points(program, cfg: dict, *shared, point_scales=None):
  """A `points_program` at every scale (of `point_scales` where given, else the config's) and
  seed of the config, in its dtype, spread over every device (`lib.runtime.devices`), with
  `shared` (arrays) passed to every point: outputs as numpy arrays batched (scales, seeds, ...)."""
  dtype = np.dtype(cfg['dtype'])
  point_scales = scales(cfg) if point_scales is None else point_scales
  grid = [(w, b, s) for w, b in point_scales for s in sweep.seeds(cfg)]  # record order
  with jax.enable_x64(cfg['dtype'] == 'float64'):
    outputs = devices.run_points(program, (np.asarray([p[0] for p in grid], dtype),
                                           np.asarray([p[1] for p in grid], dtype),
                                           np.asarray([p[2] for p in grid], np.int32)), *shared)
  shape = (len(point_scales), cfg['num_seeds'])
  return jax.tree.map(lambda a: a.reshape(shape + a.shape[1:]), outputs)


def profile_fields(cfg: dict, log_h, log_x, forward_finite: bool, activation: str, init: str,
                   sigma_w2: float, sigma_b2: float, sigma_v2: float) -> dict:
  """The measured and predicted fields of a record: status, rates, profiles. The fit window is
  the config's (fit_k_min, fit_k_max); the rate is fitted only where the status is 'ok'."""
  status = gradients.status_of(log_h, forward_finite)
  rate = (gradients.fit_decay_rate(log_h, cfg['fit_k_min'], cfg['fit_k_max'])
          if status == 'ok' else None)
  predicted = (None if theory.not_applicable(activation, init)
               else theory.decay_rate(activation, sigma_w2, sigma_b2, sigma_v2))
  return {'status': status, 'decay_rate': rate, 'theory_decay_rate': predicted,
          'log_grad_sq': json_floats(log_h), 'log_grad_sq_input': json_floats(log_x)}
