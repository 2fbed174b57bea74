"""Plots drawn from records alone: a plot never recomputes a measurement.

Records whose status is not 'ok' have no usable value; they are drawn as markers at the edge of
the axes ('diverged' at the top, 'vanished' at the bottom) so that they are seen, not hidden.
"""

import collections
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402

from lib.results import write_atomic  # noqa: E402

_EDGE = {'diverged': (0.96, 'x', 'tab:red'), 'vanished': (0.04, 'v', 'tab:gray')}


def group_records(records: list) -> dict:
  """{(cell, sigma_w2): {seq_len: [records]}}, sorted by cell order of appearance, then scale."""
  cell_order = list(dict.fromkeys(r['cell'] for r in records))
  table = collections.defaultdict(lambda: collections.defaultdict(list))
  for r in records:
    table[(r['cell'], r['sigma_w2'])][r['seq_len']].append(r)
  ordered = sorted(table, key=lambda k: (cell_order.index(k[0]), k[1]))
  return {k: dict(sorted(table[k].items())) for k in ordered}


def _save(fig, path: str) -> str:
  import io
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=110, bbox_inches='tight')
  plt.close(fig)
  write_atomic(path, buf.getvalue())
  return path


def _colors(values):
  values = sorted(set(values))
  cmap = plt.get_cmap('viridis')
  return {v: cmap(i / max(1, len(values) - 1) * 0.9) for i, v in enumerate(values)}


def _mean_ok(rows: list, field: str):
  """Mean over the 'ok' records of a field (a number or an equal-length list), or None."""
  values = [r[field] for r in rows if r['status'] == 'ok']
  if not values:
    return None
  return np.mean(np.asarray(values, dtype=np.float64), axis=0)


def _mark_edges(ax, x, rows, used: set):
  for status, (y, marker, color) in _EDGE.items():
    if any(r['status'] == status for r in rows):
      ax.plot([x], [y], marker=marker, color=color, linestyle='none',
              transform=ax.get_xaxis_transform(), clip_on=False,
              label=None if status in used else status)
      used.add(status)


def _cell_axes(cells: list, title: str):
  fig, axes = plt.subplots(1, len(cells), figsize=(4.2 * len(cells), 3.6), squeeze=False,
                           sharey=True, layout='constrained')
  fig.suptitle(title)
  return fig, dict(zip(cells, axes[0]))


def gradient_decay(records: list, plots_dir: str) -> list:
  """Draws the three plots of the gradient-decay sweep into plots_dir; returns their paths."""
  if not records:
    return []
  os.makedirs(plots_dir, exist_ok=True)
  table = group_records(records)
  cells = list(dict.fromkeys(cell for cell, _ in table))
  colors = _colors(w for _, w in table)
  longest = max(r['seq_len'] for r in records)
  paths = []

  fig, axes = _cell_axes(cells, f'Gradient norm against distance from the loss (T = {longest})')
  for (cell, sigma_w2), by_len in table.items():
    ax, rows = axes[cell], by_len.get(longest, [])
    profile = _mean_ok(rows, 'log_grad_sq')
    bad = sorted({r['status'] for r in rows if r['status'] != 'ok'})
    label = f'$\\sigma_w^2$={sigma_w2:g}' + (f' ({", ".join(bad)})' if bad else '')
    if profile is not None:
      ax.plot(np.arange(profile.size), profile[::-1], color=colors[sigma_w2], label=label)
    else:
      ax.plot([], [], color=colors[sigma_w2], linestyle=':', label=label)
  for cell, ax in axes.items():
    ax.set_title(cell)
    ax.set_xlabel('k = T-1-t (steps back from the loss)')
    ax.axhline(0.0, color='k', lw=0.5)
    ax.legend(fontsize=8)
  axes[cells[0]].set_ylabel(r'ln $\|\partial L/\partial h_t\|^2$')
  paths.append(_save(fig, os.path.join(plots_dir, 'profile.png')))

  fig, axes = _cell_axes(cells, r'Gradient reaching the first step, $\|\partial L/\partial h_0\|^2$')
  used = set()
  for (cell, sigma_w2), by_len in table.items():
    ax = axes[cell]
    points = [(t, _mean_ok(rows, 'log_grad_sq')) for t, rows in by_len.items()]
    ts = [t for t, p in points if p is not None]
    ax.plot(ts, [p[0] / np.log(10) for _, p in points if p is not None], marker='o', ms=3,
            color=colors[sigma_w2], label=f'$\\sigma_w^2$={sigma_w2:g}')
    for t, rows in by_len.items():
      _mark_edges(ax, t, rows, used)
  for cell, ax in axes.items():
    ax.set_title(cell)
    ax.set_xscale('log', base=2)
    ax.set_xlabel('sequence length T')
    ax.axhline(0.0, color='k', lw=0.5)
    ax.legend(fontsize=8)
  axes[cells[0]].set_ylabel(r'log$_{10}$ $\|\partial L/\partial h_0\|^2$')
  paths.append(_save(fig, os.path.join(plots_dir, 'grad_vs_length.png')))

  fig, ax = plt.subplots(figsize=(5.5, 3.8), layout='constrained')
  used = set()
  for cell in cells:
    xs, means, sds = [], [], []
    for (c, sigma_w2), by_len in table.items():
      if c != cell:
        continue
      rows = by_len.get(longest, [])
      rates = [r['decay_rate'] for r in rows if r['decay_rate'] is not None]
      if rates:
        xs.append(sigma_w2)
        means.append(np.mean(rates))
        sds.append(np.std(rates))
      _mark_edges(ax, sigma_w2, rows, used)
    ax.errorbar(xs, means, yerr=sds, marker='o', ms=4, capsize=3, label=cell)
  ax.axhline(0.0, color='k', lw=0.5, linestyle='--')
  ax.set_xlabel(r'$\sigma_w^2$')
  ax.set_ylabel('fitted slope of ln $\\|\\partial L/\\partial h_{T-1-k}\\|^2$ per step')
  ax.set_title(f'Decay rate (T = {longest}; < 0 vanishing, > 0 exploding)')
  ax.legend(fontsize=8)
  paths.append(_save(fig, os.path.join(plots_dir, 'decay_rate.png')))
  return paths
