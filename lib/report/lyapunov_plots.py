"""Figures of the Lyapunov experiment, from records alone: the spectrum against i / N per cell
(the free-probability curve dashed for tanh), and the top exponent against half the gradient's
decay rate."""

import collections
import os

import numpy as np

from lib.report import plotting
from lib.report import tables
from lib.report.plotting import plt

FLOOR = -3.0  # exponents below it (dead relu directions reach -18) are drawn at the floor


def _groups(records: list) -> dict:
  groups = collections.defaultdict(list)
  for r in records:
    groups[r['cell'], r['sigma_w2'], r['sigma_b2']].append(r)
  return groups


def _spectrum(records: list):
  groups = _groups(records)
  names = list(dict.fromkeys(cell for cell, _, _ in groups))
  fig, axes = plotting.panels(names, 'Lyapunov spectrum (mean over seeds; dashed: free '
                              f'probability; below {FLOOR:g} drawn at {FLOOR:g})')
  scales = sorted({w for _, w, _ in groups if w is not None})
  colors = dict(zip(scales, plt.cm.viridis(np.linspace(0, 0.9, max(len(scales), 1)))))
  for (cell, w, b), rows in groups.items():
    ok = [tables.logs_of(r) for r in rows if r['status'] == 'ok']
    if not ok:
      continue
    ax, mean = axes[cell], np.mean(ok, axis=0)
    size = rows[0]['state_size']
    x = (np.arange(mean.size) + 0.5) / size
    label = 'ring init' if w is None else f'$\\sigma_w^2$={w:g}' + (f', $\\sigma_b^2$={b:g}' if b
                                                                     else '')
    color = 'k' if w is None else colors[w]
    ax.plot(x, np.maximum(mean, FLOOR), color=color, label=label)
    theory_curve = next((r['theory_exponents'] for r in rows if r['theory_exponents']), None)
    if theory_curve:
      ax.plot(x[:len(theory_curve)], np.maximum(theory_curve, FLOOR), color=color,
              linestyle='--', lw=0.9)
  for name, ax in axes.items():
    ax.set_title(name)
    ax.set_xlabel('i / state size')
    ax.axhline(0.0, color='k', lw=0.5)
    ax.legend(fontsize=7)
  axes[names[0]].set_ylabel(r'exponent $\lambda_i$ (nats per step)')
  return fig


def _top_against_rate(records: list):
  fig, ax = plt.subplots(figsize=(5, 4.5), layout='constrained')
  points = collections.defaultdict(list)
  for r in records:
    if r['status'] == 'ok' and r['half_decay_rate'] is not None:
      points[r['cell']].append((r['half_decay_rate'], r['top_exponent']))
  for cell, xy in points.items():
    ax.plot(*zip(*xy), marker='o', linestyle='none', ms=5, label=cell)
  everything = [v for xy in points.values() for p in xy for v in p]
  if everything:
    lo, hi = min(everything), max(everything)
    ax.plot([lo, hi], [lo, hi], 'k--', lw=0.8, label='equal')
  ax.set_xlabel("half the gradient's decay rate (nats per step)")
  ax.set_ylabel(r'top exponent $\lambda_1$ (nats per step)')
  ax.set_title('Top exponent against the gradient (a point per seed)', fontsize=10)
  ax.legend(fontsize=7)
  return fig


def plots(records: list, plots_dir: str) -> list:
  records = list(records)
  if not records:
    return []
  os.makedirs(plots_dir, exist_ok=True)
  return plotting.save_each(plots_dir, {'lyapunov_spectrum.png': _spectrum,
                                        'lyapunov_top.png': _top_against_rate}, records)
