"""Benchmarks, printed as a table and optionally written as flat JSON.

  python bench/run.py [--quick] [--repeats N] [--json FILE]

main_job_seconds: wall time of `python run.py` with no flags (start-up, compiles, plots included),
median over repeats in fresh processes, each with an empty compilation cache; main_job_compiles:
XLA compilations it performs (counted from JAX's compile log, persistent-cache hits excluded).
main_job_seconds_warm: the same run again with the cache the cold run filled (a rerun or resumed
sweep), which compiles nothing. The budget for the main job is 60 s on 2 CPU cores.
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


def _run_main_job(workdir: str, cache_dir: str, extra_flags: list):
  """(wall seconds, XLA compiles) of one `python run.py` in a fresh process."""
  env = {**os.environ, 'JAX_LOG_COMPILES': '1'}
  start = time.perf_counter()
  result = subprocess.run([sys.executable, os.path.join(ROOT, 'run.py'), *extra_flags,
                           f'--workdir={workdir}', f'--compilation_cache_dir={cache_dir}'],
                          env=env, capture_output=True, text=True, check=True)
  seconds = time.perf_counter() - start
  return seconds, (result.stderr.count('Finished XLA compilation')
                   - result.stderr.count('Persistent compilation cache hit'))


def main_job(repeats: int, extra_flags: list) -> dict:
  """Runs run.py cold (empty cache) and warm (the cache the cold run filled) in fresh processes;
  returns the median wall times, the cold spread and the compiles of each."""
  cold, warm, compiles, warm_compiles = [], [], [], []
  for _ in range(repeats):
    with tempfile.TemporaryDirectory() as tmp:
      seconds, count = _run_main_job(f'{tmp}/cold', f'{tmp}/cache', extra_flags)
      cold.append(seconds)
      compiles.append(count)
      seconds, count = _run_main_job(f'{tmp}/warm', f'{tmp}/cache', extra_flags)
      warm.append(seconds)
      warm_compiles.append(count)
  return {'main_job_seconds': statistics.median(cold),
          'main_job_seconds_min': min(cold), 'main_job_seconds_max': max(cold),
          'main_job_compiles': max(compiles),
          'main_job_seconds_warm': statistics.median(warm),
          'main_job_compiles_warm': max(warm_compiles)}


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
