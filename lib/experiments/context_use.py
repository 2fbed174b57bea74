"""How far back each trained language model reads: Khandelwal, He, Qi & Jurafsky's (2018) context
measurements (lib/measure/context) on the language models of lib/experiments/language_model,
beside their gradient reach at initialisation and after training.

Two ways to get the models:
  train      (config.from_workdir = '') each (model, context_len) is trained here exactly as the
             language_model experiment trains it (its records, part 'training'; its final
             parameters in workdir/params), then measured
  from_workdir=DIR
             DIR is a finished language_model workdir (or a context_use workdir that trained
             its models, to measure them another way): its config replaces every model
             and training key of this one (what was trained there is what is measured here: the
             workdir's config.json says which), its final parameters (DIR/params) and its test
             losses (DIR/results.jsonl) are read, nothing is trained

The measurements, per seed, on `num_targets` positions t of the test split, each with `max_lag`
tokens of history, the same positions and the same perturbations for every model (the 'context'
stream of config.seed): every model reads its context from the start (a zero state for a
recurrent model; a transformer the last min(d, context_len) tokens, its window, at positions
0, 1, ...).
  part 'curve' (model, context_len, seed, perturbation, lag): the mean loss (nats) of the targets
             with the last `lag` tokens kept and the rest truncated, shuffled or replaced from
             the training split's unigram, its standard error, and the paired increase over the
             full-history loss with its standard error
  part 'reach' (model, context_len, seed): the full-history loss; the effective context (the
             smallest lag from which the truncated loss is at most relative_tolerance above
             it), the order-sensitive range (shuffle) and the content range (replace): the
             first lag whose increase is within 2 standard errors of 0
             (context.zero_crossing); the gradient reach ln mean_targets ||d log p(x_t) /
             d e_{t-1-k}||^2, k = 0..max_lag-1 (k = 0 the last token read; e the input
             embedding; the recurrent models through the renormalised reverse pass, so e^-300
             is a number; None where it is exactly 0: beyond a transformer's window) at
             initialisation and trained, its least-squares slope per token over fit_k_min <= k
             <= fit_k_max, the gradient half-life -2 ln 2 / slope (the tokens over which the
             gradient's norm halves) and, beside them, the decay rate that the gradient-decay
             sweep measures for one such cell at this init (random inputs;
             lib/experiments/gradient_decay.measure_point), and the test loss of the training
             beside its count-based n-gram reference (language_model.ngram_baseline, which
             the training records carry too).

Each (model, context_len) is two groups: its training, then its measurement, so a run killed
while measuring resumes from the saved parameters without training again.
"""

import dataclasses
import functools
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax import lax

from lib.experiments import gradient_decay
from lib.experiments import language_model
from lib.experiments import model_settings
from lib.measure import context
from lib.measure import gradients
from lib.measure import lyapunov
from lib.nets import cells
from lib.nets import language
from lib.nets.losses import cross_entropy
from lib.report import tables
from lib.runtime import compiled
from lib.runtime import config as config_lib
from lib.runtime import rng
from lib.runtime import sweep
from lib.runtime import train
from lib.runtime import training
from lib.runtime.errors import UserError
from lib.runtime.results import CONFIG_FILE
from lib.runtime.results import json_floats
from lib.runtime.results import read_json
from lib.runtime.results import RESULTS_FILE
from lib.runtime.results import ResultStore

LENGTH = language_model.LENGTH
NEUTRAL_KEYS = train.NEUTRAL_KEYS  # keys that change no result: a run may resume across them
SHRINK_KEYS = language_model.SHRINK_KEYS + ('batch_targets', 'max_lag')  # shrink its programs
RECORD_FIELDS = ('part', 'model', LENGTH, 'seed', 'status')
# the model and training keys: a workdir's (from_workdir) replace this config's
LM_KEYS = tuple(key for key in language_model.SPEC if key != 'experiment')
SWEEP_BATCH = 16  # examples behind the gradient-decay sweep's rate beside the reach (its default)

SPEC = {
    **language_model.SPEC,
    'from_workdir': config_lib.optional_text(),
    'max_lag': config_lib.integer(1, 'a positive integer number of tokens'),
    'lags': config_lib.integers(1, 'a positive integer number of tokens'),
    'num_targets': config_lib.integer(2, 'an integer number of targets >= 2'),
    'batch_targets': config_lib.integer(1, 'a positive integer'),
    'perturbations': config_lib.choices(context.PERTURBATIONS, 'perturbation'),
    'relative_tolerance': config_lib.real(0.0, 'a relative tolerance in (0, 1)'),
    'fit_k_min': config_lib.integer(0, 'a non-negative integer'),
    'fit_k_max': config_lib.integer(-1, 'a non-negative integer or -1 (up to max_lag - 1)'),
    'lyapunov_exponents': config_lib.integer(0, 'a non-negative integer (0: none)'),
    'lyapunov_steps': config_lib.integer(2, 'an integer number of tokens >= 2'),
}
LYAPUNOV_BURN_IN = 0.2  # the first fifth of the text's tokens settle the state, not averaged


def source_config(workdir: str) -> dict:
  """The validated config of the language_model workdir `workdir`, or a one-line UserError
  saying why it is not one this experiment can read."""
  where = f'config.from_workdir: {workdir}'
  if not os.path.isdir(workdir):
    raise UserError(f'{where} is not a folder')
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise UserError(f'{where} has no {CONFIG_FILE}: not the workdir of a run')
  source = read_json(path)
  name = source.get('experiment') if isinstance(source, dict) else None
  trained_here = name == 'context_use' and not source.get('from_workdir')
  if name != 'language_model' and not trained_here:
    raise UserError(f'{where} is a workdir of {name!r}'
                    + (' that measured another workdir' if name == 'context_use' else '')
                    + '; context_use reads a language_model workdir (experiments/'
                    'language_model.py or experiments/ptb_small.py) or a context_use workdir '
                    'that trained its models')
  if source.get('shard'):
    raise UserError(f'{where} is shard {source["shard"][0]} of {source["shard"][1]} of a run; '
                    'measure a whole run')
  if trained_here:  # its model and training keys are language_model's
    source = {**{k: source[k] for k in LM_KEYS if k in source}, 'experiment': 'language_model'}
  try:
    return language_model.validate({k: v for k, v in source.items() if k != 'points_batch'})
  except UserError as e:
    raise UserError(f"{where}'s config is not one this version reads: {e}") from None


def validate(config) -> dict:
  cfg = config_lib.validate(config, SPEC)
  if cfg['from_workdir']:
    source = source_config(cfg['from_workdir'])
    cfg.update({key: source[key] for key in LM_KEYS})
  language_model.check(cfg)
  cfg['lags'] = tuple(sorted(cfg['lags']))
  if cfg['lags'][-1] > cfg['max_lag']:
    raise UserError(f'config.lags: {cfg["lags"][-1]} is longer than config.max_lag '
                    f'({cfg["max_lag"]}), the history every target has')
  if not 0 < cfg['relative_tolerance'] < 1:
    raise UserError(f'config.relative_tolerance ({cfg["relative_tolerance"]}) must be in (0, 1)')
  if cfg['fit_k_max'] >= cfg['max_lag'] or 0 <= cfg['fit_k_max'] <= cfg['fit_k_min']:
    raise UserError(f'config.fit_k_max ({cfg["fit_k_max"]}) must be -1 or in '
                    f'(fit_k_min, max_lag) = ({cfg["fit_k_min"]}, {cfg["max_lag"]})')
  if cfg['fit_k_min'] >= cfg['max_lag'] - 1:
    raise UserError(f'config.fit_k_min ({cfg["fit_k_min"]}) leaves fewer than two lags below '
                    f'config.max_lag ({cfg["max_lag"]}) to fit')
  return cfg


# ---- the grid --------------------------------------------------------------------------------


def point_key(record: dict) -> tuple:
  key = (record['part'], record['model'], record[LENGTH], record['seed'])
  return key + (record['perturbation'], record['lag']) if record['part'] == 'curve' else key


def grid(cfg: dict) -> list:
  groups = []
  for name in cfg['models']:
    for length in cfg['context_lens']:
      seeds = sweep.seeds(cfg)
      if not cfg['from_workdir']:
        groups.append((('training', name, length), [('training', name, length, s)
                                                     for s in seeds]))
      keys = []
      for s in seeds:
        keys += [('curve', name, length, s, p, d) for p in cfg['perturbations']
                 for d in cfg['lags']]
        keys.append(('reach', name, length, s))
      groups.append((('measure', name, length), keys))
  return groups


def prepare(cfg: dict) -> dict:
  """The corpus; and, reading a workdir, every group's saved parameters and records checked
  there, before anything is written here."""
  if jax.process_count() > 1:
    raise UserError('context_use runs as one process (its measurements are on one device); '
                    'train the models with a multi-process language_model run and measure that '
                    'workdir with config.from_workdir')
  if cfg.get('shard', (0, 1))[1] > 1 and not cfg['from_workdir']:
    raise UserError('context_use trains and measures each model in one run: run it unsharded, '
                    'or shard a language_model run and measure it with config.from_workdir')
  corpus = language_model.prepare(cfg)
  context.check(len(corpus['test']), cfg['max_lag'], cfg['lags'], cfg['num_targets'])
  if cfg['from_workdir']:
    records = source_records(cfg['from_workdir'])
    for name in cfg['models']:
      for length in cfg['context_lens']:
        path = language_model.params_path(cfg['from_workdir'], name, length)
        if not os.path.exists(path):
          raise UserError(f'config.from_workdir: {path} is missing (a run that has not '
                          'finished this model, or one from before final parameters were '
                          'saved: run it again)')
        missing = [s for s in sweep.seeds(cfg) if (name, length, s) not in records]
        if missing:
          raise UserError(f'config.from_workdir: {cfg["from_workdir"]} has no record of '
                          f'{name} at context {length}, seed {missing[0]}')
  return corpus


def source_records(workdir: str) -> dict:
  """{(model, context_len, seed): record} of the trained models of a language_model workdir (or
  of a context_use workdir that trained them: its part 'training')."""
  if not os.path.exists(os.path.join(workdir, RESULTS_FILE)):
    raise UserError(f'config.from_workdir: {workdir} has no {RESULTS_FILE}: no model finished')
  if read_json(os.path.join(workdir, CONFIG_FILE)).get('experiment') == 'context_use':
    records = [r for r in ResultStore(workdir, RECORD_FIELDS).records()
               if r['part'] == 'training']
  else:
    records = ResultStore(workdir, language_model.RECORD_FIELDS).records()
  return {language_model.point_key(r): r for r in records}


# ---- the measurements ------------------------------------------------------------------------


@compiled.cached
def _targets(cfg: dict, corpus: dict):
  """(contexts (N, max_lag), targets (N,), unigram of the training split): the same for every
  model of the run."""
  test = np.asarray(corpus['test'], np.int32)
  positions = context.target_positions(len(test), cfg['max_lag'], cfg['num_targets'],
                                       rng.stream_key(cfg['seed'], 'context', 0))
  contexts, targets = context.windows(test, positions, cfg['max_lag'])
  return contexts, targets, context.unigram(corpus['train'], len(corpus['vocabulary']))


def _window(cfg: dict, name: str, length: int):
  """The tokens a model reads at most: a transformer's window (its context_len, up to max_lag);
  None for a recurrent model (its state is unbounded)."""
  return min(length, cfg['max_lag']) if name == language.TRANSFORMER else None


@compiled.cached
def at_width(cfg: dict, corpus: dict, name: str, length: int) -> dict:
  """cfg with hidden_size the width of model `name` (model_settings.lm_width: where the config
  says 0, the one its param_budget gives)."""
  width = model_settings.lm_width(name, cfg, len(corpus['vocabulary']), length)
  return {**cfg, 'hidden_size': width}


def _programs(cfg: dict, corpus: dict, name: str, length: int):
  """(model, loss, reach): the jitted programs of one (model, context_len), for batch_targets
  targets at a time (`compiled.Program`s: the memory check compiles what the run runs).

  loss(params, contexts (B, max_lag), read (int32), targets (B,)) -> (B,) nats: a recurrent
  model reads every token, its state reset to zero before the last `read` (one program for
  every truncation); a transformer reads the last `read` tokens at positions 0..read-1.
  reach(params, contexts, targets, weights (B,)) -> (max_lag,) ln of the mean over the B
  targets of ||d (weight log p) / d e_t||^2, t = 0..max_lag-1 (-inf where it is exactly 0)."""
  model = model_settings.language_model(name, cfg, len(corpus['vocabulary']), length)
  window, lag, batch = _window(cfg, name, length), cfg['max_lag'], cfg['batch_targets']

  if model.recurrent:
    def loss(params, contexts, read, targets):
      embed, step, log_prob = model.reader(params)
      zero = model.zero_carry(batch)

      def body(carry, inputs):
        t, e = inputs
        new = step(carry, e)
        return jax.tree.map(lambda n, z: jnp.where(t < lag - read, z, n), new, zero), None
      last, _ = lax.scan(body, zero, (jnp.arange(lag), embed(contexts)))
      return -log_prob(last, targets)

    def reach(params, contexts, targets, weights):
      embed, step, log_prob = model.reader(params)
      return context.log_gradient_reach(step, log_prob, model.zero_carry(batch),
                                        embed(contexts), targets, weights)
  else:
    def loss(params, contexts, read, targets):
      j = jnp.arange(window)
      x = jnp.where(j < read, contexts[:, jnp.clip(lag - read + j, 0, lag - 1)], 0)
      logits = model.apply(params, x, ())[0]
      return cross_entropy(lax.dynamic_index_in_dim(logits, read - 1, 1, False), targets)

    def reach(params, contexts, targets, weights):
      seen, unseen = context.windowed(contexts, window)

      def log_prob(delta):
        return -cross_entropy(model.apply(params, seen, (), None, delta)[0][:, -1], targets)
      inside = context.log_gradient_reach_direct(
          log_prob, (batch, window, cfg['hidden_size']), weights=weights)
      return jnp.concatenate([jnp.full((unseen,), -jnp.inf, inside.dtype), inside])

  device = [jax.devices()[0]]
  return (model, compiled.Program(jax.jit(loss, keep_unused=True), device),
          compiled.Program(jax.jit(reach, keep_unused=True), device))


def _chunks(count: int, batch: int):
  """Index arrays of `batch` rows covering 0..count-1, the last padded with row count-1, and
  each one's weights (1 for a row of its own, 0 for padding)."""
  out = []
  for start in range(0, count, batch):
    index = np.arange(start, start + batch)
    out.append((np.minimum(index, count - 1), (index < count).astype(np.float32)))
  return out


def next_loss(cfg: dict, program, params, window):
  """context.curves' next_loss: contexts (N, d) -> (N,) nats, by `program` in batches, the
  contexts left-padded to max_lag (never read: the program reads the last d, or its window)."""
  def fn(contexts, targets):
    contexts, targets = np.asarray(contexts), np.asarray(targets)
    n, d = contexts.shape
    padded = np.zeros((n, cfg['max_lag']), np.int32)
    padded[:, cfg['max_lag'] - d:] = contexts
    read = np.int32(d if window is None else min(d, window))
    out = [np.asarray(program(params, padded[i], read, targets[i]))
           for i, _ in _chunks(n, cfg['batch_targets'])]
    return np.concatenate(out)[:n]
  return fn


def reach_profile(cfg: dict, program, params, contexts, targets) -> np.ndarray:
  """ln mean over all targets of ||d log p / d e_{t-1-k}||^2 by k = 0..max_lag-1 (float64): the
  batches' log means combined in the log domain (each batch's mean is over batch_targets
  rows, its padding rows adding 0)."""
  n = len(targets)
  logs = np.stack([np.asarray(program(params, contexts[i], targets[i], w), np.float64)
                   for i, w in _chunks(n, cfg['batch_targets'])])
  top = np.max(logs, axis=0)
  safe = np.where(np.isfinite(top), top, 0.0)
  with np.errstate(divide='ignore'):
    total = safe + np.log(np.sum(np.exp(logs - safe), axis=0))
  total = np.where(np.isneginf(top), -np.inf, total)
  return (total + math.log(cfg['batch_targets'] / n))[::-1]


@compiled.cached
def _sweep_program(name: str, length: int, sweep_cfg: dict):
  """gradient_decay.measure_point of cell `name` at `length` steps on `sweep_cfg`, jitted."""
  return jax.jit(functools.partial(gradient_decay.measure_point, name, length, sweep_cfg))


def sweep_decay_rate(cfg: dict, name: str, seed: int):
  """The decay rate the gradient-decay sweep measures for one cell of this model at its init
  (hidden_size states, inputs N(0, I) of embed_size like the embedding's, the same variances
  and recurrent init, SWEEP_BATCH examples, max_lag steps; fitted over the same window), or
  None: the transformer, or the uniform init (which the sweep does not draw)."""
  if name == language.TRANSFORMER or cfg['init'] != 'default':
    return None
  sweep_cfg = {'dtype': 'float32', 'batch_size': SWEEP_BATCH, 'hidden_size': cfg['hidden_size'],
               'input_size': cfg['embed_size'], 'sigma_v2': cfg['sigma_v2'],
               'recurrent_init': cfg['recurrent_init'], 'gate_bias': cfg['gate_bias'],
               **dataclasses.asdict(model_settings.linear_options(cfg))}
  length = cfg['max_lag']
  program = _sweep_program(name, length, sweep_cfg)  # one compile per cell, for every seed
  log_h, _, finite, _ = program(cfg['sigma_w2'], cfg['sigma_b2'], np.int32(seed), length)
  if gradients.status_of(log_h, bool(finite)) != 'ok':
    return None
  return gradients.fit_decay_rate(log_h, cfg['fit_k_min'], cfg['fit_k_max'])


def spectrum_program(cfg: dict, corpus: dict, name: str, model):
  """lib/measure/lyapunov.spectrum of a recurrent model's state (model.reader's step; a linear
  cell's output y left out: lib/nets/cells.feedback_state) over embedded tokens, as a
  `compiled.Program` (built with the model's other programs, compiled once for every seed):
  (params, tokens (1, T)) -> (top k exponents, finite), k = lyapunov_exponents or the state's
  size if smaller, T = lyapunov_steps or the test split if shorter, its first fifth not
  averaged. None for a transformer or when lyapunov_exponents is 0."""
  if not model.recurrent or not cfg['lyapunov_exponents']:
    return None
  k = min(cfg['lyapunov_exponents'], language.state_size(name, model, None, 0))
  burn_in = int(LYAPUNOV_BURN_IN * min(cfg['lyapunov_steps'], len(corpus['test'])))

  def run(params, tokens):
    embed, step, _ = model.reader(params)
    feedback = lambda carry: [cells.feedback_state(name, c) for c in carry]
    state_step = lambda state, e: feedback(step(
        [cells.with_feedback(name, s) for s in state], e))
    return lyapunov.spectrum(state_step, feedback(model.zero_carry(1)), embed(tokens), k,
                             jax.random.key(0), burn_in)
  return compiled.Program(jax.jit(run), [jax.devices()[0]])


def lyapunov_spectrum(cfg: dict, corpus: dict, name: str, model, params, program=None):
  """The top lyapunov_exponents exponents (nats per token) of a recurrent model's state over
  the first lyapunov_steps tokens of the test split, by `program` (`spectrum_program`'s, built
  here where not given); None for a transformer (no state), when the key is 0, or when the
  state overflowed."""
  program = program or spectrum_program(cfg, corpus, name, model)
  if program is None:
    return None
  steps = min(cfg['lyapunov_steps'], len(corpus['test']))
  exponents, finite = program(params, jnp.asarray(corpus['test'][None, :steps]))
  return json_floats(np.asarray(exponents)) if bool(finite) else None


def _finite(*values) -> bool:
  return all(v is not None and math.isfinite(v) for v in values)


def measure(cfg: dict, corpus: dict, name: str, length: int, seed: int, params, trained: dict,
            bar) -> list:
  """The curve records and the reach record of one seed's model (`params` trained, `trained`
  its language_model record)."""
  cfg = at_width(cfg, corpus, name, length)
  model, loss_program, reach_program = _programs(cfg, corpus, name, length)
  contexts, targets, unigram = _targets(cfg, corpus)
  window = _window(cfg, name, length)
  base = {'model': name, LENGTH: length, 'seed': seed, 'dataset': cfg['dataset'],
          'max_lag': cfg['max_lag'], 'num_targets': len(targets)}
  if trained['status'] != 'ok':  # nothing to measure: the records say so
    bar.update(len(cfg['perturbations']) * len(cfg['lags']) + 2)
    return ([{'part': 'curve', **base, 'status': trained['status'], 'perturbation': p, 'lag': d,
              'loss': None, 'loss_stderr': None, 'loss_increase': None,
              'loss_increase_stderr': None}
             for p in cfg['perturbations'] for d in cfg['lags']]
            + [{'part': 'reach', **base, 'status': trained['status']}])
  result = context.curves(next_loss(cfg, loss_program, params, window), contexts, targets,
                          cfg['lags'], cfg['perturbations'],
                          rng.stream_key(cfg['seed'], 'context', 1), unigram,
                          progress=lambda: bar.update(1))
  records = []
  for p in cfg['perturbations']:
    for d in cfg['lags']:
      mean, stderr, increase, increase_stderr = result[p][d]
      records.append({'part': 'curve', **base, 'perturbation': p, 'lag': d,
                      'status': 'ok' if _finite(mean, increase) else 'nan', 'loss': mean,
                      'loss_stderr': stderr, 'loss_increase': increase,
                      'loss_increase_stderr': increase_stderr})
  full, full_stderr = result['full']
  curve = lambda p, i: [result[p][d][i] for d in cfg['lags']]
  effective = order = content = None
  if 'truncate' in result:
    effective = context.effective_context(cfg['lags'], curve('truncate', 0), full,
                                          cfg['relative_tolerance'])
  if 'shuffle' in result:
    order = context.zero_crossing(cfg['lags'], curve('shuffle', 2), curve('shuffle', 3))
  if 'replace' in result:
    content = context.zero_crossing(cfg['lags'], curve('replace', 2), curve('replace', 3))
  reach = {}
  for when, p in (('init', model.init(rng.stream_key(seed, 'init'))), ('trained', params)):
    reach[when] = reach_profile(cfg, reach_program, p, contexts, targets)
    bar.update(1)
  slope = {when: gradients.fit_decay_rate(profile[::-1], cfg['fit_k_min'], cfg['fit_k_max'])
           for when, profile in reach.items()}
  spectrum = spectrum_program(cfg, corpus, name, model)
  spectra = {when: lyapunov_spectrum(cfg, corpus, name, model, p, spectrum) for when, p in (
      ('init', model.init(rng.stream_key(seed, 'init'))), ('trained', params))}
  trained_slope = slope['trained']
  level = trained['level']
  finite = _finite(full) and not np.isnan(reach['trained']).any() and not np.isposinf(
      reach['trained']).any()
  records.append({
      'part': 'reach', **base, 'status': 'ok' if finite else 'nan', 'level': level,
      'window': window, 'test_loss': trained['test_loss'],
      **({'test_perplexity': trained['test_perplexity']} if level == 'word'
         else {'test_bpc': trained['test_bpc']}),
      # its n-gram reference and its recall split (lib/measure/recall), from its training
      **{k: v for k, v in trained.items() if k.startswith(('ngram_', 'recall_'))},
      'full_loss': full, 'full_loss_stderr': full_stderr,
      'effective_context': effective, 'order_range': order, 'content_range': content,
      'relative_tolerance': cfg['relative_tolerance'],
      'log_grad_sq_reach_init': json_floats(reach['init']),
      'log_grad_sq_reach_trained': json_floats(reach['trained']),
      'reach_slope_init': slope['init'], 'reach_slope_trained': trained_slope,
      'gradient_half_life': (-2 * math.log(2) / trained_slope
                             if trained_slope is not None and trained_slope < 0 else None),
      'sweep_decay_rate': sweep_decay_rate(cfg, name, seed),
      'lyapunov_init': spectra['init'], 'lyapunov_trained': spectra['trained'],
      'lyapunov_steps': (min(cfg['lyapunov_steps'], len(corpus['test']))
                         if spectra['trained'] is not None else None),
      'fit_k_min': cfg['fit_k_min'], 'fit_k_max': cfg['fit_k_max'],
      **{k: cfg[k] for k in ('num_layers', 'hidden_size', 'embed_size', 'init', 'num_steps')},
  })
  return records


def compute_group(cfg: dict, corpus: dict, store: ResultStore, group: tuple) -> list:
  kind, name, length = group
  if kind == 'training':
    return [{'part': 'training', **r} for r in training.train_group(
        language_model, cfg, store.workdir, (name, length), corpus)]
  source = cfg['from_workdir'] or store.workdir
  trained = source_records(source)
  params = language_model.load_params(language_model.params_path(source, name, length))
  seeds = sweep.seeds(cfg)
  records = []
  per_seed = len(cfg['perturbations']) * len(cfg['lags']) + 2
  with tqdm.tqdm(total=per_seed * len(seeds), desc=f'measure {name} L={length}', leave=False,
                 dynamic_ncols=True) as bar:
    for j, seed in enumerate(seeds):
      records += measure(cfg, corpus, name, length, seed,
                         jax.tree.map(lambda a, j=j: a[j], params),
                         trained[(name, length, seed)], bar)
  return records


def programs(cfg: dict, groups, corpus: dict) -> list:
  """The training programs of the training groups (language_model's) and the two measurement
  programs of each measured model, at the size they run."""
  from lib.runtime import dry_run  # pylint: disable=g-import-not-at-top
  out = language_model.programs(
      cfg, [(group[1:], keys) for group, keys in groups if group[0] == 'training'], corpus)
  batch, lag = cfg['batch_targets'], cfg['max_lag']
  ints = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.int32)
  for group, _ in groups:
    if group[0] != 'measure':
      continue
    model, loss_program, reach_program = _programs(at_width(cfg, corpus, *group[1:]), corpus,
                                                   *group[1:])
    params = jax.eval_shape(model.init, jax.random.key(0))
    label = f'{group[1]} L={group[2]}'
    calls = cfg['num_seeds'] * math.ceil(cfg['num_targets'] / batch)
    out.append(dry_run.Program(f'{label} context loss', loss_program,
                               (params, ints(batch, lag), ints(), ints(batch)),
                               calls * (1 + len(cfg['lags']) * len(cfg['perturbations']))))
    out.append(dry_run.Program(f'{label} gradient reach', reach_program,
                               (params, ints(batch, lag), ints(batch),
                                jax.ShapeDtypeStruct((batch,), jnp.float32)), 2 * calls))
  return out


def run(cfg: dict, store: ResultStore, corpus: dict) -> int:
  return training.run(sys.modules[__name__], cfg, store, desc='context use',
                      compute=functools.partial(compute_group, cfg, corpus, store))


def plot(records: list, plots_dir: str) -> list:
  from lib.report import context_plots  # matplotlib: only to draw
  return context_plots.context_use(records, plots_dir)


def summary(records: list) -> str:
  return tables.context_use_table(records)
