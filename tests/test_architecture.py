"""The layout of lib/ (docs/ARCHITECTURE.md): one folder per role, imports pointing one way, and
an experiment registry that matches the config folder."""

import ast
import os
import runpy

import pytest

from lib import experiments
from lib.runtime import jobs
from lib.runtime import training
from tests.conftest import ROOT

LIB = os.path.join(ROOT, 'lib')
# role -> the roles its modules may import (itself included). The machinery (runtime) imports no
# other role; measurements know no network; networks may use a measurement (a trained model's
# input-gradient profile); data and report stand on the machinery alone; experiments use all.
ALLOWED = {
    'runtime': {'runtime'},
    'measure': {'runtime', 'measure'},
    'nets': {'runtime', 'measure', 'nets'},
    'data': {'runtime', 'data'},
    'report': {'runtime', 'report'},
    'experiments': {'runtime', 'measure', 'nets', 'data', 'report', 'experiments'},
}
def lib_imports(source: str, package: str = 'lib') -> set:
  """The roles (lib.<role>) that a module of `package` imports, at the top or inside functions:
  absolute and relative imports, and importlib.import_module / __import__ of a constant name.
  A bare `import lib` (reaching roles by attribute) counts as the role 'lib', and an import of
  the top-level config folder as 'configs': no role may do either."""
  names = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      names += [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # relative: resolved against the module's own package
        parts = package.split('.')
        base = '.'.join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
      names += [f'{base}.{alias.name}' for alias in node.names]
    elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
          and isinstance(node.args[0].value, str)
          and getattr(node.func, 'attr', getattr(node.func, 'id', None)) in (
              'import_module', '__import__')):
      names.append(node.args[0].value)
  roles = set()
  for name in names:
    parts = name.split('.')
    if parts[0] == 'experiments':
      roles.add('configs')
    elif parts[0] == 'lib':
      roles.add(parts[1] if len(parts) > 1 and parts[1] in ALLOWED else 'lib')
  return roles


def modules():
  for folder, _, files in os.walk(LIB):
    for name in sorted(files):
      if name.endswith('.py'):
        yield os.path.relpath(os.path.join(folder, name), LIB)


def test_lib_holds_the_role_folders_and_nothing_else():
  entries = {e for e in os.listdir(LIB) if e != '__pycache__'}
  assert entries == set(ALLOWED) | {'__init__.py'}


@pytest.mark.parametrize('module', sorted(modules()))
def test_imports_point_one_way(module):
  role = module.split(os.sep)[0]
  package = '.'.join(['lib'] + module.split(os.sep)[:-1])
  with open(os.path.join(LIB, module)) as f:
    imported = lib_imports(f.read(), package)
  if role == '__init__.py':
    assert not imported
    return
  allowed = ALLOWED[role]
  assert imported <= allowed, f'lib/{module} ({role}) imports {sorted(imported - allowed)}'


def test_the_import_check_sees_every_form_of_import():
  """The check itself: each way of importing a module of another role is seen."""
  source = '''
import lib.nets.cells
from lib import measure
from lib.data import tasks
from lib.report.tables import decay_table
def f():
  from lib.experiments import gradient_decay
'''
  assert lib_imports(source) == {'nets', 'measure', 'data', 'report', 'experiments'}
  assert lib_imports('from . import sweep', 'lib.runtime') == {'runtime'}
  assert lib_imports('from ..nets import cells', 'lib.runtime') == {'nets'}
  assert lib_imports('from .. import measure', 'lib.runtime') == {'measure'}
  assert lib_imports('importlib.import_module("lib.data.tasks")') == {'data'}
  assert lib_imports('__import__("lib.nets")') == {'nets'}
  assert lib_imports('import lib') == {'lib'}
  assert lib_imports('from experiments import gradient_decay') == {'configs'}
  assert lib_imports('import jax\nfrom absl import logging') == set()


def test_registry_and_config_folder_match():
  """Every registered experiment has its config file of the same name and its module of the same
  name; every config file names a registered experiment (a variant names the one it varies)."""
  configs = {name[:-3] for name in os.listdir(os.path.join(ROOT, 'experiments'))
             if name.endswith('.py')}
  for name, module in experiments.EXPERIMENTS.items():
    assert name in configs
    assert module == f'lib.experiments.{name}'
    assert os.path.isfile(os.path.join(LIB, 'experiments', f'{name}.py'))
  for name in configs:
    config = runpy.run_path(os.path.join(ROOT, 'experiments', f'{name}.py'))['get_config']()
    assert config.experiment in experiments.EXPERIMENTS, name
    if name in experiments.EXPERIMENTS:
      assert config.experiment == name


@pytest.mark.parametrize('name', sorted(experiments.EXPERIMENTS))
def test_every_experiment_provides_what_the_jobs_call(name):
  """Every experiment provides what lib.runtime.jobs.Experiment lists; one that trains through
  the runner (it has a `setup`), what lib.runtime.training.TrainingExperiment lists too."""
  module = experiments.get(name)
  assert isinstance(module, jobs.Experiment), (
      f'lib/experiments/{name}.py lacks {jobs.missing(module)}')
  if hasattr(module, 'setup'):
    assert isinstance(module, training.TrainingExperiment), (
        f'lib/experiments/{name}.py lacks {jobs.missing(module, training.TrainingExperiment)}')


def test_the_protocols_list_what_the_jobs_and_the_runner_call():
  """The check itself: the members each protocol names, and a module without one is seen."""
  assert jobs.missing(object()) == ['RECORD_FIELDS', 'grid', 'plot', 'point_key', 'programs',
                                    'run', 'summary', 'validate']
  assert jobs.missing(experiments.get('gradient_decay'), training.TrainingExperiment) == [
      'records', 'setup']
  assert not isinstance(object(), jobs.Experiment)
