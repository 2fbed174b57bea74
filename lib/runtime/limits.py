"""Within the machine's memory: a run whose programs cannot fit stops before its first point, in
one line (memory or disk that runs out mid-run is `lib.runtime.errors.resources`').

What a program needs is XLA's buffer assignment of its compiled form, per device: arguments +
outputs - aliased + temporaries (`need`). What a device has (`available`): on a GPU or TPU, what
its runtime reports free (memory_stats: bytes_limit - bytes_in_use); on a CPU, the devices share
the host's memory, so a program of n devices needs n times its per-device need of the memory
available to this process: MemAvailable, or the least that its cgroups (its own and each above
it) have left under their limits, the file cache they could drop counted as free, whichever is
less.
"""

import os

from absl import logging
import jax
import tqdm

from lib.runtime import devices as devices_lib
from lib.runtime.errors import UserError

CGROUP_ROOT = '/sys/fs/cgroup'
PROC_CGROUP = '/proc/self/cgroup'
# per cgroup version: the limit, the usage, the stat file and its key of droppable file cache
_CGROUP_FILES = {'v2': ('memory.max', 'memory.current', 'memory.stat', 'file'),
                 'v1': ('memory.limit_in_bytes', 'memory.usage_in_bytes', 'memory.stat',
                        'total_cache')}
MEMINFO = '/proc/meminfo'
_NO_LIMIT = 2**60  # cgroup v1 writes "no limit" as a number near 2**63


def _read(path: str):
  try:
    with open(path) as f:
      return f.read()
  except OSError:
    return None


def _cgroup_dirs(proc_cgroup: str, root: str) -> list:
  """(version, folder) of this process's memory cgroups, innermost first, up to the root: v2's
  unified hierarchy ('0::/path') and v1's memory controller ('N:memory:/path')."""
  dirs = []
  for line in (_read(proc_cgroup) or '').splitlines():
    parts = line.split(':', 2)
    if len(parts) != 3:
      continue
    if parts[0] == '0' and not parts[1]:
      version, base = 'v2', root
    elif 'memory' in parts[1].split(','):
      version, base = 'v1', os.path.join(root, 'memory')
    else:
      continue
    names = [name for name in parts[2].strip().split('/') if name]
    dirs += [(version, os.path.join(base, *names[:i])) for i in range(len(names), -1, -1)]
  return dirs


def _cgroup_available(proc_cgroup: str, root: str) -> tuple:
  """(bytes this process's cgroups let it still take, the folder that binds), the least over
  every cgroup with a limit from its own up to the root (a SLURM job's or a container's limit
  sits on one of them); (None, None) where none has one."""
  best = (None, None)
  for version, folder in _cgroup_dirs(proc_cgroup, root):
    limit_name, usage_name, stat_name, cache_key = _CGROUP_FILES[version]
    limit = (_read(os.path.join(folder, limit_name)) or '').strip()
    usage = (_read(os.path.join(folder, usage_name)) or '').strip()
    if not limit or not usage or limit == 'max' or int(limit) >= _NO_LIMIT:
      continue
    stat = dict(line.split() for line in (_read(os.path.join(folder, stat_name)) or '')
                .splitlines() if len(line.split()) == 2)
    cache = int(stat.get(cache_key, stat.get('cache', 0)))  # the kernel drops it before it kills
    free = max(0, int(limit) - int(usage) + cache)
    if best[0] is None or free < best[0]:
      best = (free, folder)
  return best


def host_available(proc_cgroup: str = PROC_CGROUP, root: str = CGROUP_ROOT,
                   meminfo: str = MEMINFO) -> tuple:
  """(bytes of host memory this process can still allocate, where that was read), or
  (None, reason) where neither /proc/meminfo nor a cgroup says."""
  options = []
  for line in (_read(meminfo) or '').splitlines():
    if line.startswith('MemAvailable:'):
      options.append((int(line.split()[1]) * 1024, 'MemAvailable'))
  limit, folder = _cgroup_available(proc_cgroup, root)
  if limit is not None:
    options.append((limit, f'the cgroup limit of {folder}'))
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
  """Per-device bytes of a compiled program (XLA's buffer assignment), or None where the backend
  gives no analysis."""
  try:
    stats = executable.memory_analysis()
  except Exception:  # pylint: disable=broad-except  (a backend that cannot say: no estimate)
    return None
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


def shrink_hint(cfg: dict, shrink_keys: tuple) -> str:
  """The config keys that make this run's programs smaller (`shrink_keys`: the experiment's
  SHRINK_KEYS), and the --points_batch flag where it is above 1, with their values."""
  def show(value) -> str:
    return ','.join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
  keys = [f'config.{key} ({show(cfg[key])})' for key in shrink_keys if key in cfg]
  if devices_lib.points_batch_of(cfg) > 1:
    keys.append(f'--points_batch ({devices_lib.points_batch_of(cfg)})')
  return ', '.join(keys)


def check_memory(programs: list, cfg: dict, shrink_keys: tuple = ()) -> None:
  """Compiles every program (`lib.runtime.dry_run.Program`s of `lib.runtime.compiled.Program`
  functions: the run then loads what this compiled) and stops with a UserError, on every
  process, if one needs more memory than its devices have, naming the config keys that shrink
  it (`shrink_keys`, the experiment's). Where XLA or the device gives no figure, --verbose says
  so and the run goes on."""
  problem = None
  # a bar on a terminal only, erased when done: an error after it stays one line
  with tqdm.tqdm(total=len(programs), unit='program', desc='compile', leave=False,
                 dynamic_ncols=True, disable=None if devices_lib.is_leader() else True) as bar:
    for program in programs:
      try:
        executable = program.fn.compile(*program.args)
      except jax.errors.JaxRuntimeError as e:  # some backends allocate to compile (autotuning)
        if 'RESOURCE_EXHAUSTED' not in str(e):
          raise
        problem = problem or (f'program {program.name} does not fit: compiling it ran out of '
                              f'memory; make it smaller: {shrink_hint(cfg, shrink_keys)}')
        break
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
                   + shrink_hint(cfg, shrink_keys))
  if devices_lib.any_process(problem is not None):
    raise UserError(problem or 'a program does not fit in the memory of another process (its '
                    'error says which)')

