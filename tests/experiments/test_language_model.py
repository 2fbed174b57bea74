"""The language-model experiment: a tiny run learns a repeating text (records, table, plots), a
run stopped after a checkpoint resumes to the same bytes (the carried state included), and bad
input fails with one line."""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import experiments
from lib.experiments import language_model
from lib.measure import ngram
from lib.report import tables
from lib.runtime import train
from lib.runtime import training
from lib.runtime.errors import UserError
from tests.conftest import validated
from tests.conftest import LANGUAGE_TINY
from tests.conftest import records
from tests.conftest import run_in_process
from tests.conftest import SYMBOLS

TINY = LANGUAGE_TINY


@pytest.mark.slow
def test_a_tiny_run_learns_a_repeating_text(tmp_path, repeating_text):
  """200 steps of Adam on a text of period 9 over 6 symbols: both models end below 0.3 bits per
  character (a model of symbol frequencies alone: 2.5 bits; the text is determined by the last
  two symbols), their position loss falls from position 0 (the current symbol alone: at least
  the text's conditional entropy given one symbol, 6/9 ln 2 = 0.462 nats) to under 0.2 nats by
  position 7; the sample is 18 symbols of the text's alphabet; a record per
  model with its curves, the table and the three plots."""
  out = experiments.run(validated('language_model', **TINY), str(tmp_path / 'w'))
  done = records(tmp_path / 'w')
  assert [(r['model'], r['context_len'], r['seed']) for r in done] == [
      ('lstm', 8, 0), ('transformer', 8, 0)]
  for r in done:
    assert r['status'] == 'ok' and r['test_bpc'] < 0.3 and r['valid_bpc'] < 0.3, r['model']
    assert r['test_bpc'] == pytest.approx(r['test_loss'] / np.log(2))
    assert len(r['position_loss']) == 8
    assert r['position_loss'][0] > 6 / 9 * np.log(2) - 1e-3 and r['position_loss'][-1] < 0.2
    assert len(r['sample']) == 18 and set(r['sample']) <= set(SYMBOLS)
    assert len(r['train_loss']) == len(r['valid_loss_curve']) == 200 // 50
  assert 'test bpc' in out and 'sample of lstm' in out
  # the n-gram reference: the same in every record, fitted on the training split
  expected = ngram.test_losses(language_model.prepare(validated('language_model', **TINY)),
                               range(1, 7))
  for r in done:
    assert r['ngram_orders'] == [1, 2, 3, 4, 5, 6]
    assert r['ngram_test_loss'] == list(expected.values())
    assert r['ngram_test_bpc'] == pytest.approx([v / np.log(2) for v in expected.values()])
  assert done[0]['ngram_test_bpc'][2] < 0.05  # each symbol determined by the two before it
  assert 'count-based n-gram (interpolated Kneser-Ney, training split) test bpc: order 1 ' in out
  for name in ('test_metric.png', 'position_loss.png', 'training_curves.png'):
    assert os.path.getsize(tmp_path / 'w' / 'plots' / name) > 0
  # the saved final parameters are the ones measured: their test loss, recomputed, is the record's
  cfg = validated('language_model', **TINY)
  corpus = language_model.prepare(cfg)
  for r in done:
    saved = language_model.load_params(
        language_model.params_path(str(tmp_path / 'w'), r['model'], r['context_len']))
    group = (r['model'], r['context_len'])
    model = training.setups(language_model, cfg, group, corpus)[0][2].model
    params = jax.tree.map(lambda a: jnp.asarray(a[0]), saved)  # seed 0
    total, count = jax.jit(lambda p: language_model.stream_loss(
        model, p, np.asarray(corpus['test'], np.int32), r['context_len'],
        cfg['eval_streams']))(params)
    assert float(total / count) == pytest.approx(r['test_loss'], rel=1e-5), r['model']
    # and so are their induction losses (seed 0's sequences, L = 4, from a zero state)
    first, second = jax.jit(lambda p: language_model.induction(
        model, p, 0, len(corpus['vocabulary']), r['context_len']))(params)
    assert r['induction_len'] == 4
    assert r['induction_chance_loss'] == pytest.approx(np.log(len(corpus['vocabulary'])))
    assert float(first) == pytest.approx(r['induction_first_loss'], rel=1e-5), r['model']
    assert float(second) == pytest.approx(r['induction_second_loss'], rel=1e-5), r['model']
  assert 'induction (loss in nats on a random sequence, then on its repeat' in out


class _Stopped(Exception):
  pass


def test_a_run_stopped_after_a_checkpoint_resumes_to_the_same_bytes(tmp_path, repeating_text,
                                                                    monkeypatch):
  """The LSTM alone, stopped as soon as its checkpoint at step 100 is saved (the checkpoint
  holds the state carried between segments), then run again: the records equal an
  uninterrupted run's byte for byte (a lost carry, or a resume that repeats or skips a segment,
  changes them). No results.jsonl before the end. (A kill of run.py itself, end to end, is
  tests/test_run.py's.)"""
  cfg = validated('language_model', **{**TINY, 'models': ('lstm',), 'sample_len': 0})
  run_in_process(cfg, tmp_path / 'whole')
  stopped = tmp_path / 'stopped'
  save = train.Checkpoints.save

  def save_then_stop(self, step, state):
    save(self, step, state)
    assert 'carry' in state  # the state carried between segments is in the checkpoint
    raise _Stopped()
  monkeypatch.setattr(train.Checkpoints, 'save', save_then_stop)
  with pytest.raises(_Stopped):
    run_in_process(cfg, stopped)
  monkeypatch.setattr(train.Checkpoints, 'save', save)
  assert os.listdir(stopped / 'checkpoints' / 'lstm-L8') == ['100']
  assert not os.path.exists(stopped / 'results.jsonl')
  run_in_process(cfg, stopped)
  assert (stopped / 'results.jsonl').read_bytes() == (tmp_path / 'whole' /
                                                      'results.jsonl').read_bytes()


@pytest.mark.parametrize('overrides, message', [
    (dict(dataset='wikitext'), "unknown dataset 'wikitext'; valid choices: ptb_char, ptb_word, "
                               'tiny_shakespeare'),
    (dict(models=('lstm', 'mamba')), "unknown model 'mamba'; valid choices: tanh, relu, irnn, "
                                     'lstm, gru, lru, linear, transformer'),
    (dict(context_lens=(1,)), '1 is not an integer context length >= 2'),
    (dict(dropout=1.0), r'config.dropout \(1.0\) must be below 1'),
    (dict(hidden_size=30, num_heads=4), r'hidden_size \(30\) must be even and divisible'),
    (dict(init='xavier'), "unknown init 'xavier'; valid choices: default, uniform"),
])
def test_bad_input_is_a_user_error(overrides, message):
  with pytest.raises(UserError, match=message):
    validated('language_model', **overrides)


def test_a_context_longer_than_the_streams_is_refused(repeating_text):
  """4 streams of 500 tokens cannot hold a segment of 600: one line naming the sizes."""
  from lib.experiments import language_model  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError, match=r'\(2000 tokens\) is too short for config.batch_size \(4\) '
                                      'streams of one segment of 600 tokens'):
    language_model.prepare(validated('language_model', **{**TINY, 'context_lens': (600,)}))


@pytest.mark.parametrize('content', [b'', b'\xff\xfe', b'\x01'])
def test_damaged_final_parameters_are_one_line_that_names_the_file_and_what_to_do(tmp_path,
                                                                                  content):
  """Final parameters cut short, not msgpack, or msgpack of something else (a number): a
  UserError naming the file and how to get them again (context_use reads them)."""
  path = language_model.params_path(str(tmp_path), 'lstm', 8)
  os.makedirs(os.path.dirname(path))
  with open(path, 'wb') as f:
    f.write(content)
  with pytest.raises(UserError, match=re.escape(
      f'{path} is damaged: not the parameters that training saved (') + '.*' + re.escape(
          f'); restore it from a copy, or delete the records of its model from {tmp_path}/'
          'results.jsonl and run that workdir again: it trains the model again')):
    language_model.load_params(path)


def _record(model: str, **fields) -> dict:
  """A language_model record of a char-level run, as records() writes it (without the n-gram
  reference unless `fields` give it: a record from before it was measured)."""
  return {'model': model, 'dataset': 'ptb_char', 'context_len': 8, 'seed': 0, 'level': 'char',
          'status': 'ok', 'test_loss': 1.5, 'valid_loss': 1.6, 'test_bpc': 2.1, 'valid_bpc': 2.2,
          'position_loss': [2.0, 1.5], 'train_loss': [2.0, 1.7], 'valid_loss_curve': [2.1, 1.8],
          'log_every': 50, 'sample': 'ab', **fields}


def _copy_logits(length: int, vocab_size: int):
  """A hand-made copy model: at column i (predicting token i + 1) all its mass on token
  i + 1 - length where i >= length (the earlier copy), uniform before."""
  def logits_of(x):
    i = np.arange(x.shape[1])
    copied = np.take_along_axis(x, np.maximum(i + 1 - length, 0)[None].repeat(len(x), 0), 1)
    hot = 1e4 * jax.nn.one_hot(copied, vocab_size)
    return jnp.where((i >= length)[None, :, None], hot, 0.0)
  return logits_of


def test_the_induction_diagnostic_of_a_copy_model_and_of_random_logits():
  """A model that copies from `length` tokens back: first copy ln V (uniform), second copy 0
  (its first token, which nothing predicts, is not scored); a model of random logits: the two
  means against numpy's log-softmax at the scored positions, counted by hand."""
  vocab, length = 7, 5
  tokens = np.asarray(language_model.induction_tokens(3, vocab, length))
  assert tokens.shape == (language_model.INDUCTION_SEQUENCES, 2 * length)
  assert (tokens[:, :length] == tokens[:, length:]).all() and tokens.max() < vocab
  first, second = language_model.induction_loss(_copy_logits(length, vocab), tokens)
  assert float(first) == pytest.approx(np.log(vocab), rel=1e-6)
  assert float(second) == pytest.approx(0.0, abs=1e-6)
  table = np.random.default_rng(0).normal(size=(2 * length, vocab, vocab))
  logits_of = lambda x: jnp.asarray(table[np.arange(x.shape[1]), x], jnp.float32)
  first, second = language_model.induction_loss(logits_of, tokens)
  nll = lambda n, t: -(table[t - 1, tokens[n, t - 1]] - np.log(np.exp(
      table[t - 1, tokens[n, t - 1]]).sum()))[tokens[n, t]]
  rows = range(len(tokens))
  assert float(first) == pytest.approx(np.mean(
      [nll(n, t) for n in rows for t in range(1, length)]), rel=1e-5)
  assert float(second) == pytest.approx(np.mean(
      [nll(n, t) for n in rows for t in range(length + 1, 2 * length)]), rel=1e-5)


def test_the_induction_sequences_are_the_same_for_every_model_of_a_seed():
  """An LSTM and a transformer (window 6: L = 3, 5 tokens read) of seed 2 read the same
  sequences, a recurrent one from a zero state; seed 3 reads others. (Their apply replaced by
  one that records what it reads and answers uniform logits: loss ln V on both copies.)"""
  from lib.nets import language  # pylint: disable=g-import-not-at-top
  models = [language.recurrent_lm('lstm', 11, embed_size=4, hidden_size=4, num_layers=1),
            language.transformer_lm(11, width=4, num_heads=2, num_layers=1, context_len=6)]
  read, carries = [], []

  def spy(params, x, carry):
    del params
    read.append(np.asarray(x))
    carries.append(jax.tree.leaves(carry))
    return jnp.zeros(x.shape + (11,)), carry
  for model in models:
    first, second = language_model.induction(model._replace(apply=spy), None, 2, 11, 6)
    assert float(first) == float(second) == pytest.approx(np.log(11))
  assert carries[0] and not any(np.any(c) for c in carries[0]) and carries[1] == []
  assert read[0].shape == (language_model.INDUCTION_SEQUENCES, 5)
  assert (read[0] == read[1]).all()
  assert (read[0] == np.asarray(language_model.induction_tokens(2, 11, 3))[:, :-1]).all()
  assert not (read[0] == np.asarray(language_model.induction_tokens(3, 11, 3))[:, :-1]).all()


def test_records_with_and_without_the_induction_diagnostic_summarise():
  """Per model and context, the two losses (mean over the ok seeds) and their difference beside
  ln V; nothing of it for old records."""
  fields = lambda a, b: dict(induction_len=4, induction_first_loss=a, induction_second_loss=b,
                             induction_chance_loss=np.log(50))
  new = [_record('lstm', **fields(3.9, 1.0)), _record('lstm', seed=1, **fields(3.7, 2.0)),
         _record('gru', status='nan', **fields(None, None))]
  text = tables.language_table(new)
  assert ('induction (loss in nats on a random sequence, then on its repeat; mean over seeds; '
          'chance ln V = 3.912):\n  lstm         context     8 (L=4): first copy 3.800, second '
          'copy 1.500, difference +2.300') in text
  assert 'gru          context' not in text
  assert 'induction' not in tables.language_table([_record('lstm')])


def test_records_with_and_without_the_ngram_reference_summarise_and_plot(tmp_path):
  """The summary prints the n-gram line (every order, the best) where the records carry it, and
  nothing of it for records from before it; those old records plot (an old workdir's
  --plot_only), and the new ones draw the best order as a labelled line."""
  from lib.report import training_plots  # pylint: disable=g-import-not-at-top
  from lib.report.plotting import plt  # pylint: disable=g-import-not-at-top
  fields = dict(ngram_orders=[1, 2, 3], ngram_test_loss=[3.0, 2.0, 2.5],
                ngram_test_bpc=[4.3281, 2.8854, 3.6067])
  old = [_record('lstm'), _record('gru')]
  new = [_record('lstm', **fields), _record('gru', **fields)]
  assert ('count-based n-gram (interpolated Kneser-Ney, training split) test bpc: order 1 '
          '4.328, 2 2.885, 3 3.607; best 2.885 at order 2') in tables.language_table(new)
  assert 'n-gram' not in tables.language_table(old)
  saved = training_plots.language_models(old, str(tmp_path))
  assert len(saved) == 3 and all(os.path.getsize(path) > 0 for path in saved)
  sweep = training_plots._LanguageSweep(new)  # pylint: disable=protected-access
  fig = training_plots._test_metric(sweep)  # pylint: disable=protected-access
  labels = [line.get_label() for line in fig.axes[0].get_lines()]
  plt.close(fig)
  assert '2-gram (Kneser-Ney): 2.89' in labels, labels


@pytest.mark.parametrize('budget, step', [(1, 1), (50, 1), (777, 1), (5000, 1), (5000, 6),
                                          (123_456, 4)])
def test_the_matched_width_is_the_nearest_of_every_width(budget, step):
  """matched_width (a quadratic fitted on 3 widths, solved) against a search of every multiple
  of `step` up to 400: the nearest count to the budget, ties to the narrower."""
  count = lambda d: 3 * d * d + 17 * d + 9  # an LSTM-like count (integer coefficients)
  widths = range(step, 400 * step + 1, step)
  best = min(widths, key=lambda d: (abs(count(d) - budget), d))
  from lib.experiments import model_settings  # pylint: disable=g-import-not-at-top
  assert model_settings.matched_width(count, budget, step) == best


def test_the_default_models_are_matched_within_20_percent():
  """The default config's models at ptb_char's vocabulary (50 characters) and each context:
  non-embedding parameters within 20% of each other (the issue's bar; 5% measured), every
  transformer of at least 2 blocks, each width the one nearest the budget."""
  from lib.experiments import model_settings  # pylint: disable=g-import-not-at-top
  from lib.nets import language  # pylint: disable=g-import-not-at-top
  cfg = validated('language_model')
  assert cfg['hidden_size'] == 0 and cfg['num_layers'] >= 2
  for length in cfg['context_lens']:
    counts = {}
    for name in cfg['models']:
      model = model_settings.language_model(name, cfg, 50, length)
      counts[name] = language.non_embedding_params(jax.eval_shape(model.init, jax.random.key(0)))
    assert max(counts.values()) <= 1.2 * min(counts.values()), counts
    assert max(abs(c / cfg['param_budget'] - 1) for c in counts.values()) < 0.1, counts


def test_each_model_keeps_the_learning_rate_of_lowest_validation_loss(tmp_path, repeating_text):
  """Three candidate rates, 20 steps of the LSTM: the record is the training of the rate whose
  final validation loss is lowest (argmin of the record's lr_valid_loss, which lists every
  rate's), its valid_loss_curve ends at that rate's score; the rate at which it diverges
  (1e9) is listed None and never chosen; the checkpoints of every rate are gone."""
  cfg = validated('language_model', **{**TINY, 'models': ('lstm',), 'hidden_size': 8,
                                       'num_steps': 20, 'log_every': 10, 'checkpoint_every': 0,
                                       'sample_len': 0, 'lr_candidates': (1e-4, 3e-2, 1e9)})
  run_in_process(cfg, tmp_path / 'w')
  (r,) = records(tmp_path / 'w')
  assert r['lr_candidates'] == [1e-4, 3e-2, 1e9]
  scores = r['lr_valid_loss']
  assert scores[2] > 1e3 > scores[0] > scores[1]  # 1e9 jumps far away; 1e-4 barely moves
  assert r['learning_rate'] == r['lr_candidates'][int(np.argmin(scores))] == 3e-2
  assert r['valid_loss_curve'][-1] == pytest.approx(scores[1], rel=1e-6)
  assert not os.path.exists(tmp_path / 'w' / 'checkpoints') or not os.listdir(
      tmp_path / 'w' / 'checkpoints')
  assert 'learning rate: of 0.0001, 0.03, 1e+09' in tables.language_table([r])


def test_a_rate_is_scored_by_its_mean_over_seeds_and_a_divergence_loses():
  """training.score: the mean of the seeds' final metric; inf where a seed diverged or the
  metric is not finite, so that such a rate is never chosen over one that trained."""
  final = lambda values, diverged: {'metrics': {'valid_loss': np.asarray(values)},
                                    'diverged': np.asarray(diverged)}
  assert training.score(final([1.0, 2.0], [False, False]), 'valid_loss') == 1.5
  assert training.score(final([1.0, 2.0], [False, True]), 'valid_loss') == np.inf
  assert training.score(final([1.0, np.nan], [False, False]), 'valid_loss') == np.inf
  assert training.score(final([1.0, np.inf], [False, False]), 'valid_loss') == np.inf


def test_the_recall_split_summarises_each_class_and_its_share_of_the_gap():
  """Per context: the classes' shares of the positions; per model, its loss per class (mean
  over the ok seeds) and, for every model but the best, each class's share of its gap to the
  best (lib.measure.recall.gap_shares): lstm worse than the transformer by 1 nat on recall
  (20%), 0.5 on misleading (10%), 0.1 on the rest (70%): a gap of 0.32, shares 62.5% 15.6% 21.9%.
  Nothing of it for old records."""
  fields = lambda losses: dict(recall_order=8, recall_window=8,
                               recall_fraction=[0.2, 0.1, 0.7], recall_loss=losses)
  rs = [_record('lstm', test_loss=1.5, **fields([2.0, 3.0, 1.2])),
        _record('lstm', seed=1, test_loss=1.5, **fields([2.2, 3.0, 1.2])),
        _record('transformer', test_loss=1.2, **fields([1.1, 2.5, 1.1]))]
  text = tables.language_table(rs)
  assert '  context 8: recall 20.0%, misleading 10.0%, rest 70.0% of positions; best: ' \
         'transformer' in text
  assert '  lstm         loss 2.100 3.000 1.200; gap shares 63% 16% 22%' in text
  assert '  transformer  loss 1.100 2.500 1.100\n' in text + '\n'
  assert 'recall split' not in tables.language_table([_record('lstm')])
