"""A reference language-model run that learns: an LSTM and a transformer of matched
non-embedding parameters trained at a context of 256 characters on Penn Treebank (ptb_char, no
download), sized to end within 90 minutes on 2 CPU cores. Its records say whether each ends
below the count-based n-gram reference (in the summary), its loss at each position of the
window (does the transformer keep improving where the LSTM flattens? Kaplan et al. 2020,
Figure 7), and its induction diagnostic; its final parameters are saved, so that
experiments/context_use.py measures how far back each reads:
  python run.py --config=experiments/lm_reference.py --workdir=runs/lm_reference
  python run.py --config=experiments/context_use.py --config.from_workdir=runs/lm_reference \\
      --config.max_lag=512 --workdir=runs/lm_reference_context
"""

from experiments import language_model


def get_config():
  config = language_model.get_config()
  config.models = ('lstm', 'transformer')
  config.context_lens = (256,)  # TBPTT segment (LSTM) / attention window (transformer)
  config.num_layers = 2  # LSTM layers / transformer blocks
  config.hidden_size = 0  # each model's width matched to param_budget
  config.param_budget = 400_000  # non-embedding parameters per model
  config.embed_size = 64  # the LSTM's token embedding (the transformer's is its width)
  config.num_heads = 4
  # one rate for both (three would not fit the 90 minutes), halved after each epoch from the
  # fifth on: 5,000 steps of 32 x 256 characters are 8 epochs of the 5.1M training characters
  config.lr_candidates = (2e-3,)
  config.lr_schedule = 'halving'
  config.lr_decay_start = 4
  config.batch_size = 32
  config.num_steps = 5000
  config.log_every = 250
  config.checkpoint_every = 500
  config.eval_tokens = 50_000
  config.sample_len = 300
  return config
