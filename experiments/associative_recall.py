"""Associative recall (Arora et al. 2023, "Zoology": MQAR): D key-value pairs, then each key
queried once; whose accuracy falls once D exceeds what its state holds.

Recurrent models hold d (tanh, GRU) or 2 d (LSTM) numbers, the LRU stack 2 d per layer (complex
states); attention keeps every key and value, 2 d T per layer. The claim under test: at a fixed
width a recurrent model's accuracy falls toward chance 2/V as D grows, attention's does not.

The default (24 groups of 2 seeds, 3000 steps) is sized for about 15 minutes on 2 CPU cores:
the same grid at 1000 steps took 293 s there, compiling included, and left every model below
0.4 accuracy. Zoology's sizes (V = 8192, T up to 512, D up to 64, widths to 512, ~100k
sequences of training) are far past that budget.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.experiment = 'associative_recall'  # which lib experiment runs this config
  # tanh | relu | irnn | lstm | gru | lru | linear (minimal-LRU's stack) | transformer
  config.models = ('tanh', 'lstm', 'gru', 'lru', 'transformer')
  config.attention_layers = (1, 2)  # the transformer is trained at each number of layers
  config.seq_lens = (64,)  # T; a (T, D) with 4 D > T is left out (no room for the queries)
  config.num_pairs = (4, 16)  # D: key-value pairs per sequence, each queried once
  config.widths = (16, 32)  # d: the cells' state, the transformer's and LRU stack's width
  config.vocab_size = 64  # V: keys 0..V/2-1, values V/2..V-1; chance 2/V
  config.mlp = False  # the transformer blocks' MLP (off: attention alone, as asked here)
  config.num_heads = 1  # attention heads (every width a multiple of it)
  config.lru_layers = 2  # lru | linear: layers of the stack
  config.num_steps = 3000  # training steps
  config.optimizer = 'adam'  # adam | rmsprop | sgd
  config.learning_rate = 3e-3
  config.clip_norm = 1.0  # clip_by_global_norm; 0: off
  config.batch_size = 32
  config.test_size = 256  # held-out sequences per seed (a fixed batch from its test stream)
  config.sigma_w2 = 1.0  # recurrent kernel variance (x N)
  config.sigma_v2 = 1.0  # input kernel variance (x D)
  config.sigma_b2 = 0.0  # bias variance
  config.recurrent_init = 'gaussian'  # gaussian | orthogonal | identity, for tanh, lstm, gru
  config.gate_bias = 1.0  # added to the LSTM forget / GRU update gate bias
  # lru | linear: |lambda| uniform in area on the ring r_min..r_max, phase U[0, max_phase]
  config.r_min = 0.9
  config.r_max = 0.999
  config.max_phase = 6.283185307179586  # 2 pi
  config.parallel_scan = False  # lax.associative_scan over time (slower on 2 CPU cores)
  config.num_seeds = 2  # seeds seed .. seed + num_seeds - 1 (in one program)
  config.seed = 0  # first seed
  config.log_every = 100  # steps per logged point of the training curves
  config.checkpoint_every = 500  # steps between checkpoints (0: none); a multiple of log_every
  config.tensorboard = False  # also TensorBoard event files, in workdir/tensorboard
  return config
