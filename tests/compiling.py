"""How the tests have XLA compile: quickly, since compiling is most of what the suite does.

Of the fast tier's CPU time, about 70% was XLA compiling programs (1,100 backend compiles,
measured with jax.monitoring's backend_compile_duration at 9b00d06), and under 15% running them:
the tests' programs are tiny. Two settings make XLA's CPU compiler 2-4x faster on them (the
largest program of language_model's golden run: 4.8 s -> 1.45 s), for code that runs slower:

- JAX_DISABLE_MOST_OPTIMIZATIONS=1: JAX's own switch (LLVM at -O0, its expensive passes off);
- XLA_FLAGS=--xla_cpu_use_fusion_emitters=false: XLA's loop emitters in place of its MLIR fusion
  emitters (which build an MLIR pipeline per fusion).

They move the last bits of some results (XLA orders and fuses a few operations otherwise), never
by more than the tests' tolerances. The golden records are made under them, and
tests/golden/environment.json says so: under other settings the records are compared within
tests.golden.RTOL / ATOL instead of exactly.

`set_environment` sets them before jax starts (tests/conftest.py, python -m tests.golden);
subprocesses and pytest-xdist's workers inherit them. TESTS_XLA=default keeps JAX's defaults:
`TESTS_XLA=default pytest` runs the suite as users' runs compile. `optimized()` compiles with
JAX's full optimisation inside a test whose time is in running its programs, not compiling them.
"""

import contextlib
import os
import subprocess
import sys

FUSION_FLAG = '--xla_cpu_use_fusion_emitters=false'


def _xla_knows(flag: str) -> bool:
  """Whether this jaxlib's XLA accepts `flag` in XLA_FLAGS (it aborts the process on a flag it does
  not know): a CPU client made in a subprocess, about 0.3 s."""
  probe = 'from jaxlib import _jax; _jax.get_tfrt_cpu_client()'
  env = {**os.environ, 'XLA_FLAGS': f'{os.environ.get("XLA_FLAGS", "")} {flag}'.strip()}
  try:
    return subprocess.run([sys.executable, '-c', probe], env=env, capture_output=True,
                          timeout=60, check=False).returncode == 0
  except (OSError, subprocess.SubprocessError):
    return False


def set_environment(environ=os.environ) -> None:
  """The two fast-compile settings in `environ`, unless TESTS_XLA=default or they are set there
  already (a value set by hand wins). Call before jax is imported."""
  if environ.get('TESTS_XLA', '') == 'default':
    return
  environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
  flags = environ.get('XLA_FLAGS', '')
  if 'xla_cpu_use_fusion_emitters' not in flags and _xla_knows(FUSION_FLAG):
    environ['XLA_FLAGS'] = f'{flags} {FUSION_FLAG}'.strip()


def default_environment(environ=os.environ) -> dict:
  """A copy of `environ` without the fast-compile settings: JAX's default compile, for a
  subprocess whose numbers are compared with another's at the defaults."""
  env = {k: v for k, v in environ.items() if k != 'JAX_DISABLE_MOST_OPTIMIZATIONS'}
  env['XLA_FLAGS'] = ' '.join(f for f in environ.get('XLA_FLAGS', '').split() if f != FUSION_FLAG)
  env['TESTS_XLA'] = 'default'
  return env


def settings(environ=os.environ) -> str:
  """The compile settings in force, as environment.json records them ('' at JAX's defaults)."""
  parts = []
  if environ.get('JAX_DISABLE_MOST_OPTIMIZATIONS', '').lower() in ('1', 'true', 'yes'):
    parts.append('JAX_DISABLE_MOST_OPTIMIZATIONS=1')
  parts += [f for f in environ.get('XLA_FLAGS', '').split() if 'fusion_emitters' in f]
  return ' '.join(parts)


@contextlib.contextmanager
def optimized():
  """JAX's full optimisation for the programs compiled inside (the fusion-emitter flag stays: it
  is the process's). A program jax already holds compiled is not compiled again."""
  import jax  # pylint: disable=g-import-not-at-top
  before = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', False)
  try:
    yield
  finally:
    jax.config.update('jax_disable_most_optimizations', before)
