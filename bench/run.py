"""Benchmarks, printed as a table and optionally written as flat JSON.

  python bench/run.py [--quick] [--repeats N] [--json FILE]

main_job_seconds: wall time of `python run.py` with no flags (start-up, compiles, plots included),
median over repeats in fresh processes; main_job_compiles: XLA compilations it performs (counted
from JAX's compile log). The budget for the main job is 60 s on 2 CPU cores.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main_job(repeats: int, extra_flags: list) -> dict:
  """Runs run.py in fresh processes; returns the median wall time, its spread and compiles."""
  times, compiles = [], []
  for _ in range(repeats):
    with tempfile.TemporaryDirectory() as workdir:
      env = {**os.environ, 'JAX_LOG_COMPILES': '1'}
      start = time.perf_counter()
      result = subprocess.run([sys.executable, os.path.join(ROOT, 'run.py'), *extra_flags,
                               f'--workdir={workdir}/run'], env=env, capture_output=True,
                              text=True, check=True)
      times.append(time.perf_counter() - start)
      compiles.append(result.stderr.count('Finished XLA compilation'))
  return {'main_job_seconds': statistics.median(times),
          'main_job_seconds_min': min(times), 'main_job_seconds_max': max(times),
          'main_job_compiles': max(compiles)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help='one repeat')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--json', help='write every figure to this file as a flat JSON object')
  args = parser.parse_args()
  figures = main_job(1 if args.quick else args.repeats, [])
  for name, value in figures.items():
    print(f'{name:<24} {value:10.2f}' if isinstance(value, float) else f'{name:<24} {value:10d}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(figures, f, indent=2)


if __name__ == '__main__':
  main()
