"""The phase diagram: the gradient-decay sweep over a (sigma_w2, sigma_b2) grid, drawn as a heat
map of the measured decay rate with the mean-field critical line (chi1 = 1) over it: the ordered
phase (vanishing gradients) on one side, the chaotic phase (exploding) on the other.

It runs lib.experiments.gradient_decay unchanged (same config keys, same records); only the plot and
summary differ. With one cell and one length it is one compiled program for the whole grid.
"""

import numpy as np

from lib.experiments import gradient_decay
from lib.measure import theory
from lib.nets import cells
from lib.report import tables
from lib.runtime.errors import UserError


def validate(config) -> dict:
  cfg = gradient_decay.validate(config)
  linear = [cell for cell in cfg['cells'] if cell in cells.LINEAR_CELLS]
  if linear:
    raise UserError(f'config.cells: {linear[0]} has no (sigma_w2, sigma_b2) phase diagram (its '
                    f'init is the ring r_min..r_max); valid cells: {", ".join(cells.KERNEL_CELLS)}')
  return cfg


run = gradient_decay.run
grid = gradient_decay.grid
programs = gradient_decay.programs
point_key = gradient_decay.point_key
RECORD_FIELDS = gradient_decay.RECORD_FIELDS
NEUTRAL_KEYS = gradient_decay.NEUTRAL_KEYS
GRID_KEYS = gradient_decay.GRID_KEYS
SHRINK_KEYS = gradient_decay.SHRINK_KEYS


def measured_critical(sigma_w2s, rates):
  """The sigma_w2 where the measured rate first crosses zero upwards (linear interpolation
  between grid points), or None if it does not cross on the grid."""
  for (w0, r0), (w1, r1) in zip(zip(sigma_w2s, rates), zip(sigma_w2s[1:], rates[1:])):
    if r0 is not None and r1 is not None and r0 < 0 <= r1:
      return w0 + (w1 - w0) * (-r0) / (r1 - r0)
  return None


def _rows(records: list) -> dict:
  """{(cell, sigma_b2): (sigma_w2s, mean rates or None)} at each cell's longest length."""
  rows = {}
  for (cell, w, b), by_len in tables.group_records(records, 'seq_len', lambda r: r['cell']).items():
    stats, _ = tables.rate_stats(by_len[max(by_len)])
    ws, rates = rows.setdefault((cell, b), ([], []))
    ws.append(w)
    rates.append(stats[0] if stats else None)
  return rows


def _theory_critical(record: dict, sigma_b2: float):
  if theory.not_applicable(record['cell'], record['recurrent_init']):
    return None
  return theory.critical_sigma_w2(record['cell'], sigma_b2, record['sigma_v2'])


def plot(records: list, plots_dir: str) -> list:
  """phase_diagram.png for the first cell, phase_diagram_<cell>.png for any other."""
  from lib.report import decay_plots  # matplotlib: only to draw
  records = list(records)
  paths = []
  for i, cell in enumerate(dict.fromkeys(r['cell'] for r in records)):
    mine = [r for r in records if r['cell'] == cell]
    bs = np.linspace(min(r['sigma_b2'] for r in mine), max(r['sigma_b2'] for r in mine), 101)
    line = [_theory_critical(mine[0], b) for b in bs]
    line = (bs, line) if None not in line else ([], [])
    name = 'phase_diagram.png' if i == 0 else f'phase_diagram_{cell}.png'
    paths += decay_plots.phase_diagram(mine, plots_dir, line, name)
  return paths


def summary(records: list) -> str:
  """Per sigma_b2: the sigma_w2 where the measured rate crosses zero beside the theoretical
  critical sigma_w2 (chi1 = 1, with the input variance sigma_v2 added to sigma_b2)."""
  by_cell = {r['cell']: r for r in records}
  lines = ['Critical sigma_w2 per sigma_b2: measured (rate = 0, interpolated) and theory '
           '(chi1 = 1, sigma_v2 included):',
           f'{"cell":<6} {"sigma_b2":>8} {"measured":>9} {"theory":>9} {"error":>8}']
  for (cell, b), (ws, rates) in _rows(records).items():
    measured = measured_critical(ws, rates)
    predicted = _theory_critical(by_cell[cell], b)
    error = (f'{(measured - predicted) / predicted:+.1%}'
             if measured is not None and predicted is not None else '-')
    lines.append(f'{cell:<6} {b:>8g} '
                 + (f'{measured:>9.3f}' if measured is not None else f'{"-":>9}') + ' '
                 + (f'{predicted:>9.3f}' if predicted is not None else f'{"-":>9}')
                 + f' {error:>8}')
  return '\n'.join(lines)
