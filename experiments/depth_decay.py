"""Gradient decay over depth in plain CNNs: depth plays the role that sequence length plays in RNNs.

A tanh CNN vanishes below the critical line (sigma_w2 = 0.8) and explodes above it
(sigma_w2 = 2.5); near it (sigma_w2 = 1.35 with sigma_b2 = 0.005: chi1 = 1.003, the critical
sigma_w2 being 1.33) gradients pass through hundreds of layers almost unchanged, with
delta-orthogonal kernels (Xiao et al. 2018) the same for every seed.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.experiment = 'depth_decay'  # which lib experiment runs this config
  config.activations = ('tanh',)  # tanh | relu
  config.inits = ('gaussian', 'delta_orthogonal')  # kernel initializers (scaled by sigma_w2)
  config.depths = (4, 16, 64, 256, 512)  # numbers of conv layers L (one program each per init)
  config.sigma_w2 = (0.8, 1.35, 2.5)  # kernel variance (x fan_in): swept in one program
  config.sigma_b2 = (0.005,)  # bias variance: swept in one program
  config.width = 64  # channels C of every layer
  config.kernel_size = 3  # k (per spatial dimension)
  config.spatial_shape = (16,)  # input positions: 16 is a 1-D signal, 8,8 an image
  config.batch_size = 4  # examples per point; the profile is ln of the batch mean
  config.num_seeds = 2  # seeds seed .. seed + num_seeds - 1 (in one program)
  config.seed = 0  # first seed
  config.dtype = 'float32'  # float32 | float64
  config.fit_k_min = 0  # decay rate: fit over k_min <= k <= k_max layers back from the loss
  config.fit_k_max = -1  # -1: up to L - 1
  # the singular values of the first example's input-output Jacobian (P C of them, the whole
  # P C x P C matrix carried through the layers: keep P C to a few hundred), beside free
  # probability's mean and variance of s^2 (experiments/depth_spectrum.py)
  config.jacobian_spectrum = False
  return config
