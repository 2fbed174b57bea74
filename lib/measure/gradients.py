"""Per-step gradient norms of a recurrent network, measured in the log domain.

Setting: states s_t = f(s_{t-1}, x_t) for t = 0..T-1 from s_{-1} = 0, and a loss at the last step
only, l_b = <r, h(s_{T-1})> per example b, with a fixed readout r ~ N(0, I/N) (so the last-step
gradient has squared norm about 1; for a CNN, r has the shape of the last layer's output). The
backward recursion is

    g_{T-1} = dl/ds_{T-1} = dh/ds^T r,     g_{t-1} = J_t^T g_t,     dl/dx_t = K_t^T g_t,

with J_t = df/ds_{t-1} and K_t = df/dx_t at step t. `log_grad_profile` runs it once, renormalising
g_t to unit norm at every step and carrying ln of the norm it removed, so ln ||g_t||^2 stays
representable where ||g_t||^2 itself would leave the float range (a decay of 0.76 per step
underflows float32 in about 320 steps). `direct_grad_profile` is the textbook computation (one
jax.grad with respect to zero perturbations added to every state) to check it against in float64.
"""

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _sq_norm(tree):
  """Per-example squared norm of a pytree of (B, ...) arrays, summed over leaves: (B,)."""
  leaves = jax.tree.leaves(tree)
  return sum(jnp.sum(jnp.square(leaf).reshape(leaf.shape[0], -1), axis=1) for leaf in leaves)


def _log_batch_mean(log_values):
  """ln mean_b exp(log_values[..., b]), exact for -inf entries: (...)."""
  return jax.nn.logsumexp(log_values, axis=-1) - jnp.log(log_values.shape[-1])


class Profile(NamedTuple):
  """ln of batch means of squared gradient norms; see `log_grad_profile`."""
  log_grad_sq: jax.Array  # (T,): ln mean_b ||dl_b/ds_t||^2, t = 0..T-1
  log_grad_sq_input: Optional[jax.Array]  # (T,): ln mean_b ||dl_b/dx_t||^2, or None
  log_grad_sq_initial: jax.Array  # (): ln mean_b ||dl_b/ds_{-1}||^2 (the initial state / input)
  forward_finite: jax.Array  # (): False if the forward pass overflowed to inf or NaN
  observed: Optional[object] = None  # observe(s_t) stacked over t = 0..T-1, or None


@jax.custom_vjp
def _renormalise(state, log_scale, active):
  """The identity on (state, log_scale); its VJP renormalises the state's cotangent g to unit
  norm per example and adds ln ||g|| to the log scale's cotangent (see `log_grad_profile`). A
  zero or non-finite g, or a step that is not `active` (masked), passes g through as it is."""
  del active
  return state, log_scale


def _renormalise_fwd(state, log_scale, active):
  return (state, log_scale), active


def _renormalise_bwd(active, cotangents):
  g, g_log_scale = cotangents
  log_norm = 0.5 * jnp.log(_sq_norm(g))  # (B,)
  rescale = active & jnp.isfinite(log_norm)
  scale = jnp.where(rescale, jnp.exp(-log_norm), 1.0).astype(g_log_scale.dtype)
  g = jax.tree.map(lambda leaf: leaf * scale.reshape((-1,) + (1,) * (leaf.ndim - 1)), g)
  return g, g_log_scale + jnp.where(rescale, log_norm, 0.0).astype(g_log_scale.dtype), None


_renormalise.defvjp(_renormalise_fwd, _renormalise_bwd)


def log_grad_profile(step, output_fn, carry0, xs, readout, input_grads=True,
                     length=None, observe=None) -> Profile:
  """ln mean_b ||dl_b/ds_t||^2 for t = 0..T-1 (and for the inputs x_t, if `input_grads`).

  step(s_{t-1}, x_t) -> s_t is any recurrence: a Flax cell (`lib.nets.cells.step_of`), or a
  network's layers with x_t the parameters of layer t (then `input_grads=False`: x_t has no batch
  axis; or `input_grads='parameters'`, for a batch of one example: log_grad_sq_input is then a
  pytree like x_t of (T,) arrays, ln ||dl/dx_t[leaf]||^2 per leaf, the gradient of each layer's
  every parameter array). Exactly zero gradients give -inf; a forward pass that overflowed gives
  NaN or inf. observe(s_t) -> pytree, where given, is evaluated on every state of the forward
  pass (not differentiated): Profile.observed stacks them, (T, ...) per leaf.

  How: one reverse-mode pass through the scan, as jax.grad takes it (the forward pass saves what
  each step's VJP needs, nothing is recomputed), with two additions. Each step's state passes
  through `_renormalise`, whose VJP rescales the cotangent to unit norm per example and adds the
  ln of the norm it removed to the cotangent of a per-example log scale carried beside the state
  (its forward pass is the identity, so the loss is unchanged). And zero perturbations eps_t,
  delta_t are added to s_t and to the log scale after step t: their gradients are the cotangent
  g_t in the units of the steps after t, and ln of those units, so ln ||g_t||^2 = 2 delta_t' +
  ln ||eps_t'||^2 stays representable where ||g_t||^2 itself would leave the float range.

  length: run a sequence of that length (a scalar, possibly traced) in this longer program, the
  steps t >= length masked out (the state is kept as it was, and the cotangent passes them
  unchanged); entries t >= length of the profiles are then padding. The steps t < length
  compute exactly what a program of that length computes, so one compiled program serves every
  length up to T (length bucketing).
  """
  num_steps = len(jax.tree.leaves(xs)[0])
  leaf0 = jax.tree.leaves(carry0)[0]
  batch, dtype = leaf0.shape[0], leaf0.dtype
  _check_input_grads(input_grads, batch)
  loss = _renormalised_loss(step, output_fn, readout, num_steps, length, observe)
  eps = jax.tree.map(lambda s: jnp.zeros((num_steps,) + s.shape, s.dtype), carry0)
  delta = jnp.zeros((num_steps, batch), dtype)
  argnums = (0, 1, 2, 3, 4) if input_grads else (0, 1, 2, 3)
  grads, (forward_finite, observed) = jax.grad(loss, argnums, has_aux=True)(
      eps, delta, carry0, jnp.zeros((batch,), dtype), xs)
  g_states, log_units, g_initial, log_unit_initial = grads[:4]
  log_grad_sq, log_grad_sq_input = lax.map(
      functools.partial(_log_sq_of_step, input_grads),
      (log_units, g_states, grads[4] if input_grads else None))
  return Profile(
      log_grad_sq=log_grad_sq,
      log_grad_sq_input=log_grad_sq_input,
      log_grad_sq_initial=_log_batch_mean(
          2.0 * log_unit_initial + jnp.log(_sq_norm(g_initial))),
      forward_finite=forward_finite,
      observed=observed)


def _check_input_grads(input_grads, batch: int):
  """Refuses an `input_grads` that `log_grad_profile` does not know, and 'parameters' for a
  batch of several examples."""
  if input_grads not in (True, False, 'parameters'):
    raise ValueError(f"input_grads must be True, False or 'parameters', got {input_grads!r}")
  if input_grads == 'parameters' and batch != 1:
    raise ValueError(f"input_grads='parameters' needs a batch of one example, got {batch}: a "
                     'parameter shared by several examples would sum cotangents renormalised '
                     'by different units')


def _renormalised_loss(step, output_fn, readout, num_steps: int, length, observe):
  """loss(eps, delta, carry0, log_scale0, xs) -> (sum_b l_b, (forward finite, observed)): the
  scan of `log_grad_profile`, each new state through `_renormalise`, then eps_t added to it and
  delta_t to the log scale; the steps t >= length (where given) masked."""
  def scan_step(carry, step_inputs):
    state, log_scale, finite = carry
    t, x, eps_t, delta_t = step_inputs
    new = step(state, x)
    active = jnp.bool_(True) if length is None else t < length
    if length is not None:
      new = jax.tree.map(lambda n, c: jnp.where(active, n, c), new, state)
    finite = finite & jnp.all(jnp.stack([jnp.all(jnp.isfinite(s)) for s in jax.tree.leaves(new)]))
    seen = None if observe is None else observe(jax.lax.stop_gradient(new))
    new, log_scale = _renormalise(new, log_scale, active)
    return (jax.tree.map(jnp.add, new, eps_t), log_scale + delta_t, finite), seen

  def loss(eps, delta, carry0, log_scale0, xs):
    (last, _, finite), observed = lax.scan(
        scan_step, (carry0, log_scale0, jnp.bool_(True)), (jnp.arange(num_steps), xs, eps, delta))
    return jnp.sum(output_fn(last) * readout), (finite, observed)
  return loss


def _log_sq_of_step(input_grads, step_grads):
  """(ln mean_b ||dl_b/ds_t||^2, the same for x_t) from one step's gradients (log unit, g_t,
  x_t's cotangent). Mapped over the steps (lax.map), not vmapped: the sums then run in the same
  order whatever T is, so a program of a longer bucket gives the very same bits for the steps
  it shares."""
  log_unit, g_state, g_input = step_grads
  log_sq_state = 2.0 * log_unit + jnp.log(_sq_norm(g_state))  # (B,)
  if not input_grads:
    return _log_batch_mean(log_sq_state), None
  # x_t's cotangent is in the units of g_t renormalised at step t
  if input_grads == 'parameters':  # no batch axis; the batch is one example
    return (log_sq_state[0],
            jax.tree.map(lambda leaf: log_sq_state[0] + jnp.log(jnp.sum(jnp.square(leaf))),
                         g_input))
  return (_log_batch_mean(log_sq_state),
          _log_batch_mean(log_sq_state + jnp.log(_sq_norm(g_input))))


def direct_grad_profile(step, output_fn, carry0, xs, readout, input_grads: bool = True):
  """(ln mean_b ||dl_b/ds_t||^2, the same for x_t or None) by plain autodiff, unrenormalised:
  it underflows where the gradient leaves the float range. The cross-check for
  `log_grad_profile` (run it in float64): one jax.grad with respect to zero perturbations added
  to every state."""
  def loss(perturbations, xs):
    def scan_step(carry, step_inputs):
      x, eps = step_inputs
      return jax.tree.map(jnp.add, step(carry, x), eps), None
    last, _ = lax.scan(scan_step, carry0, (xs, perturbations))
    return jnp.sum(output_fn(last) * readout)

  zeros = jax.tree.map(
      lambda s: jnp.zeros((jax.tree.leaves(xs)[0].shape[0],) + s.shape, s.dtype), carry0)
  g_states, g_xs = jax.grad(loss, argnums=(0, 1))(zeros, xs)
  log_states = jnp.log(jnp.mean(jax.vmap(_sq_norm)(g_states), axis=1))  # (T,)
  if not input_grads:
    return log_states, None
  return log_states, jnp.log(jnp.mean(jax.vmap(_sq_norm)(g_xs), axis=1))


def fit_decay_rate(log_grad_sq, k_min: int = 0, k_max: int = -1):
  """Least-squares slope per step of ln ||dl/ds_{T-1-k}||^2 against k, over k_min <= k <= k_max
  (k_max = -1: up to T-1). Returns None when fewer than two finite points are in the window."""
  y = np.asarray(log_grad_sq, dtype=np.float64)[::-1]  # y[k] = ln ||dl/ds_{T-1-k}||^2
  k = np.arange(y.size)
  k_max = y.size - 1 if k_max < 0 else min(k_max, y.size - 1)
  window = (k >= k_min) & (k <= k_max) & np.isfinite(y)
  if window.sum() < 2:
    return None
  return float(np.polyfit(k[window], y[window], 1)[0])


def status_of(log_grad_sq, forward_finite: bool) -> str:
  """'diverged' if the forward pass or the log profile is NaN/inf (overflow), 'vanished' if the
  gradient became exactly zero (-inf in the log domain), else 'ok'."""
  log_grad_sq = np.asarray(log_grad_sq)
  if not forward_finite or np.isnan(log_grad_sq).any() or np.isposinf(log_grad_sq).any():
    return 'diverged'
  if np.isneginf(log_grad_sq).any():
    return 'vanished'
  return 'ok'
