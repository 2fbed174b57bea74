"""Shared helpers: a tiny gradient-decay config, so that tests compile small programs; and a
compilation cache for the session, so that the subprocess runs of run.py (which compile the same
tiny programs again and again) load them instead. Set before jax is imported, inherited by
subprocesses."""

import atexit
import functools
import os
import runpy
import shutil
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:  # workers of pytest-xdist inherit the parent's
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='jax-cache-tests-')
  atexit.register(functools.partial(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'],
                                    ignore_errors=True))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
# JAX's CPU QR (the orthogonal and delta-orthogonal initialisers) calls LAPACK through scipy's
# OpenBLAS, which starts a thread per core: with two xdist workers already on the two cores, one
# 128 x 128 QR took 0.2-0.5 s, against 0.002 s on one thread (the same values).
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
DEFAULT_CONFIG = os.path.join(ROOT, 'experiments', 'gradient_decay.py')


def normal(key, shape, dtype=None):
  """jax.random.normal(key, shape, dtype), drawn flat and reshaped: the same values (each element
  is drawn from its index in the flattened shape), and eagerly a fraction of the compile (XLA:CPU
  compiles a shaped draw several times slower: 0.5-1.7 s against 0.1-0.3 s, measured)."""
  import math  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top  (after the environment above is set)
  return jax.random.normal(key, (math.prod(shape),), dtype or jax.numpy.float32).reshape(shape)


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


# pytest-xdist (--dist loadfile) gives each worker a whole file at a time, in collection order;
# the files that take longest go first, so that the two workers end together instead of one
# starting the longest file last. Measured with `pytest --durations=0` (README, Tests).
LONGEST_FIRST = ('tests/test_run.py',)


def pytest_collection_modifyitems(items):
  def rank(item):
    path = os.path.relpath(str(item.path), ROOT)
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
  items.sort(key=rank)  # stable: the order within and among the other files is kept
