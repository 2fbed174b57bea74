"""How far back each trained language model reads (Khandelwal, He, Qi & Jurafsky 2018, "Sharp
Nearby, Fuzzy Far Away"), three ways, on Penn Treebank characters: the loss when a model reads
only the last d tokens (truncation: its effective context), when everything before the last d
is shuffled (how far back order matters) or replaced by unigram draws (how far back content
does), and the gradient of log p(x_t) with respect to each input embedding back to max_lag
tokens (its reach), at initialisation and after training, beside the decay rate that the
gradient-decay sweep measures for the same cell.

Trains the models here (the language_model experiment's keys below), or, with
--config.from_workdir=DIR, measures the final parameters of a finished language_model workdir
(its config then replaces every model and training key below; nothing is trained):
  python run.py --config=experiments/language_model.py --workdir=runs/lm
  python run.py --config=experiments/context_use.py --config.from_workdir=runs/lm
"""

from experiments import language_model


def get_config():
  config = language_model.get_config()
  config.experiment = 'context_use'  # which lib experiment runs this config
  config.from_workdir = ''  # a finished language_model workdir to measure ('': train here)
  # ---- what is trained ('' from_workdir): language_model's keys, at one context length
  config.models = ('tanh', 'lstm', 'gru', 'lru', 'transformer')
  config.context_lens = (64,)  # TBPTT segment (recurrent: the state runs on) / window (transformer)
  # ---- what is measured
  config.max_lag = 256  # tokens of history of every target (the full history)
  config.lags = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)  # d, <= max_lag
  config.num_targets = 1000  # positions of the test split (the same for every model)
  config.batch_targets = 250  # targets per call of the measuring programs (memory)
  config.perturbations = ('truncate', 'shuffle', 'replace')
  config.relative_tolerance = 0.01  # effective context: truncated loss at most 1% above the full
  config.fit_k_min = 1  # reach slope: least squares over fit_k_min <= k <= fit_k_max
  config.fit_k_max = -1  # -1: up to max_lag - 1
  # the top k Lyapunov exponents of each recurrent model's state at init and trained, over the
  # first lyapunov_steps tokens of the test split (lib/measure/lyapunov; 0: not measured)
  config.lyapunov_exponents = 16
  config.lyapunov_steps = 500
  return config
