"""Runs a sweep as groups of points, one compiled program per group, resuming what is done; and
the checks of the keys the machinery owns (the seeds, the dtype's range). What the decay sweeps
share (their fit window, scales x seeds in one program) is `lib.measure.decay`'s.

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
