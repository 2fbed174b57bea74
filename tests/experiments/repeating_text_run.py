"""python tests/experiments/repeating_text_run.py STALL_STEP RUN_ARGS...: `python run.py
RUN_ARGS` with lib.data.text.corpus serving test_language_model's repeating text (a subprocess
cannot take the test's monkeypatch), and, once the checkpoint at STALL_STEP is saved, hanging
there, for the test to kill it with kill -9 at a known point (0: no hang)."""

import os
import runpy
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from lib.data import text  # pylint: disable=g-import-not-at-top,wrong-import-position
from lib.runtime import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from tests.experiments import test_language_model  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  stall_step, args = int(sys.argv[1]), sys.argv[2:]
  text.corpus = test_language_model.repeating_corpus
  save = train.Checkpoints.save

  def save_then_stall(self, step, state):
    save(self, step, state)
    if step == stall_step:
      assert 'carry' in state  # the state carried between segments is in the checkpoint
      print(f'stalled after the checkpoint at {step}', file=sys.stderr, flush=True)
      while True:
        time.sleep(1)
  train.Checkpoints.save = save_then_stall
  sys.argv = [os.path.join(ROOT, 'run.py'), *args]
  runpy.run_path(sys.argv[0], run_name='__main__')


if __name__ == '__main__':
  main()
