"""Experiments by name, and what run.py does with one: run it into a workdir, or redraw its plots."""

import os
import time

from absl import logging

from lib import depth_decay
from lib import gradient_decay
from lib import phase_diagram
from lib.errors import UserError
from lib.results import ResultStore

EXPERIMENTS = {
    'gradient_decay': gradient_decay,
    'phase_diagram': phase_diagram,
    'depth_decay': depth_decay,
}


def get(name: str):
  if name not in EXPERIMENTS:
    raise UserError(f'unknown experiment {name!r}; valid choices: {", ".join(EXPERIMENTS)}')
  return EXPERIMENTS[name]


def validate(config) -> dict:
  """The config checked by its experiment's spec (config.experiment names the experiment)."""
  return get(config.get('experiment', '')).validate(config)


def default_workdir(cfg: dict) -> str:
  return os.path.join('runs', f'{cfg["experiment"]}-{time.strftime("%Y%m%d-%H%M%S")}')


def run(cfg: dict, workdir: str, overwrite: bool = False) -> str:
  """Runs (or resumes) the experiment of a validated config in `workdir`; returns its summary."""
  experiment = get(cfg['experiment'])
  store = ResultStore.create(workdir, cfg, overwrite=overwrite)
  start = time.perf_counter()
  computed = experiment.run(cfg, store)
  logging.info('computed %d points in %.1fs', computed, time.perf_counter() - start)
  records = store.records()
  paths = experiment.plot(records, store.plots_dir)
  return '\n'.join([experiment.summary(records), f'results: {store.results_path}',
                    'plots: ' + ', '.join(paths)])


def plot_only(workdir: str) -> str:
  """Redraws the plots of a finished or partial run from its results.jsonl alone."""
  if not os.path.isdir(workdir):
    raise UserError(f'workdir {workdir} does not exist or is not a folder')
  store = ResultStore(workdir)
  experiment = get(store.config().get('experiment', ''))
  records = store.records()
  if not records:
    raise UserError(f'no results to plot in {store.results_path}')
  paths = experiment.plot(records, store.plots_dir)
  return '\n'.join([experiment.summary(records), 'plots: ' + ', '.join(paths)])
