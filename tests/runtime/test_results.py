"""The results store: atomic records, repair after a kill, config checks."""

import fcntl
import json
import math
import os
import re

import pytest

from lib.runtime.errors import UserError
from lib.runtime.results import ResultStore

CONFIG = {'experiment': 'gradient_decay', 'seq_lens': (3, 5), 'sigma_b2': 0.0}


def test_records_round_trip_with_non_finite_values_as_null(tmp_path):
  """Records read back as written, NaN and infinities as null; the config is stored (tuples as
  lists); each create, a resume too, appends its environment (jax, devices, time)."""
  store = ResultStore.create(str(tmp_path / 'w'), CONFIG)
  store.append([{'a': 1, 'v': [1.5, math.nan, -math.inf]}, {'a': 2, 'v': []}])
  assert store.records() == [{'a': 1, 'v': [1.5, None, None]}, {'a': 2, 'v': []}]
  assert json.load(open(tmp_path / 'w' / 'config.json'))['seq_lens'] == [3, 5]
  env = json.load(open(tmp_path / 'w' / 'environment.json'))['runs']
  assert len(env) == 1 and env[0]['jax'] and env[0]['devices'] and env[0]['time']
  ResultStore.create(str(tmp_path / 'w'), CONFIG)  # a resume adds its own environment
  assert len(json.load(open(tmp_path / 'w' / 'environment.json'))['runs']) == 2


def test_a_line_cut_by_a_kill_is_dropped_on_reopen(tmp_path):
  """A last line cut mid-write is not read as a record, and reopening the store truncates it,
  so the next record starts a line of its own."""
  workdir = str(tmp_path / 'w')
  store = ResultStore.create(workdir, CONFIG)
  store.append([{'a': 1}])
  with open(store.results_path, 'ab') as f:
    f.write(b'{"a": 2, "v": [1.0, 2.')  # what kill -9 mid-write leaves
  assert store.records() == [{'a': 1}]
  store = ResultStore.create(workdir, CONFIG)
  store.append([{'a': 3}])
  assert store.records() == [{'a': 1}, {'a': 3}]
  assert open(store.results_path).read().count('\n') == 2


def test_a_different_config_is_refused_unless_overwrite(tmp_path):
  """A workdir of another config is refused, naming the keys that differ, and left untouched;
  with overwrite its records are deleted and the new config stored."""
  workdir = str(tmp_path / 'w')
  ResultStore.create(workdir, CONFIG).append([{'a': 1}])
  other = {**CONFIG, 'seq_lens': (3,)}
  with pytest.raises(UserError, match=r'holds results of a different config \(differs in: '
                     r'seq_lens\); pass --overwrite'):
    ResultStore.create(workdir, other)
  assert ResultStore(workdir).records() == [{'a': 1}]  # untouched
  store = ResultStore.create(workdir, other, overwrite=True)
  assert store.records() == [] and store.config()['seq_lens'] == [3]


def test_unwritable_workdir_is_a_user_error_and_writes_nothing(tmp_path):
  """A workdir under a file, or a file as the workdir: a UserError each, and nothing written."""
  blocker = tmp_path / 'file'
  blocker.write_text('x')
  with pytest.raises(UserError, match='cannot write to workdir'):
    ResultStore.create(str(blocker / 'sub'), CONFIG)
  with pytest.raises(UserError, match='exists and is not a folder'):
    ResultStore.create(str(blocker), CONFIG)
  assert os.listdir(tmp_path) == ['file']


def test_corrupt_or_foreign_lines_are_reported(tmp_path):
  """A line that is not JSON, and records without a required field or not objects, are
  UserErrors that name the line."""
  store = ResultStore.create(str(tmp_path / 'w'), CONFIG, required=('a',))
  with open(store.results_path, 'w') as f:
    f.write('{"a": 1}\nnot json\n{"a": 2}\n')
  with pytest.raises(UserError, match='line 2 is not a JSON record'):
    store.records()
  for line, message in [('{"b": 1}', 'line 2 is not a record of this experiment (missing a)'),
                        ('[1, 2]', 'line 2 is not a JSON object')]:
    with open(store.results_path, 'w') as f:
      f.write('{"a": 1}\n' + line + '\n')
    with pytest.raises(UserError, match=re.escape(message)):
      store.records()


def test_a_workdir_in_use_by_another_run_is_refused(tmp_path):
  """A workdir locked by another run is refused, and nothing but the lock file is there."""
  workdir = tmp_path / 'w'
  workdir.mkdir()
  with open(workdir / '.lock', 'a') as other_run:
    fcntl.flock(other_run, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with pytest.raises(UserError, match='is in use by another run'):
      ResultStore.create(str(workdir), CONFIG)
  assert sorted(os.listdir(workdir)) == ['.lock']


@pytest.mark.parametrize('name, make', [('plots', 'file'), ('environment.json', 'folder'),
                                        ('results.jsonl', 'folder')])
def test_owned_paths_of_the_wrong_kind_are_refused_before_writing(tmp_path, name, make):
  """plots as a file, environment.json or results.jsonl as a folder: refused even with
  overwrite, before anything is written."""
  workdir = tmp_path / 'w'
  workdir.mkdir()
  if make == 'file':
    (workdir / name).write_text('')
  else:
    (workdir / name).mkdir()
  with pytest.raises(UserError, match=f'{name} exists and is not a'):
    ResultStore.create(str(workdir), CONFIG, overwrite=True)
  assert os.listdir(workdir) == [name]


@pytest.mark.parametrize('name, content, message', [
    ('environment.json', b'\xff\xfe{}',
     "environment.json is damaged: not UTF-8 text (byte b'\\xff' at 0); delete it (it lists the "
     'environments'),
    ('environment.json', b'[1, 2]', 'environment.json is damaged: not a JSON object; delete it'),
    ('environment.json', b'{"runs": 3}', "environment.json is damaged: its 'runs' is not a list"),
    ('config.json', b'{"a": \xe9}', "config.json is damaged: not UTF-8 text (byte b'\\xe9' at 6); "
                                    'restore it from a copy, or start the workdir again with '
                                    '--overwrite'),
    ('config.json', b'{"a": ', 'config.json is damaged: not JSON (Expecting value: line 1 '),
    ('config.json', b'[1]', 'config.json is damaged: not a JSON object; restore it'),
])
def test_a_damaged_workdir_file_is_one_line_that_names_it_and_what_to_do(tmp_path, name, content,
                                                                       message):
  """A workdir file that is not UTF-8, not JSON, or not what it should hold (a bad copy, a disk
  fault): reopening the workdir is a one-line UserError naming the file, what is wrong with it
  and what to do, raised by the checks before anything is written (the workdir's files as they
  were); a damaged config.json fails the same way where --plot_only and --merge read it."""
  workdir = tmp_path / 'w'
  ResultStore.create(str(workdir), CONFIG).append([{'a': 1}])
  (workdir / name).write_bytes(content)
  files = {f: (workdir / f).read_bytes() for f in os.listdir(workdir) if f != 'plots'}
  for check in (ResultStore.check, ResultStore.create):  # the read-only checks say it first
    with pytest.raises(UserError, match=re.escape(f'{workdir}/{message}')) as error:
      check(str(workdir), CONFIG)
    assert '\n' not in str(error.value)
  assert {f: (workdir / f).read_bytes() for f in files} == files
  if name == 'config.json':
    with pytest.raises(UserError, match=re.escape(f'{workdir}/{message}')):
      ResultStore(str(workdir)).config()


def test_a_results_line_that_is_not_utf8_names_the_line_and_what_to_do(tmp_path):
  store = ResultStore.create(str(tmp_path / 'w'), CONFIG)
  store.append([{'a': 1}])
  with open(store.results_path, 'ab') as f:
    f.write(b'{"a": 2, "b": "\xff"}\n')
  with pytest.raises(UserError, match=re.escape(
      f"{store.results_path} is damaged: line 2 is not a JSON record, not UTF-8 text (byte "
      "b'\\xff' at 15); restore it from a copy, delete that line (its point is computed again), "
      'or start the workdir again with --overwrite')):
    store.records()
