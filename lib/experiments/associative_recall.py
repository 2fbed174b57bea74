"""Associative recall (Arora et al. 2023, "Zoology": multi-query associative recall, MQAR): train
recurrent cells, the LRU stack and attention-only transformers to recall D key-value pairs, and
see whose accuracy falls once D exceeds what its state holds.

Each (model, layers, seq_len, num_pairs, width) is one training program over every seed; each
seed is one record. Tokens arrive one-hot over the vocabulary of V (every model's first layer is
dense, so this is a learnt embedding of width d, plus a bias), and logits over V come out at every
step; the loss is the cross-entropy over the queried positions only. Records carry the test
accuracy over the queried positions, its chance 2/V (a guess among the V/2 values), and the
state size: the numbers a model holds about the past at a step (`state_size`), so that accuracy
can be read against what the state can store. (T, D) pairs with 4 D > T are left out (no room to
query every key: lib.data.tasks.check_recall).
"""

import sys

import jax
import jax.numpy as jnp

from lib.data import tasks
from lib.experiments import model_settings
from lib.nets import cells
from lib.nets import lru
from lib.nets import models
from lib.nets.losses import cross_entropy
from lib.report import recall_plots
from lib.runtime import config as config_lib
from lib.runtime import rng
from lib.runtime import sweep
from lib.runtime import train
from lib.runtime import training
from lib.runtime.errors import UserError
from lib.runtime.results import ResultStore

# training batches from the seed's 'recall' stream (the held-out batch is its 'test' stream's)
BATCH_STREAM = 'recall'
NEUTRAL_KEYS = train.NEUTRAL_KEYS  # keys that change no result: a run may resume across them
SHRINK_KEYS = ('widths', 'batch_size', 'test_size', 'seq_lens', 'vocab_size')
GRID_KEYS = ('models', 'attention_layers', 'seq_lens', 'num_pairs', 'widths')
RECORD_FIELDS = ('model', 'num_layers', 'seq_len', 'num_pairs', 'width', 'seed', 'vocab_size',
                 'test_accuracy', 'chance_accuracy', 'test_loss', 'state_size', 'status',
                 'train_loss', 'test_loss_curve', 'test_accuracy_curve', 'log_every')

SPEC = {
    'experiment': config_lib.text(),
    'models': config_lib.choices(models.SEQUENCE_MODELS, 'model'),
    'attention_layers': config_lib.integers(1, 'a positive integer number of layers'),
    'seq_lens': config_lib.integers(4, 'an integer length >= 4'),
    'num_pairs': config_lib.integers(1, 'a positive integer number of pairs'),
    'widths': config_lib.integers(2, 'an integer width >= 2'),
    'vocab_size': config_lib.integer(4, 'an even integer >= 4'),
    'clip_norm': config_lib.real(0.0, 'a clipping norm >= 0 (0: no clipping)'),
    'test_size': config_lib.integer(1, 'a positive integer'),
    'num_heads': config_lib.integer(1, 'a positive integer'),
    'mlp': config_lib.flag(),  # the transformer blocks' MLP (off: attention alone)
    'lru_layers': config_lib.integer(1, 'a positive integer'),
    **train.SPEC,
    **model_settings.SPEC,
}


def validate(config) -> dict:
  """The spec's checks; every num_pairs drawable at the longest seq_len; attention's widths."""
  cfg = config_lib.validate(config, SPEC)
  train.check_schedule(cfg)
  model_settings.linear_options(cfg)  # the linear cells' keys, checked
  for num_pairs in cfg['num_pairs']:
    tasks.check_recall(max(cfg['seq_lens']), num_pairs, cfg['vocab_size'])
  if set(models.ATTENTION_NAMES) & set(cfg['models']):
    for width in cfg['widths']:
      if width % cfg['num_heads'] or width % 2:
        raise UserError(f'config.widths: {width} must be even and divisible by '
                        f'config.num_heads ({cfg["num_heads"]}) for the attention model')
  return cfg


def chance_accuracy(vocab_size: int) -> float:
  """A guess among the V/2 values: 2/V."""
  return 2.0 / vocab_size


def num_layers(cfg: dict, model: str) -> tuple:
  """The layer counts `model` is trained at: attention_layers, lru_layers, or one cell."""
  if model in models.ATTENTION_NAMES:
    return tuple(cfg['attention_layers'])
  return (cfg['lru_layers'],) if model in cells.LINEAR_CELLS else (1,)


def state_size(cfg: dict, model: str, layers: int, seq_len: int, width: int) -> int:
  """The numbers a model holds about the past at the last step: attention's keys and values, 2 d
  per position and layer (2 d T L); the LRU stack's recurrent states (a complex number counts
  2) over its layers; a cell's carry (d for tanh and the GRU, 2 d for the LSTM's (c, h))."""
  if model in models.ATTENTION_NAMES:
    return 2 * width * seq_len * layers
  if model in cells.LINEAR_CELLS:
    opts = model_settings.linear_options(cfg)
    states = jax.eval_shape(lambda: lru.apply(lru.init(
        model, jax.random.key(0), width, width, width, r_min=opts.r_min, r_max=opts.r_max,
        max_phase=opts.max_phase), jnp.zeros((1, 1, width)))[1])
    return layers * states.size * (2 if jnp.iscomplexobj(states) else 1)
  carry = cells.zero_carry(cells.make_cell(model, width), 1, 1)
  return sum(leaf.size for leaf in jax.tree.leaves(carry))


def make_model(cfg: dict, model: str, layers: int, width: int) -> models.Model:
  """`model` at `width` (and `layers`, attention's), one-hot tokens in, logits over V out."""
  settings = {**cfg, 'hidden_size': width, 'num_layers': layers}
  return model_settings.sequence_model(model, settings, cfg['vocab_size'], cfg['vocab_size'],
                                       every_step=True)


def batch(cfg: dict, seq_len: int, num_pairs: int, key, size: int):
  """(inputs one-hot (B, T, V) float, targets (B, T) int, RECALL_IGNORE where not queried)."""
  x, y = tasks.associative_recall(key, size, seq_len, num_pairs, cfg['vocab_size'])
  return jax.nn.one_hot(x, cfg['vocab_size']), y


def loss_and_accuracy(model: models.Model, params, x, y):
  """Mean cross-entropy and accuracy (argmax = target) over the queried positions only."""
  queried = y != tasks.RECALL_IGNORE
  logits = model.apply(params, x)  # (B, T, V)
  ce = cross_entropy(logits, jnp.where(queried, y, 0))
  right = jnp.argmax(logits, axis=-1) == y
  count = jnp.sum(queried)
  return jnp.sum(jnp.where(queried, ce, 0)) / count, jnp.sum(right & queried) / count


def make_task(cfg: dict, model: models.Model, seq_len: int, num_pairs: int) -> train.Task:
  """Batches keyed by (seed, step); held out: the seed's 'test' stream's test_size examples."""
  def evaluate(params, data, seed):
    del data  # generated
    x, y = batch(cfg, seq_len, num_pairs, rng.stream_key(seed, 'test'), cfg['test_size'])
    loss, accuracy = loss_and_accuracy(model, params, x, y)
    return {'test_loss': loss, 'test_accuracy': accuracy}

  def train_batch(data, seed, step):
    del data  # generated
    return batch(cfg, seq_len, num_pairs, rng.stream_key(seed, BATCH_STREAM, step),
                 cfg['batch_size'])

  return train.Task(batch=train_batch,
                    loss=lambda params, b: loss_and_accuracy(model, params, *b)[0],
                    evaluate=evaluate)


def point_key(record: dict) -> tuple:
  return (record['model'], record['num_layers'], record['seq_len'], record['num_pairs'],
          record['width'], record['seed'])


def grid(cfg: dict) -> list:
  """Every (model, layers, T, D, width) with 4 D <= T, the seeds its points."""
  groups = [(model, layers, seq_len, pairs, width)
            for model in cfg['models'] for layers in num_layers(cfg, model)
            for seq_len in cfg['seq_lens'] for pairs in cfg['num_pairs'] if 4 * pairs <= seq_len
            for width in cfg['widths']]
  return [(group, [group + (s,) for s in sweep.seeds(cfg)]) for group in groups]


def programs(cfg: dict, groups) -> list:
  """The training programs of each group."""
  return training.programs(sys.modules[__name__], cfg, groups)


def run(cfg: dict, store: ResultStore) -> int:
  """Trains the missing points; a group killed mid-training resumes from its last checkpoint."""
  return training.run(sys.modules[__name__], cfg, store, desc='associative recall')


def setup(cfg: dict, group: tuple) -> training.Setup:
  """The model, task and optimizer of one (model, layers, seq_len, num_pairs, width)."""
  model_name, layers, seq_len, pairs, width = group
  model = make_model(cfg, model_name, layers, width)
  return training.Setup(
      model.init, make_task(cfg, model, seq_len, pairs),
      train.optimizer(cfg['optimizer'], cfg['learning_rate'], cfg['clip_norm']),
      name=f'{model_name} L={layers} T={seq_len} D={pairs} d={width}',
      folder=f'{model_name}-L{layers}-T{seq_len}-D{pairs}-d{width}', model=model)


def records(cfg: dict, group: tuple, trained: training.Trained) -> list:
  """A record per seed: accuracy over the queried positions, its chance, the state size."""
  model_name, layers, seq_len, pairs, width = group
  size = state_size(cfg, model_name, layers, seq_len, width)
  return [{
      'model': model_name, 'num_layers': layers, 'seq_len': seq_len, 'num_pairs': pairs,
      'width': width, 'seed': s.seed, 'vocab_size': cfg['vocab_size'],
      'test_accuracy': s.metrics['test_accuracy'],
      'chance_accuracy': chance_accuracy(cfg['vocab_size']),
      'test_loss': s.metrics['test_loss'], 'state_size': size,
      'status': s.status, **s.progress('test_loss', 'test_accuracy'), **trained.settings,
  } for s in trained.seeds()]


def plot(records: list, plots_dir: str) -> list:
  """Accuracy against width, pairs and state size (matplotlib imported only to draw)."""
  return recall_plots.recall_figures(records, plots_dir)


def summary(records: list) -> str:
  return recall_plots.recall_table(records)
