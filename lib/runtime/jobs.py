"""What run.py does with an experiment: run it into a workdir (or resume it), estimate it
(dry run), redraw its plots, merge shards' workdirs.

An experiment is a module (lib/experiments/NAME.py) that provides what `Experiment` lists, and
that these functions are handed, never one they import; `lookup` is the registry's
`lib.experiments.get`, for the verbs that find the experiment by the name in a workdir's config.
"""

import os
import time
from typing import Hashable, Protocol, runtime_checkable

from absl import logging

from lib.runtime.errors import UserError
from lib.runtime.errors import resources
from lib.runtime.results import check_writable
from lib.runtime.results import config_diff
from lib.runtime.results import ResultStore


@runtime_checkable
class Experiment(Protocol):
  """What an experiment module provides. Where it needs them, a module also provides:

    prepare(cfg)                 loads what run needs (a dataset) before the workdir is touched:
                                 `prepared` below is (prepare(cfg),), or () without it
    NEUTRAL_KEYS                 config keys that change no result: a workdir resumes across
                                 them
    SHRINK_KEYS                  config keys that make its programs smaller: the memory check
                                 and the dry run name them for a program that cannot fit
    GRID_KEYS                    the config keys that are the grid's axes (the dry run lists
                                 them), where its lists are not all axes
  A training experiment provides `lib.runtime.training.TrainingExperiment` too.
  """
  RECORD_FIELDS: tuple  # the fields every record has (checked when a store is read)

  def validate(self, config) -> dict:
    """The config checked against the module's SPEC, as a plain dict (or a UserError)."""

  def grid(self, cfg: dict) -> list:
    """[(group, [point keys]), ...]: every point in record order, grouped by the compiled
    program that computes it."""

  def point_key(self, record: dict) -> Hashable:
    """The key of a record's point, as in grid."""

  def run(self, cfg: dict, store: ResultStore, *prepared) -> int:
    """Computes the missing points into the store (through `lib.runtime.sweep.run_groups`, or
    `lib.runtime.training.run`); returns how many it computed."""

  def programs(self, cfg: dict, groups: list, *prepared) -> list:
    """The groups' compiled programs (`lib.runtime.dry_run.Program`s), for the memory check
    and the dry run."""

  def plot(self, records: list, plots_dir: str) -> list:
    """The figures, from records alone: their paths."""

  def summary(self, records: list) -> str:
    """The printed table, from records alone."""


def missing(module, protocol=Experiment) -> list:
  """The members that `protocol` (and the protocols it extends) lists and `module` lacks."""
  names = set()
  for cls in protocol.__mro__:
    if cls is not Protocol and Protocol in cls.__mro__:
      names |= {name for name in vars(cls) if not name.startswith('_')}
      names |= set(vars(cls).get('__annotations__', {}))
  return sorted(name for name in names if not hasattr(module, name))


def new_workdir(cfg: dict) -> str:
  """A fresh runs/<experiment>-<time>[-n], created here so two runs never share one."""
  base = os.path.join('runs', f'{cfg["experiment"]}-{time.strftime("%Y%m%d-%H%M%S")}')
  for n in range(1, 1000):
    workdir = base if n == 1 else f'{base}-{n}'
    try:
      os.makedirs(workdir)
      return workdir
    except FileExistsError:
      continue
    except OSError as e:
      raise UserError(f'cannot create workdir {workdir}: {e.strerror or e}') from None
  raise UserError(f'cannot find a free workdir name like {base}')


def check_shard(shard_index: int, num_shards: int) -> tuple:
  if num_shards < 1 or not 0 <= shard_index < num_shards:
    raise UserError(f'--shard_index={shard_index} --num_shards={num_shards}: need num_shards >= 1 '
                    f'and 0 <= shard_index < num_shards')
  return shard_index, num_shards


def _with_run_keys(cfg: dict, shard: tuple, points_batch: int) -> dict:
  """The config with the run-level settings that a workdir must keep: the shard, and the points
  batch (lib.runtime.devices: it moves float32 results by an ulp, so a run may not mix two). The
  experiment's programs read the batch from there (`devices.points_batch_of`)."""
  from lib.runtime import devices  # pylint: disable=g-import-not-at-top
  shard = check_shard(*shard)
  devices.check_points_batch(points_batch)
  return {**cfg, **({'shard': list(shard)} if shard[1] > 1 else {}),
          **({devices.RUN_KEY: points_batch} if points_batch > 1 else {})}


def run(experiment, cfg: dict, workdir=None, overwrite: bool = False, shard: tuple = (0, 1),
        points_batch: int = 1) -> str:
  """Runs (or resumes) `experiment` on a config it validated, in `workdir` (default: a new
  runs/<experiment>-<time>); returns its summary.

  shard = (index, count): compute only groups index, index + count, ... of the grid (an array job
  on a cluster); the workdir's config records the shard, so it resumes only as that shard, and
  `merge` joins the shards' workdirs. points_batch: points vmapped together on a device
  (`lib.runtime.devices.map_points`), recorded in the config when above 1.
  """
  # pylint: disable=g-import-not-at-top  (jax: slow to import, and bad flags fail before it)
  import jax
  from lib.runtime import compiled
  from lib.runtime import limits
  cfg = _with_run_keys(cfg, shard, points_batch)
  # An experiment that needs inputs (a dataset) loads them first, so that a missing one fails
  # before anything is written; run() then takes them as a third argument.
  prepared = (experiment.prepare(cfg),) if hasattr(experiment, 'prepare') else ()
  _check_workdir(experiment, cfg, workdir, overwrite)  # before compiling: bad input fails fast
  with compiled.shared():  # what the memory check compiles, the run loads
    # every program that will run, compiled (in the dtype it runs in) and set against the memory
    # it will have
    with jax.enable_x64(cfg.get('dtype') == 'float64'):
      limits.check_memory(experiment.programs(
          cfg, _pending(experiment, cfg, workdir, overwrite), *prepared), cfg,
          getattr(experiment, 'SHRINK_KEYS', ()))
    store = _open_store(experiment, cfg, workdir, overwrite)
    start = time.perf_counter()
    with resources(store.workdir):
      computed = experiment.run(cfg, store, *prepared)
  logging.info('computed %d points in %.1fs', computed, time.perf_counter() - start)
  if not store.workdir:  # a follower: process 0 of a multi-process run writes
    return f'computed {computed} points with process 0, which writes the results and plots'
  records = store.records()
  with resources(store.workdir):
    paths = experiment.plot(records, store.plots_dir)
  return '\n'.join([experiment.summary(records), f'results: {store.results_path}',
                    'plots: ' + ', '.join(paths)])


def _check_workdir(experiment, cfg: dict, workdir, overwrite: bool) -> None:
  """What opening the workdir would refuse, checked by process 0 without writing anything."""
  from lib.runtime import devices  # pylint: disable=g-import-not-at-top
  neutral = getattr(experiment, 'NEUTRAL_KEYS', ())
  devices.on_leader(lambda: ResultStore.check(workdir, cfg, overwrite, neutral) if workdir
                    else check_writable('runs'))


def _pending(experiment, cfg: dict, workdir, overwrite: bool) -> list:
  """The groups of this shard with a point that `workdir` does not hold yet (all, for a new
  workdir or --overwrite): read only, so that a check that fails leaves the workdir as it was."""
  from lib.runtime import sweep  # pylint: disable=g-import-not-at-top
  groups = sweep.shard_of(experiment.grid(cfg), tuple(cfg.get('shard', (0, 1))))
  store = ResultStore(workdir or '', experiment.RECORD_FIELDS)
  held = bool(workdir) and not overwrite and os.path.isfile(store.results_path)
  read = lambda: store.records() if held else []  # a damaged file: its UserError, before compiling
  return sweep.pending(groups, sweep.done_keys(groups, experiment.point_key, read))


def dry_run(experiment, cfg: dict, shard: tuple = (0, 1), points_batch: int = 1) -> str:
  """What `run` would compute and an estimate of its cost (`lib.runtime.dry_run`); writes no
  results."""
  from lib.runtime import dry_run as dry_run_lib  # pylint: disable=g-import-not-at-top
  cfg = _with_run_keys(cfg, shard, points_batch)
  prepared = (experiment.prepare(cfg),) if hasattr(experiment, 'prepare') else ()
  return dry_run_lib.report(experiment, cfg, prepared, tuple(cfg.get('shard', (0, 1))))


def _open_store(experiment, cfg: dict, workdir, overwrite: bool) -> ResultStore:
  """Process 0 opens (or creates) the workdir; in a multi-process run the others get a follower
  store (and stop with process 0 if it cannot open the workdir)."""
  from lib.runtime import devices  # pylint: disable=g-import-not-at-top  (jax: slow to import)
  store = devices.on_leader(lambda: ResultStore.create(
      workdir or new_workdir(cfg), cfg, overwrite=overwrite, required=experiment.RECORD_FIELDS,
      neutral=getattr(experiment, 'NEUTRAL_KEYS', ())))
  return store or ResultStore.follower(cfg, experiment.RECORD_FIELDS)


def plot_only(workdir: str, lookup) -> str:
  """Redraws the plots of a finished or partial run from its results.jsonl alone."""
  if not os.path.isdir(workdir):
    raise UserError(f'workdir {workdir} does not exist or is not a folder')
  config = ResultStore(workdir).config()
  experiment = lookup(config.get('experiment', '') if isinstance(config, dict) else '')
  store = ResultStore(workdir, experiment.RECORD_FIELDS)
  records = store.records()
  if not records:
    raise UserError(f'no results to plot in {store.results_path}')
  with resources(workdir):
    paths = experiment.plot(records, store.plots_dir)
  return '\n'.join([experiment.summary(records), 'plots: ' + ', '.join(paths)])


def merge(sources: list, workdir: str, lookup, overwrite: bool = False) -> str:
  """Joins the results of shard workdirs (or any workdirs of one config) into `workdir`, in grid
  order, refusing workdirs whose configs differ in anything but the shard."""
  configs = {}
  for source in sources:
    if not os.path.isfile(os.path.join(source, 'config.json')):
      raise UserError(f'--merge: {source} is not a workdir (no config.json)')
    config = ResultStore(source).config()
    configs[source] = {k: v for k, v in config.items() if k != 'shard'}
  first, config = next(iter(configs.items()))
  experiment = lookup(config.get('experiment', ''))
  neutral = getattr(experiment, 'NEUTRAL_KEYS', ())
  for source, other in configs.items():
    differs = config_diff(config, other, ignore=neutral)
    if differs:
      raise UserError(f'--merge: {source} holds a different config from {first} (differs in: '
                      f'{", ".join(differs)})')
  spec_config = {k: v for k, v in config.items() if k != 'points_batch'}
  order = {key: i for i, key in enumerate(
      key for _, keys in experiment.grid(experiment.validate(spec_config)) for key in keys)}
  records = {}
  for source in sources:
    for record in ResultStore(source, experiment.RECORD_FIELDS).records():
      records.setdefault(experiment.point_key(record), record)
  if not records:
    raise UserError(f'--merge: no results in {", ".join(sources)}')
  store = ResultStore.create(workdir, config, overwrite=overwrite,
                             required=experiment.RECORD_FIELDS, neutral=neutral)
  for record in store.records():  # what an earlier merge into workdir already holds
    records.setdefault(experiment.point_key(record), record)
  records = sorted(records.values(), key=lambda r: order[experiment.point_key(r)])
  with resources(workdir):
    store.replace(records)
    paths = experiment.plot(records, store.plots_dir)
  missing = len(order) - len(records)
  return '\n'.join([experiment.summary(records),
                    f'merged {len(sources)} workdirs: {len(records)} of {len(order)} points'
                    + (f' ({missing} missing: run the missing shards, then merge again)'
                       if missing else ''),
                    f'results: {store.results_path}', 'plots: ' + ', '.join(paths)])
