"""Preemption: SIGTERM (what clusters and preemptible VMs send before they kill a job) asks a run
to stop at the next safe point, with everything it finished saved.

The signal handler only sets a flag. A sweep checks it after each group of points is written
(`lib.runtime.sweep.run_groups`); training checks it after each chunk of steps and saves a
checkpoint first (`lib.runtime.train.train`). Either then raises `Preempted`, which run.py reports
in one line with exit status 143 (128 + SIGTERM). Running the same command again continues where it
stopped.
"""

import signal
import threading

EXIT_STATUS = 128 + signal.SIGTERM
_requested = threading.Event()


class Preempted(Exception):
  """The run stopped at a safe point because SIGTERM asked it to."""


def install() -> None:
  """Makes SIGTERM request a stop instead of killing the process."""
  signal.signal(signal.SIGTERM, lambda signum, frame: _requested.set())


def requested() -> bool:
  return _requested.is_set()


def stop_if_requested() -> None:
  if _requested.is_set():
    raise Preempted()
