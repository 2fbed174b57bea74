"""tests/compiling.py: the fast-compile settings are set, kept out when asked, recorded, and never
an XLA flag this jaxlib would abort on."""

import jax

from tests import compiling


def test_the_settings_are_set_unless_asked_not_to_and_a_value_set_by_hand_wins():
  env = {'XLA_FLAGS': '--xla_cpu_max_isa=AVX2'}
  compiling.set_environment(env)
  assert env['JAX_DISABLE_MOST_OPTIMIZATIONS'] == '1'
  assert env['XLA_FLAGS'].split() == ['--xla_cpu_max_isa=AVX2', compiling.FUSION_FLAG]
  assert compiling.settings(env) == f'JAX_DISABLE_MOST_OPTIMIZATIONS=1 {compiling.FUSION_FLAG}'
  default = compiling.default_environment(env)
  assert 'JAX_DISABLE_MOST_OPTIMIZATIONS' not in default
  assert default['XLA_FLAGS'] == '--xla_cpu_max_isa=AVX2' and compiling.settings(default) == ''
  compiling.set_environment(default)  # a subprocess of the defaults keeps them
  assert compiling.settings(default) == ''
  by_hand = {'JAX_DISABLE_MOST_OPTIMIZATIONS': '0',
             'XLA_FLAGS': '--xla_cpu_use_fusion_emitters=true'}
  compiling.set_environment(by_hand)
  assert by_hand == {'JAX_DISABLE_MOST_OPTIMIZATIONS': '0',
                     'XLA_FLAGS': '--xla_cpu_use_fusion_emitters=true'}


def test_a_flag_xla_does_not_know_is_not_set():
  """XLA aborts a process on an unknown flag in XLA_FLAGS; the probe says no instead (a jaxlib
  without the flag then runs the tests at its defaults)."""
  assert compiling._xla_knows(compiling.FUSION_FLAG)  # pylint: disable=protected-access
  assert not compiling._xla_knows('--xla_cpu_no_such_flag=true')  # pylint: disable=protected-access


def test_optimized_compiles_at_full_optimisation_and_puts_the_setting_back(monkeypatch):
  """This session runs under the settings (tests/conftest.py): XLA gets LLVM level 0; inside
  `optimized()` it gets JAX's default level (3), and the setting is put back after."""
  from jax._src import compiler  # pylint: disable=g-import-not-at-top
  levels, compile_ = [], compiler.backend_compile_and_load

  def spy(backend, module, devices, options, *rest):
    levels.append(options.executable_build_options.debug_options.xla_backend_optimization_level)
    return compile_(backend, module, devices, options, *rest)
  monkeypatch.setattr(compiler, 'backend_compile_and_load', spy)
  before = jax.config.read('jax_disable_most_optimizations')
  assert before is ('JAX_DISABLE_MOST_OPTIMIZATIONS=1' in compiling.settings())
  jax.jit(lambda x: jax.numpy.tanh(x) * 3.0123)(1.0)  # constants no other test compiles
  with compiling.optimized():
    jax.jit(lambda x: jax.numpy.tanh(x) * 3.0456)(1.0)
  assert jax.config.read('jax_disable_most_optimizations') is before
  assert levels == [0 if before else 3, 3]
