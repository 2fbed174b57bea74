"""Training: optax with optional gradient clipping, all seeds of a model in one compiled program,
checkpointed by orbax so a killed run resumes where it stopped (from the checkpoint before, if the
last one was damaged); divergence is a status.

The state of every seed is stacked on a leading axis, and one jitted program runs `log_every` steps
of all of them (a lax.scan per seed, the seeds spread over every device by `lib.runtime.devices`),
then logs the mean training loss of those steps and the task's held-out metrics (`Task.evaluate`) as
the next point of each curve. Batch `step` of seed s is `task.batch(data, s, step)` (with the
epoch's value, `Task.epoch`, as a fourth argument for tasks that have one), a function of (seed,
step) alone, so a run restored from a checkpoint sees the very same batches and runs the very same
programs as an uninterrupted one, and ends with bit-identical parameters.

A step whose loss, gradient or new parameters are not finite marks its seed diverged: the
seed's parameters stay as they were before that step, and its curves read NaN from there on
(Pascanu, Mikolov & Bengio 2013 is the case in point: exploding gradients are data, not a crash).
"""

import importlib.util
import json
import logging as std_logging
import math
import os
import shutil
import sys
import threading
import time
from typing import Any, Callable, NamedTuple, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from jax import lax

from lib.runtime import compiled
from lib.runtime import config as config_lib
from lib.runtime import devices
from lib.runtime import errors
from lib.runtime import preemption
from lib.runtime import rng
from lib.runtime import sweep
from lib.runtime.results import write_atomic
from lib.runtime.errors import UserError

OPTIMIZERS = {'adam': optax.adam, 'rmsprop': optax.rmsprop, 'sgd': optax.sgd}

# Config keys of every training experiment (checked together by `check_schedule`).
SPEC = {
    'num_steps': config_lib.integer(1, 'a positive integer'),
    'batch_size': config_lib.integer(1, 'a positive integer'),
    'optimizer': config_lib.choice(tuple(OPTIMIZERS), 'optimizer'),
    'learning_rate': config_lib.real(0.0, 'a learning rate >= 0'),
    'num_seeds': config_lib.integer(1, 'a positive integer number of seeds'),
    'seed': config_lib.integer(0, 'a non-negative integer below 2**31', maximum=2**31 - 1),
    'log_every': config_lib.integer(1, 'a positive integer'),
    'checkpoint_every': config_lib.integer(0, 'a non-negative integer (0: no checkpoints)'),
    'tensorboard': config_lib.flag(),  # TensorBoard event files beside metrics.jsonl
}
NEUTRAL_KEYS = ('tensorboard',)  # what a training experiment may change and still resume
TENSORBOARD_DIR = 'tensorboard'  # in the workdir: a folder per run and seed


def check_schedule(cfg: dict) -> None:
  """The seed range, num_steps and checkpoint_every in whole chunks of log_every steps, and
  tensorboardX where config.tensorboard asks for event files."""
  sweep.check_seed_range(cfg)
  if cfg.get('tensorboard') and importlib.util.find_spec('tensorboardX') is None:
    raise UserError("config.tensorboard=True needs tensorboardX: pip install '.[tensorboard]'")
  for key in ('num_steps', 'checkpoint_every'):
    if cfg[key] % cfg['log_every']:
      raise UserError(f'config.{key} ({cfg[key]}) must be a multiple of config.log_every '
                      f'({cfg["log_every"]})')


class Task(NamedTuple):
  """What a model is trained on. The functions are pure and traced per seed (a scalar); `data` is
  a pytree of arrays (a dataset, or () for generated tasks) passed to the compiled programs as an
  argument, never baked into them as a constant.

  A task that draws its batches from an epoch-wide value (a dataset's shuffle) sets `epoch` and
  `steps_per_epoch`; batch then takes that value as a fourth argument. The training loop
  computes it once per epoch (and at the start of each chunk), not at every step, and the
  batches are the same as if it were recomputed at every step.

  A task that carries a state from one step to the next (truncated backpropagation through
  time: a recurrent state passed from one segment of a stream to the next) sets `carry`, a
  function of the seed giving the state before step 0; its loss is then
  loss(params, batch, carry) -> (loss, the carry for the next step), differentiated through the
  step alone (the carry enters as a constant), and the carry is part of the training state, so
  that a checkpoint holds it and a resumed run goes on with it."""
  batch: Callable  # (data, seed, step[, epoch value]) -> batch
  loss: Callable  # (params, batch) -> scalar training loss
  evaluate: Callable  # (params, data, seed) -> {'test_loss': scalar, ...} on held-out data
  data: Any = ()
  epoch: Optional[Callable] = None  # (data, seed, epoch) -> a value every batch of it reads
  steps_per_epoch: int = 0
  carry: Optional[Callable] = None  # seed -> the state carried into step 0 (then loss gets it)


def optimizer(name: str, learning_rate: float, clip_norm: float) -> optax.GradientTransformation:
  """`name` at `learning_rate`, after clip_by_global_norm(clip_norm) if clip_norm > 0."""
  if name not in OPTIMIZERS:
    raise UserError(f'unknown optimizer {name!r}; valid choices: {", ".join(OPTIMIZERS)}')
  opt = OPTIMIZERS[name](learning_rate)
  return optax.chain(optax.clip_by_global_norm(clip_norm), opt) if clip_norm > 0 else opt


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def init_state(init_params: Callable, task: Task, opt, seed, num_logs: int) -> dict:
  """The state of one seed before step 0: parameters from the seed's 'init' stream, and empty
  (NaN) curves: 'train_loss' and one per metric of task.evaluate."""
  params = init_params(rng.stream_key(seed, 'init'))
  metrics = jax.eval_shape(task.evaluate, params, task.data, seed)
  nan = jnp.full((num_logs,), jnp.nan, jnp.float32)
  return {'params': params, 'opt_state': opt.init(params), 'step': jnp.zeros((), jnp.int32),
          'diverged': jnp.zeros((), bool),
          'curves': {name: nan for name in ('train_loss', *metrics)},
          **({'carry': task.carry(seed)} if task.carry is not None else {})}


def chunk_fn(task: Task, opt, log_every: int):
  """chunk(state, seed, data) -> one seed's state after `log_every` more steps."""
  def chunk(state, seed, data):
    def batch_at(step, carried):
      """(batch `step`, what to carry to the next step): for a task with an epoch value,
      carried = (epoch, value) of the last step, recomputed only when the epoch changes
      (lax.cond: the branch not taken does not run; vmapped by --points_batch > 1, the cond
      becomes a select that computes both, which is correct but saves nothing)."""
      if task.epoch is None:
        return task.batch(data, seed, step), carried
      epoch = step // task.steps_per_epoch
      value = lax.cond(epoch == carried[0], lambda: carried[1],
                       lambda: task.epoch(data, seed, epoch))
      return task.batch(data, seed, step, value), (epoch, value)

    def one_step(carry, _):
      state, carried = carry
      batch, carried = batch_at(state['step'], carried)
      if task.carry is None:
        loss, grads = jax.value_and_grad(task.loss)(state['params'], batch)
      else:
        (loss, new_carry), grads = jax.value_and_grad(task.loss, has_aux=True)(
            state['params'], batch, lax.stop_gradient(state['carry']))
      updates, opt_state = opt.update(grads, state['opt_state'], state['params'])
      params = optax.apply_updates(state['params'], updates)
      diverged = state['diverged'] | ~(jnp.isfinite(loss) & _all_finite(grads)
                                       & _all_finite(params))
      keep = lambda new, old: jnp.where(diverged, old, new)
      state = {**state, 'params': jax.tree.map(keep, params, state['params']),
               'opt_state': jax.tree.map(keep, opt_state, state['opt_state']),
               'step': state['step'] + 1, 'diverged': diverged}
      if task.carry is not None:
        state['carry'] = jax.tree.map(keep, new_carry, state['carry'])
      return (state, carried), jnp.where(diverged, jnp.nan, loss)

    carried = ()
    if task.epoch is not None:
      epoch = state['step'] // task.steps_per_epoch
      carried = (epoch, task.epoch(data, seed, epoch))
    (state, _), losses = lax.scan(one_step, (state, carried), None, length=log_every)
    i = state['step'] // log_every - 1
    points = {'train_loss': jnp.mean(losses), **task.evaluate(state['params'], data, seed)}
    curves = {name: curve.at[i].set(jnp.where(state['diverged'], jnp.nan, points[name])
                                     .astype(curve.dtype))
              for name, curve in state['curves'].items()}
    return {**state, 'curves': curves}
  return chunk


@compiled.cached
def chunk_program(task: Task, opt, log_every: int, num_seeds: int, batch: int):
  """f((states, seeds), data) -> states after `log_every` more steps of each of `num_seeds`
  seeds: one program, the seeds spread over the devices `batch` at a time
  (`lib.runtime.devices`); one object for equal arguments inside `compiled.shared()`."""
  chunk = chunk_fn(task, opt, log_every)
  return devices.map_points(lambda point, data: chunk(point[0], point[1], data), num_seeds,
                            num_shared=1, batch=batch)


@compiled.cached
def init_program(init_params: Callable, task: Task, opt, num_logs: int, num_seeds: int,
                 batch: int):
  """f(seeds) -> the state of each seed before step 0 (`init_state`), over the devices `batch`
  at a time (one object for equal arguments inside `compiled.shared()`)."""
  return devices.map_points(lambda s: init_state(init_params, task, opt, s, num_logs),
                            num_seeds, batch=batch)


def programs(name: str, init_params: Callable, task: Task, opt, num_seeds: int, num_steps: int,
             log_every: int, batch: int) -> dict:
  """The programs `train` runs, as `lib.runtime.dry_run.Program`s by name: 'init' (its output
  holds every seed's parameters) and 'chunk'."""
  from lib.runtime import dry_run  # pylint: disable=g-import-not-at-top
  (seeds,) = dry_run.points_args(num_seeds, 'int32', batch=batch)
  init = init_program(init_params, task, opt, num_steps // log_every, num_seeds, batch)
  # the chunk's arguments as `train` passes them: the states as the initialisation leaves them
  # (on one device JAX gives some of them P() rather than P('points')), the data replicated
  state = jax.tree.map(lambda a, where: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=where),
                       init.eval_shape(seeds), init.compile(seeds).output_shardings)
  return {'init': dry_run.Program(f'{name} init', init, (seeds,), 1),
          'chunk': dry_run.Program(f'{name} {log_every} steps',
                                   chunk_program(task, opt, log_every, num_seeds, batch),
                                   ((state, seeds),
                                    devices.abstract(task.data, False, num_seeds, batch)),
                                   num_steps // log_every)}


def _orbax_noise(error: BaseException, traceback) -> bool:
  """Whether an exception is what orbax's threads print after a failed save: raised in orbax or
  tensorstore code, or asyncio's 'Event loop is closed' from a callback into the ended save."""
  if isinstance(error, RuntimeError) and str(error) == 'Event loop is closed':
    return True
  while traceback is not None:
    if any(name in traceback.tb_frame.f_code.co_filename for name in ('orbax', 'tensorstore')):
      return True
    traceback = traceback.tb_next
  return False


class _DropOrbaxNoise(std_logging.Filter):
  """asyncio's "Task exception was never retrieved" for a task of orbax's."""

  def filter(self, record):
    return not (record.exc_info and _orbax_noise(*record.exc_info[1:]))


def _quiet_orbax() -> None:
  """Drops orbax's noise from Python's hooks for uncaught thread and unraisable exceptions, and
  from asyncio's log, once per process; every other exception still reaches the hook before."""
  if getattr(sys.unraisablehook, 'drops_orbax_noise', False):
    return
  unraisable, thread = sys.unraisablehook, threading.excepthook

  def unraisable_hook(info):
    if not _orbax_noise(info.exc_value, info.exc_traceback):
      unraisable(info)

  def thread_hook(info):
    if not _orbax_noise(info.exc_value, info.exc_traceback):
      thread(info)
  unraisable_hook.drops_orbax_noise = True
  sys.unraisablehook, threading.excepthook = unraisable_hook, thread_hook
  std_logging.getLogger('asyncio').addFilter(_DropOrbaxNoise())


KEEP = 2  # checkpoints kept: a damaged newest one (a bad copy, a disk fault) leaves one to resume


class Checkpoints:
  """Orbax checkpoints of one training run's state in `directory`, the last KEEP of them."""

  def __init__(self, directory: str):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top  (slow to import)
    self._ocp = ocp
    self.directory = os.path.abspath(directory)
    os.makedirs(self.directory, exist_ok=True)  # orbax's create=True syncs every process
    with errors.absl_quiet():  # orbax logs each metadata file it cannot read: `restore` says it
      self._manager = ocp.CheckpointManager(
          self.directory, options=ocp.CheckpointManagerOptions(
              max_to_keep=KEEP, enable_async_checkpointing=False, create=False,
              # process 0 alone checkpoints host arrays: no barrier with the other processes
              multiprocessing_options=ocp.options.MultiprocessingOptions(
                  primary_host=jax.process_index(), active_processes={jax.process_index()})))

  def latest_step(self):
    return self._manager.latest_step()

  def restore(self, like: dict):
    """(step, state) of the newest checkpoint that restores whole into the shapes of `like`,
    or None if none does. Each newer one that does not (damaged: unreadable, cut short, not
    this run's) is deleted, with one warning line that says so and where training goes on
    from: saves after it would otherwise be skipped as older than it."""
    _quiet_orbax()
    abstract = jax.tree.map(self._ocp.utils.to_shape_dtype_struct, like)
    steps = sorted(self._manager.all_steps(), reverse=True)
    for i, step in enumerate(steps):
      try:
        with errors.absl_quiet():
          state = self._manager.restore(step, args=self._ocp.args.StandardRestore(abstract))
        if np.any(np.asarray(state['step']) != step):
          raise ValueError(f'it holds the state of step {np.asarray(state["step"]).max()}')
        return step, state
      except Exception as e:  # pylint: disable=broad-except  (any failure: damaged)
        reason = f'{type(e).__name__}: {(str(e).strip().splitlines() or [""])[0]}'[:300]
        with tqdm.tqdm.external_write_mode(file=sys.stderr):  # a line of its own, not on a bar
          logging.warning('the checkpoint %s cannot be read (%s): deleted; training goes on '
                          'from %s', os.path.join(self.directory, str(step)), reason,
                          f'the one at step {steps[i + 1]}' if i + 1 < len(steps) else 'step 0')
        shutil.rmtree(os.path.join(self.directory, str(step)), ignore_errors=True)
        with errors.absl_quiet():
          self._manager.reload()
    return None

  def save(self, step: int, state: dict) -> None:
    """Saves `state` as step `step`; the last checkpoint stays until this one is whole. A save
    that fails (a full disk) raises; orbax logs the failure, traceback and all, and its threads
    and tasks go on failing after it: that noise is dropped (`_quiet_orbax`), so that the one
    line of `lib.runtime.errors.resources` is what the user sees."""
    _quiet_orbax()
    with errors.absl_quiet():
      self._manager.save(step, args=self._ocp.args.StandardSave(state))
      self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def _resume(checkpoints: Optional[Checkpoints], state: dict, count: int, batch: int,
            desc: str) -> dict:
  """`state` (init_program's, `count` seeds `batch` at a time) replaced by the newest whole
  checkpoint's (process 0's `checkpoints`; None on the others), if there is one."""
  latest = devices.on_leader(lambda: checkpoints.latest_step())
  if not devices.any_process(latest is not None):
    return state
  # saved without the padding, so a run may resume on another number of devices
  like = jax.tree.map(lambda a: a[:count], devices.fetch(state))
  restored = devices.on_leader(lambda: checkpoints.restore(like))
  if not devices.any_process(restored is not None):  # none whole: from step 0
    return state
  restored = devices.broadcast(restored[1] if devices.is_leader() else like)
  logging.info('%s: resumed from the checkpoint at step %d', desc, int(restored['step'][0]))
  return devices.put_like(devices.pad(restored, count, batch), state)  # as init_program left it


METRICS_FILE = 'metrics.jsonl'  # a workdir's training curves, a line per (run, seed, log step)


def trim_metrics(path: str, run: str, step: int) -> None:
  """Drops from the metrics file at `path` the lines of `run` past `step` (logged after the
  checkpoint a run resumes from, which it will log again) and any line cut short by a crash;
  rewritten atomically, and only where something is dropped."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  keep = []
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      continue  # cut short
    if not (row.get('run') == run and row.get('step', 0) > step):
      keep.append(line if line.endswith('\n') else line + '\n')
  if keep != lines:
    write_atomic(path, ''.join(keep).encode())


def log_metrics(path: str, run: str, seeds, step: int, curves: dict, index: int) -> None:
  """Appends a line per seed to the metrics file: run, seed, step, time (Unix seconds) and
  every curve's value at log `index` (null where it is not finite)."""
  lines = []
  for j, seed in enumerate(seeds):
    row = {'run': run, 'seed': int(seed), 'step': step, 'time': round(time.time(), 3)}
    for name, curve in curves.items():
      value = float(curve[j, index])
      row[name] = value if math.isfinite(value) else None
    lines.append(json.dumps(row) + '\n')
  with open(path, 'a') as f:
    f.write(''.join(lines))


class EventFiles:
  """TensorBoard event files of one run, a folder per seed (`folder`/<run> seed=<s>), written by
  tensorboardX: a well-kept writer of the format that needs no TensorFlow. A run that starts at
  `step` (0, or the checkpoint it resumes from) marks step + 1 (purge_step): TensorBoard drops
  every point an earlier attempt logged from there on, and keeps the one at `step`."""

  def __init__(self, folder: str, run: str, seeds, step: int):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._writers = [SummaryWriter(os.path.join(folder, f'{run} seed={int(seed)}'),
                                   purge_step=step + 1) for seed in seeds]

  def log(self, step: int, curves: dict, index: int) -> None:
    for j, writer in enumerate(self._writers):
      for name, curve in curves.items():
        writer.add_scalar(name, float(curve[j, index]), step)
      writer.flush()

  def close(self) -> None:
    for writer in self._writers:
      writer.close()


def train(init_params: Callable, task: Task, opt, seeds, num_steps: int, log_every: int,
          checkpoint_dir=None, checkpoint_every: int = 0, desc: str = 'train',
          tokens_per_step: int = 0, batch: int = 1, metrics_path=None,
          tensorboard_dir=None) -> dict:
  """Trains one model on every seed at once. Returns the final states (numpy, seeds stacked),
  with the parameters before training under 'init_params' and the final held-out metrics (the
  curves' last points; NaN for a diverged seed) under 'metrics'.

  num_steps and checkpoint_every are multiples of log_every. With `checkpoint_dir`, the state is
  saved there every `checkpoint_every` steps, and when SIGTERM asks the run to stop
  (`lib.runtime.preemption`), the last KEEP kept; a run that finds checkpoints there continues
  from the newest that reads whole (`Checkpoints.restore`: a damaged one costs the steps since
  the one before it, all of them damaged a start from step 0), and the caller deletes the folder
  once the results are safe.

  With `tokens_per_step` (a language model's batch_size x context_len), the progress bar also
  shows the last logged training loss and held-out losses of the first seed, and the tokens
  trained per second over every seed. batch: the seeds vmapped together on a device (the run's
  points batch, `lib.runtime.devices`). With `metrics_path`, every log step appends the curves'
  new points there (`log_metrics`, run = desc), so that `tail -f` and pandas read a run as it
  goes; a resumed run first drops what it logged past its checkpoint (`trim_metrics`). With
  `tensorboard_dir`, the same points go to TensorBoard event files there (`EventFiles`).
  """
  if num_steps % log_every or checkpoint_every % log_every:
    raise UserError(f'num_steps ({num_steps}) and checkpoint_every ({checkpoint_every}) must be '
                    f'multiples of log_every ({log_every})')
  seeds = np.asarray(seeds, np.int32)
  count, num_logs = len(seeds), num_steps // log_every
  padded_seeds = devices.put(devices.pad(seeds, count, batch), True, count, batch)  # last repeated
  state = init_program(init_params, task, opt, num_logs, count, batch)(padded_seeds)
  initial = devices.fetch(state['params'])
  # Process 0 alone reads and writes checkpoints; the others receive what it restores.
  checkpoints = devices.on_leader(Checkpoints, checkpoint_dir) if checkpoint_dir else None
  if checkpoint_dir:
    state = _resume(checkpoints, state, count, batch, desc)
  chunk = chunk_program(task, opt, log_every, count, batch)
  data = devices.put(task.data, False, count, batch)
  step = int(devices.fetch(state['step'])[0])
  if metrics_path:
    devices.on_leader(trim_metrics, metrics_path, desc, step)
  events = (devices.on_leader(EventFiles, tensorboard_dir, desc, seeds, step)
            if tensorboard_dir else None)
  try:
    with tqdm.tqdm(total=num_steps, initial=step, unit='step', desc=desc, leave=False,
                   dynamic_ncols=True, disable=not devices.is_leader()) as bar:
      while step < num_steps and not bool(np.all(devices.fetch(state['diverged']))):
        started = time.perf_counter()
        state = chunk((state, padded_seeds), data)
        step += log_every
        if tokens_per_step or metrics_path or tensorboard_dir:  # a collective: every process
          curves = devices.fetch(state['curves'])
        if tensorboard_dir:
          devices.on_leader(lambda: events.log(step, curves, step // log_every - 1))
        if metrics_path:
          devices.on_leader(log_metrics, metrics_path, desc, seeds, step, curves,
                            step // log_every - 1)
        if tokens_per_step:
          rate = tokens_per_step * log_every * count / (time.perf_counter() - started)
          bar.set_postfix({**{name.replace('_loss', ''): f'{curve[0, step // log_every - 1]:.3f}'
                              for name, curve in curves.items() if name.endswith('_loss')},
                           'tok/s': f'{rate:.3g}'}, refresh=False)
        bar.update(log_every)
        stop = step < num_steps and devices.any_process(preemption.requested())
        if checkpoint_dir and step < num_steps and (
            stop or (checkpoint_every and step % checkpoint_every == 0)):
          host = jax.tree.map(lambda a: a[:count], devices.fetch(state))  # every process
          devices.on_leader(lambda: checkpoints.save(step, host))
        if stop:  # after the checkpoint: the rerun continues from here
          raise preemption.Preempted()
  finally:
    if checkpoints is not None:
      checkpoints.close()
    if events is not None:  # process 0's
      events.close()
  state = jax.tree.map(lambda a: a[:count], devices.fetch(state))
  metrics = {name: curve[:, -1] for name, curve in state['curves'].items() if name != 'train_loss'}
  initial = jax.tree.map(lambda a: a[:count], initial)
  return {**state, 'init_params': initial, 'metrics': metrics}
