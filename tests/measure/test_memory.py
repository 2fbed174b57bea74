"""The curse of memory's closed forms (lib/measure/memory) against float64 Monte Carlo, their
white-noise special cases, and bad input."""

import math

import jax
import pytest

from lib.measure import memory
from lib.runtime.errors import UserError


def test_closed_forms_against_monte_carlo():
  """E[h^2] and E[(dh/dparameter)^2] of every parametrisation at lambda 0.5 and 0.9, rho 0, 0.9
  and 1, against 8,000 float64 chains run 250 steps (past the transients: 250 x 0.9^250 =
  9e-10) each, within 3 standard errors."""
  steps = 250
  assert steps >= memory.steps_to_stationary(0.9, 0.9)
  for i, parametrisation in enumerate(memory.PARAMETRISATIONS):
    for lam in (0.5, 0.9):
      for rho in (0.0, 0.9, 1.0):
        expected = memory.theory(lam, rho, parametrisation)
        measured = memory.monte_carlo(lam, rho, parametrisation, 8_000,
                                      jax.random.key(100 * i + 10 * int(lam * 10) + int(rho * 10)),
                                      num_steps=steps)
        for quantity in memory.QUANTITIES:
          mean, stderr = measured[quantity]
          assert abs(mean - expected[quantity]) < 3 * stderr, (parametrisation, lam, rho,
                                                               quantity, mean, expected)


def test_white_noise_special_cases():
  """rho = 0: the normalized state has unit variance at every lambda; the exp parametrisation's
  derivative moment is lambda^2 ln^2 lambda / (1 - lambda^2)^2, tending to 1/4, while the plain
  one is (1 + lambda^2) / (1 - lambda^2)^3; rho = 1: the normalized E[h^2] = (1 + lambda) /
  (1 - lambda)."""
  for lam in (0.1, 0.5, 0.99, 0.9999):
    assert memory.theory(lam, 0.0, 'normalized')['h_sq'] == pytest.approx(1.0, rel=1e-12)
    assert memory.theory(lam, 0.0, 'exp')['grad_sq'] == pytest.approx(
        lam**2 * math.log(lam) ** 2 / (1 - lam**2) ** 2, rel=1e-9)
    assert memory.theory(lam, 0.0, 'plain')['grad_sq'] == pytest.approx(
        (1 + lam**2) / (1 - lam**2) ** 3, rel=1e-12)
    assert memory.theory(lam, 1.0, 'normalized')['h_sq'] == pytest.approx(
        (1 + lam) / (1 - lam), rel=1e-9)
  assert memory.theory(1 - 1e-6, 0.0, 'exp')['grad_sq'] == pytest.approx(0.25, rel=1e-5)


@pytest.mark.parametrize('args, message', [
    ((1.0, 0.0, 'plain'), r'lambda \(1.0\) must be in \(0, 1\)'),
    ((0.5, 1.5, 'plain'), r'rho \(1.5\) must be in \[0, 1\]'),
    ((0.5, 0.5, 'tanh'), "unknown parametrisation 'tanh'; valid choices: plain, normalized, exp"),
])
def test_bad_input_is_a_user_error(args, message):
  with pytest.raises(UserError, match=message):
    memory.theory(*args)
