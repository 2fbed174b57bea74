"""Transformers through depth at initialisation: pre-LN against post-LN, and rank collapse.

Per block l of each network: ln ||dL/dX_l||^2, ln ||dL/dW2_l||^2 (the MLP's second matrix; Xiong
et al. 2020), ln (||dL/dW_Q,l||^2 + ||dL/dW_K,l||^2), and how alike the tokens are (the rank
residual of Dong et al. 2021, the mean token cosine of Noci et al. 2022). A variant is
<norm>[+noskip][+nomlp][+scaled | +alpha=<a>] (lib/nets/transformer.py): none+noskip+nomlp is
pure attention.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.experiment = 'transformer_depth'  # which lib experiment runs this config
  config.variants = ('post_ln', 'pre_ln', 'pre_ln+scaled', 'none', 'none+noskip',
                     'none+noskip+nomlp')  # architectures (one program per variant and depth)
  config.depths = (2, 4, 8, 16, 32, 64)  # numbers of blocks L
  config.width = 64  # d, the residual stream's width (the MLP is 4d wide)
  config.num_heads = 4  # H (d must be a multiple)
  config.seq_len = 32  # tokens T of the one sequence each network reads
  config.causal = False  # causal attention mask
  config.activation = 'relu'  # the MLP's nonlinearity: relu | gelu | tanh
  config.init = 'gaussian'  # gaussian: N(0, sigma_w2 / fan_in) | xavier: 2 sigma_w2 / (in + out)
  config.sigma_w2 = 1.0  # kernel variance scale
  config.inputs = 'gaussian'  # tokens: gaussian N(0, 1) | ptb_char | ptb_word (text, embedded)
  config.data_dir = ''  # TFDS data folder for ptb inputs ('' = the TFDS default)
  config.num_seeds = 4  # seeds seed .. seed + num_seeds - 1 (in one program)
  config.seed = 0  # first seed
  config.dtype = 'float32'  # float32 | float64
  return config
