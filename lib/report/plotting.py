"""What the figures of every experiment share: a headless matplotlib, atomic PNG writes, and how
a record that is not 'ok' is drawn.

Records whose status is not 'ok' have no usable value; they are drawn as markers at the edge of
the axes ('diverged' at the top, 'vanished' at the bottom) so that they are seen, not hidden.
"""

import io
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402

from lib.runtime.results import write_atomic  # noqa: E402

_EDGE = {'diverged': (0.96, 'x', 'tab:red'), 'vanished': (0.04, 'v', 'tab:gray')}


def save(fig, path: str) -> str:
  """Writes `fig` to `path` as a PNG, atomically (a reader never sees half a file); closes it."""
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=110)
  plt.close(fig)
  write_atomic(path, buf.getvalue())
  return path


def save_each(plots_dir: str, figures: dict, *args) -> list:
  """Draws each figure of `figures` ({file name: draw(*args) -> figure}, in order) and writes it
  to plots_dir before the next is drawn (one figure open at a time); their paths."""
  return [save(draw(*args), os.path.join(plots_dir, name)) for name, draw in figures.items()]


def mean_ok(rows: list, field: str):
  """Mean over the 'ok' records of a field (a number or an equal-length list), or None."""
  values = [r[field] for r in rows if r['status'] == 'ok']
  if not values:
    return None
  return np.mean(np.asarray(values, dtype=np.float64), axis=0)


def log_mean_exp_ok(rows: list, field: str):
  """ln of the mean over the 'ok' records of exp(field) (a log-domain profile): the estimate of
  ln E[...] over the records' draws, where mean_ok gives E[ln ...]; or None."""
  values = [r[field] for r in rows if r['status'] == 'ok']
  if not values:
    return None
  values = np.asarray(values, dtype=np.float64)
  top = np.max(values, axis=0)
  return top + np.log(np.mean(np.exp(values - top), axis=0))


def mark_edges(ax, x, rows, used: set):
  """A marker at the top ('diverged') or bottom ('vanished') edge at x for each such status among
  `rows`, labelled once per axes (`used`: the statuses already in the legend)."""
  for status, (y, marker, color) in _EDGE.items():
    if any(r['status'] == status for r in rows):
      ax.plot([x], [y], marker=marker, color=color, linestyle='none',
              transform=ax.get_xaxis_transform(), clip_on=False,
              label=None if status in used else status)
      used.add(status)


def panels(names: list, title: str, sharey: bool = True):
  """A row of subplots (sharing y unless told not to), one per name: (figure, {name: axes})."""
  fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False,
                           sharey=sharey, layout='constrained')
  fig.suptitle(title)
  return fig, dict(zip(names, axes[0]))
