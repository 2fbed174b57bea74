"""Recurrent cells: Flax linen cells for apply, parameters drawn by explicit rules from one draw.

A cell maps (carry s_{t-1}, input x_t) -> carry s_t. The carry is the whole recurrent state: h for
`tanh`, `relu`, `irnn` and `gru`, the pair (c, h) for `lstm`, (Re h, Im h, y) for the `lru` and
(h, y) for the `linear` recurrence (lib/nets/lru: their output y_t reads x_t, so it rides in the
carry). The cell's output is `output(name, carry)`.

Parameters never come from Flax's default initializers (an orthogonal recurrent kernel); the Flax
module gives only the structure of its parameters, and `init_params` fills each one by its role
(Flax names input-side Dense layers 'i*' and hidden-side ones 'h*'):
  recurrent kernel W (N x N), every gate:  gaussian    W_ij ~ N(0, sigma_w2 / N)
                                           orthogonal  sqrt(sigma_w2) * Q, Q orthogonal
                                           identity    sqrt(sigma_w2) * I  (IRNN, Le et al. 2015)
  input kernel V (D x N), every gate:      V_ij ~ N(0, sigma_v2 / D)
  bias, every bias vector:                 b_i ~ N(0, sigma_b2), plus `gate_bias` on the LSTM
                                           forget gate and the GRU update gate
All standard normals come from one jax.random.normal call, so that a compiled program holds one
random-number generator, not one per parameter (each costs a fraction of a second to compile).

`CellInit` holds these five settings. The IRNN (`irnn`; Le, Jaitly & Hinton 2015) is the ReLU
cell with an identity recurrent kernel and zero biases, whatever sigma_w2, sigma_b2 and
recurrent_init say; its input kernel is drawn by sigma_v2. (`relu` is the ReLU cell drawn as
above.)

The linear recurrences (`lru`, `linear`: LINEAR_CELLS) have no recurrent kernel to scale: their
parameters are lib/nets/lru's ring init, set by r_min, r_max and max_phase (`LinearOptions`),
and the variances above do not apply to them. `states` runs any cell over a sequence, these two
by lru.scan: the parallel one (lax.associative_scan, exact for a linear recurrence: O(log T)
depth, for an accelerator's many lanes) where `parallel_scan`, else the sequential one (faster on
a CPU's few cores: bench/run.py's scan figures).
"""

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from lib.nets import lru
from lib.runtime import devices
from lib.runtime.errors import UserError

RECURRENT_INITS = ('gaussian', 'orthogonal', 'identity')
LINEAR_CELLS = lru.LINEAR_CELLS


@dataclasses.dataclass(frozen=True)
class CellInit:
  """How `init_params` draws a cell's parameters (module docstring)."""
  sigma_w2: float = 1.0  # the recurrent kernel's variance, times N
  sigma_v2: float = 1.0  # the input kernel's, times D
  sigma_b2: float = 0.0  # the biases'
  recurrent_init: str = 'gaussian'  # RECURRENT_INITS
  gate_bias: float = 0.0  # added to the LSTM's forget and the GRU's update gate bias


@dataclasses.dataclass(frozen=True)
class LinearOptions:
  """The linear cells' options: the ring of their |lambda| (lib/nets/lru.ring; Orvieto et al.'s
  long-range init), and which scan runs them over a sequence (`states`). Checked when made
  (lib/nets/lru.check_ring: one line naming the bad value)."""
  r_min: float = 0.9
  r_max: float = 0.999
  max_phase: float = 2 * math.pi
  parallel_scan: bool = True

  def __post_init__(self):
    lru.check_ring(self.r_min, self.r_max, self.max_phase)


def _linear(kind: str):
  return lambda n, dtype, linear: lru.LinearRecurrentCell(
      kind, n, r_min=linear.r_min, r_max=linear.r_max, max_phase=linear.max_phase,
      parallel_scan=linear.parallel_scan, param_dtype=dtype)


def _simple(activation):
  return lambda n, dtype, _: nn.SimpleCell(n, activation_fn=activation, dtype=dtype,
                                           param_dtype=dtype)

# name -> ((width, dtype, LinearOptions) -> Flax cell, carry -> output, the Dense layer whose bias
# `gate_bias` shifts)
CELLS = {
    'tanh': (_simple(jnp.tanh), lambda carry: carry, None),
    'relu': (_simple(nn.relu), lambda carry: carry, None),
    'irnn': (_simple(nn.relu), lambda carry: carry, None),  # relu's, drawn as the IRNN
    'lstm': (lambda n, dtype, _: nn.LSTMCell(n, dtype=dtype, param_dtype=dtype),
             lambda carry: carry[1], 'hf'),
    'gru': (lambda n, dtype, _: nn.GRUCell(n, dtype=dtype, param_dtype=dtype),
            lambda carry: carry, 'iz'),
    'lru': (_linear('lru'), lambda carry: carry[-1], None),
    'linear': (_linear('linear'), lambda carry: carry[-1], None),
}
CELL_NAMES = tuple(CELLS)
# The cells whose every parameter is drawn by the variances (not irnn's identity and zeros, nor
# the linear cells' ring).
KERNEL_CELLS = tuple(name for name in CELL_NAMES if name not in LINEAR_CELLS + ('irnn',))


def check_cell_name(name: str) -> None:
  if name not in CELLS:
    raise UserError(f'unknown cell {name!r}; valid choices: {", ".join(CELL_NAMES)}')


def check_recurrent_init(name: str) -> None:
  if name not in RECURRENT_INITS:
    raise UserError(
        f'unknown recurrent_init {name!r}; valid choices: {", ".join(RECURRENT_INITS)}')


def make_cell(name: str, hidden_size: int, dtype: Any = jnp.float32,
              linear: LinearOptions | None = None) -> nn.RNNCellBase:
  """The Flax cell `name` (apply it with parameters from `init_params`); `linear` (default
  LinearOptions()) sets a linear cell's init and scan, and is ignored by the others."""
  check_cell_name(name)
  return CELLS[name][0](hidden_size, dtype, linear or LinearOptions())


def output(name: str, carry):
  """The cell's output h from its carry."""
  return CELLS[name][1](carry)


def step_of(cell: nn.RNNCellBase, params):
  """The recurrence s_t = f(s_{t-1}, x_t) of a Flax cell with fixed parameters."""
  return lambda carry, x: cell.apply(params, carry, x)[0]


def forward_states(step, carry0, xs):
  """States s_0..s_{T-1} of s_t = step(s_{t-1}, x_t), stacked on a leading axis."""
  def scan_step(carry, x):
    new = step(carry, x)
    return new, new
  _, states = lax.scan(scan_step, carry0, xs)
  return states


def states(name: str, cell: nn.RNNCellBase, params, carry0, xs, hoist: bool = True):
  """States s_0..s_{T-1} (stacked on a leading axis) of cell `name` over xs (T, B, D) from
  carry0: what `forward_states(step_of(cell, params), carry0, xs)` computes, to float rounding,
  a faster way: a linear cell by lib/nets/lru's scan (the parallel one where the cell's
  parallel_scan); with `hoist`, another cell with its input projection out of the loop
  (`hoisted`)."""
  if name in LINEAR_CELLS:
    p = params['params']['recurrence']
    h0 = carry0[0] + 1j * carry0[1] if name == 'lru' else carry0[0]
    ys, hs = lru.apply(p, xs, h0, parallel=cell.parallel_scan)
    return (hs.real, hs.imag, ys) if name == 'lru' else (hs, ys)
  if not hoist:
    return forward_states(step_of(cell, params), carry0, xs)
  project, step = hoisted(name, cell, params)
  return forward_states(step, carry0, project(xs))


def feedback_state(name: str, carry):
  """The part of a cell's carry that its next step reads: all of it, but a linear cell's output
  y (its step computes y_t from h_t and x_t, never from y_{t-1})."""
  return carry[:-1] if name in LINEAR_CELLS else carry


def with_feedback(name: str, state):
  """A carry from `feedback_state`'s part, a linear cell's y filled with zeros (never read)."""
  return (*state, jnp.zeros_like(state[0])) if name in LINEAR_CELLS else state


def feedback_size(name: str, hidden_size: int) -> int:
  """The numbers in one example's `feedback_state`: N, 2N for the LSTM's (c, h) and the LRU's
  (Re h, Im h)."""
  carry = jax.eval_shape(lambda: zero_carry(make_cell(name, hidden_size), 1, 1))
  return sum(leaf.size for leaf in jax.tree.leaves(feedback_state(name, carry)))


def zero_carry(cell: nn.RNNCellBase, batch_size: int, input_size: int):
  """The all-zeros initial carry s_{-1} for a batch."""
  return cell.initialize_carry(jax.random.key(0), (batch_size, input_size))


def standard_normals(key, shapes, dtype) -> list:
  """Arrays of i.i.d. N(0, 1) of the given shapes, from one jax.random.normal call."""
  sizes = [math.prod(shape) for shape in shapes]
  flat = jax.random.normal(key, (sum(sizes),), dtype)
  out, start = [], 0
  for shape, size in zip(shapes, sizes):
    out.append(flat[start:start + size].reshape(shape))
    start += size
  return out


def _orthogonal(z):
  """An orthogonal matrix from a square standard normal draw (QR with the sign of diag R fixed,
  which makes it Haar-distributed)."""
  q, r = devices.one_at_a_time(jnp.linalg.qr)(z)  # never batched: see lib/runtime/devices
  return q * jnp.sign(jnp.diagonal(r))[None, :]


def _recurrent(init: str, z, sigma_w2):
  n = z.shape[0]
  if init == 'gaussian':
    return jnp.sqrt(sigma_w2 / n) * z
  if init == 'orthogonal':
    return jnp.sqrt(sigma_w2) * _orthogonal(z)
  return jnp.sqrt(sigma_w2) * jnp.eye(n, dtype=z.dtype)


def init_params(name: str, cell: nn.RNNCellBase, key, input_size: int, *, sigma_w2, sigma_v2,
                sigma_b2, recurrent_init: str, gate_bias=0.0):
  """Parameters of `cell` by the rules in the module docstring; the variances may be traced.
  A linear cell's are its own ring init (lib/nets/lru.init), whatever the variances; the IRNN's
  recurrent kernel and biases are the identity and zeros, whatever sigma_w2, sigma_b2 and
  recurrent_init."""
  check_cell_name(name)
  check_recurrent_init(recurrent_init)
  if name == 'irnn':
    recurrent_init, sigma_w2, sigma_b2 = 'identity', 1.0, 0.0
  carry = zero_carry(cell, 1, input_size)
  if name in LINEAR_CELLS:
    return cell.init(key, carry, jnp.zeros((1, input_size), cell.param_dtype))
  shapes = jax.eval_shape(cell.init, jax.random.key(0), carry, jnp.zeros((1, input_size)))
  paths, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  draws = standard_normals(key, [leaf.shape for _, leaf in paths], cell.param_dtype)
  leaves = []
  for (path, leaf), z in zip(paths, draws):
    layer, kind = path[-2].key, path[-1].key  # e.g. ('hf', 'bias')
    if kind == 'bias':
      value = jnp.sqrt(sigma_b2) * z
      if layer == CELLS[name][2]:
        value = value + gate_bias
    elif layer.startswith('h'):
      value = _recurrent(recurrent_init, z, sigma_w2)
    else:
      value = jnp.sqrt(sigma_v2 / leaf.shape[0]) * z
    leaves.append(value.astype(leaf.dtype))
  return jax.tree_util.tree_unflatten(treedef, leaves)


# The input-side Dense layers of each cell, in the order their outputs are concatenated.
_INPUT_GATES = {'tanh': ('',), 'relu': ('',), 'irnn': ('',), 'lstm': ('i', 'f', 'g', 'o'),
                'gru': ('r', 'z', 'n')}


def hoisted(name: str, cell: nn.RNNCellBase, params):
  """(project, step): the cell's recurrence with its input-side matmuls taken out of the loop.

  project(xs (T, B, D)) -> us (T, B, G N), every step's input projection in one matmul (G the
  cell's gates); step(s_{t-1}, u_t) -> s_t the rest of the cell. Scanning step over project(xs)
  computes what scanning `step_of(cell, params)` over xs does, in the same order of operations
  per gate (the Flax cells' dense_i(x) + dense_h(h)), so to float rounding; one (T B, D) x
  (D, G N) matmul in place of T small ones, and its weight gradient likewise. A cell without a
  hoisted form here (one added to CELLS later) gets (identity, step_of(cell, params)): correct,
  only not hoisted.
  """
  check_cell_name(name)
  if name not in _INPUT_GATES:
    return (lambda xs: xs), step_of(cell, params)
  p = params['params']
  gates = _INPUT_GATES[name]
  cat = lambda side, kind: jnp.concatenate([p[side + g][kind] for g in gates], axis=-1)
  w_i, w_h = cat('i', 'kernel'), cat('h', 'kernel')
  if len(gates) == 1:  # a SimpleCell: tanh, relu, irnn
    b_i = p['i']['bias']
    return (lambda xs: xs @ w_i + b_i,
            lambda h, u: cell.activation_fn(u + h @ w_h))
  if name == 'lstm':
    b_h = cat('h', 'bias')

    def lstm_step(carry, u):
      c, h = carry
      i, f, g, o = jnp.split(u + (h @ w_h + b_h), 4, axis=-1)
      new_c = cell.gate_fn(f) * c + cell.gate_fn(i) * cell.activation_fn(g)
      return new_c, cell.gate_fn(o) * cell.activation_fn(new_c)
    return (lambda xs: xs @ w_i), lstm_step
  b_i, b_hn = cat('i', 'bias'), p['hn']['bias']

  def gru_step(h, u):
    u_r, u_z, u_n = jnp.split(u, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(h @ w_h, 3, axis=-1)
    r, z = cell.gate_fn(u_r + h_r), cell.gate_fn(u_z + h_z)
    n = cell.activation_fn(u_n + r * (h_n + b_hn))
    return (1.0 - z) * n + z * h
  return (lambda xs: xs @ w_i + b_i), gru_step
