"""The gradient-decay sweep: numbers equal a per-point computation, one compile per (cell, T),
resume across a change of length buckets, and overflow recorded as a status. (A sweep stopped
and resumed, end to end: tests/test_run.py.)

Most tests share two runs of one config (module fixtures, each run once, read and never
written): the sweep without length buckets (one program per (cell, T)) and the same sweep with
every length in one bucket 8 times longer than the longest. Every program of the file is
compiled once; the session's compilation cache serves the runs that build one again."""

import functools
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.experiments import gradient_decay
from lib.measure import gradients
from lib.nets import cells
from lib.runtime.errors import UserError
from lib.runtime.results import ResultStore
from tests.conftest import config
from tests.conftest import programs_loaded
from tests.conftest import TINY

# The shared sweep: 2 cells x T = 3, 5 x 2 scales x 2 seeds. Hidden 64 and batch 16, so that XLA
# vectorises the sums over them (a sum over all steps at once rounded differently in a longer
# program: the bucket test's bug); the fit window k = 1..3 (the ends of the profile bend, so a
# window ignored or shifted moves the rate: the float64 test's).
SHARED = {**TINY, 'hidden_size': 64, 'batch_size': 16, 'fit_k_min': 1, 'fit_k_max': 3}
BUCKET = 8 * max(TINY['seq_lens'])


def _config(**overrides) -> dict:
  return gradient_decay.validate(config(**{**SHARED, **overrides}))


def _run(cfg, workdir):
  store = ResultStore.create(str(workdir), cfg)
  gradient_decay.run(cfg, store)
  return store


def _count_compiles(run):
  """(compiles, run()): a compile is counted whether XLA compiles or the cache serves it."""
  out = []
  return programs_loaded(lambda: out.append(run())), out[0]


@pytest.fixture(scope='module')
def unbucketed(tmp_path_factory):
  """The shared sweep without buckets, run by gradient_decay.run: (cfg, its compiles, store)."""
  cfg = _config(length_buckets=())
  return (cfg, *_count_compiles(lambda: _run(cfg, tmp_path_factory.mktemp('unbucketed'))))


@pytest.fixture(scope='module')
def bucketed(tmp_path_factory):
  """The shared sweep with every length in one bucket of BUCKET steps, run by
  gradient_decay.run: (cfg, its compiles, store)."""
  cfg = _config(length_buckets=(BUCKET,))
  return (cfg, *_count_compiles(lambda: _run(cfg, tmp_path_factory.mktemp('bucketed'))))


def test_sweep_records_equal_single_point_float64_direct(bucketed):
  """Each vmapped record (of the bucketed sweep: every length padded to 40 steps) equals its
  point recomputed alone by plain autodiff in float64, and its rate the fit of that profile over
  the config's window (k = 1..3: the ends of the profile bend, so a window ignored or shifted
  moves the rate)."""
  cfg, _, store = bucketed
  records = store.records()
  assert len(records) == 2 * 2 * 2 * 2
  # each (cell, seq_len) group, each scale and seed (the last a point whose window moves its rate
  # by more than 1e-3: at hidden 64 some GRU profiles are nearly straight)
  checked = records[3:13:3]
  assert [(r['cell'], r['seq_len']) for r in checked] == [
      ('tanh', 3), ('tanh', 5), ('gru', 3), ('gru', 5)]
  assert len({(r['sigma_w2'], r['seed']) for r in checked}) == 4

  def direct64(name, seq_len, seed, sigma_w2, sigma_b2):
    """The same draws as the float32 program, cast to float64, then plain autodiff."""
    key = jax.random.key(seed)
    cell32 = cells.make_cell(name, cfg['hidden_size'], jnp.float32)
    params = cells.init_params(
        name, cell32, jax.random.fold_in(key, 0), cfg['input_size'], sigma_w2=sigma_w2,
        sigma_v2=cfg['sigma_v2'], sigma_b2=sigma_b2, recurrent_init=cfg['recurrent_init'],
        gate_bias=cfg['gate_bias'])
    readout, xs = cells.standard_normals(
        jax.random.fold_in(key, 1),
        [(cfg['hidden_size'],), (seq_len, cfg['batch_size'], cfg['input_size'])], jnp.float32)
    to64 = lambda a: a.astype(jnp.float64)
    cell = cells.make_cell(name, cfg['hidden_size'], jnp.float64)
    return gradients.direct_grad_profile(
        cells.step_of(cell, jax.tree.map(to64, params)), functools.partial(cells.output, name),
        cells.zero_carry(cell, cfg['batch_size'], cfg['input_size']), to64(xs),
        to64(readout) / np.sqrt(cfg['hidden_size']))[0]

  with jax.enable_x64(True):
    # the four points as one program (one compile, not four), compiled unoptimised: XLA's
    # optimisations are most of its compile and change no float64 result at these tolerances
    args = (np.asarray([r['seed'] for r in checked], np.int32),
            np.asarray([r['sigma_w2'] for r in checked], np.float32),
            np.asarray([r['sigma_b2'] for r in checked], np.float32))
    every = jax.jit(lambda seed, w, b: [direct64(r['cell'], r['seq_len'], seed[i], w[i], b[i])
                                        for i, r in enumerate(checked)])
    directs = every.lower(*args).compile(compiler_options={
        'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True})(*args)
  for r, direct in zip(checked, directs):
    direct = np.asarray(direct)
    np.testing.assert_allclose(r['log_grad_sq'], direct, rtol=1e-5, atol=1e-4)
    assert r['status'] == 'ok'
    assert r['decay_rate'] == pytest.approx(gradients.fit_decay_rate(direct, 1, 3), abs=1e-4)
    if r['seq_len'] == 5:
      assert abs(r['decay_rate'] - gradients.fit_decay_rate(direct)) > 1e-3


def test_one_compile_per_cell_and_length(unbucketed):
  """Without buckets the sweep compiles one program per (cell, T), and no more: 4."""
  cfg, compiles, _ = unbucketed
  assert compiles == len(cfg['cells']) * len(cfg['seq_lens']) == 4


def test_length_buckets_compile_once_per_bucket_and_change_no_bit(unbucketed, bucketed):
  """Every length in one bucket 8 times longer than the longest: one compile per cell, and
  records equal, bit for bit, to the unbucketed run's (one program per length). Hidden 64 and
  batch 16, so that XLA vectorises the sums over them (a sum over all steps at once rounded
  differently in a longer program)."""
  cfg, compiles, store = bucketed
  assert cfg['length_buckets'] == (BUCKET,) and BUCKET == 8 * max(cfg['seq_lens'])
  assert len(gradient_decay.programs(cfg)) == len(cfg['cells'])
  assert compiles == len(cfg['cells'])
  plain = unbucketed[2].records()
  assert store.records() == plain
  assert [len(r['log_grad_sq']) for r in plain] == [r['seq_len'] for r in plain]


def test_automatic_buckets_hold_every_length_within_four_times_its_steps():
  """Worked by hand: 512 is a bucket and holds 128..512 (128 x 4 = 512), 64 the rest; 100 alone
  is its own bucket; 100 holds 30..100 and 20 holds 10, 20. Then random grids: every length runs
  in a bucket of at most 4 times its steps, and every bucket is a length of the grid."""
  assert gradient_decay.auto_buckets((16, 32, 64, 128, 256, 512)) == (64, 512)
  assert gradient_decay.auto_buckets((100,)) == (100,)
  assert gradient_decay.auto_buckets(tuple(range(10, 101, 10))) == (20, 100)
  rng = np.random.default_rng(0)
  for _ in range(200):
    lengths = sorted({int(t) for t in rng.integers(1, 5000, rng.integers(1, 12))})
    buckets = gradient_decay.auto_buckets(lengths)
    assert set(buckets) <= set(lengths)
    for seq_len in lengths:
      assert seq_len <= gradient_decay.bucket({'length_buckets': buckets}, seq_len) <= 4 * seq_len


def test_the_main_job_chooses_its_buckets_and_empty_means_none():
  main = config()
  cfg = gradient_decay.validate(main)
  assert cfg['length_buckets'] == (64, 512)
  assert len(gradient_decay.programs(cfg)) == 6  # 3 cells x 2 buckets
  main.length_buckets = ()
  assert gradient_decay.validate(main)['length_buckets'] == ()
  main.length_buckets = ('nope',)
  with pytest.raises(UserError, match="config.length_buckets: 'nope' is not a positive integer "
                     'length, or auto'):
    gradient_decay.validate(main)


def test_a_length_beyond_every_bucket_is_a_user_error(tiny_config):
  tiny_config.length_buckets = (2, 4)
  with pytest.raises(UserError, match=r'config.seq_lens: \d+ is longer than the longest of '
                     r'config.length_buckets \(4\)'):
    gradient_decay.validate(tiny_config)


def test_overflow_is_a_status_not_a_crash(tiny_config, tmp_path):
  """relu without input at T = 30, in one program: with bias, sigma_w2 = 1e4 grows ~70x per step
  and overflows float32 ('diverged', no rate) while sigma_w2 = 1 stays finite ('ok', a rate);
  with no bias either, h stays at 0, where relu' = 0, so the gradient is exactly zero
  ('vanished', every log but the last None). The plots are drawn from all four."""
  tiny_config.update(cells=('relu',), seq_lens=(30,), sigma_w2=(1.0, 1e4), sigma_b2=(0.0, 0.5),
                     sigma_v2=0.0, num_seeds=1)
  cfg = gradient_decay.validate(tiny_config)
  records = {(r['sigma_w2'], r['sigma_b2']): r for r in _run(cfg, tmp_path / 'w').records()}
  assert records[1e4, 0.5]['status'] == 'diverged' and records[1e4, 0.5]['decay_rate'] is None
  assert records[1.0, 0.5]['status'] == 'ok' and records[1.0, 0.5]['decay_rate'] is not None
  for sigma_w2 in (1.0, 1e4):
    record = records[sigma_w2, 0.0]
    assert record['status'] == 'vanished' and record['log_grad_sq'][:-1] == [None] * 29
  paths = gradient_decay.plot(records.values(), str(tmp_path / 'plots'))
  assert len(paths) == 3


def test_a_run_resumes_across_a_change_of_length_buckets(unbucketed, bucketed, tmp_path,
                                                           monkeypatch):
  """Buckets change no number, so they are not part of what a workdir must match: a sweep
  started without buckets (the unbucketed run's workdir, cut to its first group and a point of
  the next) and resumed with them by experiments.run ends byte-identical to one run; a change of
  anything else (hidden_size) is refused. Plots are not drawn (not what is checked)."""
  from lib import experiments  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(gradient_decay, 'plot', lambda records, plots_dir: [])
  resumed = tmp_path / 'resumed'
  shutil.copytree(unbucketed[2].workdir, resumed)
  whole = (resumed / 'results.jsonl').read_bytes()
  (resumed / 'results.jsonl').write_bytes(
      b''.join(whole.splitlines(keepends=True)[:5]))  # one group and a point of the next
  experiments.run(bucketed[0], str(resumed))
  assert (resumed / 'results.jsonl').read_bytes() == whole
  with pytest.raises(UserError, match='differs in: hidden_size'):
    experiments.run({**bucketed[0], 'hidden_size': 7}, str(resumed))


def test_linear_cells_record_their_power_law_beside_the_measurement():
  """A linear cell's record holds the closed form ln E ||dL/ds_t||^2 over its ring init
  (k = 0: ||r||^2 on the output; k >= 1: m ||r||^2 E|lambda|^2k, m = 2 for the lru's Re and Im
  parts) and one point per seed (sigma_w2 and sigma_b2 do not enter it). Measured: ln of the
  mean over 4 seeds x 1,024 states of the exact per-state gradient, against the theory at
  k <= 7, where the draws' relative standard error is about 2%: within 10% (a factor m
  dropped, or k for k + 1, is off by ln 2 or ln E|lambda|^2, both about 0.7)."""
  cfg = _config(cells=('lru', 'linear'), seq_lens=(8,), hidden_size=1024, batch_size=2,
                num_seeds=4, sigma_w2=(1.0, 4.0), r_min=0.0, r_max=0.99, fit_k_min=0,
                fit_k_max=-1)
  for cell in ('lru', 'linear'):
    records = gradient_decay.compute_group(cfg, (cell, 8))
    assert [(r['sigma_w2'], r['seed']) for r in records] == [(None, s) for s in range(4)]
    measured = np.log(np.mean([np.exp(r['log_grad_sq']) for r in records], axis=0))
    theory = np.log(np.mean([np.exp(r['log_grad_sq_theory']) for r in records], axis=0))
    np.testing.assert_allclose(measured, theory, atol=0.1)
    assert records[0]['theory_decay_rate'] == pytest.approx(
        gradients.fit_decay_rate(records[0]['log_grad_sq_theory']), rel=1e-12)
