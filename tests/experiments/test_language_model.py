"""The language-model experiment: a tiny run learns a repeating text (records, table, plots), a
run killed with kill -9 after a checkpoint resumes to the same bytes (the carried state
included), and bad input fails with one line."""

import json
import os
import runpy
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import experiments
from lib.data import text
from lib.experiments import language_model
from lib.runtime.errors import UserError
from tests.conftest import ROOT

CONFIG = os.path.join(ROOT, 'experiments', 'language_model.py')
SYMBOLS = list('\n abcd')
PATTERN = [2, 3, 1, 4, 4, 5, 2, 1, 0]  # 'ab cc da\n' repeated: period 9, 6 symbols
TINY = dict(dataset='ptb_char', models=('lstm', 'transformer'), context_lens=(8,),
            hidden_size=16, embed_size=8, num_heads=2, batch_size=4, num_steps=200,
            log_every=50, checkpoint_every=100, learning_rate=1e-2, eval_tokens=200,
            eval_streams=2, sample_len=18, num_seeds=1)


def config(**overrides):
  cfg = runpy.run_path(CONFIG)['get_config']()
  cfg.update(overrides)
  return cfg


def repeating_corpus(name, data_dir=None, download=False):
  """PATTERN repeated (train 2000 tokens, valid and test 400) as ptb_char, in text.corpus's
  place."""
  del name, data_dir, download
  tile = lambda n: np.resize(np.asarray(PATTERN, np.int32), n)
  return {'train': tile(2000), 'valid': tile(400), 'test': tile(400), 'vocabulary': SYMBOLS,
          'level': 'char'}


@pytest.fixture
def repeating_text(monkeypatch):
  monkeypatch.setattr(text, 'corpus', repeating_corpus)


def _records(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, 'results.jsonl'))]


def test_a_tiny_run_learns_a_repeating_text(tmp_path, repeating_text):
  """200 steps of Adam on a text of period 9 over 6 symbols: both models end below 0.3 bits per
  character (a model of symbol frequencies alone: 2.5 bits; the text is determined by the last
  two symbols), their position loss falls from position 0 (the current symbol alone: at least
  the text's conditional entropy given one symbol, 6/9 ln 2 = 0.462 nats) to under 0.2 nats by
  position 7; the sample is 18 symbols of the text's alphabet; a record per
  model with its curves, the table and the three plots."""
  out = experiments.run(experiments.validate(config(**TINY)), str(tmp_path / 'w'))
  records = _records(tmp_path / 'w')
  assert [(r['model'], r['context_len'], r['seed']) for r in records] == [
      ('lstm', 8, 0), ('transformer', 8, 0)]
  for r in records:
    assert r['status'] == 'ok' and r['test_bpc'] < 0.3 and r['valid_bpc'] < 0.3, r['model']
    assert r['test_bpc'] == pytest.approx(r['test_loss'] / np.log(2))
    assert len(r['position_loss']) == 8
    assert r['position_loss'][0] > 6 / 9 * np.log(2) - 1e-3 and r['position_loss'][-1] < 0.2
    assert len(r['sample']) == 18 and set(r['sample']) <= set(SYMBOLS)
    assert len(r['train_loss']) == len(r['valid_loss_curve']) == 200 // 50
  assert 'test bpc' in out and 'sample of lstm' in out
  for name in ('test_metric.png', 'position_loss.png', 'training_curves.png'):
    assert os.path.getsize(tmp_path / 'w' / 'plots' / name) > 0
  # the saved final parameters are the ones measured: their test loss, recomputed, is the record's
  cfg = experiments.validate(config(**TINY))
  corpus = language_model.prepare(cfg)
  for r in records:
    saved = language_model.load_params(
        language_model.params_path(str(tmp_path / 'w'), r['model'], r['context_len']))
    model = language_model._setup(cfg, corpus, (r['model'], r['context_len']))[0]  # pylint: disable=protected-access
    params = jax.tree.map(lambda a: jnp.asarray(a[0]), saved)  # seed 0
    total, count = jax.jit(lambda p: language_model.stream_loss(
        model, p, np.asarray(corpus['test'], np.int32), r['context_len'],
        cfg['eval_streams']))(params)
    assert float(total / count) == pytest.approx(r['test_loss'], rel=1e-5), r['model']


def test_killed_run_resumes_to_the_same_bytes(tmp_path, repeating_text):
  """The LSTM alone, end to end in run.py (on the repeating text, tests/experiments/
  repeating_text_run.py): killed with kill -9 once its checkpoint at step 100 is saved (the
  checkpoint holds the state carried between segments), then run again (in this process): the
  records equal an uninterrupted run's byte for byte (a lost carry, or a resume that repeats or
  skips a segment, changes them). No results.jsonl before the end."""
  overrides = {**TINY, 'models': ('lstm',), 'sample_len': 0}
  cfg = experiments.validate(config(**overrides))
  experiments.run(cfg, str(tmp_path / 'whole'))
  killed = tmp_path / 'killed'
  flags = [f'--config.{k}={",".join(map(str, v)) if isinstance(v, tuple) else v}'
           for k, v in overrides.items()]
  victim = subprocess.Popen(
      [sys.executable, os.path.join(ROOT, 'tests', 'experiments', 'repeating_text_run.py'), '100',
       f'--config={CONFIG}', f'--workdir={killed}', '--cpu_devices=1', *flags],
      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  for line in victim.stderr:  # the bar, then the stall's line
    if 'stalled after the checkpoint at 100' in line:
      break
  victim.kill()
  victim.wait(timeout=60)
  assert victim.returncode == -signal.SIGKILL
  assert os.listdir(killed / 'checkpoints' / 'lstm-L8') == ['100']
  assert not os.path.exists(killed / 'results.jsonl')
  experiments.run(cfg, str(killed))
  assert (killed / 'results.jsonl').read_bytes() == (tmp_path / 'whole' /
                                                     'results.jsonl').read_bytes()


@pytest.mark.parametrize('overrides, message', [
    (dict(dataset='wikitext'), "unknown dataset 'wikitext'; valid choices: ptb_char, ptb_word, "
                               'tiny_shakespeare'),
    (dict(models=('lstm', 'mamba')), "unknown model 'mamba'; valid choices: tanh, relu, lstm, "
                                     'gru, lru, linear, transformer'),
    (dict(context_lens=(1,)), '1 is not an integer context length >= 2'),
    (dict(dropout=1.0), r'config.dropout \(1.0\) must be below 1'),
    (dict(hidden_size=30, num_heads=4), r'hidden_size \(30\) must be even and divisible'),
    (dict(init='xavier'), "unknown init 'xavier'; valid choices: default, uniform"),
])
def test_bad_input_is_a_user_error(overrides, message):
  with pytest.raises(UserError, match=message):
    experiments.validate(config(**overrides))


def test_a_context_longer_than_the_streams_is_refused(repeating_text):
  """4 streams of 500 tokens cannot hold a segment of 600: one line naming the sizes."""
  from lib.experiments import language_model  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError, match=r'\(2000 tokens\) is too short for config.batch_size \(4\) '
                                      'streams of one segment of 600 tokens'):
    language_model.prepare(experiments.validate(config(**{**TINY, 'context_lens': (600,)})))
