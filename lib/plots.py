"""Plots drawn from records alone: a plot never recomputes a measurement.

Records whose status is not 'ok' have no usable value; they are drawn as markers at the edge of
the axes ('diverged' at the top, 'vanished' at the bottom) so that they are seen, not hidden.
Mean-field predictions (the records' theory_decay_rate) are dashed lines beside the measurements.
"""

import io
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.colors  # noqa: E402  (after choosing the headless backend)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lib.report import group_records  # noqa: E402
from lib.report import rate_stats  # noqa: E402
from lib.results import write_atomic  # noqa: E402

_EDGE = {'diverged': (0.96, 'x', 'tab:red'), 'vanished': (0.04, 'v', 'tab:gray')}
_LENGTH_LABEL = {'seq_len': ('sequence length T', 'k = T-1-t (steps back from the loss)', 'T'),
                 'depth': ('depth L', 'k = L-l (layers back from the loss)', 'L')}


def _save(fig, path: str) -> str:
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=110)
  plt.close(fig)
  write_atomic(path, buf.getvalue())
  return path


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


def _panels(names: list, title: str):
  fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False,
                           sharey=True, layout='constrained')
  fig.suptitle(title)
  return fig, dict(zip(names, axes[0]))


def _note_no_theory(ax, reason):
  if reason:
    ax.text(0.02, 0.02, f'no theory line: {reason}', transform=ax.transAxes, fontsize=7,
            color='0.35', wrap=True)


def decay_sweep(records: list, plots_dir: str, length_key: str, panel, no_theory_reason) -> list:
  """profile.png, grad_vs_length.png and decay_rate.png of a decay sweep; returns their paths.

  panel(record) names the subplot a record belongs to (the cell, or the CNN's init);
  no_theory_reason(record) says why it has no mean-field prediction, or None.
  """
  records = list(records)
  if not records:
    return []
  os.makedirs(plots_dir, exist_ok=True)
  table = group_records(records, length_key, panel)
  names = list(dict.fromkeys(name for name, _, _ in table))
  reasons = {panel(r): no_theory_reason(r) for r in records}
  several_b = len({b for _, _, b in table}) > 1
  scales = sorted({(w, b) for _, w, b in table})
  cmap = plt.get_cmap('viridis')
  color = {s: cmap(0.9 * i / max(1, len(scales) - 1)) for i, s in enumerate(scales)}
  label = lambda w, b: f'$\\sigma_w^2$={w:g}' + (f', $\\sigma_b^2$={b:g}' if several_b else '')
  longest = max(r[length_key] for r in records)
  length_label, k_label, short = _LENGTH_LABEL[length_key]
  paths = []

  fig, axes = _panels(names, f'Gradient against distance from the loss ({short} = {longest}; '
                      'dashed: mean-field ln chi1)')
  for (name, w, b), by_len in table.items():
    ax, rows = axes[name], by_len.get(longest, [])
    profile = _mean_ok(rows, 'log_grad_sq')
    bad = sorted({r['status'] for r in rows if r['status'] != 'ok'})
    text = label(w, b) + (f' ({", ".join(bad)})' if bad else '')
    if profile is None:
      ax.plot([], [], color=color[(w, b)], linestyle=':', label=text)
      continue
    k = np.arange(profile.size)
    ax.plot(k, profile[::-1], color=color[(w, b)], label=text)
    predicted = rate_stats(rows)[1]
    if predicted is not None:
      ax.plot(k, profile[-1] + predicted * k, color='k', linestyle='--', lw=0.8)
  for name, ax in axes.items():
    ax.set_title(name)
    ax.set_xlabel(k_label)
    ax.axhline(0.0, color='k', lw=0.5)
    ax.legend(fontsize=7)
    _note_no_theory(ax, reasons[name])
  axes[names[0]].set_ylabel(r'ln $\|\partial L/\partial h\|^2$')
  paths.append(_save(fig, os.path.join(plots_dir, 'profile.png')))

  fig, axes = _panels(names, r'Gradient farthest from the loss, $\|\partial L/\partial h\|^2$ at '
                      'index 0')
  used = set()
  for (name, w, b), by_len in table.items():
    ax = axes[name]
    points = [(t, _mean_ok(rows, 'log_grad_sq')) for t, rows in by_len.items()]
    ax.plot([t for t, p in points if p is not None],
            [p[0] for _, p in points if p is not None], marker='o', ms=3,
            color=color[(w, b)], label=label(w, b))
    for t, rows in by_len.items():
      _mark_edges(ax, t, rows, used)
  for name, ax in axes.items():
    ax.set_title(name)
    ax.set_xscale('log', base=2)
    ax.set_xlabel(length_label)
    ax.axhline(0.0, color='k', lw=0.5)
    ax.legend(fontsize=7)
  axes[names[0]].set_ylabel(r'ln $\|\partial L/\partial h\|^2$ at index 0')
  paths.append(_save(fig, os.path.join(plots_dir, 'grad_vs_length.png')))

  fig, ax = plt.subplots(figsize=(6, 4), layout='constrained')
  used = set()
  for name in names:
    for b in sorted({b for n, _, b in table if n == name}):
      xs, means, sds, predicted = [], [], [], []
      for (n, w, b2), by_len in table.items():
        if (n, b2) != (name, b):
          continue
        rows = by_len.get(longest, [])
        stats, theory_rate = rate_stats(rows)
        if stats:
          xs.append(w)
          means.append(stats[0])
          sds.append(stats[1])
        if theory_rate is not None:
          predicted.append((w, theory_rate))
        _mark_edges(ax, w, rows, used)
      series = name + (f', $\\sigma_b^2$={b:g}' if several_b else '')
      line = ax.errorbar(xs, means, yerr=sds, marker='o', ms=4, capsize=3, label=series)
      if predicted:
        ax.plot(*zip(*predicted), linestyle='--', marker='s', mfc='none', ms=7,
                color=line[0].get_color(), lw=1, label=f'{series}: theory ln chi1')
  ax.axhline(0.0, color='k', lw=0.5)
  ax.set_xlabel(r'$\sigma_w^2$')
  ax.set_ylabel('fitted slope of ln $\\|\\partial L/\\partial h\\|^2$ per step back')
  ax.set_title(f'Decay rate ({short} = {longest}; < 0 vanishing, > 0 exploding)')
  ax.legend(fontsize=7)
  paths.append(_save(fig, os.path.join(plots_dir, 'decay_rate.png')))
  return paths


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
  return [_save(fig, os.path.join(plots_dir, name))]


def _series(records: list, keys) -> dict:
  """{key(record): [records]} in order of first appearance."""
  out = {}
  for r in records:
    out.setdefault(keys(r), []).append(r)
  return out


def _curve_steps(rows: list, field: str) -> np.ndarray:
  return rows[0]['log_every'] * np.arange(1, len(rows[0][field]) + 1)


def _curves(rows: list, field: str) -> np.ndarray:
  """(seeds, points) of a logged curve, NaN where a seed had diverged (null in the record)."""
  return np.asarray([[np.nan if v is None else v for v in r[field]] for r in rows],
                    dtype=np.float64)


def _mean_curve(rows: list, field: str) -> np.ndarray:
  """Mean over the seeds still finite at each point (NaN where none is)."""
  curves = _curves(rows, field)
  finite = np.isfinite(curves)
  total = np.where(finite, curves, 0.0).sum(axis=0)
  return np.where(finite.any(axis=0), total / np.maximum(finite.sum(axis=0), 1), np.nan)


def _mark_divergence(ax, steps, rows, field: str, color, used: set):
  """An x at the top edge at the first logged point where each diverged seed's curve is NaN."""
  for curve in _curves(rows, field):
    bad = np.flatnonzero(~np.isfinite(curve))
    if bad.size:
      ax.plot([steps[bad[0]]], [0.96], marker='x', color=color, linestyle='none',
              transform=ax.get_xaxis_transform(), clip_on=False,
              label=None if 'diverged' in used else 'diverged')
      used.add('diverged')


def memory_sweep(records: list, plots_dir: str) -> list:
  """loss_vs_length.png (final test loss per model against T, with the memoryless baseline),
  training_curves.png (test loss during training, one panel per T) and input_gradients.png
  (ln ||dy/dx_t||^2 against steps back from the output, at initialisation and trained)."""
  records = list(records)
  if not records:
    return []
  os.makedirs(plots_dir, exist_ok=True)
  task = records[0]['task']
  several_clips = len({r['clip_norm'] for r in records}) > 1
  label = lambda cell, clip: cell + (f', clip {clip:g}' if several_clips else '')
  series = _series(records, lambda r: (r['cell'], r['clip_norm']))
  cells = list(dict.fromkeys(cell for cell, _ in series))
  colors = {cell: f'C{i}' for i, cell in enumerate(cells)}
  clips = sorted({clip for _, clip in series})
  styles = {clip: ('-', '--', ':', '-.')[i % 4] for i, clip in enumerate(clips)}
  lengths = sorted({r['seq_len'] for r in records})
  title = {'adding': 'adding problem, MSE', 'copy': 'copy memory, cross-entropy per step'}[task]
  paths = []

  # Losses far above the baseline (an exploding run that stayed finite) are drawn at the top edge.
  top = 3.0 * max(r['baseline_loss'] for r in records)
  fig, ax = plt.subplots(figsize=(6.5, 4.2), layout='constrained')
  used = set()
  for (cell, clip), rows in series.items():
    by_len = _series(sorted(rows, key=lambda r: r['seq_len']), lambda r: r['seq_len'])
    points = [(t, _mean_ok(rs, 'test_loss')) for t, rs in by_len.items()]
    points = [(t, min(m, top)) for t, m in points if m is not None]
    ax.plot(*zip(*points) if points else ([], []), marker='o', ms=4, color=colors[cell],
            linestyle=styles[clip], label=label(cell, clip))
    for t, rs in by_len.items():
      ok = [r['test_loss'] for r in rs if r['status'] == 'ok']
      ax.plot([t] * len(ok), np.minimum(ok, top), '.', ms=3, color=colors[cell], alpha=0.5)
      if any(v > top for v in ok):
        ax.plot([t], [top], marker='^', color=colors[cell], linestyle='none',
                label=None if 'above' in used else 'above the axis')
        used.add('above')
      _mark_edges(ax, t, rs, used)
  baseline = sorted({(r['seq_len'], r['baseline_loss']) for r in records})
  ax.plot(*zip(*baseline), color='k', linestyle='--', lw=1, label='memoryless baseline')
  ax.set_xscale('log', base=2)
  ax.set_xticks(lengths, [str(t) for t in lengths])
  ax.set_yscale('log')
  ax.set_ylim(top=top)
  ax.set_xlabel('sequence length T')
  ax.set_ylabel('test loss (mean over seeds; dots: seeds)')
  ax.set_title(f'Final test loss, {title}')
  ax.legend(fontsize=7)
  paths.append(_save(fig, os.path.join(plots_dir, 'loss_vs_length.png')))

  fig, axes = _panels([f'T = {t}' for t in lengths], f'Test loss during training, {title}')
  used = set()
  for (cell, clip), rows in series.items():
    for t in lengths:
      rs = [r for r in rows if r['seq_len'] == t]
      if not rs:
        continue
      ax = axes[f'T = {t}']
      steps = _curve_steps(rs, 'test_loss_curve')
      for r in rs:
        ax.plot(steps, [np.nan if v is None else v for v in r['test_loss_curve']],
                color=colors[cell], linestyle=styles[clip], lw=0.6, alpha=0.35)
      ax.plot(steps, _mean_curve(rs, 'test_loss_curve'), color=colors[cell],
              linestyle=styles[clip], label=label(cell, clip))
      _mark_divergence(ax, steps, rs, 'test_loss_curve', colors[cell], used)
  for t in lengths:
    ax = axes[f'T = {t}']
    ax.axhline(next(r['baseline_loss'] for r in records if r['seq_len'] == t), color='k',
               linestyle='--', lw=1, label='baseline')
    ax.set_title(f'T = {t}')
    ax.set_yscale('log')
    ax.set_ylim(top=top)
    ax.set_xlabel('training step')
  axes[f'T = {lengths[0]}'].set_ylabel('test loss (thin: seeds; thick: mean of those\n'
                                        'not diverged)')
  axes[f'T = {lengths[-1]}'].legend(fontsize=7)
  paths.append(_save(fig, os.path.join(plots_dir, 'training_curves.png')))

  fig, axes = _panels(cells, f'Gradient of the last output to the input x_t ({title}'
                      + (f', clip_norm {clips[0]:g}' if several_clips else '')
                      + '); dashed: at initialisation')
  cmap = plt.get_cmap('viridis')
  for cell in cells:
    ax = axes[cell]
    for i, t in enumerate(lengths):
      rs = [r for r in records if r['cell'] == cell and r['seq_len'] == t
            and r['clip_norm'] == clips[0]]
      color = cmap(0.9 * i / max(1, len(lengths) - 1))
      for field, style in (('log_grad_sq_input_init', '--'),
                           ('log_grad_sq_input_trained', '-')):
        rows = [r for r in rs if r['status'] == 'ok' or field.endswith('init')]
        if rows:
          profile = _mean_curve(rows, field)
          ax.plot(np.arange(profile.size), profile[::-1], color=color, linestyle=style,
                  lw=1, label=f'T = {t}' if style == '-' else None)
    ax.set_title(cell)
    ax.set_xlabel('k (steps back from the last output)')
    ax.legend(fontsize=7)
  axes[cells[0]].set_ylabel(r'ln $\|\partial y/\partial x_{t}\|^2$')
  paths.append(_save(fig, os.path.join(plots_dir, 'input_gradients.png')))
  return paths


def classification(records: list, plots_dir: str, published: dict) -> list:
  """accuracy.png (test accuracy per model, original and permuted positions, with the published
  values as markers) and training_curves.png (test loss during training)."""
  records = list(records)
  if not records:
    return []
  os.makedirs(plots_dir, exist_ok=True)
  names = list(dict.fromkeys(r['model'] for r in records))
  variants = sorted({r['permuted'] for r in records})
  paths = []

  fig, ax = plt.subplots(figsize=(6.5, 4), layout='constrained')
  width = 0.8 / len(variants)
  for j, permuted in enumerate(variants):
    x = np.arange(len(names)) + (j - (len(variants) - 1) / 2) * width
    means, seeds = [], []
    for name in names:
      rows = [r for r in records if r['model'] == name and r['permuted'] == permuted]
      ok = [100 * r['test_accuracy'] for r in rows if r['status'] == 'ok']
      means.append(np.mean(ok) if ok else np.nan)  # no bar where nothing finished
      seeds.append(ok)
    tag = 'permuted' if permuted else 'original'
    ax.bar(x, means, width * 0.9, color='tab:orange' if permuted else 'tab:blue', alpha=0.8,
           label=f'ours, {tag}')
    for xi, ok in zip(x, seeds):
      ax.plot([xi] * len(ok), ok, 'k.', ms=3)
    marks = [(xi, published[name][int(permuted)]) for xi, name in zip(x, names)
             if name in published]
    if marks:
      ax.plot(*zip(*marks), linestyle='none', marker='_', ms=14, mew=2, color='k',
              label='published' if j == 0 else None)
  ax.set_xticks(np.arange(len(names)), names)
  ax.set_ylabel('test accuracy (%)')
  ax.set_ylim(0, 100)
  ax.set_title(f'{records[0]["dataset"]}: test accuracy (dots: seeds)')
  ax.legend(fontsize=7)
  paths.append(_save(fig, os.path.join(plots_dir, 'accuracy.png')))

  fig, ax = plt.subplots(figsize=(6.5, 4), layout='constrained')
  for i, name in enumerate(names):
    for permuted in variants:
      rows = [r for r in records if r['model'] == name and r['permuted'] == permuted]
      if not rows:  # a partial run
        continue
      ax.plot(_curve_steps(rows, 'test_loss_curve'), _mean_curve(rows, 'test_loss_curve'),
              color=f'C{i}', linestyle='--' if permuted else '-',
              label=name + (' permuted' if permuted else ''))
  ax.set_yscale('log')
  ax.set_xlabel('training step')
  ax.set_ylabel('test loss (mean over seeds)')
  ax.set_title(f'{records[0]["dataset"]}: test loss during training (dashed: permuted)')
  ax.legend(fontsize=7, ncol=2)
  paths.append(_save(fig, os.path.join(plots_dir, 'training_curves.png')))
  return paths
