"""`run.py --dry_run`: what a sweep would compute, and an estimate of what it would cost, without
computing it or writing anything.

Each experiment lists the programs of a list of groups (`programs(cfg, groups, *prepared)`:
the jitted function, abstract arguments, and how many times the sweep calls it). For each, the
estimate takes:
- time: its floating-point operations and its operations (kernel launches before fusion),
  counted on its jaxpr with every scan body multiplied by its length (XLA's own cost analysis
  counts a loop body once), times a cost per flop and a cost per operation fitted here to two
  reference programs (tanh RNNs: a wide one, flop-bound, and a tiny one, overhead-bound). On
  this 2-core CPU the estimates of the gradient-decay programs were 0.83-1.09 of the measured
  times, and of the training chunks of the sequence models 1.3-1.7 times too low;
- peak memory per device: XLA's buffer assignment of the compiled program (arguments + outputs
  - aliased + temporaries: `lib.runtime.limits.need`), beside the memory free; a program that
  would not fit is marked (a run stops before its first point on it). Compiling costs what the
  run's compile would (0.1-3 s a program).
The dry run writes no results; the programs it compiles may go to the compilation cache. It runs
as one process: for a multi-process run, the device count and memory per device are this
host's, and the time divides by the number of processes.
"""

import math
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lib.runtime import devices
from lib.runtime import limits
from lib.runtime import sweep


class Program(NamedTuple):
  name: str  # e.g. 'tanh T=512'
  fn: Callable  # jitted
  args: tuple  # jax.ShapeDtypeStruct (or arrays)
  calls: int  # how many times the sweep runs it


def points_args(count: int, *dtypes, batch: int = 1) -> tuple:
  """The abstract points of a `devices.map_points` program: `count` points, `batch` at a time
  on a device (padded as `devices.padded_count` does, sharded as `devices.put` shards them),
  each a tuple of scalars of these dtypes."""
  return tuple(jax.ShapeDtypeStruct((devices.padded_count(count, batch),), jnp.dtype(d),
                                    sharding=devices.sharding(True, count, batch))
               for d in dtypes)


def _cost(jaxpr, times: int = 1) -> np.ndarray:
  """[floating-point operations, operations] of a jaxpr: 2 K flops per output of a dot or
  convolution (K the contracted size), one per output element of anything else; scan bodies
  count times their length. The operation count stands for the per-kernel overhead that
  dominates small programs."""
  total = np.zeros(2)
  for eqn in jaxpr.eqns:
    name, params = eqn.primitive.name, eqn.params
    if name == 'scan':
      total += _cost(params['jaxpr'].jaxpr, times * params['length'])
      continue
    if name == 'cond':
      total += max((_cost(branch.jaxpr, times) for branch in params['branches']),
                   key=lambda c: c[0])
      continue
    inner = [params[k] for k in ('jaxpr', 'call_jaxpr', 'fun_jaxpr', 'body_jaxpr') if k in params]
    if inner:  # jit, shard_map, custom_jvp/vjp, while (its trip count unknown: counted once)
      total += sum(_cost(getattr(j, 'jaxpr', j), times) for j in inner)
      continue
    outputs = sum(math.prod(getattr(v.aval, 'shape', ())) for v in eqn.outvars)
    if name == 'dot_general':
      (contract, _), _ = params['dimension_numbers']
      outputs *= 2.0 * math.prod(eqn.invars[0].aval.shape[d] for d in contract)
    elif name == 'conv_general_dilated':
      rhs = eqn.invars[1].aval.shape
      outputs *= 2.0 * math.prod(rhs) / rhs[params['dimension_numbers'].rhs_spec[0]]
    total += times * np.asarray([outputs, 1.0])
  return total


def cost(fn: Callable, args: tuple) -> np.ndarray:
  """[flops, operations] of fn(*args) (`_cost`); fn jitted, or a jax.stages.Traced of it."""
  traced = fn if isinstance(fn, jax.stages.Traced) else jax.jit(fn).trace(*args)
  return _cost(traced.jaxpr.jaxpr)


def _rnn_reference(hidden: int, batch: int, steps: int, dtype):
  """A tanh RNN's forward and backward pass: (jitted function, arguments)."""
  def loss(w, xs):
    h, _ = lax.scan(lambda h, x: (jnp.tanh(h @ w + x), None), jnp.zeros((batch, hidden), dtype),
                    xs)
    return jnp.sum(h)
  w = jnp.asarray(np.random.default_rng(0).normal(size=(hidden, hidden)) / np.sqrt(hidden), dtype)
  return jax.jit(jax.grad(loss)), (w, jnp.ones((steps, batch, hidden), dtype))


def _seconds(fn, args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def calibrate(dtype='float32', repeats: int = 5) -> np.ndarray:
  """[seconds per flop, seconds per operation] on this device in `dtype`, fitted to two tanh
  RNNs timed here (medians of `repeats` runs after a warm-up): hidden 256, batch 64
  (flop-bound) and hidden 4, batch 4 (overhead-bound)."""
  references = [_rnn_reference(256, 64, 64, dtype), _rnn_reference(4, 4, 512, dtype)]
  costs = np.stack([cost(fn, args) for fn, args in references])
  seconds = np.asarray([_seconds(fn, args, repeats) for fn, args in references])
  return np.maximum(np.linalg.solve(costs, seconds), 0.0)


def _swept(cfg: dict, grid_keys) -> str:
  """The grid's axes: the experiment's GRID_KEYS of more than one value (default: every key
  holding a list of several)."""
  keys = grid_keys if grid_keys is not None else [k for k in cfg if k != 'shard']
  lists = {k: cfg[k] for k in keys
           if isinstance(cfg.get(k), (list, tuple)) and len(cfg[k]) > 1}
  return ' x '.join(f'{k} ({len(v)}: {", ".join(map(str, v[:4]))}{", ..." if len(v) > 4 else ""})'
                    for k, v in lists.items()) or 'one point per seed'


def report(experiment, cfg: dict, prepared: tuple = (), shard: tuple = (0, 1)) -> str:
  """The dry run's printout: grid, points, programs, and per-program estimates; where a program
  would not fit, the experiment's SHRINK_KEYS that make it smaller."""
  groups = sweep.shard_of(experiment.grid(cfg), shard)
  points = sum(len(keys) for _, keys in groups)
  programs = experiment.programs(cfg, groups, *prepared)
  with jax.enable_x64(cfg.get('dtype') == 'float64'):
    per_flop, per_op = calibrate(cfg.get('dtype', 'float32'))
    rows, total = [], 0.0
    for program in programs:
      seconds = float(cost(program.fn.trace(*program.args), program.args)
                      @ np.asarray([per_flop, per_op]))
      total += seconds * program.calls
      executable = program.fn.compile(*program.args)
      needed, free, source = limits.fits(program, executable)
      rows.append((program.name, program.calls, seconds, limits.need(executable),
                   needed is not None and free is not None and needed > free))
  width = max([len('program')] + [len(r[0]) for r in rows])
  lines = [
      f'dry run of {cfg["experiment"]}: no point is computed, no result written',
      f'grid: {_swept(cfg, getattr(experiment, "GRID_KEYS", None))}; '
      f'seeds {cfg["seed"]}..{cfg["seed"] + cfg["num_seeds"] - 1}',
      f'points: {points} in {len(groups)} groups'
      + (f' (shard {shard[0]} of {shard[1]})' if shard[1] > 1 else ''),
      f'programs to compile: {len(programs)}, each over up to {jax.device_count()} device(s) '
      f'({jax.devices()[0].platform}; one process)'
      + (f', {devices.points_batch_of(cfg)} points at a time'
         if devices.points_batch_of(cfg) > 1 else ''),
      f'calibrated here: {1e-9 / per_flop if per_flop else float("inf"):.1f} GFLOP/s and '
      f'{per_op * 1e6:.2f} us per operation (tanh RNNs, forward+backward)',
      f'{"program":<{width}}  calls  s/call (est.)  peak memory/device']
  lines += [f'{name:<{width}}  {calls:>5}  {seconds:>13.3g}  {limits.size(peak):>18}'
            + ('  does not fit' if too_big else '') for name, calls, seconds, peak, too_big in rows]
  if any(row[-1] for row in rows):
    lines.append('a program does not fit; make it smaller: '
                 + limits.shrink_hint(cfg, getattr(experiment, 'SHRINK_KEYS', ())))
  lines.append(f'estimated compute: {total:.3g} s for the whole grid, plus compiling (0.1-3 s a '
               'program on CPU; none on a rerun with the compilation cache)')
  if programs:
    free, source = limits.available(
        [d for d in programs[0].fn.devices if d.process_index == jax.process_index()])
    lines.append(f'memory free: {limits.size(free)} ({source}); on a CPU its devices share it, '
                 'each holding its peak' if programs[0].fn.devices[0].platform == 'cpu' else
                 f'memory free per device: {limits.size(free)} ({source})')
  return '\n'.join(lines)
