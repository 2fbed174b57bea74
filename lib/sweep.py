"""Runs a sweep as groups of points, one compiled program per group, resuming what is done.

A group is the set of points that share one compiled program (for the gradient-decay sweep, every
scale and seed of one (cell, sequence length), batched with vmap). The runner computes each group
that still has missing points, appends the missing points' records in a fixed order, and shows a
progress bar over points. A group is always computed whole, so a resumed sweep runs the very same
programs on the very same inputs as an uninterrupted one and writes identical records.
"""

import time
from typing import Callable, Hashable, Sequence

from absl import logging
import tqdm

from lib.results import ResultStore


def run_groups(groups: Sequence[tuple[Hashable, Sequence[Hashable]]],
               compute: Callable[[Hashable], Sequence[dict]],
               key_of: Callable[[dict], Hashable],
               store: ResultStore,
               desc: str = 'sweep') -> int:
  """Computes the missing points of each group and appends their records to `store`.

  groups: (group, point keys) pairs; compute(group) returns the group's records in key order.
  Returns the number of points computed in this call.
  """
  done = {key_of(r) for r in store.records()}
  total = sum(len(keys) for _, keys in groups)
  finished = sum(key in done for _, keys in groups for key in keys)
  computed = 0
  with tqdm.tqdm(total=total, initial=finished, unit='pt', desc=desc, dynamic_ncols=True) as bar:
    for group, keys in groups:
      missing = [key for key in keys if key not in done]
      if not missing:
        continue
      start = time.perf_counter()
      records = compute(group)
      if [key_of(r) for r in records] != list(keys):
        raise RuntimeError(f'group {group} returned records out of order')
      store.append(r for r in records if key_of(r) not in done)
      done.update(missing)
      computed += len(missing)
      bar.update(len(missing))
      logging.info('group %s: %d points in %.2fs', group, len(missing),
                   time.perf_counter() - start)
  return computed
