# %% [markdown]
# # A tour of the library from Python
#
# This notebook runs the main job small, loads its results into pandas, redraws a figure by
# hand, and measures the gradient profile of a cell defined here with the library's log-domain
# pass. It is `notebooks/tour.ipynb`; `notebooks/tour.py` is the same cells as a script, which
# the test suite runs (`tests/test_notebook.py`), so what it shows stays true.
#
# The library is run in place, not installed. The first cell puts the repository root on the
# path and makes it the working directory, so `import lib` and `experiments/` work from here.

# %%
import os
import sys

ROOT = os.path.abspath('..') if os.path.basename(os.getcwd()) == 'notebooks' else os.getcwd()
sys.path.insert(0, ROOT)
os.chdir(ROOT)

# %% [markdown]
# ## Run the main job small
#
# `experiments/gradient_decay.py` is the main job's config. Change any key, validate it, run it
# into a workdir. A rerun into the same workdir computes nothing: the points are there.

# %%
import tempfile

from experiments import gradient_decay as main_job
from lib import experiments

config = main_job.get_config()
config.cells = ('tanh', 'gru')
config.seq_lens = (16, 64)
config.num_seeds = 1
workdir = os.path.join(tempfile.mkdtemp(), 'tour')
print(experiments.run(experiments.validate(config), workdir))

# %% [markdown]
# ## Load the results into pandas
#
# `results.jsonl` holds one record per point (docs/results.md). `dtype=False` keeps
# sigma_w2 = 1.0 a float.

# %%
import pandas as pd

records = pd.read_json(os.path.join(workdir, 'results.jsonl'), lines=True, dtype=False)
print(records[['cell', 'seq_len', 'sigma_w2', 'status', 'decay_rate', 'theory_decay_rate']])

# %% [markdown]
# ## Redraw a figure by hand
#
# Each record's `log_grad_sq` is ln ||dL/dh_t||^2 for t = 0..T-1. Against k = T-1-t, the
# distance from the loss, its slope is the decay rate.

# %%
import matplotlib.pyplot as plt
import numpy as np

figure, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
longest = records[records.seq_len == records.seq_len.max()]
for ax, (cell, rows) in zip(axes, longest.groupby('cell', sort=False)):
  for _, row in rows.iterrows():
    profile = np.asarray(row.log_grad_sq)[::-1]  # by k
    ax.plot(profile, label=f'sigma_w2 = {row.sigma_w2:g}')
  ax.set_title(cell)
  ax.set_xlabel('k, steps back from the loss')
  ax.legend()
axes[0].set_ylabel('ln ||dL/dh||^2')
figure.tight_layout()

# %% [markdown]
# ## A cell of your own, through the log-domain pass
#
# Any step function s_t = f(s_{t-1}, x_t) works. Here a leaky tanh cell,
# h_t = (1 - a) h_{t-1} + a tanh(W h_{t-1} + V x_t). `lib.measure.gradients.log_grad_profile`
# renormalises the gradient at every step and carries its log, so e^-1000 is still a number.
# Its backward factor per step is about (1 - a)^2 + a^2 chi1 for small input: with a = 1 it is
# the tanh RNN's ln chi1.

# %%
import jax
import jax.numpy as jnp

from lib.measure import gradients
from lib.measure import theory

hidden, inputs, batch, steps, sigma_w2 = 256, 32, 16, 300, 1.0
k_w, k_v, k_x, k_r = jax.random.split(jax.random.key(0), 4)
w = jax.random.normal(k_w, (hidden, hidden)) * jnp.sqrt(sigma_w2 / hidden)
v = jax.random.normal(k_v, (inputs, hidden)) * jnp.sqrt(0.1 / inputs)
xs = jax.random.normal(k_x, (steps, batch, inputs))
readout = jax.random.normal(k_r, (hidden,)) / jnp.sqrt(hidden)


def leaky(a):
  return lambda h, x: (1 - a) * h + a * jnp.tanh(h @ w + x @ v)


for a in (1.0, 0.5, 0.1):
  profile = gradients.log_grad_profile(leaky(a), lambda h: h, jnp.zeros((batch, hidden)), xs,
                                       readout)
  rate = gradients.fit_decay_rate(profile.log_grad_sq, 10, 250)
  print(f'a = {a}: decay rate {rate:+.4f} per step, ln ||dL/dh_0||^2 = '
        f'{float(profile.log_grad_sq[0]):.1f}')
print(f'mean field for a = 1 (the tanh RNN): ln chi1 = '
      f'{theory.decay_rate("tanh", sigma_w2, 0.0, 0.1):+.4f}')
