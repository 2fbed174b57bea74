"""Within the machine's limits: the memory a device has, what a program needs, the check before
the first point, and one-line errors for memory or disk that runs out mid-run."""

import errno
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import experiments
from lib.experiments import gradient_decay
from lib.runtime import compiled
from lib.runtime import errors
from lib.runtime import limits
from lib.runtime import results
from lib.runtime.errors import ResourceError
from lib.runtime.errors import UserError
from lib.runtime.results import ResultStore

GIB = 2**30


def _files(tmp_path, limit, usage, stat='', meminfo_kib=None):
  """A fake cgroup (limit, usage, stat) and /proc/meminfo."""
  paths = [tmp_path / name for name in ('max', 'current', 'stat')]
  for path, text in zip(paths, (limit, usage, stat)):
    path.write_text(text)
  meminfo = tmp_path / 'meminfo'
  meminfo.write_text('MemTotal: 1 kB\n' + (f'MemAvailable: {meminfo_kib} kB\n'
                                            if meminfo_kib is not None else ''))
  return (tuple(map(str, paths)),), str(meminfo)


def test_host_memory_is_the_lesser_of_meminfo_and_the_cgroup(tmp_path):
  # cgroup: 4 GiB limit, 3 GiB used of which 0.5 GiB droppable page cache: 1.5 GiB left
  cgroup, meminfo = _files(tmp_path, f'{4 * GIB}\n', f'{3 * GIB}\n',
                           f'anon 1\ninactive_file {GIB // 2}\n', meminfo_kib=8 * 2**20)
  assert limits.host_available(cgroup, meminfo) == (3 * GIB // 2,
                                                    f'the cgroup limit ({cgroup[0][0]})')
  cgroup, meminfo = _files(tmp_path, 'max\n', '5\n', meminfo_kib=2**20)  # no limit: MemAvailable
  assert limits.host_available(cgroup, meminfo) == (GIB, 'MemAvailable')
  cgroup, meminfo = _files(tmp_path, f'{2**63 - 4096}\n', '5\n', meminfo_kib=2**20)  # v1's "none"
  assert limits.host_available(cgroup, meminfo) == (GIB, 'MemAvailable')
  free, why = limits.host_available(((str(tmp_path / 'none'),) * 3,), str(tmp_path / 'none'))
  assert free is None and 'no' in why


class _Device:
  def __init__(self, stats, platform='gpu', id_=0):
    self.platform, self.id, self._stats = platform, id_, stats

  def memory_stats(self):
    return self._stats


def test_accelerator_memory_is_the_least_free_of_its_devices():
  devices_ = [_Device({'bytes_limit': 10 * GIB, 'bytes_in_use': 3 * GIB}),
              _Device({'bytes_limit': 10 * GIB, 'bytes_in_use': 6 * GIB}, id_=1)]
  assert limits.available(devices_) == (4 * GIB, 'gpu memory_stats')
  free, why = limits.available([_Device(None, 'tpu')])
  assert free is None and 'tpu device 0 reports no memory statistics' in why


def test_need_counts_arguments_outputs_and_temporaries():
  """x (1000 float32) -> (x + 1, 2 x): 4,000 bytes in, 8,000 out, nothing much in between."""
  program = compiled.Program(jax.jit(lambda x: (x + 1, 2 * x)), jax.devices()[:1])
  need = limits.need(program.compile(jnp.zeros(1000, jnp.float32)))
  assert 12_000 <= need < 12_000 + 4_096


def test_cpu_devices_share_the_host_memory_and_each_holds_a_peak(monkeypatch):
  """A program on 3 CPU devices of this process (and 1 of another) needs 3 peaks of the host's
  memory; on GPUs, one peak of each device's own."""
  class Stats:  # what XLA's memory_analysis gives
    argument_size_in_bytes, output_size_in_bytes, alias_size_in_bytes = 100, 50, 10
    temp_size_in_bytes = 60

  class Executable:
    def memory_analysis(self):
      return Stats()

  class Program:
    class fn:  # pylint: disable=invalid-name
      devices = [_Device(None, 'cpu', i) for i in range(4)]
  for i, device in enumerate(Program.fn.devices):
    device.process_index = 0 if i < 3 else 1
  monkeypatch.setattr(limits, 'host_available', lambda: (1000, 'host'))
  assert limits.fits(Program, Executable()) == (3 * 200, 1000, 'host')
  Program.fn.devices = [_Device({'bytes_limit': 500}, 'gpu', i) for i in range(2)]
  for device in Program.fn.devices:
    device.process_index = 0
  assert limits.fits(Program, Executable()) == (200, 500, 'gpu memory_stats')


def _tiny(hidden_size=8, **overrides):
  from tests.conftest import TINY, default_config  # pylint: disable=g-import-not-at-top
  config = default_config()
  config.update({**TINY, 'hidden_size': hidden_size, 'cells': ('tanh',), **overrides})
  return gradient_decay.validate(config)


def test_a_program_that_cannot_fit_stops_the_run_before_anything_is_written(tmp_path,
                                                                            monkeypatch):
  """Hidden 512: the recurrent kernel alone is 512 x 512 float32, 1 MiB. With 1 MiB free the
  run stops in one line naming the program, its need, the memory and the keys to shrink, and
  writes nothing; with 1 GiB it runs."""
  cfg = _tiny(512, seq_lens=(5,))
  (program,) = gradient_decay.programs(cfg)
  need = limits.need(program.fn.compile(*program.args))
  assert 512 * 512 * 4 < need < 20 * 512 * 512 * 4
  monkeypatch.setattr(limits, 'host_available', lambda: (2**20, 'a test'))
  with pytest.raises(UserError) as error:
    experiments.run(cfg, str(tmp_path / 'w'))
  total = limits.size(need * len(program.fn.devices))
  assert str(error.value).startswith(f'program tanh T=5 needs {total} of memory')
  assert 'but 1.0 MiB is free (a test); make it smaller: config.hidden_size (512), ' \
      'config.batch_size (4), config.seq_lens (5)' in str(error.value)
  assert type(error.value) is UserError and error.value.exit_status == 2
  assert not (tmp_path / 'w').exists()
  monkeypatch.setattr(limits, 'host_available', lambda: (GIB, 'a test'))
  experiments.run(cfg, str(tmp_path / 'w'))
  assert len(ResultStore(str(tmp_path / 'w')).records()) == 2 * 2  # scales x seeds


def test_without_an_estimate_the_run_goes_on_and_says_so(tmp_path, monkeypatch, caplog):
  monkeypatch.setattr(limits, 'host_available', lambda: (None, 'no meminfo here'))
  caplog.set_level('INFO')
  experiments.run(_tiny(seq_lens=(3,)), str(tmp_path / 'w'))
  assert 'memory check of tanh T=3: no estimate (no meminfo here); not checked' in caplog.text


def test_the_run_loads_what_the_check_compiled(tmp_path):
  """One compile per program: the memory check compiles, the sweep loads (two cells, two lengths
  in one bucket each). Hidden 7: no other test compiles these programs (the session's
  persistent cache would serve them)."""
  compiles = []

  def listener(event, *_, **__):
    if event == '/jax/core/compile/backend_compile_duration':
      compiles.append(event)
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    experiments.run(_tiny(7, cells=('tanh', 'gru')), str(tmp_path / 'w'))
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert len(compiles) == 2


def test_one_executable_per_lowered_module_inside_shared():
  """Two programs built apart but equal share one executable; a program that differs only in a
  large constant does not; outside shared() each object compiles its own."""
  x = jnp.zeros(100_000, jnp.float32)
  big = np.arange(100_000, dtype=np.float32)

  def build(constant):
    return compiled.Program(jax.jit(lambda v: v + constant), jax.devices()[:1])
  with compiled.shared():
    first, second, other = build(big), build(big.copy()), build(big[::-1].copy())
    assert first.compile(x) is second.compile(x)
    assert other.compile(x) is not first.compile(x)
    np.testing.assert_array_equal(other(x), big[::-1])
  assert build(big).compile(x) is not build(big).compile(x)


def test_a_write_error_takes_back_its_part_written_line_at_once(tmp_path, monkeypatch):
  """os.write writes half a line and then fails (a full disk): the file holds the whole records
  before it, at once, and the error names the file."""
  store = ResultStore.create(str(tmp_path / 'w'), {'experiment': 'x'})
  store.append([{'a': 1}])

  class FullDisk:  # the os module, but for a write that stops half-way
    def __getattr__(self, name):
      return getattr(os, name)

    def write(self, fd, data):
      os.write(fd, bytes(data[:len(data) // 2]))
      raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(results, 'os', FullDisk())
  with pytest.raises(OSError) as error:
    store.append([{'a': 2, 'long': 'x' * 100}])
  assert error.value.filename == store.results_path
  assert open(store.results_path, 'rb').read() == b'{"a":1}\n'


@pytest.mark.parametrize('code, words', [(errno.ENOSPC, 'no space left on the disk'),
                                         (errno.EDQUOT, 'disk quota exceeded'),
                                         (errno.EROFS, 'the file system is read-only'),
                                         (errno.EACCES, 'permission denied')])
def test_resource_errors_name_the_resource_the_file_and_the_workdir(code, words):
  wrapped = RuntimeError('a library wraps it')
  wrapped.__cause__ = OSError(code, 'os text', '/w/results.jsonl')
  error = errors.resource_error(wrapped, '/w')
  assert isinstance(error, ResourceError) and error.exit_status == 3
  assert str(error).startswith(f'{words} writing /w/results.jsonl (workdir /w); ')
  store = ValueError(f'RESOURCE_EXHAUSTED: Failed writing: "/w/c/d": Failed to write 182 bytes '
                     f"to file 11: os text [os_error_code='{code}'] [tensorstore_spec='{{}}']")
  assert str(errors.resource_error(store, '/w')).startswith(f'{words} writing /w/c/d (workdir /w)')
  assert errors.resource_error(OSError(errno.ENOENT, 'gone'), '/w') is None
  assert errors.resource_error(ValueError('RESOURCE_EXHAUSTED'), '/w') is None
  assert str(errors.resource_error(MemoryError(), '/w')).startswith('out of memory mid-run')


def test_out_of_memory_mid_run_is_one_line_and_the_rerun_resumes(tiny_config, tmp_path,
                                                                 monkeypatch):
  """XLA's RESOURCE_EXHAUSTED in the third group: a ResourceError in one line, the first two
  groups saved; the same run again ends byte-identical to one that never failed."""
  cfg = gradient_decay.validate(tiny_config)
  experiments.run(cfg, str(tmp_path / 'whole'))
  real = gradient_decay.compute_group
  calls = []

  def third_fails(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
      raise jax.errors.JaxRuntimeError('RESOURCE_EXHAUSTED: Out of memory allocating 7 bytes.\n'
                                       'more detail')
    return real(*args, **kwargs)
  monkeypatch.setattr(gradient_decay, 'compute_group', third_fails)
  with pytest.raises(ResourceError) as error:
    experiments.run(cfg, str(tmp_path / 'w'))
  assert str(error.value).startswith('out of memory mid-run (RESOURCE_EXHAUSTED: Out of memory '
                                     f'allocating 7 bytes.); every finished point is saved in '
                                     f'{tmp_path / "w"}')
  assert '\n' not in str(error.value)
  per_group = len(gradient_decay.grid(cfg)[0][1])
  assert len(ResultStore(str(tmp_path / 'w')).records()) == 2 * per_group
  monkeypatch.setattr(gradient_decay, 'compute_group', real)
  experiments.run(cfg, str(tmp_path / 'w'))
  assert (tmp_path / 'w' / 'results.jsonl').read_bytes() == \
      (tmp_path / 'whole' / 'results.jsonl').read_bytes()
