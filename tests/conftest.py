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


# pytest-xdist (--dist loadfile --no-loadscope-reorder, pyproject.toml) hands out whole files in
# collection order, each to the first worker with at most 2 tests left; the files that take
# longest go first (longest-processing-time first), so that the workers end together rather than
# one running a long file alone at the end. (By default xdist orders files by their number of
# tests: test_long_range_memory, test_image_classification and test_distributed, long with few
# tests, then came last: one worker ended 18 s after the other.) Ranked by their time in a full
# run; the files not listed follow in their own order. test_context_use comes a few files after
# test_language_model: it trains that file's tiny run again, whose programs it then loads from
# the compilation cache.
LONGEST_FIRST = ('tests/test_run.py', 'tests/experiments/test_long_range_memory.py',
                 'tests/runtime/test_devices.py', 'tests/measure/test_theory.py',
                 'tests/nets/test_cnn.py', 'tests/experiments/test_image_classification.py',
                 'tests/measure/test_gradients.py', 'tests/runtime/test_distributed.py',
                 'tests/runtime/test_limits.py', 'tests/nets/test_models.py',
                 'tests/experiments/test_gradient_decay.py',
                 'tests/experiments/test_curse_of_memory.py', 'tests/runtime/test_train.py',
                 'tests/experiments/test_language_model.py', 'tests/nets/test_language.py',
                 'tests/runtime/test_dry_run.py', 'tests/experiments/test_context_use.py',
                 'tests/nets/test_transformer.py', 'tests/experiments/test_transformer_depth.py',
                 'tests/data/test_text.py',
                 'tests/data/test_datasets.py',
                 'tests/test_bench.py', 'tests/data/test_tasks.py')


def pytest_collection_modifyitems(items):
  def rank(item):
    path = os.path.relpath(str(item.path), ROOT)
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
  items.sort(key=rank)  # stable: the order within and among the other files is kept
