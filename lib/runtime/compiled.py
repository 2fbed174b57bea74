"""Programs compiled once in a run: the pre-flight memory check, the dry run and the run share
one compile of each program.

jax.jit keeps its executables per function object, and each part of a run builds its own objects:
the pre-flight check (`lib.runtime.limits`) asks the experiment for its programs, and the sweep
or the trainer builds them again, equal but new. `Program` wraps a jitted function; inside
`shared()` (which `lib.runtime.jobs` runs in) it keeps its executables in one table keyed by the
lowered module (its StableHLO text: every operation, constant, shape, dtype and sharding; the
function must be jitted with keep_unused=True, so that no argument is pruned from it) and the
devices, so the first compile of a program serves every equal one after it, and a second
compile is a lowering and a look-up. A module the text does not describe whole (host
callbacks; constants passed beside it, under jax_use_simplified_jaxpr_constants) is never
shared. Outside `shared()` a Program compiles once per argument signature, as jax.jit does.

The tracing and lowering that a look-up still costs (a fraction of a second a program, most of
what a rerun with a warm compilation cache spends on it) is saved where an experiment builds
its programs through a `cached` builder: inside `shared()` the memory check and the run then use
one Program object, traced and lowered once. Its key is the builder and every argument it was
called with (`arguments_key`), so a key cannot leave out an input: a builder reads nothing but
its arguments (the points batch included, `lib.runtime.devices.map_points`).
"""

import contextlib
import functools
import hashlib
from typing import Callable

import jax
import numpy as np

_table = None  # sha256 of a lowered module -> jax.stages.Compiled, inside `shared()`
_built = None  # builder and arguments -> (objects kept alive, what was built), in `shared()`


@contextlib.contextmanager
def shared():
  """Programs built inside share one executable per distinct lowered module, and a `cached`
  builder returns one object per equal arguments (the tables live as long as the outermost
  `shared()`, so their executables are freed with it)."""
  global _table, _built
  outer = _table, _built
  if _table is None:
    _table, _built = {}, {}
  try:
    yield
  finally:
    _table, _built = outer


def cached(build: Callable) -> Callable:
  """`build` (a function of its arguments alone) returning, inside `shared()`, one object per
  equal arguments: the first call's result is kept under the key of the builder and its
  arguments (`arguments_key`), and what those arguments refer to is kept alive with it. Outside
  `shared()`, every call builds anew."""
  @functools.wraps(build)
  def cached_build(*args, **kwargs):
    if _built is None:
      return build(*args, **kwargs)
    alive = []
    key = (build.__module__, build.__qualname__,
           arguments_key((args, dict(sorted(kwargs.items()))), alive))
    if key not in _built:
      _built[key] = (alive, build(*args, **kwargs))
    return _built[key][1]
  return cached_build


def arguments_key(value, alive: list):
  """A hashable key equal for equal arguments: numbers, strings, None and booleans by type and
  value (1, 1.0 and True differ; floats by repr, so that NaN equals NaN), tuples, lists and
  dicts by their items, anything else (an array, a dataset, a model, a function) by identity,
  appended to `alive`: kept as long as the entry, so that its id names no other object."""
  if value is None or isinstance(value, (bool, int, str, np.integer, np.bool_)):
    return (type(value).__name__, value)
  if isinstance(value, (float, np.floating)):
    return (type(value).__name__, repr(float(value)))
  if isinstance(value, (tuple, list)):
    return (type(value).__name__,) + tuple(arguments_key(v, alive) for v in value)
  if isinstance(value, dict) and all(isinstance(k, str) for k in value):
    return ('dict',) + tuple((k, arguments_key(value[k], alive)) for k in sorted(value))
  alive.append(value)
  return ('id', id(value))


def _signature(args) -> tuple:
  """What jax.jit would retrace or recompile for: the tree, each leaf's shape, dtype, weak type
  and sharding, and the x64 mode."""
  leaves, treedef = jax.tree.flatten(args)
  return (treedef, bool(jax.config.jax_enable_x64),
          tuple((np.shape(leaf), str(getattr(leaf, 'dtype', None) or np.result_type(leaf)),
                 getattr(leaf, 'weak_type', None), getattr(leaf, 'sharding', None))
                for leaf in leaves))


def _shareable(text: str) -> bool:
  """Whether the lowered text is the whole program: no host callback (its Python function is
  not in the text), no constant passed beside the module."""
  return 'callback' not in text and not getattr(jax.config, 'jax_use_simplified_jaxpr_constants',
                                                  False)


class Program:
  """A jitted function, compiled once per argument signature (and once per lowered module
  inside `shared()`). `devices`: the devices it runs on."""

  def __init__(self, jitted: Callable, devices: list):
    self._jitted = jitted
    self.devices = devices
    self._executables = {}

  def trace(self, *args) -> jax.stages.Traced:
    return self._jitted.trace(*args)

  def eval_shape(self, *args):
    return jax.eval_shape(self._jitted, *args)

  def compile(self, *args) -> jax.stages.Compiled:
    """The executable for arguments like `args` (arrays, or jax.ShapeDtypeStructs with the
    shardings the arrays will have)."""
    signature = _signature(args)
    if signature not in self._executables:
      lowered = self._jitted.trace(*args).lower()
      text = lowered.as_text() if _table is not None else ''
      if _table is None or not _shareable(text):
        self._executables[signature] = lowered.compile()
      else:
        devices = ','.join(f'{d.platform}:{d.id}' for d in self.devices)
        key = hashlib.sha256(f'{devices}\n{lowered.in_tree}\n{lowered.out_tree}\n{text}'
                             .encode()).hexdigest()
        if key not in _table:
          _table[key] = lowered.compile()
        self._executables[signature] = _table[key]
    return self._executables[signature]

  def __call__(self, *args):
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(args)):
      return self._jitted(*args)  # inside another transformation: an ordinary jitted call
    return self.compile(*args)(*args)
