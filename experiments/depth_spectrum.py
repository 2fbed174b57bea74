"""Singular values of the input-output Jacobian of deep tanh and relu CNNs through depth, gaussian
against delta-orthogonal kernels, at their critical scales, beside free probability's mean and
variance of s^2 (Pennington, Schoenholz & Ganguli 2017): the depth_decay sweep with
jacobian_spectrum on, at a width and size where the whole Jacobian (256 x 256) is cheap.
"""

from experiments import depth_decay


def get_config():
  config = depth_decay.get_config()
  config.activations = ('tanh', 'relu')
  config.depths = (2, 8, 32, 128)
  # critical: tanh at sigma_b2 = 0.005 (mean field: 1.3317), relu at 2 (whatever sigma_b2); each
  # activation is measured at both (the other one's scale is off its critical line)
  config.sigma_w2 = (1.3317, 2.0)
  config.width = 32
  config.spatial_shape = (8,)
  config.batch_size = 2
  config.jacobian_spectrum = True
  return config
