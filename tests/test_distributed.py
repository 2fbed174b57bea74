"""Two processes on localhost (CPU, gloo collectives) through jax.distributed: each computes its
devices' share of every program, process 0 alone writes, and the results are byte-identical to a
single-process run; training checkpointed by one process resumes in two."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from tests.conftest import ROOT
from tests.test_long_range_memory import _checkpointed
from tests.test_long_range_memory import _latest_checkpoint
from tests.test_long_range_memory import CONFIG as MEMORY_CONFIG
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
                             env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
  if wait:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
  return process


def _two_processes(workdir, flags, devices: int = 1) -> list:
  """Runs process 0 and 1 of a 2-process run; returns their (stdout, stderr)."""
  port = _free_port()
  processes = [subprocess.Popen(
      [sys.executable, RUN, *flags, f'--workdir={workdir}', '--num_processes=2',
       f'--coordinator_address=localhost:{port}', f'--process_id={i}'], cwd=ROOT, env=_env(devices),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  try:
    outputs = [p.communicate(timeout=300) for p in processes]
  finally:
    for p in processes:  # a process whose partner died waits in a collective: do not leave it
      p.kill()
  for p, (_, err) in zip(processes, outputs):
    assert p.returncode == 0, err
  return outputs


def test_two_processes_write_what_one_process_writes(tmp_path):
  one, two = tmp_path / 'one', tmp_path / 'two'
  _one_process(one, TINY_FLAGS)
  outputs = _two_processes(two, TINY_FLAGS)
  assert (two / 'results.jsonl').read_bytes() == (one / 'results.jsonl').read_bytes()
  assert 'results:' in outputs[0][0]
  assert outputs[1][0].splitlines()[-1] == ('computed 16 points with process 0, which writes '
                                            'the results and plots')
  runs = json.loads((two / 'environment.json').read_text())['runs']
  assert len(runs) == 1 and len(runs[0]['devices']) == 2  # written once, by process 0


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
