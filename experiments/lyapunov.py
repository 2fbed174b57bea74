"""The Lyapunov spectrum of each cell's state dynamics under the gradient sweep's inputs, beside
half the gradient's decay rate and, for tanh, the free-probability spectrum (Engelken, Wolf &
Abbott 2020; lib/measure/lyapunov). The networks are the gradient sweep's (its keys, below, mean
what they mean there), at one length.
"""

from experiments import gradient_decay


def get_config():
  config = gradient_decay.get_config()
  config.experiment = 'lyapunov'
  del config.seq_lens, config.length_buckets
  config.cells = ('tanh', 'relu', 'lstm', 'gru', 'lru')
  config.hidden_size = 128  # N: the spectrum has N exponents (2N for the LSTM's (c, h), LRU's)
  config.batch_size = 1  # trajectories per network (the spectrum is their mean)
  config.seq_len = 500  # steps per trajectory
  config.burn_in = 100  # steps before the average starts (the state and the vectors settle)
  config.num_exponents = 0  # the top k exponents; 0: all of them
  config.fit_k_min = 10  # the gradient's decay rate: fit window, as in gradient_decay
  config.fit_k_max = 400  # the fit window's last k (steps back from the loss)
  return config
