"""Command-line plumbing for run.py: config flags whose every error is one line, not a traceback.

ml_collections reads --config.KEY overrides from sys.argv as soon as the flag is defined and loads
the config file lazily, so errors surface in three places (definition, parsing, first access);
each is caught here and turned into `error: ...` on one line and exit status 2.
"""

import os
import runpy
import signal
import sys

from absl import flags
from absl import logging
from ml_collections import config_flags

from lib.runtime.errors import UserError

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_EXPERIMENTS_DIR = os.path.join(_ROOT, 'experiments')  # the config files, beside lib/


def fail(message: str, status: int = 2) -> None:
  """Prints `error: message` on one line to stderr and exits with `status` (2: bad input)."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(status)


def one_line(error: BaseException) -> str:
  """An exception's message on one line (ml_collections' span several)."""
  text = ' '.join(line.strip() for line in str(error).splitlines() if line.strip())
  return text or type(error).__name__


def _argv_config_path(argv: list, default: str) -> str:
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      return arg.split('=', 1)[1]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return default


def _missing_config_file(path: str) -> str:
  known = sorted(f'experiments/{f}' for f in os.listdir(_EXPERIMENTS_DIR)
                 if f.endswith('.py') and not f.startswith('_'))
  return f'config file not found: {path}; experiments: {", ".join(known)}'


def _config_problem(argv: list, config_path: str, error: BaseException) -> str:
  """What is wrong with the config file or the --config.KEY overrides of argv."""
  if not os.path.isfile(config_path):
    return _missing_config_file(config_path)
  try:
    keys = set(runpy.run_path(config_path)['get_config']().keys())
  except Exception as e:  # the config file itself is broken
    return f'cannot load config file {config_path}: {one_line(e)}'
  overrides = [a[len('--config.'):].split('=', 1)[0] for a in argv if a.startswith('--config.')]
  bad = [o for o in overrides if o.split('.')[0] not in keys or '.' in o]
  if not bad:
    return f'bad config override: {one_line(error)}'
  return f'unknown config key {bad[0]!r}; valid keys: {", ".join(sorted(keys))}'


def define_config_flag(default_path: str):
  """DEFINE_config_file('config'), which reads --config.KEY overrides from sys.argv right away."""
  try:
    return config_flags.DEFINE_config_file(
        'config', default_path, 'experiment config file (experiments/NAME.py)', lock_config=True)
  except Exception as e:  # ml_collections raises many kinds here; every one is bad input
    fail(_config_problem(sys.argv, _argv_config_path(sys.argv, default_path), e))


def parse_flags(argv: list) -> list:
  """absl flags parser for app.run: a bad flag or a stray argument is a one-line error."""
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    fail(one_line(e))
  except Exception as e:  # an override ml_collections cannot apply, a config that fails to load
    fail(_config_problem(argv, _argv_config_path(argv, flags.FLAGS['config'].default), e))
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # progress bar and summary only; --verbosity=0 logs
  if len(rest) > 1:
    fail(f'unexpected argument(s): {" ".join(rest[1:])}; flags are --config, --config.KEY=VALUE, '
         '--workdir, --overwrite, --plot_only')
  return rest


def plot_only_conflicts(argv: list) -> list:
  """The flags of argv that --plot_only would ignore (it redraws what --workdir holds)."""
  return [a for a in argv[1:] if a.startswith(('--config', '--overwrite'))]


def load_config(flag_holder):
  """The parsed ConfigDict of the config flag; a missing or broken file is a UserError."""
  path = config_flags.get_config_filename(flags.FLAGS[flag_holder.name])
  if not os.path.isfile(path):
    raise UserError(_missing_config_file(path))
  try:
    config = flag_holder.value
  except Exception as e:  # a config file that fails to load or to apply an override
    raise UserError(f'cannot load config {path}: {one_line(e)}') from None
  if not hasattr(config, 'keys') or not hasattr(config, 'get'):
    raise UserError(f'config file {path}: get_config() must return a ConfigDict, '
                    f'got {type(config).__name__}')
  return config


DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser('~'), '.cache', 'gradient_propagation', 'xla')


CGROUP_CPU_LIMITS = (('/sys/fs/cgroup/cpu.max',),  # cgroup v2: "<quota> <period>" or "max ..."
                     ('/sys/fs/cgroup/cpu/cpu.cfs_quota_us',  # cgroup v1: quota (-1: none), period
                      '/sys/fs/cgroup/cpu/cpu.cfs_period_us'))


def cgroup_cpu_limit(files=CGROUP_CPU_LIMITS):
  """The CPUs a container's CPU quota allows (quota / period, rounded up), or None if there is
  no quota (or no cgroup files, as outside Linux)."""
  for paths in files:
    try:
      words = ' '.join(open(path).read() for path in paths).split()
    except OSError:
      continue
    if len(words) == 2 and words[0] not in ('max', '-1'):
      try:
        quota, period = int(words[0]), int(words[1])
      except ValueError:
        return None
      if quota > 0 and period > 0:
        return max(1, -(-quota // period))
    return None
  return None


def cores() -> int:
  """The cores this process may run on: its CPU affinity where the OS has one (Linux), capped
  by a container's CPU quota (a container limited to 2 CPUs on a 64-core host counts 2)."""
  if hasattr(os, 'sched_getaffinity'):
    count = len(os.sched_getaffinity(0))
  else:
    count = os.cpu_count() or 1
  limit = cgroup_cpu_limit()
  return count if limit is None else min(count, limit)


def cpu_device_count(requested) -> int | None:
  """How many devices the CPU backend splits this host into: `requested` (--cpu_devices) if
  given; else None (leave JAX's setting) when the environment already chooses (XLA_FLAGS'
  --xla_force_host_platform_device_count, or JAX_NUM_CPU_DEVICES); else one device per core
  this process may run on.

  Why: XLA:CPU runs one program's small ops (a sweep point's matmuls of 16 x 128 by 128 x 128) on
  one core; the points of a program are spread over the devices (lib/runtime/devices), so one device
  per core computes that many points at once. The sweeps' and the recurrent models' results are
  bit-identical at any device count; attention's and the CNN's are not (their larger contractions
  round differently with it: docs/running.md, Determinism). On a GPU or TPU host the accelerators are the
  devices and this changes nothing.
  """
  if requested is not None:
    if requested < 1:
      raise UserError(f'--cpu_devices={requested}: need a positive integer (default: one per '
                      f'core, {cores()} here)')
    return requested
  if ('xla_force_host_platform_device_count' in os.environ.get('XLA_FLAGS', '')
      or os.environ.get('JAX_NUM_CPU_DEVICES')):
    return None
  return cores()


def set_cpu_devices(requested) -> None:
  """Splits the CPU into `cpu_device_count(requested)` devices (if that is not None), before
  JAX starts its backends."""
  import jax  # pylint: disable=g-import-not-at-top
  count = cpu_device_count(requested)
  if count is not None:
    jax.config.update('jax_num_cpu_devices', count)


def configure_jax(cache_dir, verbose: bool, cpu_devices=None) -> None:
  """The persistent compilation cache, compile logging and the CPU device count
  (`cpu_device_count`), before anything compiles.

  cache_dir: a folder for JAX's persistent compilation cache, so that a restarted or resumed run
  loads its programs instead of compiling them again; '' turns the cache off; None means
  $JAX_COMPILATION_CACHE_DIR if set, else DEFAULT_CACHE_DIR. Every program is cached, however
  fast it compiled (this project's compile in 0.1 to 3 s each). verbose: log every compile
  (jax_log_compiles) and the per-group timings.
  """
  import jax  # pylint: disable=g-import-not-at-top  (after flag parsing, like the rest of lib)
  set_cpu_devices(cpu_devices)
  if cache_dir is None:
    cache_dir = os.environ.get('JAX_COMPILATION_CACHE_DIR', DEFAULT_CACHE_DIR)
  if cache_dir:
    try:
      os.makedirs(cache_dir, exist_ok=True)
    except OSError as e:
      raise UserError(f'cannot create --compilation_cache_dir {cache_dir}: '
                      f'{e.strerror or e}; pass --compilation_cache_dir= to run without a '
                      'cache') from None
    jax.config.update('jax_compilation_cache_dir', cache_dir)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  else:
    jax.config.update('jax_enable_compilation_cache', False)
  if verbose:
    jax.config.update('jax_log_compiles', True)
    logging.set_verbosity(logging.INFO)


def exit_on_interrupt() -> None:
  """Ctrl-C ends the run at once with one line and status 130. A KeyboardInterrupt would surface
  wherever Python happens to be (inside JAX's tracing, or swallowed by its GC callback); every
  finished record is already on disk, and a cut line is dropped on resume, as after kill -9."""
  def handler(signum, frame):
    del signum, frame
    sys.stderr.write('\ninterrupted: every finished point is saved; run the same command to '
                     'resume\n')
    sys.stderr.flush()
    os._exit(130)  # not sys.exit: XLA's threads may be running the interrupted program
  signal.signal(signal.SIGINT, handler)


DISTRIBUTED = ('auto', 'on', 'off')
# Task counts that launchers set for the processes they start (srun's job step, mpirun); JAX's
# own cluster detection (jax._src.clusters: SLURM, Open MPI, Cloud TPU, Kubernetes) finds the
# rest. Not SLURM_NTASKS: the batch script and salloc's shell have it too.
_TASK_COUNTS = ('SLURM_STEP_NUM_TASKS', 'OMPI_COMM_WORLD_SIZE')


def initialize_distributed(mode: str, coordinator_address, num_processes, process_id) -> None:
  """Starts JAX's distributed runtime when this run is one process of many, before any JAX
  computation. Then jax.devices() lists every process's devices and lib/runtime/devices spreads each
  program over all of them; process 0 writes the results.

  The addresses come from the flags when given (all three), else from JAX's auto-detection:
  mode 'on' always asks for it (a TPU pod slice), 'auto' asks when a launcher says there are
  several tasks (srun -n N under SLURM, Open MPI's mpirun), 'off' never does.
  """
  explicit = {'--coordinator_address': coordinator_address, '--num_processes': num_processes,
              '--process_id': process_id}
  given = [name for name, value in explicit.items() if value is not None]
  if mode not in DISTRIBUTED:
    raise UserError(f'--distributed={mode}: valid choices: {", ".join(DISTRIBUTED)}')
  if given and len(given) < 3:
    missing = [name for name in explicit if name not in given]
    raise UserError(f'{", ".join(given)} needs {" and ".join(missing)} too (a multi-process run '
                    'names the coordinator, the process count and this process)')
  if given and mode == 'off':
    raise UserError(f'--distributed=off contradicts {", ".join(given)}')
  if given and not 0 <= process_id < num_processes:
    raise UserError(f'--process_id={process_id} --num_processes={num_processes}: need '
                    '0 <= process_id < num_processes')
  several = any(int(os.environ.get(name, '1') or 1) > 1 for name in _TASK_COUNTS)
  if not given and not (mode == 'on' or (mode == 'auto' and several)):
    return
  import jax  # pylint: disable=g-import-not-at-top
  try:
    if given:
      jax.distributed.initialize(coordinator_address=coordinator_address,
                                 num_processes=num_processes, process_id=process_id)
    else:
      jax.distributed.initialize()
  except (RuntimeError, ValueError) as e:
    raise UserError(f'cannot start the distributed runtime: {one_line(e)} (pass '
                    '--distributed=off to run as one process)') from None
  logging.info('process %d of %d, %d devices of %d', jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
