"""A decay sweep's measured profile as the fields of its record: the status, the fitted decay
rate, and the mean-field rate beside it (None where the theory does not apply)."""

from lib.measure import gradients
from lib.measure import theory
from lib.runtime.results import json_floats


def profile_fields(cfg: dict, log_h, log_x, forward_finite: bool, activation: str, init: str,
                   sigma_w2: float, sigma_b2: float, sigma_v2: float) -> dict:
  """The measured and predicted fields of a record: status, rates, profiles. The fit window is
  the config's (fit_k_min, fit_k_max); the rate is fitted only where the status is 'ok'."""
  status = gradients.status_of(log_h, forward_finite)
  rate = (gradients.fit_decay_rate(log_h, cfg['fit_k_min'], cfg['fit_k_max'])
          if status == 'ok' else None)
  predicted = (None if theory.not_applicable(activation, init)
               else theory.decay_rate(activation, sigma_w2, sigma_b2, sigma_v2))
  return {'status': status, 'decay_rate': rate, 'theory_decay_rate': predicted,
          'log_grad_sq': json_floats(log_h), 'log_grad_sq_input': json_floats(log_x)}
