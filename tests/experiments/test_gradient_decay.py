"""The gradient-decay sweep: numbers equal a per-point computation, one compile per (cell, T),
resume without loss or duplication, and overflow recorded as a status."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lib.experiments import gradient_decay
from lib.measure import gradients
from lib.nets import cells
from lib.runtime.errors import UserError
from lib.runtime.results import ResultStore
from tests.conftest import default_config


def _run(cfg, workdir):
  store = ResultStore.create(str(workdir), cfg)
  gradient_decay.run(cfg, store)
  return store


def test_sweep_records_equal_single_point_float64_direct(tiny_config, tmp_path):
  """Each vmapped record equals its point recomputed alone by plain autodiff in float64, and its
  rate the fit of that profile over the config's window (k = 1..3: the ends of the profile
  bend, so a window ignored or shifted moves the rate)."""
  tiny_config.update(fit_k_min=1, fit_k_max=3)
  cfg = gradient_decay.validate(tiny_config)
  records = _run(cfg, tmp_path / 'w').records()
  assert len(records) == 2 * 2 * 2 * 2
  with jax.enable_x64(True):

    @functools.partial(jax.jit, static_argnums=(0, 1))
    def direct64(name, seq_len, seed, sigma_w2, sigma_b2):
      """The same draws as the float32 program, cast to float64, then plain autodiff (one
      program per cell and length: eager, its many small ops compiled one by one)."""
      key = jax.random.key(seed)
      cell32 = cells.make_cell(name, cfg['hidden_size'], jnp.float32)
      params = cells.init_params(
          name, cell32, jax.random.fold_in(key, 0), cfg['input_size'], sigma_w2=sigma_w2,
          sigma_v2=cfg['sigma_v2'], sigma_b2=sigma_b2, recurrent_init=cfg['recurrent_init'],
          gate_bias=cfg['gate_bias'])
      readout, xs = cells.standard_normals(
          jax.random.fold_in(key, 1),
          [(cfg['hidden_size'],), (seq_len, cfg['batch_size'], cfg['input_size'])],
          jnp.float32)
      to64 = lambda a: a.astype(jnp.float64)
      cell = cells.make_cell(name, cfg['hidden_size'], jnp.float64)
      return gradients.direct_grad_profile(
          cells.step_of(cell, jax.tree.map(to64, params)),
          functools.partial(cells.output, name),
          cells.zero_carry(cell, cfg['batch_size'], cfg['input_size']), to64(xs),
          to64(readout) / np.sqrt(cfg['hidden_size']))[0]

    for r in records[::5]:  # each (cell, seq_len) group, each scale and seed
      direct = direct64(r['cell'], r['seq_len'], r['seed'], np.float32(r['sigma_w2']),
                        np.float32(r['sigma_b2']))
      np.testing.assert_allclose(r['log_grad_sq'], np.asarray(direct), rtol=1e-5, atol=1e-4)
      assert r['status'] == 'ok'
      assert r['decay_rate'] == pytest.approx(
          gradients.fit_decay_rate(np.asarray(direct), 1, 3), abs=1e-4)
      if r['seq_len'] == 5:
        assert abs(r['decay_rate'] - gradients.fit_decay_rate(np.asarray(direct))) > 1e-3


def _count_compiles(run):
  compiles = []

  def listener(event, *_, **__):
    if event == '/jax/core/compile/backend_compile_duration':
      compiles.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    result = run()
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  return len(compiles), result


def test_one_compile_per_cell_and_length(tiny_config, tmp_path):
  tiny_config.length_buckets = ()  # no buckets
  cfg = gradient_decay.validate(tiny_config)
  compiles, _ = _count_compiles(lambda: _run(cfg, tmp_path / 'w'))
  assert compiles == len(cfg['cells']) * len(cfg['seq_lens'])


def test_length_buckets_compile_once_per_bucket_and_change_no_bit(tiny_config, tmp_path):
  """Every length in one bucket 8 times longer than the longest: one compile per cell, and
  records equal, bit for bit, to the unbucketed run's (one program per length). Hidden 64 and
  batch 16, so that XLA vectorises the sums over them (a sum over all steps at once rounded
  differently in a longer program)."""
  tiny_config.update(hidden_size=64, batch_size=16)
  cfg = gradient_decay.validate(tiny_config)
  bucketed = {**cfg, 'length_buckets': (8 * max(cfg['seq_lens']),)}
  assert len(gradient_decay.programs(bucketed)) == len(cfg['cells'])
  compiles, store = _count_compiles(lambda: _run(bucketed, tmp_path / 'bucketed'))
  assert compiles == len(cfg['cells'])
  plain = _run(cfg, tmp_path / 'plain').records()
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
  config = default_config()
  cfg = gradient_decay.validate(config)
  assert cfg['length_buckets'] == (64, 512)
  assert len(gradient_decay.programs(cfg)) == 6  # 3 cells x 2 buckets
  config.length_buckets = ()
  assert gradient_decay.validate(config)['length_buckets'] == ()
  config.length_buckets = ('nope',)
  with pytest.raises(UserError, match="config.length_buckets: 'nope' is not a positive integer "
                     'length, or auto'):
    gradient_decay.validate(config)


def test_a_length_beyond_every_bucket_is_a_user_error(tiny_config):
  tiny_config.length_buckets = (2, 4)
  with pytest.raises(UserError, match=r'config.seq_lens: \d+ is longer than the longest of '
                     r'config.length_buckets \(4\)'):
    gradient_decay.validate(tiny_config)


def test_resume_after_a_crash_mid_group_gives_identical_results(tiny_config, tmp_path,
                                                                 monkeypatch):
  cfg = gradient_decay.validate(tiny_config)
  whole = open(_run(cfg, tmp_path / 'whole').results_path, 'rb').read()

  workdir = tmp_path / 'crashed'
  store = ResultStore.create(str(workdir), cfg)
  real_append = ResultStore.append
  calls = []

  def crash_in_third_group(self, records):
    calls.append(1)
    records = list(records)
    if len(calls) == 3:  # half of the group lands, then a kill cuts the next line
      real_append(self, records[:3])
      with open(self.results_path, 'ab') as f:
        f.write(b'{"cell": "gru", "seq_len": 3, "log_gr')
      raise KeyboardInterrupt
    real_append(self, records)

  monkeypatch.setattr(ResultStore, 'append', crash_in_third_group)
  with pytest.raises(KeyboardInterrupt):
    gradient_decay.run(cfg, store)
  monkeypatch.setattr(ResultStore, 'append', real_append)
  _run(cfg, workdir)
  assert open(workdir / 'results.jsonl', 'rb').read() == whole
  assert gradient_decay.run(cfg, ResultStore.create(str(workdir), cfg)) == 0  # all done


def test_overflow_is_a_status_not_a_crash(tiny_config, tmp_path):
  """relu with sigma_w2 = 1e4 grows ~70x per step and overflows float32 by T = 30; relu with
  no input and no bias stays at h = 0, where relu' = 0, so its gradient is exactly zero."""
  tiny_config.update(cells=('relu',), seq_lens=(30,), sigma_w2=(1.0, 1e4), num_seeds=1)
  cfg = gradient_decay.validate(tiny_config)
  records = {r['sigma_w2']: r for r in _run(cfg, tmp_path / 'w').records()}
  assert records[1e4]['status'] == 'diverged' and records[1e4]['decay_rate'] is None
  assert records[1.0]['status'] == 'ok' and records[1.0]['decay_rate'] is not None
  tiny_config.update(sigma_v2=0.0, sigma_b2=(0.0,), sigma_w2=(1.0,))
  cfg = gradient_decay.validate(tiny_config)
  (record,) = _run(cfg, tmp_path / 'zero').records()
  assert record['status'] == 'vanished' and record['log_grad_sq'][:-1] == [None] * 29
  paths = gradient_decay.plot(records.values(), str(tmp_path / 'plots'))
  assert len(paths) == 3


def test_a_run_resumes_across_a_change_of_length_buckets(tiny_config, tmp_path):
  """Buckets change no number, so they are not part of what a workdir must match: a sweep
  started without buckets and resumed with them ends byte-identical to one run."""
  from lib import experiments  # pylint: disable=g-import-not-at-top
  cfg = gradient_decay.validate(tiny_config)
  experiments.run(cfg, str(tmp_path / 'whole'))
  whole = (tmp_path / 'whole' / 'results.jsonl').read_bytes()
  experiments.run(cfg, str(tmp_path / 'resumed'))
  (tmp_path / 'resumed' / 'results.jsonl').write_bytes(
      b''.join(whole.splitlines(keepends=True)[:5]))  # one group and a point of the next
  experiments.run({**cfg, 'length_buckets': (8,)}, str(tmp_path / 'resumed'))
  assert (tmp_path / 'resumed' / 'results.jsonl').read_bytes() == whole
  with pytest.raises(UserError, match='differs in: hidden_size'):
    experiments.run({**cfg, 'hidden_size': 7}, str(tmp_path / 'resumed'))
