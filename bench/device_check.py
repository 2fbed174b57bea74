"""The device check: on a GPU or TPU machine, the fast test tier, the main job and the quick
benchmarks, and a column of figures for BENCHMARKS.md.

  python bench/device_check.py [--out DIR] [--tests ARGS] [--main_job ARGS] [--bench ARGS]

Writes into DIR (default device_check/): devices.txt (what JAX sees), tests.log, main_job.log
and main_job/ (its workdir), bench.json and bench.log, and column.md: a table of
| figure | <this device> | with the fast tier's result and wall time, the main job's wall time,
and every benchmark figure, to paste beside BENCHMARKS.md's CPU column. Each step runs in its
own process; a step that fails is recorded as failed in the column, and the others still run.
The defaults are the whole check (the fast tier, `python run.py`, `bench/run.py --quick`);
--tests, --main_job and --bench replace a step's arguments (the CPU test of this script runs
each at a tiny size). Exit status: 0 when every step passed, 1 otherwise.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(argv: list, log_path: str) -> tuple:
  """(return code, wall seconds) of argv run from the repository root, its output in log_path."""
  started = time.perf_counter()
  with open(log_path, 'w') as log:
    code = subprocess.call(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
  return code, time.perf_counter() - started


def _summary_line(log_path: str) -> str:
  """pytest's last line ('N passed in S s'), or ''."""
  with open(log_path) as f:
    lines = [line.strip() for line in f if line.strip()]
  return next((line.strip('= ') for line in reversed(lines)
               if ' passed' in line or ' failed' in line or ' error' in line), '')


def column(device: str, steps: dict, figures: dict) -> str:
  """The markdown table: a row per step (its result and wall time), then per figure."""
  rows = [f'| figure | {device} |', '|---|---|']
  for name, (code, seconds, note) in steps.items():
    status = 'passed' if code == 0 else f'FAILED (exit {code})'
    rows.append(f'| {name} | {status}, {seconds:.0f} s{"; " + note if note else ""} |')
  for name, value in figures.items():
    text = f'{value:.4g}' if isinstance(value, float) else str(value)
    rows.append(f'| `{name}` | {text} |')
  return '\n'.join(rows) + '\n'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='device_check')
  parser.add_argument('--tests', default='-m "not slow"', help='pytest arguments')
  parser.add_argument('--main_job', default='', help='run.py flags beside --workdir')
  parser.add_argument('--bench', default='--quick', help='bench/run.py arguments')
  args = parser.parse_args(argv)
  out = os.path.abspath(args.out)
  os.makedirs(out, exist_ok=True)
  python = sys.executable
  code, _ = _run([python, '-c', 'import jax; print(jax.default_backend(), jax.devices())'],
                 os.path.join(out, 'devices.txt'))
  with open(os.path.join(out, 'devices.txt')) as f:
    device = f.read().strip().splitlines()[-1] if code == 0 else 'unknown device'
  steps = {}
  log = os.path.join(out, 'tests.log')
  code, seconds = _run([python, '-m', 'pytest', *shlex.split(args.tests)], log)
  steps['fast test tier'] = (code, seconds, _summary_line(log))
  code, seconds = _run([python, 'run.py', f'--workdir={os.path.join(out, "main_job")}',
                        *shlex.split(args.main_job)], os.path.join(out, 'main_job.log'))
  steps['main job (`python run.py`)'] = (code, seconds, '')
  bench_json = os.path.join(out, 'bench.json')
  code, seconds = _run([python, 'bench/run.py', *shlex.split(args.bench), '--json', bench_json],
                       os.path.join(out, 'bench.log'))
  steps['`bench/run.py ' + args.bench + '`'] = (code, seconds, '')
  figures = {}
  if code == 0 and os.path.exists(bench_json):
    with open(bench_json) as f:
      figures = json.load(f)
  with open(os.path.join(out, 'column.md'), 'w') as f:
    f.write(column(device, steps, figures))
  print(f'device check: {os.path.join(out, "column.md")}')
  return 0 if all(code == 0 for code, _, _ in steps.values()) else 1


if __name__ == '__main__':
  sys.exit(main())
