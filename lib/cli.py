"""Command-line plumbing for run.py: config flags whose every error is one line, not a traceback."""

import os
import runpy
import sys

from absl import flags
from absl import logging
from ml_collections import config_flags

from lib.errors import UserError


def fail(message: str) -> None:
  """Prints `error: message` on one line to stderr and exits with status 2."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _argv_config_path(argv: list, default: str) -> str:
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      return arg.split('=', 1)[1]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return default


def _unknown_override(argv: list, config_path: str) -> str:
  """Names the --config.KEY overrides of argv that the config file does not have."""
  try:
    keys = set(runpy.run_path(config_path)['get_config']().keys())
  except Exception:  # the config file itself is broken: say so below
    return f'cannot load config file {config_path}'
  overrides = [a[len('--config.'):].split('=', 1)[0] for a in argv if a.startswith('--config.')]
  bad = [o for o in overrides if o.split('.')[0] not in keys or '.' in o]
  name = bad[0] if bad else ', '.join(overrides)
  return f'unknown config key {name!r}; valid keys: {", ".join(sorted(keys))}'


def define_config_flag(default_path: str):
  """DEFINE_config_file('config'), which reads --config.KEY overrides from sys.argv right away."""
  try:
    return config_flags.DEFINE_config_file(
        'config', default_path, 'experiment config file (experiments/NAME.py)', lock_config=True)
  except (AttributeError, KeyError, TypeError, ValueError):
    fail(_unknown_override(sys.argv, _argv_config_path(sys.argv, default_path)))


def parse_flags(argv: list) -> list:
  """absl flags parser for app.run: a bad flag or a stray argument is a one-line error."""
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e).splitlines()[0])
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    fail(f'bad config override: {e}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # progress bar and summary only; --verbosity=0 logs
  if len(rest) > 1:
    fail(f'unexpected argument(s): {" ".join(rest[1:])}; flags are --config, --config.KEY=VALUE, '
         '--workdir, --overwrite, --plot_only')
  return rest


def load_config(flag_holder):
  """The parsed ConfigDict of the config flag; a missing or broken file is a UserError."""
  path = config_flags.get_config_filename(flags.FLAGS[flag_holder.name])
  if not os.path.isfile(path):
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'experiments')
    known = sorted(f for f in os.listdir(here) if f.endswith('.py')) if os.path.isdir(here) else []
    raise UserError(f'config file not found: {path}; experiments: {", ".join(known)}')
  try:
    return flag_holder.value
  except Exception as e:  # a config file that fails to load or to apply an override
    raise UserError(f'cannot load config {path}: {str(e).splitlines()[0] if str(e) else e!r}') \
        from None
