"""The workdir: config.json, environment.json and results.jsonl, written so that a crash or a
kill -9 at any moment leaves only complete records behind.

results.jsonl holds one JSON object per sweep point. Each record is appended with one write of one
line, then fsync'ed; a line cut short by a kill is dropped (truncated away) when the workdir is
opened again, so every line in the file is a complete record and a resumed sweep recomputes exactly
the points that are missing.
"""

import fcntl
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
from typing import Iterable

import numpy as np

from lib.runtime.errors import UserError
from lib.runtime.errors import resource_error

CONFIG_FILE = 'config.json'
ENVIRONMENT_FILE = 'environment.json'
RESULTS_FILE = 'results.jsonl'
PLOTS_DIR = 'plots'
CHECKPOINTS_DIR = 'checkpoints'  # training state of groups in flight (lib/runtime/train.py)
LOCK_FILE = '.lock'
_DIRS = (PLOTS_DIR, CHECKPOINTS_DIR)
_OWNED = (CONFIG_FILE, ENVIRONMENT_FILE, RESULTS_FILE) + _DIRS
_TMP_PREFIX = '.tmp-'


def json_safe(value):
  """Replaces non-finite floats (which JSON cannot hold) by None, recursively."""
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {k: json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  return value


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def json_floats(values) -> list:
  """An array as JSON numbers: float32 in its shortest round-trip form (not float64's 17 digits)."""
  values = np.asarray(values)
  if values.dtype == np.float32:
    return [float(str(v)) for v in values]
  return values.tolist()


def write_atomic(path: str, data: bytes) -> None:
  """Writes `path` whole or not at all (temporary file in the same folder, then rename)."""
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=_TMP_PREFIX)
  try:
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make results private
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_json(path: str, value) -> None:
  write_atomic(path, (json.dumps(json_safe(value), indent=2, sort_keys=True) + '\n').encode())


# What to do about a damaged workdir file, by file (`read_json`, `ResultStore.records`).
RESTORE = 'restore it from a copy, or start the workdir again with --overwrite'
REMEDIES = {
    CONFIG_FILE: RESTORE,
    RESULTS_FILE: 'restore it from a copy, delete that line (its point is computed again), or '
                  'start the workdir again with --overwrite',
    ENVIRONMENT_FILE: 'delete it (it lists the environments the runs ran in) and run again',
}


def damaged(path: str, what: str, remedy: str = '') -> UserError:
  """The one-line error of a damaged workdir file: its path, what is wrong, what to do."""
  remedy = remedy or REMEDIES.get(os.path.basename(path), RESTORE)
  return UserError(f'{path} is damaged: {what}; {remedy}')


def _decoding(e: ValueError) -> str:
  """What a JSON decoder's error says about the text, in a few words."""
  if isinstance(e, UnicodeDecodeError):
    return f'not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at {e.start})'
  return f'not JSON ({e})'


def read_json(path: str, kind: type = object):
  """The JSON value in `path`, of type `kind`, or a one-line UserError that names the file and
  what to do (`damaged`)."""
  try:
    with open(path, 'rb') as f:
      value = json.loads(f.read().decode('utf-8'))
  except FileNotFoundError:
    raise UserError(f'missing file: {path}') from None
  except OSError as e:
    raise UserError(f'cannot read {path}: {e.strerror or e}') from None
  except ValueError as e:  # not UTF-8, or not JSON
    raise damaged(path, _decoding(e)) from None
  if not isinstance(value, kind):
    raise damaged(path, 'not a JSON ' + {dict: 'object', list: 'array'}.get(kind, kind.__name__))
  return value


def environment() -> dict:
  """Versions, devices and the git commit: what is needed to say where numbers came from."""
  import flax
  import jax
  import jaxlib
  import optax

  here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo
  try:
    commit = subprocess.run(
        ['git', 'rev-parse', 'HEAD'], cwd=here, capture_output=True, text=True, timeout=10,
        check=True).stdout.strip()
    dirty = bool(subprocess.run(
        ['git', 'status', '--porcelain', '--untracked-files=no'], cwd=here, capture_output=True,
        text=True, timeout=10, check=True).stdout.strip())
  except (OSError, subprocess.SubprocessError):
    commit, dirty = None, None
  return {
      'python': platform.python_version(),
      'platform': platform.platform(),
      'jax': jax.__version__,
      'jaxlib': jaxlib.__version__,
      'flax': flax.__version__,
      'optax': optax.__version__,
      'numpy': np.__version__,
      'backend': jax.default_backend(),
      'devices': [str(d) for d in jax.devices()],
      'git_commit': commit,
      'git_dirty': dirty,
  }


def config_diff(old: dict, new: dict, ignore: tuple = ()) -> list:
  """The keys whose values differ between two configs, sorted, except those in `ignore`."""
  return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in ignore)


_LOCKS = {}  # real path of a workdir -> the open lock file this process holds on it


def check_writable(path: str) -> None:
  """A UserError unless `path` is (or can be made) a folder this process may write in, judged
  from the nearest part of it that exists, without writing anything."""
  existing = os.path.abspath(path)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    reason = 'Not a directory'
  elif not os.access(existing, os.W_OK | os.X_OK):
    reason = 'Permission denied'
  else:
    return
  raise UserError(f'cannot write to workdir {path}: {reason}')


def _lock(workdir: str) -> None:
  """Holds an exclusive lock on workdir for the life of the process: two runs appending to one
  results file would duplicate its records."""
  path = os.path.realpath(workdir)
  if path in _LOCKS:
    return
  f = open(os.path.join(workdir, LOCK_FILE), 'a')
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    f.close()
    raise UserError(f'workdir {workdir} is in use by another run; wait for it or choose '
                    'another --workdir') from None
  _LOCKS[path] = f


def _runs(path: str) -> list:
  """The runs that environment.json at `path` lists ([] where there is none)."""
  runs = read_json(path, dict).get('runs', []) if os.path.exists(path) else []
  if not isinstance(runs, list):
    raise damaged(path, "its 'runs' is not a list")
  return runs


def _line(record: dict) -> bytes:
  return (json.dumps(json_safe(record), separators=(',', ':')) + '\n').encode()


class ResultStore:
  """Append-only records of one experiment in one workdir.

  required: the fields every record of this experiment has; a line without them is reported as
  not belonging here, rather than failing later with a KeyError.
  """

  def __init__(self, workdir: str, required: tuple = ()):
    self.workdir = workdir
    self.required = tuple(required)
    self.results_path = os.path.join(workdir, RESULTS_FILE)
    self.plots_dir = os.path.join(workdir, PLOTS_DIR)
    self.checkpoints_dir = os.path.join(workdir, CHECKPOINTS_DIR)
    self.shard = (0, 1)

  @classmethod
  def check(cls, workdir: str, config: dict, overwrite: bool = False, neutral: tuple = ()) -> dict:
    """The checks of `create`, reading only: `workdir` can be opened for `config` (it is a folder
    or can be made one, holds no other config unless `overwrite`, and is writable as far as the
    file system's permissions say). Returns the config as it is stored."""
    config = json_safe(json.loads(json.dumps(config)))  # tuples -> lists, as stored
    config_path = os.path.join(workdir, CONFIG_FILE)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
      raise UserError(f'workdir {workdir} exists and is not a folder')
    for name in _OWNED:
      path = os.path.join(workdir, name)
      if os.path.exists(path) and os.path.isdir(path) != (name in _DIRS):
        kind = 'a folder' if name in _DIRS else 'a file'
        raise UserError(f'workdir {workdir}: {name} exists and is not {kind}')
    held = os.path.exists(config_path) or os.path.exists(os.path.join(workdir, RESULTS_FILE))
    if held and not overwrite:
      old = read_json(config_path, dict) if os.path.exists(config_path) else {}
      if old != config and (config_diff(old, config, ignore=neutral) or not old):
        differs = ', '.join(config_diff(old, config, ignore=neutral)) or 'unknown'
        raise UserError(
            f'workdir {workdir} holds results of a different config (differs in: {differs}); '
            'pass --overwrite to replace them or choose another --workdir')
    if not overwrite:
      _runs(os.path.join(workdir, ENVIRONMENT_FILE))  # damaged: it fails here, before compiling
    check_writable(workdir)
    return config

  @classmethod
  def create(cls, workdir: str, config: dict, overwrite: bool = False,
             required: tuple = (), neutral: tuple = ()) -> 'ResultStore':
    """Opens `workdir` for `config`: creates it, resumes it if it holds the same config, refuses it
    if it holds another (unless `overwrite`, which deletes the old results first). Every check
    (`check`) runs before anything is written. Keys in `neutral` change no result (e.g. length
    buckets): a workdir whose config differs only in them is resumed, and its config.json
    updated."""
    store = cls(workdir, required)
    config = cls.check(workdir, config, overwrite, neutral)
    store.shard = tuple(config.get('shard', (0, 1)))  # (index, count): which groups are ours
    try:
      os.makedirs(workdir, exist_ok=True)
      _lock(workdir)
      if overwrite:
        for name in _OWNED:
          path = os.path.join(workdir, name)
          if os.path.isdir(path):
            shutil.rmtree(path)
          elif os.path.exists(path):
            os.unlink(path)
      for name in os.listdir(workdir):  # left by a kill inside write_atomic
        if name.startswith(_TMP_PREFIX):
          os.unlink(os.path.join(workdir, name))
      write_json(os.path.join(workdir, CONFIG_FILE), config)
      store._record_environment()
      store._repair()
    except OSError as e:  # a full disk is a ResourceError (exit 3), the rest bad input
      raise (resource_error(e, workdir)
             or UserError(f'cannot write to workdir {workdir}: {e.strerror or e}')) from None
    return store

  @classmethod
  def follower(cls, config: dict, required: tuple = ()) -> 'ResultStore':
    """The store of a process other than 0 in a multi-process run: it reads and writes nothing
    (process 0 owns the workdir, and `lib.runtime.devices.broadcast` tells the others what it
    holds)."""
    return _Follower(config, required)

  def _record_environment(self) -> None:
    """Appends this run's environment: a resumed sweep lists every environment it ran in."""
    path = os.path.join(self.workdir, ENVIRONMENT_FILE)
    write_json(path, {'runs': _runs(path) + [{'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                                              **environment()}]})

  def _repair(self) -> None:
    """Truncates a last line left incomplete by a kill mid-write."""
    if not os.path.exists(self.results_path):
      return
    with open(self.results_path, 'rb+') as f:
      data = f.read()
      end = data.rfind(b'\n') + 1
      if end != len(data):
        f.truncate(end)

  def config(self) -> dict:
    return read_json(os.path.join(self.workdir, CONFIG_FILE), dict)

  def records(self) -> list:
    """All complete records, in the order they were written."""
    if not os.path.exists(self.results_path):
      return []
    with open(self.results_path, 'rb') as f:
      data = f.read()
    lines = data[:data.rfind(b'\n') + 1].splitlines()
    records = []
    for number, line in enumerate(lines, 1):
      try:
        record = json.loads(line.decode('utf-8'))
      except ValueError as e:  # not UTF-8, or not JSON
        raise damaged(self.results_path,
                      f'line {number} is not a JSON record, {_decoding(e)}') from None
      if not isinstance(record, dict):
        raise damaged(self.results_path, f'line {number} is not a JSON object')
      missing = [f for f in self.required if f not in record]
      if missing:
        raise damaged(self.results_path, f'line {number} is not a record of this experiment '
                      f'(missing {missing[0]})')
      records.append(record)
    return records

  def remove_checkpoints(self) -> None:
    """Deletes the training checkpoints once every record they could resume is written."""
    shutil.rmtree(self.checkpoints_dir, ignore_errors=True)

  def replace(self, records: Iterable[dict]) -> None:
    """Rewrites the results file to hold exactly `records`, whole or not at all."""
    write_atomic(self.results_path, b''.join(_line(record) for record in records))

  def append(self, records: Iterable[dict]) -> None:
    """Appends each record as one line, durably, one at a time. A write that fails (a full disk)
    or is interrupted takes its part-written line back at once: the file holds whole records."""
    fd = os.open(self.results_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      for record in records:
        start = os.lseek(fd, 0, os.SEEK_END)  # where this record's line begins
        view = memoryview(_line(record))
        try:
          while view:
            view = view[os.write(fd, view):]
          os.fsync(fd)
        except BaseException as e:
          try:
            os.ftruncate(fd, start)  # shrinking needs no space
          except OSError:
            pass  # the next open truncates it (_repair)
          if isinstance(e, OSError) and not e.filename:
            e.filename = self.results_path  # os.write's error does not say which file
          raise
    finally:
      os.close(fd)


class _Follower(ResultStore):
  """See `ResultStore.follower`: no workdir, no records, writes dropped."""

  def __init__(self, config: dict, required: tuple = ()):
    # workdir '' leaves checkpoints_dir a relative path that is never opened (process 0 alone
    # checkpoints), but is set, as process 0's is: every process takes the same branches.
    super().__init__('', required)
    self.shard = tuple(config.get('shard', (0, 1)))

  def records(self) -> list:
    return []

  def remove_checkpoints(self) -> None:
    pass

  def replace(self, records: Iterable[dict]) -> None:
    pass

  def append(self, records: Iterable[dict]) -> None:
    pass
