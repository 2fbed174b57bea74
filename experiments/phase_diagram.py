"""Phase diagram of a tanh RNN: measured decay rate over a (sigma_w2, sigma_b2) grid, with the
mean-field critical line chi1 = 1 (sigma_v2 added to sigma_b2) drawn over it.

The keys are those of experiments/gradient_decay.py (it is the same sweep); one cell and one
length make the whole grid one compiled program.
"""

import numpy as np

from experiments import gradient_decay


def get_config():
  config = gradient_decay.get_config()
  config.experiment = 'phase_diagram'
  config.cells = ('tanh',)
  config.seq_lens = (100,)
  config.sigma_w2 = tuple(float(w) for w in np.round(np.arange(1.0, 6.01, 0.25), 2))
  config.sigma_b2 = tuple(float(b) for b in np.round(np.arange(0.0, 0.501, 0.05), 2))
  # Inputs dominate the bias: an RNN's bias is the same at every step, and where it dominates
  # (sigma_b2 >> sigma_v2) each network sits near a fixed point of its own, and 2 seeds at width
  # 256 scatter the measured critical sigma_w2 by 9-15% (docs/experiments/phase_diagram.md).
  # With sigma_v2 = 1 the crossing is within 3.4% of the mean-field line.
  config.sigma_v2 = 1.0
  config.batch_size = 8
  config.fit_k_min = 10  # past the transient next to the loss
  config.fit_k_max = 90  # before the transient from the zero initial state
  return config
