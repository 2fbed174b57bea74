"""Image classification: a CNN, an MLP, logistic regression and recurrent cells on MNIST-1D (the
offline default) or a TFDS image dataset, with and without a fixed permutation of positions.

The permuted variant applies one random permutation (from `permutation_seed`) to the positions of
every example, train and test alike: the information stays, the spatial order goes, and with it
the CNN's and the RNN's bias towards local structure (Greydanus & Kobak 2024: the CNN falls from
94% to 56% on MNIST-1D, the MLP and logistic regression do not notice). Each (model, permuted) is
one training program over every seed; each seed is one record.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lib.data import datasets as datasets_lib
from lib.experiments import model_settings
from lib.nets import models
from lib.nets.losses import cross_entropy
from lib.report import tables
from lib.runtime import config as config_lib
from lib.runtime import rng
from lib.runtime import sweep
from lib.runtime import train
from lib.runtime import training
from lib.runtime.errors import UserError
from lib.runtime.results import ResultStore

NEUTRAL_KEYS = train.NEUTRAL_KEYS  # keys that change no result: a run may resume across them
SHRINK_KEYS = ('hidden_size', 'cnn_channels', 'mlp_width', 'batch_size')  # shrink its programs
RECORD_FIELDS = ('model', 'dataset', 'permuted', 'seed', 'test_accuracy', 'test_loss', 'status',
                 'train_loss', 'test_loss_curve', 'log_every')
# Greydanus & Kobak (ICML 2024), README table of test accuracy (%) on MNIST-1D:
# (original positions, shuffled positions).
PUBLISHED_MNIST1D = {'logistic': (32, 32), 'mlp': (68, 68), 'cnn': (94, 56), 'gru': (91, 57)}

SPEC = {
    'experiment': config_lib.text(),
    'dataset': config_lib.choice(datasets_lib.DATASETS, 'dataset'),
    'data_dir': config_lib.optional_text(),
    'download': config_lib.flag(),
    'models': config_lib.choices(models.CLASSIFIERS, 'model'),
    'permuted': config_lib.flags(),
    'permutation_seed': config_lib.integer(0, 'a non-negative integer below 2**31',
                                           maximum=2**31 - 1),
    'clip_norm': config_lib.real(0.0, 'a clipping norm >= 0 (0: no clipping)'),
    'cnn_channels': config_lib.integer(1, 'a positive integer'),
    'mlp_width': config_lib.integer(1, 'a positive integer'),
    'hidden_size': config_lib.integer(1, 'a positive integer'),
    'bidirectional': config_lib.flag(),
    **train.SPEC,
    **model_settings.SPEC,
}


def validate(config) -> dict:
  cfg = config_lib.validate(config, SPEC)
  train.check_schedule(cfg)
  model_settings.linear_options(cfg)  # the linear cells' keys, checked
  return cfg


def load(cfg: dict):
  """((x_train, y_train), (x_test, y_test)): float32 inputs (N, *spatial, C), int32 labels."""
  feature = 'signal' if cfg['dataset'] == 'mnist1d' else 'image'
  out = []
  for split in ('train', 'test'):
    source = datasets_lib.source(cfg['dataset'], split, cfg['data_dir'] or None, cfg['download'])
    x, y = datasets_lib.arrays(source, (feature, 'label'))
    x = x[..., None] if feature == 'signal' else x.astype(np.float32) / 255.0
    out.append((x.astype(np.float32), y.astype(np.int32)))
  return tuple(out)


def permute_positions(x: np.ndarray, seed: int) -> np.ndarray:
  """x (N, *spatial, C) with its spatial positions shuffled by one fixed permutation."""
  n, spatial, channels = x.shape[0], x.shape[1:-1], x.shape[-1]
  order = np.asarray(jax.random.permutation(rng.stream_key(seed, 'permutation'),
                                            int(np.prod(spatial))))
  return x.reshape(n, -1, channels)[:, order].reshape(x.shape)


def make_task(cfg: dict, model: models.Model, train_set, test_set) -> train.Task:
  """Minibatches without replacement: epoch e of seed s is a permutation from (s, 'order', e)."""
  (x, y), (x_test, y_test) = train_set, test_set
  batch_size = cfg['batch_size']
  per_epoch = len(y) // batch_size

  def order(data, seed, epoch):  # drawn once per epoch by the training loop (train.Task)
    del data
    return jax.random.permutation(rng.stream_key(seed, 'order', epoch), len(y))

  def batch(data, seed, step, epoch_order):
    del seed
    idx = lax.dynamic_slice(epoch_order, ((step % per_epoch) * batch_size,), (batch_size,))
    return data['x'][idx], data['y'][idx]

  def loss_and_accuracy(params, x, y):
    logits = model.apply(params, x)
    loss = jnp.mean(cross_entropy(logits, y))
    return loss, jnp.mean(jnp.argmax(logits, axis=-1) == y)

  def evaluate(params, data, seed):
    del seed
    loss, accuracy = loss_and_accuracy(params, data['x_test'], data['y_test'])
    return {'test_loss': loss, 'test_accuracy': accuracy}

  return train.Task(
      batch=batch,
      loss=lambda params, b: loss_and_accuracy(params, *b)[0],
      evaluate=evaluate,
      data={'x': x, 'y': y, 'x_test': x_test, 'y_test': y_test},
      epoch=order, steps_per_epoch=per_epoch)


def point_key(record: dict) -> tuple:
  return (record['model'], record['permuted'], record['seed'])


def grid(cfg: dict) -> list:
  return [((model, permuted), [(model, permuted, s) for s in sweep.seeds(cfg)])
          for model in cfg['models'] for permuted in cfg['permuted']]


def setup(cfg: dict, group: tuple, datasets) -> training.Setup:
  """The model, task and optimizer of one (model, permuted)."""
  name, permuted = group
  train_set, test_set = datasets
  if permuted:
    train_set = (permute_positions(train_set[0], cfg['permutation_seed']), train_set[1])
    test_set = (permute_positions(test_set[0], cfg['permutation_seed']), test_set[1])
  num_classes = int(max(train_set[1].max(), test_set[1].max())) + 1
  model = model_settings.classifier(name, cfg, train_set[0].shape[1:], num_classes)
  return training.Setup(
      model.init, make_task(cfg, model, train_set, test_set),
      train.optimizer(cfg['optimizer'], cfg['learning_rate'], cfg['clip_norm']),
      name=f'{name}{" permuted" if permuted else ""}',
      folder=f'{name}-{"permuted" if permuted else "original"}', model=model)


def records(cfg: dict, group: tuple, trained: training.Trained, datasets) -> list:
  """A record per seed: its final test accuracy and loss, and its curves."""
  del datasets  # the task holds them
  name, permuted = group
  return [{
      'model': name, 'dataset': cfg['dataset'], 'permuted': permuted, 'seed': s.seed,
      'test_accuracy': s.metrics['test_accuracy'], 'test_loss': s.metrics['test_loss'],
      'status': s.status, **s.progress('test_loss', 'test_accuracy'), **trained.settings,
  } for s in trained.seeds()]


def programs(cfg: dict, groups, datasets) -> list:
  """The training programs of each group."""
  return training.programs(sys.modules[__name__], cfg, groups, datasets)


def prepare(cfg: dict):
  """The dataset, loaded before the workdir is touched: a missing one fails with nothing written."""
  datasets = load(cfg)
  if cfg['batch_size'] > len(datasets[0][1]):
    raise UserError(f'config.batch_size ({cfg["batch_size"]}) is larger than the training set '
                    f'({len(datasets[0][1])} examples)')
  return datasets


def run(cfg: dict, store: ResultStore, datasets) -> int:
  """Trains the missing points; a group killed mid-training resumes from its last checkpoint."""
  return training.run(sys.modules[__name__], cfg, store, datasets, desc='image classification')


def plot(records: list, plots_dir: str) -> list:
  from lib.report import training_plots  # matplotlib: only to draw
  published = PUBLISHED_MNIST1D if records and records[0]['dataset'] == 'mnist1d' else {}
  return training_plots.classification(records, plots_dir, published)


def summary(records: list) -> str:
  return tables.classification_table(records, PUBLISHED_MNIST1D)
