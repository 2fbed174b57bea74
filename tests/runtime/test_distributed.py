"""Two processes on localhost (CPU, gloo collectives) through jax.distributed: each computes its
devices' share of every program, process 0 alone writes, and the results are byte-identical to a
single-process run; training checkpointed by one process resumes in two.

The two-process runs are run.py end to end; the single-process runs they are compared with run
in this (pytest's, one CPU device) process, their plots not drawn (the results are compared).
Every test here starts processes: the file is in the slow tier."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading

import pytest

from tests.conftest import checkpoint_steps
from tests.conftest import device_env
from tests.conftest import ROOT
from tests.conftest import RUN
from tests.conftest import TINY
from tests.conftest import TINY_FLAGS
from tests.conftest import TRAIN
from tests.conftest import TRAIN_FLAGS
from tests.conftest import validated

pytestmark = pytest.mark.slow
# TRAIN (conftest: a tanh RNN at the smallest sizes, 3 seeds, 200 steps in chunks of 20, a
# checkpoint every 20): the 160 steps after the resume on 4 devices are what lets a difference
# between 1 and 4 devices grow into the records: with vmap in place of lax.map on a device
# (lib/runtime/devices), the records differ (tried).


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.fixture
def one_process(monkeypatch):
  """experiments.run in this process (one device), without drawing plots."""
  import jax  # pylint: disable=g-import-not-at-top
  from lib import experiments  # pylint: disable=g-import-not-at-top
  from lib.experiments import gradient_decay  # pylint: disable=g-import-not-at-top
  from lib.experiments import long_range_memory  # pylint: disable=g-import-not-at-top
  assert jax.process_count() == 1 and jax.device_count() == 1
  for module in (gradient_decay, long_range_memory):
    monkeypatch.setattr(module, 'plot', lambda records, plots_dir: [])
  return experiments.run


class _Processes:
  """Subprocesses started at once, their output in files (so no pipe fills up); `finish()`
  waits for them, checks their exit status and returns their (stdout, stderr)."""

  def __init__(self, logs, commands, devices: int):
    self._processes, self._files = [], []
    for i, command in enumerate(commands):
      self._files.append(tuple(open(os.path.join(logs, f'{name}{i}'), 'w+')
                               for name in ('out', 'err')))
      self._processes.append(subprocess.Popen(
          command, cwd=ROOT, env=device_env(devices), stdout=self._files[i][0],
          stderr=self._files[i][1], text=True))

  def kill(self) -> None:
    for p in self._processes:  # a process whose partner died waits in a collective
      p.kill()

  def finish(self, status: int = 0) -> list:
    try:
      for p in self._processes:
        p.wait(timeout=300)
    finally:
      self.kill()
    outputs = [tuple(stream.seek(0) or stream.read() for stream in f) for f in self._files]
    for stream in (stream for f in self._files for stream in f):
      stream.close()
    for p, (_, err) in zip(self._processes, outputs):
      assert p.returncode == status, err
    return outputs


def _start_two_processes(workdir, flags, devices: int = 1) -> _Processes:
  """Process 0 and 1 of a 2-process run of run.py on `workdir`, started."""
  port = _free_port()
  return _Processes(os.path.dirname(workdir), [
      [sys.executable, RUN, *flags, f'--workdir={workdir}', '--num_processes=2',
       f'--coordinator_address=localhost:{port}', f'--process_id={i}'] for i in range(2)], devices)


def _two_processes(workdir, flags, devices: int = 1, status: int = 0) -> list:
  """Runs process 0 and 1 of a 2-process run; checks their exit status; returns their
  (stdout, stderr)."""
  return _start_two_processes(workdir, flags, devices).finish(status)


def test_two_processes_resume_and_write_what_one_process_writes(tmp_path, one_process):
  """3 points per group on 2 devices (padded to 4); the workdir already holds the first of 2
  groups (process 0 reads it, the other learns it by broadcast): the two processes compute the
  other 3 points, and the results are byte-identical to one process's run."""
  flags = [f for f in TINY_FLAGS if not f.startswith(('--config.sigma_w2', '--config.num_seeds',
                                                      '--config.cells'))] + [
      '--config.sigma_w2=0.5,1,4', '--config.num_seeds=1', '--config.cells=gru']
  one, two = tmp_path / 'one', tmp_path / 'two'
  one_process(validated(**{**TINY, 'sigma_w2': (0.5, 1.0, 4.0), 'num_seeds': 1,
                           'cells': ('gru',)}), str(one))
  shutil.copytree(one, two)
  lines = (one / 'results.jsonl').read_bytes().splitlines(keepends=True)
  assert len(lines) == 6  # 2 groups (lengths) of 3 points
  (two / 'results.jsonl').write_bytes(b''.join(lines[:3]))
  outputs = _two_processes(two, flags)  # refuses the workdir if its config were not the flags'
  assert (two / 'results.jsonl').read_bytes() == (one / 'results.jsonl').read_bytes()
  assert 'results:' in outputs[0][0]
  assert outputs[1][0].splitlines()[-1] == ('computed 3 points with process 0, which writes '
                                            'the results and plots')
  runs = json.loads((two / 'environment.json').read_text())['runs']
  assert len(runs) == 2 and len(runs[1]['devices']) == 2  # one run more, written by process 0


def test_when_process_0_fails_both_stop_with_one_line(tmp_path):
  """Process 0 cannot open the workdir (a file is in the way): both processes exit at once with
  status 2 and one line each, rather than process 1 waiting for a partner that is gone."""
  (tmp_path / 'blocker').write_text('')
  outputs = _two_processes(tmp_path / 'blocker', TINY_FLAGS, status=2)
  assert outputs[0][1].splitlines()[-1].startswith('error: workdir')
  assert outputs[1][1].splitlines()[-1] == ('error: process 0 failed (its error says why); this '
                                            'process stops with it')


def test_training_preempted_in_one_process_resumes_in_two(tmp_path, one_process, monkeypatch):
  """One process (this one), SIGTERM after its first checkpoint (step 20): it saves the next
  chunk's state (step 40), the latest and only checkpoint kept, and stops (run.py's exit with
  143 in one line on Preempted is tests/test_run.py's SIGTERM test, end to end); then two
  processes of 2 devices each (3 seeds padded to 4) continue from that checkpoint: results
  byte-identical to an uninterrupted one-process run (run here while the two processes run, its
  programs the preempted run's, compiled in this process)."""
  from lib.runtime import preemption  # pylint: disable=g-import-not-at-top
  from lib.runtime import results  # pylint: disable=g-import-not-at-top
  from lib.runtime import train  # pylint: disable=g-import-not-at-top
  stopped, whole = tmp_path / 'stopped', tmp_path / 'whole'
  save, saved = train.Checkpoints.save, []

  def save_then_sigterm(self, step, state):
    save(self, step, state)
    saved.append(step)
    if len(saved) == 1:
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(train.Checkpoints, 'save', save_then_sigterm)
  monkeypatch.setattr(preemption, '_requested', threading.Event())  # this test's, unset after
  previous = signal.getsignal(signal.SIGTERM)
  preemption.install()  # as run.py does
  try:
    with pytest.raises(preemption.Preempted):
      one_process(validated('long_range_memory', **TRAIN), str(stopped))
  finally:
    signal.signal(signal.SIGTERM, previous)
  preemption._requested.clear()  # pylint: disable=protected-access  (the stop is done)
  monkeypatch.setattr(train.Checkpoints, 'save', save)
  # the workdir's lock released, as the preempted process's exit would
  results._LOCKS.pop(os.path.realpath(stopped)).close()  # pylint: disable=protected-access
  assert not (stopped / 'results.jsonl').exists()
  start = max(checkpoint_steps(stopped))
  assert saved == [20, 40] and start == 40  # the chunk after the signal
  kept = [name for _, dirs, _ in os.walk(stopped / 'checkpoints') for name in dirs
          if name.isdigit()]
  assert sorted(kept) == ['20', '40']  # the last two kept (train.KEEP)
  two = _start_two_processes(stopped, TRAIN_FLAGS, devices=2)
  try:
    one_process(validated('long_range_memory', **TRAIN), str(whole))
  finally:
    outputs = two.finish()
  # process 0's progress bar starts at the checkpoint (a run from step 0 passes 40/200 too)
  bar = [line for line in re.split('[\r\n]', outputs[0][1]) if '/200 [' in line]
  assert bar and f'| {start}/200 [' in bar[0], bar
  assert json.loads((stopped / 'config.json').read_text()) == json.loads(
      (whole / 'config.json').read_text())
  assert (stopped / 'results.jsonl').read_bytes() == (whole / 'results.jsonl').read_bytes()
  assert not (stopped / 'checkpoints').exists()  # removed once the records are safe
