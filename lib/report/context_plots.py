"""Figures of the context-use experiment (lib/experiments/context_use), from records alone:
the loss increase against the lag per perturbation (Khandelwal et al.'s Figures 1-3) and the
gradient reach against the distance of the token, at initialisation and trained."""

import collections
import os

import numpy as np

from lib.report import plotting

_TITLES = {'truncate': 'truncated: only the last d tokens read',
           'shuffle': 'shuffled beyond the last d tokens',
           'replace': 'replaced (unigram) beyond the last d tokens'}


def _label(model: str, length: int, lengths: set) -> str:
  return model if len(lengths) == 1 else f'{model} L={length}'


class _Models:
  """The models measured ((model, context length) in order of first appearance), their colours
  and labels, and the dataset's name."""

  def __init__(self, curves: list, reach: list):
    self.models = list(dict.fromkeys((r['model'], r['context_len']) for r in curves + reach))
    self.lengths = {length for _, length in self.models}
    self.colors = {m: f'C{i}' for i, m in enumerate(self.models)}
    self.dataset = (curves or reach)[0]['dataset']

  def label(self, model: tuple) -> str:
    return _label(*model, self.lengths)


def context_use(records: list, plots_dir: str) -> list:
  """context_curves.png: a panel per perturbation, the mean loss increase over the full history
  against the lag d (log axis), a line per model with a band of +-2 standard errors;
  gradient_reach.png: ln mean ||d log p / d e||^2 against the token's distance from the target
  (k + 1), at init and trained, the transformer's window marked."""
  os.makedirs(plots_dir, exist_ok=True)
  curves = [r for r in records if r['part'] == 'curve']
  reach = [r for r in records if r['part'] == 'reach']
  if not curves and not reach:
    return []
  models = _Models(curves, reach)
  figures = {}
  if curves:
    figures['context_curves.png'] = lambda: _context_curves(curves, models)
  ok = [r for r in reach if r['status'] == 'ok']
  if ok:
    figures['gradient_reach.png'] = lambda: _gradient_reach(ok, models)
  return plotting.save_each(plots_dir, figures)


def _context_curves(curves: list, models: _Models):
  """The mean loss increase over the full history against the lag d, a panel per perturbation,
  a line per model with a band of +-2 standard errors (the 'ok' seeds)."""
  perturbations = list(dict.fromkeys(r['perturbation'] for r in curves))
  fig, axes = plotting.panels([_TITLES[p] for p in perturbations],
                              f'{models.dataset}: loss increase over the full history '
                              '(mean over seeds, +-2 standard errors)')
  for p in perturbations:
    ax = axes[_TITLES[p]]
    for m in models.models:
      by_lag = collections.defaultdict(list)
      for r in curves:
        if (r['model'], r['context_len']) == m and r['perturbation'] == p and (
            r['status'] == 'ok'):
          by_lag[r['lag']].append(r)
      if not by_lag:
        continue
      lags = sorted(by_lag)
      mean = np.asarray([np.mean([r['loss_increase'] for r in by_lag[d]]) for d in lags])
      stderr = np.asarray([np.sqrt(np.sum([r['loss_increase_stderr'] ** 2 for r in by_lag[d]]))
                           / len(by_lag[d]) for d in lags])
      color = models.colors[m]
      ax.plot(lags, mean, 'o-', ms=3, color=color, label=models.label(m))
      ax.fill_between(lags, mean - 2 * stderr, mean + 2 * stderr, color=color, alpha=0.2)
    ax.axhline(0.0, color='k', lw=0.6)
    ax.set_xscale('log', base=2)
    ax.set_yscale('symlog', linthresh=1e-2)
    ax.set_xlabel('lag d (tokens kept)')
    ax.set_title(_TITLES[p], fontsize=9)
  next(iter(axes.values())).set_ylabel('loss increase (nats per token)')
  next(iter(axes.values())).legend(fontsize=8)
  return fig


def _gradient_reach(ok: list, models: _Models):
  """ln mean ||d log p / d e||^2 against the token's distance from the target (k + 1), at
  initialisation and trained, a line per model (its 'ok' records `ok`), a window marked."""
  names = {'init': 'at initialisation', 'trained': 'trained'}
  fig, axes = plotting.panels(
      list(names.values()),
      f'{models.dataset}: gradient reach ln mean ||d log p(x_t) / d e_(t-k-1)||^2')
  for when, title in names.items():
    ax = axes[title]
    for m in models.models:
      rows = [r for r in ok if (r['model'], r['context_len']) == m]
      if not rows:
        continue
      field = f'log_grad_sq_reach_{when}'
      values = [[-np.inf if v is None else v for v in r[field]] for r in rows]
      with np.errstate(divide='ignore', invalid='ignore'):
        profile = plotting.log_mean_exp_ok(
            [{'status': 'ok', field: v} for v in values], field)
      distance = np.arange(1, len(profile) + 1)
      shown = np.where(np.isfinite(profile), profile, np.nan)
      ax.plot(distance, shown, color=models.colors[m], label=models.label(m))
      window = rows[0].get('window')
      if window is not None and window < len(profile):
        ax.axvline(window, color=models.colors[m], ls=':', lw=1)
    ax.set_xscale('log', base=2)
    ax.set_xlabel('distance of the token from the target (k + 1)')
    ax.set_title(title)
  next(iter(axes.values())).set_ylabel('ln mean squared gradient norm')
  next(iter(axes.values())).legend(fontsize=8)
  return fig
