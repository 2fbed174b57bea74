"""Runs a sweep as groups of points, one compiled program per group, resuming what is done;
and what the decay sweeps (over time for RNNs, over depth for CNNs) share: their config checks,
and scales x seeds in one program (the fields a measured profile gives a record are
`lib.measure.decay`'s).

A group is the set of points that share one compiled program (for the gradient-decay sweep, every
scale and seed of one (cell, sequence length), spread over every device by
`lib.runtime.devices`). The runner computes each group that still has missing points, appends the
missing points' records in a fixed order, and shows a progress bar over points. A group is always
computed whole, so a resumed sweep runs the very same programs on the very same inputs as an
uninterrupted one and writes identical records.
"""

import time
from typing import Callable, Hashable, Sequence

from absl import logging
import jax
import numpy as np
import tqdm

from lib.runtime import devices
from lib.runtime import preemption
from lib.runtime.errors import UserError
from lib.runtime.results import ResultStore


def run_groups(groups: Sequence[tuple[Hashable, Sequence[Hashable]]],
               compute: Callable[[Hashable], Sequence[dict]],
               key_of: Callable[[dict], Hashable],
               store: ResultStore,
               desc: str = 'sweep') -> int:
  """Computes the missing points of each group and appends their records to `store`.

  groups: (group, point keys) pairs; compute(group) returns the group's records in key order.
  Only the store's shard of the groups is run: groups index, index + count, ... for
  store.shard = (index, count). Returns the number of points computed in this call.
  """
  groups = shard_of(groups, store.shard)
  done = done_keys(groups, key_of, store.records)
  total = sum(len(keys) for _, keys in groups)
  finished = sum(key in done for _, keys in groups for key in keys)
  computed = 0
  with tqdm.tqdm(total=total, initial=finished, unit='pt', desc=desc, dynamic_ncols=True,
                 disable=not devices.is_leader()) as bar:
    for group, keys in groups:
      missing = [key for key in keys if key not in done]
      if not missing:
        continue
      start = time.perf_counter()
      records = compute(group)
      if [key_of(r) for r in records] != list(keys):
        raise RuntimeError(f'group {group} returned records out of order')
      devices.on_leader(store.append, [r for r in records if key_of(r) not in done])
      done.update(missing)
      computed += len(missing)
      bar.update(len(missing))
      logging.info('group %s: %d points in %.2fs', group, len(missing),
                   time.perf_counter() - start)
      if devices.any_process(preemption.requested()):  # the group in flight is written
        raise preemption.Preempted()
  return computed


def shard_of(groups: Sequence, shard: tuple) -> list:
  """Groups index, index + count, ... of `groups`, for shard = (index, count)."""
  index, count = shard
  return [g for i, g in enumerate(groups) if i % count == index]


def done_keys(groups: Sequence, key_of: Callable[[dict], Hashable], read_records) -> set:
  """The point keys of `groups` that the records process 0 reads (`read_records()`) hold: the
  same set on every process."""
  done = {key_of(r) for r in devices.on_leader(read_records) or []}
  every_key = [key for _, keys in groups for key in keys]
  mask = devices.broadcast(np.asarray([key in done for key in every_key], bool))  # process 0's
  return {key for key, is_done in zip(every_key, mask) if is_done}


def pending(groups: Sequence, done: set) -> list:
  """The groups with a point not in `done`: those a run computes."""
  return [(group, keys) for group, keys in groups if any(key not in done for key in keys)]


def check_seed_range(cfg: dict) -> None:
  if cfg['seed'] + cfg['num_seeds'] > 2**31:
    raise UserError(f'config.seed + config.num_seeds must be at most 2**31, got '
                    f'{cfg["seed"]} + {cfg["num_seeds"]}')


def check_seeds_and_fit(cfg: dict, lengths_key: str) -> dict:
  """Checks across keys that every decay sweep shares: the seed range and the fit window."""
  check_seed_range(cfg)
  if 0 <= cfg['fit_k_max'] <= cfg['fit_k_min']:
    raise UserError(f'config.fit_k_min ({cfg["fit_k_min"]}) is not below config.fit_k_max '
                    f'({cfg["fit_k_max"]}): the fit window needs two points or more')
  shortest = min(cfg[lengths_key])
  if shortest >= 2 and cfg['fit_k_min'] > shortest - 2:
    raise UserError(f'config.fit_k_min ({cfg["fit_k_min"]}) leaves fewer than two points to fit '
                    f'at {lengths_key} {shortest}; valid: fit_k_min <= {shortest - 2}')
  return cfg


def check_float_range(cfg: dict, keys: tuple) -> None:
  """Every value of `keys` must be representable in the config's dtype (1e40 is inf in float32)."""
  largest = float(np.finfo(np.dtype(cfg['dtype'])).max)
  for key in keys:
    for value in np.atleast_1d(cfg[key]):
      if not abs(value) <= largest:
        raise UserError(f'config.{key}: {value:g} is beyond the range of {cfg["dtype"]} '
                        f'(at most {largest:.3g}); use dtype float64 or a smaller value')


def seeds(cfg: dict) -> tuple:
  return tuple(range(cfg['seed'], cfg['seed'] + cfg['num_seeds']))


def scales(cfg: dict) -> list:
  """The (sigma_w2, sigma_b2) pairs, sigma_w2 outermost: computed in one program."""
  return [(w, b) for w in cfg['sigma_w2'] for b in cfg['sigma_b2']]


def points_program(point, cfg: dict, num_shared: int = 0, num_scales: int | None = None):
  """point(sigma_w2, sigma_b2, seed, *shared) as one program over the config's points (every
  scale and seed; `num_scales` scales where given), for `run_points`."""
  num_scales = len(scales(cfg)) if num_scales is None else num_scales
  return devices.map_points(lambda p, *shared: point(*p, *shared),
                            num_scales * cfg['num_seeds'], num_shared)


def run_points(program, cfg: dict, *shared, point_scales=None):
  """A `points_program` at every scale (of `point_scales` where given, else the config's) and
  seed of the config, in its dtype, spread over every device (`lib.runtime.devices`), with
  `shared` (arrays) passed to every point: outputs as numpy arrays batched (scales, seeds, ...)."""
  dtype = np.dtype(cfg['dtype'])
  point_scales = scales(cfg) if point_scales is None else point_scales
  grid = [(w, b, s) for w, b in point_scales for s in seeds(cfg)]  # record order
  with jax.enable_x64(cfg['dtype'] == 'float64'):
    outputs = devices.run_points(program, (np.asarray([p[0] for p in grid], dtype),
                                           np.asarray([p[1] for p in grid], dtype),
                                           np.asarray([p[2] for p in grid], np.int32)), *shared)
  shape = (len(point_scales), cfg['num_seeds'])
  return jax.tree.map(lambda a: a.reshape(shape + a.shape[1:]), outputs)
