"""Gradient clipping (Pascanu, Mikolov & Bengio 2013) in the exploding regime, with and without.

A tanh RNN initialised in the chaotic phase (sigma_w2 = 4: gradients grow about e^0.14 per step
back) trained by plain SGD on the adding problem: the unclipped run's steps are as large as its
exploding gradients, the clipped one's are bounded by clip_norm x learning_rate. Both clip_norm
values are swept in one run, so the training curves sit side by side.
"""

from experiments import long_range_memory


def get_config():
  config = long_range_memory.get_config()
  config.cells = ('tanh',)
  config.seq_lens = (50,)
  config.sigma_w2 = 4.0  # chaotic phase: exploding gradients at initialisation
  config.optimizer = 'sgd'  # Adam rescales every step, which hides what clipping does
  config.learning_rate = 0.05
  config.clip_norm = (0.0, 1.0)  # off, and clip_by_global_norm(1)
  config.num_steps = 1000
  config.num_seeds = 4
  return config
