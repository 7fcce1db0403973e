"""Tests of the JAX vs PyTorch benchmark: MAC counts, MFU, CLI, memory sweep.

The CLI test runs the real command on tiny configs (a CI test of the CLI,
not of speed); MAC counts of the full-size models are checked against the
published / designed numbers without running anything.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import pytest

from l2a_jax import models
from l2a_jax.benchmark import cli as benchmark
from l2a_jax import hardware
from l2a_jax.benchmark import macs
from l2a_jax.benchmark import plot as benchmark_plot

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'configs'


def _load_model_config(name: str, frames: int) -> ml_collections.ConfigDict:
  return benchmark.load_config(f'{CONFIGS / name}.py:frames={frames}').model


def _load_config(name: str, frames: int) -> ml_collections.ConfigDict:
  return benchmark.load_config(f'{CONFIGS / name}.py:frames={frames}')


def _run_cli(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS='1',
             JAX_PLATFORMS='cpu')
  # A benchmark measures compilation: no session compilation cache
  # (tests/conftest.py) for it.
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  env.pop('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', None)
  return subprocess.run(
      [sys.executable, '-m', 'l2a_jax.benchmark', *args], cwd=cwd, env=env,
      capture_output=True, text=True, timeout=600, check=False)


# ----------------------------------------------------------------------------
# MAC counting.
# ----------------------------------------------------------------------------


def test_dot_general_macs_is_lhs_size_times_rhs_free_dims():
  # [b, q, h, d] x [b, k, h, d] -> [b, h, q, k]: contract d, batch b and h.
  dims = (((3,), (3,)), ((0, 2), (0, 2)))
  assert macs.dot_general_macs((2, 5, 3, 4), (2, 7, 3, 4), dims) == (
      2 * 5 * 3 * 4 * 7)
  # Plain [n, in] x [in, out].
  assert macs.dot_general_macs((6, 4), (4, 9), (((1,), (0,)), ((), ()))) == (
      6 * 4 * 9)


def test_count_macs_follows_parameters_through_scan_casts_and_calls():
  depth, batch, dim = 3, 5, 8

  @jax.custom_vjp
  def project(w, x):
    return x @ w

  project.defvjp(lambda w, x: (x @ w, (w, x)),
                 lambda res, g: (res[1].T @ g, g @ res[0].T))

  def fn(params, x):
    def layer(h, w):
      # A stacked kernel sliced by the scan and cast to bfloat16: linear.
      h = h @ w.astype(jnp.bfloat16).astype(jnp.float32)
      # Activation x activation: counted in full only.
      scores = jnp.einsum('bc,dc->bd', h, h)
      return scores @ h, None

    x, _ = jax.lax.scan(layer, x, params['stack'])
    x = jax.checkpoint(lambda v: project(params['head'], v))(x)
    # The costlier branch counts: two [5, 2] x [2, 5]-sized products.
    return jax.lax.cond(x.sum() > 0, lambda: (x @ x.T) @ x, lambda: x)

  params = {'stack': jnp.ones((depth, dim, dim)), 'head': jnp.ones((dim, 2))}
  count = macs.count_macs(fn, params, jnp.ones((batch, dim)))
  linear = depth * batch * dim * dim + batch * dim * 2
  activation = depth * 2 * batch * batch * dim + 2 * batch * 2 * batch
  assert count.linear == linear
  assert count.full == linear + activation
  assert count.unknown_loops == 0


def test_tcpformer_full_size_macs_match_the_published_count():
  model = _load_model_config('tcpformer_h36m', 243)
  count = macs.count_model_macs(model)
  # tcpformer_spec.md section 7: 108.60 G linear-layer MACs per clip.
  assert abs(count.linear / 1e9 - 108.60) < 0.01
  # Activation products per layer pair, by hand from the architecture.
  t, j, c = 243, 17, 128
  proxy = t // 3
  per_pair = (
      4 * t * j * j * c  # two spatial attentions: q k^T and attn v
      + 4 * j * t * t * c  # two temporal attentions
      + 3 * 2 * j * (t // 3)**2 * c  # three chunked local attentions
      + 2 * 2 * j * proxy * t * c  # proxy <-> sequence cross attentions
      # PAM's path through the proxy, A_pim (A_pum v): both maps recomputed
      # from their queries and keys and applied to values (no A2 @ A1).
      + 2 * 2 * j * proxy * t * c
      + 2 * 2 * j * t * t * c)  # map_sa_self and the PAM attention
  assert count.full == count.linear + 16 * per_pair


def test_tcpformer_macs_do_not_depend_on_scanning():
  model = _load_model_config('tcpformer_h36m', 27)
  model.depth = 2
  scanned = macs.count_model_macs(model)
  model.scan_layers = False
  assert macs.count_model_macs(model) == scanned


def test_l2a_default_macs_match_the_design_estimate():
  count = macs.count_model_macs(_load_model_config('l2a_h36m', 243))
  # l2a_design.md section 6: about 27.5 G linear-only and 32.0 G full MACs.
  assert count.linear / 1e9 == pytest.approx(27.5, rel=0.01)
  assert count.full / 1e9 == pytest.approx(32.0, rel=0.01)


# ----------------------------------------------------------------------------
# Peak FLOP/s and MFU.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('name, expected', [
    ('NVIDIA H100 80GB HBM3', 'H100 SXM'),
    ('NVIDIA H100 PCIe', 'H100 PCIe'),
    ('NVIDIA H100 NVL', 'H100 NVL'),
    ('NVIDIA H200', 'H200 SXM'),
    ('NVIDIA GH200 480GB', 'H200 SXM'),
    ('NVIDIA A100-SXM4-80GB', 'A100'),
    ('cpu', None),
    ('Tesla T4', None),
])
def test_gpu_model_names(name, expected):
  assert hardware.gpu_model(name) == expected


def test_mfu_counts_three_passes_for_training():
  peak = hardware.peak_flops('NVIDIA H100 80GB HBM3', 'bfloat16', 'highest')
  assert peak == pytest.approx(989.4e12)
  assert hardware.peak_flops('NVIDIA H100 80GB HBM3', 'float32',
                             'tf32') == pytest.approx(494.7e12)
  train = hardware.model_flops_utilisation(1e9, 1000.0, 'train', peak)
  assert train == pytest.approx(6e12 / 989.4e12)
  infer = hardware.model_flops_utilisation(1e9, 1000.0, 'infer', peak)
  assert infer == pytest.approx(train / 3)
  assert hardware.model_flops_utilisation(1e9, 1000.0, 'train', None) is None


# ----------------------------------------------------------------------------
# Config loading and overrides.
# ----------------------------------------------------------------------------


def test_relative_config_paths_resolve_from_anywhere(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = benchmark.load_config('configs/tiny.py:frames=27')
  assert (config.model.name, config.model.num_frames) == ('l2a', 27)
  with pytest.raises(benchmark.BenchmarkError, match='not found'):
    benchmark.load_config('configs/no_such_config.py')


def test_overrides_are_typed_and_checked():
  config = benchmark.load_config(f'{CONFIGS}/l2a_h36m.py:frames=27')
  benchmark.apply_overrides(config, [
      benchmark.parse_assignment('model.depth=3'),
      ('model.scan_layers', 'false'), ('model.hpa.mode', 'replace')])
  assert (config.model.depth, config.model.scan_layers) == (3, False)
  assert config.model.hpa.mode == 'replace'
  with pytest.raises(benchmark.BenchmarkError, match="no field 'depht'"):
    benchmark.apply_overrides(config, [('model.depht', '3')])
  with pytest.raises(benchmark.BenchmarkError, match='expected int'):
    benchmark.apply_overrides(config, [('model.depth', 'deep')])
  with pytest.raises(benchmark.BenchmarkError, match='FIELD=VALUE'):
    benchmark.parse_assignment('model.depth')


def test_config_dot_overrides_are_taken_out_of_argv():
  argv = benchmark.take_config_overrides(
      ['benchmark', '--config', 'a.py', '--config.model.depth=3',
       '--config.model.dim', '64', '--noconfig.model.scan_layers',
       '--steps', '2'])
  assert argv == ['benchmark', '--config', 'a.py', '--steps', '2']
  assert benchmark.CONFIG_OVERRIDES == [
      ('model.depth', '3'), ('model.dim', '64'),
      ('model.scan_layers', 'false')]
  benchmark.take_config_overrides(['benchmark'])
  assert not benchmark.CONFIG_OVERRIDES


# ----------------------------------------------------------------------------
# The command line.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('args, message', [
    (('--frameworks', 'jax,mxnet'), "unknown value 'mxnet'"),
    (('--batch_size', '0'),
     '--batch_size: expected a positive integer, got 0'),
    (('--mode', 'eval'), "--mode: unknown value 'eval'"),
    (('--depths', '4,x'), '--depths: expected integers'),
    (('--depth_variants', 'scan,loop'),
     "--depth_variants: expected scan, scan_autodiff or unrolled, got "
     "['loop']"),
    (('--steps', '0', '--depths', '2', '--depth_variants', 'scan_autodiff'),
     '--depth_variants scan_autodiff: none applies to tcpformer'),
    (('--batch_size', 'abc'), 'flag --batch_size=abc: invalid literal'),
    (('--set', 'model.num_heads=3'),
     'cannot build the model: ValueError: model.dim 128 is not divisible'),
    (('--config.model.num_heads=3',),
     'cannot build the model: ValueError: model.dim 128 is not divisible'),
    (('--config.model.depht=3',),
     "--config.model.depht: model has no field 'depht' (did you mean "
     "'depth'?)"),
    (('--config.model.depth=deep',),
     "--config.model.depth=deep: expected int, got 'deep'"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, message):
  out = tmp_path / 'out.json'
  proc = _run_cli('--config', f'{CONFIGS}/tcpformer_h36m.py', *args,
                  '--json', str(out))
  assert proc.returncode == 2
  assert proc.stderr.strip().count('\n') == 0, proc.stderr
  assert proc.stderr.startswith('benchmark: error: ')
  assert message in proc.stderr
  assert not out.exists()


def test_missing_config_is_an_error(tmp_path):
  proc = _run_cli('--config', str(tmp_path / 'nope.py'))
  assert proc.returncode == 2
  assert proc.stderr.strip() == (
      f"benchmark: error: --config: config file '{tmp_path / 'nope.py'}' "
      'not found')
  proc = _run_cli('--frameworks', 'jax')
  assert proc.returncode == 2
  assert '--config is required' in proc.stderr


def test_flags_load_several_configs_with_overrides():
  try:
    benchmark.FLAGS([
        'benchmark', '--config', f'{CONFIGS}/tcpformer_h36m.py:frames=27',
        '--config', f'{CONFIGS}/tiny.py', '--set', 'model.depth=3',
        '--frameworks', 'jax,torch_compile', '--dtype', 'bfloat16',
        '--depths', '2,4', '--torch_omp_wait_policy', 'passive'])
    options = benchmark.parse_flags()
    # Only PyTorch workers get the OpenMP policy; JAX is left alone.
    environments = [benchmark.worker_environment(f)
                    for f in ('jax', 'torch', 'torch_compile')]
  finally:
    benchmark.FLAGS.unparse_flags()
  assert environments == [{}, {'OMP_WAIT_POLICY': 'PASSIVE'},
                          {'OMP_WAIT_POLICY': 'PASSIVE'}]
  assert [(c.model.name, c.model.depth, c.model.num_frames)
          for _, c in options['configs']] == [('tcpformer', 3, 27),
                                              ('l2a', 3, 9)]
  assert options['depths'] == [2, 4]


def test_a_run_stopped_part_way_keeps_its_finished_rows(tmp_path,
                                                       monkeypatch):
  out = tmp_path / 'r.json'
  calls = []

  def fake_worker(spec, timeout):
    del timeout
    calls.append((spec['framework'], spec['dtype']))
    if len(calls) == 3:
      raise KeyboardInterrupt  # The run is stopped in its third measurement.
    return {'step_ms_median': 10.0 * len(calls),
            'samples_per_s': 100.0 / len(calls),
            'device': {'platform': 'cpu', 'device_kind': 'cpu'}}

  monkeypatch.setattr(benchmark, 'run_worker', fake_worker)
  try:
    benchmark.FLAGS([
        'benchmark', '--config', f'{CONFIGS}/tiny.py', '--frameworks',
        'jax,torch', '--dtype', 'float32,bfloat16', '--json', str(out)])
    options = benchmark.parse_flags()
    with pytest.raises(KeyboardInterrupt):
      benchmark.run(options)
  finally:
    benchmark.FLAGS.unparse_flags()
  assert not out.exists()
  partial = json.loads((tmp_path / 'r.partial.json').read_text())
  rows = partial['results']
  assert [(r['framework'], r['dtype'], r['step_ms_median']) for r in rows] == [
      ('jax', 'float32', 10.0), ('torch', 'float32', 20.0)]
  assert rows[0]['jax_speedup'] == {'torch': 2.0}
  assert partial['config']['dtypes'] == ['float32', 'bfloat16']


@pytest.fixture(scope='module')
def cli_run(tmp_path_factory):
  """One real CLI run on the tiny config: JAX and eager PyTorch, training."""
  pytest.importorskip('torch')
  out = tmp_path_factory.mktemp('bench')
  profiles = tmp_path_factory.mktemp('profiles')
  proc = _run_cli(
      '--config', f'{CONFIGS}/tiny.py', '--config.model.depth=1',
      '--config.model.remat=auto',
      '--frameworks', 'jax,torch', '--mode', 'train', '--batch_size', '2',
      '--steps', '2', '--warmup', '0', '--json', str(out / 'r.json'),
      '--plot', str(out / 'r.png'), '--profile_dir', str(profiles),
      '--profile_steps', '2')
  assert proc.returncode == 0, proc.stderr[-3000:]
  return out, json.loads((out / 'r.json').read_text()), proc.stdout


def test_cli_json_has_the_issue_schema(cli_run):
  out, document, _ = cli_run
  assert set(document) >= {'device', 'versions', 'config', 'results'}
  assert sorted(p.name for p in out.glob('*.json')) == ['r.json']  # No partial.
  assert document['versions']['jax'] == jax.__version__
  assert document['config']['batch'] == 2
  results = document['results']
  assert [(r['model'], r['framework']) for r in results] == [
      ('l2a', 'jax'), ('l2a', 'torch')]
  for row in results:
    assert 'error' not in row, row.get('error')
    assert set(row) >= {'framework', 'mode', 'dtype', 'batch', 'compile_s',
                        'step_ms_median', 'samples_per_s',
                        'peak_memory_bytes', 'macs_linear', 'macs_full',
                        'mfu'}
    assert (row['mode'], row['dtype'], row['batch']) == ('train', 'float32',
                                                          2)
    assert len(row['step_ms']) == 2
    assert row['samples_per_s'] == pytest.approx(
        2 / (row['step_ms_median'] / 1e3))
    assert 0 < row['macs_linear'] < row['macs_full']
    # No CPU peak FLOP/s: no MFU; no device allocator on CPU.
    assert row['mfu'] is None
    assert row['peak_memory_bytes'] is None
  jax_row, torch_row = results
  assert jax_row['compile_s'] > 0
  assert jax_row['memory']['xla_temp_bytes'] > 0
  assert jax_row['memory']['saved_residual_bytes'] > 0
  # The row records what ran: 'auto' is 'block' on this CPU.
  (model_config,) = document['config']['models'].values()
  assert model_config['remat'] == 'auto'
  assert jax_row['remat'] == 'block'
  assert torch_row['compile_s'] is None
  assert torch_row['memory']['autograd_saved_bytes'] > 0
  assert jax_row['jax_speedup']['torch'] == pytest.approx(
      jax_row['samples_per_s'] / torch_row['samples_per_s'])
  # Nothing but the outputs in the directory (atomic write, no temp files).
  assert sorted(p.name for p in out.iterdir()) == ['r.json', 'r.png']


def test_cli_profiles_each_measurement(cli_run):
  document = cli_run[1]
  jax_row, torch_row = document['results']
  assert document['config']['profile_steps'] == 2
  for row, trace_suffix in ((jax_row, '.xplane.pb'), (torch_row, '.json')):
    profile = row['profile']
    assert profile['steps'] == 2
    assert pathlib.Path(profile['trace']).is_file()
    assert profile['trace'].endswith(trace_suffix)
    assert pathlib.Path(profile['trace']).is_relative_to(
        document['config']['profile_dir'])
    top = profile['top_ops']
    assert 0 < len(top) <= 15
    assert all(r['ms_per_step'] > 0 and 0 < r['share'] <= 1 for r in top)
    # Sorted, largest first.
    assert [r['ms_per_step'] for r in top] == sorted(
        (r['ms_per_step'] for r in top), reverse=True)
  # JAX: instruction kinds, numbers stripped; runtime bookkeeping dropped.
  kinds = [r['name'] for r in jax_row['profile']['top_op_kinds']]
  assert not any(re.search(r'\.\d+$', k) for k in kinds), kinds
  assert not any(k.startswith('ThunkExecutor') for k in kinds), kinds
  # Torch: its operators, the matmuls among them.
  assert any(r['name'].startswith('aten::')
             for r in torch_row['profile']['top_ops'])
  # The console shows the largest ones.
  assert 'ms/step' in cli_run[2]


def test_profile_self_times_do_not_count_children_twice():
  from l2a_jax.benchmark import profiling as benchmark_profile  # pylint: disable=g-import-not-at-top
  events = [('execute', 0, 100), ('dot.1', 10, 30), ('fusion.2', 50, 20),
            ('inner.3', 55, 5), ('after', 200, 7), ('marker', 20, 0)]
  assert sorted(benchmark_profile.self_times(events)) == [
      ('after', 7), ('dot.1', 30), ('execute', 50), ('fusion.2', 15),
      ('inner.3', 5)]
  assert benchmark_profile.op_kind('loop_fusion.12') == 'loop_fusion'
  assert benchmark_profile.op_kind('aten::mm') == 'aten::mm'


def test_a_failing_profiler_is_recorded_not_raised(tmp_path):
  from l2a_jax.benchmark import profiling as benchmark_profile  # pylint: disable=g-import-not-at-top

  def broken():
    raise RuntimeError('CUPTI_ERROR_NOT_INITIALIZED\nsecond line')

  profile = benchmark_profile.profile_jax(broken, lambda _: None,
                                          str(tmp_path), 1)
  assert profile == {'error': 'RuntimeError: CUPTI_ERROR_NOT_INITIALIZED'}
  assert 'profile failed' in benchmark_profile.format_top_ops(profile)


def test_cli_torch_flop_counter_sees_the_same_products(cli_run):
  # L2A's HPA logits (history keys . learned pseudo-query) are an einsum
  # with a parameter in JAX (linear) and a multiply-and-sum in the torch
  # reference, which FlopCounterMode does not see: the only difference.
  row = cli_run[1]['results'][1]
  missing = row['macs_linear'] - row['torch_counter_macs_linear']
  assert row['macs_full'] - row['torch_counter_macs_full'] == missing
  assert 0 <= missing < 0.01 * row['macs_linear']


def _torch_count(model_config):
  torch = pytest.importorskip('torch')
  from l2a_jax.benchmark import torch_side as benchmark_torch  # pylint: disable=g-import-not-at-top
  from l2a_jax import torch_reference  # pylint: disable=g-import-not-at-top
  torch_model = torch_reference.create_model(model_config).eval()
  return benchmark_torch.count_flops(
      torch_model, torch.randn(1, model_config.num_frames,
                               model_config.num_joints, model_config.dim_in))


@pytest.mark.parametrize('name', ['tcpformer', 'l2a_without_hpa'])
def test_torch_flop_counter_matches_the_jaxpr_count(name):
  # Same architecture on both sides: torch's FlopCounterMode on the
  # reference model sees exactly the matrix products of the JAX jaxpr.
  if name == 'tcpformer':
    model = _load_model_config('tcpformer_h36m', 9)
    model.update(dict(depth=2, dim=16, num_heads=2, dim_rep=16))
  else:
    model = benchmark.load_config(f'{CONFIGS}/tiny.py').model
    model.hpa.mode = 'none'
  count = macs.count_model_macs(model)
  torch_count = _torch_count(model)
  if name == 'tcpformer':
    # The reference keeps the official PAM: the aggregation A2 @ A1
    # (heads x joints x T x L x T per layer); the JAX model applies the two
    # maps to values instead (two recomputed logits, two value products).
    t, j, c, h, depth = 9, 17, 16, 2, 2
    proxy = t // 3
    torch_count['torch_counter_macs_full'] += depth * (
        4 * j * proxy * t * c - h * j * t * proxy * t)
  assert torch_count == {'torch_counter_macs_linear': count.linear,
                         'torch_counter_macs_full': count.full}


def test_cli_prints_a_table_and_draws_a_plot(cli_run):
  out, document, stdout = cli_run
  assert benchmark.markdown_table(document['results']) in stdout
  assert (out / 'r.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  # Re-plotting the saved JSON works too (the docs' figure is made so).
  benchmark_plot.plot([document], str(out / 'again.png'))
  assert (out / 'again.png').stat().st_size > 10_000


# ----------------------------------------------------------------------------
# Memory against depth (in-process: the worker functions themselves).
# ----------------------------------------------------------------------------


def _depth_spec(framework, variants, depths=(1, 2, 4)):
  model = _load_model_config('l2a_h36m', 9)
  model.update(dict(dim=16, num_heads=2, dim_rep=16))
  return {
      'kind': 'memory_vs_depth', 'framework': framework, 'mode': 'train',
      'dtype': 'float32', 'batch': 2, 'steps': 1, 'warmup': 0, 'seed': 0,
      'fp32_matmul': 'highest', 'model': model.to_dict(),
      'loss': {'mpjpe': 1.0, 'n_mpjpe': 0.5, 'velocity': 20.0},
      'optim': _load_config('l2a_h36m', 9).optim.to_dict(),
      'depths': list(depths), 'variants': variants,
  }


def test_benchmark_times_exactly_the_trainers_step():
  from l2a_jax import optim  # pylint: disable=g-import-not-at-top
  from l2a_jax import sharding  # pylint: disable=g-import-not-at-top
  from l2a_jax import train  # pylint: disable=g-import-not-at-top
  from l2a_jax.benchmark import jax_side  # pylint: disable=g-import-not-at-top
  from l2a_jax.data import skeleton  # pylint: disable=g-import-not-at-top
  config = _load_config('tcpformer_h36m', 81)
  config.model.update(dict(depth=1, dim=16, num_heads=2, dim_rep=16,
                           num_frames=9))
  # A schedule with warmup and clipping: the benchmark must use them too.
  config.optim.update(dict(warmup_steps=3, grad_clip_norm=1.0,
                           accumulation_steps=1))
  spec = {'model': config.model.to_dict(), 'dtype': 'float32', 'batch': 2,
          'loss': config.loss.to_dict(), 'optim': config.optim.to_dict()}
  model_config = jax_side.model_config_for(spec)
  graphdef, params, rest = nnx.split(models.abstract_model(model_config),
                                     nnx.Param, ...)
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  mesh = sharding.create_mesh(config.mesh)
  tx, schedule = optim.create_optimizer(
      config.optim, jax_side.SCHEDULE_STEPS_PER_EPOCH,
      jax_side.SCHEDULE_TOTAL_STEPS)
  trainer_step = train.make_train_step(graphdef, tx, schedule, config,
                                       skeleton.get('h36m').parents, mesh)
  benchmark_step, _, benchmark_tx = jax_side.make_steps(graphdef, spec, mesh)
  opt_state = jax.eval_shape(tx.init, params)
  assert jax.tree.structure(jax.eval_shape(benchmark_tx.init, params)) == (
      jax.tree.structure(opt_state))
  clips = jax.ShapeDtypeStruct((2, 9, 17, 3), jnp.float32)
  args = (params, opt_state, {'inputs': clips, 'targets': clips}, rest,
          jax.random.key(0), jax.ShapeDtypeStruct((), jnp.int32))
  benchmark_hlo = benchmark_step.lower(*args).as_text()
  assert benchmark_hlo == trainer_step.lower(*args).as_text()
  # And the step is the trainer's, not a look-alike: its metrics.
  out = jax.eval_shape(benchmark_step, *args)[2]
  assert {'loss', 'grad_norm', 'learning_rate', 'loss_limb_gt'} <= set(out)
  # The config's optimizer is taken whole, accumulation off.
  accumulating = dict(spec, optim={**spec['optim'], 'accumulation_steps': 4})
  assert jax_side.trainer_config(accumulating).optim.accumulation_steps == 1


def test_jax_memory_grows_with_depth_and_autodiff_costs_more():
  from l2a_jax.benchmark import jax_side as benchmark_jax  # pylint: disable=g-import-not-at-top
  scan = benchmark_jax.measure_memory_vs_depth(
      _depth_spec('jax', ['scan'], depths=(1, 3)))['rows']
  autodiff = benchmark_jax.measure_memory_vs_depth(
      _depth_spec('jax', ['scan_autodiff'], depths=(3,)))['rows']
  assert [(r['variant'], r['depth']) for r in scan + autodiff] == [
      ('scan', 1), ('scan', 3), ('scan_autodiff', 3)]
  assert 0 < scan[0]['xla_temp_bytes'] < scan[1]['xla_temp_bytes']
  # Plain autodiff keeps a copy of the history buffer per layer.
  assert autodiff[0]['xla_temp_bytes'] > scan[1]['xla_temp_bytes']
  for row in scan + autodiff:
    assert row['xla_total_bytes'] >= row['xla_temp_bytes']
    assert row['compile_s'] > 0
  # The traced residuals tell the same story as XLA's buffers.
  assert 0 < scan[0]['saved_residual_bytes'] < scan[1]['saved_residual_bytes']
  assert autodiff[0]['saved_residual_bytes'] > scan[1]['saved_residual_bytes']


def test_saved_residual_bytes_follow_dtype_and_recomputation():
  from l2a_jax.benchmark import jax_side as benchmark_jax  # pylint: disable=g-import-not-at-top

  def kept(**changes):
    model = _load_model_config('tcpformer_h36m', 27)
    model.update(dict(depth=2, dim=32, num_heads=4, dim_rep=32,
                      remat='none'), **changes)
    graphdef, params, rest = nnx.split(models.abstract_model(model),
                                       nnx.Param, ...)
    clips = jax.ShapeDtypeStruct((2, 27, 17, 3), jax.numpy.float32)
    return benchmark_jax.saved_residual_bytes(
        graphdef, params, rest, clips, clips,
        {'mpjpe': 1.0, 'n_mpjpe': 0.5, 'velocity': 20.0})

  float32, bfloat16 = kept(), kept(dtype='bfloat16')
  recompute = kept(recompute_attention=True)
  block = kept(remat='block')
  # One [2, 27, 17, 32] float32 activation is 117,504 bytes; a depth-2
  # model keeps dozens of them.
  assert float32 > 50 * 2 * 27 * 17 * 32 * 4
  # bf16 halves the activations but not the float32 attention maps.
  assert 0.5 * float32 < bfloat16 < 0.9 * float32
  assert recompute < 0.95 * float32
  # remat='block' keeps only each pair's inputs and its parameters.
  assert block < 0.2 * float32
  # The config's 'auto' is 'block' on this CPU.
  assert kept(remat='auto') == block


def test_residual_bytes_count_each_buffer_once():
  from l2a_jax.benchmark import jax_side as benchmark_jax  # pylint: disable=g-import-not-at-top
  x, c = jnp.ones((8, 4)), jnp.ones(32)
  one = 8 * 4 * 4  # bytes of one [8, 4] float32 residual

  def view_of_a_residual(x, c):
    y = jnp.sin(x)  # keeps sin(x) (for y * y) and cos(x)
    return jnp.sum(y * y) + jnp.sum(y.reshape(32) * c)

  def new_buffer(x, c):
    y = jnp.sin(x)
    return jnp.sum(y * y) + jnp.sum((y + 1).reshape(32) * c)

  def view_of_an_argument(x, c):
    return jnp.sum(x.reshape(32) * c)

  # Autodiff keeps y.reshape(32) for the gradient of c as a residual of its
  # own; it is a view of sin(x), which is kept too: one buffer.
  assert benchmark_jax.residual_bytes(view_of_a_residual, x, c) == 2 * one
  assert benchmark_jax.residual_bytes(new_buffer, x, c) == 3 * one
  # Arguments, and views of them, are the caller's memory.
  assert benchmark_jax.residual_bytes(view_of_an_argument, x, c) == 0


def test_torch_saved_activations_grow_with_depth():
  pytest.importorskip('torch')
  from l2a_jax.benchmark import torch_side as benchmark_torch  # pylint: disable=g-import-not-at-top
  result = benchmark_torch.measure_memory_vs_depth(
      _depth_spec('torch', ['torch'], depths=(1, 2)))
  saved = [r['autograd_saved_bytes'] for r in result['rows']]
  assert 0 < saved[0] < saved[1]
  assert result['device']['device'] in ('cpu', 'cuda')


# ----------------------------------------------------------------------------
# The worker protocol.
# ----------------------------------------------------------------------------


def test_time_steps_excludes_the_first_call_and_warmup():
  from l2a_jax.benchmark import common  # pylint: disable=g-import-not-at-top
  calls, waited = [], []
  timing = common.time_steps(
      lambda: calls.append(len(calls)) or len(calls), waited.append,
      warmup=2, steps=5)
  assert len(calls) == 1 + 2 + 5
  assert waited == [1, 2, 3, 4, 5, 6, 7, 8]  # Every step waited for.
  assert len(timing['step_ms']) == 5 and timing['first_step_s'] >= 0
  summary = common.summarise_times(
      {'first_step_s': 1.0, 'step_ms': [30.0, 10.0, 20.0, 40.0]}, batch=8)
  assert summary['step_ms_median'] == 25.0
  assert summary['samples_per_s'] == pytest.approx(8 / 0.025)
  assert summary['step_ms_min'] == 10.0


def test_worker_records_failures_and_out_of_memory(tmp_path):
  from l2a_jax.benchmark import common  # pylint: disable=g-import-not-at-top
  assert common.is_out_of_memory(RuntimeError(
      'RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9.5GiB'))
  assert common.is_out_of_memory(
      RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB'))
  assert not common.is_out_of_memory(ValueError('model.depth'))
  spec = _depth_spec('jax', ['scan'])
  spec['kind'] = 'bogus'
  (tmp_path / 'spec.json').write_text(json.dumps(spec))
  from l2a_jax.benchmark import worker  # pylint: disable=g-import-not-at-top
  status = worker.main(
      ['worker', str(tmp_path / 'spec.json'), str(tmp_path / 'out.json')])
  assert status == 0
  result = json.loads((tmp_path / 'out.json').read_text())
  assert result == {'error': "ValueError: spec kind: expected 'steps' | "
                             "'memory_vs_depth' | 'linear_products', got "
                             "'bogus'",
                    'out_of_memory': False}
  assert sorted(p.name for p in tmp_path.iterdir()) == ['out.json',
                                                        'spec.json']
