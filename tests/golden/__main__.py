"""Reruns the golden records and rewrites tests/golden/ (from the repository root):

  python -m tests.golden               every run of tests.golden.TINY
  python -m tests.golden NAME ...      those runs only
  python -m tests.golden --check       compares without writing; exit status 1 if any differ

Prints per run 'unchanged' or each changed field (the record, the field's path, the old and new
value), and its CPU time. Regenerate only when a number is meant to change, in a commit of its
own that says which numbers moved and why.

Runs as the test does: one CPU device, OpenBLAS on one thread, XLA's fast-compile settings
(tests/compiling.py), a compilation cache in a temporary folder (programs only; numbers do not
depend on it).
"""

import json
import os
import sys
import tempfile
import time

USAGE = 'usage: python -m tests.golden [--check] [NAME ...]'


def main(argv) -> int:
  check = '--check' in argv
  names = [a for a in argv if a != '--check']
  from tests import compiling  # pylint: disable=g-import-not-at-top
  from tests import golden  # pylint: disable=g-import-not-at-top
  unknown = [n for n in names if n not in golden.TINY] + [a for a in names if a.startswith('-')]
  if unknown:
    print(f'{USAGE}\nunknown: {", ".join(unknown)}; runs: {", ".join(golden.TINY)}',
          file=sys.stderr)
    return 2
  names = names or list(golden.TINY)
  with tempfile.TemporaryDirectory(prefix='golden-') as tmp:
    # as tests/conftest.py sets them for the test, before jax starts
    os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
    os.environ['JAX_COMPILATION_CACHE_DIR'] = os.path.join(tmp, 'jax-cache')
    os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
    os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
    compiling.set_environment()
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_platforms', 'cpu')
    jax.config.update('jax_num_cpu_devices', 1)
    if jax.device_count() != 1:
      print(f'error: {jax.device_count()} CPU devices (XLA_FLAGS or JAX_NUM_CPU_DEVICES?); the '
            'golden records are made on one', file=sys.stderr)
      return 2
    stored, current = golden.read_environment(), golden.environment()
    note = golden.environment_note(stored, current)
    if note:
      print(f'environment differs from the records\' ({note}): '
            + (f'numbers compared at rtol {golden.RTOL}, atol {golden.ATOL}' if check
               else 'changes listed exactly'))
      if not check and stored and set(names) != set(golden.TINY):
        print('error: regenerate every run in a new environment (python -m tests.golden), so '
              'that environment.json is true of all of them', file=sys.stderr)
        return 2
    changed = []
    data_dir = os.path.join(tmp, 'tfds')
    for name in names:
      start = time.process_time()
      data = golden.run(name, os.path.join(tmp, name), data_dir)
      seconds = time.process_time() - start
      path = golden.golden_path(name)
      if os.path.exists(path):
        lines = golden.compare(name, golden.read_golden(name), golden.records(data),
                               exact=not (check and note), key=golden.point_key(name))
      else:
        lines = [f'{name}: new ({len(golden.records(data))} records)']
      print(f'{name}: ' + ('unchanged' if not lines else f'{len(lines)} difference line(s)')
            + f' ({seconds:.1f} CPU-s)')
      for line in lines:
        print('  ' + line)
      if lines:
        changed.append(name)
      if not check and (lines or not os.path.exists(path)):
        golden.write_atomic(path, data)
    if not check and (changed or note or not stored):
      golden.write_atomic(golden.ENVIRONMENT_FILE, (json.dumps(
          current, indent=2, sort_keys=True) + '\n').encode())
  if check:
    return 1 if changed else 0
  print(f'rewrote {len(changed)} of {len(names)}: {", ".join(changed) or "none"}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
