"""One runner for the experiments that train: each group's model, task and optimizer built once
(the memory check and the run share them), its programs by name, its training on every seed
(`lib.runtime.train`: resumed from its checkpoint), the fields that every per-seed record
shares, and the checkpoints deleted once the records are safe.

A training experiment gives the runner what `TrainingExperiment` lists: `setup` (a group's
`Setup`) and `records` (a group's records from its `Trained`), and, for programs of its own on
the trained parameters (an evaluation, an input-gradient profile), `extra_programs`. It keeps
its data, model, loss and metrics, its records' fields and their order, its summary and plots;
its `programs` and `run` hand the module itself to `programs` and `run` here.

A config with `lr_candidates` (a language model's) trains each group at each of those learning
rates (its setup built from the config with learning_rate set to it) and keeps the one whose
final held-out metric SELECT_BY, the experiment's, is lowest on the mean over seeds (a rate at
which a seed diverged loses to one at which none did; ties to the earlier): its records are
that training's, and say which rate won and every rate's score (`Trained.selection`).
"""

import math
import os
from typing import Any, Callable, Hashable, NamedTuple, Optional, Protocol, runtime_checkable

import numpy as np

from lib.runtime import compiled
from lib.runtime import devices
from lib.runtime import sweep
from lib.runtime import train
from lib.runtime.jobs import Experiment
from lib.runtime.results import CHECKPOINTS_DIR
from lib.runtime.results import json_floats
from lib.runtime.results import ResultStore

# The config keys that records list after their curves, as `Trained.settings`.
SETTINGS = ('optimizer', 'learning_rate', 'num_steps', 'batch_size')


class Setup(NamedTuple):
  """What one group trains, as its experiment builds it (`TrainingExperiment.setup`)."""
  init: Callable  # key -> one seed's parameters
  task: train.Task
  opt: Any  # an optax.GradientTransformation (`train.optimizer`)
  name: str  # its programs', progress bar's and log lines' name, e.g. 'tanh clip=1 T=4'
  folder: str  # its checkpoints' folder in workdir/checkpoints (a rerun resumes from there)
  model: Any = None  # what the experiment's extra programs and records read
  tokens_per_step: int = 0  # shown by the progress bar (`train.train`): a language model's


class Extra(NamedTuple):
  """A program of the experiment's own on every seed's parameters: fn((params, seeds),
  *shared) -> outputs, seeds stacked (a `devices.map_points` program over num_seeds points in
  the run's points batch, with len(shared) shared arguments, built by a `compiled.cached`
  builder so that the check and the run get one object); a group runs it `calls` times."""
  fn: Callable
  shared: tuple = ()
  calls: int = 1


@runtime_checkable
class TrainingExperiment(Experiment, Protocol):
  """What a training experiment provides beyond `lib.runtime.jobs.Experiment`. Optionally also:

    extra_programs(cfg, group, setup, *prepared) -> {name: Extra}
                                 its own programs on the trained parameters, listed with the
                                 group's training programs as '<setup.name> <name>' and run by
                                 `Trained.run(name, params)`
  """

  def setup(self, cfg: dict, group: Hashable, *prepared) -> Setup:
    """The group's `Setup` (the runner builds it once per group: `setup` below)."""

  def records(self, cfg: dict, group: Hashable, trained: 'Trained', *prepared) -> list:
    """The group's records, one per seed in grid order, from its training."""


class Seed(NamedTuple):
  """One seed of a group's training (`Trained.seeds`): what every training record reads."""
  trained: 'Trained'
  index: int  # in the group's seeds
  seed: int
  diverged: bool

  @property
  def status(self) -> str:
    """'diverged' or 'ok'."""
    return 'diverged' if self.diverged else 'ok'

  @property
  def steps(self) -> int:
    """The steps it trained (fewer than num_steps where every seed diverged early)."""
    return int(self.trained.final['step'][self.index])

  @property
  def metrics(self) -> dict:
    """Its final held-out metrics (the curves' last points), None where it diverged."""
    return {name: None if self.diverged else float(values[self.index])
            for name, values in self.trained.metrics.items()}

  def curve(self, name: str) -> list:
    """Its logged curve `name` ('train_loss', or a metric of the task's evaluate): JSON
    numbers, NaN from where it diverged."""
    return json_floats(self.trained.final['curves'][name][self.index])

  def progress(self, *metrics: str) -> dict:
    """steps, log_every, the training loss curve and '<metric>_curve' for each of `metrics`
    that the task logs, in this order."""
    curves = self.trained.final['curves']
    return {'steps': self.steps, 'log_every': self.trained.cfg['log_every'],
            'train_loss': self.curve('train_loss'),
            **{f'{name}_curve': self.curve(name) for name in metrics if name in curves}}


class Trained(NamedTuple):
  """One group's training, as its experiment's `records` read it."""
  setup: Setup
  final: dict  # train.train's final states: numpy, seeds stacked
  seed_list: tuple
  cfg: dict
  workdir: str
  extras: dict  # name -> Extra
  selection: dict = {}  # lr_candidates and each one's score, where the config chose among them

  @property
  def settings(self) -> dict:
    """The config's SETTINGS, in that order."""
    return {key: self.cfg[key] for key in SETTINGS}

  @property
  def params(self):
    """Every seed's trained parameters (seeds stacked)."""
    return self.final['params']

  @property
  def initial(self):
    """Every seed's parameters before training."""
    return self.final['init_params']

  @property
  def metrics(self) -> dict:
    """The final held-out metrics (the curves' last points), seeds stacked; NaN where a seed
    diverged."""
    return self.final['metrics']

  def run(self, name: str, params):
    """The extra program `name` on `params` (seeds stacked): its outputs, numpy, seeds
    stacked."""
    extra = self.extras[name]
    return devices.run_points(extra.fn, (params, np.asarray(self.seed_list, np.int32)),
                              *extra.shared)

  def seeds(self, finite: Optional[list] = None) -> list:
    """Each seed's `Seed`. A seed diverged if its training did, or if a value of `finite`
    (arrays, seeds first; default: its final held-out metrics) is not finite at it: an
    overflowing loss from finite parameters counts as diverged."""
    finite = list(self.metrics.values() if finite is None else finite)
    return [Seed(self, j, seed, bool(self.final['diverged'][j])
                 or not all(np.isfinite(v[j]) for v in finite))
            for j, seed in enumerate(self.seed_list)]


def learning_rates(cfg: dict) -> tuple:
  """The learning rates each group trains at: config.lr_candidates where the config has them,
  else the one its setup reads (config.learning_rate, or the group's own: None here)."""
  return tuple(cfg['lr_candidates']) if 'lr_candidates' in cfg else (cfg.get('learning_rate'),)


def setups(experiment: TrainingExperiment, cfg: dict, group: Hashable, *prepared) -> list:
  """[(learning rate, its config, its Setup)] for each of the group's `learning_rates`; where
  there are several, each Setup's name and checkpoint folder say its rate."""
  rates = learning_rates(cfg)
  out = []
  for lr in rates:
    at = {**cfg, 'learning_rate': lr} if 'lr_candidates' in cfg else cfg
    s = setup(experiment, at, group, *prepared)
    if len(rates) > 1:
      s = s._replace(name=f'{s.name} lr={lr:g}', folder=f'{s.folder}-lr{lr:g}')
    out.append((lr, at, s))
  return out


def score(final: dict, metric: str) -> float:
  """The mean over seeds of a training's final held-out `metric`: inf where a seed diverged or
  the metric is not finite."""
  values = np.asarray(final['metrics'][metric], np.float64)
  if np.any(final['diverged']) or not np.all(np.isfinite(values)):
    return math.inf
  return float(np.mean(values))


@compiled.cached
def setup(experiment: TrainingExperiment, cfg: dict, group: Hashable, *prepared) -> Setup:
  """experiment.setup(cfg, group, *prepared), one object per (experiment, config, group,
  prepared) inside `compiled.shared()`: the memory check and the run build each program from it
  once."""
  return experiment.setup(cfg, group, *prepared)


def _extras(experiment, cfg: dict, group: Hashable, group_setup: Setup, prepared: tuple) -> dict:
  """The experiment's extra programs of the group, by name ({} for one without)."""
  if not hasattr(experiment, 'extra_programs'):
    return {}
  return experiment.extra_programs(cfg, group, group_setup, *prepared)


def programs(experiment: TrainingExperiment, cfg: dict, groups, *prepared) -> list:
  """The programs of each group (`lib.runtime.dry_run.Program`s): its training's
  (`train.programs`), then its extra programs on the parameters its initialisation gives."""
  from lib.runtime import dry_run  # pylint: disable=g-import-not-at-top
  out = []
  for group, _ in groups:
    count, batch = cfg['num_seeds'], devices.points_batch_of(cfg)
    candidates = setups(experiment, cfg, group, *prepared)
    for _, _, group_setup in candidates:
      named = train.programs(group_setup.name, group_setup.init, group_setup.task,
                             group_setup.opt, count, cfg['num_steps'], cfg['log_every'], batch)
      out += named.values()
    extras = _extras(experiment, cfg, group, candidates[0][2], prepared)  # as train_group's
    if extras:
      init = named['init']
      (seeds,) = dry_run.points_args(count, 'int32', batch=batch)
      params = devices.abstract(init.fn.eval_shape(*init.args)['params'], True, count, batch)
      out += [dry_run.Program(f'{group_setup.name} {name}', extra.fn,
                              ((params, seeds), *devices.abstract(extra.shared, False, count,
                                                                  batch)),
                              extra.calls)
              for name, extra in extras.items()]
  return out


def train_group(experiment: TrainingExperiment, cfg: dict, workdir: str, group: Hashable,
                *prepared) -> list:
  """Trains `group` on every seed (`train.train`, checkpointed in
  workdir/checkpoints/<setup.folder>, from where a rerun resumes), at each of its learning
  rates (`learning_rates`; the module docstring says which it keeps), and returns its records
  (experiment.records)."""
  seeds = sweep.seeds(cfg)
  choosing = 'lr_candidates' in cfg
  scores, best = [], None
  candidates = setups(experiment, cfg, group, *prepared)
  for _, at, group_setup in candidates:
    final = train.train(group_setup.init, group_setup.task, group_setup.opt, seeds,
                        cfg['num_steps'], cfg['log_every'],
                        os.path.join(workdir, CHECKPOINTS_DIR, group_setup.folder),
                        cfg['checkpoint_every'], desc=group_setup.name,
                        tokens_per_step=group_setup.tokens_per_step,
                        batch=devices.points_batch_of(cfg),
                        metrics_path=os.path.join(workdir, train.METRICS_FILE),
                        tensorboard_dir=(os.path.join(workdir, train.TENSORBOARD_DIR)
                                         if cfg.get('tensorboard') else None))
    scores.append(score(final, experiment.SELECT_BY) if choosing else 0.0)
    if best is None or scores[-1] < scores[best[0]]:
      best = (len(scores) - 1, at, group_setup, final)
  _, at, group_setup, final = best
  selection = {'lr_candidates': list(learning_rates(cfg)),
               f'lr_{experiment.SELECT_BY}': [None if math.isinf(v) else v for v in scores]
               } if choosing else {}
  # the extra programs read the model, the same at every rate: built from the first rate's
  # setup and the config, as `programs` builds them, so that the check's are the run's
  trained = Trained(group_setup, final, seeds, at, workdir,
                    _extras(experiment, cfg, group, candidates[0][2], prepared), selection)
  return experiment.records(at, group, trained, *prepared)


def run(experiment: Experiment, cfg: dict, store: ResultStore, *prepared, desc: str,
        compute: Optional[Callable] = None) -> int:
  """Computes the missing points of experiment.grid(cfg) into `store` (`sweep.run_groups`):
  each group trained (`train_group`), or compute(group) where given (a grid with groups of
  other kinds too; it calls `train_group` for its training groups); then deletes the
  checkpoints, every record they could resume being written. Returns the points computed."""
  if compute is None:
    compute = lambda group: train_group(experiment, cfg, store.workdir, group, *prepared)
  computed = sweep.run_groups(experiment.grid(cfg), compute, experiment.point_key, store,
                              desc=desc)
  store.remove_checkpoints()
  return computed
