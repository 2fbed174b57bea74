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
    return {group: sweep.run_points(program, cfg, np.asarray(group[1], np.int32))[0]
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
                                for s in sweep.seeds(cfg)] for w, _ in sweep.scales(cfg)])
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
          for w, b in sweep.scales(cfg) for s in sweep.seeds(cfg)]
  _, profiles = torch_side.sweep_seconds(grid)
  theirs, i = {}, 0
  count = len(sweep.scales(cfg)) * cfg['num_seeds']
  for group, _ in gradient_decay.grid(cfg):
    theirs[group] = np.asarray(profiles[i:i + count]).reshape(
        len(sweep.scales(cfg)), cfg['num_seeds'], -1)
    i += count
  # Above sigma_w2 = 2 the tanh RNN is chaotic: torch's and XLA's float32 roundings of the
  # forward pass grow apart exponentially (by O(1) nats at T = 128), so those are not compared.
  ordered = [i for i, (w, _) in enumerate(sweep.scales(cfg)) if w <= 2.0]
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
  from lib.runtime import devices  # pylint: disable=g-import-not-at-top
  from lib.runtime import train  # pylint: disable=g-import-not-at-top
  cfg = image_classification.validate(experiment.get_config())
  datasets = image_classification.prepare(cfg)
  model, task, opt = image_classification._setup(cfg, datasets, ('cnn', False))  # pylint: disable=protected-access
  seeds = devices.put(np.zeros(devices.padded_count(1), np.int32), True, 1)
  init = train.init_program(model.init, task, opt, 10**6, 1)
  chunk = train.chunk_program(task, opt, steps, 1)
  data = devices.put(task.data, False, 1)
  state = [init(seeds)]
  def run():
    state[0] = chunk((state[0], seeds), data)
    jax.block_until_ready(state[0])
  return datasets, cfg, run


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


BENCHMARKS = {'sweep': sweep_figures, 'gflops': gflops_figures, 'cnn': cnn_figures,
              'main_job': main_job_figures}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help='smaller grids, fewer repeats')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--json', help='write every figure to this file as a flat JSON object')
  parser.add_argument('--cpu_devices', type=int, default=None,
                      help='devices to split a CPU host into, as run.py (default: one per core)')
  parser.add_argument('--only', default=','.join(BENCHMARKS),
                      help=f'comma-separated subset of {",".join(BENCHMARKS)}')
  args = parser.parse_args()
  unknown = [n for n in args.only.split(',') if n not in BENCHMARKS]
  if unknown:
    parser.error(f'unknown benchmark {unknown[0]!r}; valid: {", ".join(BENCHMARKS)}')
  repeats = 2 if args.quick else args.repeats
  cli.set_cpu_devices(args.cpu_devices)  # as run.py does, before JAX starts its backends
  figures = {'jax_version': jax.__version__, 'backend': jax.default_backend(),
             'devices': jax.device_count()}
  for name in args.only.split(','):
    figures.update(BENCHMARKS[name](args.quick, repeats))
  for name, value in figures.items():
    text = f'{value:.4g}' if isinstance(value, float) else str(value)
    print(f'{name:<40} {text:>12}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(figures, f, indent=2)


if __name__ == '__main__':
  main()
