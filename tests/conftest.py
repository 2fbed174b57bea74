"""What the tests share: the configs they shrink (one `config` helper for every experiment), the
tiny sizes most of them use, how they read a workdir and run an experiment in-process, and the
fixtures several test modules need. Test modules import from here (and from the helper modules
tests/run_patched.py and tests/runtime/four_devices.py), never from one another.

A compilation cache for the session, so that the subprocess runs of run.py (which compile the
same tiny programs again and again) load them instead: set before jax is imported, inherited by
subprocesses and by pytest-xdist's workers; so are the fast-compile settings of
tests/compiling.py."""

import atexit
import functools
import json
import os
import runpy
import shutil
import tempfile

import pytest

from tests import compiling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, 'run.py')
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
compiling.set_environment()  # XLA compiles 2-4x faster (tests/compiling.py)


def config_path(name: str) -> str:
  """experiments/<name>.py."""
  return os.path.join(ROOT, 'experiments', f'{name}.py')


def device_env(devices: int, defaults: bool = False) -> dict:
  """os.environ for a subprocess with `devices` CPU devices: the count added to the XLA flags
  already there (tests/compiling.py's, which the numbers depend on); with `defaults`, without
  tests/compiling.py's settings (JAX's default compile, as users' runs have it)."""
  env = compiling.default_environment() if defaults else dict(os.environ)
  flags = ' '.join(f for f in env.get('XLA_FLAGS', '').split()
                   if not f.startswith('--xla_force_host_platform_device_count'))
  return {**env, 'XLA_FLAGS': f'{flags} --xla_force_host_platform_device_count={devices}'.strip()}


def config(name: str = 'gradient_decay', **overrides):
  """The ConfigDict of experiments/<name>.py, unlocked, with `overrides` set (not validated)."""
  cfg = runpy.run_path(config_path(name))['get_config']()
  cfg.update(overrides)
  return cfg


def validated(name: str = 'gradient_decay', **overrides) -> dict:
  """`config(name, **overrides)` checked by its experiment's spec: what run.py hands to lib."""
  from lib import experiments  # pylint: disable=g-import-not-at-top
  return experiments.validate(config(name, **overrides))


def flags(overrides: dict, name: str = None) -> list:
  """run.py's flags for `overrides` (--config.KEY=VALUE, tuples comma-joined), after
  --config=experiments/<name>.py when a name is given."""
  out = [f'--config={config_path(name)}'] if name else []
  return out + [f'--config.{key}={",".join(map(str, v)) if isinstance(v, tuple) else v}'
                for key, v in overrides.items()]


# The main job (experiments/gradient_decay.py) at a tiny size: 2 cells x 2 lengths (one program a
# cell: the bucket T = 5), 2 scales x 2 seeds a group, 16 points.
TINY = dict(cells=('tanh', 'gru'), seq_lens=(3, 5), sigma_w2=(0.5, 4.0), hidden_size=6,
            input_size=3, batch_size=4, num_seeds=2)
TINY_FLAGS = flags(TINY)
# Training (experiments/long_range_memory.py) at its smallest: a tanh RNN (its training programs
# compile in 3/5 the time of a GRU's), 3 seeds, 200 steps in chunks of 20, a checkpoint every 20.
TRAIN = {'cells': ('tanh',), 'seq_lens': (2,), 'hidden_size': 2, 'batch_size': 2, 'test_size': 2,
         'num_seeds': 3, 'num_steps': 200, 'log_every': 20, 'checkpoint_every': 20}
TRAIN_FLAGS = flags(TRAIN, 'long_range_memory')


# A text of period 9 over 6 symbols ('ab cc da\n' repeated): the language models' tiny runs learn it
# in 200 steps (the text is determined by the last two symbols).
SYMBOLS = list('\n abcd')
PATTERN = [2, 3, 1, 4, 4, 5, 2, 1, 0]


def repeating_corpus(name, data_dir=None, download=False):
  """PATTERN repeated (train 2000 tokens, valid and test 400) as ptb_char, in
  lib.data.text.corpus's place."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  del name, data_dir, download
  tile = lambda n: np.resize(np.asarray(PATTERN, np.int32), n)
  return {'train': tile(2000), 'valid': tile(400), 'test': tile(400), 'vocabulary': SYMBOLS,
          'level': 'char'}


# experiments/language_model.py's tiny run on the repeating text (tests/experiments/
# test_language_model.py; test_context_use.py trains it again, its programs then from the
# compilation cache): an LSTM and a transformer of window 8, 200 steps.
LANGUAGE_TINY = dict(dataset='ptb_char', models=('lstm', 'transformer'), context_lens=(8,),
                     num_layers=1, hidden_size=16, embed_size=8, num_heads=2, batch_size=4,
                     num_steps=200, log_every=50, checkpoint_every=100, lr_candidates=(1e-2,),
                     eval_tokens=200,
                     eval_streams=2, sample_len=18, num_seeds=1)


@pytest.fixture
def repeating_text(monkeypatch):
  """lib.data.text.corpus serves repeating_corpus."""
  from lib.data import text  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(text, 'corpus', repeating_corpus)


# The trainer's own tiny task (tests/runtime/test_train.py, tests/runtime/many_devices.py): the
# adding problem for a model of 8 units, batches of 16, 64 test examples.
TRAINER = dict(task='adding', batch_size=16, test_size=64, hidden_size=8, num_heads=2,
               num_layers=1, sigma_w2=1.0, sigma_v2=1.0, sigma_b2=0.0, recurrent_init='gaussian',
               gate_bias=1.0)


def trainer_setup(cell: str = 'tanh', seq_len: int = 6, **overrides) -> tuple:
  """(model, task) of long_range_memory for TRAINER with `overrides`: what lib.runtime.train
  trains, without an experiment around it."""
  from lib.experiments import long_range_memory  # pylint: disable=g-import-not-at-top
  cfg = {**TRAINER, **overrides}
  model = long_range_memory.make_model(cfg, cell)
  return model, long_range_memory.make_task(cfg, model, seq_len)


@pytest.fixture
def tiny_config():
  """config() with TINY set, for a test to shrink further."""
  return config(**TINY)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """A TFDS data folder for the module (MNIST-1D is built there by the first run that reads
  it)."""
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture
def finals(monkeypatch) -> list:
  """The final states lib.runtime.train.train returns during the test, in order (it still
  trains): what an experiment's records were computed from."""
  from lib.runtime import train  # pylint: disable=g-import-not-at-top
  out, real = [], train.train
  monkeypatch.setattr(train, 'train', lambda *a, **k: out.append(real(*a, **k)) or out[-1])
  return out


def records(workdir, part: str = None) -> list:
  """The records of workdir/results.jsonl (those of `part` only, if given)."""
  with open(os.path.join(workdir, 'results.jsonl')) as f:
    out = [json.loads(line) for line in f]
  return out if part is None else [r for r in out if r.get('part') == part]


def run_in_process(cfg: dict, workdir, **kw) -> str:
  """experiments.run, what run.py calls, in this process and without the plots (what the tests
  that use this compare is the records; the plots are drawn end to end in tests/test_run.py)."""
  from lib import experiments  # pylint: disable=g-import-not-at-top
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(experiments.get(cfg['experiment']), 'plot', lambda records, plots_dir: [])
    return experiments.run(cfg, str(workdir), **kw)


def programs_loaded(run) -> int:
  """How many executables `run()` got from XLA: compiled, or loaded from the persistent
  compilation cache (which the test session shares). A program compiled twice counts twice.

  JAX times every request for an executable, whether XLA compiles it or the persistent cache
  holds it, as one backend_compile_duration event (it wraps `compile_or_get_cached`): those are
  counted. (A cache hit also sends a cache_hits event; counting that too counted a program that
  another test had compiled before twice.)"""
  import jax  # pylint: disable=g-import-not-at-top
  loaded = []

  def on_compile(event, *_, **__):
    if event == '/jax/core/compile/backend_compile_duration':
      loaded.append(event)
  jax.monitoring.register_event_duration_secs_listener(on_compile)
  try:
    run()
  finally:
    jax.monitoring.unregister_event_duration_listener(on_compile)
  return len(loaded)


def checkpoint_steps(workdir) -> list:
  """The steps of the whole checkpoints in workdir (orbax writes a step's folder under a
  temporary name and renames it to the step once it is whole)."""
  return [int(name) for _, dirs, _ in os.walk(os.path.join(workdir, 'checkpoints'))
          for name in dirs if name.isdigit()]


# pytest-xdist (--dist loadfile --no-loadscope-reorder, pyproject.toml) hands out whole files in
# collection order, each to the first worker with at most 2 tests left; the files that take
# longest go first (longest-processing-time first), so that the workers end together rather than
# one running a long file alone at the end. Ranked by their time in a full run; the files not
# listed follow in their own order. test_context_use comes a few files after
# test_language_model: it trains that file's tiny run again, whose programs it then loads from
# the compilation cache; so does test_long_range_memory, a few files after test_golden_training,
# with the golden long_range_memory run's.
LONGEST_FIRST = ('tests/test_run.py', 'tests/test_golden_language.py', 'tests/test_golden.py',
                 'tests/test_golden_training.py', 'tests/runtime/test_devices.py',
                 'tests/measure/test_theory.py', 'tests/nets/test_cnn.py',
                 'tests/experiments/test_image_classification.py',
                 'tests/measure/test_gradients.py', 'tests/experiments/test_long_range_memory.py',
                 'tests/runtime/test_distributed.py', 'tests/runtime/test_damaged_workdir.py',
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
