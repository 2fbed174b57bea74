"""The long-range memory experiment: its records (the input profiles recomputed), that gates help
on copy memory, and bad input. (A training run stopped and resumed, end to end:
tests/test_run.py.)"""

import json
import math
import os

import pytest

from lib import experiments
from lib.experiments import long_range_memory
from lib.runtime import sweep
from lib.runtime import train
from lib.runtime.errors import UserError
from tests import golden
from tests.conftest import programs_loaded
from tests.conftest import validated

# The tiny copy run: the golden run's config (tests/golden: attention on copy T = 4, 2 seeds, 4
# steps in chunks of 2, so that its programs are loaded from the session's compilation cache),
# with a checkpoint every 2 steps (removed once the records are safe) and TensorBoard event files.
# Its records, curves and plots are checked.
STEPS, LOG_EVERY = golden.TINY['long_range_memory'][1]['num_steps'], 2
TINY = {**golden.TINY['long_range_memory'][1], 'log_every': LOG_EVERY, 'checkpoint_every': 2,
        'tensorboard': True}


@pytest.fixture(scope='module')
def tiny_copy_run(tmp_path_factory):
  """experiments.run of TINY in this process (one CPU device): (its output, its workdir, the
  executables it got from XLA, compiled or loaded from the session's compilation cache, and how
  many training chunks it built)."""
  workdir = tmp_path_factory.mktemp('tiny_copy_run') / 'w'
  cfg = validated('long_range_memory', **TINY)
  out, chunks, chunk_fn = [], [], train.chunk_fn
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(train, 'chunk_fn', lambda *a: chunks.append(1) or chunk_fn(*a))
    loaded = programs_loaded(lambda: out.append(experiments.run(cfg, str(workdir))))
  return out[0], workdir, loaded, len(chunks)


def _input_profiles_at_init(cfg, seeds):
  """ln mean_b ||d <u, y_b> / d x_t||^2 (t = 0..T + 19) of each seed's untrained attention
  model, recomputed another way: the test inputs built here from the seed's 'test' stream (10
  symbols of 1..8 per example, drawn as (8, 10), then T - 1 blanks 0, the marker 9, 10 blanks,
  one-hot over 10 classes), u ~ N(0, I / 10) from its 'probe' stream, y_b the output at the
  last step, the parameters the model's init from the seed's 'init' stream (the draws in
  float32 and int32, as the run's); the gradient by central differences (step 1e-5, no
  autodiff) in float64, each input entry (t, d) moved in every example at once (the examples
  do not mix). One program."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lib.runtime import rng  # pylint: disable=g-import-not-at-top
  model = long_range_memory.make_model(cfg, 'attention')
  (seq_len,), size = cfg['seq_lens'], cfg['test_size']
  steps, step = seq_len + 20, 1e-5

  def profile(seed):
    symbols = jax.random.randint(rng.stream_key(seed, 'test'), (size, 10), 1, 9, jnp.int32)
    tokens = jnp.concatenate([symbols, jnp.zeros((size, seq_len - 1), symbols.dtype),
                              jnp.full((size, 1), 9, symbols.dtype),
                              jnp.zeros((size, 10), symbols.dtype)], axis=1)
    x = (tokens[..., None] == jnp.arange(10)).astype(jnp.float64)
    u = jax.random.normal(rng.stream_key(seed, 'probe'), (10,), jnp.float32) / np.sqrt(10)
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          model.init(rng.stream_key(seed, 'init')))
    moves = jnp.eye(steps * 10).reshape(-1, 1, steps, 10) * step  # (T' 10, 1, T', 10)
    moved = jnp.concatenate([x + moves, x - moves]).reshape(-1, steps, 10)
    out = model.apply(params, moved)[:, -1] @ u.astype(jnp.float64)
    g = (out[:len(out) // 2] - out[len(out) // 2:]).reshape(steps, 10, size) / (2 * step)
    return jnp.log(jnp.mean(jnp.sum(g**2, axis=1), axis=1))
  with jax.enable_x64(True):
    return np.asarray(jax.jit(lambda s: jax.lax.map(profile, s))(np.asarray(seeds, np.int32)))


def test_records_of_a_tiny_copy_run(tiny_copy_run):
  """The one whole run of this file (run, records, summary, plots), TINY: two records in grid
  order, with the memoryless baseline 10 ln 8 / 23 (a formula: rel 1e-12 is rounding), the
  final test loss equal to the last point of its curve (the curve holds that float32 in its
  shortest decimal form: within rel 1e-5, it differs in the 8th digit at most), curves of
  4 / 2 = 2 points and input profiles of T + 20 = 24 steps, the one at initialisation
  equal to `_input_profiles_at_init`'s float64 central differences within 1e-4 (in ln: float32
  rounding, 1.2e-5 here; a wrong seed, probe, output step or input is off by far more); the
  checkpoints removed once the records are safe; the three plots drawn. And the memory check's
  programs are the trainer's: 3 executables (initialisation, chunk, input profile), and one
  chunk program built (lib.runtime.compiled.memo), not one for the check and one for the
  trainer."""
  out, workdir, loaded, chunks = tiny_copy_run
  assert loaded == 3 and chunks == 1
  records = [json.loads(line) for line in open(workdir / 'results.jsonl')]
  assert [(r['cell'], r['seq_len'], r['seed']) for r in records] == [
      ('attention', 4, 0), ('attention', 4, 1)]
  for r in records:
    assert r['baseline_loss'] == pytest.approx(10 * math.log(8) / (r['seq_len'] + 20), rel=1e-12)
    assert r['status'] == 'ok' and 0 <= r['test_accuracy'] <= 1
    assert r['test_loss'] == pytest.approx(r['test_loss_curve'][-1], rel=1e-5)
    assert len(r['train_loss']) == len(r['test_loss_curve']) == STEPS // LOG_EVERY
    assert len(r['log_grad_sq_input_init']) == len(r['log_grad_sq_input_trained']) \
        == r['seq_len'] + 20
  expected = _input_profiles_at_init(validated('long_range_memory', **TINY), (0, 1))
  for r, profile in zip(records, expected):
    assert r['log_grad_sq_input_init'] == pytest.approx(list(profile), rel=0, abs=1e-4)
  assert not os.path.exists(workdir / 'checkpoints')  # removed once the records are safe
  for name in ('loss_vs_length.png', 'training_curves.png', 'input_gradients.png'):
    assert os.path.getsize(workdir / 'plots' / name) > 0
  assert 'copy task' in out and 'attention' in out


def test_the_run_writes_its_curves_as_it_goes(tiny_copy_run):
  """metrics.jsonl (lib/runtime/train.log_metrics): a line per seed at each log step, in step
  order, its values the records' curves (written as the run went, read back here)."""
  _, workdir, _, _ = tiny_copy_run
  rows = [json.loads(line) for line in open(workdir / train.METRICS_FILE)]
  records = [json.loads(line) for line in open(workdir / 'results.jsonl')]
  assert [(r['seed'], r['step']) for r in rows] == [
      (seed, step) for step in range(LOG_EVERY, STEPS + 1, LOG_EVERY) for seed in (0, 1)]
  for record in records:
    mine = [r for r in rows if r['seed'] == record['seed']]
    assert {r['run'] for r in mine} == {'attention clip=1 T=4'}  # the progress bar's name
    assert [r['train_loss'] for r in mine] == pytest.approx(record['train_loss'], rel=1e-6)
    assert [r['test_loss'] for r in mine] == pytest.approx(record['test_loss_curve'], rel=1e-6)


def _scalars(folder) -> dict:
  """{tag: [(step, value)]} of the TensorBoard event files in `folder` (in the order written),
  read without tensorboard or TensorFlow: TFRecord framing (length, its CRC, the Event proto,
  its CRC) parsed by hand, each Event decoded by tensorboardX's protobuf; a SessionLog START at
  step p drops the points read before it at steps >= p, as TensorBoard purges them."""
  import struct  # pylint: disable=g-import-not-at-top
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out = {}
  files = sorted(os.listdir(folder), key=lambda n: os.path.getmtime(os.path.join(folder, n)))
  for name in files:
    data = open(os.path.join(folder, name), 'rb').read()
    at = 0
    while at < len(data):
      (length,) = struct.unpack('<Q', data[at:at + 8])
      event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
      at += 12 + length + 4
      if event.HasField('session_log') and event.session_log.status == 1:  # START
        out = {tag: [(s, v) for s, v in points if s < event.step] for tag, points in out.items()}
      for value in event.summary.value:
        out.setdefault(value.tag, []).append((event.step, value.simple_value))
  return out


def test_tensorboard_keeps_each_step_once_across_a_resume(tmp_path):
  """A run logs steps 2, 4, 6, crashes, and resumes from its checkpoint at 4: TensorBoard keeps
  2 and 4 from the first attempt and 6, 8 from the second, each once; a restart from 0 (no
  checkpoint) drops the whole first attempt."""
  import time  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  curve = lambda values: {'train_loss': np.asarray([values], np.float32)}
  first = train.EventFiles(str(tmp_path), 'run', [0], 0)
  for i, step in enumerate((2, 4, 6)):
    first.log(step, curve([1.0, 2.0, 3.0]), i)
  first.close()
  time.sleep(1.1)  # a new file (named by the second)
  second = train.EventFiles(str(tmp_path), 'run', [0], 4)
  for i, step in ((2, 6), (3, 8)):
    second.log(step, curve([0.0, 0.0, 30.0, 40.0]), i)
  second.close()
  assert _scalars(tmp_path / 'run seed=0')['train_loss'] == [(2, 1.0), (4, 2.0), (6, 30.0),
                                                             (8, 40.0)]
  time.sleep(1.1)
  third = train.EventFiles(str(tmp_path), 'run', [0], 0)
  third.log(2, curve([7.0]), 0)
  third.close()
  assert _scalars(tmp_path / 'run seed=0')['train_loss'] == [(2, 7.0)]


def test_tensorboard_event_files_hold_the_same_curves(tiny_copy_run):
  """config.tensorboard: workdir/tensorboard/<run> seed=<s>/ holds every curve's points at
  every log step, equal to metrics.jsonl's (float32 in the events)."""
  _, workdir, _, _ = tiny_copy_run
  rows = [json.loads(line) for line in open(workdir / train.METRICS_FILE)]
  for seed in (0, 1):
    scalars = _scalars(workdir / train.TENSORBOARD_DIR / f'attention clip=1 T=4 seed={seed}')
    mine = [r for r in rows if r['seed'] == seed]
    for tag in ('train_loss', 'test_loss', 'test_accuracy'):
      assert [s for s, _ in scalars[tag]] == [r['step'] for r in mine]
      assert [v for _, v in scalars[tag]] == pytest.approx([r[tag] for r in mine], rel=1e-6)


def test_a_resumed_run_drops_what_it_logged_past_its_checkpoint(tmp_path):
  """trim_metrics keeps other runs' lines and this run's up to the step it resumes from, and
  drops a line cut short by a crash; a file with nothing to drop is left untouched."""
  path = tmp_path / train.METRICS_FILE
  lines = [json.dumps({'run': run, 'seed': 0, 'step': step}) + '\n'
           for run in ('a', 'b') for step in (2, 4, 6)]
  path.write_text(''.join(lines) + '{"run": "a", "se')
  train.trim_metrics(str(path), 'a', 4)
  assert path.read_text() == ''.join(lines[:2] + lines[3:])
  before = os.stat(path).st_mtime_ns
  train.trim_metrics(str(path), 'a', 4)
  assert os.stat(path).st_mtime_ns == before


@pytest.mark.slow
def test_lstm_beats_tanh_on_copy_memory_at_a_short_length():
  """Copy with delay T = 5, same budget and seeds (300 steps of Adam at 1e-2, hidden 32, batch
  32, 256 test examples): the LSTM's test loss is below the tanh RNN's (and below the memoryless
  baseline, 10 ln 8 / 25 = 0.832) on every seed. At this budget the tanh RNN sits above the
  baseline (0.835, 0.837 on seeds 0 and 1) and the LSTM has begun to recall (0.824, 0.793); an
  LSTM whose cell state does not carry stays at the baseline or above.

  The trainer alone (`train.train`, as `training.train_group` calls it): the records, the input
  profiles and the plots of a run are the tiny copy run's to check, above."""
  cfg = validated('long_range_memory', task='copy', cells=('tanh', 'lstm'), seq_lens=(5,),
                  num_steps=300, log_every=100, checkpoint_every=0, hidden_size=32,
                  learning_rate=1e-2, num_seeds=2)
  loss = {}
  for cell in cfg['cells']:
    model = long_range_memory.make_model(cfg, cell)
    final = train.train(model.init, long_range_memory.make_task(cfg, model, 5),
                        train.optimizer(cfg['optimizer'], cfg['learning_rate'],
                                        cfg['clip_norm'][0]),
                        sweep.seeds(cfg), cfg['num_steps'], cfg['log_every'])
    assert not final['diverged'].any()
    loss[cell] = final['metrics']['test_loss']
  baseline = long_range_memory.baseline_loss('copy', 5)
  for seed in (0, 1):
    assert loss['lstm'][seed] < loss['tanh'][seed]
    assert loss['lstm'][seed] < baseline


@pytest.mark.parametrize('overrides, message', [
    (dict(cells=('tanh', 'mamba')), "unknown cell 'mamba'; valid choices: tanh, relu, irnn, lstm, "
                                    'gru, lru, linear, transformer, attention'),
    (dict(task='parity'), "unknown task 'parity'; valid choices: adding, copy"),
    (dict(num_steps=1001), r'num_steps \(1001\) must be a multiple of config.log_every \(50\)'),
    (dict(seq_lens=(1, 10)), '1 is not an integer length >= 2'),
    (dict(optimizer='lbfgs'), "unknown optimizer 'lbfgs'; valid choices: adam, rmsprop, sgd"),
    (dict(hidden_size=30, num_heads=4), r'hidden_size \(30\) must be even and divisible'),
])
def test_bad_input_is_a_user_error(overrides, message):
  with pytest.raises(UserError, match=message):
    validated('long_range_memory', **overrides)


def test_transformer_is_the_attention_model():
  """'transformer' (the name across experiments) and 'attention' (its first name) are one model:
  one module, the same parameter tree."""
  import jax  # pylint: disable=g-import-not-at-top
  cfg = validated('long_range_memory', **{**TINY, 'cells': ('transformer', 'attention')})
  a, b = (jax.eval_shape(long_range_memory.make_model(cfg, name).init, jax.random.key(0))
          for name in cfg['cells'])
  assert jax.tree.structure(a) == jax.tree.structure(b) and jax.tree.leaves(a) == \
      jax.tree.leaves(b)


def test_tensorboard_without_tensorboardx_fails_in_one_line(monkeypatch):
  import importlib.util  # pylint: disable=g-import-not-at-top
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec',
                      lambda name, *a: None if name == 'tensorboardX' else find_spec(name, *a))
  with pytest.raises(UserError, match=r"needs tensorboardX: pip install '\.\[tensorboard\]'"):
    validated('long_range_memory', **TINY)
