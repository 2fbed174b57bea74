"""The PyTorch side of bench/run.py: what a researcher would write in PyTorch eager, for ratios.

  python bench/torch_side.py   # check_profiles, then a one-point timing and a short CNN timing

Nothing here is tuned: each function is the straightforward eager code a PyTorch user writes for
the question, so that a ratio against it says what our JAX programs save that user. float32
throughout; torch keeps its default number of threads (`torch_info` reports it).

gradient_profiles(cell, weights, xs, readout): ln mean_b ||dl_b/ds_t||^2, t = 0..T-1, of one
  network and input batch, the quantity `lib.measure.gradients.log_grad_profile` measures: a
  hand-written cell (torch matmuls) run step by step in a Python loop, `retain_grad()` on every
  state, the loss l = sum_b <r, h_{T-1}>, one `backward()`, then the squared norms of the retained
  `.grad`s. Unlike ours it is not renormalised: where the gradient leaves the float32 range it
  reads -inf (or inf), as a plain backward pass does. It computes no input gradients dl/dx_t (ours
  does). The state s_t is the cell's whole carry, as in lib/nets/cells: h for tanh, (c, h) for
  LSTM, and ||dl/ds_t||^2 = ||dl/dc_t||^2 + ||dl/dh_t||^2 with c_t and h_t independent
  coordinates of the state. So the c_t that the next step reads is its own autograd node (a clone
  of the c_t that h_t = o_t tanh(c_t) was computed from): its .grad is dl/dc_t with h_t held, as
  in our per-step VJPs. A retain_grad on the c_t that h_t reads would add the path through h_t
  (the total derivative), and the profile would differ from ours (by 0.2 nats at T = 20, hidden
  16); so would torch.nn.LSTMCell's returned c on CPU (measured), which is why the cell is written
  out.
check_profiles(): that profile equals ours (`lib.experiments.gradient_decay.measure_point`, the very
  same draws) for tanh and LSTM at T = 20, hidden 16, batch 4, input 3, to rtol 1e-4.
sweep_seconds(grid): wall seconds of a whole gradient-decay grid point by point, one backward
  per point, the weights and inputs converted to tensors beforehand (not timed); `draw_point`
  prepares a point with our sweep's draws.
cnn_images_per_second(x, y, steps): training images per second of the MNIST-1D ConvNet of
  lib/nets/models (three Conv1d of kernel 5, 3, 3, stride 2, padding 1, 25 channels, relu, then a
  Linear readout; LeCun-normal kernels and zero biases as ours) with Adam on random minibatches
  (a fresh permutation per epoch, as ours), timed after a warm-up; its parameter count is
  checked equal to our model's. It flattens (channels, positions) where Flax flattens
  (positions, channels): a fixed permutation of the readout's inputs, the same model.

Mapping Flax parameters to torch: a Flax Dense computes x @ kernel + bias with kernel (in, out),
so the kernels are used as they are with torch.matmul (nn.Linear would want kernel.T). The Flax
SimpleCell has its bias on the input layer 'i' and none on 'h'; the Flax LSTMCell has input
kernels 'ii', 'if', 'ig', 'io' without bias and hidden kernels 'hi', 'hf', 'hg', 'ho' with one,
gates in the order (i, f, g, o), the same order as torch.nn.LSTM; the four gates' kernels are
concatenated in that order into one (in, 4N) matmul.
"""

import functools
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CELLS = ('tanh', 'lstm')
LSTM_GATES = ('i', 'f', 'g', 'o')  # Flax LSTMCell's gate order (and torch.nn.LSTM's)


def torch_info() -> dict:
  return {'torch_version': torch.__version__, 'torch_threads': torch.get_num_threads()}


# ---- gradient profiles of a recurrent cell ------------------------------------------------------


def _tensor(a) -> torch.Tensor:
  return torch.from_numpy(np.array(a, np.float32))  # a writable float32 copy


def torch_weights(cell: str, weights) -> dict:
  """float32 tensors {'w_x' (D, gN), 'w_h' (N, gN), 'b' (gN,)} from a cell's Flax params (numpy
  arrays, with or without the top-level 'params'), g = 1 for tanh, 4 for LSTM (gates i, f, g, o)."""
  p = weights.get('params', weights)
  if cell == 'tanh':
    return {'w_x': _tensor(p['i']['kernel']), 'w_h': _tensor(p['h']['kernel']),
            'b': _tensor(p['i']['bias'])}
  if cell == 'lstm':
    cat = lambda side, kind: np.concatenate([p[side + g][kind] for g in LSTM_GATES], axis=-1)
    return {'w_x': _tensor(cat('i', 'kernel')), 'w_h': _tensor(cat('h', 'kernel')),
            'b': _tensor(cat('h', 'bias'))}
  raise ValueError(f'unknown cell {cell!r}; valid choices: {", ".join(CELLS)}')


def _tanh_step(w, state, x):
  (h,) = state
  return (torch.tanh(x @ w['w_x'] + w['b'] + h @ w['w_h']),)


def _lstm_step(w, state, x):
  c, h = state
  i, f, g, o = (x @ w['w_x'] + h @ w['w_h'] + w['b']).chunk(4, dim=-1)
  c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
  h = torch.sigmoid(o) * torch.tanh(c)
  return c.clone(), h  # the carried c_t, its own node: see the module docstring


STEPS = {'tanh': (_tanh_step, 1), 'lstm': (_lstm_step, 2)}  # step, tensors in the state


def _profile(cell: str, w: dict, xs: torch.Tensor, readout: torch.Tensor) -> torch.Tensor:
  """ln mean_b ||dl_b/ds_t||^2 (T,) from tensors: the eager loop, one backward."""
  step, parts = STEPS[cell]
  # s_{-1} = 0 requires grad (the weights and inputs do not): autograd then records the states
  state = tuple(xs.new_zeros(xs.shape[1], w['w_h'].shape[0], requires_grad=True)
                for _ in range(parts))
  states = []
  for x in xs:
    state = step(w, state, x)
    for s in state:
      s.retain_grad()
    states.append(state)
  (state[-1] @ readout).sum().backward()  # h_{T-1} is the state's last tensor
  sq = torch.stack([sum((s.grad.square().sum(-1) if s.grad is not None  # c_{T-1}: unused
                         else torch.zeros_like(s[:, 0])) for s in st) for st in states])
  return sq.mean(-1).log()  # (T, B) -> (T,)


def _tensors(cell: str, weights, xs, readout) -> tuple:
  if cell not in STEPS:
    raise ValueError(f'unknown cell {cell!r}; valid choices: {", ".join(CELLS)}')
  return (torch_weights(cell, weights), torch.from_numpy(np.array(xs, np.float32)),
          torch.from_numpy(np.array(readout, np.float32)))


def gradient_profiles(cell: str, weights, xs, readout) -> np.ndarray:
  """ln mean_b ||dl_b/ds_t||^2, t = 0..T-1 (float32, (T,)) of `cell` with Flax params `weights`
  (numpy), inputs xs (T, B, D) and readout r (N,), l_b = <r, h_{T-1}>: see the module docstring."""
  return _profile(cell, *_tensors(cell, weights, xs, readout)).numpy()


@functools.lru_cache(maxsize=None)
@functools.lru_cache(maxsize=None)
def _drawer(cell: str, seq_len: int, hidden: int, width: int, batch: int, sigma_v2: float,
            recurrent_init: str, gate_bias: float):
  """jit of (sigma_w2, sigma_b2, seed) -> (params, xs, readout): measure_point's draws, line for
  line (one compile per (cell, seq_len), like the sweep's)."""
  import jax  # pylint: disable=g-import-not-at-top  (our side: only to draw the same points)
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from lib.nets import cells  # pylint: disable=g-import-not-at-top

  @jax.jit
  def draw(sigma_w2, sigma_b2, seed):
    key = jax.random.key(seed)
    k_params, k_inputs = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    params = cells.init_params(
        cell, cells.make_cell(cell, hidden, jnp.float32), k_params, width, sigma_w2=sigma_w2,
        sigma_v2=sigma_v2, sigma_b2=sigma_b2, recurrent_init=recurrent_init,
        gate_bias=gate_bias)
    readout, xs = cells.standard_normals(k_inputs, [(hidden,), (seq_len, batch, width)],
                                         jnp.float32)
    return params, xs, readout / np.sqrt(hidden)
  return draw


def draw_point(cell: str, seq_len: int, cfg: dict, sigma_w2: float, sigma_b2: float,
               seed: int) -> tuple:
  """(cell, seq_len, weights, xs, readout) as numpy: the network and inputs that
  `lib.experiments.gradient_decay.measure_point` draws for this point (cfg: the sweep's config;
  float32)."""
  import jax  # pylint: disable=g-import-not-at-top
  draw = _drawer(cell, seq_len, cfg['hidden_size'], cfg['input_size'], cfg['batch_size'],
                 float(cfg['sigma_v2']), cfg['recurrent_init'], float(cfg['gate_bias']))
  params, xs, readout = jax.tree.map(np.asarray, draw(np.float32(sigma_w2),
                                                      np.float32(sigma_b2), np.int32(seed)))
  return cell, seq_len, params, xs, readout


def check_profiles(seq_len: int = 20, hidden: int = 16, batch: int = 4, width: int = 3,
                   scales=(1.0, 4.0), seeds=(0, 1), rtol: float = 1e-4,
                   atol: float = 1e-6) -> dict:
  """Asserts gradient_profiles equals our log_grad_profile (through measure_point, the same draws)
  for tanh and LSTM, to rtol (atol in nats, for ln values near 0); returns
  {(cell, sigma_w2, seed): (max |difference|, max relative difference)}."""
  import jax  # pylint: disable=g-import-not-at-top
  from lib.experiments import gradient_decay  # pylint: disable=g-import-not-at-top

  cfg = {'dtype': 'float32', 'batch_size': batch, 'hidden_size': hidden, 'input_size': width,
         'sigma_v2': 0.1, 'recurrent_init': 'gaussian', 'gate_bias': 2.0}
  worst = {}
  for cell in CELLS:
    ours = jax.jit(functools.partial(gradient_decay.measure_point, cell, seq_len, cfg))
    for sigma_w2 in scales:
      for seed in seeds:
        expected = np.asarray(ours(np.float32(sigma_w2), np.float32(0.0), np.int32(seed),
                                   np.int32(seq_len))[0])
        _, _, weights, xs, readout = draw_point(cell, seq_len, cfg, sigma_w2, 0.0, seed)
        got = gradient_profiles(cell, weights, xs, readout)
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol,
                                   err_msg=f'{cell} sigma_w2={sigma_w2} seed={seed}')
        diff = np.abs(got - expected)
        worst[cell, sigma_w2, seed] = (float(diff.max()), float(np.max(diff / np.abs(expected))))
  return worst


def sweep_seconds(grid) -> tuple:
  """(wall seconds, [profile (T,) per point]) of a grid of (cell, T, weights, xs, readout) points
  (e.g. from `draw_point`), point by point in eager torch; tensors are made before the clock."""
  points = [(cell, *_tensors(cell, weights, xs[:seq_len], readout))
            for cell, seq_len, weights, xs, readout in grid]
  start = time.perf_counter()
  profiles = [_profile(*point).numpy() for point in points]
  return time.perf_counter() - start, profiles


# ---- the MNIST-1D CNN ---------------------------------------------------------------------------


def _lecun_normal_(weight: torch.Tensor, fan_in: int) -> None:
  """Flax's lecun_normal: a normal of variance 1 / fan_in truncated at two standard deviations
  (its scale corrected for the truncation, as jax.nn.initializers.variance_scaling does)."""
  std = math.sqrt(1.0 / fan_in) / .87962566103423978
  nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class ConvNet(nn.Module):
  """lib.nets.models.ConvNet on (B, C, L) signals: three Conv1d (kernel 5, 3, 3; stride 2;
  padding 1) with relu, then a Linear readout of the flattened (channels, positions) features."""

  def __init__(self, length: int, in_channels: int = 1, channels: int = 25,
               num_outputs: int = 10):
    super().__init__()
    self.convs = nn.ModuleList()
    for kernel in (5, 3, 3):
      self.convs.append(nn.Conv1d(in_channels, channels, kernel, stride=2, padding=1))
      in_channels, length = channels, (length + 2 - kernel) // 2 + 1
    self.readout = nn.Linear(channels * length, num_outputs)
    for layer in (*self.convs, self.readout):
      _lecun_normal_(layer.weight.data, layer.weight[0].numel())
      nn.init.zeros_(layer.bias)

  def forward(self, x):
    for conv in self.convs:
      x = torch.relu(conv(x))
    return self.readout(x.flatten(1))


def parameter_count(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


def jax_cnn_parameter_count(example_shape: tuple, num_classes: int, channels: int = 25) -> int:
  """Parameters of our ConvNet (lib.nets.models.ConvNet) for examples of (*spatial, C)."""
  import jax  # pylint: disable=g-import-not-at-top
  from lib.nets import models  # pylint: disable=g-import-not-at-top
  model = models.module_model(models.ConvNet(channels, num_classes), example_shape)
  params = jax.eval_shape(model.init, jax.random.key(0))
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def cnn_images_per_second(x_train, y_train, steps: int, batch_size: int = 100, lr: float = 1e-2,
                          seed: int = 0, warmup: int = 5, channels: int = 25) -> float:
  """Training images per second of the MNIST-1D ConvNet in torch (Adam at `lr`, cross-entropy,
  minibatches of a fresh permutation per epoch), timed over `steps` steps after `warmup` steps.
  x_train: (N, L) or (N, L, C) float32 signals (our layout, channels last); y_train: labels."""
  x = np.asarray(x_train, np.float32)
  x = x[..., None] if x.ndim == 2 else x
  num_classes = int(np.max(y_train)) + 1
  torch.manual_seed(seed)
  model = ConvNet(x.shape[1], x.shape[2], channels, num_classes)
  ours = jax_cnn_parameter_count(x.shape[1:], num_classes, channels)
  assert parameter_count(model) == ours, (parameter_count(model), ours)
  x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1)))  # (N, C, L)
  y = torch.from_numpy(np.asarray(y_train, np.int64))
  opt = torch.optim.Adam(model.parameters(), lr=lr)
  generator = torch.Generator().manual_seed(seed)
  per_epoch = len(y) // batch_size
  order = []

  def train_step(step):
    if step % per_epoch == 0:
      order[:] = [torch.randperm(len(y), generator=generator)]
    idx = order[0][(step % per_epoch) * batch_size:(step % per_epoch + 1) * batch_size]
    loss = F.cross_entropy(model(x[idx]), y[idx])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

  for step in range(warmup):
    train_step(step)
  start = time.perf_counter()
  for step in range(warmup, warmup + steps):
    train_step(step)
  return steps * batch_size / (time.perf_counter() - start)


# ---- language models ----------------------------------------------------------------------------


class LstmLm(nn.Module):
  """A recurrent LM as a PyTorch user writes it: nn.Embedding, nn.LSTM (its fused CPU kernels,
  time-major as in pytorch/examples' word_language_model), a nn.Linear readout at every step."""

  def __init__(self, vocab_size: int, embed_size: int, hidden_size: int, num_layers: int):
    super().__init__()
    self.embed = nn.Embedding(vocab_size, embed_size)
    self.lstm = nn.LSTM(embed_size, hidden_size, num_layers)
    self.readout = nn.Linear(hidden_size, vocab_size)

  def forward(self, x, state=None):  # x (B, T) token ids -> logits (B, T, V), (h, c)
    out, state = self.lstm(self.embed(x.T), state)
    return self.readout(out).transpose(0, 1), state


def lstm_lm_from_flax(params) -> LstmLm:
  """lib.nets.language.recurrent_lm('lstm', ...)'s params (numpy) in LstmLm: nn.LSTM's
  weight_ih (4N, D) and weight_hh (4N, N) are the Flax gates' kernels (D, N), (N, N) in the order
  i, f, g, o, concatenated and transposed; its bias_hh the Flax 'h*' biases, bias_ih zero and
  frozen (requires_grad False): the Flax LSTMCell has one bias per gate, and two trained biases
  would each take the same gradient, doubling the bias's step and its share of the clipped norm."""
  vocab_size, embed_size = np.shape(params['embed'])
  layers = params['cells']
  hidden_size = np.shape(layers[0]['params']['hi']['kernel'])[0]
  model = LstmLm(vocab_size, embed_size, hidden_size, len(layers))
  with torch.no_grad():
    model.embed.weight.copy_(_tensor(params['embed']))
    for i, layer in enumerate(layers):
      w = torch_weights('lstm', layer)  # (D, 4N), (N, 4N), (4N,): the gates in torch's order
      getattr(model.lstm, f'weight_ih_l{i}').copy_(w['w_x'].T)
      getattr(model.lstm, f'weight_hh_l{i}').copy_(w['w_h'].T)
      getattr(model.lstm, f'bias_hh_l{i}').copy_(w['b'])
      getattr(model.lstm, f'bias_ih_l{i}').zero_()
      getattr(model.lstm, f'bias_ih_l{i}').requires_grad_(False)
    model.readout.weight.copy_(_tensor(np.asarray(params['readout']['params']['kernel']).T))
    model.readout.bias.copy_(_tensor(params['readout']['params']['bias']))
  return model


class TransformerLm(nn.Module):
  """lib.nets.language.transformer_lm in PyTorch as its user writes it: nn.Embedding plus learned
  positions, num_layers nn.TransformerEncoderLayer (norm_first: pre-LN; GELU, tanh-approximated
  as Flax's nn.gelu; layer-norm eps 1e-6 as Flax's), a final nn.LayerNorm and a nn.Linear
  readout, a causal mask."""

  def __init__(self, vocab_size: int, width: int, num_heads: int, num_layers: int,
               context_len: int):
    super().__init__()
    self.embed = nn.Embedding(vocab_size, width)
    self.positions = nn.Parameter(torch.zeros(context_len, width))
    self.blocks = nn.ModuleList(
        nn.TransformerEncoderLayer(width, num_heads, 4 * width, dropout=0.0,
                                   activation=functools.partial(F.gelu, approximate='tanh'),
                                   layer_norm_eps=1e-6, batch_first=True, norm_first=True)
        for _ in range(num_layers))
    self.norm = nn.LayerNorm(width, eps=1e-6)
    self.readout = nn.Linear(width, vocab_size)

  def forward(self, x, state=None):  # x (B, T) -> logits (B, T, V), no state
    length = x.shape[1]
    h = self.embed(x) + self.positions[:length]
    mask = nn.Transformer.generate_square_subsequent_mask(length)
    for block in self.blocks:
      h = block(h, src_mask=mask, is_causal=True)
    return self.readout(self.norm(h)), state


def transformer_lm_from_flax(params, num_heads: int) -> TransformerLm:
  """lib.nets.language.transformer_lm's params (numpy) in TransformerLm. Flax names block l's
  layer norms LayerNorm_{2l} (before attention) and LayerNorm_{2l+1} (before the MLP), its MLP
  Dense_{2l+1} (d -> 4d, built second, applied first) and Dense_{2l} (4d -> d); the final norm and
  readout come last. Attention's query, key and value kernels (d, H, d/H) are
  nn.MultiheadAttention's in_proj_weight rows, head-major as torch splits them."""
  p = params['params']
  vocab_size, width = np.shape(p['Embed_0']['embedding'])
  num_layers = sum(name.startswith('MultiHeadDotProductAttention') for name in p)
  model = TransformerLm(vocab_size, width, num_heads, num_layers, np.shape(p['positions'])[0])
  dense = lambda name, linear: (linear.weight.copy_(_tensor(np.asarray(p[name]['kernel']).T)),
                                linear.bias.copy_(_tensor(p[name]['bias'])))
  norm = lambda name, ln: (ln.weight.copy_(_tensor(p[name]['scale'])),
                           ln.bias.copy_(_tensor(p[name]['bias'])))
  with torch.no_grad():
    model.embed.weight.copy_(_tensor(p['Embed_0']['embedding']))
    model.positions.copy_(_tensor(p['positions']))
    for i, block in enumerate(model.blocks):
      a = p[f'MultiHeadDotProductAttention_{i}']
      qkv = [np.asarray(a[n]['kernel']).reshape(width, width) for n in ('query', 'key', 'value')]
      block.self_attn.in_proj_weight.copy_(_tensor(np.concatenate(qkv, -1).T))
      block.self_attn.in_proj_bias.copy_(_tensor(np.concatenate(
          [np.ravel(a[n]['bias']) for n in ('query', 'key', 'value')])))
      block.self_attn.out_proj.weight.copy_(_tensor(
          np.asarray(a['out']['kernel']).reshape(width, width).T))
      block.self_attn.out_proj.bias.copy_(_tensor(a['out']['bias']))
      norm(f'LayerNorm_{2 * i}', block.norm1)
      norm(f'LayerNorm_{2 * i + 1}', block.norm2)
      dense(f'Dense_{2 * i + 1}', block.linear1)
      dense(f'Dense_{2 * i}', block.linear2)
    norm(f'LayerNorm_{2 * num_layers}', model.norm)
    dense(f'Dense_{2 * num_layers}', model.readout)
  return model


def lm_loss_and_grad_norm(model: nn.Module, x, y) -> tuple:
  """(mean cross-entropy in nats per token, global norm of its gradient) of one segment x -> y
  (numpy (B, T) token ids) read from a zero state."""
  model.zero_grad(set_to_none=True)
  logits, _ = model(torch.from_numpy(np.asarray(x, np.int64)))
  loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                         torch.from_numpy(np.asarray(y, np.int64)).reshape(-1))
  loss.backward()
  norm = torch.sqrt(sum(p.grad.square().sum() for p in model.parameters() if p.grad is not None))
  model.zero_grad(set_to_none=True)
  return loss.item(), norm.item()


def lm_trainer(model: nn.Module, streams, context_len: int, optimizer: str, lr: float,
               clip_norm: float):
  """run(steps): `steps` more steps of truncated BPTT over `streams` ((B, N) token ids, the
  training split cut into B streams as lib/experiments/language_model does): segment k of every
  stream, the state the previous segment left detached (zero at each epoch's start; the
  transformer has none), mean cross-entropy, clip_grad_norm_ (if clip_norm > 0), then SGD or
  Adam (torch's defaults, as optax's)."""
  data = torch.from_numpy(np.asarray(streams, np.int64))
  per_epoch = (data.shape[1] - 1) // context_len
  params = [p for p in model.parameters() if p.requires_grad]
  opt = (torch.optim.SGD(params, lr=lr) if optimizer == 'sgd'
         else torch.optim.Adam(params, lr=lr))
  at = {'step': 0, 'state': None}

  def run(steps: int):
    for _ in range(steps):
      k = at['step'] % per_epoch
      x = data[:, k * context_len:(k + 1) * context_len]
      y = data[:, k * context_len + 1:(k + 1) * context_len + 1]
      state = None if k == 0 or at['state'] is None else tuple(s.detach() for s in at['state'])
      logits, at['state'] = model(x, state)
      loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
      opt.zero_grad(set_to_none=True)
      loss.backward()
      if clip_norm > 0:
        nn.utils.clip_grad_norm_(params, clip_norm)
      opt.step()
      at['step'] += 1
  return run


def main():
  import os  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  print(torch_info())
  worst = check_profiles()
  print('check_profiles ok; max |difference| and relative difference per (cell, sigma_w2, seed):')
  for key, (diff, rel) in worst.items():
    print(f'  {key}: {diff:.2e} nats, {rel:.2e}')
  cfg = {'batch_size': 16, 'hidden_size': 128, 'input_size': 32, 'sigma_v2': 0.1,
         'recurrent_init': 'gaussian', 'gate_bias': 2.0}
  for cell in CELLS:
    point = draw_point(cell, 512, cfg, 2.0, 0.0, 0)
    times = [sweep_seconds([point])[0] for _ in range(4)][1:]  # after a warm-up
    print(f'{cell} T=512 hidden 128 batch 16, one point: median {np.median(times):.3f} s '
          f'(min {min(times):.3f}, max {max(times):.3f})')
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(4000, 40)).astype(np.float32), rng.integers(0, 10, 4000)
  print(f'cnn: {parameter_count(ConvNet(40))} parameters, '
        f'{cnn_images_per_second(x, y, 50):.0f} images/s (batch 100, 50 steps)')


if __name__ == '__main__':
  main()
