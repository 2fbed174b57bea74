"""The gradient-decay sweep: per-step gradient norms over cells x seq_lens x scales x seeds.

Every (cell, seq_len) is one jitted program over every (sigma_w2, sigma_b2, seed) point, spread over
the devices (`lib.runtime.devices`), so a sweep compiles len(cells) * len(seq_lens) programs
whatever the number of scales and seeds. The phase diagram (lib/experiments/phase_diagram.py) runs
the same sweep over a (sigma_w2, sigma_b2) grid.

The linear cells (`lru`, `linear`, lib/nets/lru) have no scales: their init is the ring (r_min,
r_max, max_phase), one point per seed, recorded with sigma_w2 = sigma_b2 = None. Their backward
recursion is exactly g_{t-1} = conj(lambda) . g_t, so beside the measured profile each record
holds its closed form `log_grad_sq_theory` (`theory_profile`): a power law in k, not the
exponential of mean-field theory; `theory_decay_rate` is then the least-squares slope of that
curve over the same fit window as the measured rate. A GRU (random weights, sigma_b2 = 0) gets the same
pair from lib/measure/theory's tied transfer operator (`gru_log_grad_sq`), and tanh and relu
cells ln chi1 alone. The profile itself is the sequential
renormalised reverse pass (lib/measure/gradients), not the parallel scan: its per-step
renormalisation is what keeps a gradient of e^-1000 a number.
"""

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np

from lib.experiments import model_settings
from lib.measure import decay
from lib.measure import gradients
from lib.measure import theory
from lib.nets import cells
from lib.nets import lru
from lib.report import tables
from lib.runtime import compiled
from lib.runtime import config as config_lib
from lib.runtime import devices
from lib.runtime import sweep
from lib.runtime.errors import UserError
from lib.runtime.results import ResultStore
from lib.runtime.results import json_floats

DTYPES = ('float32', 'float64')
LENGTH = 'seq_len'  # the records' length key: gradients travel back through time
NEUTRAL_KEYS = ('length_buckets',)  # keys that change no result: a run may resume across them
GRID_KEYS = ('cells', 'seq_lens', 'sigma_w2', 'sigma_b2')  # the grid's axes (the dry run's)
SHRINK_KEYS = ('hidden_size', 'batch_size', 'seq_lens')  # what makes its programs smaller
RECORD_FIELDS = ('cell', LENGTH, 'sigma_w2', 'sigma_b2', 'sigma_v2', 'seed', 'recurrent_init',
                 'status', 'decay_rate', 'theory_decay_rate', 'log_grad_sq')
RING_KEYS = ('r_min', 'r_max', 'max_phase')  # the linear cells' init

SPEC = {
    'experiment': config_lib.text(),
    'cells': config_lib.choices(cells.CELL_NAMES, 'cell'),
    'seq_lens': config_lib.integers(1, 'a positive integer length'),
    'length_buckets': config_lib.optional_integers_or('auto', 1,
                                                      'a positive integer length, or auto'),
    'sigma_w2': config_lib.reals(0.0, 'a variance >= 0'),
    'sigma_b2': config_lib.reals(0.0, 'a variance >= 0'),
    'sigma_v2': config_lib.real(0.0, 'a variance >= 0'),
    'recurrent_init': config_lib.choice(cells.RECURRENT_INITS, 'recurrent_init'),
    'gate_bias': config_lib.real(what='a number'),
    'r_min': config_lib.real(0.0, 'a radius in [0, 1)'),
    'r_max': config_lib.real(0.0, 'a radius in [0, 1)'),
    'max_phase': config_lib.real(0.0, 'an angle >= 0'),
    'hidden_size': config_lib.integer(1, 'a positive integer'),
    'input_size': config_lib.integer(1, 'a positive integer'),
    'batch_size': config_lib.integer(1, 'a positive integer'),
    'num_seeds': config_lib.integer(1, 'a positive integer number of seeds'),
    'seed': config_lib.integer(0, 'a non-negative integer below 2**31', maximum=2**31 - 1),
    'dtype': config_lib.choice(DTYPES, 'dtype'),
    'fit_k_min': config_lib.integer(0, 'a non-negative integer'),
    'fit_k_max': config_lib.integer(-1, 'a non-negative integer or -1 (up to T-1)'),
}


BUCKET_SPAN = 4  # an automatic bucket runs every length from a quarter of it up to it


def auto_buckets(seq_lens) -> tuple:
  """Length buckets chosen from the grid: the longest length that no bucket holds yet is a
  bucket, and it runs every length down to 1/BUCKET_SPAN of it. A length then computes at most
  4 times its own steps, and a grid whose lengths span a factor s compiles about log_4(s)
  programs a cell: the main job's 16..512 runs in (64, 512), 6 programs instead of 18."""
  buckets = []
  for seq_len in sorted(seq_lens, reverse=True):
    if not buckets or seq_len * BUCKET_SPAN < buckets[-1]:
      buckets.append(seq_len)
  return tuple(sorted(buckets))


def validate(config) -> dict:
  cfg = decay.check_fit_window(config_lib.validate(config, SPEC), 'seq_lens')
  sweep.check_float_range(cfg, ('sigma_w2', 'sigma_b2', 'sigma_v2', 'gate_bias'))
  model_settings.linear_options(cfg)  # the linear cells' keys, checked
  if 'irnn' in cfg['cells']:
    raise UserError('config.cells: irnn fixes its recurrent kernel (the identity) and its biases '
                    '(zero), so a sweep of sigma_w2 and sigma_b2 would repeat one network; sweep '
                    'relu with recurrent_init=identity (the IRNN at sigma_w2=1, sigma_b2=0)')
  if cfg['length_buckets'] == 'auto':
    cfg['length_buckets'] = auto_buckets(cfg['seq_lens'])
  if cfg['length_buckets'] and max(cfg['seq_lens']) > cfg['length_buckets'][-1]:
    raise UserError(f'config.seq_lens: {max(cfg["seq_lens"])} is longer than the longest of '
                    f'config.length_buckets ({cfg["length_buckets"][-1]}); add a bucket of at '
                    f'least {max(cfg["seq_lens"])}, or set length_buckets=() (one program per '
                    'length)')
  return cfg


def bucket(cfg: dict, seq_len: int) -> int:
  """The program length that runs `seq_len`: the shortest bucket that holds it, or seq_len
  itself when config.length_buckets is empty."""
  return next((b for b in cfg['length_buckets'] if b >= seq_len), seq_len)


@compiled.cached
def program(cfg: dict, cell: str, length: int):
  """The compiled-once program of every sequence of a cell up to `length` (a bucket): the points
  (sigma_w2, sigma_b2, seed) and the sequence length as its shared argument. One object for the
  memory check and the run (`lib.runtime.compiled.cached`)."""
  return decay.points_program(functools.partial(measure_point, cell, length, cfg), cfg,
                              num_shared=1, num_scales=len(cell_scales(cfg, cell)))


def programs(cfg: dict, groups=None) -> list:
  """The distinct compiled programs of the sweep's (cell, seq_len) groups (default: all), as
  `lib.runtime.dry_run.Program`s named by (cell, program length)."""
  from lib.runtime import dry_run  # pylint: disable=g-import-not-at-top
  groups = grid(cfg) if groups is None else groups
  calls = collections.Counter((cell, bucket(cfg, seq_len)) for (cell, seq_len), _ in groups)
  out = []
  for (cell, length), calls_made in calls.items():
    count, batch = len(cell_scales(cfg, cell)) * cfg['num_seeds'], devices.points_batch_of(cfg)
    args = (dry_run.points_args(count, cfg['dtype'], cfg['dtype'], 'int32', batch=batch),
            devices.abstract(np.int32(0), False, count, batch))  # the sequence length, shared
    out.append(dry_run.Program(f'{cell} T={length}', program(cfg, cell, length), args,
                               calls_made))
  return out


def point_key(record: dict) -> tuple:
  return (record['cell'], record[LENGTH], record['sigma_w2'], record['sigma_b2'], record['seed'])


def cell_scales(cfg: dict, cell: str) -> list:
  """The (sigma_w2, sigma_b2) points of a cell: the config's, or (None, None) alone for a linear
  cell (its init is the ring; the variances do not enter it)."""
  return [(None, None)] if cell in cells.LINEAR_CELLS else decay.scales(cfg)


def grid(cfg: dict) -> list:
  """[((cell, seq_len), [point keys in record order]), ...]"""
  return [((cell, seq_len),
           [(cell, seq_len, w, b, s) for w, b in cell_scales(cfg, cell)
            for s in sweep.seeds(cfg)])
          for cell in cfg['cells'] for seq_len in cfg['seq_lens']]


def network(cell_name: str, length: int, cfg: dict, sigma_w2, sigma_b2, seed):
  """(cell, params, readout r (N,), inputs xs (length, batch, D), zero carry) of one point.

  The draws depend only on (seed, what): params, inputs and readout are the same at every scale
  (each kernel is the same draw, scaled) and length, so points are compared on equal terms. A
  linear cell ignores sigma_w2 and sigma_b2.
  """
  dtype = jnp.dtype(cfg['dtype'])
  batch, hidden, width = cfg['batch_size'], cfg['hidden_size'], cfg['input_size']
  key = jax.random.key(seed)
  k_params, k_inputs = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
  cell = cells.make_cell(cell_name, hidden, dtype, model_settings.linear_options(cfg))
  params = cells.init_params(
      cell_name, cell, k_params, width, sigma_w2=sigma_w2, sigma_v2=cfg['sigma_v2'],
      sigma_b2=sigma_b2, recurrent_init=cfg['recurrent_init'], gate_bias=cfg['gate_bias'])
  # Readout first: threefry draws are prefix-stable, so r and x_0..x_{T-1} are the same at
  # every length T (jax_threefry_partitionable, the default).
  readout, xs = cells.standard_normals(k_inputs, [(hidden,), (length, batch, width)], dtype)
  readout = readout / np.sqrt(hidden)  # r ~ N(0, I/N); inputs x_t ~ N(0, I_D)
  return cell, params, readout, xs, cells.zero_carry(cell, batch, width)


def measure_point(cell_name: str, length: int, cfg: dict, sigma_w2, sigma_b2, seed, seq_len):
  """(log_grad_sq, log_grad_sq_input, forward_finite, ln ||r||^2) of one network and input
  batch (`network`; r the readout), the profiles (length,) with entries t >= seq_len padding
  (seq_len <= length may be traced: one program per `length` runs every shorter sequence,
  `gradients.log_grad_profile`)."""
  cell, params, readout, xs, carry0 = network(cell_name, length, cfg, sigma_w2, sigma_b2, seed)
  profile = gradients.log_grad_profile(
      cells.step_of(cell, params), functools.partial(cells.output, cell_name), carry0, xs,
      readout, length=seq_len)
  return (profile.log_grad_sq, profile.log_grad_sq_input, profile.forward_finite,
          jnp.log(jnp.sum(jnp.square(readout))))


def theory_profile(cell_name: str, cfg: dict, seq_len: int, log_readout_sq: float,
                   sigma_w2: float = 0.0, sigma_b2: float = 0.0):
  """ln E ||dL/ds_t||^2, t = 0..seq_len-1 (k = T-1-t steps back from the loss L = <r, y_{T-1}>),
  predicted for a linear cell over its ring init and for a GRU of gaussian weights; None for the
  other cells.

  Linear cells: k = 0: the gradient sits on the output y in the carry: ||r||^2. k >= 1: it is in
  the state, dL/dh_{T-1-k} = conj(lambda)^k . (conj(lambda) C^H r) coordinate-wise, and lambda
  is drawn independently of C (entries N(0, 1/N), real and imaginary parts each for the lru), so
  E ||g_k||^2 = m ||r||^2 E|lambda|^(2k) with m = 2 (lru: Re and Im) or 1 (linear), and
  E|lambda|^(2k) = (r_max^(2k+2) - r_min^(2k+2)) / ((k+1)(r_max^2 - r_min^2))
  (lib/nets/lru.log_grad_sq_theory, in the log domain).
  GRU: ||r||^2 (T^k)_00, the tied transfer operator of lib/measure/theory.gru_log_grad_sq
  (where theory.gru_not_applicable says it applies)."""
  if cell_name == 'gru':
    if theory.gru_not_applicable(cfg['recurrent_init'], sigma_b2):
      return None
    curve = log_readout_sq + theory.gru_log_grad_sq(
        seq_len, sigma_w2, sigma_b2, cfg['sigma_v2'], cfg['gate_bias'])
    return curve[::-1]
  if cell_name not in cells.LINEAR_CELLS:
    return None
  k = np.arange(seq_len)
  with jax.enable_x64(True):
    curve = np.asarray(lru.log_grad_sq_theory(k, cfg['r_min'], cfg['r_max']), np.float64)
  curve = curve + log_readout_sq + np.log(2.0 if cell_name == 'lru' else 1.0)
  curve[0] = log_readout_sq
  return curve[::-1]  # by t = T-1-k, as the measured profile


def compute_group(cfg: dict, group: tuple, programs=None) -> list:
  """Records of every (sigma_w2, sigma_b2, seed) of one (cell, seq_len), in grid order, from the
  program of its (cell, bucket), compiled once and kept in `programs` (a dict, across groups)."""
  cell_name, seq_len = group
  length = bucket(cfg, seq_len)
  programs = {} if programs is None else programs
  if (cell_name, length) not in programs:
    programs[cell_name, length] = program(cfg, cell_name, length)
  point_scales = cell_scales(cfg, cell_name)
  linear = cell_name in cells.LINEAR_CELLS
  log_h, log_x, finite, log_r = decay.run_points(
      programs[cell_name, length], cfg, np.asarray(seq_len, np.int32),
      point_scales=[(0.0, 0.0)] if linear else point_scales)  # a linear cell reads neither
  log_h, log_x = log_h[..., :seq_len], log_x[..., :seq_len]
  records = []
  for i, (sigma_w2, sigma_b2) in enumerate(point_scales):
    for j, seed in enumerate(sweep.seeds(cfg)):
      fields = decay.profile_fields(cfg, log_h[i, j], log_x[i, j], bool(finite[i, j]),
                                    cell_name, cfg['recurrent_init'], sigma_w2, sigma_b2,
                                    cfg['sigma_v2'])
      curve = theory_profile(cell_name, cfg, seq_len, float(log_r[i, j]), sigma_w2, sigma_b2)
      if curve is not None:
        fields['theory_decay_rate'] = gradients.fit_decay_rate(curve, cfg['fit_k_min'],
                                                               cfg['fit_k_max'])
      records.append({
          'cell': cell_name, LENGTH: seq_len, 'seed': seed, 'sigma_w2': sigma_w2,
          'sigma_b2': sigma_b2, 'sigma_v2': None if linear else cfg['sigma_v2'],
          'recurrent_init': None if linear else cfg['recurrent_init'],
          'gate_bias': None if linear else cfg['gate_bias'],
          **{key: cfg[key] if linear else None for key in RING_KEYS},
          'hidden_size': cfg['hidden_size'], 'input_size': cfg['input_size'],
          'batch_size': cfg['batch_size'], 'dtype': cfg['dtype'], **fields,
          'log_grad_sq_theory': None if curve is None else json_floats(curve),
      })
  return records


def run(cfg: dict, store: ResultStore) -> int:
  """Runs the missing points of the sweep; returns how many were computed."""
  programs = {}
  return sweep.run_groups(grid(cfg), lambda group: compute_group(cfg, group, programs), point_key,
                          store, desc='gradient decay')


def panel(record: dict) -> str:
  return record['cell']


def no_theory_reason(record: dict):
  if record['cell'] in cells.LINEAR_CELLS:
    return None
  if record['cell'] == 'gru':
    return theory.gru_not_applicable(record['recurrent_init'], record['sigma_b2'])
  return theory.not_applicable(record['cell'], record['recurrent_init'])


def plot(records: list, plots_dir: str) -> list:
  from lib.report import decay_plots  # matplotlib: only to draw
  return decay_plots.decay_sweep(records, plots_dir, LENGTH, panel, no_theory_reason)


def summary(records: list) -> str:
  return tables.decay_table(records, LENGTH, panel)
