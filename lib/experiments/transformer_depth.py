"""Transformers through depth, at initialisation: per-block gradients and token similarity over
variants x depths x seeds, one forward and one backward pass per network.

Every (variant, depth) is one jitted program over the seeds. A network (lib/nets/transformer)
reads one sequence of seq_len tokens X_0 (N(0, 1) entries, or text embedded by a N(0, 1) table),
and its loss is l = <R, Y> with R ~ N(0, 1/(T d)) and Y the network's output (so ||dl/dY||^2 is
about 1). Records, one per (variant, depth, seed), with l = 0..L indexing X_l (X_0 the input)
and b = 1..L the blocks:
  log_grad_sq[l]            ln ||dl/dX_l||^2, through lib.measure.gradients' renormalised reverse
                            pass (log domain: no underflow however deep)
  log_weight_grad_sq[b-1]   ln ||dl/dW2_b||_F^2, the MLP's second matrix (None without an MLP)
  log_qk_grad_sq[b-1]       ln (||dl/dW_Q,b||_F^2 + ||dl/dW_K,b||_F^2)
  rank_residual[l]          ||X_l - 1 xbar_l^T||_F / ||X_l||_F (lib.measure.tokens)
  rank_residual_l1_linf[l]  the same in Dong et al.'s sqrt(||.||_1 ||.||_inf)
  token_cosine[l]           mean cosine between distinct tokens of X_l
The summary and plots fit the last block's ln ||dl/dW2_L||^2 against ln L: Xiong et al. (2020,
Theorem 1) bound the norm by O(d sqrt(ln d)) for post-LN and O(d sqrt(ln d / L)) for pre-LN,
slopes 0 and -1 for the square (`lib.measure.theory.w2_depth_exponent`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lib.measure import gradients
from lib.measure import theory
from lib.measure import tokens
from lib.nets import cells
from lib.nets import transformer
from lib.report import tables
from lib.runtime import compiled
from lib.runtime import config as config_lib
from lib.runtime import devices
from lib.runtime import sweep
from lib.runtime.errors import UserError
from lib.runtime.results import ResultStore
from lib.runtime.results import json_floats

INPUTS = ('gaussian', 'ptb_char', 'ptb_word')
COLLAPSE_THRESHOLD = 1e-3  # the summary's rank residual that counts as collapsed
SHRINK_KEYS = ('width', 'seq_len', 'depths')  # what makes its programs smaller
RECORD_FIELDS = ('variant', 'norm', 'skip', 'mlp', 'residual_scale', 'depth', 'width', 'seed',
                 'status', 'log_grad_sq', 'log_weight_grad_sq', 'rank_residual',
                 'rank_residual_l1_linf', 'token_cosine', 'log_qk_grad_sq')
STATS = ('rank_residual', 'rank_residual_l1_linf', 'token_cosine')

SPEC = {
    'experiment': config_lib.text(),
    'variants': config_lib.parsed(transformer.parse_variant, 'nothing to sweep; e.g. pre_ln'),
    'depths': config_lib.integers(1, 'a positive integer number of blocks'),
    'width': config_lib.integer(1, 'a positive integer width'),
    'num_heads': config_lib.integer(1, 'a positive integer number of heads'),
    'seq_len': config_lib.integer(2, 'an integer number of tokens >= 2'),
    'causal': config_lib.flag(),
    'activation': config_lib.choice(tuple(transformer.ACTIVATIONS), 'activation'),
    'init': config_lib.choice(transformer.INITS, 'init'),
    'sigma_w2': config_lib.real(0.0, 'a variance scale >= 0'),
    'inputs': config_lib.choice(INPUTS, 'inputs'),
    'data_dir': config_lib.optional_text(),
    'num_seeds': config_lib.integer(1, 'a positive integer number of seeds'),
    'seed': config_lib.integer(0, 'a non-negative integer below 2**31', maximum=2**31 - 1),
    'dtype': config_lib.choice(('float32', 'float64'), 'dtype'),
}


def validate(config) -> dict:
  cfg = config_lib.validate(config, SPEC)
  sweep.check_seed_range(cfg)
  transformer.check_sizes(cfg['width'], cfg['num_heads'], cfg['seq_len'])
  sweep.check_float_range(cfg, ('sigma_w2',))
  return cfg


def prepare(cfg: dict):
  """The training split's token ids when the inputs are text (None for Gaussian tokens), loaded
  before the workdir is touched."""
  if cfg['inputs'] == 'gaussian':
    return None
  from lib.data import text  # pylint: disable=g-import-not-at-top  (TFDS: only for text)
  corpus = text.corpus(cfg['inputs'], cfg['data_dir'] or None)
  if len(corpus['train']) < cfg['seq_len']:
    raise UserError(f'the training split of {cfg["inputs"]} ({len(corpus["train"])} tokens) is '
                    f'shorter than config.seq_len ({cfg["seq_len"]})')
  return {'ids': np.asarray(corpus['train'], np.int32), 'vocab_size': len(corpus['vocabulary'])}


def point_key(record: dict) -> tuple:
  return (record['variant'], record['depth'], record['seed'])


def grid(cfg: dict) -> list:
  """[((variant, depth), [point keys in record order]), ...]"""
  return [((v, depth), [(v, depth, s) for s in sweep.seeds(cfg)])
          for v in cfg['variants'] for depth in cfg['depths']]


def network(cfg: dict, variant: transformer.Variant) -> transformer.Block:
  return transformer.block(variant, cfg['width'], cfg['num_heads'], causal=cfg['causal'],
                           activation=cfg['activation'], init=cfg['init'],
                           sigma_w2=cfg['sigma_w2'], dtype=jnp.dtype(cfg['dtype']))


def input_tokens(key, cfg: dict, ids=None, vocab_size: int = 0):
  """X_0 (1, T, d): N(0, 1) entries, or a window of `ids` (its start drawn uniformly) embedded
  by a N(0, 1) table of vocab_size rows."""
  dtype, shape = jnp.dtype(cfg['dtype']), (1, cfg['seq_len'], cfg['width'])
  if ids is None:
    return cells.standard_normals(key, [shape], dtype)[0]
  start = jax.random.randint(jax.random.fold_in(key, 0), (), 0, ids.shape[0] - shape[1] + 1)
  window = jax.lax.dynamic_slice(ids, (start,), (shape[1],))
  (table,) = cells.standard_normals(jax.random.fold_in(key, 1), [(vocab_size, shape[2])], dtype)
  return table[window][None]


def draw(cfg: dict, variant: transformer.Variant, depth: int, seed, ids=None,
         vocab_size: int = 0):
  """(module, params, X_0, readout R) of one network and its input. Draws depend only on
  (seed, what)."""
  module = network(cfg, variant)
  key = jax.random.key(seed)
  params = transformer.init_params(jax.random.fold_in(key, 0), module, depth, cfg['seq_len'])
  x = input_tokens(jax.random.fold_in(key, 1), cfg, ids, vocab_size)
  (readout,) = cells.standard_normals(jax.random.fold_in(key, 2), [x.shape], x.dtype)
  return module, params, x, readout / np.sqrt(readout.size)


def profiles(module: transformer.Block, variant: transformer.Variant, params, x, readout):
  """The per-layer profiles of one network (a dict of arrays, see the module docstring), from one
  forward and one backward pass, and whether the forward pass stayed finite."""
  depth = len(jax.tree.leaves(params)[0])
  profile = gradients.log_grad_profile(
      transformer.step(module, variant.alpha(depth)), transformer.output(variant, x.dtype), x,
      params, readout, input_grads='parameters', observe=lambda h: tokens.token_stats(h[0]))
  weights = profile.log_grad_sq_input
  first = tokens.token_stats(x[0])
  out = {
      'log_grad_sq': jnp.concatenate([profile.log_grad_sq_initial[None], profile.log_grad_sq]),
      'log_qk_grad_sq': jnp.logaddexp(weights['query']['kernel'], weights['key']['kernel']),
      'log_weight_grad_sq': (weights['mlp_out']['kernel'] if variant.mlp
                             else jnp.full((depth,), -jnp.inf, x.dtype)),
      **{name: jnp.concatenate([getattr(first, name)[None], getattr(profile.observed, name)])
         for name in STATS},
  }
  return out, profile.forward_finite


def measure_point(variant_name: str, depth: int, cfg: dict, seed, *shared, vocab_size: int = 0):
  """`profiles` of the network and input that `draw` gives for this seed."""
  variant = transformer.parse_variant(variant_name)
  module, params, x, readout = draw(cfg, variant, depth, seed, shared[0] if shared else None,
                                    vocab_size)
  return profiles(module, variant, params, x, readout)


@compiled.cached
def program(cfg: dict, variant: str, depth: int, vocab_size: int = 0):
  """The program of every seed of one (variant, depth): one object for the memory check and the
  run (`lib.runtime.compiled.cached`)."""
  return devices.map_points(
      lambda seed, *shared: measure_point(variant, depth, cfg, seed, *shared,
                                          vocab_size=vocab_size),
      cfg['num_seeds'], int(cfg['inputs'] != 'gaussian'), batch=devices.points_batch_of(cfg))


def _shared(data) -> tuple:
  """The programs' shared arguments: the text's ids, or none for Gaussian tokens."""
  return () if data is None else (data['ids'],)


def _vocab_size(data) -> int:
  return 0 if data is None else data['vocab_size']


def programs(cfg: dict, groups, data=None) -> list:
  """One `lib.runtime.dry_run.Program` per (variant, depth) group."""
  from lib.runtime import dry_run  # pylint: disable=g-import-not-at-top
  args = dry_run.points_args(cfg['num_seeds'], 'int32', batch=devices.points_batch_of(cfg))[0]
  shared = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in _shared(data))
  return [dry_run.Program(f'{variant} depth {depth}',
                          program(cfg, variant, depth, _vocab_size(data)),
                          (args,) + shared, 1)
          for (variant, depth), _ in groups]


def rank_collapse_layer(rank_residual, threshold: float):
  """The first l with rank_residual[l] below `threshold`, or None."""
  below = [l for l, r in enumerate(rank_residual) if r is not None and r < threshold]
  return below[0] if below else None


def compute_group(cfg: dict, group: tuple, data=None) -> list:
  """Records of every seed of one (variant, depth), in seed order."""
  variant_name, depth = group
  variant = transformer.parse_variant(variant_name)
  prog = program(cfg, variant_name, depth, _vocab_size(data))
  with jax.enable_x64(cfg['dtype'] == 'float64'):
    out, finite = devices.run_points(prog, np.asarray(sweep.seeds(cfg), np.int32), *_shared(data))
  records = []
  for j, seed in enumerate(sweep.seeds(cfg)):
    profile = {name: np.asarray(value[j]) for name, value in out.items()}
    status = gradients.status_of(profile['log_grad_sq'], bool(finite[j]))
    records.append({
        'variant': variant_name, 'norm': variant.norm, 'skip': variant.skip, 'mlp': variant.mlp,
        'residual_scale': variant.residual_scale, 'alpha': variant.alpha(depth), 'depth': depth,
        'width': cfg['width'], 'num_heads': cfg['num_heads'], 'seq_len': cfg['seq_len'],
        'causal': cfg['causal'], 'activation': cfg['activation'], 'init': cfg['init'],
        'sigma_w2': cfg['sigma_w2'], 'inputs': cfg['inputs'], 'dtype': cfg['dtype'],
        'seed': seed, 'status': status,
        **{name: json_floats(value) if variant.mlp or name != 'log_weight_grad_sq' else None
           for name, value in profile.items()},
    })
  return records


def run(cfg: dict, store: ResultStore, data=None) -> int:
  """Runs the missing points of the sweep; returns how many were computed."""
  return sweep.run_groups(grid(cfg), functools.partial(compute_group, cfg, data=data), point_key,
                          store, desc='transformer depth')


def depth_fits(records: list) -> dict:
  """Per variant with an MLP and two depths or more among its 'ok' records: the least-squares
  slope of the last block's ln ||dl/dW2_L||^2 against ln L (every seed a point), its standard
  error, and the theory's slope for the square (None where there is none)."""
  fits = {}
  for name in dict.fromkeys(r['variant'] for r in records):
    rows = [(r['depth'], r['log_weight_grad_sq'][-1]) for r in records
            if r['variant'] == name and r['status'] == 'ok' and r['log_weight_grad_sq']
            and r['log_weight_grad_sq'][-1] is not None]
    if len({d for d, _ in rows}) < 2:
      continue
    x, y = np.log([d for d, _ in rows]), np.asarray([v for _, v in rows])
    (slope, intercept), cov = np.polyfit(x, y, 1, cov=True) if len(rows) > 2 else (
        np.polyfit(x, y, 1), np.full((2, 2), np.nan))
    v = transformer.parse_variant(name)
    predicted = theory.w2_depth_exponent(v.norm, v.skip, v.mlp,
                                         v.residual_scale == transformer.SCALED)
    fits[name] = {'slope': float(slope), 'stderr': float(np.sqrt(cov[0, 0])),
                  'intercept': float(intercept),
                  'theory': None if predicted is None else 2.0 * predicted}
  return fits


def plot(records: list, plots_dir: str) -> list:
  from lib.report import transformer_plots  # matplotlib: only to draw
  return transformer_plots.depth_figures(records, depth_fits(records), plots_dir)


def summary(records: list, threshold: float = COLLAPSE_THRESHOLD) -> str:
  collapse = {}
  for r in records:
    if r['status'] != 'ok':
      continue
    collapse.setdefault((r['variant'], r['depth']), []).append(
        rank_collapse_layer(r['rank_residual'], threshold))
  return tables.transformer_depth_table(records, depth_fits(records), collapse, threshold)
