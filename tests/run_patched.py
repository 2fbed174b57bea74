"""`python tests/run_patched.py PATCH... -- FLAGS...`: `python run.py FLAGS` with PATCHes applied
to lib first, for the end-to-end tests that must stop run.py at a known point (a subprocess cannot
take a test's monkeypatch). Each PATCH is NAME or NAME=ARG:ARG...:

  slow_groups                       half a second's pause after each group's records are written
                                    (so that a signal lands mid-sweep)
  repeating_text                    lib.data.text.corpus serves tests/conftest's repeating text
  stall_after_checkpoint=STEP       once the checkpoint at STEP is saved, print 'stalled after the
                                    checkpoint at STEP' to stderr and wait there until SIGTERM
                                    asks to stop (then go on) or a kill ends the process
  fill_disk_after_checkpoint=DISK:STEP:SPARE
                                    once the checkpoint at STEP is saved, remount the tmpfs DISK
                                    so that SPARE pages are left (the next save fails part-written)
"""

import os
import runpy
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lib.runtime import preemption  # pylint: disable=g-import-not-at-top,wrong-import-position
from lib.runtime import results  # pylint: disable=g-import-not-at-top,wrong-import-position
from lib.runtime import train  # pylint: disable=g-import-not-at-top,wrong-import-position


def slow_groups():
  append = results.ResultStore.append

  def slow_append(self, records):
    append(self, records)
    time.sleep(0.5)
  results.ResultStore.append = slow_append


def repeating_text():
  from lib.data import text  # pylint: disable=g-import-not-at-top
  from tests.conftest import repeating_corpus  # pylint: disable=g-import-not-at-top
  text.corpus = repeating_corpus


def _after_checkpoint(step: int, then) -> None:
  """Calls then() once the checkpoint at `step` is saved."""
  save = train.Checkpoints.save

  def save_then(self, at, state):
    save(self, at, state)
    if at == step:
      then(state)
  train.Checkpoints.save = save_then


def stall_after_checkpoint(step: str):
  def stall(state):
    assert 'params' in state
    print(f'stalled after the checkpoint at {step}', file=sys.stderr, flush=True)
    while not preemption.requested():
      time.sleep(0.02)
  _after_checkpoint(int(step), stall)


def fill_disk_after_checkpoint(disk: str, step: str, spare: str):
  def fill(_):
    stat = os.statvfs(disk)
    size = (stat.f_blocks - stat.f_bfree + int(spare)) * stat.f_frsize
    subprocess.run(['mount', '-o', f'remount,size={size}', 'tmpfs', disk], check=True)
  _after_checkpoint(int(step), fill)


PATCHES = {f.__name__: f for f in (slow_groups, repeating_text, stall_after_checkpoint,
                                   fill_disk_after_checkpoint)}


def main():
  split = sys.argv.index('--')
  for patch in sys.argv[1:split]:
    name, _, args = patch.partition('=')
    PATCHES[name](*(args.split(':') if args else ()))
  sys.argv = [os.path.join(ROOT, 'run.py'), *sys.argv[split + 1:]]
  runpy.run_path(sys.argv[0], run_name='__main__')


if __name__ == '__main__':
  main()
