"""Training: a tiny run learns; a diverging seed is a status that leaves the other seeds alone;
a run killed mid-way resumes from its orbax checkpoint to bit-identical results, and from the one
before it (or from step 0) where that checkpoint is damaged.

The first six tests share one compiled program (compiling it is most of their cost): the tiny
tanh RNN of conftest's `trainer_setup` on the adding problem, trained by Adam on seeds 3 and 4
for 300 steps in chunks of 50, its targets replaceable at one step of each seed by a value
passed in the task's data (`_poisonable`), so that a poisoned run and a clean one are the same
program run on other data, and agree bit for bit wherever the poison does not reach."""

import logging as std_logging
import os
import shutil
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.runtime import train
from lib.runtime.errors import UserError
from tests.conftest import trainer_setup

# the shared run: seeds that are not their own indices (a resumed run that mixed the two up would
# show), 6 chunks of 50 steps, a checkpoint every 2 chunks
SEEDS, NUM_STEPS, LOG_EVERY, CHECKPOINT_EVERY = [3, 4], 300, 50, 100


def _assert_same(a, b, rtol=0.0):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=rtol * 1e-2)


def _poisonable(task: train.Task) -> train.Task:
  """The task, its data {'task': its own data, 'at': int32 (8,), 'value': float32 (8,)}: the
  targets of seed s's batch at step at[s] are all value[s] (at[s] = -1: never)."""
  def batch(data, seed, step):
    x, y = task.batch(data['task'], seed, step)
    return x, jnp.where(step == data['at'][seed], data['value'][seed], y)
  return task._replace(batch=batch, evaluate=lambda params, data, seed: task.evaluate(
      params, data['task'], seed))


def _poison(task: train.Task, poison: dict = None) -> train.Task:
  """A `_poisonable` task whose targets are `value` at `step` for each seed: (step, value) of
  `poison` (default: none)."""
  steps, values = np.full(8, -1, np.int32), np.zeros(8, np.float32)
  for seed, (step, value) in (poison or {}).items():
    steps[seed], values[seed] = step, value
  return task._replace(data={'task': task.data, 'at': steps, 'value': values})


def _recording(chunk_program, params_after: list):
  """train.chunk_program whose chunks append the parameters they end with to `params_after`."""
  def program(*args, **kwargs):
    chunk = chunk_program(*args, **kwargs)

    def wrapped(*chunk_args):
      state = chunk(*chunk_args)
      params_after.append(jax.device_get(state['params']))
      return state
    return wrapped
  return program


@pytest.fixture(scope='module')
def shared():
  """The shared run, unpoisoned, with the parameters after each of its chunks; `train(task,
  **kwargs)` runs the same program on a task of `_poison`."""
  model, task = trainer_setup()
  task = _poisonable(task)
  opt = train.optimizer('adam', 1e-2, 1.0)

  def run(task, **kwargs):
    return train.train(model.init, task, opt, SEEDS, NUM_STEPS, LOG_EVERY, **kwargs)
  real, params_after = train.chunk_program, []
  train.chunk_program = _recording(real, params_after)
  try:
    clean = run(_poison(task))
  finally:
    train.chunk_program = real
  return types.SimpleNamespace(task=task, train=run, clean=clean, params_after=params_after)


def test_a_tiny_run_learns_the_adding_problem(shared):
  """Adam on T = 6 for 300 steps: the test MSE of each seed falls well below the constant
  predictor's 1/6, and below its first logged point; the final metrics are the curves' last
  points."""
  final = shared.clean
  assert not final['diverged'].any()
  assert np.all(final['metrics']['test_loss'] < 0.5 / 6)
  curve = final['curves']['test_loss']
  assert np.all(curve[:, -1] < curve[:, 0])
  np.testing.assert_array_equal(curve[:, -1], final['metrics']['test_loss'])
  assert final['step'].tolist() == [NUM_STEPS] * 2 and len(shared.params_after) == 6


def test_a_diverging_seed_is_recorded_and_leaves_the_others_alone(shared):
  """Seed 4's targets are NaN at step 50 only (the first step of the second chunk): it is
  marked diverged for good (the later steps are finite again, and must not revive it), its
  curves null from that chunk on, with the parameters it had after its 50 good steps (those of
  the clean run after its first chunk); seed 3's whole curve is the clean run's, bit for bit
  (the same program on the same batches)."""
  final = shared.train(_poison(shared.task, {4: (50, np.nan)}))
  assert final['diverged'].tolist() == [False, True]
  for curve in final['curves'].values():
    assert np.isnan(curve[1, 1:]).all() and np.isfinite(curve[1, 0])
  assert np.isnan(final['metrics']['test_loss'][1])
  _assert_same(jax.tree.map(lambda a: a[1], final['params']),
               jax.tree.map(lambda a: a[1], shared.params_after[0]))
  for name, curve in final['curves'].items():
    assert np.isfinite(curve[0]).all()
    np.testing.assert_array_equal(curve[0], shared.clean['curves'][name][0])
  assert final['curves']['train_loss'][0, -1] < final['curves']['train_loss'][0, 0]


def test_all_seeds_diverged_stops_early(shared):
  """Both seeds diverge in the first chunk, seed 3 at step 10 (targets of 1e30: finite, but the
  squared error overflows to inf, as an exploding run's does), seed 4 at step 20 (NaN targets,
  so NaN gradients): training stops after that chunk, and the parameters kept are finite."""
  final = shared.train(_poison(shared.task, {3: (10, 1e30), 4: (20, np.nan)}))
  assert final['diverged'].all()
  assert final['step'].tolist() == [LOG_EVERY] * 2  # stopped after the first chunk
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(final['params']))


def test_killed_training_resumes_from_its_checkpoint(shared, tmp_path, monkeypatch):
  """Interrupted in its third chunk (after the checkpoint at step 100), then run again: the same
  parameters, optimizer state, curves and metrics, bit for bit, as the uninterrupted run. The
  saves (which silence orbax's absl logging while they run) leave absl's logger at its level."""
  real = train.chunk_program
  def dies_in_third_chunk(*a, **k):
    chunk, calls = real(*a, **k), []
    def wrapped(*chunk_args):
      calls.append(1)
      if len(calls) == 3:
        raise KeyboardInterrupt
      return chunk(*chunk_args)
    return wrapped
  monkeypatch.setattr(train, 'chunk_program', dies_in_third_chunk)
  directory = str(tmp_path / 'ckpt')
  std_logging.getLogger('absl').setLevel(std_logging.NOTSET)  # absl's own default: unset
  task = _poison(shared.task)
  with pytest.raises(KeyboardInterrupt):
    shared.train(task, checkpoint_dir=directory, checkpoint_every=CHECKPOINT_EVERY)
  monkeypatch.undo()
  assert train.Checkpoints(directory).latest_step() == CHECKPOINT_EVERY

  def counted(*a, **k):
    chunk = real(*a, **k)
    def wrapped(*chunk_args):
      calls.append(1)
      return chunk(*chunk_args)
    return wrapped
  calls = []
  monkeypatch.setattr(train, 'chunk_program', counted)
  resumed = shared.train(task, checkpoint_dir=directory, checkpoint_every=CHECKPOINT_EVERY)
  assert len(calls) == 4  # steps 100..299 only: the first 100 came from the checkpoint
  _assert_same(resumed, shared.clean)
  assert std_logging.getLogger('absl').level == std_logging.NOTSET


def _damage(directory, step: int, how: str) -> None:
  """Every file of the checkpoint at `step`: cut to nothing ('truncate') or overwritten with
  bytes that are not UTF-8 ('garbage'), as a bad copy or a disk fault leaves it."""
  for folder, _, files in os.walk(os.path.join(directory, str(step))):
    for name in files:
      with open(os.path.join(folder, name), 'wb') as f:
        f.write(b'' if how == 'truncate' else b'\xff\xfe' + bytes(range(200, 256)))


@pytest.fixture(scope='module')
def checkpointed(shared, tmp_path_factory):
  """The folder of the checkpoints that the shared run, checkpointed every 100 steps, leaves:
  its last two, at steps 100 and 200."""
  directory = tmp_path_factory.mktemp('checkpointed') / 'ckpt'
  shared.train(_poison(shared.task), checkpoint_dir=str(directory),
               checkpoint_every=CHECKPOINT_EVERY)
  return directory


@pytest.mark.parametrize('damaged, how, start', [((200,), 'garbage', 100),
                                                 ((100, 200), 'truncate', 0)])
def test_a_damaged_checkpoint_falls_back_to_the_one_before_or_to_step_0(
    shared, checkpointed, tmp_path, caplog, damaged, how, start):
  """A finished run leaves its last two checkpoints (steps 100 and 200). With the newest
  damaged, a rerun resumes from the one before; with both, it trains from step 0; a warning
  line for each damaged one says so. Either way the results are the uninterrupted run's, bit
  for bit, and the checkpoints saved after the fallback are whole (a damaged one left behind
  would make orbax skip every later save as older than it)."""
  directory = str(tmp_path / 'ckpt')
  shutil.copytree(checkpointed, directory)
  task = _poison(shared.task)
  steps = lambda: sorted(int(name) for name in os.listdir(directory) if name.isdigit())
  assert steps() == [100, 200]
  for step in damaged:
    _damage(directory, step, how)
  caplog.set_level('INFO')
  resumed = shared.train(task, checkpoint_dir=directory, checkpoint_every=CHECKPOINT_EVERY)
  _assert_same(resumed, shared.clean)
  warnings = [r.getMessage() for r in caplog.records if 'cannot be read' in r.getMessage()]
  assert len(warnings) == len(damaged), warnings
  assert warnings[-1].endswith('goes on from ' + (f'the one at step {start}' if start
                                                   else 'step 0'))
  assert all(f'ckpt/{step} cannot be read (' in line
             for step, line in zip(sorted(damaged, reverse=True), warnings))
  if start:
    assert 'resumed from the checkpoint at step 100' in caplog.text
  assert steps() == [100, 200]
  before = len(caplog.text)  # a third run reads the checkpoint at 200 that the second saved
  shared.train(task, checkpoint_dir=directory, checkpoint_every=CHECKPOINT_EVERY)
  assert 'resumed from the checkpoint at step 200' in caplog.text[before:]
  assert 'cannot be read' not in caplog.text[before:]


def test_bad_optimizer_and_step_counts():
  with pytest.raises(UserError, match="unknown optimizer 'adamw'; valid choices: adam, rmsprop"):
    train.optimizer('adamw', 1e-3, 0.0)
  model, task = trainer_setup()
  with pytest.raises(UserError, match='multiples of log_every'):
    train.train(model.init, task, train.optimizer('adam', 1e-3, 0.0), [0], 15, 10)


def test_an_epoch_value_drawn_once_per_epoch_gives_the_batches_of_a_per_step_draw():
  """A task with `epoch` (the shuffle of a 12-example dataset, 3 batches of 4 per epoch) trains
  to the same bits as the same task that draws the permutation again at every step; chunks of 4
  steps start mid-epoch, and a resumed run starts mid-chunk's epoch too."""
  rng = np.random.default_rng(0)
  data = {'x': rng.normal(size=(12, 3)).astype(np.float32),
          'y': rng.normal(size=(12,)).astype(np.float32)}

  def order(data, seed, epoch):  # a shuffle of its own for each (seed, epoch); 5, 7 coprime to 12
    del data
    return (jnp.arange(12) * (5 + 2 * seed) + 7 * epoch) % 12

  def take(data, step, epoch_order):
    idx = jax.lax.dynamic_slice(epoch_order, ((step % 3) * 4,), (4,))
    return data['x'][idx], data['y'][idx]

  def loss(params, batch):
    return jnp.mean((batch[0] @ params - batch[1]) ** 2)

  cached = train.Task(batch=lambda data, seed, step, o: take(data, step, o), loss=loss,
                      evaluate=lambda params, data, seed: {'test_loss': loss(
                          params, (data['x'], data['y']))},
                      data=data, epoch=order, steps_per_epoch=3)
  per_step = cached._replace(
      batch=lambda data, seed, step: take(data, step, order(data, seed, step // 3)), epoch=None,
      steps_per_epoch=0)
  init = lambda key: jax.random.normal(key, (3,))
  opt = train.optimizer('sgd', 0.1, 0.0)
  a = train.train(init, cached, opt, [0, 1], 16, 4)
  b = train.train(init, per_step, opt, [0, 1], 16, 4)
  _assert_same(a, b)
  assert a['curves']['train_loss'][:, -1].max() < a['curves']['train_loss'][:, 0].min()


def test_only_orbax_noise_is_dropped_from_the_exception_hooks(monkeypatch):
  """After a failed save orbax's threads raise into Python's hooks: those (raised in orbax code,
  or asyncio's 'Event loop is closed') are dropped, every other exception reaches the hook that
  was there before."""
  import sys  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  seen = []
  monkeypatch.setattr(sys, 'unraisablehook', lambda info: seen.append(info.exc_value))
  train._quiet_orbax()  # pylint: disable=protected-access

  def raised(error, filename):
    try:
      exec(compile('raise error', filename, 'exec'), {'error': error})
    except type(error) as e:
      return e

  for error in (raised(ValueError('disk full'), '/site-packages/orbax/checkpoint/x.py'),
                RuntimeError('Event loop is closed'), raised(KeyError('a bug'), 'ours.py')):
    sys.unraisablehook(types.SimpleNamespace(exc_value=error, exc_traceback=error.__traceback__))
  assert [repr(e) for e in seen] == ["KeyError('a bug')"]
