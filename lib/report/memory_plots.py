"""Figures of the curse-of-memory experiment (lib/experiments/curse_of_memory), from records
alone: the moments against memory (Zucchet & Orvieto's Figure 1) and the teacher-student losses
against the teacher's memory (their Figure 3)."""

import os

import numpy as np

from lib.report import plotting
from lib.report import tables
from lib.report.plotting import plt  # pyplot on the headless backend that plotting chose

_QUANTITY_LABEL = {'h_sq': r'E[$h^2$]', 'grad_sq': r'E[$(\partial h/\partial \theta)^2$]'}
_PARAMETRISATION_LABEL = {
    'plain': r'plain: $\theta = \lambda$',
    'normalized': r'normalized: $\sqrt{1-\lambda^2}\,h$, $\theta = \lambda$',
    'exp': r'normalized, $\lambda = e^{-e^{\nu}}$, $\theta = \nu$'}


def curse_of_memory(records: list, plots_dir: str) -> list:
  """curse_of_memory.png (the moments) and teacher_student.png (final losses), whichever parts
  the records hold; their paths."""
  records = list(records)
  os.makedirs(plots_dir, exist_ok=True)
  paths = []
  moments = [r for r in records if r['part'] == 'moments']
  if moments:
    paths.append(_moments(moments, plots_dir))
  students = [r for r in records if r['part'] == 'teacher_student']
  if students:
    paths.append(_teacher_student(students, plots_dir))
  return paths


def _moments(records: list, plots_dir: str) -> str:
  quantities = [q for q in _QUANTITY_LABEL if any(r['quantity'] == q for r in records)]
  params = list(dict.fromkeys(r['parametrisation'] for r in records))
  rhos = sorted({r['rho'] for r in records})
  cmap = plt.get_cmap('viridis')
  color = {rho: cmap(0.9 * i / max(1, len(rhos) - 1)) for i, rho in enumerate(rhos)}
  fig, axes = plt.subplots(len(quantities), len(params), squeeze=False, sharex=True,
                           figsize=(4.2 * len(params), 3.3 * len(quantities)),
                           layout='constrained')
  fig.suptitle('The curse of memory: stationary moments against memory 1/(1 - lambda) '
               '(dashed: closed form; dots: float64 Monte Carlo, +-2 standard errors)')
  for i, q in enumerate(quantities):
    for j, p in enumerate(params):
      ax = axes[i, j]
      for rho in rhos:
        rows = sorted((r for r in records if (r['quantity'], r['parametrisation'], r['rho'])
                       == (q, p, rho)), key=lambda r: r['lambda'])
        if not rows:
          continue
        memory = np.array([1 / (1 - r['lambda']) for r in rows])
        ax.plot(memory, [r['theory'] for r in rows], '--', color=color[rho], lw=1)
        ok = [r for r in rows if r['status'] == 'ok']
        ax.errorbar([1 / (1 - r['lambda']) for r in ok], [r['measured'] for r in ok],
                    yerr=[2 * r['stderr'] for r in ok], fmt='o', ms=3.5, capsize=2,
                    color=color[rho], label=rf'$\rho$={rho:g}')
      ax.set_xscale('log')
      ax.set_yscale('log')
      if i == 0:
        ax.set_title(_PARAMETRISATION_LABEL[p], fontsize=9)
      if j == 0:
        ax.set_ylabel(_QUANTITY_LABEL[q])
      if i == len(quantities) - 1:
        ax.set_xlabel(r'1 / (1 - $\lambda$)')
  axes[0, 0].legend(fontsize=7)
  return plotting.save(fig, os.path.join(plots_dir, 'curse_of_memory.png'))


def _teacher_student(records: list, plots_dir: str) -> str:
  fig, ax = plt.subplots(figsize=(6.2, 4.2), layout='constrained')
  for i, (model, rows) in enumerate(tables.best_learning_rate(records).items()):
    nus = [nu for nu, _, _ in rows]
    losses = [[r['test_relative_loss'] for r in seeds if r['status'] == 'ok']
              for _, _, seeds in rows]
    means = [np.mean(v) if v else np.nan for v in losses]
    ax.plot(nus, means, marker='o', color=f'C{i}', label=f'{model} (best learning rate)')
    for nu, v in zip(nus, losses):
      ax.plot([nu] * len(v), v, '.', color=f'C{i}', alpha=0.4, ms=4)
    failed = [nu for nu, _, seeds in rows if any(r['status'] != 'ok' for r in seeds)]
    if failed:
      ax.plot(failed, [ax.get_ylim()[1]] * len(failed), 'x', color=f'C{i}', clip_on=False)
  ax.set_yscale('log')
  ax.set_xlabel(r"teacher memory $\nu_0$ (its eigenvalues' moduli $\geq \nu_0$)")
  ax.axhline(1.0, color='k', lw=0.6, linestyle=':')
  ax.text(nus[0], 1.0, ' predicting 0', va='bottom', fontsize=7, color='0.3')
  ax.set_ylabel('final test MSE / mean square of the target')
  ax.set_title('Linear teacher-student (T = %d): a line per student, dots are seeds'
               % records[0]['seq_len'])
  ax.legend(fontsize=8)
  return plotting.save(fig, os.path.join(plots_dir, 'teacher_student.png'))
