"""Two processes on localhost (CPU, gloo collectives) through jax.distributed: each computes its
devices' share of every program, process 0 alone writes, and the results are byte-identical to a
single-process run; training checkpointed by one process resumes in two."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from tests.conftest import ROOT
from tests.experiments.test_long_range_memory import _checkpointed
from tests.experiments.test_long_range_memory import _latest_checkpoint
from tests.experiments.test_long_range_memory import CONFIG as MEMORY_CONFIG
from tests.test_run import TINY_FLAGS

RUN = os.path.join(ROOT, 'run.py')
TRAIN_FLAGS = [f'--config={MEMORY_CONFIG}', '--config.cells=gru', '--config.seq_lens=4',
               '--config.hidden_size=4', '--config.batch_size=4', '--config.test_size=8',
               '--config.num_seeds=3', '--config.num_steps=600', '--config.log_every=10',
               '--config.checkpoint_every=100']


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  return {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}


def _one_process(workdir, flags, devices: int = 1, wait: bool = True):
  process = subprocess.Popen([sys.executable, RUN, *flags, f'--workdir={workdir}'], cwd=ROOT,
                             env=_env(devices), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
  if wait:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
  return process


def _two_processes(workdir, flags, devices: int = 1, status: int = 0) -> list:
  """Runs process 0 and 1 of a 2-process run (their output in files, so no pipe fills up);
  checks their exit status; returns their (stdout, stderr)."""
  port, logs = _free_port(), os.path.dirname(workdir)
  processes, files = [], []
  for i in range(2):
    files.append(tuple(open(os.path.join(logs, f'{name}{i}'), 'w+') for name in ('out', 'err')))
    processes.append(subprocess.Popen(
        [sys.executable, RUN, *flags, f'--workdir={workdir}', '--num_processes=2',
         f'--coordinator_address=localhost:{port}', f'--process_id={i}'], cwd=ROOT,
        env=_env(devices), stdout=files[i][0], stderr=files[i][1], text=True))
  try:
    for p in processes:
      p.wait(timeout=300)
  finally:
    for p in processes:  # a process whose partner died waits in a collective: do not leave it
      p.kill()
  outputs = []
  for f in files:
    outputs.append(tuple(stream.seek(0) or stream.read() for stream in f))
    for stream in f:
      stream.close()
  for p, (_, err) in zip(processes, outputs):
    assert p.returncode == status, err
  return outputs


def test_two_processes_resume_and_write_what_one_process_writes(tmp_path):
  """3 points per group on 2 devices (padded to 4); the workdir already holds the first of 2
  groups (process 0 reads it, the other learns it by broadcast): the two processes compute the
  other 3 points, and the results are byte-identical to one process's run."""
  flags = [f for f in TINY_FLAGS if not f.startswith(('--config.sigma_w2', '--config.num_seeds',
                                                      '--config.cells'))] + [
      '--config.sigma_w2=0.5,1,4', '--config.num_seeds=1', '--config.cells=gru']
  one, two = tmp_path / 'one', tmp_path / 'two'
  _one_process(one, flags)
  shutil.copytree(one, two)
  lines = (one / 'results.jsonl').read_bytes().splitlines(keepends=True)
  (two / 'results.jsonl').write_bytes(b''.join(lines[:3]))
  outputs = _two_processes(two, flags)
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


def test_training_preempted_in_one_process_resumes_in_two(tmp_path):
  """One process, SIGTERM after the first checkpoint; then two processes of 2 devices each (3
  seeds padded to 4) continue from process 0's checkpoint: results byte-identical to an
  uninterrupted one-process run."""
  whole, stopped = tmp_path / 'whole', tmp_path / 'stopped'
  reference = _one_process(whole, TRAIN_FLAGS, wait=False)
  victim = _one_process(stopped, TRAIN_FLAGS, wait=False)
  deadline = time.time() + 200
  while not _checkpointed(stopped) and victim.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  assert victim.poll() is None, 'the run ended before it could be stopped'
  victim.send_signal(signal.SIGTERM)
  _, err = victim.communicate(timeout=120)
  assert victim.returncode == 143, err
  start = _latest_checkpoint(stopped)
  outputs = _two_processes(stopped, TRAIN_FLAGS, devices=2)
  assert 100 <= start < 600 and f'{start}/600' in outputs[0][1]  # resumed at the checkpoint
  assert reference.wait(timeout=300) == 0
  assert (stopped / 'results.jsonl').read_bytes() == (whole / 'results.jsonl').read_bytes()
