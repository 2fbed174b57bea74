"""Many short `python run.py ARGS` processes for the price of one start-up (the bad-input tests).

Started as its own process (never from a test's process, whose XLA threads a fork would copy),
it imports what every run.py imports first (absl, jax, flax, scipy, the experiment modules) but
starts no JAX backend; then for each request it forks a child that is `python run.py ARGS` from
there on: run.py itself executed as __main__ (it defines its flags in the child), in the request's
working directory, its stdout and stderr its own files, its exit status what a fresh interpreter
would give (absl's sys.exit code, 1 and a traceback for an uncaught exception), its atexit
handlers run. A child has no state from another. What it does not test is run.py's start-up
imports: every other end-to-end test of run.py starts a fresh interpreter.

stdin: JSON [[args, cwd], ...]; stdout: JSON [{"returncode", "stdout", "stderr"}, ...].
"""

import atexit
import json
import os
import runpy
import sys
import shutil
import tempfile
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, 'run.py')


def _preload():
  sys.path.insert(0, ROOT)
  import absl.app  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  import lib.experiments  # pylint: disable=g-import-not-at-top
  for name in lib.experiments.EXPERIMENTS:
    lib.experiments.get(name)  # imports jax, flax, optax, scipy: no backend is started


def _child(args, cwd, out_path, err_path) -> None:
  """Becomes `python run.py ARGS` in `cwd`; never returns."""
  code = 1
  try:
    atexit._clear()  # pylint: disable=protected-access  (the parent's are not run.py's)
    os.chdir(cwd)
    for fd, path in ((1, out_path), (2, err_path)):
      os.dup2(os.open(path, os.O_WRONLY | os.O_TRUNC), fd)
    sys.argv = [RUN, *args]
    sys.path[0] = ROOT
    try:
      runpy.run_path(RUN, run_name='__main__')
      code = 0
    except SystemExit as e:  # what the interpreter makes of sys.exit(code)
      if e.code is None:
        code = 0
      elif isinstance(e.code, int):
        code = e.code
      else:
        print(e.code, file=sys.stderr)
        code = 1
    except BaseException:  # pylint: disable=broad-except
      traceback.print_exc()
      code = 1
    atexit._run_exitfuncs()  # pylint: disable=protected-access
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


def main():
  requests = json.load(sys.stdin)
  _preload()
  results = []
  tmp = tempfile.mkdtemp()
  try:
    for i, (args, cwd) in enumerate(requests):
      out_path, err_path = os.path.join(tmp, f'{i}.out'), os.path.join(tmp, f'{i}.err')
      for path in (out_path, err_path):
        open(path, 'w').close()
      sys.stdout.flush()
      sys.stderr.flush()
      pid = os.fork()
      if pid == 0:
        _child(args, cwd, out_path, err_path)
      _, status = os.waitpid(pid, 0)
      with open(out_path) as out, open(err_path) as err:
        results.append({'returncode': os.waitstatus_to_exitcode(status), 'stdout': out.read(),
                        'stderr': err.read()})
  finally:
    shutil.rmtree(tmp)
  json.dump(results, sys.stdout)


if __name__ == '__main__':
  main()
