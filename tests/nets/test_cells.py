"""Every parameter comes from the configured initializer, never from Flax's defaults."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.nets import cells
from lib.nets import lru
from lib.runtime.errors import UserError


def _params(name, **kw):
  hidden, width = kw.pop('hidden', 256), kw.pop('width', 64)
  with jax.enable_x64(True):
    cell = cells.make_cell(name, hidden, jnp.float64)
    return cells.init_params(name, cell, jax.random.key(kw.pop('seed', 0)), width, **kw)


def _by_role(params):
  """{'recurrent'|'input'|'bias': [arrays]} by Flax's layer names."""
  roles = {'recurrent': [], 'input': [], 'bias': []}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    layer, kind = path[-2].key, path[-1].key
    role = 'bias' if kind == 'bias' else ('recurrent' if layer.startswith('h') else 'input')
    roles[role].append((layer, np.asarray(leaf)))
  return roles


@pytest.mark.parametrize('name', cells.KERNEL_CELLS)
def test_all_zero_variances_give_all_zero_params(name):
  """Nothing is left to a Flax default: with every variance 0 every parameter is 0."""
  params = _params(name, hidden=8, width=3, sigma_w2=0.0, sigma_v2=0.0, sigma_b2=0.0,
                   recurrent_init='gaussian', gate_bias=0.0)
  assert all(np.all(np.asarray(leaf) == 0) for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize('name', ['tanh', 'lstm'])
def test_gaussian_variances_match_config(name):
  """Sample variances of W, V, b against sigma_w2/N, sigma_v2/D, sigma_b2, each over at least
  4,096 draws (the biases pooled over 16 seeds): a standard error of 2.2% or less (sqrt(2/n))
  against a tolerance of 10%, which a variance off by a factor (a missing 1/N, 1/D or sqrt)
  fails."""
  hidden, width = 256, 64
  biases = []
  for seed in range(16):
    roles = _by_role(_params(name, hidden=hidden, width=width, sigma_w2=2.0, sigma_v2=0.5,
                             sigma_b2=0.3, recurrent_init='gaussian', gate_bias=0.0, seed=seed))
    biases += [b for _, b in roles['bias']]
    if seed:
      continue
    for _, w in roles['recurrent']:
      assert w.shape == (hidden, hidden)
      assert abs(w.mean()) < 0.01 and w.var() == pytest.approx(2.0 / hidden, rel=0.1)
    for _, v in roles['input']:
      assert v.shape == (width, hidden) and v.var() == pytest.approx(0.5 / width, rel=0.1)
  biases = np.concatenate(biases)
  assert biases.size >= 4096 and biases.var() == pytest.approx(0.3, rel=0.1)


@pytest.mark.parametrize('name', cells.KERNEL_CELLS)
def test_orthogonal_and_identity_recurrent_kernels(name):
  for init, expect in [('orthogonal', None), ('identity', np.sqrt(2.5) * np.eye(16))]:
    roles = _by_role(_params(name, hidden=16, width=4, sigma_w2=2.5, sigma_v2=1.0,
                             sigma_b2=0.0, recurrent_init=init))
    for _, w in roles['recurrent']:
      np.testing.assert_allclose(w.T @ w, 2.5 * np.eye(16), atol=1e-10)
      if expect is not None:
        np.testing.assert_array_equal(w, expect)


def test_gate_bias_shifts_only_the_forget_and_update_gates():
  for name, gate in [('lstm', 'hf'), ('gru', 'iz')]:
    roles = _by_role(_params(name, hidden=8, width=3, sigma_w2=1.0, sigma_v2=1.0,
                             sigma_b2=0.0, recurrent_init='gaussian', gate_bias=2.5))
    for layer, b in roles['bias']:
      np.testing.assert_array_equal(b, np.full(8, 2.5 if layer == gate else 0.0))


def test_same_seed_same_draw_scaled_by_sigma_w2():
  """Scales share the draw: W(sigma_w2 = 4) = 2 W(sigma_w2 = 1), so scales compare fairly."""
  kw = dict(hidden=8, width=3, sigma_v2=1.0, sigma_b2=0.1, recurrent_init='gaussian')
  w1 = _params('tanh', sigma_w2=1.0, **kw)['params']['h']['kernel']
  w4 = _params('tanh', sigma_w2=4.0, **kw)['params']['h']['kernel']
  np.testing.assert_allclose(np.asarray(w4), 2 * np.asarray(w1), rtol=1e-12)


def test_a_linear_cell_is_its_ring_init_whatever_the_variances():
  """The lru's parameters are lib/nets/lru.init's on the ring make_cell was given, the same at
  every variance (they have no kernel to scale), and its |lambda| lie on that ring."""
  ring = cells.LinearOptions(r_min=0.5, r_max=0.8, max_phase=1.0)
  cell = cells.make_cell('lru', 64, linear=ring)
  # one program, the variances its arguments (eager, the lru's init compiles op by op for 5 s)
  init = jax.jit(lambda w, v, b: cells.init_params(
      'lru', cell, jax.random.key(3), 5, sigma_w2=w, sigma_v2=v, sigma_b2=b,
      recurrent_init='gaussian'))
  p1, p0 = init(1.0, 1.0, 0.0), init(0.0, 0.5, 2.0)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p0)):
    np.testing.assert_array_equal(a, b)
  p = p1['params']['recurrence']
  modulus = np.abs(np.asarray(lru.lambdas(p)))
  assert 0.5 <= modulus.min() and modulus.max() <= 0.8 and modulus.max() - modulus.min() > 0.2
  assert np.all(np.exp(np.asarray(p['theta_log'])) <= 1.0)
  with pytest.raises(UserError, match=r'^r_max \(1.0\) must be below 1'):
    cells.LinearOptions(r_max=1.0)


def test_unknown_names_are_user_errors():
  with pytest.raises(UserError, match="unknown cell 'rnn'; valid choices: tanh, relu, irnn, lstm, "
                                      "gru, lru, linear"):
    cells.make_cell('rnn', 4)
  with pytest.raises(UserError, match='valid choices: gaussian, orthogonal, identity'):
    _params('tanh', hidden=4, width=2, sigma_w2=1.0, sigma_v2=1.0, sigma_b2=0.0,
            recurrent_init='xavier')


def test_irnn_is_identity_and_zeros_whatever_the_variances():
  """The IRNN is relu's cell; its recurrent kernel is I and its biases 0 (exactly: written, not
  drawn) at any sigma_w2, sigma_b2 and recurrent_init; its input kernel is relu's, by sigma_v2."""
  assert cells.make_cell('irnn', 4).activation_fn is cells.make_cell('relu', 4).activation_fn
  kw = dict(hidden=8, width=3, sigma_w2=2.5, sigma_v2=0.5, sigma_b2=0.3,
            recurrent_init='orthogonal')
  irnn, relu = _params('irnn', **kw)['params'], _params('relu', **kw)['params']
  np.testing.assert_array_equal(irnn['h']['kernel'], np.eye(8))
  np.testing.assert_array_equal(irnn['i']['bias'], np.zeros(8))
  np.testing.assert_array_equal(irnn['i']['kernel'], relu['i']['kernel'])


# irnn is relu's Flax cell and hoisted step with other parameters: it would repeat relu's test
@pytest.mark.parametrize('name', [name for name in cells.CELL_NAMES if name != 'irnn'])
def test_fast_states_are_the_cell(name):
  """`cells.states`, the input projection taken out of the loop (`cells.hoisted`) or, for the
  linear cells, the parallel scan, gives the Flax cell's states and their gradients with
  respect to every parameter and input, in float64 to 1e-12 (a gate out of order, a bias
  dropped or added twice, a conjugated lambda, would be O(1)); both in one program."""
  with jax.enable_x64(True):
    cell = cells.make_cell(name, 6, jnp.float64)
    params = cells.init_params(name, cell, jax.random.key(0), 5, sigma_w2=1.5, sigma_v2=1.0,
                               sigma_b2=0.3, recurrent_init='gaussian', gate_bias=1.0)
    xs = jax.random.normal(jax.random.key(1), (7, 3, 5), jnp.float64)
    carry0 = jax.tree.map(lambda c: c + 0.3, cells.zero_carry(cell, 3, 5))

    def loss(params, xs, hoist):
      if hoist:
        states = cells.states(name, cell, params, carry0, xs, hoist=True)
      else:
        states = cells.forward_states(cells.step_of(cell, params), carry0, xs)
      h = cells.output(name, states)
      return jnp.sum(jnp.sin(h) * jnp.arange(h.size).reshape(h.shape)), states

    both = jax.jit(lambda p, x: [jax.value_and_grad(loss, (0, 1), has_aux=True)(p, x, hoist)
                                 for hoist in (True, False)])
    ((_, hoisted), hoisted_grad), ((_, plain), plain_grad) = both(params, xs)
    for a, b in zip(jax.tree.leaves((hoisted, hoisted_grad)), jax.tree.leaves((plain, plain_grad))):
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_a_cell_without_a_hoisted_form_runs_its_own_step(monkeypatch):
  """A cell missing from `_INPUT_GATES` (one added to CELLS later) gets the identity projection
  and its Flax step: the same states, bit for bit."""
  monkeypatch.delitem(cells._INPUT_GATES, 'gru')  # pylint: disable=protected-access
  cell = cells.make_cell('gru', 4)
  params = cells.init_params('gru', cell, jax.random.key(0), 3, sigma_w2=1.0, sigma_v2=1.0,
                             sigma_b2=0.0, recurrent_init='gaussian')
  xs = jax.random.normal(jax.random.key(1), (5, 2, 3))
  carry0 = cells.zero_carry(cell, 2, 3)
  project, step = cells.hoisted('gru', cell, params)
  np.testing.assert_array_equal(cells.forward_states(step, carry0, project(xs)),
                                cells.forward_states(cells.step_of(cell, params), carry0, xs))
