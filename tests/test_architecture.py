"""The layout of lib/ (docs/ARCHITECTURE.md): one folder per role, imports pointing one way, and
an experiment registry that matches the config folder."""

import ast
import os
import runpy

import pytest

from lib import experiments
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
# What lib.runtime.jobs calls on an experiment module (its docstring lists them).
PROTOCOL = ('validate', 'grid', 'point_key', 'run', 'plot', 'summary', 'programs',
            'RECORD_FIELDS')


def lib_imports(source: str) -> set:
  """The roles (lib.<role>) that a module's source imports, at the top or inside functions."""
  roles = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = ([f'{node.module}.{alias.name}' for alias in node.names] if node.module == 'lib'
               else [node.module])
    else:
      continue
    roles.update(name.split('.')[1] for name in names
                 if name.startswith('lib.'))
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
  with open(os.path.join(LIB, module)) as f:
    imported = lib_imports(f.read())
  if role == '__init__.py':
    assert not imported
    return
  assert imported <= ALLOWED[role], (f'lib/{module} ({role}) imports '
                                     f'{sorted(imported - ALLOWED[role])}')


def test_the_import_check_sees_every_form_of_import():
  """The check itself: each way of importing a module of another role is seen."""
  source = '''
import lib.nets.cells
from lib import measure
from lib.data import tasks
from lib.report.tables import decay_table
def f():
  from lib.experiments import gradient_decay
from . import sibling
'''
  assert lib_imports(source) == {'nets', 'measure', 'data', 'report', 'experiments'}


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
  module = experiments.get(name)
  missing = [attr for attr in PROTOCOL if not hasattr(module, attr)]
  assert not missing, f'lib/experiments/{name}.py lacks {missing}'
