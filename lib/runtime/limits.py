"""Within the machine's memory: a run whose programs cannot fit stops before its first point, in
one line (memory or disk that runs out mid-run is `lib.runtime.errors.resources`').

What a program needs is XLA's buffer assignment of its compiled form, per device: arguments +
outputs - aliased + temporaries (`need`). What a device has (`available`): on a GPU or TPU, what
its runtime reports free (memory_stats: bytes_limit - bytes_in_use); on a CPU, the devices share
the host's memory, so a program of n devices needs n times its per-device need of the memory
available to this process: MemAvailable, or the cgroup's limit less what the cgroup holds (page
cache it could drop not counted), whichever is less.
"""

from absl import logging
import jax
import tqdm

from lib.runtime import devices as devices_lib
from lib.runtime.errors import UserError

CGROUP_MEMORY = (  # (limit, usage, stat) of cgroup v2, then v1
    ('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory.current', '/sys/fs/cgroup/memory.stat'),
    ('/sys/fs/cgroup/memory/memory.limit_in_bytes', '/sys/fs/cgroup/memory/memory.usage_in_bytes',
     '/sys/fs/cgroup/memory/memory.stat'))
MEMINFO = '/proc/meminfo'
_NO_LIMIT = 2**60  # cgroup v1 writes "no limit" as a number near 2**63
# Config keys that make a run's programs smaller, named in the error (those the config has).
SHRINK_KEYS = ('hidden_size', 'width', 'batch_size', 'test_size', 'seq_lens', 'depths',
               'spatial_shape')


def _read(path: str):
  try:
    with open(path) as f:
      return f.read()
  except OSError:
    return None


def _cgroup_available(files) -> tuple:
  """(bytes the cgroup may still take, its files) for the first cgroup with a limit, else
  (None, None)."""
  for limit_path, usage_path, stat_path in files:
    limit, usage = _read(limit_path), _read(usage_path)
    if limit is None or usage is None:
      continue
    limit = limit.strip()
    if limit == 'max' or int(limit) >= _NO_LIMIT:
      return None, None
    stat = dict(line.split() for line in (_read(stat_path) or '').splitlines()
                if len(line.split()) == 2)
    reclaimable = int(stat.get('inactive_file', stat.get('total_inactive_file', 0)))
    return max(0, int(limit) - int(usage) + reclaimable), limit_path
  return None, None


def host_available(cgroup=CGROUP_MEMORY, meminfo: str = MEMINFO) -> tuple:
  """(bytes of host memory this process can still allocate, where that was read), or
  (None, reason) where neither /proc/meminfo nor a cgroup says."""
  options = []
  for line in (_read(meminfo) or '').splitlines():
    if line.startswith('MemAvailable:'):
      options.append((int(line.split()[1]) * 1024, 'MemAvailable'))
  limit, path = _cgroup_available(cgroup)
  if limit is not None:
    options.append((limit, f'the cgroup limit ({path})'))
  if not options:
    return None, f'no {meminfo} and no cgroup memory limit'
  return min(options)


def available(devices: list) -> tuple:
  """(bytes free on each of `devices`, what says so), or (None, why not known)."""
  if devices[0].platform == 'cpu':
    return host_available()
  free = []
  for device in devices:
    stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
    if not stats or 'bytes_limit' not in stats:
      return None, f'{device.platform} device {device.id} reports no memory statistics'
    free.append(stats['bytes_limit'] - stats.get('bytes_in_use', 0))
  return min(free), f'{devices[0].platform} memory_stats'


def need(executable: jax.stages.Compiled):
  """Per-device bytes of a compiled program (XLA's buffer assignment), or None."""
  stats = executable.memory_analysis()
  if stats is None:
    return None
  return (stats.argument_size_in_bytes + stats.output_size_in_bytes
          - stats.alias_size_in_bytes + stats.temp_size_in_bytes)


def size(num_bytes) -> str:
  """1536 -> '1.5 KiB'; None -> '?'."""
  if num_bytes is None:
    return '?'
  for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
    if num_bytes < 1024 or unit == 'TiB':
      return f'{num_bytes:.0f} {unit}' if unit == 'B' else f'{num_bytes:.1f} {unit}'
    num_bytes /= 1024


def fits(program, executable) -> tuple:
  """(need of `program` on this process's devices, what they have, what says so); need or what
  they have is None where it is not known. A CPU program of n devices needs n times its
  per-device need of the host's memory."""
  local = [d for d in program.fn.devices if d.process_index == jax.process_index()]
  per_device = need(executable)
  free, source = available(local)
  if per_device is not None and local and local[0].platform == 'cpu':
    return per_device * len(local), free, source
  return per_device, free, source


def _shrink_hint(cfg: dict) -> str:
  """The config keys (and flag) that make this run's programs smaller, with their values."""
  def show(value) -> str:
    return ','.join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
  keys = [f'config.{key} ({show(cfg[key])})' for key in SHRINK_KEYS if key in cfg]
  if devices_lib.points_batch() > 1:
    keys.append(f'--points_batch ({devices_lib.points_batch()})')
  return ', '.join(keys)


def check_memory(programs: list, cfg: dict) -> None:
  """Compiles every program (`lib.runtime.dry_run.Program`s of `lib.runtime.compiled.Program`
  functions: the run then loads what this compiled) and stops with a UserError, on every
  process, if one needs more memory than its devices have. Where XLA or the device gives no
  figure, --verbose says so and the run goes on."""
  problem = None
  # a bar on a terminal only, erased when done: an error after it stays one line
  with tqdm.tqdm(total=len(programs), unit='program', desc='compile', leave=False,
                 dynamic_ncols=True, disable=None if devices_lib.is_leader() else True) as bar:
    for program in programs:
      executable = program.fn.compile(*program.args)
      bar.update(1)
      needed, free, source = fits(program, executable)
      if needed is None or free is None:
        logging.info('memory check of %s: no estimate (%s); not checked', program.name,
                     'XLA gives no memory analysis' if needed is None else source)
        continue
      logging.info('memory check of %s: needs %s, %s free (%s)', program.name, size(needed),
                   size(free), source)
      if needed > free and problem is None:
        devices = len([d for d in program.fn.devices if d.process_index == jax.process_index()])
        problem = (f'program {program.name} needs {size(needed)} of memory'
                   + (f' ({size(needed // devices)} on each of {devices} CPU devices)'
                      if devices > 1 and program.fn.devices[0].platform == 'cpu' else '')
                   + f' but {size(free)} is free ({source}); make it smaller: '
                   + _shrink_hint(cfg))
  if devices_lib.any_process(problem is not None):
    raise UserError(problem or 'a program does not fit in the memory of another process (its '
                    'error says which)')

