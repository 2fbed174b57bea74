"""Shared helpers: a tiny gradient-decay config, so that tests compile small programs."""

import os
import runpy

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(ROOT, 'experiments', 'gradient_decay.py')


def default_config():
  """The ConfigDict of experiments/gradient_decay.py, unlocked for tests to shrink."""
  return runpy.run_path(DEFAULT_CONFIG)['get_config']()


TINY = dict(cells=('tanh', 'gru'), seq_lens=(3, 5), sigma_w2=(0.5, 4.0), hidden_size=6,
            input_size=3, batch_size=4, num_seeds=2)


@pytest.fixture
def tiny_config():
  config = default_config()
  config.update(TINY)
  return config
