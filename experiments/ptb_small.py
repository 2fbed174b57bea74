"""The "small" word-level LSTM language model of Zaremba, Sutskever & Vinyals (2014, "Recurrent
Neural Network Regularization") as the TensorFlow PTB tutorial runs it (ptb_word_lm.py,
SmallConfig): 2 layers of 200 units, embedding 200, every parameter U[-0.1, 0.1], SGD at
learning rate 1.0 for 4 epochs then halved after each, 13 epochs of truncated BPTT over 20 steps
of 20 parallel streams, clip_by_global_norm 5, no dropout; the test split read as one stream.
Published test perplexity: 114.5 (paper), 115.91 (tutorial; valid 121.39).

13 epochs of (929,589 // 20 - 1) // 20 = 2,323 segments: 30,199 steps, a point per epoch.

The tutorial's cost is the loss summed over the 20 steps of a segment (averaged over the batch);
ours is the mean over every token, 20 times smaller, and so its gradient. Its update, learning
rate 1.0 times the summed-loss gradient clipped to norm 5, is exactly learning rate 20 times
the mean-loss gradient clipped to norm 5 / 20 = 0.25: the values below (and the halving
schedule scales both alike).
"""

from experiments import language_model


def get_config():
  config = language_model.get_config()
  config.dataset = 'ptb_word'
  config.models = ('lstm',)
  config.context_lens = (20,)
  config.num_layers = 2
  config.hidden_size = 200
  config.embed_size = 200
  config.init = 'uniform'
  config.init_scale = 0.1
  config.gate_bias = 0.0  # the tutorial's LSTMCell: forget_bias 0 (its BasicLSTMCell: 1.0)
  # lru | linear: |lambda| uniform in area on the ring r_min..r_max, phase U[0, max_phase]
  # (Orvieto et al. 2023's long-range init); the other cells ignore these three
  config.r_min = 0.9
  config.r_max = 0.999
  config.max_phase = 6.283185307179586  # 2 pi
  # lax.associative_scan over time (exact; log T depth, for a GPU's lanes) instead of lax.scan:
  # 2-4x slower on 2 CPU cores (bench/run.py --only scan), so off here
  config.parallel_scan = False
  config.optimizer = 'sgd'
  config.lr_candidates = (20.0,)  # 1.0 on the tutorial's summed loss (module docstring)
  config.lr_schedule = 'halving'
  config.lr_decay_start = 4
  config.clip_norm = 0.25  # 5 on the tutorial's summed loss
  config.batch_size = 20
  config.num_steps = 13 * 2323
  config.log_every = 2323
  config.checkpoint_every = 2323
  config.num_seeds = 1
  config.eval_streams = 1
  config.eval_tokens = 73760  # the whole validation split behind each point
  config.sample_len = 50
  return config

