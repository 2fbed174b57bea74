"""Associative recall's table and figures (lib/experiments/associative_recall), from its records
alone: accuracy over the queried positions against width, number of pairs and state size, each
beside its chance 2/V; a model whose accuracy falls to chance as D grows at a fixed state has run
out of room to store the pairs.
"""

import collections
import os

import numpy as np


def label(record: dict) -> str:
  """A model's name, with its layers where it has several settings of them (attention)."""
  if record['model'] in ('transformer', 'attention'):
    return f'{record["model"]} L={record["num_layers"]}'
  return record['model']


def _accuracy(rows: list):
  """Mean test accuracy over the 'ok' records, or None."""
  values = [r['test_accuracy'] for r in rows if r['status'] == 'ok']
  return float(np.mean(values)) if values else None


def _by(records: list, *fields) -> dict:
  """Records grouped by label and `fields`, in record order."""
  groups = collections.defaultdict(list)
  for r in records:
    groups[(label(r),) + tuple(r[f] for f in fields)].append(r)
  return groups


def recall_table(records: list) -> str:
  """Per model, T and D: accuracy (mean over 'ok' seeds) at each width, the state size in
  brackets, and the chance 2/V; seeds that were not 'ok'."""
  widths = sorted({r['width'] for r in records})
  chance = records[0]['chance_accuracy']
  lines = [f'Test accuracy over the queried positions (mean over seeds; [state size in numbers '
           f'held]); chance 2/V = {chance:.4f} (V = {records[0]["vocab_size"]}):',
           f'{"model":<16} {"T":>4} {"D":>3}' + ''.join(f' {f"d={w}":>16}' for w in widths) +
           '  not ok']
  groups = _by(records, 'seq_len', 'num_pairs')
  for (name, seq_len, pairs), rs in groups.items():
    cols = []
    for w in widths:
      at = [r for r in rs if r['width'] == w]
      acc = _accuracy(at)
      text = '' if not at else '-' if acc is None else f'{acc:.3f} [{at[0]["state_size"]}]'
      cols.append(f' {text:>16}')
    bad = ', '.join(f'{r["status"]}@d={r["width"]},seed={r["seed"]}' for r in rs
                    if r['status'] != 'ok')
    lines.append(f'{name:<16} {seq_len:>4} {pairs:>3}' + ''.join(cols) + f'  {bad or "-"}')
  return '\n'.join(lines)


def _lines(ax, records: list, x_field: str, fields: tuple, colors: dict, plotting):
  """One line per label of accuracy against x_field among `records`, its colour the label's in
  every panel (`colors`); not-'ok' at the edges."""
  used = set()
  for key, rs in _by(records, *fields).items():
    xs = sorted({r[x_field] for r in rs})
    ys = [_accuracy([r for r in rs if r[x_field] == x]) for x in xs]
    name = key[0] + ''.join(f' {f}={v}' for f, v in zip(fields, key[1:]))
    ax.plot(xs, [np.nan if y is None else y for y in ys], marker='o', label=name,
            color=colors[key[0]])
    for x in xs:
      plotting.mark_edges(ax, x, [r for r in rs if r[x_field] == x], used)
  ax.axhline(records[0]['chance_accuracy'], color='gray', linestyle='--', label='chance 2/V')
  ax.set_xscale('log', base=2)
  ax.set_ylim(0, 1.02)
  ax.set_ylabel('test accuracy (queried positions)')


def _figure(records: list, panels: dict, x_field: str, xlabel: str, title: str,
            fields: tuple = ()):
  """A panel per {name: its records}: accuracy against x_field, a line per label (and
  `fields`)."""
  from lib.report import plotting  # pylint: disable=g-import-not-at-top
  fig, axes = plotting.panels(list(panels), f'Associative recall: accuracy against {title}')
  colors = {name: f'C{i}' for i, name in enumerate(dict.fromkeys(map(label, records)))}
  for name, ax in axes.items():
    _lines(ax, panels[name], x_field, fields, colors, plotting)
    ax.set_title(name)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=6)
  return fig


def accuracy_vs_width(records: list):
  """A panel per (T, D): accuracy against width, a line per model."""
  cases = list(dict.fromkeys((r['seq_len'], r['num_pairs']) for r in records))
  return _figure(records, {f'T={t} D={d}': [r for r in records if (r['seq_len'],
                                                                    r['num_pairs']) == (t, d)]
                           for t, d in cases}, 'width', 'width d', 'width')


def accuracy_vs_pairs(records: list):
  """A panel per T: accuracy against D at the largest width, a line per model."""
  width = max(r['width'] for r in records)
  lengths = sorted({r['seq_len'] for r in records})
  return _figure(records, {f'T={t}': [r for r in records if r['seq_len'] == t and
                                      r['width'] == width] for t in lengths},
                 'num_pairs', 'pairs D', f'the number of pairs D (width {width})')


def accuracy_vs_state(records: list):
  """A panel per D: accuracy against the state size (numbers held), a line per (model, T)."""
  pairs = sorted({r['num_pairs'] for r in records})
  return _figure(records, {f'D={d}': [r for r in records if r['num_pairs'] == d]
                           for d in pairs}, 'state_size', 'state size (numbers held)',
                 'state size', ('seq_len',))


def recall_figures(records: list, plots_dir: str) -> list:
  """The three figures, written to plots_dir; their paths."""
  from lib.report import plotting  # pylint: disable=g-import-not-at-top
  os.makedirs(plots_dir, exist_ok=True)
  return plotting.save_each(plots_dir, {'accuracy_vs_width.png': accuracy_vs_width,
                                        'accuracy_vs_pairs.png': accuracy_vs_pairs,
                                        'accuracy_vs_state.png': accuracy_vs_state}, records)
