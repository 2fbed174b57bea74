"""Long-range memory: which models learn a dependency across T steps (adding problem or copy).

The default tells the story in a few minutes on a laptop CPU, on the adding problem: plain tanh
and relu (IRNN) RNNs fall to the baseline (MSE 1/6, predicting the mean) as T grows, the gated
cells hold to longer T, and causal self-attention holds at every length.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.experiment = 'long_range_memory'  # which lib experiment runs this config
  config.task = 'adding'  # adding | copy
  config.cells = ('tanh', 'relu', 'lstm', 'gru', 'attention')  # relu: IRNN; attention: transformer
  config.seq_lens = (50, 100, 200)  # T: the dependency's length (copy: the delay)
  config.num_steps = 1000  # training steps
  config.optimizer = 'adam'  # adam | rmsprop | sgd
  config.learning_rate = 1e-3
  config.clip_norm = (1.0,)  # clip_by_global_norm; 0: off; several values are swept
  config.batch_size = 32
  config.test_size = 256  # held-out examples per seed (a fixed batch from the seed's test stream)
  config.hidden_size = 32  # RNN state size; attention model width
  config.num_heads = 2  # attention heads
  config.num_layers = 1  # attention layers
  config.sigma_w2 = 1.0  # recurrent kernel variance (x N); relu ignores it (identity)
  config.sigma_v2 = 1.0  # input kernel variance (x D)
  config.sigma_b2 = 0.0  # bias variance
  config.recurrent_init = 'gaussian'  # gaussian | orthogonal | identity, for tanh, lstm, gru
  config.gate_bias = 1.0  # added to the LSTM forget / GRU update gate bias
  config.num_seeds = 2  # seeds seed .. seed + num_seeds - 1 (in one program)
  config.seed = 0  # first seed
  config.log_every = 50  # steps per logged point of the training curves
  config.checkpoint_every = 250  # steps between checkpoints (0: none); a multiple of log_every
  return config
