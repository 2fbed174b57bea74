"""`python tests/runtime/many_devices.py WHAT [OUT]`: the many-device side of
tests/runtime/test_devices.py, run in a process started with XLA_FLAGS'
--xla_force_host_platform_device_count (a process's device count is fixed when JAX starts).
What the test compares with its own one-device process lives here too, so both sides read one
definition.

  four OUT       (4 devices) writes in OUT: sweep/ (a workdir of SWEEP, plots not drawn),
                 four.npz (training uninterrupted), ckpt/ (training stopped in its third chunk,
                 after the checkpoint at step 20), out.json (chunk counts, and what each
                 fewer-points program did)
  qr_on_2        (2 devices) 20 calls of a program of 8 delta-orthogonal layers, points 2 at a
                 time on each device; prints 'ok' (it hung before devices.one_at_a_time)
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.conftest import TINY  # pylint: disable=g-import-not-at-top,wrong-import-position
from tests.conftest import trainer_setup  # pylint: disable=g-import-not-at-top,wrong-import-position
from tests.conftest import validated  # pylint: disable=g-import-not-at-top,wrong-import-position

# one cell, 2 lengths (one program: bucket 5), 3 scales x 2 seeds: 6 points per group, padded to
# 8 on 4 devices (2 a device, the last device's second a copy of point 6)
SWEEP = {**TINY, 'sigma_w2': (0.5, 1.0, 4.0), 'cells': ('gru',)}
# the tiny GRU of conftest's trainer_setup on 5 seeds (padded to 8 on 4 devices, 2 a device;
# 3 or 4 seeds would use 3 or 4 devices, unpadded): 40 steps in chunks of 10, a checkpoint every 20
TRAIN_SEEDS, TRAIN_STEPS, LOG_EVERY, CHECKPOINT_EVERY = [3, 4, 5, 6, 7], 40, 10, 20
# the smallest sizes: they compile in 3/5 the time of test_train's (T=6, 8 units, batches of 16, 64)
TRAIN_MODEL = {'seq_len': 2, 'hidden_size': 2, 'batch_size': 2, 'test_size': 2}
# (points, points batch) of the fewer-points programs, and how many of 4 devices each uses
FEWER = [(1, 1, 1), (3, 1, 3), (6, 1, 4), (3, 2, 2), (6, 4, 2)]


class Stopped(Exception):
  pass


def _counted(chunk_program, calls: list, stop_at: int = 0):
  """train.chunk_program whose chunks append to `calls`, raising Stopped in chunk `stop_at`
  (as a kill would stop the run there; 0: never)."""
  def program(*args):
    chunk = chunk_program(*args)

    def wrapped(*chunk_args):
      calls.append(1)
      if len(calls) == stop_at:
        raise Stopped()
      return chunk(*chunk_args)
    return wrapped
  return program


def train(checkpoint_dir=None, stop_at: int = 0):
  """The tiny GRU trained on TRAIN_SEEDS in this process: (final state, chunks run)."""
  from lib.runtime import train as trainer  # pylint: disable=g-import-not-at-top
  model, task = trainer_setup('gru', **TRAIN_MODEL)
  calls, real = [], trainer.chunk_program
  trainer.chunk_program = _counted(real, calls, stop_at)
  try:
    final = trainer.train(model.init, task, trainer.optimizer('adam', 1e-2, 1.0), TRAIN_SEEDS,
                          TRAIN_STEPS, LOG_EVERY, checkpoint_dir,
                          checkpoint_every=CHECKPOINT_EVERY)
  finally:
    trainer.chunk_program = real
  return final, len(calls)


def delta_orthogonal_program(batch: int = 2):
  """A points program of 8 delta-orthogonal layers (64 channels, a QR each) summed, per seed,
  over 8 points, `batch` at a time on a device: the QRs that hung a 2-device run."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lib.nets import cnn  # pylint: disable=g-import-not-at-top
  from lib.runtime import devices  # pylint: disable=g-import-not-at-top
  return devices.map_points(lambda seed: cnn.init_params(
      jax.random.key(seed), 8, 64, 3, 1, sigma_w2=1.0, sigma_b2=0.0, init='delta_orthogonal',
      dtype=np.float32)['kernel'].sum(), 8, batch=batch)


def four(out: str) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lib import experiments  # pylint: disable=g-import-not-at-top
  from lib.experiments import gradient_decay  # pylint: disable=g-import-not-at-top
  from lib.runtime import devices  # pylint: disable=g-import-not-at-top
  assert jax.device_count() == 4
  gradient_decay.plot = lambda records, plots_dir: []  # the records are what is compared
  experiments.run(validated(**SWEEP), os.path.join(out, 'sweep'))
  final, chunks = train()
  assert len(jax.tree.leaves(final['params'])[0]) == len(TRAIN_SEEDS)  # no padded seed
  np.savez(os.path.join(out, 'four.npz'), *[np.asarray(a) for a in jax.tree.leaves(final)])
  try:
    train(os.path.join(out, 'ckpt'), stop_at=3)
    raise AssertionError('the stopped training ran to the end')
  except Stopped:
    pass
  fewer = []
  for count, batch, _ in FEWER:
    program = devices.map_points(lambda p: 2.0 * p, count, batch=batch)
    points = np.arange(count, dtype=np.float32)
    padded = devices.put(devices.pad(points, count, batch), True, count, batch)
    fewer.append({'used': len(devices.used_devices(count, batch)),
                  'padded': devices.padded_count(count, batch),
                  'input_devices': len(padded.sharding.device_set),
                  'output_devices': len(program(padded).sharding.device_set),
                  'out': devices.run_points(program, points).tolist()})
  with open(os.path.join(out, 'out.json'), 'w') as f:
    json.dump({'chunks': chunks, 'fewer': fewer}, f)


def qr_on_2() -> None:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lib.runtime import devices  # pylint: disable=g-import-not-at-top
  program = delta_orthogonal_program(2)
  for i in range(20):
    devices.run_points(program, np.arange(8, dtype=np.int32) + 8 * i)
  print('ok')


if __name__ == '__main__':
  {'four': four, 'qr_on_2': qr_on_2}[sys.argv[1]](*sys.argv[2:])
