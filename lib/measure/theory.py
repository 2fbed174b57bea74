"""Mean-field theory of signal propagation in random networks, computed (never tabulated).

For weights N(0, sigma_w2 / fan_in), biases N(0, sigma_b2) and an input term of variance sigma_v2
(Schoenholz et al. 2017, "Deep Information Propagation"; Chen, Pennington & Schoenholz 2018,
"Dynamical Isometry and a Mean Field Theory of RNNs"; Xiao et al. 2018 for CNNs):

  q*   the fixed point of  q = sigma_w2 E[phi(sqrt(q) z)^2] + sigma_v2 + sigma_b2,  z ~ N(0, 1)
  chi1 = sigma_w2 E[phi'(sqrt(q*) z)^2]

Backpropagation multiplies E ||dL/dh||^2 by chi1 per step (or layer), so the slope of
ln E ||dL/dh_{T-1-k}||^2 against k is ln chi1 (< 0 ordered: vanishing; > 0 chaotic: exploding),
and xi = -1 / ln chi1 is the depth (or time) scale. The critical line is where chi1 = 1.
Expectations are quadrature for tanh (`_gauss_mean`), closed forms for relu
(E[relu(sqrt(q) z)^2] = q/2, E[relu'^2] = 1/2, so chi1 = sigma_w2 / 2 and q* = c / (1 - sigma_w2/2)).
"""

import functools
import math

import numpy as np
from scipy import optimize

from lib.runtime.errors import UserError

ACTIVATIONS = ('tanh', 'relu')
_PANELS = 80  # composite Gauss-Legendre: panels x points per panel
_PANEL_POINTS = 16


@functools.lru_cache(maxsize=None)
def _unit_panels():
  """Nodes and weights of the composite rule on [-1, 1]."""
  x, w = np.polynomial.legendre.leggauss(_PANEL_POINTS)
  edges = np.linspace(-1.0, 1.0, _PANELS + 1)
  half = 0.5 * (edges[1] - edges[0])
  centres = 0.5 * (edges[1:] + edges[:-1])
  return (centres[:, None] + half * x[None, :]).ravel(), np.tile(half * w, _PANELS)


def _gauss_mean(f, q: float) -> float:
  """E[f(u)], u ~ N(0, q), for f smooth, even and flat beyond |u| = 40 (tanh^2, sech^4).

  Integrated in u, not z, so the resolution follows f's own scale: over |u| <= min(12 sqrt(q), 40)
  (the rest of the mass is below 1e-32, or f is constant there to 1e-34) with 80 panels of
  16-point Gauss-Legendre. Gauss-Hermite in z cannot resolve tanh' once sqrt(q) is large.
  """
  if q == 0.0:
    return float(f(np.zeros(1))[0])
  sigma = math.sqrt(q)
  half_width = min(12.0 * sigma, 40.0)
  x, w = _unit_panels()
  u = half_width * x
  density = np.exp(-0.5 * (u / sigma) ** 2) / (sigma * math.sqrt(2.0 * math.pi))
  inside = float(np.sum(half_width * w * density * f(u)))
  if half_width == 12.0 * sigma:
    return inside
  outside = math.erfc(half_width / (sigma * math.sqrt(2.0)))  # f is its limit f(40) out there
  return inside + outside * float(f(np.array([half_width]))[0])


def _tanh_sq(u):
  return np.tanh(u) ** 2


def _sech_fourth(u):  # tanh'(u)^2
  return 1.0 / np.cosh(u) ** 4


RANDOM_INITS = ('gaussian', 'orthogonal', 'delta_orthogonal')


def not_applicable(activation: str, init: str):
  """Why the theory above does not predict this network's rate, or None where it does.

  It needs a tanh or relu network with random weights of variance sigma_w2 / fan_in. Orthogonal
  (and delta-orthogonal) weights have the same q* and chi1 as gaussian ones (Pennington,
  Schoenholz & Ganguli 2017; Chen et al. 2018; Xiao et al. 2018): they differ in the spread of the
  Jacobian's singular values, not in the mean squared gradient that chi1 predicts, and the tests
  measure both within a few percent of ln chi1. Identity weights are not random: no prediction.
  """
  if activation not in ACTIVATIONS:
    return f'no mean-field theory for {activation} cells'
  if init not in RANDOM_INITS:
    return f'{init} weights are not random: mean-field theory does not apply'
  return None


def _check(activation: str) -> None:
  if activation not in ACTIVATIONS:
    raise UserError(f'no mean-field theory for {activation!r}; it covers: {", ".join(ACTIVATIONS)}')


def _root(f, lo: float, hi: float) -> float:
  """The root of f in [lo, hi] (a sign change), to machine precision (Brent's method)."""
  return optimize.brentq(f, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)


def q_star(activation: str, sigma_w2: float, sigma_b2: float, sigma_v2: float = 0.0) -> float:
  """The stable fixed point of the pre-activation variance map (inf where relu has none)."""
  _check(activation)
  c = sigma_v2 + sigma_b2
  if activation == 'relu':
    return c / (1.0 - sigma_w2 / 2.0) if sigma_w2 < 2.0 else math.inf
  if c == 0.0 and sigma_w2 <= 1.0:
    return 0.0  # E[tanh^2(sqrt(q) z)] < q: zero is the only fixed point
  gap = lambda q: sigma_w2 * _gauss_mean(_tanh_sq, q) + c - q  # > 0 below q*, < 0 above
  return _root(gap, 1e-300 if c == 0.0 else 0.0, sigma_w2 + c + 1.0)


def chi1(activation: str, sigma_w2: float, sigma_b2: float, sigma_v2: float = 0.0) -> float:
  """sigma_w2 E[phi'(sqrt(q*) z)^2]: the factor on E ||dL/dh||^2 per step back."""
  _check(activation)
  if activation == 'relu':
    return sigma_w2 / 2.0
  return sigma_w2 * _gauss_mean(_sech_fourth, q_star(activation, sigma_w2, sigma_b2, sigma_v2))


def decay_rate(activation: str, sigma_w2: float, sigma_b2: float, sigma_v2: float = 0.0) -> float:
  """ln chi1: the predicted slope of ln E ||dL/dh_{T-1-k}||^2 per step k."""
  value = chi1(activation, sigma_w2, sigma_b2, sigma_v2)
  return math.log(value) if value > 0 else -math.inf


def depth_scale(activation: str, sigma_w2: float, sigma_b2: float, sigma_v2: float = 0.0) -> float:
  """xi = -1 / ln chi1: the steps (or layers) over which E ||dL/dh||^2 falls by e in the ordered
  phase (xi > 0); in the chaotic phase xi < 0 and -xi steps multiply it by e; inf at chi1 = 1."""
  rate = decay_rate(activation, sigma_w2, sigma_b2, sigma_v2)
  return math.inf if rate == 0.0 else -1.0 / rate


def critical_sigma_w2(activation: str, sigma_b2: float, sigma_v2: float = 0.0) -> float:
  """The sigma_w2 where chi1 = 1 at this bias (and input) variance: the order-chaos boundary."""
  _check(activation)
  if activation == 'relu':
    return 2.0
  if sigma_b2 + sigma_v2 == 0.0:
    return 1.0  # q* = 0 up to sigma_w2 = 1, where chi1 = sigma_w2 * tanh'(0)^2 reaches 1
  excess = lambda w: 1.0 - chi1(activation, w, sigma_b2, sigma_v2)  # > 0 in the ordered phase
  hi = 2.0
  while excess(hi) > 0:
    hi *= 2.0
  return _root(excess, 1.0, hi)


def w2_depth_exponent(norm: str, skip: bool, mlp: bool, scaled: bool):
  """The exponent p of ||dL/dW2_L||_F ~ L^p for the last block's second MLP matrix at
  initialisation (Xiong et al. 2020, Theorem 1), or None where no theory predicts one.

  Post-LN: O(d sqrt(ln d)) whatever the depth, p = 0: the stream is renormalised after every
  sublayer, so the last LayerNorm's Jacobian does not depend on L. Pre-LN: O(d sqrt(ln d / L)),
  p = -1/2: each block adds O(1) variance to an unnormalised stream, E ||x_L||^2 ~ L d, and the
  final LayerNorm divides the gradient by ||x_L|| / sqrt(d). With residual scale alpha = 1/sqrt(L)
  (our derivation, the same argument): pre-LN's stream stays O(1) but every branch is multiplied
  by alpha, p = -1/2 again; post-LN's also gets the factor alpha, p = -1/2. Without skips, an
  MLP, or a normalisation, the theorem says nothing.
  """
  if not (skip and mlp) or norm not in ('post_ln', 'pre_ln'):
    return None
  return -0.5 if (norm == 'pre_ln' or scaled) else 0.0
