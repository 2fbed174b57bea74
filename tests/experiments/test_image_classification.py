"""The image classification experiment: permutation of positions, a short run on the local
MNIST-1D that already ranks the CNN above logistic regression, TFDS images under mock_data, and
fast clear failures for bad or missing datasets."""

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from lib import experiments
from lib.experiments import image_classification
from lib.runtime import rng as rng_lib
from lib.runtime import train
from lib.runtime import training
from lib.runtime.errors import UserError
from tests.conftest import config_path
from tests.conftest import ROOT
from tests.conftest import validated

CONFIG = config_path('image_classification')


def test_permutation_is_one_fixed_shuffle_of_positions():
  """One permutation of the 6 positions (not the identity), applied alike to every example and
  channel, the same for the same seed; on images, a shuffle of the 4 x 4 pixels."""
  x = np.arange(2 * 6 * 3, dtype=np.float32).reshape(2, 6, 3)
  y = image_classification.permute_positions(x, seed=0)
  order = (y[0, :, 0] / 3).astype(int)  # the position each output position came from
  assert sorted(order) == list(range(6)) and order.tolist() != list(range(6))
  np.testing.assert_array_equal(y, x[:, order])  # every example, every channel, alike
  np.testing.assert_array_equal(image_classification.permute_positions(x, seed=0), y)
  images = np.arange(4 * 4, dtype=np.float32).reshape(1, 4, 4, 1)
  shuffled = image_classification.permute_positions(images, seed=1)
  assert shuffled.shape == images.shape and sorted(shuffled.ravel()) == sorted(images.ravel())


class _Seen(Exception):
  """Raised by a stand-in for train.train with the task it was handed."""


def test_the_model_sees_the_dataset_unchanged_or_permuted_as_asked(monkeypatch):
  """What training and the memory check are handed (train.train's and train.programs' task data,
  the arrays every batch and evaluation read) for a dataset of 3 x 4 images of 2 channels: with
  permuted off, the dataset's own inputs, unchanged; with it on, the train and the test inputs
  both moved by the one fixed permutation of config.permutation_seed (the permutation of the
  seed's 'permutation' stream, the same for every example and channel), the labels unchanged."""
  rng = np.random.default_rng(0)
  (x, y), (x_test, y_test) = datasets = tuple(
      (rng.normal(size=(n, 3, 4, 2)).astype(np.float32), rng.permutation(n).astype(np.int32))
      for n in (10, 5))
  cfg = validated('image_classification', models=('logistic',), permutation_seed=3)
  # output position i reads input position order[i] (row-major over the 3 x 4 positions)
  order = np.asarray(jax.random.permutation(rng_lib.stream_key(3, 'permutation'), 12))
  assert order.tolist() != list(range(12))
  permuted = lambda a: a.reshape(len(a), 12, 2)[:, order].reshape(a.shape)

  def stand_in(init, task, *args, **kwargs):
    raise _Seen(task)
  monkeypatch.setattr(train, 'train', stand_in)
  programs_seen = []
  monkeypatch.setattr(train, 'programs', lambda name, init, task, *a: programs_seen.append(task)
                      or {})
  for permute, expected in ((False, lambda a: a), (True, permuted)):
    with pytest.raises(_Seen) as seen:
      training.train_group(image_classification, cfg, 'unused', ('logistic', permute), datasets)
    image_classification.programs(cfg, [(('logistic', permute), [])], datasets)
    for data in (seen.value.args[0].data, programs_seen.pop().data):
      np.testing.assert_array_equal(data['x'], expected(x))
      np.testing.assert_array_equal(data['x_test'], expected(x_test))
      np.testing.assert_array_equal(data['y'], y)
      np.testing.assert_array_equal(data['y_test'], y_test)


@pytest.mark.slow
def test_a_short_run_on_mnist1d_ranks_the_cnn_above_logistic_regression(tmp_path):
  """300 steps of the published recipe (Adam 1e-2, batch 100), seed 0, on the local MNIST-1D
  (built here: 4000 train, 1000 test signals): the CNN's test accuracy beats logistic
  regression's by more than 20 points (measured: 83% against 31%), and logistic regression is
  already near its published 32% (within 15% to 45%: at 300 steps it has not converged, and
  1000 test examples give a standard error of 1.5 points). The run's summary has the published
  column, and its accuracy plot is drawn."""
  cfg = validated(
      'image_classification', models=('cnn', 'logistic'), permuted=(False,), num_steps=300,
      log_every=100, checkpoint_every=0, num_seeds=1, data_dir=str(tmp_path / 'tfds'))
  out = experiments.run(cfg, str(tmp_path / 'w'))
  records = {r['model']: r for r in map(json.loads, open(tmp_path / 'w' / 'results.jsonl'))}
  assert records['cnn']['test_accuracy'] > records['logistic']['test_accuracy'] + 0.2
  assert 0.15 < records['logistic']['test_accuracy'] < 0.45  # published: 32%
  assert all(r['status'] == 'ok' and r['dataset'] == 'mnist1d' for r in records.values())
  assert 'published' in out and os.path.exists(tmp_path / 'w' / 'plots' / 'accuracy.png')


def _np_tanh_rnn_features(params, x):
  """The bidirectional tanh RNN's features in numpy (float64): the pixels in raster order as a
  sequence, h_t = tanh(x_t V + b + h_{t-1} W) forwards, and backwards over the reversed
  sequence; per step the two states side by side, flattened. -> (features, readout params)."""
  xs = x.reshape(len(x), -1, x.shape[-1])  # (B, 784, C): row after row
  outs = []
  for d, cell in enumerate(params['cells']):
    c = jax.tree.map(lambda a: np.asarray(a, np.float64), cell['params'])
    h, hs = np.zeros((len(x), c['h']['kernel'].shape[0])), []
    for t in (range(xs.shape[1]) if d == 0 else reversed(range(xs.shape[1]))):
      h = np.tanh(xs[:, t] @ c['i']['kernel'] + c['i']['bias'] + h @ c['h']['kernel'])
      hs.append(h)
    outs.append(np.stack(hs if d == 0 else hs[::-1], axis=1))  # (B, T, N), step t at t
  return np.concatenate(outs, axis=-1).reshape(len(x), -1), params['readout']['params']


def _np_logits_loss_accuracy(features, readout, y):
  """Logits, mean cross-entropy (log-softmax in float64) and accuracy, in numpy."""
  logits = features @ np.asarray(readout['kernel'], np.float64) + np.asarray(readout['bias'],
                                                                             np.float64)
  shifted = logits - logits.max(axis=1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  return logits, -log_p[np.arange(len(y)), y].mean(), np.mean(logits.argmax(axis=1) == y)


def test_image_datasets_train_under_mock_data(tmp_path, monkeypatch, finals):
  """MNIST-shaped images through tfds.data_source (TFDS's mock: 16 random 28 x 28 images per
  split, the same in both) read as pixel sequences (784 steps, raster order) by a bidirectional
  tanh RNN, original and permuted, trained one step of Adam (batch 8), the whole run (memory
  check, summary, plots): a record per (model, permuted) in grid order, and its numbers
  recomputed in numpy float64 from the dataset read again (pixels / 255), the positions moved
  by the permutation of permutation_seed 3, and the parameters the trainer started from and
  ended with:
  - train_loss[0], the loss of batch 0 (examples order[:8], order the permutation of stream
    (seed 0, 'order', epoch 0)) at the initial parameters, and the final test loss and
    accuracy on the 16 test images, within rel 1e-5 (float32 rounding; accuracy exact);
  - the readout's first Adam step, -lr g / (|g| + eps) (m_hat = g, v_hat = g^2 at step 1)
    with g = F^T (softmax - onehot) / 8 of batch 0's features F, within 1e-4 lr where
    |g| > 1e-5 (over 90% of the entries; below, float32's rounding of g matters beside eps).
  Unscaled pixels, a skipped or wrong permutation, pixels in column order, another batch or
  the wrong loss or accuracy are each off by far more. (One model: the CNN on 2-D images took
  8 s more, and its convolutions are checked against XLA's in tests/nets/test_models.py.)"""
  cfg = validated(
      'image_classification', dataset='mnist', models=('tanh',), num_steps=1, log_every=1,
      checkpoint_every=0, batch_size=8, num_seeds=1, hidden_size=2, permutation_seed=3)

  def read(split):  # the mock's examples again, pixels scaled to [0, 1]
    source = tfds.data_source('mnist', split=split)
    examples = [source[i] for i in range(len(source))]
    return (np.stack([np.asarray(e['image']) for e in examples]) / 255.0,
            np.asarray([int(e['label']) for e in examples]))
  with tfds.testing.mock_data(num_examples=16):
    experiments.run(cfg, str(tmp_path / 'w'))
    (x, y), (x_test, y_test) = read('train'), read('test')
  records = [json.loads(line) for line in open(tmp_path / 'w' / 'results.jsonl')]
  assert [(r['model'], r['permuted'], r['status']) for r in records] == [
      ('tanh', False, 'ok'), ('tanh', True, 'ok')]
  assert x.shape == (16, 28, 28, 1) and len(finals) == 2
  order = np.asarray(jax.random.permutation(rng_lib.stream_key(3, 'permutation'), 28 * 28))
  batch = np.asarray(jax.random.permutation(rng_lib.stream_key(0, 'order', 0), 16))[:8]
  for r, final in zip(records, finals):
    move = (lambda a: a.reshape(16, -1, 1)[:, order].reshape(a.shape)) if r['permuted'] else (
        lambda a: a)
    first = jax.tree.map(lambda a: a[0], final['init_params'])  # seed 0
    last = jax.tree.map(lambda a: a[0], final['params'])
    f, readout = _np_tanh_rnn_features(first, move(x)[batch])
    logits, loss, _ = _np_logits_loss_accuracy(f, readout, y[batch])
    assert r['train_loss'][0] == pytest.approx(loss, rel=1e-5)
    _, test_loss, accuracy = _np_logits_loss_accuracy(
        *_np_tanh_rnn_features(last, move(x_test)), y_test)
    assert r['test_loss'] == pytest.approx(test_loss, rel=1e-5)
    assert r['test_accuracy'] == accuracy
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    residual = p / p.sum(axis=1, keepdims=True) - np.eye(logits.shape[1])[y[batch]]
    after = last['readout']['params']
    for name, g in (('kernel', f.T @ residual / 8), ('bias', residual.mean(axis=0))):
      # where |g| > 1e-5, float32's rounding of g (~1e-7) moves g / (|g| + eps) by < 1e-5
      big = np.abs(g) > 1e-5
      assert big.mean() > 0.9
      np.testing.assert_allclose((np.asarray(after[name]) - np.asarray(readout[name]))[big],
                                 -cfg['learning_rate'] * g[big] / (np.abs(g[big]) + 1e-8),
                                 rtol=0, atol=1e-4 * cfg['learning_rate'])


@pytest.mark.slow
def test_a_missing_dataset_fails_fast_with_nothing_written(tmp_path):
  """run.py on a dataset that is not there: exit 2 and one line that says how to get it, at
  once (under 60 s: a process start on a busy machine, never a download attempt or TFDS's retry
  loop), with no workdir made."""
  start = time.perf_counter()
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'run.py'), f'--config={CONFIG}',
       '--config.dataset=fashion_mnist', f'--config.data_dir={tmp_path / "tfds"}',
       f'--workdir={tmp_path / "w"}'], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and 'pass --config.download=True' in lines[0], result.stderr
  assert 'Traceback' not in result.stderr
  assert time.perf_counter() - start < 60
  assert not os.path.exists(tmp_path / 'w')


@pytest.mark.parametrize('overrides, message', [
    (dict(dataset='imagenet'), "unknown dataset 'imagenet'; valid choices: mnist1d, mnist, "),
    (dict(models=('cnn', 'resnet')), "unknown model 'resnet'; valid choices: cnn, mlp, logistic"),
    (dict(permuted=('maybe',)), "'maybe' is not True or False"),
])
def test_bad_input_is_a_user_error(overrides, message):
  with pytest.raises(UserError, match=message):
    validated('image_classification', **overrides)
