"""Figures of the training experiments (long-range memory, gradient clipping, image
classification), drawn from records alone: the final losses and accuracies, the curves during
training, and the input-gradient profiles at initialisation and trained.

A diverged seed's curve is NaN from the step it diverged (null in its record); it is drawn as a
cross at the top edge where it first is, and left out of the mean of the seeds still finite.
"""

import os

import numpy as np

from lib.report import plotting
from lib.report import tables
from lib.report.plotting import plt  # pyplot on the headless backend that plotting chose


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


class _MemorySweep:
  """What the figures of a memory sweep share: its series (a cell at a clipping norm, in order of
  first appearance), a colour per cell and a line style per clipping norm, the lengths, the
  task's title, and the top of the loss axes."""

  def __init__(self, records: list):
    self.records = records
    self.several_clips = len({r['clip_norm'] for r in records}) > 1
    self.series = _series(records, lambda r: (r['cell'], r['clip_norm']))
    self.cells = list(dict.fromkeys(cell for cell, _ in self.series))
    self.colors = {cell: f'C{i}' for i, cell in enumerate(self.cells)}
    self.clips = sorted({clip for _, clip in self.series})
    self.styles = {clip: ('-', '--', ':', '-.')[i % 4] for i, clip in enumerate(self.clips)}
    self.lengths = sorted({r['seq_len'] for r in records})
    self.title = {'adding': 'adding problem, MSE',
                  'copy': 'copy memory, cross-entropy per step'}[records[0]['task']]
    # Losses far above the baseline (an exploding run that stayed finite): at the top edge.
    self.top = 3.0 * max(r['baseline_loss'] for r in records)

  def label(self, cell: str, clip: float) -> str:
    return cell + (f', clip {clip:g}' if self.several_clips else '')


def memory_sweep(records: list, plots_dir: str) -> list:
  """loss_vs_length.png (final test loss per model against T, with the memoryless baseline),
  training_curves.png (test loss during training, one panel per T) and input_gradients.png
  (ln ||dy/dx_t||^2 against steps back from the output, at initialisation and trained)."""
  records = list(records)
  if not records:
    return []
  os.makedirs(plots_dir, exist_ok=True)
  figures = {'loss_vs_length.png': _loss_vs_length, 'training_curves.png': _memory_curves,
             'input_gradients.png': _input_gradients}
  return plotting.save_each(plots_dir, figures, _MemorySweep(records))


def _loss_vs_length(sweep: _MemorySweep):
  """The final test loss per series against T (mean over seeds, dots: seeds), with the
  memoryless baseline."""
  top = sweep.top
  fig, ax = plt.subplots(figsize=(6.5, 4.2), layout='constrained')
  used = set()
  for (cell, clip), rows in sweep.series.items():
    color = sweep.colors[cell]
    by_len = _series(sorted(rows, key=lambda r: r['seq_len']), lambda r: r['seq_len'])
    points = [(t, plotting.mean_ok(rs, 'test_loss')) for t, rs in by_len.items()]
    points = [(t, min(m, top)) for t, m in points if m is not None]
    ax.plot(*zip(*points) if points else ([], []), marker='o', ms=4, color=color,
            linestyle=sweep.styles[clip], label=sweep.label(cell, clip))
    for t, rs in by_len.items():
      ok = [r['test_loss'] for r in rs if r['status'] == 'ok']
      ax.plot([t] * len(ok), np.minimum(ok, top), '.', ms=3, color=color, alpha=0.5)
      if any(v > top for v in ok):
        ax.plot([t], [top], marker='^', color=color, linestyle='none',
                label=None if 'above' in used else 'above the axis')
        used.add('above')
      plotting.mark_edges(ax, t, rs, used)
  baseline = sorted({(r['seq_len'], r['baseline_loss']) for r in sweep.records})
  ax.plot(*zip(*baseline), color='k', linestyle='--', lw=1, label='memoryless baseline')
  ax.set_xscale('log', base=2)
  ax.set_xticks(sweep.lengths, [str(t) for t in sweep.lengths])
  ax.set_yscale('log')
  ax.set_ylim(top=top)
  ax.set_xlabel('sequence length T')
  ax.set_ylabel('test loss (mean over seeds; dots: seeds)')
  ax.set_title(f'Final test loss, {sweep.title}')
  ax.legend(fontsize=7)
  return fig


def _memory_curves(sweep: _MemorySweep):
  """The test loss during training, a panel per T: each seed thin, the mean of those not
  diverged thick, the memoryless baseline dashed."""
  lengths = sweep.lengths
  fig, axes = plotting.panels([f'T = {t}' for t in lengths],
                              f'Test loss during training, {sweep.title}')
  used = set()
  for (cell, clip), rows in sweep.series.items():
    color, style = sweep.colors[cell], sweep.styles[clip]
    for t in lengths:
      rs = [r for r in rows if r['seq_len'] == t]
      if not rs:
        continue
      ax = axes[f'T = {t}']
      steps = _curve_steps(rs, 'test_loss_curve')
      for r in rs:
        ax.plot(steps, [np.nan if v is None else v for v in r['test_loss_curve']],
                color=color, linestyle=style, lw=0.6, alpha=0.35)
      ax.plot(steps, _mean_curve(rs, 'test_loss_curve'), color=color, linestyle=style,
              label=sweep.label(cell, clip))
      _mark_divergence(ax, steps, rs, 'test_loss_curve', color, used)
  for t in lengths:
    ax = axes[f'T = {t}']
    ax.axhline(next(r['baseline_loss'] for r in sweep.records if r['seq_len'] == t), color='k',
               linestyle='--', lw=1, label='baseline')
    ax.set_title(f'T = {t}')
    ax.set_yscale('log')
    ax.set_ylim(top=sweep.top)
    ax.set_xlabel('training step')
  axes[f'T = {lengths[0]}'].set_ylabel('test loss (thin: seeds; thick: mean of those\n'
                                        'not diverged)')
  axes[f'T = {lengths[-1]}'].legend(fontsize=7)
  return fig


def _input_gradients(sweep: _MemorySweep):
  """ln ||dy/dx_t||^2 against steps back from the output, a panel per cell (at the first
  clipping norm), a line per T: trained solid, at initialisation dashed."""
  cells, lengths, clip = sweep.cells, sweep.lengths, sweep.clips[0]
  fig, axes = plotting.panels(cells, f'Gradient of the last output to the input x_t ({sweep.title}'
                              + (f', clip_norm {clip:g}' if sweep.several_clips else '')
                              + '); dashed: at initialisation')
  cmap = plt.get_cmap('viridis')
  for cell in cells:
    ax = axes[cell]
    for i, t in enumerate(lengths):
      rs = [r for r in sweep.records if r['cell'] == cell and r['seq_len'] == t
            and r['clip_norm'] == clip]
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
  return fig


def classification(records: list, plots_dir: str, published: dict) -> list:
  """accuracy.png (test accuracy per model, original and permuted positions, with the published
  values as markers) and training_curves.png (test loss during training)."""
  records = list(records)
  if not records:
    return []
  os.makedirs(plots_dir, exist_ok=True)
  return plotting.save_each(plots_dir, {
      'accuracy.png': lambda: _accuracy(records, published),
      'training_curves.png': lambda: _classification_curves(records)})


def _models_and_variants(records: list):
  """The models in order of first appearance, and the positions (False: original) sorted."""
  return list(dict.fromkeys(r['model'] for r in records)), sorted({r['permuted'] for r in records})


def _accuracy(records: list, published: dict):
  """A bar per model and positions (mean over seeds; dots: seeds), the published values as
  markers."""
  names, variants = _models_and_variants(records)
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
  return fig


def _classification_curves(records: list):
  """The test loss during training, a line per model and positions (dashed: permuted)."""
  names, variants = _models_and_variants(records)
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
  return fig


class _LanguageSweep:
  """What the figures of the language models share: the models (in order of first appearance)
  and their colours, the context lengths, the records of each (model, context length)."""

  def __init__(self, records: list):
    self.records = records
    self.names = list(dict.fromkeys(r['model'] for r in records))
    self.lengths = sorted({r['context_len'] for r in records})
    self.colors = {name: f'C{i}' for i, name in enumerate(self.names)}

  def rows(self, name: str, length: int) -> list:
    return [r for r in self.records if r['model'] == name and r['context_len'] == length]


def language_models(records: list, plots_dir: str) -> list:
  """test_metric.png: test bpc (or perplexity) against context length, a line per model, the
  best count-based n-gram's dashed; position_loss.png: the loss at each position of a window
  started from nothing, a panel per context length, a line per model; training_curves.png:
  training and validation loss; recall_split.png (records that carry it): each model's loss on
  the recall, misleading and other test positions (lib/measure/recall), a panel per context."""
  os.makedirs(plots_dir, exist_ok=True)
  figures = {'test_metric.png': _test_metric, 'position_loss.png': _position_loss,
             'training_curves.png': _language_curves}
  if any(r.get('recall_loss') for r in records):
    figures['recall_split.png'] = _recall_split
  return plotting.save_each(plots_dir, figures, _LanguageSweep(records))


def _recall_split(sweep: _LanguageSweep):
  """Bars of each model's mean loss (over its 'ok' seeds) on each class of test position, the
  class's share of the positions under its name, a panel per context length."""
  classes = tables.RECALL_CLASSES
  fig, axes = plotting.panels([f'context {length}' for length in sweep.lengths],
                              'test loss by kind of position')
  width = 0.8 / len(sweep.names)
  for length in sweep.lengths:
    ax = axes[f'context {length}']
    shares = None
    for i, name in enumerate(sweep.names):
      rows = [r for r in sweep.rows(name, length) if r['status'] == 'ok' and r.get('recall_loss')]
      if not rows:
        continue
      shares = rows[0]['recall_fraction']
      losses = np.mean([[np.nan if v is None else v for v in r['recall_loss']] for r in rows],
                       axis=0)  # NaN (no bar) for a class without positions
      ax.bar(np.arange(len(classes)) + (i - (len(sweep.names) - 1) / 2) * width,
             losses, width, color=sweep.colors[name], label=name)
    ax.set_xticks(np.arange(len(classes)), [
        name if shares is None else f'{name}\n{share:.0%} of positions'
        for name, share in zip(classes, shares or [None] * 3)])
    ax.set_ylabel('test loss (nats per token)')
    ax.legend(fontsize=7)
  return fig


def _test_metric(sweep: _LanguageSweep):
  """Test bpc (characters) or perplexity (words) against the context length, a line per model
  (mean over seeds; a seed not 'ok' marked at the edge), the best n-gram's as a dashed line."""
  metric = 'test_bpc' if sweep.records[0]['level'] == 'char' else 'test_perplexity'
  fig, ax = plt.subplots(figsize=(5.5, 4), layout='constrained')
  used = set()
  for name in sweep.names:
    xs, ys = [], []
    for length in sweep.lengths:
      rows = sweep.rows(name, length)
      value = plotting.mean_ok(rows, metric)
      if value is not None:
        xs.append(length)
        ys.append(value)
      plotting.mark_edges(ax, length, rows, used)
    ax.plot(xs, ys, 'o-', color=sweep.colors[name], label=name)
  _ngram_reference(ax, sweep.records, metric)
  ax.set_xscale('log', base=2)
  ax.set_xlabel('context length (tokens of truncated BPTT / window)')
  ax.set_ylabel(metric.replace('_', ' '))
  ax.set_title(f'{sweep.records[0]["dataset"]}: {metric.replace("_", " ")} (mean over seeds)')
  ax.legend()
  return fig


def _ngram_reference(ax, records: list, metric: str) -> None:
  """The best order of the count-based n-gram baseline (the records' `ngram_*` fields) as a
  labelled horizontal line; nothing for records from before it was measured."""
  r = next((r for r in records if r.get('ngram_orders')), None)
  if r is None or f'ngram_{metric}' not in r:
    return
  values = r[f'ngram_{metric}']
  best = int(np.argmin(values))
  ax.axhline(values[best], color='0.4', ls='--', lw=1,
             label=f'{r["ngram_orders"][best]}-gram (Kneser-Ney): {values[best]:.3g}')


def _position_loss(sweep: _LanguageSweep):
  """The loss at each position of a window started from a zero state (mean over seeds), a panel
  per context length, a line per model; in windows of 32 or more, also its mean over each
  octave of positions (Kaplan et al. 2020, Figure 7, read the same way)."""
  def draw(ax, name, rows):
    value = plotting.mean_ok(rows, 'position_loss')
    if value is None:
      return
    if len(value) < 32:
      ax.plot(np.arange(len(value)), value, color=sweep.colors[name], label=name)
      return
    # long windows: each position thin (each a mean over few windows, noisy), and the mean
    # over the positions 2^k .. 2^(k+1) - 1 thick, at their middle
    ax.plot(np.arange(len(value)), value, color=sweep.colors[name], lw=0.6, alpha=0.35)
    edges = [0, 1] + [2 ** k for k in range(1, int(np.log2(len(value))) + 1)]
    edges = sorted(set(edges + [len(value)]))
    ax.plot([(a + b - 1) / 2 for a, b in zip(edges, edges[1:])],
            [value[a:b].mean() for a, b in zip(edges, edges[1:])], 'o-',
            color=sweep.colors[name], label=name)
  return _per_context(sweep, 'loss at each position, from a zero state', draw,
                      'position t in the window', symlog=True)


def _language_curves(sweep: _LanguageSweep):
  """Training (thin) and validation (thick) loss during training (mean over the 'ok' seeds), a
  panel per context length, a line per model."""
  def draw(ax, name, rows):
    rows = [r for r in rows if r['status'] == 'ok']
    if rows:
      color = sweep.colors[name]
      steps = _curve_steps(rows, 'train_loss')
      ax.plot(steps, _mean_curve(rows, 'train_loss'), color=color, lw=0.8, alpha=0.6)
      ax.plot(steps, _mean_curve(rows, 'valid_loss_curve'), color=color, lw=2, label=name)
  return _per_context(sweep, 'training (thin) and validation (thick) loss', draw, 'step')


def _per_context(sweep: _LanguageSweep, title: str, draw, xlabel: str, symlog: bool = False):
  """A figure of a panel per context length, in which draw(ax, model, its records) draws each
  model's line; a symmetric-log x axis if `symlog`."""
  fig, axes = plotting.panels([f'context {length}' for length in sweep.lengths], title)
  for length in sweep.lengths:
    ax = axes[f'context {length}']
    for name in sweep.names:
      draw(ax, name, sweep.rows(name, length))
    if symlog:
      ax.set_xscale('symlog', linthresh=1)
    ax.set_xlabel(xlabel)
    ax.set_title(f'context {length}')
  next(iter(axes.values())).set_ylabel('loss (nats per token)')
  next(iter(axes.values())).legend()
  return fig
