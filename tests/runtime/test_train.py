"""Training: a tiny run learns; a diverging seed is a status that leaves the other seeds alone;
a run killed mid-way resumes from its orbax checkpoint to bit-identical results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.experiments import long_range_memory
from lib.runtime import train
from lib.runtime.errors import UserError

CFG = dict(task='adding', batch_size=16, test_size=64, hidden_size=8, num_heads=2, num_layers=1,
           sigma_w2=1.0, sigma_v2=1.0, sigma_b2=0.0, recurrent_init='gaussian', gate_bias=1.0)


def _setup(cell='tanh', seq_len=6, **cfg):
  cfg = {**CFG, **cfg}
  model = long_range_memory.make_model(cfg, cell)
  return model, long_range_memory.make_task(cfg, model, seq_len)


def _assert_same(a, b, rtol=0.0):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=rtol * 1e-2)


def test_a_tiny_run_learns_the_adding_problem():
  """Adam on T = 6 for 300 steps: the test MSE falls well below the constant predictor's 1/6."""
  model, task = _setup()
  final = train.train(model.init, task, train.optimizer('adam', 1e-2, 1.0), [0, 1], 300, 50)
  assert not final['diverged'].any()
  assert np.all(final["metrics"]["test_loss"] < 0.5 / 6)
  curve = final['curves']['test_loss']
  assert np.all(curve[:, -1] < curve[:, 0])
  np.testing.assert_array_equal(curve[:, -1], final['metrics']['test_loss'])


def test_a_diverging_seed_is_recorded_and_leaves_the_others_alone():
  """Seed 1's targets are NaN at step 5 only: it is marked diverged for good (the later steps
  are finite again, and must not revive it), its curves null from that chunk on, with the
  parameters it had after its 5 good steps; seed 0's whole curve is an unpoisoned run's.
  (Programs of other shapes may round differently in the last bit, hence rtol 1e-5: a NaN or a
  missed step would be far off.)"""
  model, task = _setup()
  poisoned = task._replace(batch=lambda data, seed, step: jax.tree.map(
      lambda a: a, (task.batch(data, seed, step)[0],
                    jnp.where((seed == 1) & (step == 5), jnp.nan,
                              task.batch(data, seed, step)[1]))))
  opt = train.optimizer('adam', 1e-2, 0.0)
  final = train.train(model.init, poisoned, opt, [0, 1], 20, 5)
  assert final['diverged'].tolist() == [False, True]
  for curve in final['curves'].values():
    assert np.isnan(curve[1, 1:]).all() and np.isfinite(curve[1, 0])
  assert np.isnan(final['metrics']['test_loss'][1])
  five = train.train(model.init, task, opt, [0, 1], 5, 5)
  _assert_same(jax.tree.map(lambda a: a[1], final['params']),
               jax.tree.map(lambda a: a[1], five['params']), rtol=1e-5)
  clean = train.train(model.init, task, opt, [0, 1], 20, 5)
  for name, curve in final['curves'].items():
    assert np.isfinite(curve[0]).all()
    np.testing.assert_allclose(curve[0], clean['curves'][name][0], rtol=1e-5)
  assert final['curves']['train_loss'][0, -1] < final['curves']['train_loss'][0, 0]


def test_all_seeds_diverged_stops_early():
  model, task = _setup()
  final = train.train(model.init, task, train.optimizer('sgd', 1e30, 0.0), [0, 1], 50, 5)
  assert final['diverged'].all()
  assert final['step'].tolist() == [5, 5]  # stopped after the first chunk
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(final['params']))


def test_killed_training_resumes_from_its_checkpoint(tmp_path, monkeypatch):
  """Interrupted in its third chunk (after the checkpoint at step 20), then run again: the same
  parameters, curves and metrics, bit for bit, as an uninterrupted run."""
  model, task = _setup('gru')
  opt = train.optimizer('adam', 1e-2, 1.0)
  args = (model.init, task, opt, [3, 4], 40, 10)
  uninterrupted = train.train(*args)

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
  with pytest.raises(KeyboardInterrupt):
    train.train(*args, checkpoint_dir=directory, checkpoint_every=20)
  monkeypatch.undo()
  assert train.Checkpoints(directory).latest_step() == 20

  def counted(*a, **k):
    chunk = real(*a, **k)
    def wrapped(*chunk_args):
      calls.append(1)
      return chunk(*chunk_args)
    return wrapped
  calls = []
  monkeypatch.setattr(train, 'chunk_program', counted)
  resumed = train.train(*args, checkpoint_dir=directory, checkpoint_every=20)
  assert len(calls) == 2  # steps 20..39 only: the first 20 came from the checkpoint
  _assert_same(resumed, uninterrupted)


def test_bad_optimizer_and_step_counts():
  with pytest.raises(UserError, match="unknown optimizer 'adamw'; valid choices: adam, rmsprop"):
    train.optimizer('adamw', 1e-3, 0.0)
  model, task = _setup()
  with pytest.raises(UserError, match='multiples of log_every'):
    train.train(model.init, task, train.optimizer('adam', 1e-3, 0.0), [0], 15, 10)


def test_an_epoch_value_drawn_once_per_epoch_gives_the_batches_of_a_per_step_draw():
  """A task with `epoch` (the shuffle of a 12-example dataset, 3 batches of 4 per epoch) trains
  to the same bits as the same task that draws the permutation again at every step; chunks of 4
  steps start mid-epoch, and a resumed run starts mid-chunk's epoch too."""
  rng = np.random.default_rng(0)
  data = {'x': rng.normal(size=(12, 3)).astype(np.float32),
          'y': rng.normal(size=(12,)).astype(np.float32)}

  def order(data, seed, epoch):
    del data
    return jax.random.permutation(jax.random.fold_in(jax.random.key(seed), epoch), 12)

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
