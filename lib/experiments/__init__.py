"""The experiments, by name: one module each, named as its config file in the top-level
experiments/ folder (experiments/gradient_decay.py configures lib/experiments/gradient_decay.py;
a variant config such as experiments/gradient_clipping.py names the experiment it varies in
`config.experiment`). A module provides what `lib.runtime.jobs` lists; this registry finds it,
and hands it to the jobs that run.py calls.
"""

import importlib

from lib.runtime import jobs
from lib.runtime.errors import UserError

# name -> module, imported when first asked for: a run of one experiment (or a bad flag) does not
# pay for the others' imports (the training experiments bring TFDS, optax and orbax).
EXPERIMENTS = {
    'gradient_decay': 'lib.experiments.gradient_decay',
    'phase_diagram': 'lib.experiments.phase_diagram',
    'depth_decay': 'lib.experiments.depth_decay',
    'long_range_memory': 'lib.experiments.long_range_memory',
    'image_classification': 'lib.experiments.image_classification',
    'language_model': 'lib.experiments.language_model',
    'curse_of_memory': 'lib.experiments.curse_of_memory',
    'context_use': 'lib.experiments.context_use',
    'transformer_depth': 'lib.experiments.transformer_depth',
    'associative_recall': 'lib.experiments.associative_recall',
    'lyapunov': 'lib.experiments.lyapunov',
}


def get(name: str):
  """The module of experiment `name`, or a UserError listing the valid names."""
  if name not in EXPERIMENTS:
    raise UserError(f'unknown experiment {name!r}; valid choices: {", ".join(EXPERIMENTS)}')
  return importlib.import_module(EXPERIMENTS[name])


def validate(config) -> dict:
  """The config checked by its experiment's spec (config.experiment names the experiment)."""
  return get(config.get('experiment', '')).validate(config)


def run(cfg: dict, workdir=None, overwrite: bool = False, shard: tuple = (0, 1),
        points_batch: int = 1) -> str:
  """Runs (or resumes) the experiment of a validated config: `lib.runtime.jobs.run`."""
  return jobs.run(get(cfg['experiment']), cfg, workdir, overwrite, shard, points_batch)


def dry_run(cfg: dict, shard: tuple = (0, 1), points_batch: int = 1) -> str:
  """What `run` would compute, and its estimated cost: `lib.runtime.jobs.dry_run`."""
  return jobs.dry_run(get(cfg['experiment']), cfg, shard, points_batch)


def plot_only(workdir: str) -> str:
  """Redraws the plots of a workdir from its results: `lib.runtime.jobs.plot_only`."""
  return jobs.plot_only(workdir, get)


def merge(sources: list, workdir: str, overwrite: bool = False) -> str:
  """Joins shards' workdirs into `workdir`: `lib.runtime.jobs.merge`."""
  return jobs.merge(sources, workdir, get, overwrite=overwrite)
