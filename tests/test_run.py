"""run.py end to end, in subprocesses: the main job at a tiny size, resume after kill -9, and
every bad input as a one-line error with nothing written."""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from lib.runtime import cli
from tests.conftest import ROOT

RUN = os.path.join(ROOT, 'run.py')
TINY_FLAGS = ['--config.cells=tanh,gru', '--config.seq_lens=3,5', '--config.sigma_w2=0.5,4',
              '--config.hidden_size=6', '--config.input_size=3', '--config.batch_size=4',
              '--config.num_seeds=2']


def run(args, cwd, **kw):
  return subprocess.run([sys.executable, RUN, *args], cwd=cwd, capture_output=True, text=True,
                        timeout=300, **kw)


BAD_INPUTS = {
    'unknown cell': (['--config.cells=tanh,rnn'], "unknown cell 'rnn'; valid choices: tanh, relu"),
    'unknown dtype': (['--config.dtype=float16'], "valid choices: float32, float64"),
    'unknown key': (['--config.no_such=1'], "unknown config key 'no_such'; valid keys: "),
    'zero length': (['--config.seq_lens=16,0'], '0 is not a positive integer length'),
    'non-integer length': (['--config.seq_lens=2.5'], '2.5 is not a positive integer length'),
    'empty sweep': (['--config.cells='], 'config.cells is empty: nothing to sweep'),
    'negative variance': (['--config.sigma_w2=1,-2'], '-2 is not a variance >= 0'),
    'zero seeds': (['--config.num_seeds=0'], '0 is not a positive integer number of seeds'),
    'non-number seeds': (['--config.num_seeds=abc'], 'flag --config.num_seeds=abc: invalid'),
    'unwritable workdir': (['--workdir={blocker}/sub'], 'cannot write to workdir'),
    'unwritable compilation cache': (['--compilation_cache_dir={blocker}/sub'],
                                     'cannot create --compilation_cache_dir'),
    'no CPU devices': (['--cpu_devices=0'], '--cpu_devices=0: need a positive integer'),
    'shard index out of range': (['--shard_index=2', '--num_shards=2'],
                                 '--shard_index=2 --num_shards=2: need num_shards >= 1'),
    'merge of a folder that is no workdir': (['--merge={tmp}'], 'is not a workdir'),
    'coordinator without the process count': (
        ['--coordinator_address=localhost:1'],
        '--coordinator_address needs --num_processes and --process_id too'),
    'process id out of range': (
        ['--coordinator_address=localhost:1', '--num_processes=2', '--process_id=2'],
        'need 0 <= process_id < num_processes'),
    'stray argument': (['stray'], 'unexpected argument(s): stray; flags are --config'),
    'missing config file': (['--config=nofile.py'], 'config file not found: nofile.py; '
                            'experiments: experiments/context_use.py, '
                            'experiments/curse_of_memory.py'),
    'unknown flag': (['--nosuch'], "Unknown command line flag 'nosuch'"),
    'unknown transformer variant': (
        ['--config={root}/experiments/transformer_depth.py', '--config.variants=pre_ln,preln'],
        "config.variants: unknown transformer variant 'preln' (norm 'preln'); valid: <norm>"),
    'transformer width and heads': (
        ['--config={root}/experiments/transformer_depth.py', '--config.num_heads=5'],
        'transformer width 64 must be a positive multiple of num_heads 5'),
    'plot_only without results': (['--plot_only', '--workdir={tmp}/none'], 'does not exist'),
    'plot_only with a config': (['--plot_only', '--workdir={tmp}/none', '--config.cells=tanh'],
                                'takes no --config.cells=tanh'),
    'missing config file with an override': (
        ['--config=nofile.py', '--config.cells=tanh'], 'config file not found: nofile.py'),
    'override after a nested one': (['--config.seq_lens.foo=1', '--config.seq_lens=4'],
                                    "unknown config key 'seq_lens.foo'"),
    'config file that raises': (['--config={configs}/raises.py'],
                                'cannot load config file {configs}/raises.py: boom'),
    'config file of no ConfigDict': (['--config={configs}/number.py'],
                                     'get_config() must return a ConfigDict, got int'),
    'config file not Python': (['--config={configs}/text.py'], 'cannot load config'),
    'program too big for the memory': (  # 1.6 TiB: too big for any host this runs on
        ['--config.hidden_size=300000', '--config.cells=tanh', '--config.seq_lens=16',
         '--config.sigma_w2=1', '--config.num_seeds=1'],
        'of memory but '),  # the need and what is free: tests/runtime/test_limits.py
}


# Starting each bad input as a fresh interpreter is what a user does, and what every other test
# here does; these only check what run.py makes of its input, so one process imports what run.py
# imports and forks a run.py per input (tests/forked_run.py). The first runs fresh, as a check.
FRESH = 'unknown cell'


@pytest.fixture(scope='module')
def bad_input_runs(tmp_path_factory):
  """Runs every bad input: (tmp, {name: CompletedProcess-like result})."""
  tmp = tmp_path_factory.mktemp('bad')
  (tmp / 'blocker').write_text('a file where a folder should be')
  configs = tmp_path_factory.mktemp('configs')
  (configs / 'raises.py').write_text('def get_config():\n  raise RuntimeError("boom")\n')
  (configs / 'number.py').write_text('def get_config():\n  return 3\n')
  (configs / 'text.py').write_text('this is not python\n')

  def args_of(name):
    args, _ = BAD_INPUTS[name]
    args = [a.format(blocker=tmp / 'blocker', tmp=tmp, configs=configs, root=ROOT) for a in args]
    if not any(a.startswith('--workdir') for a in args):
      args.append(f'--workdir={tmp}/w')
    return args
  names = [name for name in BAD_INPUTS if name != FRESH]
  forked = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'tests', 'forked_run.py')], cwd=tmp,
      input=json.dumps([[args_of(name), str(tmp)] for name in names]), capture_output=True,
      text=True, timeout=300)
  assert forked.returncode == 0, forked.stderr
  results = {name: subprocess.CompletedProcess(args_of(name), **r)
             for name, r in zip(names, json.loads(forked.stdout))}
  results[FRESH] = run(args_of(FRESH), cwd=tmp)
  return tmp, results


@pytest.mark.parametrize('name', BAD_INPUTS)
def test_bad_input_is_one_line_error_and_writes_nothing(name, bad_input_runs):
  tmp, results = bad_input_runs
  result = results[name]
  assert result.returncode == 2, (result.returncode, result.stderr)  # README: exit status 2
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  configs = os.path.join(os.path.dirname(tmp), 'configs0')
  assert BAD_INPUTS[name][1].format(configs=configs) in lines[0]
  assert 'Traceback' not in result.stderr + result.stdout
  assert sorted(os.listdir(tmp)) == ['blocker']


def _records(workdir):
  with open(os.path.join(workdir, 'results.jsonl')) as f:
    return [json.loads(line) for line in f]


def _tiny_cfg(**overrides):
  """The validated config of TINY_FLAGS, for the in-process parts of the tests below."""
  from lib import experiments  # pylint: disable=g-import-not-at-top
  from tests.conftest import TINY, default_config  # pylint: disable=g-import-not-at-top
  config = default_config()
  config.update({**TINY, **overrides})
  return experiments.validate(config)


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  """The main job at a tiny size, run once by run.py with --verbose (which logs every compile)
  and the session's compilation cache passed as --compilation_cache_dir (so that the later runs
  of TINY_FLAGS load its programs): (result, workdir, cache flag). Tests read its workdir and
  never write to it; one that needs to change it works on a copy."""
  tmp = tmp_path_factory.mktemp('tiny')
  cache = f'--compilation_cache_dir={os.environ["JAX_COMPILATION_CACHE_DIR"]}'
  result = run(TINY_FLAGS + [cache, '--verbose', f'--workdir={tmp / "w"}'], cwd=tmp)
  assert result.returncode == 0, result.stderr
  return result, tmp / 'w', cache


def test_main_job_end_to_end_cache_resume_plot_only_and_config_guard(tiny_run, tmp_path):
  """run.py at a tiny size: its summary, progress bar, records, config, environment and plots (a
  second run.py with its compilation cache and no --workdir is the shards test's shard 0); and,
  in-process on a copy (the code run.py calls; its flags reach it in the bad-input tests above),
  --plot_only redraws the plots, a rerun of a finished workdir computes nothing, a workdir of
  another config is refused, and --overwrite replaces it (seq_lens (5,): the programs of
  tiny_run's one bucket, loaded from the cache)."""
  from lib import experiments  # pylint: disable=g-import-not-at-top
  from lib.runtime.errors import UserError  # pylint: disable=g-import-not-at-top
  first, done, cache = tiny_run
  assert 'Decay rate per step fitted at the longest seq_len (theory: ln chi1)' in first.stdout
  assert 'tanh' in first.stdout and 'gru' in first.stdout
  assert '100%' in first.stderr  # the progress bar ran to the end
  records = _records(done)
  assert len(records) == 2 * 2 * 2 * 2
  assert {'cell', 'seq_len', 'seed', 'sigma_w2', 'sigma_b2', 'sigma_v2', 'hidden_size', 'dtype',
          'status', 'log_grad_sq', 'log_grad_sq_input', 'decay_rate'} <= set(records[0])
  assert len(records[0]['log_grad_sq']) == records[0]['seq_len']
  config = json.load(open(os.path.join(done, 'config.json')))
  assert config['cells'] == ['tanh', 'gru'] and config['seq_lens'] == [3, 5]
  (env,) = json.load(open(os.path.join(done, 'environment.json')))['runs']
  assert env['jax'] and env['flax'] and env['devices']
  if cli.cpu_device_count(None):  # no XLA_FLAGS / JAX_NUM_CPU_DEVICES here: one per core
    assert len(env['devices']) == cli.cores()
  plots = sorted(os.listdir(os.path.join(done, 'plots')))
  assert plots == ['decay_rate.png', 'grad_vs_length.png', 'profile.png']

  compiles = first.stderr.count('Finished XLA compilation')
  assert compiles >= 2  # one program per cell (one length bucket) at least

  workdir = tmp_path / 'w'
  shutil.copytree(done, workdir)
  for name in plots:
    os.unlink(workdir / 'plots' / name)
  assert 'decay_rate.png' in experiments.plot_only(str(workdir))  # what --plot_only prints
  assert sorted(os.listdir(workdir / 'plots')) == plots

  cfg = _tiny_cfg()
  experiments.run(cfg, str(workdir))  # nothing left to do
  assert _records(workdir) == records
  other = _tiny_cfg(seq_lens=(5,))
  with pytest.raises(UserError, match=r'^workdir .*seq_lens'):
    experiments.run(other, str(workdir))
  assert _records(workdir) == records
  experiments.run(other, str(workdir), overwrite=True)
  assert {r['seq_len'] for r in _records(workdir)} == {5}


KILL_FLAGS = [f for f in TINY_FLAGS if 'cells' not in f and 'seq_lens' not in f] + [
    '--config.cells=tanh', '--config.seq_lens=2,3,4,5,6']


KILL_CFG = dict(cells=('tanh',), seq_lens=(2, 3, 4, 5, 6))  # KILL_FLAGS, for _tiny_cfg


def _run_in_process(cfg: dict, workdir, **kw):
  """experiments.run, what run.py calls, in this process and without the plots (what the tests
  that use this compare is the records; the plots are checked end to end above)."""
  from lib import experiments  # pylint: disable=g-import-not-at-top
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(experiments.get(cfg['experiment']), 'plot', lambda records, plots_dir: [])
    return experiments.run(cfg, str(workdir), **kw)


@pytest.fixture(scope='module')
def uninterrupted_sweep(tmp_path_factory):
  """results.jsonl of the kill tests' sweep run once without interruption (in this process: run.py
  and this call reach the same experiments.run; that one device or one per core computes the
  same bits is tests/runtime/test_devices.py's)."""
  workdir = tmp_path_factory.mktemp('whole') / 'w'
  _run_in_process(_tiny_cfg(**KILL_CFG), workdir)
  return (workdir / 'results.jsonl').read_bytes()


# run.py with half a second's pause after each group's records are written: with its programs
# in the compilation cache the kill tests' tiny sweep ran whole in less time than the signal took
# to arrive; now it lands while run.py waits after the first group. argv = run.py's flags.
def run_py_patched(patch: str) -> str:
  """A `python -c` script (run in the repository root): `patch`, code that changes lib in this
  process, then run.py with the script's arguments as its flags."""
  return patch + ("import runpy, sys\nsys.argv = ['run.py', *sys.argv[1:]]\n"
                  "runpy.run_path('run.py', run_name='__main__')\n")


SLOW_GROUPS = run_py_patched('''
import time
from lib.runtime.results import ResultStore
append = ResultStore.append
def slow_append(self, records):
  append(self, records)
  time.sleep(0.5)
ResultStore.append = slow_append
''')


@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_killed_mid_sweep_then_rerun_equals_uninterrupted(tmp_path, sig, uninterrupted_sweep):
  """kill -9, Ctrl-C (one line, exit 130) or SIGTERM (the group in flight is written, one line,
  exit 143) of run.py mid-sweep: the rerun (in-process) ends byte-identical to a run never
  stopped."""
  killed = str(tmp_path / 'killed')
  victim = subprocess.Popen([sys.executable, '-c', SLOW_GROUPS, *KILL_FLAGS,
                             f'--workdir={killed}'], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
  results = os.path.join(killed, 'results.jsonl')
  deadline = time.time() + 120
  while time.time() < deadline and victim.poll() is None:
    if os.path.exists(results) and os.path.getsize(results) > 0:
      break
    time.sleep(0.02)
  victim.send_signal(sig)
  _, stderr = victim.communicate(timeout=60)
  if sig == signal.SIGINT:
    assert victim.returncode == 130 and 'Traceback' not in stderr
    assert stderr.splitlines()[-1].startswith('interrupted: every finished point is saved')
  if sig == signal.SIGTERM:
    assert victim.returncode == 143 and 'Traceback' not in stderr
    assert stderr.splitlines()[-1].startswith('preempted (SIGTERM): every finished point')
  partial = len(_records(killed))
  assert 0 < partial < 4 * 5, 'the kill should land mid-sweep'
  if sig == signal.SIGTERM:
    assert partial % 4 == 0  # whole groups (2 scales x 2 seeds): the one in flight was finished
  _run_in_process(_tiny_cfg(**KILL_CFG), killed)  # the rerun: what run.py would call
  assert open(os.path.join(killed, 'results.jsonl'), 'rb').read() == uninterrupted_sweep


def test_shards_merged_equal_one_run(tiny_run, tmp_path):
  """--shard_index/--num_shards split the groups between runs (an array job; shard 0 by run.py,
  shard 1 in-process). Shard 0 is a second run.py with tiny_run's --compilation_cache_dir and
  no --workdir: it writes into runs/gradient_decay-<timestamp> of its working directory and
  compiles nothing (its programs, one bucket per cell, are tiny_run's: every one a
  persistent-cache hit). In-process, what --merge calls (its flag reaches it in the bad-input
  tests above) joins their workdirs into results byte-identical to one run's, a merge of one
  shard says how many points are missing, a workdir of another config is refused, and a shard's
  workdir refuses to resume as another shard."""
  from lib import experiments  # pylint: disable=g-import-not-at-top
  from lib.runtime.errors import UserError  # pylint: disable=g-import-not-at-top
  _, whole, cache = tiny_run
  shard0 = run(TINY_FLAGS + [cache, '--verbose', '--shard_index=0', '--num_shards=2'],
               cwd=tmp_path)  # no --workdir: the default
  assert shard0.returncode == 0, shard0.stderr
  hits = shard0.stderr.count('Persistent compilation cache hit')
  assert hits >= 2 and shard0.stderr.count('Finished XLA compilation') == hits
  (name,) = os.listdir(tmp_path / 'runs')  # runs/<experiment>-<timestamp> in the working dir
  assert re.fullmatch(r'gradient_decay-\d{8}-\d{6}', name), name
  (tmp_path / 'runs' / name).rename(tmp_path / 'shard0')
  _run_in_process(_tiny_cfg(), tmp_path / 'shard1', shard=(1, 2))  # what --shard_index=1 calls
  sizes = [len(_records(tmp_path / f'shard{i}')) for i in range(2)]
  assert sum(sizes) == len(_records(whole)) and min(sizes) > 0
  partial = experiments.merge([str(tmp_path / 'shard0')], str(tmp_path / 'partial'))
  assert f'{sizes[1]} missing' in partial
  merged = experiments.merge([str(tmp_path / 'shard0'), str(tmp_path / 'shard1')],
                             str(tmp_path / 'merged'))
  assert 'missing' not in merged
  assert (tmp_path / 'merged' / 'results.jsonl').read_bytes() == \
      (whole / 'results.jsonl').read_bytes()
  shutil.copytree(tmp_path / 'shard0', tmp_path / 'other')  # the same, but for one key
  config = json.loads((tmp_path / 'other' / 'config.json').read_text())
  (tmp_path / 'other' / 'config.json').write_text(json.dumps({**config, 'batch_size': 3}))
  with pytest.raises(UserError, match='differs in: batch_size'):
    experiments.merge([str(tmp_path / 'shard0'), str(tmp_path / 'other')],
                      str(tmp_path / 'bad'))
  assert not os.path.exists(tmp_path / 'bad')
  with pytest.raises(UserError, match='differs in: shard'):
    experiments.run(_tiny_cfg(), str(tmp_path / 'shard0'), shard=(1, 2))


@pytest.fixture
def small_disk():
  """mount(size) -> a tmpfs of `size` (remounted at a new size if called again), unmounted at the
  end (and the workdir locks an in-process run holds there, for the life of the process, let go);
  the test is skipped where tmpfs cannot be mounted (not root). Its path has the same
  length in every session (orbax writes paths into its files, and a longer one can take a page
  more)."""
  disk = pathlib.Path(tempfile.mkdtemp(prefix='gp-disk-', dir='/tmp'))

  def mount(size: str):
    options = f'size={size}' if not os.path.ismount(disk) else f'remount,size={size}'
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(disk)],
                      capture_output=True).returncode:
      pytest.skip('cannot mount a tmpfs here')
    return disk
  yield mount
  from lib.runtime import results  # pylint: disable=g-import-not-at-top
  for path in [p for p in results._LOCKS if p.startswith(f'{disk}/')]:  # pylint: disable=protected-access
    results._LOCKS.pop(path).close()  # pylint: disable=protected-access  (an in-process run's)
  if os.path.ismount(disk):
    subprocess.run(['umount', str(disk)], check=True)
  disk.rmdir()


def _error_lines(result) -> list:
  return [line for line in result.stderr.splitlines() if line.startswith('error:')]


def test_a_full_disk_mid_sweep_is_one_line_and_the_rerun_resumes(tmp_path, small_disk,
                                                                 tiny_run):
  """A tmpfs with the pages config.json and environment.json take (as a run that never failed
  wrote them) and one page for results.jsonl, whose 16 records need more. The run stops with
  exit status 3 and one line naming the disk, the file and the workdir, and leaves whole records
  only; with room, the same run (in-process) finishes byte-identical to the run that never
  failed."""
  _, whole, _ = tiny_run
  page = os.sysconf('SC_PAGE_SIZE')

  def pages(name):
    return -(-(whole / name).stat().st_size // page)
  assert pages('results.jsonl') > 1
  workdir = small_disk(str((pages('config.json') + pages('environment.json') + 1) * page)) / 'w'
  full = run(TINY_FLAGS + [f'--workdir={workdir}'], cwd=tmp_path)
  assert full.returncode == 3, full.stderr
  (line,) = _error_lines(full)
  assert line.startswith(f'error: no space left on the disk writing {workdir}/results.jsonl '
                         f'(workdir {workdir});'), line
  assert 'Traceback' not in full.stderr
  data = (workdir / 'results.jsonl').read_bytes()
  assert data.endswith(b'\n') and 0 < data.count(b'\n') < 16
  assert all(json.loads(line) for line in data.splitlines())
  small_disk('1m')
  _run_in_process(_tiny_cfg(), workdir)  # the same run again (in-process), with room
  assert (workdir / 'results.jsonl').read_bytes() == (whole / 'results.jsonl').read_bytes()


# run.py, with the disk made full (`spare` pages left) once the checkpoint at step `step_full` is
# saved: argv = disk, step_full, spare, run.py's flags (the first three taken off). Where a save fails is then the same in every
# run, whatever orbax's files weigh.
FULL_AFTER_A_CHECKPOINT = run_py_patched('''
import os, subprocess, sys
from lib.runtime import train
disk, step_full, spare = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
del sys.argv[1:4]
real_save = train.Checkpoints.save
def save(self, step, state):
  real_save(self, step, state)
  if step == step_full:
    stat = os.statvfs(disk)
    size = (stat.f_blocks - stat.f_bfree + spare) * stat.f_frsize
    subprocess.run(['mount', '-o', f'remount,size={size}', 'tmpfs', disk], check=True)
train.Checkpoints.save = save
''')


def test_a_full_disk_at_a_checkpoint_keeps_the_last_one_and_the_rerun_resumes_from_it(
    tmp_path, small_disk, caplog):
  """Training with a checkpoint every 20 of 200 steps (tests/runtime/test_distributed.py's tiny
  tanh run: its one-device programs, which the session's compilation cache may already hold);
  once the one at step 20 is saved, the disk fills up but for 2 pages, so the one at step 40
  fails part-written (orbax writes it beside the last before it drops that one). One line, exit
  status 3, the step-20 checkpoint whole; with room, the rerun (in-process, on the one device
  run.py was given) resumes from it and finishes (that a resumed run ends byte-identical to one
  never stopped is tests/runtime/test_train.py's)."""
  from tests.runtime.test_distributed import TRAIN, TRAIN_FLAGS  # pylint: disable=g-import-not-at-top
  disk = small_disk('4m')
  workdir = disk / 'w'
  full = subprocess.run([sys.executable, '-c', FULL_AFTER_A_CHECKPOINT, str(disk), '20', '2',
                         *TRAIN_FLAGS, '--cpu_devices=1', f'--workdir={workdir}'], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert full.returncode == 3, full.stderr
  (line,) = _error_lines(full)
  assert line.startswith('error: no space left on the disk') and f'(workdir {workdir})' in line
  assert 'Traceback' not in full.stderr
  kept = workdir / 'checkpoints' / 'tanh-clip1.0-T2' / '20'
  assert (kept / 'commit_success.txt').exists(), (line, sorted(
      str(path.relative_to(workdir)) for path in workdir.rglob('*')))
  assert not (workdir / 'results.jsonl').exists() or not (workdir / 'results.jsonl').read_bytes()
  small_disk('4m')
  from lib import experiments  # pylint: disable=g-import-not-at-top
  from tests.experiments.test_long_range_memory import config  # pylint: disable=g-import-not-at-top
  caplog.set_level('INFO')
  _run_in_process(experiments.validate(config(**TRAIN)), workdir)
  assert 'resumed from the checkpoint at step 20' in caplog.text
  assert [r['steps'] for r in _records(workdir)] == [200] * TRAIN['num_seeds']
