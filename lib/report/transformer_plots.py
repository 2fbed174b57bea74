"""Figures of the transformer-depth experiment (lib/experiments/transformer_depth), from records
and the experiment's depth fits alone: every per-layer quantity against the layer at the deepest
depth, the last block's W2 gradient against depth (log-log, fitted and predicted slopes), and
the rank residual's fall (Dong et al. 2021's doubly exponential collapse of pure attention)."""

import os

import numpy as np

from lib.report import plotting

_PANELS = (('log_grad_sq', 'ln ||dL/dX_l||^2', 'layer l (0: the input tokens)'),
           ('log_weight_grad_sq', 'ln ||dL/dW2_b||^2 (MLP out)', 'block b'),
           ('log_qk_grad_sq', 'ln (||dL/dW_Q||^2 + ||dL/dW_K||^2)', 'block b'),
           ('rank_residual', 'rank residual ||X - 1 xbar^T||_F / ||X||_F', 'layer l'),
           ('token_cosine', 'mean cosine of distinct tokens', 'layer l'))
_FLOOR = {'float32': float(np.finfo(np.float32).eps), 'float64': float(np.finfo(np.float64).eps)}


def _values(rows: list, field: str):
  """The field of the 'ok' rows as a float array (seeds, n), None entries as NaN; or None."""
  rows = [r for r in rows if r['status'] == 'ok' and r[field] is not None]
  if not rows:
    return None
  return np.asarray([[np.nan if v is None else v for v in r[field]] for r in rows], np.float64)


def _mean(values):
  """Mean over seeds ignoring NaN (a zero gradient's -inf is stored as None)."""
  with np.errstate(invalid='ignore'):
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    total = np.where(finite, values, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


class _DepthSweep:
  """What the figures share: the variants (in order of first appearance) and their colours, the
  deepest depth and its records, the setting the title names, and the dtype's rounding floor."""

  def __init__(self, records: list, fits: dict):
    self.records, self.fits = records, fits
    self.variants = list(dict.fromkeys(r['variant'] for r in records))
    self.colors = {v: f'C{i}' for i, v in enumerate(self.variants)}
    self.deepest = max(r['depth'] for r in records)
    self.top = [r for r in records if r['depth'] == self.deepest]
    head = self.top[0]
    self.dtype = head['dtype']
    self.floor = _FLOOR[head['dtype']]
    self.setting = (f'd={head["width"]}, H={head["num_heads"]}, T={head["seq_len"]}, '
                    f'{head["init"]} sigma_w2={head["sigma_w2"]:g}, {head["activation"]}, '
                    f'{head["inputs"]} tokens' + (', causal' if head['causal'] else ''))

  def deepest_values(self, variant: str, field: str):
    """`_values` of the variant's records at the deepest depth."""
    return _values([r for r in self.top if r['variant'] == variant], field)


def depth_figures(records: list, fits: dict, plots_dir: str) -> list:
  """transformer_profiles.png, transformer_w2_depth.png, rank_collapse.png (see the module
  docstring); the paths written."""
  if not records:
    return []
  os.makedirs(plots_dir, exist_ok=True)
  sweep = _DepthSweep(records, fits)
  figures = {'transformer_profiles.png': _profiles}
  if any(v in fits for v in sweep.variants):  # a variant with an MLP
    figures['transformer_w2_depth.png'] = _w2_depth
  figures['rank_collapse.png'] = _rank_collapse
  return plotting.save_each(plots_dir, figures, sweep)


def _profiles(sweep: _DepthSweep):
  """Every per-layer quantity of `_PANELS` against the layer at the deepest depth, a panel per
  quantity, a line per variant (mean over seeds)."""
  fig, axes = plotting.panels([p[1] for p in _PANELS],
                              f'Per layer at depth L={sweep.deepest} (mean over seeds; '
                              f'{sweep.setting})', sharey=False)
  used = set()
  for field, title, xlabel in _PANELS:
    ax = axes[title]
    for v in sweep.variants:
      rows = [r for r in sweep.top if r['variant'] == v]
      values = _values(rows, field)
      if values is not None:
        start = 1 if field in ('log_weight_grad_sq', 'log_qk_grad_sq') else 0
        ax.plot(np.arange(start, start + values.shape[1]), _mean(values), '.-', ms=3,
                color=sweep.colors[v], label=v)
      for r in rows:
        if r['status'] != 'ok':
          plotting.mark_edges(ax, sweep.deepest, [r], used)
    if field == 'rank_residual':
      ax.set_yscale('log')
      ax.axhline(sweep.floor, color='k', lw=0.6, ls=':', label=f'{sweep.dtype} eps')
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
  axes[_PANELS[0][1]].legend(fontsize=7)
  return fig


def _w2_depth(sweep: _DepthSweep):
  """The last block's ||dL/dW2||^2 against depth (log-log; points: seeds), each fitted power
  law, and the predicted one dotted: a panel for the variants with a theory, one for those
  without."""
  fits = sweep.fits
  with_mlp = [v for v in sweep.variants if v in fits]
  groups = {'with a theory (LayerNorm and skips)': [v for v in with_mlp
                                                      if fits[v]['theory'] is not None],
            'without one': [v for v in with_mlp if fits[v]['theory'] is None]}
  groups = {title: names for title, names in groups.items() if names}
  fig, axes = plotting.panels(list(groups), f'Last block: ||dL/dW2_L||^2 against depth '
                              f'({sweep.setting})', sharey=False)
  depths = np.asarray(sorted({r['depth'] for r in sweep.records}), np.float64)
  for title, names in groups.items():
    ax = axes[title]
    for v in names:
      color = sweep.colors[v]
      rows = [r for r in sweep.records if r['variant'] == v and r['status'] == 'ok'
              and r['log_weight_grad_sq'] and r['log_weight_grad_sq'][-1] is not None]
      fit = fits[v]
      ax.plot([r['depth'] for r in rows], np.exp([r['log_weight_grad_sq'][-1] for r in rows]),
              'o', ms=3, color=color, alpha=0.6)
      label = f'{v}: slope {fit["slope"]:+.2f}'
      if fit['theory'] is not None:
        label += f' (theory {fit["theory"]:+.0f}, dotted)'
        mid = np.exp(np.mean(np.log(depths)))
        y_mid = fit['intercept'] + fit['slope'] * np.log(mid)
        ax.plot(depths, np.exp(y_mid + fit['theory'] * np.log(depths / mid)), ':', color=color,
                lw=1.5)
      ax.plot(depths, np.exp(fit['intercept'] + fit['slope'] * np.log(depths)), '-', color=color,
              lw=1, label=label)
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xlabel('depth L (blocks)')
    ax.set_ylabel('||dL/dW2_L||_F^2 (points: seeds)')
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
  return fig


def _rank_collapse(sweep: _DepthSweep):
  """The rank residual against the layer at the deepest depth (geometric mean over seeds), and
  beside it ln (1 / residual) of the variants without skips, straight if doubly exponential."""
  fig, axes = plotting.panels(['rank', 'double'], f'Rank collapse at depth L={sweep.deepest}',
                              sharey=False)
  ax = axes['rank']
  for v in sweep.variants:
    values = sweep.deepest_values(v, 'rank_residual')
    if values is not None:
      ax.plot(np.arange(values.shape[1]), np.exp(_mean(np.log(values))), '.-', ms=3,
              color=sweep.colors[v], label=v)
  ax.axhline(sweep.floor, color='k', lw=0.6, ls=':', label=f'{sweep.dtype} rounding')
  ax.set_yscale('log')
  ax.set_xlabel('layer l')
  ax.set_ylabel('rank residual (geometric mean over seeds)')
  ax.legend(fontsize=7)
  ax = axes['double']
  collapsing = [v for v in sweep.variants if '+noskip' in v]
  for v in collapsing:
    values = sweep.deepest_values(v, 'rank_residual')
    if values is None:
      continue
    depth_of = np.exp(_mean(np.log(values)))
    above = depth_of > 10 * sweep.floor  # before the rounding floor
    layers = np.arange(values.shape[1])[above]
    logs = -np.log(depth_of[above])
    factors = ', '.join(f'x{b / a:.0f}' for a, b in zip(logs[:-1], logs[1:]))
    ax.plot(layers, logs, 'o-', ms=4, color=sweep.colors[v], label=f'{v} (per layer: {factors})')
  ax.set_yscale('log')
  ax.set_xlabel('layer l (until the rounding floor)')
  ax.set_ylabel('ln (1 / rank residual)')
  ax.set_title('straight: doubly exponential, ln(1/r) ~ c^l (Dong et al.: c >= 3)',
               fontsize=8)
  if collapsing:
    ax.legend(fontsize=7)
  return fig
