"""Programs built once per run (lib/runtime/compiled.cached): the key of a built object is its
builder and every argument it was called with, so that changing any argument builds anew and
the same arguments give the same object."""

import numpy as np
import pytest

from lib.experiments import gradient_decay
from lib.runtime import compiled
from lib.runtime import devices
from tests.conftest import config

calls = []


@compiled.cached
def _build(cfg, name, size, data=None, *, scale=1.0):
  calls.append((name, size))
  return object()


DATA = np.zeros(3)
BASE = (({'width': 4, 'lengths': [2, 3]}, 'a', 1), {'data': DATA, 'scale': 1.0})
# each argument changed in turn: a config value, a nested list, a name, an int for a float and a
# bool for an int (equal in Python, other programs), an array of equal values (another object),
# a keyword argument
CHANGED = [
    (({'width': 5, 'lengths': [2, 3]}, 'a', 1), {'data': DATA, 'scale': 1.0}),
    (({'width': 4, 'lengths': [2, 4]}, 'a', 1), {'data': DATA, 'scale': 1.0}),
    (({'width': 4, 'lengths': [2, 3], 'extra': 0}, 'a', 1), {'data': DATA, 'scale': 1.0}),
    (({'width': 4, 'lengths': [2, 3]}, 'b', 1), {'data': DATA, 'scale': 1.0}),
    (({'width': 4, 'lengths': [2, 3]}, 'a', 1.0), {'data': DATA, 'scale': 1.0}),
    (({'width': 4, 'lengths': [2, 3]}, 'a', True), {'data': DATA, 'scale': 1.0}),
    (({'width': 4, 'lengths': [2, 3]}, 'a', 1), {'data': np.zeros(3), 'scale': 1.0}),
    (({'width': 4, 'lengths': [2, 3]}, 'a', 1), {'data': DATA, 'scale': 2.0}),
    (({'width': 4, 'lengths': [2, 3]}, 'a', 1), {'data': DATA}),
]


def test_a_cached_builder_builds_once_per_distinct_arguments():
  """Inside shared(): equal arguments (a config rebuilt equal, keys in another order) give the
  very object built first, with one call of the builder; each argument changed in turn gives a
  new one. Outside shared(), every call builds."""
  del calls[:]
  with compiled.shared():
    args, kwargs = BASE
    first = _build(*args, **kwargs)
    again = _build({'lengths': [2, 3], 'width': 4}, 'a', 1, data=DATA, scale=1.0)
    assert again is first and len(calls) == 1
    built = [_build(*a, **k) for a, k in CHANGED]
    assert len({id(b) for b in built + [first]}) == len(CHANGED) + 1
    assert len(calls) == len(CHANGED) + 1
    assert [_build(*a, **k) for a, k in CHANGED] == built  # each kept
  assert _build(*BASE[0], **BASE[1]) is not _build(*BASE[0], **BASE[1])


def test_a_key_keeps_what_it_names_by_identity_alive():
  """An argument keyed by its id is kept with the entry: a new object cannot take its id and
  fetch the old program."""
  with compiled.shared():
    first = _build({}, 'a', 1, data=np.ones(2))
    import gc  # pylint: disable=g-import-not-at-top
    gc.collect()
    assert _build({}, 'a', 1, data=np.ones(2)) is not first


@pytest.fixture(scope='module')
def cfg():
  return gradient_decay.validate(config('gradient_decay', cells=('tanh',), seq_lens=(3,),
                                        hidden_size=4, input_size=2, batch_size=2,
                                        num_seeds=1, sigma_w2=(1.0,), sigma_b2=(0.0,)))


def test_the_sweeps_program_is_new_for_each_argument_and_the_points_batch(cfg):
  """gradient_decay.program(cfg, cell, length): the same arguments, one program; a config key,
  the cell, the length or the run's points batch (--points_batch, in the run's config) changed,
  another, laid out by that batch."""
  with compiled.shared():
    program = gradient_decay.program(cfg, 'tanh', 3)
    assert gradient_decay.program(dict(cfg), 'tanh', 3) is program
    others = [gradient_decay.program({**cfg, 'hidden_size': 5}, 'tanh', 3),
              gradient_decay.program(cfg, 'gru', 3),
              gradient_decay.program(cfg, 'tanh', 4),
              gradient_decay.program({**cfg, devices.RUN_KEY: 2}, 'tanh', 3)]
    assert len({id(p) for p in others + [program]}) == 5
    assert program.batch == 1 and others[-1].batch == 2


def test_the_training_programs_are_new_for_each_argument_and_the_points_batch():
  """train.init_program and train.chunk_program: the same arguments, one program; the task, the
  optimizer, the chunk's steps, the seeds or the points batch changed, another, laid out by that
  batch (building compiles nothing)."""
  import optax  # pylint: disable=g-import-not-at-top
  from lib.runtime import train  # pylint: disable=g-import-not-at-top
  loss = lambda params, batch: params * batch
  tasks = [train.Task(batch=lambda data, seed, step: 1.0, loss=loss,
                      evaluate=lambda params, data, seed: {}) for _ in range(2)]
  opts = [optax.sgd(0.1), optax.sgd(0.1)]  # equal, but other objects: other programs
  init = lambda key: 0.0
  with compiled.shared():
    chunk = train.chunk_program(tasks[0], opts[0], 2, 3, 1)
    assert train.chunk_program(tasks[0], opts[0], 2, 3, 1) is chunk
    chunks = [train.chunk_program(tasks[1], opts[0], 2, 3, 1),
              train.chunk_program(tasks[0], opts[1], 2, 3, 1),
              train.chunk_program(tasks[0], opts[0], 4, 3, 1),
              train.chunk_program(tasks[0], opts[0], 2, 4, 1),
              train.chunk_program(tasks[0], opts[0], 2, 3, 2)]
    assert len({id(p) for p in chunks + [chunk]}) == 6 and chunks[-1].batch == 2
    first = train.init_program(init, tasks[0], opts[0], 5, 3, 1)
    assert train.init_program(init, tasks[0], opts[0], 5, 3, 1) is first
    inits = [train.init_program(lambda key: 0.0, tasks[0], opts[0], 5, 3, 1),
             train.init_program(init, tasks[0], opts[0], 6, 3, 1),
             train.init_program(init, tasks[0], opts[0], 5, 3, 2)]
    assert len({id(p) for p in inits + [first]}) == 4 and inits[-1].batch == 2
