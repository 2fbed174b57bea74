"""The curse of memory (Zucchet & Orvieto 2024): as a linear recurrence remembers longer
(lambda -> 1), the sensitivity of its state to its own parameter explodes faster than the state
does, and the LRU's normalisation and exp parametrisation tame it.

Part 1 (moments): E[h^2] and E[(dh/dparameter)^2] of h_{t+1} = lambda h_t + x_{t+1}, inputs of
autocorrelation rho^|dt|, by float64 Monte Carlo beside the closed forms (their Figure 1). Part 2
(teacher_student): a diagonal linear RNN and the LRU learn a linear teacher whose memory nu0 grows
towards 1 (their Figure 3): the linear RNN's loss grows with nu0, the LRU's does not.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.experiment = 'curse_of_memory'  # which lib experiment runs this config
  config.parts = ('moments', 'teacher_student')
  # ---- moments
  config.lambdas = (0.5, 0.9, 0.99, 0.999, 0.9999)
  config.rhos = (0.0, 0.9, 0.99, 0.999, 1.0)  # input autocorrelation rho^|dt|; 0: white noise
  config.parametrisations = ('plain', 'normalized', 'exp')  # exp: normalized, exp(-exp(nu))
  config.num_chains = 2000  # independent float64 chains per (lambda, rho): about 3% standard error
  config.tolerance = 1e-4  # each chain runs until the start is forgotten to this (relative)
  # ---- teacher-student (Zucchet & Orvieto's linear system identification)
  config.models = ('linear', 'lru')  # students: real diagonal without normalisation | the LRU
  config.teacher_nus = (0.36, 0.68, 0.84, 0.92, 0.96, 0.98, 0.99)  # nu0: teacher |eig| >= nu0
  config.teacher_hidden = 10  # the teacher's states (dense A, 1 input, 1 output)
  config.hidden_size = 64  # the student's states
  config.seq_len = 300  # T
  config.r_max = 0.999  # the student's ring is [nu0, r_max] (theirs [nu0, 1))
  config.max_phase = 3.141592653589793  # pi, as theirs
  config.parallel_scan = False  # lax.associative_scan over time: 3.7x slower here on 2 CPU cores
  config.optimizer = 'adam'
  # swept (the plot and table take each point's best); theirs a grid of five per model, cosine
  # decayed over 10,000 steps of 128 sequences: one, constant, for the 5-minute default
  config.learning_rates = (1e-2,)
  config.batch_size = 16
  config.test_size = 256  # held-out sequences per seed
  config.num_steps = 800
  config.log_every = 100
  config.checkpoint_every = 0  # 0: only when SIGTERM asks the run to stop
  config.num_seeds = 3  # seeds seed .. seed + num_seeds - 1 (in one program)
  config.seed = 0
  return config
