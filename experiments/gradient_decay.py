"""Gradient decay over sequence length: how ||dL/dh_t||^2 vanishes or explodes with distance.

The default tells the story in about half a minute on a laptop CPU: a tanh RNN with inputs of
variance sigma_v2 = 0.1 is critical near sigma_w2 = 2 (mean field: chi1 = 1); below it gradients
vanish (sigma_w2 = 1), above it they explode (sigma_w2 = 4). LSTM and GRU cells, with their
forget/update gates biased open, keep the decay rate near zero across the same scales.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.experiment = 'gradient_decay'  # which lib experiment runs this config
  config.cells = ('tanh', 'lstm', 'gru')  # tanh | relu | lstm | gru | lru | linear
  config.seq_lens = (16, 32, 64, 128, 256, 512)  # sequence lengths T
  # Programs of these lengths run every T up to their length: T runs in the shortest bucket that
  # holds it, its steps past T masked out (the state and the gradient pass through unchanged),
  # so its numbers are bit-identical to an unbucketed run's. A sweep then compiles
  # len(cells) * len(buckets used) programs, at the cost of computing the padded steps. auto =
  # chosen from seq_lens (each bucket runs the lengths down to a quarter of it: (64, 512) here);
  # () = no buckets, one program per (cell, T); or the lengths, e.g. 64,512.
  config.length_buckets = ('auto',)
  config.sigma_w2 = (1.0, 2.0, 4.0)  # recurrent weight variance (x N): swept in one program
  config.sigma_b2 = (0.0,)  # bias variance: swept with sigma_w2, in one program
  config.sigma_v2 = 0.1  # input weight variance (x D): the input term's variance
  config.recurrent_init = 'gaussian'  # gaussian | orthogonal | identity (all scaled by sigma_w2)
  config.gate_bias = 2.0  # added to the LSTM forget / GRU update gate bias (sigmoid(2) = 0.88)
  # lru | linear: |lambda| uniform in area on the ring r_min..r_max, phase U[0, max_phase]; their
  # gradient k steps back then falls as E|lambda|^2k, a power law (1/(k+1) on [0, 1]), whatever
  # sigma_w2 and sigma_b2 (which these cells ignore: one point per seed)
  config.r_min = 0.0
  config.r_max = 0.999  # the ring's outer radius (lru, linear)
  config.max_phase = 6.283185307179586  # 2 pi
  config.hidden_size = 256  # N (wide enough for mean-field theory to hold within a few %)
  config.input_size = 32  # D; inputs x_t ~ N(0, I_D)
  config.batch_size = 16  # examples per point; the profile is ln of the batch mean
  config.num_seeds = 2  # seeds seed .. seed + num_seeds - 1 (in one program)
  config.seed = 0  # first seed
  config.dtype = 'float32'  # float32 | float64
  config.fit_k_min = 0  # decay rate: fit over k_min <= k <= k_max steps back from the loss
  config.fit_k_max = -1  # -1: up to T - 1
  return config
