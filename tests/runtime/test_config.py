"""Config validation: what the command line delivers becomes checked values or a clear error."""

import re

import pytest

from lib.experiments import gradient_decay
from lib.runtime.errors import UserError
from tests.conftest import default_config


def _validate(**overrides):
  return gradient_decay.validate({**default_config().to_dict(), **overrides})


def test_default_config_is_valid():
  """The default config validates, with cells (tanh, lstm, gru) and lengths from 16."""
  cfg = _validate()
  assert cfg['cells'] == ('tanh', 'lstm', 'gru') and cfg['seq_lens'][0] == 16


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
