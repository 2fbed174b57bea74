"""The associative-recall experiment: its records against a computation by hand (accuracy and
loss over the queried positions from the trained models' logits, chance 2/V, the state sizes),
the transformer's MLP setting, and bad input."""

import json
import os

import jax
import numpy as np
import pytest

from lib import experiments
from lib.data import tasks
from lib.experiments import associative_recall
from lib.runtime import rng
from lib.runtime import sweep
from lib.runtime.errors import UserError
from tests import golden
from tests.conftest import validated

# the golden run's config (tests/golden: a GRU, the LRU stack (2 layers) and the 1-layer
# transformer without MLP, T = 8, D = 2, width 4, V = 8, 2 seeds, 4 steps in chunks of 2)
TINY = golden.TINY['associative_recall'][1]


def _by_hand(cfg, group, seeds, final):
  """(accuracy, loss) per seed, recomputed from the final states train.train returned for the
  group (`finals`): the model's logits on the seed's test set (drawn here from its 'test'
  stream) taken to float64 numpy; the fraction of queried positions (target != -1) whose argmax
  is the target, and the mean of -ln softmax at the target there."""
  model_name, layers, seq_len, pairs, width = group
  model = associative_recall.make_model(cfg, model_name, layers, width)
  out = []
  for j, seed in enumerate(seeds):
    x, y = tasks.associative_recall(rng.stream_key(seed, 'test'), cfg['test_size'], seq_len,
                                    pairs, cfg['vocab_size'])
    params = jax.tree.map(lambda a, j=j: a[j], final['params'])
    logits = np.asarray(model.apply(params, jax.nn.one_hot(x, cfg['vocab_size'])), np.float64)
    y = np.asarray(y)
    rows, steps = np.nonzero(y != -1)
    assert len(rows) == cfg['test_size'] * pairs  # every key queried once
    z = logits[rows, steps]
    z = z - z.max(axis=-1, keepdims=True)
    nll = np.log(np.exp(z).sum(axis=-1)) - z[np.arange(len(z)), y[rows, steps]]
    out.append((np.mean(np.argmax(z, axis=-1) == y[rows, steps]), np.mean(nll)))
  return out


def test_records_of_a_tiny_run(tmp_path, finals):
  """experiments.run of TINY in this process. Records in grid order (gru, lru, transformer;
  seeds 0, 1); chance 2/V = 0.25 exactly; the state sizes by hand: the GRU's h, d = 4; the LRU
  stack's complex states, 2 layers x 4 units x 2 = 16; the transformer's keys and values,
  2 d T L = 2 x 4 x 8 x 1 = 64; accuracy over the queried positions equal to `_by_hand`'s from
  the trained parameters (a fraction of 16 queries: exactly) and the loss within float32
  rounding; the summary and the three plots."""
  workdir = tmp_path / 'w'
  cfg = validated('associative_recall', **TINY)
  out = experiments.run(cfg, str(workdir))
  records = [json.loads(line) for line in open(workdir / 'results.jsonl')]
  assert [(r['model'], r['num_layers'], r['seed']) for r in records] == [
      ('gru', 1, 0), ('gru', 1, 1), ('lru', 2, 0), ('lru', 2, 1), ('transformer', 1, 0),
      ('transformer', 1, 1)]
  assert [r['state_size'] for r in records] == [4, 4, 16, 16, 64, 64]
  assert len(finals) == 3
  for i, final in enumerate(finals):
    pair = records[2 * i:2 * i + 2]
    group = (pair[0]['model'], pair[0]['num_layers'], 8, 2, 4)
    for r, (accuracy, loss) in zip(pair, _by_hand(cfg, group, sweep.seeds(cfg), final)):
      assert r['status'] == 'ok' and r['chance_accuracy'] == 0.25 and r['vocab_size'] == 8
      assert r['test_accuracy'] == accuracy, r['model']
      assert r['test_loss'] == pytest.approx(loss, rel=1e-5)
      assert r['test_accuracy_curve'][-1] == r['test_accuracy']
  for name in ('accuracy_vs_width.png', 'accuracy_vs_pairs.png', 'accuracy_vs_state.png'):
    assert os.path.getsize(workdir / 'plots' / name) > 0
  assert 'chance 2/V = 0.2500' in out and 'transformer L=1' in out


def test_state_size_by_formula():
  """d (tanh, GRU), 2 d (LSTM), 2 d per layer (the LRU's complex states; the real linear cell:
  d), 2 d T L (attention), at d = 6, T = 16."""
  cfg = validated('associative_recall', lru_layers=3)
  size = lambda model, layers=1: associative_recall.state_size(cfg, model, layers, 16, 6)
  assert (size('tanh'), size('gru'), size('lstm')) == (6, 6, 12)
  assert (size('lru', 3), size('linear', 3)) == (36, 18)
  assert (size('transformer', 1), size('transformer', 2)) == (192, 384)


def test_the_transformer_without_mlp_has_attention_alone():
  """mlp=False drops each block's MLP sublayer: at width 8 (MLP 16 wide) its layer norm (2 x 8),
  mlp_in (8 x 16 + 16) and mlp_out (16 x 8 + 8), 296 parameters a block, 592 over 2 blocks;
  the default (no such key, as long_range_memory's configs) keeps them."""
  cfg = validated('associative_recall', attention_layers=(2,))
  count = lambda c: sum(leaf.size for leaf in jax.tree.leaves(jax.eval_shape(
      associative_recall.make_model(c, 'transformer', 2, 8).init, jax.random.key(0))))
  with_mlp = count({**cfg, 'mlp': True})
  assert with_mlp - count(cfg) == 2 * (2 * 8 + 8 * 16 + 16 + 16 * 8 + 8) == 592
  assert count({k: v for k, v in cfg.items() if k != 'mlp'}) == with_mlp


def test_pairs_that_do_not_fit_a_length_are_left_out_of_the_grid():
  cfg = validated('associative_recall', seq_lens=(16, 32), num_pairs=(4, 8), widths=(8,),
                  models=('gru',))
  assert [g for g, _ in associative_recall.grid(cfg)] == [
      ('gru', 1, 16, 4, 8), ('gru', 1, 32, 4, 8), ('gru', 1, 32, 8, 8)]


@pytest.mark.parametrize('overrides, message', [
    (dict(num_pairs=(40,)), r'needs 1 <= num_pairs <= vocab_size / 2 = 32 \(distinct keys\)'),
    (dict(seq_lens=(16,), num_pairs=(4, 8)), r'needs seq_len >= 4 num_pairs .* got seq_len 16 '
                                             r'for 8 pairs'),
    (dict(vocab_size=63), 'needs an even vocab_size >= 4'),
    (dict(widths=(6,), num_heads=4), r'config.widths: 6 must be even and divisible by '
                                     r'config.num_heads \(4\)'),
    (dict(models=('mamba',)), "unknown model 'mamba'"),
])
def test_bad_input_is_a_user_error(overrides, message):
  with pytest.raises(UserError, match=message):
    validated('associative_recall', **overrides)
