"""Long-range memory: train recurrent cells and causal attention on the adding problem or copy
memory across sequence lengths, and see which of them learn the long dependency.

Each (cell, clip_norm, seq_len) is one training program over every seed; each seed is one record.
Beside the final test loss every record carries the task's memoryless baseline (adding: MSE 1/6 of
predicting the mean; copy: 10 ln 8 / (T + 20)): a model at the baseline has learnt nothing about the
dependency. Records also carry the input-gradient profile of the model at initialisation and after
training (`lib.nets.models`: ln mean_b ||d <u, y_b> / d x_t||^2 over t, with y_b the output at the
last step), so that what a model learnt can be read beside how far its gradients reached.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from lib.data import tasks
from lib.nets import cells
from lib.nets import models
from lib.report import tables
from lib.runtime import compiled
from lib.runtime import config as config_lib
from lib.runtime import devices
from lib.runtime import rng
from lib.runtime import sweep
from lib.runtime import train
from lib.runtime.errors import UserError
from lib.runtime.results import json_floats
from lib.runtime.results import ResultStore

TASKS = ('adding', 'copy')
LENGTH = 'seq_len'
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
    **models.INIT_SPEC,
}


def validate(config) -> dict:
  cfg = config_lib.validate(config, SPEC)
  train.check_schedule(cfg)
  cells.linear_options(cfg)  # the linear cells' keys, checked
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
    log_p = jax.nn.log_softmax(out)  # (B, T + 20, classes)
    loss = -jnp.mean(jnp.take_along_axis(log_p, y[..., None], axis=-1))
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
    return models.sequence_model(cell, cfg, 2, 1, every_step=False)
  return models.sequence_model(cell, cfg, tasks.COPY_CLASSES, tasks.COPY_CLASSES,
                               every_step=True)


def input_profiles(cfg: dict, model: models.Model, seq_len: int):
  """f((params, seeds)) -> ln mean_b ||d <u, y_b> / d x_t||^2, (seeds, T'), on each seed's
  test set; u ~ N(0, I/C) from the seed's 'probe' stream. For `devices.run_points`."""
  num_outputs = 1 if cfg['task'] == 'adding' else tasks.COPY_CLASSES
  def profile(params, seed):
    x, _ = test_set(cfg, seq_len, seed)
    u = jax.random.normal(rng.stream_key(seed, 'probe'), (num_outputs,)) / np.sqrt(num_outputs)
    return model.input_profile(params, x, u)
  return compiled.memo(
      ('long_range_memory.profile', compiled.config_key(cfg), id(model), seq_len,
       devices.points_batch()),
      lambda: devices.map_points(lambda point: profile(*point), cfg['num_seeds']), model)


def point_key(record: dict) -> tuple:
  return (record['cell'], record['clip_norm'], record[LENGTH], record['seed'])


def grid(cfg: dict) -> list:
  return [((cell, clip, seq_len), [(cell, clip, seq_len, s) for s in sweep.seeds(cfg)])
          for cell in cfg['cells'] for clip in cfg['clip_norm'] for seq_len in cfg['seq_lens']]


def _setup(cfg: dict, group: tuple):
  """(model, task, optimizer) of one (cell, clip_norm, seq_len): the same objects for the memory
  check and the run, so that they build each program once (`lib.runtime.compiled.memo`)."""
  def build():
    cell, clip_norm, seq_len = group
    model = make_model(cfg, cell)
    return (model, make_task(cfg, model, seq_len),
            train.optimizer(cfg['optimizer'], cfg['learning_rate'], clip_norm))
  return compiled.memo(('long_range_memory', compiled.config_key(cfg), group), build)


def programs(cfg: dict, groups) -> list:
  """The training programs of each group, and its input-profile program (`lib.runtime.dry_run`)."""
  from lib.runtime import dry_run  # pylint: disable=g-import-not-at-top
  programs_ = []
  for group, _ in groups:
    model, task, opt = _setup(cfg, group)
    name = f'{group[0]} clip={group[1]:g} T={group[2]}'
    programs_ += train.programs(name, model.init, task, opt, cfg['num_seeds'], cfg['num_steps'],
                                cfg['log_every'])
    init = programs_[-2]  # its output holds the parameters of every seed
    (seeds,) = dry_run.points_args(cfg['num_seeds'], 'int32')
    params = devices.abstract(init.fn.eval_shape(*init.args)['params'], True, cfg['num_seeds'])
    programs_.append(dry_run.Program(f'{name} input profile',
                                     input_profiles(cfg, model, group[2]), ((params, seeds),), 2))
  return programs_


def compute_group(cfg: dict, checkpoints_dir: str, group: tuple) -> list:
  cell, clip_norm, seq_len = group
  model, task, opt = _setup(cfg, group)
  seeds = sweep.seeds(cfg)
  directory = os.path.join(checkpoints_dir, f'{cell}-clip{clip_norm!r}-T{seq_len}')
  final = train.train(model.init, task, opt, seeds, cfg['num_steps'], cfg['log_every'],
                      directory, cfg['checkpoint_every'], desc=f'{cell} T={seq_len}')
  profile = input_profiles(cfg, model, seq_len)  # one program, run before and after training
  seed_array = np.asarray(seeds, np.int32)
  profile_init = devices.run_points(profile, (final['init_params'], seed_array))
  profile_trained = devices.run_points(profile, (final['params'], seed_array))
  records = []
  for j, seed in enumerate(seeds):
    # non-finite final metrics from finite parameters (an overflowing loss) count as diverged
    diverged = bool(final['diverged'][j]) or not all(
        np.isfinite(v[j]) for v in final['metrics'].values())
    metrics = {k: (None if diverged else float(v[j])) for k, v in final['metrics'].items()}
    curves = final['curves']
    records.append({
        'task': cfg['task'], 'cell': cell, LENGTH: seq_len, 'seed': seed, 'clip_norm': clip_norm,
        'test_loss': metrics['test_loss'],
        'test_accuracy': metrics.get('test_accuracy'),
        'baseline_loss': baseline_loss(cfg['task'], seq_len),
        'status': 'diverged' if diverged else 'ok',
        'steps': int(final['step'][j]), 'log_every': cfg['log_every'],
        'train_loss': json_floats(curves['train_loss'][j]),
        'test_loss_curve': json_floats(curves['test_loss'][j]),
        **({'test_accuracy_curve': json_floats(curves['test_accuracy'][j])}
           if 'test_accuracy' in curves else {}),
        'log_grad_sq_input_init': json_floats(profile_init[j]),
        'log_grad_sq_input_trained': json_floats(profile_trained[j]),
        'optimizer': cfg['optimizer'], 'learning_rate': cfg['learning_rate'],
        'num_steps': cfg['num_steps'], 'batch_size': cfg['batch_size'],
        'hidden_size': cfg['hidden_size'],
    })
  return records


def run(cfg: dict, store: ResultStore) -> int:
  """Trains the missing points; a group killed mid-training resumes from its last checkpoint."""
  computed = sweep.run_groups(
      grid(cfg), functools.partial(compute_group, cfg, store.checkpoints_dir), point_key, store,
      desc='long-range memory')
  store.remove_checkpoints()  # every group's records are safe now
  return computed


def plot(records: list, plots_dir: str) -> list:
  from lib.report import training_plots  # matplotlib: only to draw
  return training_plots.memory_sweep(records, plots_dir)


def summary(records: list) -> str:
  return tables.memory_table(records)
