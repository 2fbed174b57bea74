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
  return float(_gauss_means(f, [q])[0])


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


# ---------------------------------------------------------------------------------------------
# The GRU (Flax's GRUCell, lib/nets/cells), drawn as in the main job: every recurrent kernel
# N(0, sigma_w2 / N), input kernels N(0, sigma_v2 / D) on inputs N(0, I_D), biases N(0, sigma_b2)
# and gate_bias on the update gate. Per unit, with h of variance q:
#   a_z ~ N(gate_bias, s2), a_r ~ N(0, s2), s2 = sigma_w2 q + sigma_v2 + sigma_b2
#   a_n = v + r u, v ~ N(0, sigma_v2 + sigma_b2), u = W_n h + b_hn ~ N(0, sigma_w2 q + sigma_b2)
#   z = sigmoid(a_z), r = sigmoid(a_r), n = tanh(a_n), h' = (1 - z) n + z h.
# The step's Jacobian is diag(z) + diag(b) W_n + diag(c) W_z + diag(b') W_r with
# b = (1 - z) tanh'(a_n) r > 0, c = (h - n) sigmoid'(a_z), b' = (1 - z) tanh'(a_n) u sigmoid'(a_r):
# c and b' have mean zero, b does not.
# ---------------------------------------------------------------------------------------------

_GATE_NODES = 96  # Gauss-Hermite nodes for the sigmoid gates (smooth on the scale of 1)


@functools.lru_cache(maxsize=None)
def _hermite():
  """Nodes and weights of E[f(x)], x ~ N(0, 1) (probabilists' Gauss-Hermite)."""
  x, w = np.polynomial.hermite_e.hermegauss(_GATE_NODES)
  return x, w / math.sqrt(2.0 * math.pi)


def _sigmoid(a):
  return 0.5 * (1.0 + np.tanh(0.5 * a))


def _gauss_means(f, qs) -> np.ndarray:
  """E[f(u)], u ~ N(0, q), for each q >= 0 of `qs` at once, by `_gauss_mean`'s rule (f(0) at
  q = 0): the one implementation of it."""
  qs = np.asarray(qs, np.float64)
  if np.any(qs == 0.0):
    out = np.full(qs.shape, float(f(np.zeros(1))[0]))
    positive = qs > 0.0
    if positive.any():
      out[positive] = _gauss_means(f, qs[positive])
    return out
  sigma = np.sqrt(qs)[:, None]
  half_width = np.minimum(12.0 * sigma, 40.0)
  x, w = _unit_panels()
  u = half_width * x[None, :]
  density = np.exp(-0.5 * (u / sigma) ** 2) / (sigma * math.sqrt(2.0 * math.pi))
  inside = np.sum(half_width * w[None, :] * density * f(u), axis=1)
  tail = np.array([math.erfc(h / (s * math.sqrt(2.0))) for h, s in zip(half_width[:, 0],
                                                                           sigma[:, 0])])
  return inside + np.where(half_width[:, 0] < 12.0 * sigma[:, 0], tail, 0.0) * f(
      half_width[:, 0])


def _gru_moments(q: float, sigma_w2: float, sigma_b2: float, sigma_v2: float,
                 gate_bias: float) -> dict:
  """The expectations the GRU's maps need, at a state variance q (see the comment above)."""
  x, w = _hermite()
  s2 = sigma_w2 * q + sigma_v2 + sigma_b2
  z = _sigmoid(gate_bias + math.sqrt(s2) * x)
  a_r = math.sqrt(s2) * x
  r = _sigmoid(a_r)
  dr = r * (1.0 - r)
  sv, su = sigma_v2 + sigma_b2, sigma_w2 * q + sigma_b2
  var_n = sv + r ** 2 * su  # a_n given r
  tanh_sq = _gauss_means(lambda a: np.tanh(a) ** 2, var_n)
  sech_sq = _gauss_means(lambda a: 1.0 / np.cosh(a) ** 2, var_n)
  sech_4 = _gauss_means(lambda a: 1.0 / np.cosh(a) ** 4, var_n)
  a2_sech_4 = _gauss_means(lambda a: a ** 2 / np.cosh(a) ** 4, var_n)
  # E[u^2 tanh'(a_n)^2 | r]: u given a_n has mean (r su / var_n) a_n, variance su - r^2 su^2 / var_n
  # (var_n = 0 only where sv = su = 0: then u = 0)
  safe = np.where(var_n > 0.0, var_n, 1.0)
  u2_sech_4 = np.where(var_n > 0.0, (su - r ** 2 * su ** 2 / safe) * sech_4
                       + (r * su / safe) ** 2 * a2_sech_4, 0.0)
  mean = lambda values: float(np.sum(w * values))
  return {
      'z': mean(z), 'z2': mean(z ** 2), 'one_minus_z2': mean((1.0 - z) ** 2),
      'z_one_minus_z': mean(z * (1.0 - z)), 'dz2': mean((z * (1.0 - z)) ** 2),
      'n2': mean(tanh_sq), 'r_dn': mean(r * sech_sq), 'r2_dn2': mean(r ** 2 * sech_4),
      'u2_dn2_dr2': mean(dr ** 2 * u2_sech_4),
  }


def _gru_q_map(q, sigma_w2, sigma_b2, sigma_v2, gate_bias) -> float:
  """E h'^2 from E h^2 = q: E[(1-z)^2] E[n^2] + E[z^2] q (z, n and h independent, n odd)."""
  m = _gru_moments(q, sigma_w2, sigma_b2, sigma_v2, gate_bias)
  return m['one_minus_z2'] * m['n2'] + m['z2'] * q


@functools.lru_cache(maxsize=None)
def gru_q_star(sigma_w2: float, sigma_b2: float, sigma_v2: float, gate_bias: float) -> float:
  """The GRU's fixed point q = E[(1-z)^2] E[n^2] / (1 - E[z^2]) of the state variance (the
  map is below 1 at q = 1, as n^2 < 1; 0 where no input or bias drives it and 0 is stable)."""
  gap = lambda q: _gru_q_map(q, sigma_w2, sigma_b2, sigma_v2, gate_bias) - q
  if gap(1e-12) <= 0.0:
    return 0.0
  return _root(gap, 1e-12, 1.0)


def gru_chi_untied(sigma_w2: float, sigma_b2: float, sigma_v2: float, gate_bias: float) -> float:
  """The factor on E ||g||^2 per step back with the recurrent weights redrawn at every step
  (Gilboa et al. 2019's assumption): E[z^2] + sigma_w2 (E[sigmoid'(a_z)^2] (q + E[n^2])
  + E[(1-z)^2] E[tanh'(a_n)^2 (r^2 + u^2 sigmoid'(a_r)^2)]) at the fixed point q."""
  q = gru_q_star(sigma_w2, sigma_b2, sigma_v2, gate_bias)
  m = _gru_moments(q, sigma_w2, sigma_b2, sigma_v2, gate_bias)
  return m['z2'] + sigma_w2 * (m['dz2'] * (q + m['n2'])
                               + m['one_minus_z2'] * (m['r2_dn2'] + m['u2_dn2_dr2']))


@functools.lru_cache(maxsize=None)
def gru_transfer(sigma_w2: float, sigma_b2: float, sigma_v2: float, gate_bias: float) -> dict:
  """The weights of the tied GRU's transfer operator on d (the uses of W_n not yet matched
  between two backward paths): stay at 0 (chi_untied), stay at d != 0, move d -> d +- 1 away
  from 0 or between nonzero d, and move into 0; and continuum_rate, 2 ln(E[z] + sigma_w E[b]),
  the log of the top of the operator's continuous spectrum: the profile's slope far back unless
  the defect at d = 0 binds a state above it (measured at gate bias 0 and sigma_w2 = 16: slope
  0.439 against 0.153), which the profile then follows instead."""
  q = gru_q_star(sigma_w2, sigma_b2, sigma_v2, gate_bias)
  m = _gru_moments(q, sigma_w2, sigma_b2, sigma_v2, gate_bias)
  mean_b = (1.0 - m['z']) * m['r_dn']  # E[b], z independent of r and n
  sigma_w = math.sqrt(sigma_w2)
  return {'stay_zero': gru_chi_untied(sigma_w2, sigma_b2, sigma_v2, gate_bias),
          'stay': m['z'] ** 2 + sigma_w2 * mean_b ** 2,
          'move': sigma_w * m['z'] * mean_b,
          'into_zero': sigma_w * m['z_one_minus_z'] * m['r_dn'],
          'continuum_rate': 2.0 * math.log(m['z'] + sigma_w * mean_b)}


def gru_log_grad_sq(num_steps: int, sigma_w2: float, sigma_b2: float, sigma_v2: float,
                    gate_bias: float) -> np.ndarray:
  """ln (E ||g_k||^2 / ||g_0||^2) = ln (T^k)_00, k = 0..num_steps-1, for the tied GRU: the
  transfer operator (`gru_transfer`) applied k times to d = 0, renormalised at every step so
  that no rate underflows (the log of each step's norm is summed)."""
  return _gru_log_grad_sq(num_steps, sigma_w2, sigma_b2, sigma_v2, gate_bias).copy()


@functools.lru_cache(maxsize=None)
def _gru_log_grad_sq(num_steps, sigma_w2, sigma_b2, sigma_v2, gate_bias):
  t = gru_transfer(sigma_w2, sigma_b2, sigma_v2, gate_bias)
  size = num_steps // 2 + 2  # d = -size..size: a path k steps long returns from |d| <= k / 2
  v = np.zeros(2 * size + 1)
  v[size] = 1.0
  stay = np.full(v.size, t['stay'])
  stay[size] = t['stay_zero']
  out, log_scale = np.empty(num_steps), 0.0
  for k in range(num_steps):
    out[k] = math.log(v[size]) + log_scale
    new = stay * v
    new[1:] += t['move'] * v[:-1]  # d -> d + 1
    new[:-1] += t['move'] * v[1:]  # d -> d - 1
    new[size] += (t['into_zero'] - t['move']) * (v[size - 1] + v[size + 1])
    norm = float(np.max(new))
    v, log_scale = new / norm, log_scale + math.log(norm)
  return out


def gru_not_applicable(init: str, sigma_b2: float):
  """Why the tied GRU theory does not predict this network's rate, or None where it does: it is
  derived for random recurrent kernels (gaussian; orthogonal ones measure the same,
  docs/experiments/gradient_decay.md), and for biases that are the same in every unit
  (sigma_b2 = 0): a bias drawn per unit stays with the unit at every step, so a unit whose
  update gate is biased nearer 1 carries the gradient farther, which a per-step average does
  not see."""
  if init not in ('gaussian', 'orthogonal'):
    return f'{init} weights are not random: the GRU theory does not apply'
  if sigma_b2 > 0:
    return 'sigma_b2 > 0: biases drawn per unit persist over time; the GRU theory needs 0'
  return None


def tanh_lyapunov_spectrum(fractions, sigma_w2: float, sigma_b2: float, sigma_v2: float = 0.0,
                           init: str = 'gaussian') -> np.ndarray:
  """lambda(t), the Lyapunov exponent at the fraction t = i / N of the spectrum (0 < t < 1) of a
  wide tanh RNN at its fixed point q*, by free probability: the step's Jacobian is D W, D =
  diag(tanh'(a)), a ~ N(0, q*), so S_{J^T J}(w) = S_{D^2}(w) S_{W^T W}(w) and
  lambda(t) = -1/2 ln S_{J^T J}(-t). S_{W^T W}(w) is 1 / (sigma_w2 (1 + w)) for gaussian
  kernels (Marchenko-Pastur), 1 / sigma_w2 for orthogonal ones. With psi(z) = E[x z / (1 - x z)],
  x = tanh'(a)^2, and z(t) < 0 the root of psi(z) = -t, S_{D^2}(-t) = (1 - t) z(t) / -t, so
  lambda(t) = 1/2 ln(sigma_w2 t / -z(t)) (gaussian), the same minus 1/2 ln(1 - t)
  (orthogonal). At t -> 0 both are 1/2 ln chi1 (the top exponent: half the gradient's rate);
  they fall to -inf at t -> 1 (Engelken, Wolf & Abbott 2020; Pennington et al. 2017)."""
  if init not in ('gaussian', 'orthogonal'):
    raise UserError(f'no free-probability spectrum for {init!r} kernels; it covers: gaussian, '
                    'orthogonal')
  q = q_star('tanh', sigma_w2, sigma_b2, sigma_v2)
  out = []
  for t in np.atleast_1d(np.asarray(fractions, np.float64)):
    if not 0.0 < t < 1.0:
      raise ValueError(f'fraction {t} is not in (0, 1)')
    psi = lambda log_minus_z: _gauss_mean(
        lambda a: -math.exp(log_minus_z) / np.cosh(a) ** 4
        / (1.0 + math.exp(log_minus_z) / np.cosh(a) ** 4), q) + t
    log_minus_z = _root(psi, -60.0, 200.0)  # psi runs from 0 (z -> 0) down to -1 (z -> -inf)
    out.append(0.5 * (math.log(sigma_w2 * t) - log_minus_z)
               - (0.5 * math.log(1.0 - t) if init == 'orthogonal' else 0.0))
  return np.asarray(out)


@functools.lru_cache(maxsize=None)  # once per scale and depth, not per seed
def jacobian_sv_moments(activation: str, init: str, sigma_w2: float, sigma_b2: float,
                        depth: int, input_variance: float = 1.0):
  """(ln E[s^2], Var[s^2] / E[s^2]^2) over the squared singular values s^2 of the input-output
  Jacobian of a deep network of `depth` layers, by free probability (Pennington, Schoenholz &
  Ganguli 2017). Layer l's Jacobian is D_l W_l with D_l = diag(phi'(a_l)); the S-transforms of
  free factors multiply, so the first two moments of J J^T follow layer by layer:
    E[s^2] = prod_l sigma_w2 mu1_l,   Var / E^2 = sum_l (mu2_l / mu1_l^2 - 1 - s1),
  mu_k = E[phi'(a_l)^(2k)], s1 = -1 for gaussian kernels (Marchenko-Pastur) and 0 for orthogonal
  ones. At chi1 = 1 the first is 1 and the second L mu2 / mu1^2 (gaussian), L (mu2 / mu1^2 - 1)
  (orthogonal). Each layer's a_l ~ N(0, q_l) with q_1 = sigma_w2 input_variance + sigma_b2 and
  q_{l+1} = sigma_w2 E[phi(a_l)^2] + sigma_b2: the transient from the input is kept, not only
  the fixed point."""
  _check(activation)
  s1 = -1.0 if init == 'gaussian' else 0.0
  q = sigma_w2 * input_variance + sigma_b2
  log_mean, norm_var = 0.0, 0.0
  for _ in range(depth):
    if activation == 'relu':
      mu1 = mu2 = 0.5
      next_q = sigma_w2 * q / 2.0 + sigma_b2
    else:
      mu1 = _gauss_mean(_sech_fourth, q)
      mu2 = _gauss_mean(lambda u: 1.0 / np.cosh(u) ** 8, q)
      next_q = sigma_w2 * _gauss_mean(_tanh_sq, q) + sigma_b2
    log_mean += math.log(sigma_w2 * mu1)
    norm_var += mu2 / mu1 ** 2 - 1.0 - s1
    q = next_q
  return log_mean, norm_var
