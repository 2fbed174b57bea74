"""The context-use experiment on a repeating text (conftest's: period 9, each symbol determined
by the two before it): a language_model workdir measured from its
saved parameters, the same numbers when context_use trains the model itself, a resumed
measurement that does not train again, and bad workdirs refused in one line."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import experiments
from lib.data import text
from lib.experiments import context_use
from lib.experiments import language_model
from lib.measure import context
from lib.report import tables
from lib.runtime import rng
from lib.runtime import training
from lib.runtime.errors import UserError
from tests.conftest import LANGUAGE_TINY as TRAINING
from tests.conftest import records
from tests.conftest import repeating_corpus
from tests.conftest import validated

# 60 targets in batches of 32: the second batch padded (its padding must add nothing)
MEASURING = dict(max_lag=16, lags=(1, 2, 3, 4, 8, 12, 16), num_targets=60, batch_targets=32)
WINDOW = 8


@pytest.fixture(scope='module')
def lm_workdir(tmp_path_factory):
  """A finished language_model workdir: an LSTM and a window-8 transformer, 200 steps each."""
  workdir = str(tmp_path_factory.mktemp('lm') / 'w')
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(text, 'corpus', repeating_corpus)
    experiments.run(validated('language_model', **TRAINING), workdir)
  return workdir


@pytest.fixture(scope='module')
def measured(lm_workdir, tmp_path_factory):
  """context_use of lm_workdir: (its workdir, its summary)."""
  workdir = str(tmp_path_factory.mktemp('cu') / 'w')
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(text, 'corpus', repeating_corpus)
    out = experiments.run(validated('context_use', from_workdir=lm_workdir, **MEASURING),
                          workdir)
  return workdir, out


def _direct_losses(model, params, contexts, targets, d):
  """-log p(target) of each context's last d tokens (the transformer: its last window of them)
  by the model's own apply from a zero state: not the measurement's programs."""
  seen = contexts[:, -min(d, WINDOW):] if not model.recurrent else contexts[:, -d:]
  logits = jax.jit(model.apply)(params, jnp.asarray(seen), model.zero_carry(len(seen)))[0][:, -1]
  return -np.asarray(jax.nn.log_softmax(logits)[np.arange(len(targets)), targets], np.float64)


def _direct_reach(model, params, contexts, targets):
  """ln mean over every target of ||d log p / d e_{t-1-k}||^2 by k, by one plain jax.grad with
  respect to the embedded inputs over all targets at once (no batches, no renormalisation:
  nothing underflows at 16 tokens)."""
  if model.recurrent:
    embed, step, log_prob = model.reader(params)

    def total(xs):
      carry = model.zero_carry(len(targets))
      for x in xs:
        carry = step(carry, x)
      return jnp.sum(log_prob(carry, jnp.asarray(targets)))
    g = jax.grad(total)(embed(jnp.asarray(contexts)))  # (T, N, E)
    by_t = jnp.log(jnp.mean(jnp.sum(g ** 2, axis=-1), axis=1))
  else:
    seen = jnp.asarray(contexts[:, -WINDOW:])

    def total(delta):
      logits = model.apply(params, seen, (), None, delta)[0][:, -1]
      return jnp.sum(jax.nn.log_softmax(logits)[np.arange(len(targets)), targets])
    g = jax.grad(total)(jnp.zeros(seen.shape + (TRAINING['hidden_size'],)))
    by_t = jnp.log(jnp.mean(jnp.sum(g ** 2, axis=-1), axis=0))
  return by_t[::-1]


@pytest.mark.slow
def test_a_workdir_is_measured_from_its_saved_parameters(lm_workdir, measured, repeating_text):
  """From a language_model workdir: records in grid order; each truncated loss and the full
  history's equal the mean of the model's own apply on the last d tokens (1e-5); a window-8
  transformer's loss changes by exactly 0 when anything beyond its window is perturbed or cut,
  and its gradient reach is exactly 0 (None) there and finite inside; the LSTM's reach is finite
  at every lag, and both equal a plain jax.grad over all targets at once (1e-4: the
  measurement's batches, padding and renormalised reverse pass checked); one token is not
  enough (its loss is at least the empirical conditional entropy of the targets given one
  symbol) and the effective context is at least 2; the table, the test metric of the training,
  the plots."""
  workdir, out = measured
  done = records(workdir)
  lags, perturbations = MEASURING['lags'], context.PERTURBATIONS
  assert [context_use.point_key(r) for r in done] == [
      k for name in ('lstm', 'transformer') for k in
      [('curve', name, 8, 0, p, d) for p in perturbations for d in lags]
      + [('reach', name, 8, 0)]]
  cfg = validated('context_use', from_workdir=lm_workdir, **MEASURING)
  corpus = repeating_corpus('ptb_char')
  test = np.asarray(corpus['test'], np.int32)
  positions = context.target_positions(len(test), 16, 60, rng.stream_key(0, 'context', 0))
  contexts, targets = context.windows(test, positions, 16)
  # the empirical lower bound of the loss given one symbol: sum over the previous symbol s of
  # n_s H(successor | s) over the targets (q(a) + q(b) <= 1 for the two successors a, b)
  previous = contexts[:, -1]
  bound = 0.0
  for s in np.unique(previous):
    counts = np.bincount(targets[previous == s])
    p = counts[counts > 0] / counts.sum()
    bound += counts.sum() * -(p * np.log(p)).sum()
  bound /= len(targets)
  assert bound > 0.3  # a third of the pattern's symbols have two successors
  lm_records = {r['model']: r for r in records(lm_workdir)}
  for name in ('lstm', 'transformer'):
    rows = {(r['perturbation'], r['lag']): r for r in done
            if r['model'] == name and r['part'] == 'curve'}
    reach = next(r for r in done if r['model'] == name and r['part'] == 'reach')
    assert reach['status'] == 'ok' and all(r['status'] == 'ok' for r in rows.values())
    model = training.setups(language_model, cfg, (name, 8), corpus)[0][2].model
    params = jax.tree.map(lambda a: jnp.asarray(a[0]), language_model.load_params(
        language_model.params_path(lm_workdir, name, 8)))
    for d in (3, 16):
      direct = _direct_losses(model, params, contexts, targets, d)
      measured_loss = reach['full_loss'] if d == 16 else rows[('truncate', d)]['loss']
      assert measured_loss == pytest.approx(direct.mean(), rel=1e-5), (name, d)
    assert rows[('truncate', 1)]['loss'] >= bound - 1e-6
    assert reach['effective_context'] >= 2
    assert reach['test_bpc'] == lm_records[name]['test_bpc']
    for field in ('ngram_orders', 'ngram_test_loss', 'ngram_test_bpc'):  # the reference, copied
      assert reach[field] == lm_records[name][field]
    profile = reach['log_grad_sq_reach_trained']
    assert len(profile) == 16 and len(reach['log_grad_sq_reach_init']) == 16
    direct = jax.jit(_direct_reach, static_argnums=0)(model, params, contexts, targets)
    seen = len(direct)
    np.testing.assert_allclose(np.asarray(profile[:seen], np.float64), np.asarray(direct),
                               rtol=1e-4, atol=1e-4, err_msg=name)
    if name == 'transformer':
      assert reach['window'] == WINDOW
      for d in lags:
        if d >= WINDOW:
          assert rows[('truncate', d)]['loss'] == reach['full_loss']
          for p in ('shuffle', 'replace'):
            assert rows[(p, d)]['loss_increase'] == 0.0 == rows[(p, d)]['loss_increase_stderr']
      for when in ('init', 'trained'):
        k_profile = reach[f'log_grad_sq_reach_{when}']
        assert all(v is None for v in k_profile[WINDOW:]), when
        assert all(v is not None and np.isfinite(v) for v in k_profile[:WINDOW]), when
    else:
      assert reach['window'] is None
      assert all(v is not None and np.isfinite(v) for v in profile)
      assert reach['sweep_decay_rate'] is not None and reach['sweep_decay_rate'] < 0
  assert 'unbounded' in out and 'transformer' in out
  assert 'count-based n-gram (interpolated Kneser-Ney, training split) test bpc: order 1 ' in out
  for name in ('context_curves.png', 'gradient_reach.png'):
    assert os.path.getsize(os.path.join(workdir, 'plots', name)) > 0


@pytest.mark.slow
def test_training_here_measures_the_same_and_resumes_without_training(lm_workdir, measured,
                                                                      tmp_path, repeating_text):
  """context_use training the LSTM itself (the same keys) writes the language_model records
  (part 'training') and measures exactly what it measured from the workdir; a run that lost
  its measurement records (killed while measuring) measures again from the saved parameters
  without training (their file untouched) and writes the same records; measured from this
  workdir (config.from_workdir), the same records again."""
  workdir = str(tmp_path / 'w')
  cfg = validated('context_use', **{**TRAINING, 'models': ('lstm',)}, **MEASURING)
  experiments.run(cfg, workdir)
  trained = records(workdir, 'training')
  assert [r['model'] for r in trained] == ['lstm']
  assert trained[0]['test_loss'] == records(lm_workdir)[0]['test_loss']
  assert trained[0]['ngram_test_loss'] == records(lm_workdir)[0]['ngram_test_loss']
  measured_here = [r for r in records(workdir) if r['part'] != 'training']
  from_workdir = [r for r in records(measured[0]) if r['model'] == 'lstm']
  assert measured_here == from_workdir
  params = language_model.params_path(workdir, 'lstm', 8)
  stamp = os.stat(params).st_mtime_ns
  lines = open(os.path.join(workdir, 'results.jsonl')).readlines()
  with open(os.path.join(workdir, 'results.jsonl'), 'w') as f:
    f.writelines(lines[:1])  # the training record alone
  experiments.run(cfg, workdir)
  assert os.stat(params).st_mtime_ns == stamp
  assert [r for r in records(workdir) if r['part'] != 'training'] == from_workdir
  # and a context_use workdir that trained its models is one to measure from, too
  again = str(tmp_path / 'again')
  experiments.run(validated('context_use', from_workdir=workdir, **MEASURING), again)
  assert records(again) == from_workdir


def _copy_without_params(lm_workdir, tmp_path):
  copy = tmp_path / 'no_params'
  shutil.copytree(lm_workdir, copy, ignore=shutil.ignore_patterns('params'))
  return str(copy)


@pytest.mark.slow
@pytest.mark.parametrize('case, message', [
    ('missing', r'config.from_workdir: .*nowhere is not a folder'),
    ('empty', r'config.from_workdir: .*empty has no config.json: not the workdir of a run'),
    ('other', r"is a workdir of 'gradient_decay'; context_use reads a language_model workdir"),
    ('measured', r"is a workdir of 'context_use' that measured another workdir; context_use "
                 'reads'),
    ('old', r"config is not one this version reads: config is missing key 'r_min'"),
    ('no_params', r'no_params/params/lstm-L8.msgpack is missing \(a run that has not finished'),
])
def test_a_workdir_it_cannot_read_fails_with_one_line(case, message, lm_workdir, tmp_path,
                                                      repeating_text):
  if case == 'missing':
    source = str(tmp_path / 'nowhere')
  elif case == 'empty':
    source = str(tmp_path / 'empty')
    os.makedirs(source)
  elif case == 'other':
    source = str(tmp_path / 'other')
    os.makedirs(source)
    json.dump({'experiment': 'gradient_decay', 'cells': ['tanh']},
              open(os.path.join(source, 'config.json'), 'w'))
  elif case == 'measured':
    source = str(tmp_path / 'measured')
    os.makedirs(source)
    json.dump({'experiment': 'context_use', 'from_workdir': lm_workdir},
              open(os.path.join(source, 'config.json'), 'w'))
  elif case == 'old':  # a language_model workdir from before the linear cells' keys
    source = _copy_without_params(lm_workdir, tmp_path)
    old = json.load(open(os.path.join(source, 'config.json')))
    del old['r_min']
    json.dump(old, open(os.path.join(source, 'config.json'), 'w'))
  else:
    source = _copy_without_params(lm_workdir, tmp_path)
  with pytest.raises(UserError, match=message) as error:
    context_use.prepare(validated('context_use', from_workdir=source, **MEASURING))
  assert '\n' not in str(error.value)


@pytest.mark.parametrize('overrides, message', [
    (dict(lags=(1, 300)), r'config.lags: 300 is longer than config.max_lag \(256\)'),
    (dict(relative_tolerance=0.0), r'config.relative_tolerance \(0.0\) must be in \(0, 1\)'),
    (dict(perturbations=('drop',)), "unknown perturbation 'drop'; valid choices: truncate, "
                                    'shuffle, replace'),
    (dict(fit_k_max=256), r'config.fit_k_max \(256\) must be -1 or in \(fit_k_min, max_lag\)'),
])
def test_bad_measurement_keys_fail_with_one_line(overrides, message):
  with pytest.raises(UserError, match=message):
    validated('context_use', **overrides)


def test_a_history_longer_than_the_test_split_is_refused(repeating_text):
  with pytest.raises(UserError, match=r'the stream \(400 tokens\) is not longer than max_lag'):
    context_use.prepare(validated('context_use', **{**TRAINING, **MEASURING,
                                                    'max_lag': 400, 'lags': (1,)}))



def test_the_summary_prints_the_ngram_reference_where_the_records_carry_it():
  """The reach records of a run carry the n-gram reference of the training and the summary
  prints it under the table; records from before it summarise without it."""
  reach = {'part': 'reach', 'model': 'lstm', 'context_len': 8, 'seed': 0, 'status': 'ok',
           'dataset': 'ptb_word', 'level': 'word', 'num_targets': 60, 'max_lag': 16,
           'relative_tolerance': 0.01, 'test_loss': 5.0, 'test_perplexity': 148.4,
           'full_loss': 5.1, 'effective_context': 4, 'order_range': 8, 'content_range': None,
           'gradient_half_life': 3.0, 'window': None}
  reference = dict(ngram_orders=[1, 2, 3], ngram_test_loss=[6.46, 5.23, 5.02],
                   ngram_test_perplexity=[639.3, 186.8, 150.9])
  line = ('count-based n-gram (interpolated Kneser-Ney, training split) test perplexity: '
          'order 1 639.3, 2 186.8, 3 150.9; best 150.9 at order 3')
  assert tables.context_use_table([{**reach, **reference}]).splitlines()[-1] == line
  assert 'n-gram' not in tables.context_use_table([reach])


def test_the_spectrum_of_an_lru_stack_is_its_rings_whatever_the_text():
  """A 2-layer LRU language model's state (each layer's Re h, Im h; its output y dropped) is
  linear in itself, its Jacobian block lower-triangular: the exponents are ln |lambda| of every
  layer's ring, each twice, whatever the tokens (within 0.03 over 400 averaged tokens; measured
  0.01); all 12 of them: the feedback state's size."""
  from lib.experiments import model_settings
  from lib.nets import language
  from lib.nets import lru
  cfg = validated('context_use', models=('lru',), hidden_size=3, num_layers=2, embed_size=4,
                  lyapunov_exponents=12, lyapunov_steps=500)
  corpus = {'test': np.random.default_rng(0).integers(0, 7, 600), 'vocabulary': list('abcdefg')}
  model = model_settings.language_model('lru', cfg, 7, 8)
  params = model.init(jax.random.key(3))
  exponents = context_use.lyapunov_spectrum(cfg, corpus, 'lru', model, params)
  moduli = np.concatenate([np.log(np.abs(np.asarray(lru.lambdas(p['params']['recurrence']))))
                           for p in params['cells']])
  assert language.state_size('lru', model, params, 8) == 12
  np.testing.assert_allclose(exponents, np.sort(np.repeat(moduli, 2))[::-1], atol=0.03)
