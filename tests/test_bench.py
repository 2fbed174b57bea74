"""bench/run.py on a tiny grid: the sweep it times and the plain JAX loop it compares against
give the same profiles, and its check rejects profiles that are not the same; the flax.linen.Conv
CNN it times PatchConv against computes the same logits."""

import jax
import numpy as np
import pytest

from bench import run as bench
from lib.experiments import gradient_decay
from lib.nets import models
from tests.conftest import config


@pytest.fixture(scope='module')
def tiny_grid():
  """The grid of one cell: the bench's code is the same for every cell (what differs is lib's,
  checked in tests/nets and tests/measure, and bench/run.py checks its own grid of tanh and lstm
  with check_same before it times it); a second cell cost two compiles more (4 CPU-s)."""
  cfg = gradient_decay.validate(config(
      cells=('tanh',), seq_lens=(16,), sigma_w2=(1.0, 3.0), hidden_size=16, input_size=4,
      batch_size=4, num_seeds=2))
  return cfg, bench.our_sweep(cfg)(), bench.user_loop(cfg)()


def test_the_sweep_and_the_plain_jax_loop_give_the_same_profiles(tiny_grid):
  cfg, ours, theirs = tiny_grid
  assert sorted(ours) == sorted(theirs) == [('tanh', 16)]
  for group, profiles in ours.items():
    assert profiles.shape == (2, cfg['num_seeds'], group[1]) == theirs[group].shape
  assert bench.check_same(ours, theirs) < 1e-4


def test_the_check_rejects_a_profile_off_by_a_hundredth(tiny_grid):
  _, ours, theirs = tiny_grid
  off = {group: profiles.copy() for group, profiles in theirs.items()}
  off['tanh', 16][1, 0, 3] += 0.01
  with pytest.raises(AssertionError, match='tanh T=16'):
    bench.check_same(ours, off)


def test_flax_conv_net_computes_what_patch_conv_computes_and_the_check_sees_a_difference():
  patch, xla = models.ConvNet(3, 10), bench.xla_conv_net(3, 10)
  rng = np.random.default_rng(0)  # random inputs and parameters (ConvNet's init compiles slowly)
  x = rng.normal(size=(4, 40, 1)).astype(np.float32)
  params = jax.tree.map(lambda a: rng.normal(size=a.shape).astype(np.float32) * 0.3,
                        jax.eval_shape(lambda: patch.init(jax.random.key(0), x)))
  y = np.arange(4, dtype=np.int32)
  assert bench.check_same_conv(patch.apply, xla.apply, params, x, y, gradients=False) < 1e-5
  with pytest.raises(AssertionError, match='CNN logits'):
    bench.check_same_conv(patch.apply, lambda params, x: xla.apply(params, x[:, ::-1]), params,
                          x, y, gradients=False)
