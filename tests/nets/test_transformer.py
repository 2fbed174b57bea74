"""Transformer blocks through depth (lib/nets/transformer) and their per-layer measurement
(lib/experiments/transformer_depth): against a one-block forward and backward pass worked by hand
in numpy, against jax.grad taken layer by layer, and against the two closed cases of rank
collapse (uniform attention: rank one in one layer; zero branches: nothing changes)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.experiments import transformer_depth as td
from lib.nets import transformer
from lib.runtime.errors import UserError



@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def config(**overrides) -> dict:
  cfg = {'width': 8, 'num_heads': 2, 'seq_len': 5, 'causal': False, 'activation': 'relu',
         'init': 'gaussian', 'sigma_w2': 1.0, 'inputs': 'gaussian', 'dtype': 'float64'}
  return {**cfg, **overrides}


def draw(cfg: dict, variant, depth: int, seed: int):
  """(module, params, X_0, R) of td.draw's shapes, drawn in numpy from `seed`: kernels
  N(0, sigma_w2 / fan_in), LayerNorm scale 1 and offset 0, tokens N(0, 1), R N(0, 1 / (T d)).
  What these tests check is the measurement of the network they are given; td.draw's own
  program (its init vmapped over the blocks) compiles for seconds in each, and is checked by
  test_xavier_and_gaussian_kernels_have_their_variances."""
  params, x, readout = jax.eval_shape(lambda: td.draw(cfg, variant, depth, seed)[1:])
  rng = np.random.default_rng(seed)

  def leaf(path, shape):
    kind = path[-1].key
    if kind == 'kernel':
      return rng.standard_normal(shape.shape) * np.sqrt(cfg['sigma_w2'] / shape.shape[-2])
    return np.ones(shape.shape) if kind == 'scale' else np.zeros(shape.shape)
  params = jax.tree_util.tree_map_with_path(leaf, params)
  readout = rng.standard_normal(readout.shape) / np.sqrt(np.prod(readout.shape))
  return td.network(cfg, variant), params, rng.standard_normal(x.shape), readout


# ---- by hand, in numpy ---------------------------------------------------------------------

def _ln(x):
  """LayerNorm over features (unit scale, zero offset): (y, its VJP)."""
  mu = x.mean(-1, keepdims=True)
  inv = 1.0 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + transformer.LN_EPSILON)
  xhat = (x - mu) * inv
  # d xhat_j / d x_i = inv (delta_ij - 1/d - xhat_i xhat_j / d)
  vjp = lambda g: inv * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
  return xhat, vjp


def _attention(x, p, heads):
  """softmax(Q K^T / sqrt(d/H)) V per head, then W_O: (out, VJP -> (dx, {name: dW}))."""
  t, d = x.shape
  c = d // heads
  q, k, v = x @ p['query'], x @ p['key'], x @ p['value']
  a, o = [], np.zeros((t, d))
  for h in range(heads):
    cols = slice(h * c, (h + 1) * c)
    s = q[:, cols] @ k[:, cols].T / np.sqrt(c)
    e = np.exp(s - s.max(1, keepdims=True))
    a.append(e / e.sum(1, keepdims=True))
    o[:, cols] = a[h] @ v[:, cols]

  def vjp(g):
    grads = {'out': o.T @ g}
    go = g @ p['out'].T
    gq, gk, gv = np.zeros((t, d)), np.zeros((t, d)), np.zeros((t, d))
    for h in range(heads):
      cols = slice(h * c, (h + 1) * c)
      ga = go[:, cols] @ v[:, cols].T
      gv[:, cols] = a[h].T @ go[:, cols]
      gs = a[h] * (ga - (ga * a[h]).sum(1, keepdims=True))  # the softmax's VJP, row by row
      gq[:, cols] = gs @ k[:, cols] / np.sqrt(c)
      gk[:, cols] = gs.T @ q[:, cols] / np.sqrt(c)
    grads.update(query=x.T @ gq, key=x.T @ gk, value=x.T @ gv)
    return gq @ p['query'].T + gk @ p['key'].T + gv @ p['value'].T, grads
  return o @ p['out'], vjp


def _mlp(x, p):
  h = x @ p['mlp_in']
  r = np.maximum(h, 0.0)

  def vjp(g):
    gh = (g @ p['mlp_out'].T) * (h > 0)
    return gh @ p['mlp_in'].T, {'mlp_out': r.T @ g, 'mlp_in': x.T @ gh}
  return r @ p['mlp_out'], vjp


def hand_block(norm, x, p, readout, heads, alpha):
  """One block and the network's output, loss <R, Y>, back by hand: (dL/dX_0, dL/dX_1, dW)."""
  grads = {}
  if norm == 'pre_ln':
    z1, ln1 = _ln(x)
    f1, attn = _attention(z1, p, heads)
    y1 = x + alpha * f1
    z2, ln2 = _ln(y1)
    f2, mlp = _mlp(z2, p)
    y = y1 + alpha * f2
    _, final = _ln(y)
    g_y = final(readout)
    g_z2, grads_mlp = mlp(alpha * g_y)
    g_y1 = g_y + ln2(g_z2)
    g_z1, grads_attn = attn(alpha * g_y1)
    g_x = g_y1 + ln1(g_z1)
  else:  # post_ln
    f1, attn = _attention(x, p, heads)
    y1, ln1 = _ln(x + alpha * f1)
    f2, mlp = _mlp(y1, p)
    _, ln2 = _ln(y1 + alpha * f2)
    g_y = readout
    g_s2 = ln2(g_y)
    g_f2, grads_mlp = mlp(alpha * g_s2)
    g_y1 = g_s2 + g_f2
    g_s1 = ln1(g_y1)
    g_f1, grads_attn = attn(alpha * g_s1)
    g_x = g_s1 + g_f1
  grads.update(grads_mlp)
  grads.update(grads_attn)
  return g_x, g_y, grads


def _numpy_params(params, layer=0):
  return {name: np.asarray(leaf['kernel'][layer]) for name, leaf in params.items()
          if 'kernel' in leaf}


@pytest.mark.parametrize('name', ['pre_ln', 'post_ln+alpha=0.7'])
def test_one_block_against_layer_norm_and_attention_gradients_worked_by_hand(name):
  variant = transformer.parse_variant(name)
  cfg = config()
  module, params, x, readout = draw(cfg, variant, 1, 3)

  @jax.jit  # one program: eager, each small float64 op would compile on its own
  def measured(params, x, readout):
    loss = lambda p, x: jnp.sum(readout * transformer.apply(module, variant, p, x, 1))
    return (td.profiles(module, variant, params, x, readout),
            jax.grad(loss, argnums=(0, 1))(params, x))

  (out, finite), (g_params, g_input) = measured(params, x, readout)
  g_x, g_y, grads = hand_block(variant.norm, np.asarray(x[0]), _numpy_params(params),
                               np.asarray(readout[0]), cfg['num_heads'], variant.alpha(1))
  sq = lambda a: np.log(np.sum(a ** 2))
  assert bool(finite)
  np.testing.assert_allclose(out['log_grad_sq'], [sq(g_x), sq(g_y)], rtol=0, atol=1e-10)
  np.testing.assert_allclose(out['log_weight_grad_sq'], [sq(grads['mlp_out'])], rtol=0,
                             atol=1e-10)
  np.testing.assert_allclose(out['log_qk_grad_sq'],
                             [np.log(np.sum(grads['query'] ** 2) + np.sum(grads['key'] ** 2))],
                             rtol=0, atol=1e-10)
  # and the network itself: jax.grad of <R, apply(...)> equals the hand-worked gradients
  np.testing.assert_allclose(g_input[0], g_x, rtol=1e-9, atol=1e-12)
  for leaf in ('query', 'key', 'value', 'out', 'mlp_in', 'mlp_out'):
    np.testing.assert_allclose(g_params[leaf]['kernel'][0], grads[leaf], rtol=1e-9, atol=1e-12)


def _numpy_token_stats(x):
  """The rank residuals and the mean cosine computed another way: numpy's matrix norms."""
  x = np.asarray(x, np.float64)
  r = x - x.mean(0)
  l1_linf = lambda m: np.sqrt(np.linalg.norm(m, 1) * np.linalg.norm(m, np.inf))
  unit = x / np.linalg.norm(x, axis=1, keepdims=True)
  pairs = [unit[i] @ unit[j] for i in range(len(x)) for j in range(len(x)) if i != j]
  return (np.linalg.norm(r) / np.linalg.norm(x), l1_linf(r) / l1_linf(x), np.mean(pairs))


@pytest.mark.parametrize('name,causal', [('post_ln', False), ('pre_ln+scaled', True),
                                         ('none+noskip', False)])
def test_per_layer_profile_against_jax_grad_layer_by_layer(name, causal):
  """Every quantity of a 5-block network against plain float64 autodiff, one jax.grad of the
  network with zero perturbations added after every block: ln ||dL/dX_l||^2 from the gradients
  of the input and of the perturbations, the weights' gradients from those of the stacked
  parameters; the token measures from the forward states (numpy norms)."""
  variant = transformer.parse_variant(name)
  depth = 5
  module, params, x, readout = draw(config(causal=causal), variant, depth, 1)

  @jax.jit  # one program: eager, each small float64 op would compile on its own
  def measured(params, x, readout):
    step = transformer.step(module, variant.alpha(depth))

    def loss(params, x, zeros):
      def block(h, layer):
        h = step(h, layer[0]) + layer[1]
        return h, h
      last, states = jax.lax.scan(block, x, (params, zeros))
      return jnp.sum(readout * transformer.output(variant, x.dtype)(last)), states
    grads, states = jax.grad(loss, (0, 1, 2), has_aux=True)(params, x,
                                                             jnp.zeros((depth,) + x.shape))
    return td.profiles(module, variant, params, x, readout), grads, states

  (out, finite), (g_params, g_input, g_states), states = measured(params, x, readout)
  assert bool(finite)
  np.testing.assert_allclose(out['log_grad_sq'],
                             np.log(np.sum(np.concatenate([g_input[None], g_states]) ** 2,
                                           (1, 2, 3))), rtol=0, atol=1e-9)
  per_layer = lambda leaf: np.log(np.sum(np.asarray(g_params[leaf]['kernel']) ** 2, (1, 2)))
  np.testing.assert_allclose(out['log_weight_grad_sq'], per_layer('mlp_out'), rtol=0, atol=1e-9)
  # once the tokens have collapsed to rounding (residual 1e-16), the query/key gradient of the
  # blocks after is rounding too (e^-90 at blocks 4 and 5 of none+noskip): compared where it is not
  live = np.asarray(out['rank_residual'])[:-1] > 1e-6
  assert live[:3].all()
  np.testing.assert_allclose(np.asarray(out['log_qk_grad_sq'])[live],
                             np.logaddexp(per_layer('query'), per_layer('key'))[live], rtol=0,
                             atol=1e-9)
  expected = np.asarray([_numpy_token_stats(h[0]) for h in np.concatenate([x[None], states])])
  for i, field in enumerate(td.STATS):
    np.testing.assert_allclose(out[field], expected[:, i], rtol=1e-10, atol=1e-13)


def test_uniform_attention_collapses_the_tokens_to_rank_one_in_exactly_one_layer():
  """Pure attention with zero query and key kernels: every attention weight is exactly 1/T, so
  every token of X_1 is the mean value token: the residual goes from about 1 to rounding (1e-16)
  in one layer and stays; the query/key gradients are exactly zero (a softmax of constant
  logits has zero derivative along every direction the kernels can move it)."""
  variant = transformer.parse_variant('none+noskip+nomlp')
  module, params, x, readout = draw(config(seq_len=7), variant, 4, 5)
  module_causal = td.network(config(seq_len=7, causal=True), variant)
  params = {**params, 'query': {'kernel': np.zeros_like(params['query']['kernel'])},
            'key': {'kernel': np.zeros_like(params['key']['kernel'])}}
  # one program for both networks (eager, each small float64 op would compile on its own)
  out, out_causal = jax.jit(lambda *a: [td.profiles(m, variant, *a)[0]
                                        for m in (module, module_causal)])(params, x, readout)
  rank = np.asarray(out['rank_residual'])
  assert rank[0] > 0.5
  assert np.all(rank[1:] < 1e-14), rank
  assert np.all(np.asarray(out['rank_residual_l1_linf'])[1:] < 1e-14)
  np.testing.assert_allclose(out['token_cosine'][1:], 1.0, rtol=0, atol=1e-14)
  assert np.all(np.isneginf(np.asarray(out['log_qk_grad_sq'])))
  assert td.rank_collapse_layer(list(rank), 1e-3) == 1
  # causal, the same network keeps its first token apart: no collapse
  assert np.all(np.asarray(out_causal['rank_residual'])[1:] > 1e-3)


@pytest.mark.parametrize('name', ['pre_ln', 'none+alpha=3'])
def test_skips_with_zero_branches_keep_every_token_measure_and_gradient_constant(name):
  """W_O = W2 = 0: every branch is f = 0, so X_l = X_0 for every l: the rank residual and the
  cosine stay what they were at the input, and the gradient reaches X_0 unchanged. (`none` alone
  runs the code of none+alpha=3, its residual scale another number.)"""
  variant = transformer.parse_variant(name)
  module, params, x, readout = draw(config(), variant, 6, 2)
  for leaf in ('out', 'mlp_out'):
    params = {**params, leaf: {'kernel': np.zeros_like(params[leaf]['kernel'])}}
  # one program: eager, each small float64 op would compile on its own
  out = jax.jit(lambda *a: td.profiles(module, variant, *a)[0])(params, x, readout)
  for field in td.STATS:
    np.testing.assert_allclose(out[field], np.full(7, out[field][0]), rtol=1e-13, atol=0)
  if variant.norm == 'none':
    np.testing.assert_allclose(out['log_grad_sq'], np.full(7, out['log_grad_sq'][-1]),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize('name,message', [
    ('pre_lm', "unknown transformer variant 'pre_lm' (norm 'pre_lm')"),
    ('pre_ln+noskp', "modifier 'noskp' unknown or repeated"),
    ('pre_ln+noskip+noskip', "modifier 'noskip' unknown or repeated"),
    ('pre_ln+scaled+alpha=2', "modifier 'alpha=2' unknown or repeated"),
    ('post_ln+alpha=-1', "'alpha=-1' needs a positive number"),
    ('post_ln+alpha=x', "'alpha=x' needs a positive number"),
])
def test_bad_variants_are_one_line_errors(name, message):
  with pytest.raises(UserError) as e:
    transformer.parse_variant(name)
  assert message in str(e.value) and '\n' not in str(e.value)


def test_variant_names_parse_to_their_architectures():
  assert transformer.parse_variant('none+noskip+nomlp')[1:] == ('none', False, False, 1.0)
  scaled = transformer.parse_variant('post_ln+scaled')
  assert scaled.residual_scale == transformer.SCALED and scaled.alpha(16) == 0.25
  assert transformer.parse_variant('pre_ln+alpha=0.5').alpha(100) == 0.5


def test_xavier_and_gaussian_kernels_have_their_variances():
  """Each kernel's sample variance (one block of d = 128: 16,384 entries or more) within 4
  standard errors of sigma_w2 / fan_in (gaussian) or 2 sigma_w2 / (fan_in + fan_out) (xavier),
  which tells them apart on the MLP's kernels (fan_out = 4 fan_in: a factor 2.5). One block: the
  init vmapped over 8 compiles in twice the time, and the blocks' draws are alike."""
  for init in transformer.INITS:
    cfg = config(width=128, num_heads=4, init=init, sigma_w2=2.0)
    # jitted: the init eager in float64 compiles op by op
    params = jax.jit(lambda: td.draw(cfg, transformer.parse_variant('pre_ln'), 1, 0)[1])()
    for name in ('query', 'out', 'mlp_in', 'mlp_out'):
      kernel = np.asarray(params[name]['kernel'])
      fan_in, fan_out = kernel.shape[1:]
      expected = 2.0 / fan_in if init == 'gaussian' else 4.0 / (fan_in + fan_out)
      assert abs(kernel.var() / expected - 1) < 4 * np.sqrt(2.0 / kernel.size), (init, name)
