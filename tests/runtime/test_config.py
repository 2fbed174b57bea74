"""Config validation: what the command line delivers becomes checked values or a clear error."""

import ast
import os
import re

import pytest

from lib.experiments import gradient_decay
from lib.runtime.errors import UserError
from tests.conftest import config
from tests.conftest import ROOT

CONFIG_FILE = os.path.join(ROOT, 'experiments', 'gradient_decay.py')


def _validate(**overrides):
  return gradient_decay.validate({**config().to_dict(), **overrides})


def _assignments(path: str) -> dict:
  """{key: value} of every `config.key = <literal>` in a config file, read from its syntax tree
  (not by running it)."""
  with open(path) as f:
    tree = ast.parse(f.read())
  return {node.targets[0].attr: ast.literal_eval(node.value) for node in ast.walk(tree)
          if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute)
          and isinstance(node.targets[0].value, ast.Name) and node.targets[0].value.id == 'config'}


# What validation makes of each key: a tuple of what type, or one value of what type.
LISTS = {'cells': str, 'seq_lens': int, 'length_buckets': int, 'sigma_w2': float,
         'sigma_b2': float}
SCALARS = {'experiment': str, 'sigma_v2': float, 'recurrent_init': str, 'gate_bias': float,
           'r_min': float, 'r_max': float, 'max_phase': float, 'hidden_size': int,
           'input_size': int, 'batch_size': int, 'num_seeds': int, 'seed': int, 'dtype': str,
           'fit_k_min': int, 'fit_k_max': int}


def _check_types(cfg: dict) -> None:
  assert set(cfg) == set(LISTS) | set(SCALARS)
  for key, kind in LISTS.items():
    assert type(cfg[key]) is tuple and cfg[key], key
    assert all(type(v) is kind for v in cfg[key]), key
  for key, kind in SCALARS.items():
    assert type(cfg[key]) is kind, key  # `is`: a bool is no int, an int no float


def test_default_config_is_valid():
  """The validated default config against experiments/gradient_decay.py read from its syntax
  tree: every key the file sets and no other, each value equal to the file's, lists as tuples,
  each value of the type validation promises (LISTS, SCALARS: tuples of ints, floats...); the
  length buckets, 'auto' in the file, are (64, 512), as the file's comment works them out for
  16..512 (each bucket runs the lengths down to a quarter of it)."""
  cfg = _validate()
  expect = _assignments(CONFIG_FILE)
  assert expect['length_buckets'] == ('auto',) and expect['seq_lens'] == (16, 32, 64, 128, 256,
                                                                          512)
  expect['length_buckets'] = (64, 512)
  assert set(cfg) == set(expect)
  for key, value in expect.items():
    assert cfg[key] == value, key
  _check_types(cfg)


def test_default_config_from_the_command_line_is_the_same():
  """Every list of the default config as the command line gives it (one comma-joined string,
  ('16,32,...',)) and every number as text, validates to the same values and types as the
  config file's own."""
  expect = _validate()
  as_text = {key: (','.join(map(str, v)),) if isinstance(v, tuple) else
             str(v) if key in SCALARS and SCALARS[key] is not str else v
             for key, v in _assignments(CONFIG_FILE).items()}
  cfg = _validate(**as_text)
  assert cfg == expect
  _check_types(cfg)


@pytest.mark.parametrize('value, expect', [
    (('tanh,gru',), ('tanh', 'gru')),  # what ml_collections makes of --config.cells=tanh,gru
    ('relu', ('relu',)),
    (('lstm', 'tanh', 'lstm'), ('lstm', 'tanh')),
])
def test_cells_lists(value, expect):
  """The cells as the command line or a config gives them: split on commas, deduplicated in
  order."""
  assert _validate(cells=value)['cells'] == expect


def test_numbers_from_the_command_line():
  """Lengths and variances given as text or numbers become tuples of ints and floats."""
  cfg = _validate(seq_lens=('16,64',), sigma_w2=(1,), sigma_b2=0)
  assert cfg['seq_lens'] == (16, 64) and cfg['sigma_w2'] == (1.0,)
  assert isinstance(cfg['sigma_w2'][0], float) and cfg['sigma_b2'] == (0.0,)


@pytest.mark.parametrize('overrides, message', [
    (dict(cells=('tanh', 'rnn')), "config.cells: unknown cell 'rnn'; valid choices: tanh, relu"),
    (dict(cells=()), 'config.cells is empty: nothing to sweep'),
    (dict(cells=('tanh', 'irnn')), 'config.cells: irnn fixes its recurrent kernel (the identity) '
                                   'and its biases (zero), so a sweep of sigma_w2 and sigma_b2'),
    (dict(seq_lens=('abc',)), "config.seq_lens: 'abc' is not a positive integer length"),
    (dict(seq_lens=(16, 0)), 'config.seq_lens: 0 is not a positive integer length'),
    (dict(seq_lens=(16.5,)), 'config.seq_lens: 16.5 is not a positive integer length'),
    (dict(seq_lens=('-4',)), "config.seq_lens: -4 is not a positive integer length"),
    (dict(sigma_w2=(1.0, -1.0)), 'config.sigma_w2: -1.0 is not a variance >= 0'),
    (dict(sigma_b2=-0.1), 'config.sigma_b2: -0.1 is not a variance >= 0'),
    (dict(sigma_v2=float('nan')), 'config.sigma_v2: nan is not a variance >= 0'),
    (dict(num_seeds=0), 'config.num_seeds: 0 is not a positive integer number of seeds'),
    (dict(dtype='float16'), "config.dtype: unknown dtype 'float16'; valid choices: float32, float64"),
    (dict(recurrent_init='he'), "unknown recurrent_init 'he'; valid choices: gaussian"),
    (dict(hidden_size=0), 'config.hidden_size: 0 is not a positive integer'),
    (dict(seed=2**40), 'config.seed: 1099511627776 is not a non-negative integer below 2**31'),
    (dict(seed=2**31 - 1, num_seeds=2), 'config.seed + config.num_seeds must be at most 2**31'),
    (dict(fit_k_min=10, fit_k_max=5), 'config.fit_k_min (10) is not below config.fit_k_max (5)'),
    (dict(fit_k_max=0), 'config.fit_k_min (0) is not below config.fit_k_max (0): the fit window '
                        'needs two points or more'),
    (dict(fit_k_min=15), 'config.fit_k_min (15) leaves fewer than two points to fit at seq_lens '
                         '16; valid: fit_k_min <= 14'),
    (dict(gate_bias=float('-inf')), 'config.gate_bias: -inf is not a number'),
    (dict(sigma_w2=(1e40,)), 'config.sigma_w2: 1e+40 is beyond the range of float32'),
])
def test_bad_values_name_the_problem(overrides, message):
  """Each bad value is a UserError whose message names the key, the value and what is valid."""
  with pytest.raises(UserError, match=re.escape(message)):
    _validate(**overrides)


def test_unknown_key_lists_valid_keys():
  """An unknown key is a UserError that lists the valid keys."""
  with pytest.raises(UserError, match="unknown config key 'no_such'; valid keys: batch_size, "):
    _validate(no_such=1)
