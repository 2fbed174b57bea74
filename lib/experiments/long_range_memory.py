"""Long-range memory: train recurrent cells and causal attention on the adding problem or copy
memory across sequence lengths, and see which of them learn the long dependency.

Each (cell, clip_norm, seq_len) is one training program over every seed; each seed is one record.
Beside the final test loss every record carries the task's memoryless baseline (adding: MSE 1/6 of
predicting the mean; copy: 10 ln 8 / (T + 20)): a model at the baseline has learnt nothing about the
dependency. Records also carry the input-gradient profile of the model at initialisation and after
training (`lib.nets.models`: ln mean_b ||d <u, y_b> / d x_t||^2 over t, with y_b the output at the
last step), so that what a model learnt can be read beside how far its gradients reached.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from lib.data import tasks
from lib.experiments import model_settings
from lib.nets import models
from lib.nets.losses import cross_entropy
from lib.report import tables
from lib.runtime import compiled
from lib.runtime import config as config_lib
from lib.runtime import devices
from lib.runtime import rng
from lib.runtime import sweep
from lib.runtime import train
from lib.runtime import training
from lib.runtime.errors import UserError
from lib.runtime.results import json_floats
from lib.runtime.results import ResultStore

TASKS = ('adding', 'copy')
LENGTH = 'seq_len'
NEUTRAL_KEYS = train.NEUTRAL_KEYS  # keys that change no result: a run may resume across them
SHRINK_KEYS = ('hidden_size', 'batch_size', 'test_size', 'seq_lens')  # what makes programs smaller
RECORD_FIELDS = ('task', 'cell', LENGTH, 'seed', 'clip_norm', 'test_loss', 'test_accuracy',
                 'baseline_loss', 'status', 'train_loss', 'test_loss_curve', 'log_every',
                 'log_grad_sq_input_init', 'log_grad_sq_input_trained')

SPEC = {
    'experiment': config_lib.text(),
    'task': config_lib.choice(TASKS, 'task'),
    'cells': config_lib.choices(models.SEQUENCE_MODELS, 'cell'),
    'seq_lens': config_lib.integers(2, 'an integer length >= 2'),
    'clip_norm': config_lib.reals(0.0, 'a clipping norm >= 0 (0: no clipping)'),
    'test_size': config_lib.integer(1, 'a positive integer'),
    'hidden_size': config_lib.integer(1, 'a positive integer'),
    'num_heads': config_lib.integer(1, 'a positive integer'),
    'num_layers': config_lib.integer(1, 'a positive integer'),
    'lru_layers': config_lib.integer(1, 'a positive integer'),
    **train.SPEC,
    **model_settings.SPEC,
}


def validate(config) -> dict:
  cfg = config_lib.validate(config, SPEC)
  train.check_schedule(cfg)
  model_settings.linear_options(cfg)  # the linear cells' keys, checked
  if set(models.ATTENTION_NAMES) & set(cfg['cells']) and (cfg['hidden_size'] % cfg['num_heads']
                                      or cfg['hidden_size'] % 2):
    raise UserError(f'config.hidden_size ({cfg["hidden_size"]}) must be even and divisible by '
                    f'config.num_heads ({cfg["num_heads"]}) for the attention model')
  return cfg


def baseline_loss(task: str, seq_len: int) -> float:
  return tasks.ADDING_BASELINE_MSE if task == 'adding' else tasks.copy_baseline_loss(seq_len)


def generate(cfg: dict, seq_len: int, key, size: int):
  """A batch of the task: inputs (B, T', D) as floats (copy tokens one-hot), targets."""
  if cfg['task'] == 'adding':
    return tasks.adding_problem(key, size, seq_len)
  x, y = tasks.copy_memory(key, size, seq_len)
  return jax.nn.one_hot(x, tasks.COPY_CLASSES), y


def test_set(cfg: dict, seq_len: int, seed):
  """The held-out batch of a seed: test_size examples from its 'test' stream."""
  return generate(cfg, seq_len, rng.stream_key(seed, 'test'), cfg['test_size'])


def make_task(cfg: dict, model: models.Model, seq_len: int) -> train.Task:
  """Batches keyed by (seed, step); loss MSE (adding) or mean cross-entropy over all steps (copy);
  accuracy (copy): the fraction of the 10 recalled symbols that are right."""
  def loss_and_accuracy(params, batch):
    x, y = batch
    out = model.apply(params, x)
    if cfg['task'] == 'adding':
      return jnp.mean(jnp.square(out[:, 0] - y)), jnp.nan
    loss = jnp.mean(cross_entropy(out, y))  # out (B, T + 20, classes)
    recalled = jnp.argmax(out[:, -tasks.COPY_LENGTH:], axis=-1) == y[:, -tasks.COPY_LENGTH:]
    return loss, jnp.mean(recalled)

  def evaluate(params, data, seed):
    del data  # generated
    loss, accuracy = loss_and_accuracy(params, test_set(cfg, seq_len, seed))
    if cfg['task'] == 'adding':
      return {'test_loss': loss}
    return {'test_loss': loss, 'test_accuracy': accuracy}

  def batch(data, seed, step):
    del data  # generated
    return generate(cfg, seq_len, tasks.batch_key(cfg['task'], seed, step), cfg['batch_size'])

  return train.Task(batch=batch, loss=lambda params, b: loss_and_accuracy(params, b)[0],
                    evaluate=evaluate)


def make_model(cfg: dict, cell: str) -> models.Model:
  if cfg['task'] == 'adding':
    return model_settings.sequence_model(cell, cfg, 2, 1, every_step=False)
  return model_settings.sequence_model(cell, cfg, tasks.COPY_CLASSES, tasks.COPY_CLASSES,
                               every_step=True)


@compiled.cached
def input_profiles(cfg: dict, model: models.Model, seq_len: int):
  """f((params, seeds)) -> ln mean_b ||d <u, y_b> / d x_t||^2, (seeds, T'), on each seed's
  test set; u ~ N(0, I/C) from the seed's 'probe' stream. For `devices.run_points`."""
  num_outputs = 1 if cfg['task'] == 'adding' else tasks.COPY_CLASSES
  def profile(params, seed):
    x, _ = test_set(cfg, seq_len, seed)
    u = jax.random.normal(rng.stream_key(seed, 'probe'), (num_outputs,)) / np.sqrt(num_outputs)
    return model.input_profile(params, x, u)
  return devices.map_points(lambda point: profile(*point), cfg['num_seeds'],
                            batch=devices.points_batch_of(cfg))


def point_key(record: dict) -> tuple:
  return (record['cell'], record['clip_norm'], record[LENGTH], record['seed'])


def grid(cfg: dict) -> list:
  return [((cell, clip, seq_len), [(cell, clip, seq_len, s) for s in sweep.seeds(cfg)])
          for cell in cfg['cells'] for clip in cfg['clip_norm'] for seq_len in cfg['seq_lens']]


def setup(cfg: dict, group: tuple) -> training.Setup:
  """The model, task and optimizer of one (cell, clip_norm, seq_len)."""
  cell, clip_norm, seq_len = group
  model = make_model(cfg, cell)
  return training.Setup(
      model.init, make_task(cfg, model, seq_len),
      train.optimizer(cfg['optimizer'], cfg['learning_rate'], clip_norm),
      name=f'{cell} clip={clip_norm:g} T={seq_len}',
      folder=f'{cell}-clip{clip_norm!r}-T{seq_len}', model=model)


def extra_programs(cfg: dict, group: tuple, group_setup: training.Setup) -> dict:
  """The input-gradient profile, run before and after training."""
  return {'input profile': training.Extra(input_profiles(cfg, group_setup.model, group[2]),
                                          calls=2)}


def records(cfg: dict, group: tuple, trained: training.Trained) -> list:
  """A record per seed, with its input-gradient profiles before and after training."""
  cell, clip_norm, seq_len = group
  profile_init = trained.run('input profile', trained.initial)
  profile_trained = trained.run('input profile', trained.params)
  return [{
      'task': cfg['task'], 'cell': cell, LENGTH: seq_len, 'seed': s.seed, 'clip_norm': clip_norm,
      'test_loss': s.metrics['test_loss'],
      'test_accuracy': s.metrics.get('test_accuracy'),
      'baseline_loss': baseline_loss(cfg['task'], seq_len),
      'status': s.status, **s.progress('test_loss', 'test_accuracy'),
      'log_grad_sq_input_init': json_floats(profile_init[s.index]),
      'log_grad_sq_input_trained': json_floats(profile_trained[s.index]),
      **trained.settings, 'hidden_size': cfg['hidden_size'],
  } for s in trained.seeds()]


def programs(cfg: dict, groups) -> list:
  """The training programs of each group, and its input-profile program."""
  return training.programs(sys.modules[__name__], cfg, groups)


def run(cfg: dict, store: ResultStore) -> int:
  """Trains the missing points; a group killed mid-training resumes from its last checkpoint."""
  return training.run(sys.modules[__name__], cfg, store, desc='long-range memory')


def plot(records: list, plots_dir: str) -> list:
  from lib.report import training_plots  # matplotlib: only to draw
  return training_plots.memory_sweep(records, plots_dir)


def summary(records: list) -> str:
  return tables.memory_table(records)
