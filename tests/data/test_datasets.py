"""Datasets: the local MNIST-1D builder against the published fingerprint; fast, clear failures."""

import json
import logging
import os
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from lib.data import datasets
from lib.runtime.errors import UserError
from tests.conftest import ROOT

# The published MNIST-1D's shapes, first values and label counts (Greydanus & Kobak, ICML 2024;
# official mnist1d_data.pkl), copied from the project's shared reference folder.
FINGERPRINT = os.path.join(ROOT, 'tests', 'reference', 'mnist1d_fingerprint.json')


@pytest.fixture(scope='module')
def mnist1d(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  train = datasets.arrays(datasets.source('mnist1d', 'train', data_dir), ('signal', 'label'))
  test = datasets.arrays(datasets.source('mnist1d', 'test', data_dir), ('signal', 'label'))
  return train, test


def test_local_mnist1d_matches_the_published_dataset(mnist1d):
  with open(FINGERPRINT) as f:
    expect = json.load(f)
  (x, y), (x_test, y_test) = mnist1d
  assert list(x.shape) == expect['shapes']['x'] and list(x_test.shape) == expect['shapes']['x_test']
  np.testing.assert_allclose(x[0, :8], expect['x_0_first8'], rtol=0, atol=1e-12)
  np.testing.assert_allclose(x_test[0, :8], expect['x_test_0_first8'], rtol=0, atol=1e-12)
  assert y[:20].tolist() == expect['y_first20'] and y_test[:20].tolist() == expect['y_test_first20']
  assert np.bincount(y).tolist() == expect['y_counts']
  assert np.bincount(y_test).tolist() == expect['y_test_counts']
  assert x.sum() == pytest.approx(expect['x_sum'], abs=1e-6)
  assert np.abs(x).sum() == pytest.approx(expect['x_abs_sum'], rel=1e-12)


def test_missing_dataset_with_downloads_off_fails_fast_and_clearly(tmp_path):
  """At once (not TFDS's retry loop), one clear error, nothing written, and absl's logger (which
  the look-up quiets) left at its level."""
  logging.getLogger('absl').setLevel(logging.NOTSET)  # absl's own default: unset
  start = time.perf_counter()
  with pytest.raises(UserError, match=r"dataset mnist \(split 'train'\) is not in .*pass "
                                      r'--config.download=True'):
    datasets.source('mnist', 'train', str(tmp_path))
  assert time.perf_counter() - start < 10  # not TFDS's retry loop (about 200 s offline)
  assert os.listdir(tmp_path) == []
  assert logging.getLogger('absl').level == logging.NOTSET


def test_bad_names_are_user_errors(tmp_path):
  """A bad dataset or split name, before anything is built or written."""
  with pytest.raises(UserError, match="unknown dataset 'imagenet'; valid choices: mnist1d, mnist"):
    datasets.source('imagenet', 'train', str(tmp_path))
  with pytest.raises(UserError, match="dataset mnist1d has no split 'validation'; valid "
                                      'choices: train, test$'):
    datasets.source('mnist1d', 'validation', str(tmp_path))
  assert os.listdir(tmp_path) == []


def test_image_dataset_through_data_source_under_mock_data():
  """Under TFDS's mock (5 random examples, a pure function of the index; with an explicit
  split, it breaks __getitems__, so arrays() reads one by one), arrays() against tfds's own data
  source of the split, opened apart and indexed example by example: the same number, in the same
  order, each image and label equal and of the source's dtype (uint8 pixels, not cast), and the
  images all different (so that an order or a read that mixes examples up shows)."""
  with tfds.testing.mock_data(num_examples=5):
    images, labels = datasets.arrays(datasets.source('mnist', 'train'), ('image', 'label'))
    reference = tfds.data_source('mnist', split='train')
    expect = [reference[i] for i in range(len(reference))]
  assert images.shape == (len(expect), 28, 28, 1) == (5, 28, 28, 1) and labels.shape == (5,)
  for i, example in enumerate(expect):
    assert images[i].dtype == example['image'].dtype == np.uint8
    np.testing.assert_array_equal(images[i], example['image'], err_msg=f'image {i}')
    assert labels[i] == example['label'] and 0 <= labels[i] < 10
  assert len({image.tobytes() for image in images}) == 5
