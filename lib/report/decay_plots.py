"""Figures of the decay sweeps (gradient decay over time, over depth, and the phase diagram),
drawn from records alone: a plot never recomputes a measurement.

Mean-field predictions (the records' theory_decay_rate) are dashed lines beside the
measurements; a linear cell's closed-form profile (its records' log_grad_sq_theory, a power law)
is dashed on log-log axes, and a GRU's tied profile (lib/measure/theory) on linear ones;
records that are not 'ok' are marked at the edge of the axes (`lib.report.plotting`).
"""

import collections
import os

import matplotlib.colors  # no backend: `plotting` selects Agg before anything draws
import numpy as np

from lib.report import plotting
from lib.report.plotting import plt  # pyplot on the headless backend that plotting chose
from lib.report.tables import group_records
from lib.report.tables import logs_of
from lib.report.tables import rate_stats

_LENGTH_LABEL = {'seq_len': ('sequence length T', 'k = T-1-t (steps back from the loss)', 'T'),
                 'depth': ('depth L', 'k = L-l (layers back from the loss)', 'L')}


def _note_no_theory(ax, reason):
  if reason:
    ax.text(0.02, 0.02, f'no theory line: {reason}', transform=ax.transAxes, fontsize=7,
            color='0.35', wrap=True)


class _DecaySweep:
  """What the figures of a decay sweep share: its records grouped by (panel, sigma_w2, sigma_b2)
  and length (`group_records`), the panels' names, a colour and label per scale, the panels of
  linear cells (drawn log-log, labelled by their ring), and the longest length."""

  def __init__(self, records: list, length_key: str, panel, no_theory_reason):
    self.table = group_records(records, length_key, panel)
    self.names = list(dict.fromkeys(name for name, _, _ in self.table))
    self.reasons = {panel(r): no_theory_reason(r) for r in records}
    self.several_b = len({b for _, _, b in self.table if b is not None}) > 1
    scales = sorted({(w, b) for _, w, b in self.table if w is not None})
    cmap = plt.get_cmap('viridis')
    self.color = {s: cmap(0.9 * i / max(1, len(scales) - 1)) for i, s in enumerate(scales)}
    self.color[None, None] = 'tab:red'  # a linear cell: its ring, no scales
    self.rings = {panel(r): _ring_label(r) for r in records if r['sigma_w2'] is None}
    self.log_log = set(self.rings)  # power laws: straight on log-log axes
    self.longest = max(r[length_key] for r in records)
    self.length_label, self.k_label, self.short = _LENGTH_LABEL[length_key]

  def label(self, w, b, name: str) -> str:
    return (self.rings[name] if w is None else f'$\\sigma_w^2$={w:g}'
            + (f', $\\sigma_b^2$={b:g}' if self.several_b else ''))


def decay_sweep(records: list, plots_dir: str, length_key: str, panel, no_theory_reason) -> list:
  """profile.png, grad_vs_length.png and decay_rate.png of a decay sweep; returns their paths.

  panel(record) names the subplot a record belongs to (the cell, or the CNN's init);
  no_theory_reason(record) says why it has no mean-field prediction, or None.
  """
  records = list(records)
  if not records:
    return []
  os.makedirs(plots_dir, exist_ok=True)
  sweep = _DecaySweep(records, length_key, panel, no_theory_reason)
  figures = {'profile.png': _profile, 'grad_vs_length.png': _grad_vs_length}
  if set(sweep.names) - sweep.log_log:  # only linear cells: no sigma_w2 axis for decay_rate.png
    figures['decay_rate.png'] = _decay_rate
  return plotting.save_each(plots_dir, figures, sweep)


def _profile(sweep: _DecaySweep):
  """ln ||dL/dh||^2 against the distance from the loss at the longest length, a panel per name,
  a line per scale, the theory dashed."""
  names, log_log = sweep.names, sweep.log_log
  labelled = set()  # panels whose legend has the theory line
  theory_text = 'ln chi1' + (', GRU tied operator' if 'gru' in names else '') + (
      r', linear cells ln E$|\lambda|^{2k}$' if sweep.rings else '')
  fig, axes = plotting.panels(names, f'Gradient against distance from the loss ({sweep.short} = '
                              f'{sweep.longest}; dashed: theory, {theory_text})',
                              sharey=not log_log or log_log == set(names))  # scales apart
  for (name, w, b), by_len in sweep.table.items():
    ax, rows = axes[name], by_len.get(sweep.longest, [])
    # a linear cell's theory is ln E over the ring's draws: set beside ln of the mean over seeds
    # (one network's profile at large k rests on its few largest |lambda|: the mean of ln is
    # below ln of the mean)
    profile = (plotting.log_mean_exp_ok if name in log_log else plotting.mean_ok)(
        rows, 'log_grad_sq')
    bad = sorted({r['status'] for r in rows if r['status'] != 'ok'})
    text = sweep.label(w, b, name) + (f' ({", ".join(bad)})' if bad else '')
    if name in log_log:
      text += f', ln mean over {len(rows)} seeds'
    if profile is None:
      ax.plot([], [], color=sweep.color[(w, b)], linestyle=':', label=text)
      continue
    k = np.arange(profile.size) + (name in log_log)  # k + 1 on a log axis
    ax.plot(k, profile[::-1], color=sweep.color[(w, b)], label=text)
    curve = plotting.mean_ok([r for r in rows if r.get('log_grad_sq_theory') is not None],
                             'log_grad_sq_theory')  # linear cells, GRU: a profile
    predicted = rate_stats(rows)[1]
    if curve is not None:
      ax.plot(k, curve[::-1], color='k', linestyle='--', lw=0.8,
              label=None if name in labelled else 'theory')
      labelled.add(name)
    elif predicted is not None:
      ax.plot(k, profile[-1] + predicted * k, color='k', linestyle='--', lw=0.8)
  for name, ax in axes.items():
    ax.set_title(name)
    ax.set_xlabel(sweep.k_label)
    if name in log_log:
      ax.set_xscale('log')  # the y axis is ln already: log-log
      ax.set_xlabel(sweep.k_label.replace('k = ', 'k + 1, k = '))
    ax.axhline(0.0, color='k', lw=0.5)
    ax.legend(fontsize=7)
    _note_no_theory(ax, sweep.reasons[name])
  axes[names[0]].set_ylabel(r'ln $\|\partial L/\partial h\|^2$')
  return fig


def _grad_vs_length(sweep: _DecaySweep):
  """ln ||dL/dh||^2 farthest from the loss (index 0) against the length, a panel per name, a
  line per scale."""
  fig, axes = plotting.panels(
      sweep.names, r'Gradient farthest from the loss, $\|\partial L/\partial h\|^2$ at index 0')
  used = set()
  for (name, w, b), by_len in sweep.table.items():
    ax = axes[name]
    points = [(t, plotting.mean_ok(rows, 'log_grad_sq')) for t, rows in by_len.items()]
    ax.plot([t for t, p in points if p is not None],
            [p[0] for _, p in points if p is not None], marker='o', ms=3,
            color=sweep.color[(w, b)], label=sweep.label(w, b, name))
    for t, rows in by_len.items():
      plotting.mark_edges(ax, t, rows, used)
  for name, ax in axes.items():
    ax.set_title(name)
    ax.set_xscale('log', base=2)
    ax.set_xlabel(sweep.length_label)
    ax.axhline(0.0, color='k', lw=0.5)
    ax.legend(fontsize=7)
  axes[sweep.names[0]].set_ylabel(r'ln $\|\partial L/\partial h\|^2$ at index 0')
  return fig


def _decay_rate(sweep: _DecaySweep):
  """The fitted decay rate against sigma_w2 at the longest length (mean +- std over seeds), a
  line per name (not the linear cells) and sigma_b2, with the theory's ln chi1."""
  fig, ax = plt.subplots(figsize=(6, 4), layout='constrained')
  used = set()
  for name in sweep.names:
    if name in sweep.log_log:
      continue  # no sigma_w2 to draw against
    for b in sorted({b for n, _, b in sweep.table if n == name}):
      xs, means, sds, predicted = [], [], [], []
      for (n, w, b2), by_len in sweep.table.items():
        if (n, b2) != (name, b):
          continue
        rows = by_len.get(sweep.longest, [])
        stats, theory_rate = rate_stats(rows)
        if stats:
          xs.append(w)
          means.append(stats[0])
          sds.append(stats[1])
        if theory_rate is not None:
          predicted.append((w, theory_rate))
        plotting.mark_edges(ax, w, rows, used)
      series = name + (f', $\\sigma_b^2$={b:g}' if sweep.several_b else '')
      line = ax.errorbar(xs, means, yerr=sds, marker='o', ms=4, capsize=3, label=series)
      if predicted:
        ax.plot(*zip(*predicted), linestyle='--', marker='s', mfc='none', ms=7,
                color=line[0].get_color(), lw=1,
                label=f'{series}: theory' + ('' if name == 'gru' else ' ln chi1'))
  ax.axhline(0.0, color='k', lw=0.5)
  ax.set_xlabel(r'$\sigma_w^2$')
  ax.set_ylabel('fitted slope of ln $\\|\\partial L/\\partial h\\|^2$ per step back')
  ax.set_title(f'Decay rate ({sweep.short} = {sweep.longest}; < 0 vanishing, > 0 exploding)')
  ax.legend(fontsize=7)
  return fig


def _ring_label(record: dict) -> str:
  return f'|$\\lambda$| on [{record["r_min"]:g}, {record["r_max"]:g}]'


def _edges(centres: list) -> np.ndarray:
  """Cell edges around sorted grid values: midpoints, the ends extended by half a step."""
  c = np.asarray(centres, dtype=np.float64)
  if c.size == 1:
    half = 0.05 * max(1.0, abs(c[0]))
    return np.array([c[0] - half, c[0] + half])
  mid = 0.5 * (c[1:] + c[:-1])
  return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def phase_diagram(records: list, plots_dir: str, critical_line,
                  name: str = 'phase_diagram.png') -> list:
  """The measured decay rate (mean over seeds) on the (sigma_w2, sigma_b2) grid, with the
  theoretical critical line chi1 = 1 over it. critical_line: (sigma_b2s, sigma_w2s)."""
  records = list(records)
  if not records:
    return []
  os.makedirs(plots_dir, exist_ok=True)
  ws = sorted({r['sigma_w2'] for r in records})
  bs = sorted({r['sigma_b2'] for r in records})
  grid = np.full((len(bs), len(ws)), np.nan)
  for i, b in enumerate(bs):
    for j, w in enumerate(ws):
      stats, _ = rate_stats([r for r in records if r['sigma_w2'] == w and r['sigma_b2'] == b])
      if stats:
        grid[i, j] = stats[0]
  fig, ax = plt.subplots(figsize=(6.4, 4.4), layout='constrained')
  limit = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
  x_edges, y_edges = _edges(ws), _edges(bs)
  mesh = ax.pcolormesh(x_edges, y_edges, grid, shading='flat', cmap='RdBu_r',
                       norm=matplotlib.colors.TwoSlopeNorm(0.0, -limit, limit))
  fig.colorbar(mesh, ax=ax, label='measured decay rate per step (ln)')
  line_b, line_w = critical_line
  if len(bs) == 1 and len(line_w):  # one row: the line is a point; draw it across the row
    line_b, line_w = y_edges, [line_w[0]] * 2
  ax.plot(line_w, line_b, 'k--', lw=1.5, label=r'theory: $\chi_1 = 1$')
  if np.isfinite(grid).any() and np.nanmin(grid) < 0 < np.nanmax(grid) and len(bs) > 1:
    ax.contour(ws, bs, grid, levels=[0.0], colors='0.3', linewidths=1)
    ax.plot([], [], color='0.3', label='measured rate = 0')
  missing = [(ws[j], bs[i]) for i in range(len(bs)) for j in range(len(ws))
             if np.isnan(grid[i, j])]
  if missing:
    ax.plot(*zip(*missing), 'x', color='tab:red', ms=5, linestyle='none',
            label='no ok seed (diverged/vanished)')
  ax.set_xlim(x_edges[0], x_edges[-1])
  ax.set_ylim(y_edges[0], y_edges[-1])
  box = dict(facecolor='white', alpha=0.8, edgecolor='none')
  ax.text(0.03, 0.95, 'ordered: vanishing', transform=ax.transAxes, va='top', color='navy',
          bbox=box)
  ax.text(0.97, 0.05, 'chaotic: exploding', transform=ax.transAxes, ha='right', color='darkred',
          bbox=box)
  ax.set_xlabel(r'$\sigma_w^2$')
  ax.set_ylabel(r'$\sigma_b^2$')
  cell = records[0].get('cell', records[0].get('activation'))
  length = records[0].get('seq_len', records[0].get('depth'))
  sigma_v2 = records[0].get('sigma_v2')
  inputs = f', $\\sigma_v^2$={sigma_v2:g}' if sigma_v2 is not None else ''
  ax.set_title(f'Phase diagram of {cell} (length {length}{inputs})')
  ax.legend(fontsize=8, loc='lower left')
  return [plotting.save(fig, os.path.join(plots_dir, name))]


def _by_panel_scale(records: list, panel) -> dict:
  """{panel: {(sigma_w2, sigma_b2): {depth: [records with a spectrum]}}}"""
  table = collections.defaultdict(lambda: collections.defaultdict(lambda: collections.defaultdict(
      list)))
  for r in records:
    if r.get('log_sv') is not None:
      table[panel(r)][r['sigma_w2'], r['sigma_b2']][r['depth']].append(r)
  return table


def _jacobian_cdf(records: list, panel):
  """The distribution of ln s^2 at each depth (pooled over seeds), a panel per name, at the
  scale nearest criticality (the records' ln chi1 nearest 0)."""
  table = _by_panel_scale(records, panel)
  names = list(table)
  fig, axes = plotting.panels(names, r'Input-output Jacobian: distribution of ln $s^2$ at the '
                              r'scale nearest $\chi_1 = 1$ (a line per depth)')
  for name, by_scale in table.items():
    scale = min(by_scale, key=lambda s: abs(next(
        (r['theory_decay_rate'] for rs in by_scale[s].values() for r in rs
         if r['theory_decay_rate'] is not None), np.inf)))
    depths = sorted(by_scale[scale])
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(depths)))
    for color, depth in zip(colors, depths):
      rows = by_scale[scale][depth]
      values = np.sort(np.concatenate([2 * logs_of(r, 'log_sv') for r in rows]))
      shown = np.maximum(values, -30.0)
      axes[name].plot(shown, np.arange(1, values.size + 1) / values.size, color=color,
                      label=f'L={depth}')
    axes[name].set_title(f'{name}, $\\sigma_w^2$={scale[0]:g}')
    axes[name].set_xlabel(r'ln $s^2$ (below -30 drawn at -30)')
    axes[name].axvline(0.0, color='k', lw=0.5)
    axes[name].legend(fontsize=7)
  axes[names[0]].set_ylabel('fraction of singular values below')
  return fig


def _jacobian_variance(records: list, panel):
  """Var[s^2] / E[s^2]^2 against depth, a line per (name, scale), free probability dashed."""
  table = _by_panel_scale(records, panel)
  fig, ax = plt.subplots(figsize=(6.5, 4.5), layout='constrained')
  for name, by_scale in table.items():
    for (w, b), by_depth in by_scale.items():
      depths = sorted(by_depth)
      measured = [np.mean([r['sv_sq_norm_var'] for r in by_depth[d]]) for d in depths]
      line, = ax.plot(depths, measured, marker='o', ms=4, label=f'{name}, $\\sigma_w^2$={w:g}')
      predicted = [by_depth[d][0]['theory_sv_sq_norm_var'] for d in depths]
      if None not in predicted:
        ax.plot(depths, predicted, linestyle='--', color=line.get_color(), lw=1)
  sizes = {r['width'] * int(np.prod(r['spatial_shape'])) for r in records if r.get('log_sv')}
  for size in sorted(sizes):  # n values cannot show a spread above n - 1
    ax.axhline(size - 1, color='gray', linestyle=':', lw=1,
               label=f'{size} values: at most {size - 1}')
  ax.set_xscale('log', base=2)
  ax.set_yscale('log')
  ax.set_xlabel('depth L')
  ax.set_ylabel(r'Var[$s^2$] / E[$s^2$]$^2$')
  ax.set_title('Spread of the Jacobian spectrum (dashed: free probability)', fontsize=10)
  ax.legend(fontsize=6)
  return fig


def jacobian_spectrum(records: list, plots_dir: str, panel) -> list:
  """jacobian_cdf.png and jacobian_variance.png, from the records that carry a spectrum."""
  os.makedirs(plots_dir, exist_ok=True)
  return plotting.save_each(plots_dir, {'jacobian_cdf.png': _jacobian_cdf,
                                        'jacobian_variance.png': _jacobian_variance},
                            records, panel)
