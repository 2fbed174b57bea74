"""Benchmarks against what a researcher would otherwise write, in one process, as ratios.

  python bench/run.py [--quick] [--repeats N] [--json FILE] [--only NAME,...] [--cpu_devices N]

Each timed figure is the median of `repeats` runs after a warm-up run (compiles excluded), with
the spread (min, max) beside it; ratios are medians over medians, measured in the same process.

sweep_vs_jax_loop: the gradient-decay grid (tanh and lstm, T = 16..512, 4 scales, 8 seeds,
  hidden 128) through our sweep (one program per (cell, T), every point inside it, spread over
  the devices: on a CPU one per core, as run.py splits it, `--cpu_devices`), against a
  plain JAX loop a user would write: per (cell, T) one jitted function of one point (jax.grad
  with respect to perturbations of every hidden state, the textbook way), called point by point.
  The numbers out are checked equal where the plain float32 gradient has not underflowed.
sweep_vs_torch: the same grid in PyTorch eager (retain_grad on every hidden state, one backward
  per point); skipped with a note when torch is not installed (`pip install '.[bench]'`).
rnn_gflops_*, rnn_peak_fraction_*: achieved GFLOP/s of a tanh and an LSTM forward+backward pass
  (lib/nets/cells, jax.grad with respect to the weights; matmul flops counted by hand) at hidden 128
  and 512, batch 64, and its fraction of this machine's float32 matmul peak measured in the same
  run, just before it; profile_gflops_*, profile_peak_fraction_*: the same for our gradient profile,
  the program the sweep runs (state and input gradients at every step, renormalised).
cnn_train_vs_torch: training images per second of the MNIST-1D CNN (ours: one seed, the chunk
  program of lib/runtime/train) against the same model and optimiser in PyTorch.
main_job_seconds, main_job_compiles: wall time and XLA compiles of `python run.py` in a fresh
  process with an empty compilation cache (a cold start), and again warm (the cache it filled);
  main_job_seconds_unbucketed, main_job_compiles_unbucketed: cold with one program per length
  (--config.length_buckets=()), and main_job_vs_unbucketed, the ratio of the two cold times.

The docs' speed claims, each two things timed in turn in one run (a, then b, `repeats`
rounds after a warm-up of each; the figure is the median over rounds of b's seconds over a's,
with the min and max over rounds, and each side's seconds beside it), checked equal first:
patch_conv_vs_xla_conv: the MNIST-1D CNN's training chunk (lib/runtime/train, 200 Adam steps of
  one seed, batch 100; 50 with --quick) with flax.linen.Conv over the same with
  lib/nets/models.PatchConv (convolution as one matmul of patches), the same parameters; the
  logits and loss gradients of the two nets checked allclose first.
lax_map_vs_vmap, lax_map_vs_vmap_<cell>: the main job's program of each cell at T = 512 (its
  longest bucket; tanh at 64 with --quick), 6 points, with each device vmapping all its points at
  once (lib/runtime/devices' points batch = the points per device) over the same with lax.map
  one point at a time (points batch 1, the default); the outputs checked allclose.
  lax_map_vs_vmap is the tanh program's.
devices_per_core: the sweep program of 32 tanh points (4 scales x 8 seeds) at T = 512 (128 with
  --quick), hidden 256, batch 16, on one CPU device over the same on one device per core, each
  side in a fresh process (the device count is fixed per process) that times it after a warm-up
  (median of 3 calls; 2 with --quick); the processes alternate, `repeats` rounds (2 with --quick),
  and the profiles are checked equal.
dry_run_estimate_decay_min, _max, dry_run_estimate_training_min, _max: over the main job's
  programs (decay; with --quick its lengths up to 64) and long-range memory's training chunks
  (50 steps, every model at T = 100; the tanh RNN at T = 50 with --quick), the least and largest
  of a program's dry-run estimate of seconds per call (lib/runtime/dry_run, calibrated in this
  process) over its measured seconds per call; each round calibrates and then times every
  program once, a program's ratio is its median over rounds (dry_run_estimate_<program>).
lm_lstm_vs_torch, lm_transformer_vs_torch: training tokens per second of a language model, ours
  (the chunk program of lib/runtime/train: 20 steps of the ptb_small LSTM, 2 x 200 on ptb_word,
  batch 20 x 20 tokens, SGD; 50 steps of the default config's char transformer at context 64,
  batch 32, Adam; 5 and 10 with --quick) against the same model, batches and optimiser in
  PyTorch eager (bench/torch_side: nn.LSTM's fused kernels; nn.TransformerEncoderLayer), as
  torch's seconds over ours, each side's tokens per second beside it
  (lm_*_tokens_per_second); checked first that both compute the same loss and gradient norm on
  the same weights (lm_*_same_loss_relative_difference, at most 1e-4). The chunk's validation is
  cut to one segment, so that both sides time training steps.
lm_hoisted_vs_cell: the ptb_small LSTM's 20 steps with the Flax cell's step as it is over the same
  with each layer's input projection hoisted out of the recurrence (lib/nets/cells.hoisted, the
  default).
scan_parallel_vs_sequential_<T>: forward and backward of an lru layer (lib/nets/lru, batch 16,
  width 256) over T = 1,024, 4,096 and 16,384 steps (1,024 with --quick) with lax.scan, over the
  same with lax.associative_scan; the outputs checked allclose first.
"""

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position

# pylint: disable=g-import-not-at-top,wrong-import-position
from lib.experiments import gradient_decay
from lib.measure import decay
from lib.measure import gradients
from lib.nets import cells
from lib.runtime import cli
from lib.runtime import sweep
# pylint: enable=g-import-not-at-top,wrong-import-position


def timed(fn, repeats: int) -> dict:
  """fn() once as a warm-up, then `repeats` times: median, min and max seconds."""
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return {'median': statistics.median(times), 'min': min(times), 'max': max(times)}


# ---------------------------------------------------------------------------------------------
# The gradient-decay grid: ours against a plain JAX loop.


def grid_config(quick: bool) -> dict:
  import experiments.gradient_decay as experiment  # pylint: disable=g-import-not-at-top
  config = experiment.get_config()
  config.cells = ('tanh', 'lstm')
  config.seq_lens = (16, 32, 64, 128) if quick else (16, 32, 64, 128, 256, 512)
  config.sigma_w2 = (1.0, 2.0, 3.0, 4.0)
  config.hidden_size = 128
  config.num_seeds = 4 if quick else 8
  return gradient_decay.validate(config)


def our_sweep(cfg: dict):
  """() -> {(cell, T): log_grad_sq (scales, seeds, T)} through the sweep's programs."""
  programs = {}
  for group, _ in gradient_decay.grid(cfg):
    programs[group] = gradient_decay.program(cfg, *group)
  def run():
    return {group: decay.run_points(program, cfg, np.asarray(group[1], np.int32))[0]
            for group, program in programs.items()}
  return run


def user_point(cell_name: str, seq_len: int, cfg: dict):
  """What a user would write for one point: jit of (sigma_w2, seed) -> ln mean_b ||dL/dh_t||^2
  by one jax.grad with respect to perturbations added to every state (same draws as ours)."""
  batch, hidden, width = cfg['batch_size'], cfg['hidden_size'], cfg['input_size']
  cell = cells.make_cell(cell_name, hidden, jnp.float32)

  @jax.jit
  def point(sigma_w2, seed):
    key = jax.random.key(seed)
    params = cells.init_params(
        cell_name, cell, jax.random.fold_in(key, 0), width, sigma_w2=sigma_w2,
        sigma_v2=cfg['sigma_v2'], sigma_b2=0.0, recurrent_init=cfg['recurrent_init'],
        gate_bias=cfg['gate_bias'])
    readout, xs = cells.standard_normals(jax.random.fold_in(key, 1),
                                         [(hidden,), (seq_len, batch, width)], jnp.float32)
    log_h, _ = gradients.direct_grad_profile(
        cells.step_of(cell, params), functools.partial(cells.output, cell_name),
        cells.zero_carry(cell, batch, width), xs, readout / np.sqrt(hidden), input_grads=False)
    return log_h
  return point


def user_loop(cfg: dict):
  """() -> the same dict as `our_sweep`, point by point."""
  points = {group: user_point(*group, cfg) for group, _ in gradient_decay.grid(cfg)}
  def run():
    return {group: np.asarray([[np.asarray(point(np.float32(w), np.int32(s)))
                                for s in sweep.seeds(cfg)] for w, _ in decay.scales(cfg)])
            for group, point in points.items()}
  return run


def check_same(ours: dict, theirs: dict, checked_scales=None, checked_up_to: int = 128) -> float:
  """Largest |difference| of ln ||dL/dh_t||^2 over the grid where the plain gradient is a normal
  float32 (it underflows where ours, renormalised, does not). Raises if a difference is above
  1e-3 (relative and absolute) at T <= checked_up_to and the scales indexed by `checked_scales`
  (default all): further out, float32 roundings that differ between two programs grow along the
  sequence wherever the dynamics expand (chaotic tanh, the LSTM's slowly growing carry), so two
  correct programs part by up to O(1) nats there."""
  worst = 0.0
  for (cell, seq_len), log_h in ours.items():
    plain = theirs[cell, seq_len]
    normal = np.isfinite(plain) & (plain > np.log(np.finfo(np.float32).tiny) + 10)
    if seq_len <= checked_up_to:
      checked = np.zeros_like(normal)
      checked[slice(None) if checked_scales is None else checked_scales] = True
      np.testing.assert_allclose(log_h[normal & checked], plain[normal & checked], rtol=1e-3,
                                 atol=1e-3, err_msg=f'{cell} T={seq_len}')
    worst = max(worst, float(np.max(np.abs(log_h[normal] - plain[normal]), initial=0.0)))
  return worst


def sweep_figures(quick: bool, repeats: int) -> dict:
  cfg = grid_config(quick)
  ours, theirs = our_sweep(cfg), user_loop(cfg)
  worst = check_same(ours(), theirs())
  ours_t, theirs_t = timed(ours, repeats), timed(theirs, repeats)
  figures = {'sweep_points': len(cfg['cells']) * len(cfg['seq_lens']) * 4 * cfg['num_seeds'],
             'sweep_seconds': ours_t['median'], 'sweep_seconds_min': ours_t['min'],
             'sweep_seconds_max': ours_t['max'],
             'jax_loop_seconds': theirs_t['median'], 'jax_loop_seconds_min': theirs_t['min'],
             'jax_loop_seconds_max': theirs_t['max'],
             'sweep_vs_jax_loop': theirs_t['median'] / ours_t['median'],
             'sweep_vs_jax_loop_max_abs_diff_all': worst}
  figures.update(torch_sweep_figures(cfg, ours, repeats, ours_t['median']))
  return figures


def torch_sweep_figures(cfg: dict, ours, repeats: int, our_seconds: float) -> dict:
  """The grid in PyTorch eager (bench/torch_side.py), the same draws, checked like the JAX loop."""
  try:
    from bench import torch_side  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    print(f'sweep_vs_torch skipped: {e} (pip install ".[bench]")', file=sys.stderr)
    return {}
  grid = [torch_side.draw_point(cell, seq_len, cfg, w, b, s)
          for (cell, seq_len), _ in gradient_decay.grid(cfg)
          for w, b in decay.scales(cfg) for s in sweep.seeds(cfg)]
  _, profiles = torch_side.sweep_seconds(grid)
  theirs, i = {}, 0
  count = len(decay.scales(cfg)) * cfg['num_seeds']
  for group, _ in gradient_decay.grid(cfg):
    theirs[group] = np.asarray(profiles[i:i + count]).reshape(
        len(decay.scales(cfg)), cfg['num_seeds'], -1)
    i += count
  # Above sigma_w2 = 2 the tanh RNN is chaotic: torch's and XLA's float32 roundings of the
  # forward pass grow apart exponentially (by O(1) nats at T = 128), so those are not compared.
  ordered = [i for i, (w, _) in enumerate(decay.scales(cfg)) if w <= 2.0]
  worst = check_same(ours(), theirs, ordered)
  t = timed(lambda: torch_side.sweep_seconds(grid), repeats)
  return {'torch_seconds': t['median'], 'torch_seconds_min': t['min'],
          'torch_seconds_max': t['max'], 'sweep_vs_torch': t['median'] / our_seconds,
          'sweep_vs_torch_max_abs_diff_all': worst, 'torch_version': torch_side.torch.__version__,
          'torch_threads': torch_side.torch.get_num_threads()}


# ---------------------------------------------------------------------------------------------
# Achieved GFLOP/s against the matmul peak.


def matmul_peak(repeats: int, size: int = 2048) -> float:
  """float32 GFLOP/s of a jitted size x size matmul: this machine's practical peak."""
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
  f = jax.jit(jnp.matmul)
  t = timed(lambda: f(a, b).block_until_ready(), repeats)
  return 2 * size**3 / t['median'] / 1e9


def _rnn(cell_name: str, hidden: int, batch: int, seq_len: int, width: int):
  """(cell, params, xs, readout, matmul flops of one forward pass) of lib/nets/cells' cell."""
  gates = {'tanh': 1, 'lstm': 4}[cell_name]
  cell = cells.make_cell(cell_name, hidden, jnp.float32)
  params = cells.init_params(cell_name, cell, jax.random.key(0), width, sigma_w2=1.0,
                             sigma_v2=1.0, sigma_b2=0.0, recurrent_init='gaussian',
                             gate_bias=1.0)
  readout, xs = cells.standard_normals(jax.random.key(1), [(hidden,), (seq_len, batch, width)],
                                       jnp.float32)
  return cell, params, xs, readout, seq_len * 2 * batch * (width + hidden) * gates * hidden


def rnn_gflops(cell_name: str, hidden: int, repeats: int, batch: int = 64, seq_len: int = 128,
               width: int = 32) -> float:
  """GFLOP/s of a training-style forward + backward pass of lib/nets/cells' cell (jax.grad of the
  summed readout with respect to every parameter): the forward matmuls counted by hand, the
  backward as twice as many (the gradients with respect to the state and to the weights)."""
  cell, params, xs, readout, forward = _rnn(cell_name, hidden, batch, seq_len, width)
  def loss(params):
    carry, _ = jax.lax.scan(lambda c, x: (cell.apply(params, c, x)[0], None),
                            cells.zero_carry(cell, batch, width), xs)
    return jnp.sum(cells.output(cell_name, carry) @ readout)
  grad = jax.jit(jax.grad(loss))
  t = timed(lambda: jax.block_until_ready(grad(params)), repeats)
  return 3 * forward / t['median'] / 1e9


def profile_gflops(cell_name: str, hidden: int, repeats: int, batch: int = 64,
                   seq_len: int = 128, width: int = 32) -> float:
  """GFLOP/s of our gradient profile (what the sweep runs: forward, then one backward pass to
  the state and the input at every step, renormalised), its matmuls counted as forward x 2."""
  cell, params, xs, readout, forward = _rnn(cell_name, hidden, batch, seq_len, width)
  profile = jax.jit(lambda params, xs, readout: gradients.log_grad_profile(
      cells.step_of(cell, params), functools.partial(cells.output, cell_name),
      cells.zero_carry(cell, batch, width), xs, readout).log_grad_sq)
  t = timed(lambda: profile(params, xs, readout).block_until_ready(), repeats)
  return 2 * forward / t['median'] / 1e9


def gflops_figures(quick: bool, repeats: int) -> dict:
  """Each rate against the matmul peak measured just before it: on a shared machine the speed
  drifts between minutes of a run by more than the gaps these fractions are read for, and a
  rate and its peak measured side by side drift together."""
  figures, peaks = {}, []
  for cell_name in ('tanh', 'lstm'):
    for hidden in (128, 512):
      for name, measure in (('rnn', rnn_gflops), ('profile', profile_gflops)):
        peaks.append(matmul_peak(repeats))
        rate = measure(cell_name, hidden, repeats, seq_len=32 if quick else 128)
        figures[f'{name}_gflops_{cell_name}_{hidden}'] = rate
        figures[f'{name}_peak_fraction_{cell_name}_{hidden}'] = rate / peaks[-1]
  figures.update({'matmul_peak_gflops': statistics.median(peaks),
                  'matmul_peak_gflops_min': min(peaks), 'matmul_peak_gflops_max': max(peaks)})
  return figures


# ---------------------------------------------------------------------------------------------
# CNN training on MNIST-1D.


def cnn_setup(steps: int):
  """(datasets, chunk() -> None running `steps` training steps of one seed) for the MNIST-1D CNN of
  experiments/image_classification.py: the chunk program of lib/runtime/train, state on device."""
  import experiments.image_classification as experiment  # pylint: disable=g-import-not-at-top
  from lib.experiments import image_classification  # pylint: disable=g-import-not-at-top
  cfg = image_classification.validate(experiment.get_config())
  datasets = image_classification.prepare(cfg)
  from lib.runtime import training  # pylint: disable=g-import-not-at-top
  setup = training.setup(image_classification, cfg, ('cnn', False), datasets)
  return datasets, cfg, chunk_runner(setup.model, setup.task, setup.opt, steps)


def chunk_runner(model, task, opt, steps: int):
  """() -> None: `steps` training steps of one seed of `model`, the chunk program of
  lib/runtime/train, its state kept on the device from call to call."""
  from lib.runtime import devices  # pylint: disable=g-import-not-at-top
  from lib.runtime import train  # pylint: disable=g-import-not-at-top
  seeds = devices.put(np.zeros(devices.padded_count(1), np.int32), True, 1)
  init = train.init_program(model.init, task, opt, 10**6, 1, 1)
  chunk = train.chunk_program(task, opt, steps, 1, 1)
  data = devices.put(task.data, False, 1)
  state = [init(seeds)]
  def run():
    state[0] = chunk((state[0], seeds), data)
    jax.block_until_ready(state[0])
  return run


def cnn_figures(quick: bool, repeats: int) -> dict:
  steps = 50 if quick else 200
  datasets, cfg, ours = cnn_setup(steps)
  t = timed(ours, repeats)
  figures = {'cnn_train_images_per_second': steps * cfg['batch_size'] / t['median']}
  try:
    from bench import torch_side  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    print(f'cnn_train_vs_torch skipped: {e} (pip install ".[bench]")', file=sys.stderr)
    return figures
  (x, y), _ = datasets
  theirs = torch_side.cnn_images_per_second(np.asarray(x, np.float32), np.asarray(y), steps,
                                            batch_size=cfg['batch_size'],
                                            lr=cfg['learning_rate'])
  figures['torch_cnn_train_images_per_second'] = theirs
  figures['cnn_train_vs_torch'] = figures['cnn_train_images_per_second'] / theirs
  return figures


# ---------------------------------------------------------------------------------------------
# The main job in a fresh process.


def _run_main_job(workdir: str, cache_dir: str, *flags: str):
  """(wall seconds, XLA compiles) of one `python run.py` in a fresh process."""
  env = {**os.environ, 'JAX_LOG_COMPILES': '1'}
  start = time.perf_counter()
  result = subprocess.run([sys.executable, os.path.join(ROOT, 'run.py'),
                           f'--workdir={workdir}', f'--compilation_cache_dir={cache_dir}', *flags],
                          env=env, capture_output=True, text=True, check=True)
  seconds = time.perf_counter() - start
  return seconds, (result.stderr.count('Finished XLA compilation')
                   - result.stderr.count('Persistent compilation cache hit'))


def main_job_figures(quick: bool, repeats: int) -> dict:
  """run.py cold (empty cache) and warm (the cache the cold run filled), in fresh processes; no
  warm-up run: the first start is what a user sees. Beside it, cold again with one program per
  length (--config.length_buckets=()), in the same round: the default's buckets against none."""
  cold, warm, plain, compiles, warm_compiles, plain_compiles = [], [], [], [], [], []
  for _ in range(1 if quick else repeats):
    with tempfile.TemporaryDirectory() as tmp:
      seconds, count = _run_main_job(f'{tmp}/cold', f'{tmp}/cache')
      cold.append(seconds)
      compiles.append(count)
      seconds, count = _run_main_job(f'{tmp}/warm', f'{tmp}/cache')
      warm.append(seconds)
      warm_compiles.append(count)
      seconds, count = _run_main_job(f'{tmp}/plain', f'{tmp}/plain_cache',
                                     '--config.length_buckets=()')
      plain.append(seconds)
      plain_compiles.append(count)
  return {'main_job_seconds': statistics.median(cold),
          'main_job_seconds_min': min(cold), 'main_job_seconds_max': max(cold),
          'main_job_compiles': max(compiles),
          'main_job_seconds_warm': statistics.median(warm),
          'main_job_compiles_warm': max(warm_compiles),
          'main_job_seconds_unbucketed': statistics.median(plain),
          'main_job_compiles_unbucketed': max(plain_compiles),
          'main_job_vs_unbucketed': statistics.median(cold) / statistics.median(plain)}


# ---------------------------------------------------------------------------------------------
# The docs' speed claims: each a ratio of two things timed in turn in the same run.


def interleaved(a, b, repeats: int) -> dict:
  """a() and b() once each as a warm-up, then `repeats` rounds of a() then b(): each side's
  median, min and max seconds, and b's time over a's per round (median, min, max). A ratio of
  two calls made side by side shares their drift on a shared machine; the median of the
  per-round ratios is the figure."""
  a()
  b()
  times_a, times_b = [], []
  for _ in range(repeats):
    for fn, times in ((a, times_a), (b, times_b)):
      start = time.perf_counter()
      fn()
      times.append(time.perf_counter() - start)
  ratios = [tb / ta for ta, tb in zip(times_a, times_b)]
  return {'a': statistics.median(times_a), 'a_min': min(times_a), 'a_max': max(times_a),
          'b': statistics.median(times_b), 'b_min': min(times_b), 'b_max': max(times_b),
          'ratio': statistics.median(ratios), 'ratio_min': min(ratios), 'ratio_max': max(ratios)}


def _ratio_figures(name: str, t: dict, a_name: str, b_name: str) -> dict:
  """`name` (b over a, median over rounds) with its min and max, and each side's seconds."""
  return {name: t['ratio'], f'{name}_min': t['ratio_min'], f'{name}_max': t['ratio_max'],
          f'{name}_{a_name}_seconds': t['a'], f'{name}_{a_name}_seconds_min': t['a_min'],
          f'{name}_{a_name}_seconds_max': t['a_max'], f'{name}_{b_name}_seconds': t['b'],
          f'{name}_{b_name}_seconds_min': t['b_min'], f'{name}_{b_name}_seconds_max': t['b_max']}


# ---- PatchConv against flax.linen.Conv ---------------------------------------------------------


def xla_conv_net(channels: int, num_outputs: int):
  """lib/nets/models.ConvNet with flax.linen.Conv (XLA's convolution) in place of PatchConv: the
  same layers, names and parameter shapes, so one set of parameters serves both."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  from lib.nets import models  # pylint: disable=g-import-not-at-top

  class XlaConvNet(nn.Module):
    @nn.compact
    def __call__(self, x):  # (B, *spatial, C)
      dims = x.ndim - 2
      for i, kernel in enumerate((5, 3, 3)):
        x = nn.relu(nn.Conv(channels, (kernel,) * dims, strides=2, padding=[(1, 1)] * dims,
                            kernel_init=models.KERNEL_INIT, bias_init=models.BIAS_INIT,
                            name=f'Conv_{i}')(x))
      return nn.Dense(num_outputs, kernel_init=models.KERNEL_INIT, bias_init=models.BIAS_INIT,
                      name='Dense_0')(x.reshape(x.shape[0], -1))
  return XlaConvNet()


def conv_models(cfg: dict, datasets):
  """(PatchConv model, the same with flax.linen.Conv, (task, optimizer) for each) of the
  MNIST-1D CNN of experiments/image_classification.py."""
  from lib.experiments import image_classification  # pylint: disable=g-import-not-at-top
  from lib.nets import models  # pylint: disable=g-import-not-at-top
  from lib.runtime import train  # pylint: disable=g-import-not-at-top
  from lib.runtime import training  # pylint: disable=g-import-not-at-top
  setup = training.setup(image_classification, cfg, ('cnn', False), datasets)
  patch, task, opt = setup.model, setup.task, setup.opt
  (x, y), test_set = datasets
  module = xla_conv_net(cfg['cnn_channels'], int(max(y.max(), test_set[1].max())) + 1)
  xla = models.Model(lambda key: module.init(key, jnp.zeros((1,) + x.shape[1:])), module.apply,
                     patch.input_profile)
  xla_task = image_classification.make_task(cfg, xla, (x, y), test_set)
  return patch, xla, (task, opt), (xla_task, train.optimizer(
      cfg['optimizer'], cfg['learning_rate'], cfg['clip_norm']))


def check_same_conv(patch_apply, xla_apply, params, x, y, gradients: bool = True) -> float:
  """The two CNNs' logits (and, with `gradients`, their loss gradients) at the same parameters
  on a batch: allclose, or AssertionError. Returns the largest |difference| of the logits."""
  def loss(apply, params):
    logits = apply(params, x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=-1))
  ours, theirs = jax.jit(patch_apply)(params, x), jax.jit(xla_apply)(params, x)
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5, err_msg='CNN logits')
  if gradients:
    grads = [jax.jit(jax.grad(functools.partial(loss, apply)))(params)
             for apply in (patch_apply, xla_apply)]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5,
                                                         err_msg='CNN gradients'), *grads)
  return float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))


def patch_conv_figures(quick: bool, repeats: int) -> dict:
  """patch_conv_vs_xla_conv: `steps` Adam steps of the MNIST-1D CNN (batch 100, one seed, the
  chunk program of lib/runtime/train) with flax.linen.Conv over the same with PatchConv."""
  import experiments.image_classification as experiment  # pylint: disable=g-import-not-at-top
  from lib.experiments import image_classification  # pylint: disable=g-import-not-at-top
  steps = 50 if quick else 200
  cfg = image_classification.validate(experiment.get_config())
  datasets = image_classification.prepare(cfg)
  patch, xla, (task, opt), (xla_task, xla_opt) = conv_models(cfg, datasets)
  (x, y), _ = datasets
  params = jax.jit(patch.init)(jax.random.key(0))
  # flax.linen.Conv draws the same initial parameters (same names, shapes and keys)
  jax.tree.map(np.testing.assert_array_equal, params, jax.jit(xla.init)(jax.random.key(0)))
  worst = check_same_conv(patch.apply, xla.apply, params, jnp.asarray(x[:cfg['batch_size']]),
                          jnp.asarray(y[:cfg['batch_size']]))
  t = interleaved(chunk_runner(patch, task, opt, steps),
                  chunk_runner(xla, xla_task, xla_opt, steps), repeats)
  return {**_ratio_figures('patch_conv_vs_xla_conv', t, 'patch_conv', 'xla_conv'),
          'patch_conv_vs_xla_conv_steps': steps,
          'patch_conv_images_per_second': steps * cfg['batch_size'] / t['a'],
          'xla_conv_images_per_second': steps * cfg['batch_size'] / t['b'],
          'patch_conv_vs_xla_conv_max_abs_diff_logits': worst}


# ---- lax.map against vmap within a device --------------------------------------------------------


def main_job_config(**overrides) -> dict:
  """experiments/gradient_decay.py (the main job) with `overrides`, validated."""
  import experiments.gradient_decay as experiment  # pylint: disable=g-import-not-at-top
  config = experiment.get_config()
  config.update(overrides)
  return gradient_decay.validate(config)


def lax_map_figures(quick: bool, repeats: int) -> dict:
  """lax_map_vs_vmap_<cell>: the main job's program of a cell at its longest bucket (every scale
  and seed: 6 points) with each device vmapping all of its points at once
  (lib/runtime/devices' points batch = the points per device) over the same program with
  lax.map one point at a time (points batch 1, the default). lax_map_vs_vmap: the tanh one."""
  from lib.runtime import devices  # pylint: disable=g-import-not-at-top
  cfg = main_job_config(**({'cells': ('tanh',), 'seq_lens': (16, 32, 64)} if quick else {}))
  length = cfg['length_buckets'][-1]
  count = len(decay.scales(cfg)) * cfg['num_seeds']
  per_device = -(-count // len(devices.used_devices(count, 1)))
  figures = {'lax_map_vs_vmap_points': count, 'lax_map_vs_vmap_points_batch': per_device,
             'lax_map_vs_vmap_seq_len': length}
  for cell in cfg['cells']:
    programs = {batch: gradient_decay.program({**cfg, devices.RUN_KEY: batch}, cell, length)
                for batch in (1, per_device)}  # run_points lays points out by the program's batch
    call = lambda batch, programs=programs: decay.run_points(programs[batch], cfg,
                                                             np.asarray(length, np.int32))
    one, batched = call(1), call(per_device)
    for a, b in zip(one, batched):  # the profiles and the forward-finite flags
      np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                 rtol=1e-5, atol=1e-5, err_msg=f'{cell} vmap')
    figures[f'lax_map_vs_vmap_{cell}_max_abs_diff'] = float(
        max(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
            for a, b in zip(one, batched)))
    t = interleaved(lambda: call(1), lambda: call(per_device), repeats)
    figures.update(_ratio_figures(f'lax_map_vs_vmap_{cell}', t, 'lax_map', 'vmap'))
  figures['lax_map_vs_vmap'] = figures['lax_map_vs_vmap_tanh']
  figures['lax_map_vs_vmap_min'] = figures['lax_map_vs_vmap_tanh_min']
  figures['lax_map_vs_vmap_max'] = figures['lax_map_vs_vmap_tanh_max']
  return figures


# ---- one CPU device against one device per core --------------------------------------------------


def devices_config(quick: bool) -> dict:
  """32 tanh points (4 scales x 8 seeds) at T = 512 (128 with --quick), the main job's sizes
  (hidden 256, batch 16, inputs 32): one program."""
  seq_len = 128 if quick else 512
  return main_job_config(cells=('tanh',), seq_lens=(seq_len,), sigma_w2=(1.0, 2.0, 3.0, 4.0),
                         num_seeds=8, length_buckets=())


def time_sweep_program(quick: bool, repeats: int, out: str) -> dict:
  """In this process (its device count set by --cpu_devices): the `devices_config` program
  after a warm-up, `repeats` calls; its profiles saved to `out` (.npy), its seconds returned."""
  cfg = devices_config(quick)
  seq_len = cfg['seq_lens'][0]
  program = gradient_decay.program(cfg, 'tanh', seq_len)
  call = lambda: decay.run_points(program, cfg, np.asarray(seq_len, np.int32))
  np.save(out, np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in call()]))
  t = timed(call, repeats)
  return {**t, 'devices': jax.device_count(), 'used_devices': len(program.devices),
          'points': len(decay.scales(cfg)) * cfg['num_seeds'], 'seq_len': seq_len}


def _sweep_program_process(devices_count: int, quick: bool, repeats: int, out: str) -> dict:
  """`time_sweep_program` in a fresh process split into `devices_count` CPU devices."""
  env = {k: v for k, v in os.environ.items() if k != 'JAX_NUM_CPU_DEVICES'}
  env['XLA_FLAGS'] = ' '.join(f for f in env.get('XLA_FLAGS', '').split()
                              if 'xla_force_host_platform_device_count' not in f)
  result = subprocess.run(
      [sys.executable, os.path.abspath(__file__), f'--cpu_devices={devices_count}',
       f'--repeats={repeats}', '--time_sweep_program', out] + (['--quick'] if quick else []),
      env=env, capture_output=True, text=True, check=False)
  if result.returncode:
    raise RuntimeError(f'time_sweep_program on {devices_count} device(s) failed:\n'
                       f'{result.stderr[-3000:]}')
  return json.loads(result.stdout.strip().splitlines()[-1])


def devices_figures(quick: bool, repeats: int) -> dict:
  """devices_per_core: the `devices_config` program on one CPU device over the same on one
  device per core (lib/runtime/cli.cores()), each in a fresh process that times it after a
  warm-up (median of `repeats` calls); the two processes run in turn, `repeats` rounds (2 with
  --quick), and the figure is the median over rounds of the one-device seconds over the
  per-core seconds. The profiles are checked equal (the sweeps are bit-identical at any device
  count)."""
  per_core = cli.cores()
  rounds, inner = (2, 2) if quick else (repeats, 3)
  one, many = [], []
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(rounds):
      one.append(_sweep_program_process(1, quick, inner, f'{tmp}/one{r}.npy'))
      many.append(_sweep_program_process(per_core, quick, inner, f'{tmp}/many{r}.npy'))
    a, b = np.load(f'{tmp}/one0.npy'), np.load(f'{tmp}/many0.npy')
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg='one device against per core')
  ratios = [o['median'] / m['median'] for o, m in zip(one, many)]
  seconds_one, seconds_many = [o['median'] for o in one], [m['median'] for m in many]
  return {'devices_per_core': statistics.median(ratios), 'devices_per_core_min': min(ratios),
          'devices_per_core_max': max(ratios), 'devices_per_core_devices': per_core,
          'devices_per_core_used_devices': many[0]['used_devices'],
          'devices_per_core_points': many[0]['points'],
          'devices_per_core_seq_len': many[0]['seq_len'],
          'devices_per_core_one_device_seconds': statistics.median(seconds_one),
          'devices_per_core_one_device_seconds_min': min(seconds_one),
          'devices_per_core_one_device_seconds_max': max(seconds_one),
          'devices_per_core_per_core_seconds': statistics.median(seconds_many),
          'devices_per_core_per_core_seconds_min': min(seconds_many),
          'devices_per_core_per_core_seconds_max': max(seconds_many),
          'devices_per_core_bit_identical': bool(np.array_equal(a, b))}


# ---- the dry run's estimates against measured times ----------------------------------------------


def _slug(name: str) -> str:
  return name.replace(' T=', '_T').replace(' clip=', '_clip').replace(' ', '_').replace('.', 'p')


def estimate_cases(quick: bool) -> list:
  """[(kind, name, dry_run.Program, call() -> None)]: the main job's programs (with --quick its
  lengths up to 64: one bucket) and the training chunk of long-range memory's `TRAINING_CHUNKS`
  groups, each with its real arguments, as the run calls it."""
  import experiments.long_range_memory as memory_experiment  # pylint: disable=g-import-not-at-top
  from lib.experiments import long_range_memory  # pylint: disable=g-import-not-at-top
  from lib.runtime import devices  # pylint: disable=g-import-not-at-top
  from lib.runtime import training  # pylint: disable=g-import-not-at-top
  cases = []
  cfg = main_job_config(**({'seq_lens': (16, 32, 64)} if quick else {}))
  for program in gradient_decay.programs(cfg):
    length = np.asarray(int(program.name.split('T=')[1]), np.int32)
    cases.append(('decay', program.name, program,
                  functools.partial(decay.run_points, program.fn, cfg, length)))
  memory_cfg = long_range_memory.validate(memory_experiment.get_config())
  seeds = np.asarray(sweep.seeds(memory_cfg), np.int32)
  count = len(seeds)
  for group in TRAINING_CHUNKS[quick]:
    init, chunk, _ = long_range_memory.programs(memory_cfg, [(group, ())])
    task = training.setup(long_range_memory, memory_cfg, group).task
    padded = devices.put(devices.pad(seeds, count), True, count)
    state = [init.fn(padded)]
    data = devices.put(task.data, False, count)
    def call(chunk=chunk, state=state, padded=padded, data=data):
      state[0] = chunk.fn((state[0], padded), data)
      jax.block_until_ready(state[0])
    cases.append(('training', chunk.name, chunk, call))
  return cases


# long_range_memory's (cell, clip_norm, T) whose chunk of log_every (50) steps is estimated: its
# default's middle length, every model (with --quick the tanh RNN at the shortest).
TRAINING_CHUNKS = {False: [(cell, 1.0, 100) for cell in ('tanh', 'irnn', 'lstm', 'gru',
                                                          'attention')],
                   True: [('tanh', 1.0, 50)]}


def dry_run_figures(quick: bool, repeats: int) -> dict:
  """dry_run_estimate_<kind>_min, _max: over the programs of a kind (decay: the main job's,
  training: long-range memory's chunks), the dry run's estimated seconds per call
  (lib/runtime/dry_run: the program's counted flops and operations times the costs fitted to its
  reference programs) over the measured seconds per call, in the same process. Each round
  calibrates (as the dry run does) and then times one call of every program (after a warm-up
  call each); a program's ratio is its median over the rounds."""
  from lib.runtime import dry_run  # pylint: disable=g-import-not-at-top
  cases = estimate_cases(quick)
  costs = [dry_run.cost(program.fn.trace(*program.args), program.args)
           for _, _, program, _ in cases]
  for *_, call in cases:
    call()  # compiles, and warms up
  ratios = [[] for _ in cases]
  estimates = [[] for _ in cases]
  measured = [[] for _ in cases]
  for _ in range(repeats):
    per_flop, per_op = dry_run.calibrate('float32')
    for i, (*_, call) in enumerate(cases):
      start = time.perf_counter()
      call()
      measured[i].append(time.perf_counter() - start)
      estimates[i].append(float(costs[i] @ np.asarray([per_flop, per_op])))
      ratios[i].append(estimates[i][-1] / measured[i][-1])
  figures = {}
  for (kind, name, _, _), ratio, estimate, seconds in zip(cases, ratios, estimates, measured):
    slug = _slug(name)
    figures[f'dry_run_estimate_{slug}'] = statistics.median(ratio)
    figures[f'dry_run_estimate_{slug}_min'] = min(ratio)
    figures[f'dry_run_estimate_{slug}_max'] = max(ratio)
    figures[f'dry_run_estimate_{slug}_estimated_seconds'] = statistics.median(estimate)
    figures[f'dry_run_estimate_{slug}_measured_seconds'] = statistics.median(seconds)
  for kind in ('decay', 'training'):
    medians = [statistics.median(r) for (k, *_), r in zip(cases, ratios) if k == kind]
    figures[f'dry_run_estimate_{kind}_min'] = min(medians)
    figures[f'dry_run_estimate_{kind}_max'] = max(medians)
    figures[f'dry_run_estimate_{kind}_programs'] = len(medians)
  return figures



# ---- language models against PyTorch eager -----------------------------------------------------


def lm_setup(config: str, name: str, hoist: bool = True) -> tuple:
  """(cfg, corpus, model, task, opt) of model `name` of experiments/<config>.py at its longest
  context, as lib/experiments/language_model trains it; the chunk's validation cut to one
  segment (eval_tokens = context + 2), so that a timed chunk is the training steps."""
  import importlib  # pylint: disable=g-import-not-at-top

  from lib.experiments import language_model  # pylint: disable=g-import-not-at-top
  from lib.experiments import model_settings  # pylint: disable=g-import-not-at-top
  from lib.runtime import train  # pylint: disable=g-import-not-at-top
  cfg = language_model.validate(importlib.import_module(f'experiments.{config}').get_config())
  length = max(cfg['context_lens'])
  cfg['eval_tokens'] = length + 2
  corpus = language_model.prepare(cfg)
  model = model_settings.language_model(name, cfg, len(corpus['vocabulary']), length, hoist=hoist)
  task = language_model.make_task(cfg, model, corpus, length)
  opt = train.optimizer(cfg['optimizer'], language_model.learning_rate(cfg, corpus, length),
                        cfg['clip_norm'])
  return cfg, corpus, model, task, opt


def check_same_lm(task, params, torch_model) -> float:
  """The loss of the first training segment (zero state) and its gradient's global norm, ours
  at `params` against torch_model's (those weights copied over): the larger relative difference,
  raised if over 1e-4."""
  import optax  # pylint: disable=g-import-not-at-top

  from bench import torch_side  # pylint: disable=g-import-not-at-top
  batch = task.batch(task.data, 0, 0)
  loss, grads = jax.jit(jax.value_and_grad(lambda p: task.loss(p, batch, task.carry(0))[0]))(
      params)
  theirs = torch_side.lm_loss_and_grad_norm(torch_model, batch['x'], batch['y'])
  ours = (float(loss), float(optax.global_norm(grads)))
  worst = max(abs(a - b) / abs(b) for a, b in zip(ours, theirs))
  if worst > 1e-4:
    raise AssertionError(f'torch computes another model: loss and gradient norm {theirs} against '
                         f'ours {ours}')
  return worst


def _lm_side_by_side(key: str, config: str, name: str, steps: int, repeats: int,
                     cell_side: bool) -> dict:
  """lm_<key>_vs_torch: torch's seconds for `steps` training steps over ours (ours: the chunk
  program of lib/runtime/train), both tokens per second; with cell_side, lm_hoisted_vs_cell:
  the same model with the Flax cell's step (no hoisted input projection) over ours."""
  from lib.runtime import rng  # pylint: disable=g-import-not-at-top
  cfg, _, model, task, opt = lm_setup(config, name)
  length = max(cfg['context_lens'])
  tokens = steps * cfg['batch_size'] * length
  ours = chunk_runner(model, task, opt, steps)
  figures = {}
  if cell_side:
    _, _, plain_model, plain_task, plain_opt = lm_setup(config, name, hoist=False)
    t = interleaved(ours, chunk_runner(plain_model, plain_task, plain_opt, steps), repeats)
    figures.update(_ratio_figures('lm_hoisted_vs_cell', t, 'hoisted', 'cell'))
  try:
    from bench import torch_side  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    print(f'lm_{key}_vs_torch skipped: {e} (pip install ".[bench]")', file=sys.stderr)
    return figures
  params = jax.jit(model.init)(rng.stream_key(0, 'init'))  # ours at seed 0, copied to torch
  host_params = jax.device_get(params)
  torch_model = (torch_side.lstm_lm_from_flax(host_params) if name == 'lstm' else
                 torch_side.transformer_lm_from_flax(host_params, cfg['num_heads']))
  figures[f'lm_{key}_same_loss_relative_difference'] = check_same_lm(task, params, torch_model)
  theirs = torch_side.lm_trainer(torch_model, task.data['train'], length, cfg['optimizer'],
                                 cfg['learning_rate'], cfg['clip_norm'])
  t = interleaved(ours, lambda: theirs(steps), repeats)
  figures.update(_ratio_figures(f'lm_{key}_vs_torch', t, 'ours', 'torch'))
  figures[f'lm_{key}_tokens_per_second'] = tokens / t['a']
  figures[f'lm_{key}_torch_tokens_per_second'] = tokens / t['b']
  return figures


def lm_figures(quick: bool, repeats: int) -> dict:
  """The ptb_small LSTM (experiments/ptb_small.py) and the default config's char transformer at
  context 64 (experiments/language_model.py), each against PyTorch eager."""
  return {**_lm_side_by_side('lstm', 'ptb_small', 'lstm', 5 if quick else 20, repeats,
                             cell_side=True),
          **_lm_side_by_side('transformer', 'language_model', 'transformer',
                             10 if quick else 50, repeats, cell_side=False)}


# ---- the parallel scan of a linear recurrence ---------------------------------------------------


def scan_figures(quick: bool, repeats: int) -> dict:
  """scan_parallel_vs_sequential_<T>: forward and backward of an lru layer (lib/nets/lru: batch
  16, width 256, ring 0.9-0.999) over T steps with lax.scan, over the same with
  lax.associative_scan, both jitted, T = 1,024, 4,096, 16,384 (1,024 with --quick); the outputs
  checked allclose first."""
  from lib.nets import lru  # pylint: disable=g-import-not-at-top
  params = lru.init('lru', jax.random.key(0), 256, 256, 256, r_min=0.9, r_max=0.999)

  def loss(params, xs, parallel):
    return jnp.sum(lru.apply(params, xs, parallel=parallel)[0] ** 2)
  grad = jax.jit(jax.value_and_grad(loss), static_argnames='parallel')
  figures = {}
  for length in (1024,) if quick else (1024, 4096, 16384):
    xs = jax.random.normal(jax.random.key(1), (length, 16, 256))
    np.testing.assert_allclose(grad(params, xs, parallel=True)[0],
                               grad(params, xs, parallel=False)[0], rtol=1e-3)
    t = interleaved(lambda: jax.block_until_ready(grad(params, xs, parallel=True)),
                    lambda: jax.block_until_ready(grad(params, xs, parallel=False)),
                    repeats if length < 16384 else min(repeats, 2))
    figures.update(_ratio_figures(f'scan_parallel_vs_sequential_{length}', t, 'parallel',
                                  'sequential'))
  return figures


BENCHMARKS = {'sweep': sweep_figures, 'gflops': gflops_figures, 'cnn': cnn_figures,
              'main_job': main_job_figures, 'patch_conv_vs_xla_conv': patch_conv_figures,
              'lax_map_vs_vmap': lax_map_figures, 'devices_per_core': devices_figures,
              'dry_run_estimate': dry_run_figures, 'lm': lm_figures, 'scan': scan_figures}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help='smaller grids, fewer repeats')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--json', help='write every figure to this file as a flat JSON object')
  parser.add_argument('--cpu_devices', type=int, default=None,
                      help='devices to split a CPU host into, as run.py (default: one per core)')
  parser.add_argument('--only', default=','.join(BENCHMARKS),
                      help=f'comma-separated subset of {",".join(BENCHMARKS)}')
  parser.add_argument('--time_sweep_program', metavar='NPY', help=argparse.SUPPRESS)  # internal:
  # devices_per_core's side in a fresh process: times the program, prints JSON, saves the profiles
  args = parser.parse_args()
  if args.time_sweep_program:
    cli.set_cpu_devices(args.cpu_devices)
    print(json.dumps(time_sweep_program(args.quick, args.repeats, args.time_sweep_program)))
    return
  unknown = [n for n in args.only.split(',') if n not in BENCHMARKS]
  if unknown:
    parser.error(f'unknown benchmark {unknown[0]!r}; valid: {", ".join(BENCHMARKS)}')
  repeats = 2 if args.quick else args.repeats
  cli.set_cpu_devices(args.cpu_devices)  # as run.py does, before JAX starts its backends
  figures = {'jax_version': jax.__version__, 'backend': jax.default_backend(),
             'devices': jax.device_count(),
             'load_average_at_start': os.getloadavg()[0]}  # this machine shared with others
  for name in args.only.split(','):
    figures.update(BENCHMARKS[name](args.quick, repeats))
  for name, value in figures.items():
    text = f'{value:.4g}' if isinstance(value, float) else str(value)
    print(f'{name:<48} {text:>12}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(figures, f, indent=2)


if __name__ == '__main__':
  main()
