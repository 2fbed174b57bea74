"""The long-range memory experiment: its records, that gates help on copy memory, resume of a
training run killed with SIGKILL, and bad input."""

import json
import math
import os
import runpy
import signal
import subprocess
import sys
import time

import pytest

from lib import experiments
from lib.runtime.errors import UserError
from tests.conftest import ROOT

CONFIG = os.path.join(ROOT, 'experiments', 'long_range_memory.py')
TINY = dict(cells=('attention',), seq_lens=(3,), num_steps=20, log_every=10,
            checkpoint_every=10, hidden_size=4, num_heads=2, batch_size=4, test_size=8,
            num_seeds=2)


def config(**overrides):
  cfg = runpy.run_path(CONFIG)['get_config']()
  cfg.update(overrides)
  return cfg


def test_records_of_a_tiny_copy_run(tmp_path):
  """... and the memory check's compiles serve the trainer: 3 executables (initialisation, chunk,
  input profile), though the trainer builds its own programs."""
  from tests.runtime.test_limits import programs_loaded  # pylint: disable=g-import-not-at-top
  cfg = experiments.validate(config(**TINY, task='copy'))
  out = []
  assert programs_loaded(lambda: out.append(experiments.run(cfg, str(tmp_path / 'w')))) == 3
  out = out[0]
  records = [json.loads(line) for line in open(tmp_path / 'w' / 'results.jsonl')]
  assert [(r['cell'], r['seq_len'], r['seed']) for r in records] == [
      ('attention', 3, 0), ('attention', 3, 1)]
  for r in records:
    assert r['baseline_loss'] == pytest.approx(10 * math.log(8) / (r['seq_len'] + 20), rel=1e-12)
    assert r['status'] == 'ok' and 0 <= r['test_accuracy'] <= 1
    assert r['test_loss'] == pytest.approx(r['test_loss_curve'][-1], rel=1e-5)
    assert len(r['train_loss']) == len(r['test_loss_curve']) == 2
    assert len(r['log_grad_sq_input_init']) == len(r['log_grad_sq_input_trained']) \
        == r['seq_len'] + 20
  assert not os.path.exists(tmp_path / 'w' / 'checkpoints')  # removed once the records are safe
  for name in ('loss_vs_length.png', 'training_curves.png', 'input_gradients.png'):
    assert os.path.getsize(tmp_path / 'w' / 'plots' / name) > 0
  assert 'copy task' in out and 'attention' in out


def test_lstm_beats_tanh_on_copy_memory_at_a_short_length(tmp_path):
  """Copy with delay T = 5, same budget and seeds: the LSTM's test loss is below the tanh RNN's
  (and below the memoryless baseline) on every seed."""
  cfg = experiments.validate(config(task='copy', cells=('tanh', 'lstm'), seq_lens=(5,),
                                    num_steps=300, log_every=100, checkpoint_every=0,
                                    hidden_size=32, learning_rate=1e-2, num_seeds=2))
  experiments.run(cfg, str(tmp_path / 'w'))
  records = [json.loads(line) for line in open(tmp_path / 'w' / 'results.jsonl')]
  loss = {(r['cell'], r['seed']): r['test_loss'] for r in records}
  for seed in (0, 1):
    assert loss[('lstm', seed)] < loss[('tanh', seed)]
    assert loss[('lstm', seed)] < records[0]['baseline_loss']


def _run(workdir, *flags, **kw):
  return subprocess.Popen(
      [sys.executable, os.path.join(ROOT, 'run.py'), f'--config={CONFIG}', f'--workdir={workdir}',
       '--config.cells=gru', '--config.seq_lens=4', '--config.hidden_size=4',
       '--config.batch_size=4', '--config.test_size=8', '--config.num_seeds=2',
       '--config.num_steps=3000', '--config.log_every=10', '--config.checkpoint_every=500',
       *flags], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _checkpointed(workdir) -> bool:
  folder = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(folder) and any(
      name.isdigit() for _, dirs, _ in os.walk(folder) for name in dirs)


def _latest_checkpoint(workdir) -> int:
  return max(int(name) for _, dirs, _ in os.walk(os.path.join(workdir, 'checkpoints'))
             for name in dirs if name.isdigit())


@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM])
def test_training_killed_mid_way_resumes_to_the_same_results(tmp_path, sig):
  """kill -9 once a checkpoint exists, or SIGTERM (preemption: a checkpoint at the next chunk,
  one line, exit 143), then run again: the resumed run continues from the checkpoint and writes
  a results.jsonl byte-identical to an uninterrupted run's."""
  whole, killed = tmp_path / 'whole', tmp_path / 'killed'
  reference = _run(whole)
  victim = _run(killed)
  deadline = time.time() + 240
  while not _checkpointed(killed) and victim.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  assert victim.poll() is None, 'the run ended before it could be killed'
  victim.send_signal(sig)
  _, err = victim.communicate(timeout=120)
  assert not os.path.exists(killed / 'results.jsonl')
  start = 500
  if sig == signal.SIGTERM:
    assert victim.returncode == 143 and 'Traceback' not in err
    assert err.splitlines()[-1].startswith('preempted (SIGTERM)')
    start = _latest_checkpoint(killed)
    assert 500 < start < 3000 and start % 10 == 0  # saved at the chunk after the signal
  resumed = _run(killed)
  _, err = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, err
  assert f'{start}/3000' in err  # the resumed run's progress bar starts at the checkpoint
  assert reference.wait(timeout=300) == 0
  assert (killed / 'results.jsonl').read_bytes() == (whole / 'results.jsonl').read_bytes()


@pytest.mark.parametrize('overrides, message', [
    (dict(cells=('tanh', 'transformer')), "unknown cell 'transformer'; valid choices: tanh, relu, "
                                          'lstm, gru, attention'),
    (dict(task='parity'), "unknown task 'parity'; valid choices: adding, copy"),
    (dict(num_steps=1001), r'num_steps \(1001\) must be a multiple of config.log_every \(50\)'),
    (dict(seq_lens=(1, 10)), '1 is not an integer length >= 2'),
    (dict(optimizer='lbfgs'), "unknown optimizer 'lbfgs'; valid choices: adam, rmsprop, sgd"),
    (dict(hidden_size=30, num_heads=4), r'hidden_size \(30\) must be even and divisible'),
])
def test_bad_input_is_a_user_error(overrides, message):
  with pytest.raises(UserError, match=message):
    experiments.validate(config(**overrides))
