"""Language models on real text: recurrent cells and a causal transformer trained on Penn
Treebank (characters or words) or tiny_shakespeare, across context lengths.

Training is truncated backpropagation through time, as in every PTB recipe: the training split is
cut into `batch_size` parallel streams; step s reads segment s mod (segments per epoch) of
`context_len` tokens of each stream, and a recurrent model starts it from the state the previous
segment left (zero at the start of each epoch), the gradient cut there (`lib.runtime.train`'s
carry). The transformer reads the same segments as windows of its own.

Evaluation, per seed (`stream_loss`): the mean negative log-likelihood in nats per token of a
split read as `eval_streams` parallel streams, a recurrent model carrying its state through its
stream, the transformer sliding a window of context_len tokens by half a window (each token
predicted from at least half a window before it). Reported as perplexity e^loss (words) or
bits per character loss / ln 2 (characters). The curves log the validation loss on the first
`eval_tokens` tokens of the validation split; the records hold both splits whole. The position
loss: the mean loss at each position t = 0..context_len-1 of windows of the test split started
from a zero state, how much the model gains from a longer context. And a seeded sample of
generated text per model. Beside them in every record, what a model must beat to have learnt
anything: count-based n-grams (interpolated Kneser-Ney, lib/measure/ngram) of the training
split, their test loss at the orders of NGRAM_ORDERS (`ngram_baseline`). And the induction
diagnostic (Olsson et al. 2022, `induction`): the mean loss on a random token sequence of
context_len // 2 tokens and on its exact repeat after it; a model that copies (an induction head,
or a state that holds the sequence) predicts the repeat far better than the first copy, which
is unpredictable (ln V, the chance loss). And the recall split (lib/measure/recall): the test
loss on the positions whose preceding RECALL_ORDER tokens occurred earlier in the window,
followed there by the same token (recall) or by another (misleading), and on the rest.

Fair comparisons: with hidden_size 0 each model's width is the one whose non-embedding
parameters come nearest param_budget (lib/experiments/model_settings.lm_width), and each model
trains at every rate of lr_candidates and keeps the one of lowest validation loss
(lib/runtime/training, SELECT_BY); its records list its width, parameters, state size, rate and
every rate's validation loss.
"""

import math
import os
import sys

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lib.data import text
from lib.experiments import model_settings
from lib.measure import ngram
from lib.measure import recall
from lib.nets import language
from lib.nets.losses import cross_entropy
from lib.report import tables
from lib.runtime import compiled
from lib.runtime import config as config_lib
from lib.runtime import devices
from lib.runtime import rng
from lib.runtime import sweep
from lib.runtime import train
from lib.runtime import training
from lib.runtime.errors import UserError
from lib.runtime.results import damaged
from lib.runtime.results import json_floats
from lib.runtime.results import RESULTS_FILE
from lib.runtime.results import ResultStore
from lib.runtime.results import write_atomic

LENGTH = 'context_len'
NEUTRAL_KEYS = train.NEUTRAL_KEYS  # keys that change no result: a run may resume across them
SHRINK_KEYS = ('hidden_size', 'embed_size', 'batch_size', 'context_lens')  # shrink its programs
RECORD_FIELDS = ('model', 'dataset', LENGTH, 'seed', 'test_loss', 'valid_loss', 'status',
                 'position_loss', 'train_loss', 'valid_loss_curve', 'log_every', 'sample')

# random sequences per seed of the induction diagnostic (`induction`)
INDUCTION_SEQUENCES = 16

# the orders of the count-based n-gram baseline (lib/measure/ngram), by the corpus's level
NGRAM_ORDERS = {'char': (1, 2, 3, 4, 5, 6), 'word': (1, 2, 3)}

# the recall split's n (lib/measure/recall): the tokens before a position that must have
# occurred earlier in the window, by the corpus's level (8 characters: most of a word or two)
RECALL_ORDER = {'char': 8, 'word': 2}

SPEC = {
    'experiment': config_lib.text(),
    'dataset': config_lib.choice(text.TEXT_DATASETS, 'dataset'),
    'data_dir': config_lib.optional_text(),
    'download': config_lib.flag(),
    'models': config_lib.choices(language.LM_MODELS, 'model'),
    'context_lens': config_lib.integers(2, 'an integer context length >= 2'),
    'num_layers': config_lib.integer(1, 'a positive integer'),
    'param_budget': config_lib.integer(1, 'a positive number of parameters'),
    'embed_size': config_lib.integer(1, 'a positive integer'),
    'num_heads': config_lib.integer(1, 'a positive integer'),
    'positions': config_lib.choice(language.POSITIONS, 'positions'),
    'dropout': config_lib.real(0.0, 'a dropout rate in [0, 1)'),
    'init': config_lib.choice(language.LM_INITS, 'init'),
    'init_scale': config_lib.real(0.0, 'a scale >= 0'),
    'clip_norm': config_lib.real(0.0, 'a clipping norm >= 0 (0: no clipping)'),
    'lr_schedule': config_lib.choice(('constant', 'halving'), 'lr_schedule'),
    'lr_decay_start': config_lib.integer(0, 'a non-negative number of epochs'),
    'eval_streams': config_lib.integer(1, 'a positive integer'),
    'eval_tokens': config_lib.integer(2, 'an integer number of tokens >= 2'),
    'sample_len': config_lib.integer(0, 'a non-negative integer'),
    'lr_candidates': config_lib.reals(0.0, 'a learning rate >= 0'),
    **{k: v for k, v in train.SPEC.items() if k != 'learning_rate'},  # lr_candidates instead
    **model_settings.SPEC,
    'hidden_size': config_lib.integer(0, 'a width >= 0 (0: matched to param_budget)'),
}

# the held-out metric by which each model's learning rate is chosen from lr_candidates
# (lib.runtime.training)
SELECT_BY = 'valid_loss'


def validate(config) -> dict:
  return check(config_lib.validate(config, SPEC))


def check(cfg: dict) -> dict:
  """What validate checks beyond each key's own checker (an experiment that trains these models,
  lib/experiments/context_use, runs it on its own config)."""
  train.check_schedule(cfg)
  model_settings.linear_options(cfg)  # the linear cells' keys, checked
  if cfg['dropout'] >= 1:
    raise UserError(f'config.dropout ({cfg["dropout"]}) must be below 1')
  if language.TRANSFORMER in cfg['models'] and cfg['hidden_size'] and (
      cfg['hidden_size'] % cfg['num_heads'] or cfg['hidden_size'] % 2):
    raise UserError(f'config.hidden_size ({cfg["hidden_size"]}) must be even and divisible by '
                    f'config.num_heads ({cfg["num_heads"]}) for the transformer')
  return cfg


def streams(ids: np.ndarray, count: int) -> np.ndarray:
  """ids cut into `count` contiguous streams of equal length, (count, len(ids) // count)."""
  n = len(ids) // count
  return np.asarray(ids[:count * n], np.int32).reshape(count, n)


def segments_per_epoch(cfg: dict, corpus: dict, context_len: int) -> int:
  return (len(corpus['train']) // cfg['batch_size'] - 1) // context_len


def prepare(cfg: dict) -> dict:
  """The corpus (`lib.data.text.corpus`), loaded before the workdir is touched; a training
  split too short for one segment of every stream at every context length is refused."""
  corpus = text.corpus(cfg['dataset'], cfg['data_dir'] or None, cfg['download'])
  for length in cfg['context_lens']:
    if segments_per_epoch(cfg, corpus, length) < 1:
      raise UserError(f'the training split of {cfg["dataset"]} ({len(corpus["train"])} tokens) '
                      f'is too short for config.batch_size ({cfg["batch_size"]}) streams of one '
                      f'segment of {length} tokens')
  return corpus


def stream_loss(model: language.LanguageModel, params, ids, context_len: int, num_streams: int):
  """(sum of nats, tokens scored) over `ids` (a 1-D int array) read as `num_streams` streams:
  recurrent models carry their state through segments of context_len; the transformer slides a
  window of context_len by stride context_len // 2 and scores the tokens it has not scored."""
  return stream_sums(model, params, ids, context_len, num_streams)[:2]


def stream_sums(model: language.LanguageModel, params, ids, context_len: int, num_streams: int,
                labels=None, num_labels: int = 1):
  """`stream_loss`'s (sum of nats, tokens scored), and the same by the label of each target:
  (sums (num_labels,), counts (num_labels,)), labels[i] in 0..num_labels-1 labelling the
  prediction of ids[i] (e.g. its class of lib.measure.recall; default: all 0)."""
  cut = lambda a: a[:num_streams * (len(a) // num_streams)].reshape(num_streams, -1)
  data = cut(ids)
  tags = cut(jnp.zeros_like(ids) if labels is None else labels)
  n = data.shape[1]

  def by_label(nll, y_tags, scored):  # nll (B, L): its sum, its sums and counts by label
    tag = jax.nn.one_hot(y_tags, num_labels, dtype=jnp.float32) * scored[None, :, None]
    return (jnp.sum(jnp.where(scored, nll, 0.0)), jnp.sum(nll[..., None] * tag, axis=(0, 1)),
            jnp.sum(tag, axis=(0, 1)))
  if model.recurrent:
    count = (n - 1) // context_len
    every = jnp.ones((context_len,), bool)

    def segment(carry, k):
      x = lax.dynamic_slice_in_dim(data, k * context_len, context_len, axis=1)
      y = lax.dynamic_slice_in_dim(data, k * context_len + 1, context_len, axis=1)
      y_tags = lax.dynamic_slice_in_dim(tags, k * context_len + 1, context_len, axis=1)
      logits, carry = model.apply(params, x, carry)
      return carry, by_label(cross_entropy(logits, y), y_tags, every)
    _, (totals, sums, counts) = lax.scan(segment, model.zero_carry(num_streams),
                                         jnp.arange(count))
    return (jnp.sum(totals), count * context_len * num_streams, jnp.sum(sums, axis=0),
            jnp.sum(counts, axis=0))
  stride = context_len // 2
  count = (n - 1 - context_len) // stride + 1  # windows [k s, k s + L) with targets inside ids

  def window(k):  # the first window scores every target, the others their last `stride`
    x = lax.dynamic_slice_in_dim(data, k * stride, context_len, axis=1)
    y = lax.dynamic_slice_in_dim(data, k * stride + 1, context_len, axis=1)
    y_tags = lax.dynamic_slice_in_dim(tags, k * stride + 1, context_len, axis=1)
    scored = jnp.arange(context_len) >= jnp.where(k == 0, 0, context_len - stride)
    return by_label(cross_entropy(model.apply(params, x, ())[0], y), y_tags, scored)
  totals, sums, counts = lax.map(window, jnp.arange(count))
  return (jnp.sum(totals), (context_len + (count - 1) * stride) * num_streams,
          jnp.sum(sums, axis=0), jnp.sum(counts, axis=0))


def position_loss(model: language.LanguageModel, params, ids, context_len: int, batch: int):
  """The mean loss at each position 0..context_len-1 of the non-overlapping windows of `ids`,
  each started from a zero state (a recurrent model) or alone (the transformer)."""
  count = (len(ids) - 1) // context_len // batch * batch
  x = ids[:count * context_len].reshape(count // batch, batch, context_len)
  y = ids[1:count * context_len + 1].reshape(count // batch, batch, context_len)

  def windows(xy):
    logits = model.apply(params, xy[0], model.zero_carry(batch))[0]
    return jnp.sum(cross_entropy(logits, xy[1]), axis=0)
  return jnp.sum(lax.map(windows, (x, y)), axis=0) / count


def sample(model: language.LanguageModel, params, first_token, context_len: int, length: int,
           key):
  """`length` tokens drawn from the model (temperature 1) after `first_token`."""
  keys = jax.random.split(key, length)
  if model.recurrent:
    def step(state, k):
      carry, token = state
      logits, carry = model.apply(params, token.reshape(1, 1), carry)
      new = jax.random.categorical(k, logits[0, -1].astype(jnp.float32)).astype(jnp.int32)
      return (carry, new), new
    _, tokens = lax.scan(step, (model.zero_carry(1), jnp.asarray(first_token, jnp.int32)), keys)
    return tokens

  def step(state, k):
    window, t = state  # window: the last tokens, left-aligned while fewer than context_len
    logits = model.apply(params, window[None], ())[0][0]
    at = jnp.minimum(t, context_len - 1)
    new = jax.random.categorical(k, logits[at].astype(jnp.float32)).astype(jnp.int32)
    shifted = jnp.where(t >= context_len - 1, jnp.roll(window, -1), window)
    return (shifted.at[jnp.minimum(t + 1, context_len - 1)].set(new), t + 1), new
  start = jnp.zeros((context_len,), jnp.int32).at[0].set(first_token)
  _, tokens = lax.scan(step, (start, jnp.zeros((), jnp.int32)), keys)
  return tokens


def induction_tokens(seed, vocab_size: int, length: int,
                     count: int = INDUCTION_SEQUENCES):
  """(count, 2 length): `count` sequences of `length` tokens uniform over the vocabulary, each
  followed by itself; drawn from the seed's 'induction' stream, so the same for every model and
  group of a seed."""
  s = jax.random.randint(rng.stream_key(seed, 'induction'), (count, length), 0, vocab_size,
                         jnp.int32)
  return jnp.concatenate([s, s], axis=1)


def induction_loss(logits_of, tokens):
  """(first, second): the mean loss (nats) of the predictions of tokens 1..L-1 of the first copy
  and of tokens L+1..2L-1 (the same tokens, repeated) of the second, tokens (N, 2 L) repeated
  sequences, logits_of: tokens (N, T) -> logits (N, T, V), from an empty context. Token L (the
  repeat's first) is left out: nothing before it says the sequence starts again; and token 0 has
  no context. So both means are over the same L - 1 positions of each sequence."""
  length = tokens.shape[1] // 2
  nll = cross_entropy(logits_of(tokens[:, :-1]), tokens[:, 1:])  # column i: token i + 1
  return jnp.mean(nll[:, :length - 1]), jnp.mean(nll[:, length:])


def induction(model: language.LanguageModel, params, seed, vocab_size: int, context_len: int):
  """The induction diagnostic of a model (`induction_loss`) on `induction_tokens` of length
  context_len // 2, so that the 2 L - 1 tokens read fit the transformer's window; a recurrent
  model from a zero state."""
  tokens = induction_tokens(seed, vocab_size, context_len // 2)
  return induction_loss(
      lambda x: model.apply(params, x, model.zero_carry(x.shape[0]))[0], tokens)


def make_task(cfg: dict, model: language.LanguageModel, corpus: dict,
              context_len: int) -> train.Task:
  """TBPTT over batch_size streams of the training split (module docstring); the held-out
  metric at each log point: the validation loss on its first eval_tokens tokens."""
  batch_size = cfg['batch_size']
  per_epoch = segments_per_epoch(cfg, corpus, context_len)
  valid = np.asarray(corpus['valid'][:cfg['eval_tokens']], np.int32)
  num_streams = min(cfg['eval_streams'], max(1, (len(valid) - 1) // (context_len + 1)))

  def batch(data, seed, step):
    k = step % per_epoch
    x = lax.dynamic_slice_in_dim(data['train'], k * context_len, context_len, axis=1)
    y = lax.dynamic_slice_in_dim(data['train'], k * context_len + 1, context_len, axis=1)
    return {'x': x, 'y': y, 'first': k == 0, 'key': rng.stream_key(seed, 'dropout', step)}

  def loss(params, b, carry):
    carry = jax.tree.map(lambda c: jnp.where(b['first'], jnp.zeros_like(c), c), carry)
    key = b['key'] if cfg['dropout'] > 0 else None
    logits, carry = model.apply(params, b['x'], carry, key)
    return jnp.mean(cross_entropy(logits, b['y'])), carry

  def evaluate(params, data, seed):
    del seed
    total, count = stream_loss(model, params, data['valid'], context_len, num_streams)
    return {'valid_loss': total / count}

  return train.Task(batch=batch, loss=loss, evaluate=evaluate,
                    data={'train': streams(corpus['train'], batch_size), 'valid': valid},
                    carry=lambda seed: model.zero_carry(batch_size))


def learning_rate(cfg: dict, corpus: dict, context_len: int):
  """The learning rate: constant, or (`halving`) halved after each epoch from lr_decay_start on
  (Zaremba et al. 2014: 1.0 for 4 epochs, then x 0.5 an epoch)."""
  if cfg['lr_schedule'] == 'constant':
    return cfg['learning_rate']
  per_epoch = segments_per_epoch(cfg, corpus, context_len)
  return lambda step: cfg['learning_rate'] * 0.5 ** jnp.maximum(
      0, step // per_epoch - cfg['lr_decay_start'] + 1)


def point_key(record: dict) -> tuple:
  return (record['model'], record[LENGTH], record['seed'])


def grid(cfg: dict) -> list:
  return [((m, length), [(m, length, s) for s in sweep.seeds(cfg)])
          for m in cfg['models'] for length in cfg['context_lens']]


def setup(cfg: dict, group: tuple, corpus: dict) -> training.Setup:
  """The model, task and optimizer of one (model, context_len)."""
  name, context_len = group
  model = model_settings.language_model(name, cfg, len(corpus['vocabulary']), context_len)
  opt = train.optimizer(cfg['optimizer'], learning_rate(cfg, corpus, context_len),
                        cfg['clip_norm'])
  return training.Setup(model.init, make_task(cfg, model, corpus, context_len), opt,
                        name=f'{name} L={context_len}', folder=f'{name}-L{context_len}',
                        model=model, tokens_per_step=cfg['batch_size'] * context_len)


@compiled.cached
def evaluation(cfg: dict, model: language.LanguageModel, context_len: int, vocab_size: int):
  """f((params, seeds), test, valid) -> per seed: (test nats, valid nats) per token, the
  position loss (context_len,), a sample (sample_len,) and the induction diagnostic's two losses
  (`induction`), over the devices."""
  def measure(point, test, valid, test_classes):  # test_classes: `recall_classes`
    params, seed = point
    first, second = induction(model, params, seed, vocab_size, context_len)
    test_total, test_count, class_sums, class_counts = stream_sums(
        model, params, test, context_len, cfg['eval_streams'], test_classes, len(recall.CLASSES))
    valid_total, valid_count = stream_loss(model, params, valid, context_len,
                                           cfg['eval_streams'])
    return {'test_loss': test_total / test_count, 'valid_loss': valid_total / valid_count,
            'position_loss': position_loss(model, params, test, context_len,
                                           cfg['eval_streams']),
            'sample': sample(model, params, test[0], context_len, max(cfg['sample_len'], 1),
                             rng.stream_key(seed, 'sample')),
            'induction_first_loss': first, 'induction_second_loss': second,
            'recall_sums': class_sums, 'recall_counts': class_counts}
  return devices.map_points(measure, cfg['num_seeds'], num_shared=3,
                            batch=devices.points_batch_of(cfg))


@compiled.cached
def ngram_baseline(corpus: dict) -> dict:
  """The fields of the count-based reference in every record: interpolated Kneser-Ney n-grams
  (lib/measure/ngram) of each order of NGRAM_ORDERS fitted on the training split, their test
  loss (nats per token) and its bpc or perplexity. The same for every model and seed: computed
  once per run (cached by the corpus)."""
  orders = NGRAM_ORDERS[corpus['level']]
  losses = list(ngram.test_losses(corpus, orders).values())
  if corpus['level'] == 'word':
    metric = {'ngram_test_perplexity': [math.exp(v) for v in losses]}
  else:
    metric = {'ngram_test_bpc': [v / math.log(2) for v in losses]}
  return {'ngram_orders': list(orders), 'ngram_test_loss': losses, **metric}


def _split(corpus: dict, name: str) -> np.ndarray:
  return np.asarray(corpus[name], np.int32)


def extra_programs(cfg: dict, group: tuple, group_setup: training.Setup, corpus: dict) -> dict:
  """The evaluation of the trained models on both held-out splits whole, and their induction
  diagnostic."""
  program = evaluation(cfg, group_setup.model, group[1], len(corpus['vocabulary']))
  return {'evaluation': training.Extra(program, (_split(corpus, 'test'), _split(corpus, 'valid'),
                                                 recall_classes(corpus, group[1])))}


@compiled.cached
def recall_classes(corpus: dict, window: int) -> np.ndarray:
  """The class of each test position (lib.measure.recall) at a window of `window` tokens and
  the corpus level's RECALL_ORDER."""
  return recall.classes(corpus['test'], window, RECALL_ORDER[corpus['level']])


def programs(cfg: dict, groups, corpus: dict) -> list:
  """The training programs of each group and its evaluation."""
  return training.programs(sys.modules[__name__], cfg, groups, corpus)


PARAMS_DIR = 'params'  # in the workdir: each group's final parameters, for later measurements


def params_path(workdir: str, name: str, context_len: int) -> str:
  return os.path.join(workdir, PARAMS_DIR, f'{name}-L{context_len}.msgpack')


def save_params(path: str, params) -> None:
  """The final parameters of every seed (stacked on a leading axis), as Flax's msgpack, written
  whole or not at all."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  write_atomic(path, flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, params)))


def load_params(path: str):
  """What save_params wrote: numpy arrays, seeds stacked; a one-line UserError where the file
  holds something else (damaged)."""
  try:
    with open(path, 'rb') as f:
      params = flax.serialization.msgpack_restore(f.read())
  except OSError as e:
    raise UserError(f'cannot read {path}: {e.strerror or e}') from None
  except Exception as e:  # pylint: disable=broad-except  (msgpack's and flax's many errors)
    params = f'{type(e).__name__}: {e}'
  if not isinstance(params, dict):
    workdir = os.path.dirname(os.path.dirname(path))
    raise damaged(path, f'not the parameters that training saved ({str(params)[:100]})',
                  f'restore it from a copy, or delete the records of its model from '
                  f'{os.path.join(workdir, RESULTS_FILE)} and run that workdir again: it trains '
                  'the model again')
  return params


def records(cfg: dict, group: tuple, trained: training.Trained, corpus: dict) -> list:
  """Saves the group's final parameters (`params_path`, before the records: a record means
  they are there) and measures them; a seed whose measured losses are not finite diverged."""
  name, context_len = group
  devices.on_leader(save_params, params_path(trained.workdir, name, context_len), trained.params)
  measured = trained.run('evaluation', trained.params)
  level = corpus['level']
  out = []
  for s in trained.seeds(finite=(measured['test_loss'], measured['valid_loss'])):
    losses = {k: float(measured[k][s.index]) for k in ('test_loss', 'valid_loss')}
    per_token = (lambda v: None) if s.diverged else (lambda v: v)
    out.append({
        'model': name, 'dataset': cfg['dataset'], LENGTH: context_len, 'seed': s.seed,
        'level': level, 'status': s.status,
        'test_loss': per_token(losses['test_loss']),
        'valid_loss': per_token(losses['valid_loss']),
        **({'test_perplexity': per_token(math.exp(min(losses['test_loss'], 700))),
            'valid_perplexity': per_token(math.exp(min(losses['valid_loss'], 700)))}
           if level == 'word' else
           {'test_bpc': per_token(losses['test_loss'] / math.log(2)),
            'valid_bpc': per_token(losses['valid_loss'] / math.log(2))}),
        **ngram_baseline(corpus),
        'position_loss': None if s.diverged else json_floats(
            measured['position_loss'][s.index]),
        **induction_fields(measured, s, context_len, len(corpus['vocabulary'])),
        **recall_fields(measured, s, context_len, corpus['level']),
        'sample': '' if s.diverged or not cfg['sample_len'] else text.decode(
            measured['sample'][s.index], corpus['vocabulary'], level),
        **s.progress('valid_loss'), 'tokens_per_step': cfg['batch_size'] * context_len,
        'num_layers': cfg['num_layers'],
        **sizes(cfg, name, len(corpus['vocabulary']), context_len),
        **{k: cfg[k] for k in ('embed_size', 'optimizer', 'learning_rate')},
        **trained.selection,
        **{k: cfg[k] for k in ('lr_schedule', 'batch_size', 'num_steps', 'dropout', 'init',
                               'clip_norm')},
    })
  return out


def sizes(cfg: dict, name: str, vocab_size: int, context_len: int) -> dict:
  """Model `name`'s width (hidden_size: the config's, or the one param_budget gives), its
  non-embedding parameters and its state size (lib.nets.language), as its records list them."""
  model = model_settings.language_model(name, cfg, vocab_size, context_len)
  params = jax.eval_shape(model.init, jax.random.key(0))
  return {'hidden_size': model_settings.lm_width(name, cfg, vocab_size, context_len),
          'non_embedding_params': language.non_embedding_params(params),
          'state_size': language.state_size(name, model, params, context_len)}


def recall_fields(measured: dict, s, context_len: int, level: str) -> dict:
  """The recall split's fields of seed `s` (lib.measure.recall, on the test split at the
  model's window): the n-gram order matched, the window, each class's share of the positions
  and the mean loss (nats) on it (None where the class is empty or the seed diverged)."""
  counts = np.asarray(measured['recall_counts'][s.index], np.float64)
  sums = np.asarray(measured['recall_sums'][s.index], np.float64)
  return {'recall_order': RECALL_ORDER[level], 'recall_window': context_len,
          'recall_fraction': [float(c / counts.sum()) for c in counts],
          'recall_loss': [None if s.diverged or not c or not math.isfinite(v) else float(v / c)
                          for v, c in zip(sums, counts)]}


def induction_fields(measured: dict, s, context_len: int, vocab_size: int) -> dict:
  """The induction diagnostic's fields of seed `s`: the sequence length L, the two losses (nats;
  None where the seed diverged or a loss is not finite) and the chance loss ln V."""
  def loss(name):
    value = float(measured[name][s.index])
    return None if s.diverged or not math.isfinite(value) else value
  return {'induction_len': context_len // 2, 'induction_first_loss': loss('induction_first_loss'),
          'induction_second_loss': loss('induction_second_loss'),
          'induction_chance_loss': math.log(vocab_size)}


def run(cfg: dict, store: ResultStore, corpus: dict) -> int:
  """Trains the missing points; a group killed mid-training resumes from its last checkpoint."""
  return training.run(sys.modules[__name__], cfg, store, corpus, desc='language model')


def plot(records: list, plots_dir: str) -> list:
  from lib.report import training_plots  # matplotlib: only to draw
  return training_plots.language_models(records, plots_dir)


def summary(records: list) -> str:
  return tables.language_table(records)

