"""A config's model settings, turned into lib/nets' explicit arguments: the one place where an
experiment's config meets a network (no module of lib/nets reads a config).

`SPEC` checks the config keys that the training experiments share (each puts it in its own
SPEC): the cells' initialisers (`cell_init`: lib.nets.cells.CellInit) and the linear cells' ring
and scan (`linear_options`: lib.nets.cells.LinearOptions). The models a config names are built
from these and from the keys of their own family:
  sequence_model   hidden_size; the transformer's num_heads, num_layers and mlp (its blocks'
                   MLP; kept where a config has no such key); the linear stack's lru_layers
                   (lib.nets.models.SEQUENCE_MODELS)
  classifier       the CNN's cnn_channels, the MLP's mlp_width; a cell's hidden_size and
                   bidirectional (lib.nets.models.CLASSIFIERS)
  language_model   hidden_size (where it is 0, the width that param_budget gives: `lm_width`),
                   num_layers, dropout; a cell's embed_size, init and init_scale; the
                   transformer's num_heads and positions (lib.nets.language.LM_MODELS)
"""

import dataclasses
import math

import jax

from lib.nets import cells
from lib.nets import language
from lib.nets import models
from lib.runtime import config as config_lib
from lib.runtime.errors import UserError

SPEC = {
    'sigma_w2': config_lib.real(0.0, 'a variance >= 0'),
    'sigma_v2': config_lib.real(0.0, 'a variance >= 0'),
    'sigma_b2': config_lib.real(0.0, 'a variance >= 0'),
    'recurrent_init': config_lib.choice(cells.RECURRENT_INITS, 'recurrent_init'),
    'gate_bias': config_lib.real(what='a number'),
    # the linear cells' ring (lib/nets/lru): 0 <= r_min <= |lambda| <= r_max < 1, phase <= max_phase
    'r_min': config_lib.real(0.0, 'a radius in [0, 1)'),
    'r_max': config_lib.real(0.0, 'a radius in [0, 1)'),
    'max_phase': config_lib.real(0.0, 'an angle >= 0'),
    'parallel_scan': config_lib.flag(),  # the linear cells over time by lax.associative_scan
}


def cell_init(cfg: dict) -> cells.CellInit:
  """How a config's recurrent cells are drawn."""
  return cells.CellInit(sigma_w2=cfg['sigma_w2'], sigma_v2=cfg['sigma_v2'],
                        sigma_b2=cfg['sigma_b2'], recurrent_init=cfg['recurrent_init'],
                        gate_bias=cfg['gate_bias'])


def linear_options(cfg: dict) -> cells.LinearOptions:
  """A config's linear-cell options, LinearOptions' defaults for the keys it lacks (the
  gradient-decay sweep has no parallel_scan), checked: a UserError naming the bad value."""
  names = [field.name for field in dataclasses.fields(cells.LinearOptions)]
  return cells.LinearOptions(**{key: cfg[key] for key in names if key in cfg})


def _check_cell(name: str, choices: tuple) -> None:
  if name not in cells.CELLS:
    raise UserError(f'unknown model {name!r}; valid choices: {", ".join(choices)}')


def sequence_model(name: str, cfg: dict, input_size: int, num_outputs: int,
                   every_step: bool) -> models.Model:
  """Model `name` of SEQUENCE_MODELS for inputs (B, T, input_size), read out at every step or
  at the last."""
  if name in models.ATTENTION_NAMES:
    return models.attention(cfg['hidden_size'], input_size, num_outputs, every_step,
                            num_heads=cfg['num_heads'], num_layers=cfg['num_layers'],
                            mlp=cfg.get('mlp', True))
  _check_cell(name, models.SEQUENCE_MODELS)
  if name in cells.LINEAR_CELLS:
    return models.linear_stack(name, cfg['hidden_size'], input_size, num_outputs, every_step,
                               num_layers=cfg['lru_layers'], linear=linear_options(cfg))
  return models.recurrent(name, cfg['hidden_size'], input_size, num_outputs, every_step,
                          cell_init=cell_init(cfg), linear=linear_options(cfg))


def classifier(name: str, cfg: dict, example_shape: tuple, num_outputs: int) -> models.Model:
  """Model `name` of CLASSIFIERS for inputs of example_shape (*spatial, C)."""
  if name == 'cnn':
    return models.module_model(models.ConvNet(cfg['cnn_channels'], num_outputs), example_shape)
  if name == 'mlp':
    return models.module_model(models.ResidualMLP(cfg['mlp_width'], num_outputs), example_shape)
  if name == 'logistic':
    return models.module_model(models.Logistic(num_outputs), example_shape)
  _check_cell(name, models.CLASSIFIERS)
  return models.recurrent_classifier(
      name, cfg['hidden_size'], example_shape, num_outputs, bidirectional=cfg['bidirectional'],
      cell_init=cell_init(cfg), linear=linear_options(cfg))


def language_model(name: str, cfg: dict, vocab_size: int, context_len: int,
                   hoist: bool = True) -> language.LanguageModel:
  """Model `name` of LM_MODELS, the transformer's window context_len; hoist: as
  lib.nets.language.recurrent_lm's."""
  if not cfg['hidden_size']:
    cfg = {**cfg, 'hidden_size': lm_width(name, cfg, vocab_size, context_len)}
  if name == language.TRANSFORMER:
    return language.transformer_lm(vocab_size, width=cfg['hidden_size'],
                                   num_heads=cfg['num_heads'], num_layers=cfg['num_layers'],
                                   context_len=context_len, positions=cfg['positions'],
                                   dropout=cfg['dropout'])
  _check_cell(name, language.LM_MODELS)
  return language.recurrent_lm(name, vocab_size, embed_size=cfg['embed_size'],
                               hidden_size=cfg['hidden_size'], num_layers=cfg['num_layers'],
                               dropout=cfg['dropout'], init=cfg['init'],
                               init_scale=cfg['init_scale'], cell_init=cell_init(cfg),
                               linear=linear_options(cfg), hoist=hoist)


_widths = {}  # lm_width's answers, by what decides them


def lm_width(name: str, cfg: dict, vocab_size: int, context_len: int) -> int:
  """Language model `name`'s width: config.hidden_size; where that is 0, the width whose
  non-embedding parameters (lib.nets.language.non_embedding_params) come nearest
  config.param_budget (`matched_width`; the transformer's even and a multiple of num_heads), so
  that models of every kind can be compared at (nearly) equal size."""
  if cfg['hidden_size']:
    return cfg['hidden_size']
  key = (name, vocab_size, context_len,
         *(cfg[k] for k in ('param_budget', 'embed_size', 'num_layers', 'num_heads',
                            'positions')))
  if key not in _widths:
    def count(width):
      model = language_model(name, {**cfg, 'hidden_size': width}, vocab_size, context_len)
      return language.non_embedding_params(jax.eval_shape(model.init, jax.random.key(0)))
    step = math.lcm(2, cfg['num_heads']) if name == language.TRANSFORMER else 1
    _widths[key] = matched_width(count, cfg['param_budget'], step)
  return _widths[key]


def matched_width(count, budget: int, step: int = 1) -> int:
  """The multiple of `step` (at least `step`) whose count(width) is nearest `budget`, ties to
  the narrower. count is a quadratic in the width (weights are products of at most two widths):
  fitted exactly on 3 widths, solved, and its two nearest multiples counted exactly."""
  y1, y2, y3 = (count(step * k) for k in (1, 2, 3))
  a = (y3 - 2 * y2 + y1) / 2
  b = y2 - y1 - 3 * a
  c = y1 - a - b - budget
  k = (-b + math.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a) if a else -c / b
  candidates = sorted({max(1, math.floor(k)), max(1, math.ceil(k))})
  return step * min(candidates, key=lambda j: (abs(count(step * j) - budget), j))
