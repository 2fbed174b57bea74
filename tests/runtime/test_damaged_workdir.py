"""A damaged workdir, end to end: run.py ends in one line, never a traceback. A checkpoint that
cannot be read (a bad copy, a disk fault) costs the steps since the one before it; a workdir
file that is not UTF-8 stops the run, naming the file and what to do. (In-process, at a tiny
size: tests/runtime/test_train.py's fallbacks and tests/runtime/test_results.py's files.)

Every test here starts Python processes: the file is in the slow tier."""

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import checkpoint_steps
from tests.conftest import ROOT
from tests.conftest import RUN
from tests.conftest import run_in_process
from tests.conftest import TRAIN
from tests.conftest import TRAIN_FLAGS
from tests.conftest import validated

pytestmark = pytest.mark.slow
PATCHED = os.path.join(ROOT, 'tests', 'run_patched.py')


def _run(args, **kw):
  return subprocess.run([sys.executable, RUN, *TRAIN_FLAGS, '--cpu_devices=1', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300, **kw)


def test_a_damaged_checkpoint_resumes_from_the_one_before_with_one_line(tmp_path):
  """run.py training conftest's TRAIN (a checkpoint every 20 steps), killed (-9) once its
  checkpoint at step 40 is saved; every file of that checkpoint then overwritten with bytes
  that are not UTF-8. Run again, it says in one warning line that the checkpoint at 40 cannot
  be read and that training goes on from the one at 20, and writes the results of a run never
  stopped, byte for byte; no traceback."""
  workdir = tmp_path / 'w'
  victim = subprocess.Popen([sys.executable, PATCHED, 'stall_after_checkpoint=40', '--',
                             *TRAIN_FLAGS, '--cpu_devices=1', f'--workdir={workdir}'], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  for line in victim.stderr:
    if 'stalled after the checkpoint at 40' in line:
      break
  victim.send_signal(signal.SIGKILL)
  victim.communicate(timeout=120)
  assert checkpoint_steps(workdir) == [20, 40]
  damaged = workdir / 'checkpoints' / 'tanh-clip1.0-T2' / '40'
  for folder, _, files in os.walk(damaged):
    for name in files:
      with open(os.path.join(folder, name), 'wb') as f:
        f.write(b'\xff\xfe\x00garbage')
  rerun = _run([f'--workdir={workdir}'])
  assert rerun.returncode == 0 and 'Traceback' not in rerun.stderr, rerun.stderr
  (line,) = [l for l in rerun.stderr.splitlines() if 'cannot be read' in l]
  assert f'the checkpoint {damaged} cannot be read (UnicodeDecodeError: ' in line
  assert line.endswith('deleted; training goes on from the one at step 20')
  whole = tmp_path / 'whole'
  run_in_process(validated('long_range_memory', **TRAIN), whole)
  assert (workdir / 'results.jsonl').read_bytes() == (whole / 'results.jsonl').read_bytes()


def test_an_environment_file_that_is_not_utf8_stops_the_run_with_one_line(tmp_path):
  """A workdir whose environment.json holds bytes that are not UTF-8: exit 2, one line naming
  the file and what to do, before anything is compiled or written."""
  workdir = tmp_path / 'w'
  workdir.mkdir()
  (workdir / 'environment.json').write_bytes(b'\xff\xfe')
  result = _run([f'--workdir={workdir}'])
  assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr
  assert result.stderr.splitlines()[-1] == (
      f"error: {workdir}/environment.json is damaged: not UTF-8 text (byte b'\\xff' at 0); "
      'delete it (it lists the environments the runs ran in) and run again')
  assert sorted(os.listdir(workdir)) == ['environment.json']
