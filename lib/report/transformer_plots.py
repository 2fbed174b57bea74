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


def depth_figures(records: list, fits: dict, plots_dir: str) -> list:
  """transformer_profiles.png, transformer_w2_depth.png, rank_collapse.png (see the module
  docstring); the paths written."""
  if not records:
    return []
  os.makedirs(plots_dir, exist_ok=True)
  variants = list(dict.fromkeys(r['variant'] for r in records))
  colors = {v: f'C{i}' for i, v in enumerate(variants)}
  deepest = max(r['depth'] for r in records)
  top = [r for r in records if r['depth'] == deepest]
  head = top[0]
  setting = (f'd={head["width"]}, H={head["num_heads"]}, T={head["seq_len"]}, {head["init"]} '
             f'sigma_w2={head["sigma_w2"]:g}, {head["activation"]}, {head["inputs"]} tokens'
             + (', causal' if head['causal'] else ''))
  paths = []

  fig, axes = plotting.panels([p[1] for p in _PANELS],
                              f'Per layer at depth L={deepest} (mean over seeds; {setting})',
                              sharey=False)
  used = set()
  for field, title, xlabel in _PANELS:
    ax = axes[title]
    for v in variants:
      rows = [r for r in top if r['variant'] == v]
      values = _values(rows, field)
      if values is not None:
        start = 1 if field in ('log_weight_grad_sq', 'log_qk_grad_sq') else 0
        ax.plot(np.arange(start, start + values.shape[1]), _mean(values), '.-', ms=3,
                color=colors[v], label=v)
      for r in rows:
        if r['status'] != 'ok':
          plotting.mark_edges(ax, deepest, [r], used)
    if field == 'rank_residual':
      ax.set_yscale('log')
      ax.axhline(_FLOOR[head['dtype']], color='k', lw=0.6, ls=':', label=f'{head["dtype"]} eps')
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
  axes[_PANELS[0][1]].legend(fontsize=7)
  paths.append(plotting.save(fig, os.path.join(plots_dir, 'transformer_profiles.png')))

  with_mlp = [v for v in variants if v in fits]
  if with_mlp:
    groups = {'with a theory (LayerNorm and skips)': [v for v in with_mlp
                                                        if fits[v]['theory'] is not None],
              'without one': [v for v in with_mlp if fits[v]['theory'] is None]}
    groups = {title: names for title, names in groups.items() if names}
    fig, axes = plotting.panels(list(groups), f'Last block: ||dL/dW2_L||^2 against depth '
                                f'({setting})', sharey=False)
    depths = np.asarray(sorted({r['depth'] for r in records}), np.float64)
    for title, names in groups.items():
      ax = axes[title]
      for v in names:
        rows = [r for r in records if r['variant'] == v and r['status'] == 'ok'
                and r['log_weight_grad_sq'] and r['log_weight_grad_sq'][-1] is not None]
        fit = fits[v]
        ax.plot([r['depth'] for r in rows], np.exp([r['log_weight_grad_sq'][-1] for r in rows]),
                'o', ms=3, color=colors[v], alpha=0.6)
        label = f'{v}: slope {fit["slope"]:+.2f}'
        if fit['theory'] is not None:
          label += f' (theory {fit["theory"]:+.0f}, dotted)'
          mid = np.exp(np.mean(np.log(depths)))
          y_mid = fit['intercept'] + fit['slope'] * np.log(mid)
          ax.plot(depths, np.exp(y_mid + fit['theory'] * np.log(depths / mid)), ':',
                  color=colors[v], lw=1.5)
        ax.plot(depths, np.exp(fit['intercept'] + fit['slope'] * np.log(depths)), '-',
                color=colors[v], lw=1, label=label)
      ax.set_xscale('log', base=2)
      ax.set_yscale('log')
      ax.set_xlabel('depth L (blocks)')
      ax.set_ylabel('||dL/dW2_L||_F^2 (points: seeds)')
      ax.set_title(title, fontsize=9)
      ax.legend(fontsize=7)
    paths.append(plotting.save(fig, os.path.join(plots_dir, 'transformer_w2_depth.png')))

  fig, axes = plotting.panels(['rank', 'double'], f'Rank collapse at depth L={deepest}',
                              sharey=False)
  ax = axes['rank']
  floor = _FLOOR[head['dtype']]
  for v in variants:
    values = _values([r for r in top if r['variant'] == v], 'rank_residual')
    if values is not None:
      ax.plot(np.arange(values.shape[1]), np.exp(_mean(np.log(values))), '.-', ms=3,
              color=colors[v], label=v)
  ax.axhline(floor, color='k', lw=0.6, ls=':', label=f'{head["dtype"]} rounding')
  ax.set_yscale('log')
  ax.set_xlabel('layer l')
  ax.set_ylabel('rank residual (geometric mean over seeds)')
  ax.legend(fontsize=7)
  ax = axes['double']
  collapsing = [v for v in variants if '+noskip' in v]
  for v in collapsing:
    values = _values([r for r in top if r['variant'] == v], 'rank_residual')
    if values is None:
      continue
    depth_of = np.exp(_mean(np.log(values)))
    above = depth_of > 10 * floor  # before the rounding floor
    layers = np.arange(values.shape[1])[above]
    logs = -np.log(depth_of[above])
    factors = ', '.join(f'x{b / a:.0f}' for a, b in zip(logs[:-1], logs[1:]))
    ax.plot(layers, logs, 'o-', ms=4, color=colors[v], label=f'{v} (per layer: {factors})')
  ax.set_yscale('log')
  ax.set_xlabel('layer l (until the rounding floor)')
  ax.set_ylabel('ln (1 / rank residual)')
  ax.set_title('straight: doubly exponential, ln(1/r) ~ c^l (Dong et al.: c >= 3)',
               fontsize=8)
  if collapsing:
    ax.legend(fontsize=7)
  paths.append(plotting.save(fig, os.path.join(plots_dir, 'rank_collapse.png')))
  return paths
