"""Independent points (sweep points, training seeds) spread over every device in one program.

`map_points(fn, count)` compiles one program over a Mesh of the devices (`jax.devices()`: every
process's, in a multi-process run) with one axis, 'points': the points' leading axis is sharded
along it (`shard_map`), and each device runs `lax.map(fn)` over its own block, one point after
another. Points are padded to a multiple of the device count by repeating the last one, and
`run_points` drops the padding before anything sees it. In one process, a program of fewer
points than devices uses only as many devices as it has points (`used_devices`), rather than
computing copies of the last point on the others.

Why lax.map and not vmap within a device: a vmapped matmul's blocking, so the order of its sums,
depends on how many points are batched, which moves float32 results by an ulp when the device
count changes (and training amplifies an ulp into visible differences). With lax.map every point
runs the very same per-point program whatever the number of devices or processes, so results
are bit-identical on one backend. On CPU it costs no more than vmap (tanh RNN profiles, LSTM, and
training chunks of every sequence model measured within 15%, most within 5%). An accelerator
wants wider batches: `map_points(..., batch=B)` makes each device vmap its points B at a time
(lax.map's batch_size, the points padded to a multiple of B x devices), and results are then
bit-identical across device counts for that B. The batch is an argument of every function here
that lays points out, never a setting of the module: a run's comes from its config
(`points_batch_of`, the --points_batch flag recorded by lib/runtime/jobs).

On one device this is one plain jitted program. Inputs are host (numpy) arrays that every process
holds whole; outputs come back as numpy on every process.

Many processes (`jax.distributed`, lib/runtime/cli.initialize_distributed) run the same Python in
lockstep, each computing its devices' share of every program. Process 0 alone reads and writes
the workdir; what it reads that steers the run (which points are done, a training checkpoint, a
stop requested by SIGTERM) reaches the others through `broadcast` and `any_process`, so that
every process takes the same branches and calls the same programs.
"""

from typing import Callable

import jax
from jax import lax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
import numpy as np

from lib.runtime import compiled
from lib.runtime.errors import UserError

AXIS = 'points'
RUN_KEY = 'points_batch'  # in a run's config where above 1 (lib/runtime/jobs)


def check_points_batch(size: int) -> int:
  """`size` points vmapped together on a device, checked: a positive integer."""
  if not isinstance(size, int) or size < 1:
    raise UserError(f'--points_batch={size}: need a positive integer (1: one point at a time)')
  return size


def points_batch_of(cfg: dict) -> int:
  """The points batch of a run: its config's (lib/runtime/jobs records it there above 1)."""
  return int(cfg.get(RUN_KEY, 1))


def used_devices(count: int, batch: int = 1) -> list:
  """The devices a program of `count` points, `batch` at a time on a device, runs on: in one
  process, the first ceil(count / batch) devices, at most all of them; in a multi-process run
  every device of every process (process 0's first), so that every process takes part in every
  program."""
  every = jax.devices()
  if jax.process_count() > 1:
    return every
  return every[:max(1, min(len(every), -(-count // batch)))]


def mesh(count: int, batch: int = 1) -> Mesh:
  """The devices of a program of `count` points (`used_devices`) along one axis."""
  return Mesh(np.asarray(used_devices(count, batch)), (AXIS,))


def padded_count(count: int, batch: int = 1) -> int:
  """`count` rounded up to a multiple of its devices' count times the points batch."""
  step = len(used_devices(count, batch)) * batch
  return -(-count // step) * step


def pad(points, count: int, batch: int = 1):
  """Each leaf's leading axis (of length `count`) padded to `padded_count(count, batch)` by
  repeating its last entry."""
  extra = padded_count(count, batch) - count
  return jax.tree.map(lambda a: np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]), points)


def sharding(split: bool, count: int, batch: int = 1) -> NamedSharding:
  """How a program of `count` points holds an argument: sharded along its leading axis (`split`:
  the points), or replicated (what every point shares)."""
  return NamedSharding(mesh(count, batch), PartitionSpec(AXIS) if split else PartitionSpec())


def put(tree, split: bool, count: int, batch: int = 1):
  """Host arrays (whole on every process) as global arrays on the devices of a program of
  `count` points: sharded along their leading axis (`split`), or replicated."""
  where = sharding(split, count, batch)
  def one(a):
    a = np.asarray(a)
    return jax.make_array_from_callback(a.shape, where, lambda index: a[index])
  return jax.tree.map(one, tree)


def put_like(tree, like):
  """Host arrays (whole on every process) as global arrays sharded as the arrays of `like` (of
  the same shapes) are: a checkpoint restored as the program that made it left its state."""
  def one(a, model):
    a = np.asarray(a)
    return jax.make_array_from_callback(a.shape, model.sharding, lambda index: a[index])
  return jax.tree.map(one, tree, like)


def abstract(tree, split: bool, count: int, batch: int = 1):
  """What `put(tree, split, count, batch)` gives, as jax.ShapeDtypeStructs (shapes, dtypes and
  the shardings), for compiling a program before its arguments exist."""
  where = sharding(split, count, batch)
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=where), tree)


def fetch(tree):
  """Global arrays as numpy, whole, on every process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def map_points(fn: Callable, count: int, num_shared: int = 0,
               batch: int = 1) -> compiled.Program:
  """jit(f)(points, *shared): fn(point, *shared) for each of `count` points along the leading
  axis of the `points` pytree (padded to `padded_count(count, batch)`, sharded over
  `mesh(count, batch)`), `batch` at a time on each device (vmapped: lax.map's batch_size); the
  `shared` arguments are replicated. Outputs are stacked along a leading axis, sharded like
  `points`. A `lib.runtime.compiled.Program` that knows its `count` and `batch`
  (`run_points` lays its arguments out by them)."""
  def per_device(points, *shared):
    return lax.map(lambda point: fn(point, *shared), points,
                   batch_size=batch if batch > 1 else None)
  program = compiled.Program(
      jax.jit(jax.shard_map(per_device, mesh=mesh(count, batch),
                            in_specs=(PartitionSpec(AXIS),) + (PartitionSpec(),) * num_shared,
                            out_specs=PartitionSpec(AXIS), check_vma=False), keep_unused=True),
      used_devices(count, batch))
  program.count, program.batch = count, batch
  return program


def one_at_a_time(fn: Callable) -> Callable:
  """fn(x) that, when vmapped (over layers, or over points by a points batch above 1), runs as a
  lax.map over the batch: one call per element instead of one batched call. The values are the
  same (a batched LAPACK kernel loops over its matrices).

  Why: jaxlib 0.10's CPU LAPACK kernels (QR among them) split a batch of matrices over XLA's
  intra-op thread pool and block until the parts finish. With one CPU device per core
  (lib/runtime/cli.cpu_device_count), every pool thread may be running a device's program that sits
  in such a kernel, leaving no thread for the parts: a deadlock (seen with the CNN's
  delta-orthogonal kernels, a QR per layer). Unbatched, the kernel runs on its own thread.
  """
  @jax.custom_batching.custom_vmap
  def wrapped(x):
    return fn(x)

  @wrapped.def_vmap
  def rule(axis_size, in_batched, x):
    del axis_size
    if not in_batched[0]:
      out = wrapped(x)
      return out, jax.tree.map(lambda _: False, out)
    out = lax.map(wrapped, x)
    return out, jax.tree.map(lambda _: True, out)

  return wrapped


def is_leader() -> bool:
  """Whether this is process 0, the one that reads and writes the workdir."""
  return jax.process_index() == 0


def broadcast(tree):
  """Process 0's value of a pytree of host arrays (or numbers), on every process."""
  if jax.process_count() == 1:
    return tree
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(tree))


def on_leader(fn: Callable, *args):
  """fn(*args) on process 0 alone: its result there, None on the others. If it raises, every
  process raises (process 0 its own error, the others a UserError that points to it), so that
  none waits in a collective for a process that has failed."""
  result, error = None, None
  if is_leader():
    try:
      result = fn(*args)
    except Exception as e:  # pylint: disable=broad-except  (re-raised below, on every process)
      error = e
  failed = error is not None
  if jax.process_count() > 1:
    failed = bool(broadcast(np.asarray(failed)))
  if error is not None:
    raise error
  if failed:
    raise UserError('process 0 failed (its error says why); this process stops with it')
  return result


def any_process(flag: bool) -> bool:
  """Whether `flag` holds on any process (the same answer on all)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.any(multihost_utils.process_allgather(np.asarray([flag]))))


def run_points(program: Callable, points, *shared):
  """program (from `map_points`) on host `points` whose leaves share a leading axis, laid out
  by the program's points batch; returns numpy outputs without the padding."""
  count, batch = len(jax.tree.leaves(points)[0]), getattr(program, 'batch', 1)
  outputs = program(put(pad(points, count, batch), True, count, batch),
                    *put(shared, False, count, batch))
  return jax.tree.map(lambda a: a[:count], fetch(outputs))
