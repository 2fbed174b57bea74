"""run.py end to end, in subprocesses: every bad input as a one-line error with nothing written;
the main job at a tiny size (its summary against its records, the cache, --plot_only, shards);
and the one end-to-end test of each kind of stop: a sweep and a training run stopped by kill -9,
Ctrl-C, SIGTERM or a full disk, then run again, end byte-identical to a run never stopped.

Every test here starts Python processes: the file is in the slow tier. What run.py calls is tested
in-process in the fast tier (tests/runtime, tests/experiments)."""

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
from tests.conftest import checkpoint_steps
from tests.conftest import flags as flags_of
from tests.conftest import records
from tests.conftest import ROOT
from tests.conftest import RUN
from tests.conftest import run_in_process
from tests.conftest import TINY
from tests.conftest import TINY_FLAGS
from tests.conftest import TRAIN
from tests.conftest import TRAIN_FLAGS
from tests.conftest import validated

pytestmark = pytest.mark.slow
PATCHED = os.path.join(ROOT, 'tests', 'run_patched.py')


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
                            'experiments: experiments/associative_recall.py, '
                            'experiments/context_use.py'),
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


def _summary_rows(stdout: str) -> dict:
  """The rows of the decay table run.py prints: {(cell, sigma_w2): [rate, +-, theory, error,
  T=3 column, T=5 column, not ok]} as strings."""
  lines = stdout.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith('Decay rate per step'))
  rows = {}
  for line in lines[start + 2:]:
    fields = line.split()
    if len(fields) < 9 or fields[0] not in TINY['cells']:
      break
    rows[fields[0], float(fields[1])] = fields[3:]
  return rows


def test_main_job_end_to_end_cache_resume_plot_only_and_config_guard(tiny_run, tmp_path):
  """run.py at a tiny size: its summary (each row's rate and spread over seeds, theory and
  per-length column recomputed from the records and mean-field theory), progress bar, records,
  config, environment and plots (a second run.py with its compilation cache and no --workdir is the shards test's shard 0); and,
  in-process on a copy (the code run.py calls; its flags reach it in the bad-input tests above),
  --plot_only redraws the plots, a rerun of a finished workdir computes nothing, a workdir of
  another config is refused, and --overwrite replaces it (seq_lens (5,): the programs of
  tiny_run's one bucket, loaded from the cache)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lib import experiments  # pylint: disable=g-import-not-at-top
  from lib.measure import theory  # pylint: disable=g-import-not-at-top
  from lib.runtime.errors import UserError  # pylint: disable=g-import-not-at-top
  first, done, _ = tiny_run
  assert 'Decay rate per step fitted at the longest seq_len (theory: ln chi1; GRU: ' in first.stdout
  assert '100%' in first.stderr  # the progress bar ran to the end
  done_records = records(done)
  rows = _summary_rows(first.stdout)
  assert sorted(rows) == sorted((c, w) for c in TINY['cells'] for w in TINY['sigma_w2'])
  for (cell, sigma_w2), row in rows.items():
    mine = [r for r in done_records if (r['cell'], r['sigma_w2']) == (cell, sigma_w2)]
    ok = lambda t: [r for r in mine if r['seq_len'] == t and r['status'] == 'ok']
    rates = [r['decay_rate'] for r in ok(5)]
    assert (float(row[0]), float(row[1])) == pytest.approx(
        (np.mean(rates), np.std(rates)), abs=5e-5), (cell, sigma_w2, row)
    if cell == 'tanh':
      predicted = theory.decay_rate(cell, sigma_w2, mine[0]['sigma_b2'], mine[0]['sigma_v2'])
    else:  # the GRU's tied profile (lib/measure/theory) fitted at the longest length, T = 5
      profile = theory.gru_log_grad_sq(5, sigma_w2, mine[0]['sigma_b2'], mine[0]['sigma_v2'],
                                       mine[0]['gate_bias'])
      predicted = float(np.polyfit(np.arange(5), profile, 1)[0])
    assert row[2] == '-' if predicted is None else float(row[2]) == pytest.approx(
        predicted, abs=5e-5), (cell, sigma_w2, row)
    for column, t in zip(row[4:6], TINY['seq_lens']):
      assert float(column) == pytest.approx(np.mean([r['log_grad_sq'][0] for r in ok(t)]),
                                            abs=5e-3), (cell, sigma_w2, t, row)
  assert len(done_records) == 2 * 2 * 2 * 2
  assert {'cell', 'seq_len', 'seed', 'sigma_w2', 'sigma_b2', 'sigma_v2', 'hidden_size', 'dtype',
          'status', 'log_grad_sq', 'log_grad_sq_input', 'decay_rate'} <= set(done_records[0])
  assert len(done_records[0]['log_grad_sq']) == done_records[0]['seq_len']
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

  experiments.run(validated(**TINY), str(workdir))  # nothing left to do
  assert records(workdir) == done_records
  other = validated(**{**TINY, 'seq_lens': (5,)})
  with pytest.raises(UserError, match=r'^workdir .*seq_lens'):
    experiments.run(other, str(workdir))
  assert records(workdir) == done_records
  experiments.run(other, str(workdir), overwrite=True)
  assert {r['seq_len'] for r in records(workdir)} == {5}


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
  run_in_process(validated(**TINY), tmp_path / 'shard1', shard=(1, 2))  # what --shard_index=1 calls
  sizes = [len(records(tmp_path / f'shard{i}')) for i in range(2)]
  assert sum(sizes) == len(records(whole)) and min(sizes) > 0
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
    experiments.run(validated(**TINY), str(tmp_path / 'shard0'), shard=(1, 2))



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



def _error_lines(stderr: str) -> list:
  return [line for line in stderr.splitlines() if line.startswith('error:')]


def _pages(path) -> int:
  return -(-path.stat().st_size // os.sysconf('SC_PAGE_SIZE'))


# The sweep the stop tests interrupt: one cell, 5 groups (lengths 2..6, one program) of 2 scales
# x 2 seeds, 20 points.
STOPPED_SWEEP = {**TINY, 'cells': ('tanh',), 'seq_lens': (2, 3, 4, 5, 6)}
STOPS = ['SIGKILL', 'SIGINT', 'SIGTERM', 'full disk']


@pytest.fixture(scope='module')
def uninterrupted_sweep(tmp_path_factory):
  """The workdir of STOPPED_SWEEP run once without interruption, in this process (run.py and
  this call reach the same experiments.run, on one device as the stopped runs are)."""
  workdir = tmp_path_factory.mktemp('whole') / 'w'
  run_in_process(validated(**STOPPED_SWEEP), workdir)
  return workdir


@pytest.mark.parametrize('stop', STOPS)
def test_a_sweep_stopped_then_rerun_equals_one_never_stopped(stop, tmp_path, small_disk,
                                                            uninterrupted_sweep):
  """run.py on STOPPED_SWEEP, stopped mid-sweep (tests/run_patched.py's slow_groups: half a
  second after each group's records, so that a signal lands mid-sweep), then run again
  in-process: results.jsonl byte-identical to the run never stopped (a resume that loses,
  repeats or reorders a point changes it). kill -9; Ctrl-C (one line, exit 130); SIGTERM (the
  group in flight is written, one line, exit 143); a full disk: a tmpfs with the pages
  config.json and environment.json take (as the run that never failed wrote them) and one page
  for results.jsonl, whose 20 records need more (exit 3, one line naming the disk, the file and
  the workdir, whole records only)."""
  whole = uninterrupted_sweep
  workdir = tmp_path / 'w'
  if stop == 'full disk':
    assert _pages(whole / 'results.jsonl') > 1
    page = os.sysconf('SC_PAGE_SIZE')
    size = (_pages(whole / 'config.json') + _pages(whole / 'environment.json') + 1) * page
    workdir = small_disk(str(size)) / 'w'
  victim = subprocess.Popen(
      [sys.executable, PATCHED, 'slow_groups', '--', *flags_of(STOPPED_SWEEP),
       '--cpu_devices=1', f'--workdir={workdir}'], cwd=ROOT, stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True)
  if stop != 'full disk':
    results = workdir / 'results.jsonl'
    deadline = time.time() + 120
    while time.time() < deadline and victim.poll() is None:
      if results.exists() and results.stat().st_size > 0:
        break
      time.sleep(0.02)
    victim.send_signal(getattr(signal, stop))
  _, stderr = victim.communicate(timeout=120)
  assert 'Traceback' not in stderr, stderr
  lines = stderr.splitlines()
  status, last = {'SIGKILL': (-9, None),
                  'SIGINT': (130, 'interrupted: every finished point is saved'),
                  'SIGTERM': (143, 'preempted (SIGTERM): every finished point'),
                  'full disk': (3, 'error: no space left on the disk writing '
                                   f'{workdir}/results.jsonl (workdir {workdir});')}[stop]
  assert victim.returncode == status, stderr
  if stop == 'full disk':
    (line,) = _error_lines(stderr)
    assert line.startswith(last), stderr
  elif last:
    assert lines[-1].startswith(last), stderr
  data = (workdir / 'results.jsonl').read_bytes()
  assert 0 < data.count(b'\n') < 20, 'the stop should land mid-sweep'
  if stop != 'SIGKILL':
    assert data.endswith(b'\n') and all(json.loads(line) for line in data.splitlines())
  if stop == 'SIGTERM':
    assert data.count(b'\n') % 4 == 0  # whole groups: the one in flight was finished
  if stop == 'full disk':
    small_disk('1m')
  run_in_process(validated(**STOPPED_SWEEP), workdir)  # the rerun: what run.py would call
  assert (workdir / 'results.jsonl').read_bytes() == (whole / 'results.jsonl').read_bytes()


@pytest.fixture(scope='module')
def uninterrupted_training(tmp_path_factory):
  """The workdir of conftest's TRAIN (long_range_memory: a tanh RNN, 3 seeds, 200 steps in chunks
  of 20, a checkpoint every 20) run once without interruption, in this process (one device, as
  the stopped runs are)."""
  workdir = tmp_path_factory.mktemp('trained') / 'w'
  run_in_process(validated('long_range_memory', **TRAIN), workdir)
  return workdir


@pytest.mark.parametrize('stop', ['SIGKILL', 'SIGTERM', 'full disk'])
def test_training_stopped_then_rerun_resumes_from_its_checkpoint(stop, tmp_path, small_disk,
                                                                 uninterrupted_training, caplog):
  """run.py training TRAIN, stopped at a known step, then run again in-process: it resumes from
  the checkpoint the stop left (its log says which) and writes a results.jsonl byte-identical
  to the uninterrupted run's (same programs on one device: bit-identical, so any difference is a
  resume that lost, repeated or skipped steps). No results.jsonl before the end, and the
  checkpoints removed once the records are safe.
  - kill -9 while it waits after the checkpoint at step 40 (tests/run_patched.py's
    stall_after_checkpoint): that checkpoint, the latest kept, is where the rerun starts.
  - SIGTERM there: it saves the next chunk's state (step 60) and stops, one line, exit 143.
  - a full disk: once the checkpoint at 20 is saved the tmpfs is left 2 pages, so the one at 40
    fails part-written (orbax writes it beside the last before it drops that one): one line,
    exit 3, the checkpoint at 20 whole; with room the rerun starts there."""
  disk = small_disk('4m')
  workdir = disk / 'w'
  patch = ('stall_after_checkpoint=40' if stop != 'full disk' else
           f'fill_disk_after_checkpoint={disk}:20:2')
  victim = subprocess.Popen([sys.executable, PATCHED, patch, '--', *TRAIN_FLAGS,
                             '--cpu_devices=1', f'--workdir={workdir}'], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  if stop != 'full disk':
    for line in victim.stderr:  # the progress bar, then the stall's line
      if 'stalled after the checkpoint at 40' in line:
        break
    victim.send_signal(getattr(signal, stop))
  _, stderr = victim.communicate(timeout=120)
  assert 'Traceback' not in stderr, stderr
  status, start = {'SIGKILL': (-9, 40), 'SIGTERM': (143, 60), 'full disk': (3, 20)}[stop]
  assert victim.returncode == status, stderr
  if stop == 'SIGTERM':
    assert stderr.splitlines()[-1].startswith('preempted (SIGTERM)'), stderr
  if stop == 'full disk':
    (line,) = _error_lines(stderr)
    assert line.startswith('error: no space left on the disk') and f'(workdir {workdir})' in line
    assert (workdir / 'checkpoints' / 'tanh-clip1.0-T2' / '20' / 'commit_success.txt').exists()
    small_disk('4m')
  assert max(checkpoint_steps(workdir)) == start
  assert not (workdir / 'results.jsonl').exists() or not (workdir / 'results.jsonl').read_bytes()
  caplog.set_level('INFO')
  run_in_process(validated('long_range_memory', **TRAIN), workdir)
  assert f'resumed from the checkpoint at step {start}' in caplog.text
  assert (workdir / 'results.jsonl').read_bytes() == \
      (uninterrupted_training / 'results.jsonl').read_bytes()
  assert not (workdir / 'checkpoints').exists()
