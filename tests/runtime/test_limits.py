"""Within the machine's limits: the memory a device has, what a program needs, the check before
the first point, and one-line errors for memory or disk that runs out mid-run."""

import errno
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib import experiments
from lib.experiments import gradient_decay
from lib.runtime import compiled
from lib.runtime import devices
from lib.runtime import errors
from lib.runtime import limits
from lib.runtime import results
from lib.runtime.errors import ResourceError
from lib.runtime.errors import UserError
from lib.runtime.results import ResultStore
from tests.conftest import programs_loaded
from tests.conftest import TINY
from tests.conftest import validated

GIB = 2**30


def _cgroup(root, folder, limit, usage, stat='', version='v2'):
  """Writes one fake cgroup's memory files under root."""
  names = (('memory.max', 'memory.current') if version == 'v2' else
           ('memory.limit_in_bytes', 'memory.usage_in_bytes'))
  folder = root / folder
  folder.mkdir(parents=True, exist_ok=True)
  (folder / names[0]).write_text(f'{limit}\n')
  (folder / names[1]).write_text(f'{usage}\n')
  (folder / 'memory.stat').write_text(stat)


def test_host_memory_is_the_least_of_meminfo_and_every_cgroup_above_the_process(tmp_path):
  """The process sits in job/step (v2). The step has no limit; the job has 4 GiB, holds 3 GiB of
  which 0.5 GiB is file cache: 1.5 GiB left; the root's 8 GiB leave more; MemAvailable 8 GiB."""
  root, proc, meminfo = tmp_path / 'cg', tmp_path / 'proc_cgroup', tmp_path / 'meminfo'
  proc.write_text('0::/job/step\n')
  meminfo.write_text(f'MemTotal: 1 kB\nMemAvailable: {8 * 2**20} kB\n')
  _cgroup(root, 'job/step', 'max', 3 * GIB)
  _cgroup(root, 'job', 4 * GIB, 3 * GIB, f'anon 1\nfile {GIB // 2}\n')
  _cgroup(root, '', 8 * GIB, 3 * GIB)
  assert limits.host_available(str(proc), str(root), str(meminfo)) == (
      3 * GIB // 2, f'the cgroup limit of {root / "job"}')
  meminfo.write_text(f'MemAvailable: {2**20} kB\n')  # 1 GiB: less than the cgroups leave
  assert limits.host_available(str(proc), str(root), str(meminfo)) == (GIB, 'MemAvailable')
  # cgroup v1, "no limit" written as a number near 2**63: MemAvailable alone
  proc.write_text('9:name=systemd:/\n4:memory:/a\n')
  _cgroup(root, 'memory/a', 2**63 - 4096, 5, version='v1')
  assert limits.host_available(str(proc), str(root), str(meminfo)) == (GIB, 'MemAvailable')
  _cgroup(root, 'memory', GIB // 4, 0, 'total_cache 0\n', version='v1')  # v1, limited above
  assert limits.host_available(str(proc), str(root), str(meminfo)) == (
      GIB // 4, f'the cgroup limit of {root / "memory"}')
  none = str(tmp_path / 'none')
  free, why = limits.host_available(none, none, none)
  assert free is None and 'no' in why


class _Device:
  def __init__(self, stats, platform='gpu', id_=0):
    self.platform, self.id, self._stats = platform, id_, stats

  def memory_stats(self):
    return self._stats


def test_accelerator_memory_is_the_least_free_of_its_devices():
  """Two GPUs with 7 and 4 GiB free: 4 GiB, from memory_stats; a device without statistics
  gives no figure, and says which device."""
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
  """A tiny tanh sweep, 2 scales x 2 seeds a group. Lengths up to 5 share one program (the
  bucket T=5), so the tests below compile it once and load it from the session's compilation
  cache after."""
  return validated(**{**TINY, 'hidden_size': hidden_size, 'cells': ('tanh',), **overrides})


THREE_GROUPS = {'seq_lens': (3, 4, 5)}  # one program (T=5), 3 groups of 4 points


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
  """The runs here draw no plots: what these tests check is the records and the errors (plots
  are drawn and checked end to end in tests/test_run.py)."""
  monkeypatch.setattr(gradient_decay, 'plot', lambda records, plots_dir: [])


@pytest.fixture(scope='module')
def whole(tmp_path_factory):
  """A workdir of the THREE_GROUPS sweep, run whole, never failed: what the failed runs below
  are compared with, byte for byte (tests copy it, never change it)."""
  workdir = tmp_path_factory.mktemp('whole') / 'w'
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(gradient_decay, 'plot', lambda records, plots_dir: [])
    experiments.run(_tiny(**THREE_GROUPS), str(workdir))
  return workdir


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
  """Where the host says nothing of its memory the check logs that it checked nothing, and the
  run computes every point."""
  monkeypatch.setattr(limits, 'host_available', lambda: (None, 'no meminfo here'))
  caplog.set_level('INFO')
  experiments.run(_tiny(seq_lens=(3, 5)), str(tmp_path / 'w'))
  assert 'memory check of tanh T=5: no estimate (no meminfo here); not checked' in caplog.text
  assert len(ResultStore(str(tmp_path / 'w')).records()) == 2 * 2 * 2  # lengths x scales x seeds


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_the_run_loads_what_the_check_compiled(tmp_path, dtype, monkeypatch):
  """One executable per program: the memory check compiles it, the sweep loads it (two lengths,
  one bucket), in float64 as in float32 (the check runs in the run's dtype). And one trace: the
  check and the run use one program object (lib.runtime.compiled.memo), so the point function is
  traced once, not again for the run."""
  traced, measure = [], gradient_decay.measure_point
  monkeypatch.setattr(gradient_decay, 'measure_point', lambda *a: traced.append(a[:2]) or
                      measure(*a))
  cfg = _tiny(seq_lens=(3, 5), dtype=dtype)
  assert programs_loaded(lambda: experiments.run(cfg, str(tmp_path / 'w'))) == 1
  assert traced == [('tanh', 5)]


def test_a_failed_check_leaves_every_workdir_as_it_was(tmp_path, monkeypatch, whole):
  """With too little memory: no runs/ folder for the default workdir; a partial workdir (the
  first of 3 groups), resumed or with --overwrite, keeps every byte."""
  cfg = _tiny(**THREE_GROUPS)
  shutil.copytree(whole, tmp_path / 'w')
  results = tmp_path / 'w' / 'results.jsonl'
  results.write_bytes(b''.join(results.read_bytes().splitlines(keepends=True)[:4]))  # a group
  before = {name: (tmp_path / 'w' / name).read_bytes() for name in sorted(os.listdir(
      tmp_path / 'w')) if (tmp_path / 'w' / name).is_file()}
  monkeypatch.setattr(limits, 'host_available', lambda: (1000, 'a test'))
  monkeypatch.chdir(tmp_path)
  for workdir, overwrite in ((None, False), (str(tmp_path / 'w'), False),
                             (str(tmp_path / 'w'), True)):
    with pytest.raises(UserError, match='needs .* of memory but 1000 B is free'):
      experiments.run(cfg, workdir, overwrite=overwrite)
  assert not (tmp_path / 'runs').exists()
  assert {name: (tmp_path / 'w' / name).read_bytes() for name in before} == before


def test_points_programs_that_read_different_arguments_do_not_share():
  """Two map_points programs of the same signature, one reading the points' first field and one
  their second (jit would prune the unused one from the module: keep_unused keeps it)."""
  points = (np.arange(4, dtype=np.float32), np.arange(4, dtype=np.float32) + 10)
  with compiled.shared():
    first = devices.run_points(devices.map_points(lambda p: p[0] * 2, 4), points)
    second = devices.run_points(devices.map_points(lambda p: p[1] * 2, 4), points)
  np.testing.assert_array_equal(first, points[0] * 2)
  np.testing.assert_array_equal(second, points[1] * 2)


def test_a_program_with_a_host_callback_is_not_shared():
  """Two programs equal but for the Python function of their host callback each run their own
  (the lowered text does not hold the callback), inside shared()."""
  x = jnp.zeros(3)
  seen = []
  build = lambda tag: compiled.Program(  # noqa: E731
      jax.jit(lambda v: jax.pure_callback(lambda a: (seen.append(tag), a)[1], v, v)),
      jax.devices()[:1])
  with compiled.shared():
    build('a')(x).block_until_ready()
    build('b')(x).block_until_ready()
  assert seen == ['a', 'b']


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
  """An OSError (also as the cause of a library's error, or in tensorstore's text) of a full
  disk, a quota, a read-only file system or a denied permission becomes a ResourceError (exit
  status 3) naming it, the file and the workdir; an error raised while handling one `from
  None`, a missing file and a bare RESOURCE_EXHAUSTED are not; a MemoryError is memory."""
  wrapped = RuntimeError('a library wraps it')
  wrapped.__cause__ = OSError(code, 'os text', '/w/results.jsonl')
  error = errors.resource_error(wrapped, '/w')
  assert isinstance(error, ResourceError) and error.exit_status == 3
  verb = 'on' if code == errno.EACCES else 'writing'
  assert str(error).startswith(f'{words} {verb} /w/results.jsonl (workdir /w); ')
  store = ValueError(f'RESOURCE_EXHAUSTED: Failed writing: "/w/c/d": Failed to write 182 bytes '
                     f"to file 11: os text [os_error_code='{code}'] [tensorstore_spec='{{}}']")
  assert str(errors.resource_error(store, '/w')).startswith(f'{words} {verb} /w/c/d (workdir /w)')
  try:  # a bug raised while handling a full disk, with `from None`: not the disk's fault
    try:
      raise OSError(code, 'os text')
    except OSError:
      raise KeyError('a bug') from None
  except KeyError as bug:
    assert errors.resource_error(bug, '/w') is None
  assert errors.resource_error(OSError(errno.ENOENT, 'gone'), '/w') is None
  assert errors.resource_error(ValueError('RESOURCE_EXHAUSTED'), '/w') is None
  assert str(errors.resource_error(MemoryError(), '/w')).startswith('out of memory mid-run')


def _fill_the_disk(self, records, real):
  real(self, list(records)[:1])
  raise OSError(errno.ENOSPC, 'No space left on device', self.results_path)


def _exhaust_memory(*args, real):
  del args
  raise jax.errors.JaxRuntimeError('RESOURCE_EXHAUSTED: Out of memory allocating 7 bytes.\n'
                                   'more detail')


# what fails in the third group: (the function patched, what it does, the error's first words)
RESOURCE_FAILURES = {
    'full disk': (ResultStore, 'append', _fill_the_disk, 4 * 2 + 1,
                  'no space left on the disk writing {w}/results.jsonl (workdir {w}); '),
    'out of memory': (gradient_decay, 'compute_group', _exhaust_memory, 4 * 2,
                      'out of memory mid-run (RESOURCE_EXHAUSTED: Out of memory allocating 7 '
                      'bytes.); every finished point is saved in {w}'),
}


@pytest.mark.parametrize('failure', RESOURCE_FAILURES)
def test_a_resource_error_mid_run_is_one_line_and_the_rerun_resumes(tmp_path, monkeypatch, whole,
                                                                    failure):
  """The third group of three fails: the disk fills in its second record (the records before
  it kept whole), or XLA's RESOURCE_EXHAUSTED stops it (the first two groups saved): a
  ResourceError of one line naming the resource, the file and the workdir; with room, the same
  run ends byte-identical to one that never failed (that it does through run.py, killed or
  stopped by a full disk, is tests/test_run.py's)."""
  owner, name, fail, kept, message = RESOURCE_FAILURES[failure]
  cfg = _tiny(**THREE_GROUPS)
  real, calls = getattr(owner, name), []

  def third_group_fails(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
      fail(*args, real=real)
    return real(*args, **kwargs)
  monkeypatch.setattr(owner, name, third_group_fails)
  with pytest.raises(ResourceError) as error:
    experiments.run(cfg, str(tmp_path / 'w'))
  assert str(error.value).startswith(message.format(w=tmp_path / 'w')), str(error.value)
  assert '\n' not in str(error.value)
  assert len(calls) == 3 and len(ResultStore(str(tmp_path / 'w')).records()) == kept
  monkeypatch.setattr(owner, name, real)
  experiments.run(cfg, str(tmp_path / 'w'))
  assert (tmp_path / 'w' / 'results.jsonl').read_bytes() == (whole / 'results.jsonl').read_bytes()
