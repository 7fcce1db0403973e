r"""JAX vs PyTorch speed and memory of the same model, one command.

  python -m l2a_jax.benchmark --config configs/tcpformer_h36m.py \
      --config configs/l2a_h36m.py --frameworks jax,torch,torch_compile \
      --mode train,infer --dtype float32,bfloat16 --batch_size 16 --steps 20 \
      --json docs/benchmarks/h100.json --plot docs/benchmarks/h100.png

Every (config, mode, dtype, framework) is measured in a process of its own
(`l2a_jax.benchmark.worker`): the same model config, batch, frames, dtype and
random inputs on both sides, warm-up steps excluded, compile time reported
separately, the median step time over `--steps` timed steps. Memory against
depth (`--depths 4,8,16,32`): the compiled JAX training step's temporary
memory for the scanned and unrolled layer stack (L2A also with plain
autodiff through its history buffer) and PyTorch's training-step memory.

Options:
  --config PATH[:ARG]   a config file (repeatable); ARG is passed to its
                        get_config, e.g. configs/l2a_h36m.py:frames=27.
  --config.FIELD=VALUE  override a config field in every config (repeatable),
                        e.g. --config.model.depth=4 --config.model.dim=64,
                        typed by the field's current value, as for
                        `l2a_jax.main`; `--set FIELD=VALUE` is the same.
  --frameworks LIST     jax, torch, torch_compile (default jax,torch).
  --mode LIST           train, infer (default train).
  --dtype LIST          float32, bfloat16 (default float32).
  --batch_size N        clips per step (default 4).
  --steps K             timed steps (default 20); 0 = no timing (only the
                        depth sweep).
  --warmup W            untimed steps after the first (default 3).
  --depths LIST         depths of the memory sweep (default: none).
  --depth_variants LIST JAX layer stacks of the sweep: scan, scan_autodiff
                        (L2A), unrolled (default: all the model has). With
                        one depth and 'scan', the sweep is a compile-only
                        memory estimate of a config at any batch.
  --fp32_matmul P       float32 matmul precision on both sides: highest (IEEE,
                        default) | tf32 (TF32 tensor cores on GPUs).
  --torch_threads N     CPU threads of PyTorch (default 0: its own default).
  --torch_omp_wait_policy P
                        OMP_WAIT_POLICY of the PyTorch workers: inherit
                        (default: leave the environment alone) | passive
                        (no spin-waiting; for shared CPUs) | active.
  --json OUT.json       write all results (written atomically). While the
                        run goes on, OUT.partial.json holds the rows
                        finished so far (rewritten after every
                        measurement, removed when OUT.json is written), so
                        a run stopped part-way keeps what it measured.
  --profile_dir DIR     after timing, run --profile_steps (default 3) more
                        steps of each measurement under its framework's
                        profiler: trace in DIR/<measurement>/, the top
                        operations per step in the JSON row ('profile').
  --plot OUT.png        draw samples/s, memory and memory vs depth.
  --linear_products     instead of whole steps, time every Linear-layer
                        product shape of each model (forward, input
                        gradient, weight gradient) alone, --steps calls
                        each after --warmup (frameworks jax and torch):
                        how much of a step gap is matrix-product speed
                        (`l2a_jax.benchmark.linear_products`).

MACs and MFU conventions are in `l2a_jax.benchmark.macs` and
`l2a_jax.hardware`;
docs/benchmarks.md explains every column and holds the published numbers.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
from typing import Any, Sequence

from absl import flags
import ml_collections

from l2a_jax import cli
from l2a_jax.benchmark import common
from l2a_jax import hardware
from l2a_jax.benchmark import linear_products
from l2a_jax.benchmark import profiling

FRAMEWORKS = ('jax', 'torch', 'torch_compile')
MODES = ('train', 'infer')
DTYPES = ('float32', 'bfloat16')
MODEL_NAMES = ('l2a', 'tcpformer')
# Loss terms of the benchmark's training step (the default objective).
LOSS_TERMS = ('mpjpe', 'n_mpjpe', 'velocity')
MACS_CONVENTION = (
    'per clip (one sample of num_frames frames), forward pass; '
    'macs_linear: matrix products with a parameter operand (Linear layers); '
    'macs_full: all matrix products (Linear + attention scores, '
    'attention-weighted values (TCPFormer PAM: A_pim (A_pum v)), HPA depth '
    'attention), no elementwise work; counted from the JAX jaxpr '
    '(l2a_jax.benchmark.macs), the same numbers on every row of a model')
MFU_CONVENTION = (
    'mfu = passes * 2 * macs_full * samples_per_s / peak FLOP/s of the '
    'device for the dtype (passes = 3 for train, 1 for infer); peak from '
    'l2a_jax.hardware (datasheet, dense); null on CPU and unknown '
    'devices')

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('config', [], 'Config file PATH[:ARG] (repeat).')
flags.DEFINE_multi_string(
    'set', [], 'FIELD=VALUE override for every config (the same as '
    '--config.FIELD=VALUE).')
flags.DEFINE_list('frameworks', ['jax', 'torch'],
                  'Comma-separated: jax, torch, torch_compile.')
flags.DEFINE_list('mode', ['train'], 'Comma-separated: train, infer.')
flags.DEFINE_list('dtype', ['float32'], 'Comma-separated: float32, bfloat16.')
flags.DEFINE_integer('batch_size', 4, 'Clips per step.')
flags.DEFINE_integer('steps', 20, 'Timed steps; 0 = only the depth sweep.')
flags.DEFINE_integer('warmup', 3, 'Untimed steps after the first one.')
flags.DEFINE_integer('seed', 0, 'Seed of weights and synthetic inputs.')
flags.DEFINE_list('depths', [], 'Depths of the memory sweep, e.g. 4,8,16,32.')
flags.DEFINE_list(
    'depth_variants', [],
    'JAX layer stacks of the memory sweep: scan, scan_autodiff (L2A only), '
    'unrolled (default: every one the model has).')
flags.DEFINE_enum('fp32_matmul', 'highest', ['highest', 'tf32'],
                  'float32 matmul precision on both sides.')
flags.DEFINE_string('json', None, 'Where to write the results (JSON).')
flags.DEFINE_string('plot', None, 'Where to draw the results (PNG).')
flags.DEFINE_integer('torch_threads', 0,
                     'CPU threads of PyTorch (0 = its default).')
flags.DEFINE_enum(
    'torch_omp_wait_policy', 'inherit', ['inherit', 'passive', 'active'],
    'OMP_WAIT_POLICY of the PyTorch workers: inherit (default) leaves the '
    'environment and so PyTorch\'s defaults alone; passive keeps its CPU '
    'threads from spin-waiting when other processes share the cores (use it '
    'on a shared CPU; it slows PyTorch on an idle one).')
flags.DEFINE_integer('timeout', 3600, 'Seconds allowed per measurement.')
flags.DEFINE_string(
    'profile_dir', None,
    'Profile every timed measurement: --profile_steps more steps under the '
    "framework's profiler, trace in PROFILE_DIR/<measurement>/, top ops in "
    'the JSON row (l2a_jax.benchmark.profiling).')
flags.DEFINE_integer('profile_steps', 3, 'Steps per profile.')
flags.DEFINE_bool(
    'linear_products', False,
    "Instead of whole steps, time each model's Linear-layer products "
    '(forward, input gradient, weight gradient) one by one '
    '(l2a_jax.benchmark.linear_products).')


class BenchmarkError(ValueError):
  """Bad command-line input; the message is one line."""


# ----------------------------------------------------------------------------
# Configs.
# ----------------------------------------------------------------------------


def load_config(spec: str, index: int = 0) -> ml_collections.ConfigDict:
  """Loads `PATH[:ARG]` (`cli.load_config_file`) and checks its model name.

  Args:
    spec: a config file path, optionally followed by ':' and the argument
      of its `get_config`.
    index: distinguishes the module names of several configs.

  Returns:
    The ConfigDict returned by the file's `get_config`.
  """
  try:
    config = cli.load_config_file(spec, f'l2a_benchmark_config_{index}')
  except cli.UsageError as e:
    raise BenchmarkError(str(e)) from e
  if 'model' not in config or 'name' not in config.model:
    raise BenchmarkError(f'--config {spec}: no model.name field')
  if config.model.name not in MODEL_NAMES:
    raise BenchmarkError(f'--config {spec}: model.name: expected one of '
                         f'{MODEL_NAMES}, got {config.model.name!r}')
  return config


def parse_assignment(assignment: str) -> tuple[str, str]:
  """`FIELD=VALUE` of `--set` -> (FIELD, VALUE)."""
  field, sep, text = assignment.partition('=')
  if not sep or not field:
    raise BenchmarkError(f'--set: expected FIELD=VALUE (KEY=VALUE), got '
                         f'{assignment!r}')
  return field, text


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[tuple[str, str]]) -> None:
  """Applies `(FIELD, VALUE)` pairs with `cli.apply_override`."""
  for field, text in overrides:
    try:
      cli.apply_override(config, field, text)
    except cli.UsageError as e:
      raise BenchmarkError(str(e)) from e


# `--config.FIELD=VALUE` arguments, taken out of argv before absl parses it
# (absl knows only the repeatable --config flag).
CONFIG_OVERRIDES: list[tuple[str, str]] = []


def take_config_overrides(argv: list[str]) -> list[str]:
  """argv without its `--config.FIELD=VALUE` arguments (kept in
  `CONFIG_OVERRIDES`)."""
  rest, CONFIG_OVERRIDES[:] = cli.split_config_overrides(argv)
  return rest


def describe_model(model: ml_collections.ConfigDict) -> str:
  """Short label, e.g. 'tcpformer T=243 L=16 C=128'."""
  return (f'{model.name} T={model.num_frames} L={model.depth} '
          f'C={model.dim}')


# ----------------------------------------------------------------------------
# Running measurements.
# ----------------------------------------------------------------------------


def worker_environment(framework: str) -> dict[str, str]:
  """Environment variables a worker process gets on top of this one's.

  PyTorch's OpenMP threads spin-wait between parallel regions; when another
  process holds one of the cores, every parallel region waits for a
  descheduled thread and CPU steps slow down several times at random
  (measured on the 2-core development machine: TCPFormer inference 0.5-9.5 s
  per step instead of 0.24 s). `--torch_omp_wait_policy=passive` makes the
  threads sleep instead, which costs PyTorch time on an idle machine, so it
  is not the default. XLA's CPU thread pool does not use OpenMP; GPU kernels
  are not affected.
  """
  if (framework.startswith('torch') and
      FLAGS.torch_omp_wait_policy != 'inherit'):
    return {'OMP_WAIT_POLICY': FLAGS.torch_omp_wait_policy.upper()}
  return {}


def run_worker(spec: dict[str, Any], timeout: int) -> dict[str, Any]:
  """Runs one measurement in a fresh Python process and returns its result.

  A worker that crashes or times out yields {'error': ...}; an
  out-of-memory run yields {'error': ..., 'out_of_memory': True}.
  """
  with tempfile.TemporaryDirectory(prefix='l2a_benchmark_') as tmp:
    spec_path = pathlib.Path(tmp, 'spec.json')
    result_path = pathlib.Path(tmp, 'result.json')
    spec_path.write_text(json.dumps(spec), encoding='utf-8')
    command = [sys.executable, '-m', 'l2a_jax.benchmark.worker',
               str(spec_path), str(result_path)]
    try:
      env = dict(os.environ, **worker_environment(spec['framework']))
      proc = subprocess.run(command, timeout=timeout, check=False,
                            stdout=sys.stderr, env=env)
    except subprocess.TimeoutExpired:
      return {'error': f'timed out after {timeout} s'}
    if not result_path.is_file():
      return {'error': f'worker exited with status {proc.returncode} and '
                       'no result'}
    return json.loads(result_path.read_text(encoding='utf-8'))


def base_spec(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The parts of a measurement spec that come from the config."""
  return {
      'model': config.model.to_dict(),
      'loss': {name: float(config.loss[name]) for name in LOSS_TERMS},
      # The whole section: the JAX side builds the trainer's optax chain and
      # schedule from it (the PyTorch side reads learning_rate and
      # weight_decay).
      'optim': config.optim.to_dict(),
      **run_settings(),
  }


def run_settings() -> dict[str, Any]:
  """The measurement settings from the command line (spec and JSON)."""
  return {
      'batch': FLAGS.batch_size,
      'steps': FLAGS.steps,
      'warmup': FLAGS.warmup,
      'seed': FLAGS.seed,
      'fp32_matmul': FLAGS.fp32_matmul,
      'torch_threads': FLAGS.torch_threads,
  }


def device_name(result: dict[str, Any]) -> str | None:
  """The accelerator name a worker reported (JAX device_kind / torch)."""
  device = result.get('device') or {}
  return device.get('device_kind') or device.get('name')


def result_row(config_spec: str, config: ml_collections.ConfigDict,
               macs: Any, spec: dict[str, Any],
               result: dict[str, Any]) -> dict[str, Any]:
  """One entry of `results`: the issue's keys first, then the details."""
  samples = result.get('samples_per_s')
  name = device_name(result)
  peak = (hardware.peak_flops(name, spec['dtype'], FLAGS.fp32_matmul)
          if name else None)
  row = {
      'framework': spec['framework'],
      'mode': spec['mode'],
      'dtype': spec['dtype'],
      'batch': spec['batch'],
      'compile_s': result.get('compile_s'),
      'step_ms_median': result.get('step_ms_median'),
      'samples_per_s': samples,
      'peak_memory_bytes': result.get('peak_memory_bytes'),
      'macs_linear': macs.linear,
      'macs_full': macs.full,
      'mfu': hardware.model_flops_utilisation(macs.full, samples,
                                              spec['mode'], peak),
      'model': config.model.name,
      'model_label': describe_model(config.model),
      'config': config_spec,
      'frames': config.model.num_frames,
  }
  row.update({k: v for k, v in result.items()
              if k not in row and k != 'device'})
  row['device_name'] = name
  row['peak_flops'] = peak
  return row


def add_speedups(rows: list[dict[str, Any]]) -> None:
  """Adds `jax_speedup` {torch framework: ratio of samples/s} to JAX rows."""
  for row in rows:
    if row['framework'] != 'jax' or not row.get('samples_per_s'):
      continue
    speedups = {}
    for other in rows:
      if (other['framework'] != 'jax' and other['config'] == row['config']
          and other['mode'] == row['mode'] and other['dtype'] == row['dtype']
          and other.get('samples_per_s')):
        speedups[other['framework']] = (row['samples_per_s'] /
                                        other['samples_per_s'])
    row['jax_speedup'] = speedups


def versions() -> dict[str, str | None]:
  """Installed versions of the packages that matter, and the git commit."""
  result = {'python': sys.version.split()[0]}
  for package in ('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'torch',
                  'ml-collections'):
    try:
      result[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      result[package] = None
  try:
    result['l2a_jax_commit'] = subprocess.run(
        ['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
        text=True, check=True, timeout=10,
        cwd=pathlib.Path(__file__).parent).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    result['l2a_jax_commit'] = None
  return result


def _format_bytes(n: int | None) -> str:
  return '-' if n is None else f'{n / 2**20:,.0f} MiB'


def _format(x: float | None, fmt: str) -> str:
  return '-' if x is None else format(x, fmt)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
  """The results as a Markdown table (what docs/benchmarks.md shows)."""
  lines = [
      '| model | mode | dtype | framework | batch | compile s | step ms '
      '(min) | samples/s | JAX speed-up | peak memory | GMACs/clip lin / '
      'full | MFU |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for row in rows:
    if row.get('error'):
      lines.append(f"| {row['model_label']} | {row['mode']} | {row['dtype']} "
                   f"| {row['framework']} | {row['batch']} | "
                   f"{row['error'][:60]} | | | | | | |")
      continue
    speedup = ', '.join(f'{v:.2f}x vs {k}'
                        for k, v in row.get('jax_speedup', {}).items())
    memory = row['peak_memory_bytes']
    if memory is None:
      mem = row.get('memory', {})
      memory_text = (f"XLA temp {_format_bytes(mem.get('xla_temp_bytes'))}"
                     + (f", kept {_format_bytes(mem['saved_residual_bytes'])}"
                        if mem.get('saved_residual_bytes') else '')
                     if 'xla_temp_bytes' in mem else
                     f"saved {_format_bytes(mem.get('autograd_saved_bytes'))}"
                     if 'autograd_saved_bytes' in mem else '-')
    else:
      memory_text = _format_bytes(memory)
    lines.append(
        f"| {row['model_label']} | {row['mode']} | {row['dtype']} | "
        f"{row['framework']} | {row['batch']} | "
        f"{_format(row['compile_s'], '.1f')} | "
        f"{_format(row['step_ms_median'], '.1f')} "
        f"({_format(row.get('step_ms_min'), '.1f')}) | "
        f"{_format(row['samples_per_s'], '.2f')} | {speedup or '-'} | "
        f"{memory_text} | {row['macs_linear'] / 1e9:.2f} / "
        f"{row['macs_full'] / 1e9:.2f} | "
        f"{_format(row['mfu'] and 100 * row['mfu'], '.1f')}"
        f"{'%' if row['mfu'] is not None else ''} |")
  return '\n'.join(lines)


def depth_table(rows: Sequence[dict[str, Any]]) -> str:
  """The memory-vs-depth sweep as a Markdown table."""
  lines = ['| model | variant | depth | JAX XLA temp | JAX kept for backward '
           '| JAX compile s | torch saved activations | torch CUDA step peak |',
           '|---|---|---|---|---|---|---|---|']
  for row in rows:
    if row.get('error'):
      lines.append(f"| {row['model_label']} | {row.get('variant', '-')} | "
                   f"{row.get('depth', '-')} | {row['error'][:60]} | | | | |")
      continue
    lines.append(
        f"| {row['model_label']} | {row['variant']} | {row['depth']} | "
        f"{_format_bytes(row.get('xla_temp_bytes'))} | "
        f"{_format_bytes(row.get('saved_residual_bytes'))} | "
        f"{_format(row.get('compile_s'), '.1f')} | "
        f"{_format_bytes(row.get('autograd_saved_bytes'))} | "
        f"{_format_bytes(row.get('cuda_step_peak_bytes'))} |")
  return '\n'.join(lines)


def parse_flags() -> dict[str, Any]:
  """Validates the flags; raises BenchmarkError with a one-line message."""
  if not FLAGS.config:
    raise BenchmarkError('--config is required (a config file, repeatable)')
  checks = (('frameworks', FLAGS.frameworks, FRAMEWORKS),
            ('mode', FLAGS.mode, MODES), ('dtype', FLAGS.dtype, DTYPES))
  for name, values, allowed in checks:
    if not values:
      raise BenchmarkError(f'--{name}: expected one or more of {allowed}')
    for value in values:
      if value not in allowed:
        raise BenchmarkError(
            f'--{name}: unknown value {value!r}, expected one of {allowed}')
  lower_bounds = (('batch_size', 1, 'a positive integer'),
                  ('torch_threads', 0, '>= 0'),
                  ('timeout', 1, 'a positive number of seconds'),
                  ('profile_steps', 1, '>= 1'),
                  ('warmup', 0, '>= 0'))
  for name, minimum, expected in lower_bounds:
    if getattr(FLAGS, name) < minimum:
      raise BenchmarkError(f'--{name}: expected {expected}, got '
                           f'{getattr(FLAGS, name)}')
  try:
    depths = [int(d) for d in FLAGS.depths]
  except ValueError as e:
    raise BenchmarkError(
        f'--depths: expected integers, got {FLAGS.depths}') from e
  if any(d <= 0 for d in depths):
    raise BenchmarkError(f'--depths: expected positive integers, got '
                         f'{depths}')
  unknown = sorted(set(FLAGS.depth_variants) -
                   {'scan', 'scan_autodiff', 'unrolled'})
  if unknown:
    raise BenchmarkError(f'--depth_variants: expected scan, scan_autodiff or '
                         f'unrolled, got {unknown}')
  if FLAGS.linear_products:
    if 'torch_compile' in FLAGS.frameworks:
      raise BenchmarkError('--linear_products: expected --frameworks jax '
                           'and/or torch, got torch_compile (the products '
                           'are single library calls)')
    if depths or FLAGS.profile_dir or FLAGS.plot:
      raise BenchmarkError('--linear_products: --depths, --profile_dir and '
                           '--plot measure whole steps; leave them out')
    if FLAGS.steps <= 0:
      raise BenchmarkError(f'--steps: expected a positive integer with '
                           f'--linear_products, got {FLAGS.steps}')
  if FLAGS.steps < 0 or (FLAGS.steps == 0 and not depths):
    raise BenchmarkError(f'--steps: expected a positive integer (or 0 with '
                         f'--depths), got {FLAGS.steps}')
  if any(f.startswith('torch') for f in FLAGS.frameworks):
    if importlib.util.find_spec('torch') is None:
      raise BenchmarkError('--frameworks: torch is not installed (pip '
                           'install torch, see README)')
  for path in (FLAGS.json, FLAGS.plot, FLAGS.profile_dir):
    if path and not pathlib.Path(path).resolve().parent.is_dir():
      raise BenchmarkError(f'output directory of {path!r} does not exist')
  overrides = [parse_assignment(a) for a in FLAGS.set] + CONFIG_OVERRIDES
  configs = []
  for index, spec in enumerate(FLAGS.config):
    config = load_config(spec, index)
    apply_overrides(config, overrides)
    configs.append((spec, config))
  return {'configs': configs, 'depths': depths}


def run(options: dict[str, Any]) -> dict[str, Any]:
  """Runs every measurement; returns the JSON document."""
  # Imported here: the parent only traces models (MAC counts) and must not
  # claim an accelerator the workers need.
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_platforms', 'cpu')
  from l2a_jax.benchmark import macs as macs_lib  # pylint: disable=g-import-not-at-top,line-too-long

  results, depth_rows, product_rows, devices = [], [], [], {}
  description = run_description(options)

  def save_partial():
    if FLAGS.json:
      common.write_json_atomic(
          partial_json_path(FLAGS.json),
          build_document(description, results, depth_rows, devices,
                         product_rows))

  for config_spec, config in options['configs']:
    label = describe_model(config.model)
    try:
      macs = macs_lib.count_model_macs(config.model)
    except Exception as e:  # pylint: disable=broad-except
      # A config the model rejects (e.g. dim not divisible by num_heads).
      raise BenchmarkError(
          f'--config {config_spec}: cannot build the model: '
          f'{type(e).__name__}: {e}'.splitlines()[0]) from e
    print(f'{label}: {macs.linear / 1e9:.3f} G linear / '
          f'{macs.full / 1e9:.3f} G full MACs per clip', flush=True)
    spec0 = base_spec(config)
    if FLAGS.linear_products:
      products, other_macs = macs_lib.linear_products(config.model,
                                                      FLAGS.batch_size)
      for dtype in FLAGS.dtype:
        for framework in FLAGS.frameworks:
          spec = dict(spec0, kind='linear_products', framework=framework,
                      mode='train', dtype=dtype,
                      products=[dataclasses.asdict(p) for p in products])
          result = run_worker(spec, FLAGS.timeout)
          if 'device' in result:
            devices[framework] = result.pop('device')
          product_rows.append({
              'framework': framework, 'dtype': dtype,
              'batch': FLAGS.batch_size, 'model': config.model.name,
              'model_label': label, 'config': config_spec,
              'other_parameter_product_macs': other_macs, **result})
          print(f'{label} {dtype} {framework} Linear products: '
                + (f"error: {result['error']}" if result.get('error') else
                   f"{result['step_ms']:.1f} ms per training step"),
                flush=True)
          save_partial()
      continue
    if FLAGS.steps > 0:
      for mode in FLAGS.mode:
        for dtype in FLAGS.dtype:
          for framework in FLAGS.frameworks:
            spec = dict(spec0, kind='steps', framework=framework, mode=mode,
                        dtype=dtype)
            if FLAGS.profile_dir:
              spec.update(
                  profile_dir=profiling.measurement_dir(
                      FLAGS.profile_dir,
                      f'{label}_{mode}_{dtype}_{framework}'),
                  profile_steps=FLAGS.profile_steps)
            result = run_worker(spec, FLAGS.timeout)
            if 'device' in result:
              devices[framework.split('_')[0]] = result['device']
            row = result_row(config_spec, config, macs, spec, result)
            results.append(row)
            print(f"{label} {mode} {dtype} {framework}: "
                  + (f"error: {row['error']}" if row.get('error') else
                     f"{row['step_ms_median']:.1f} ms/step, "
                     f"{row['samples_per_s']:.2f} samples/s"), flush=True)
            if row.get('profile'):
              print(profiling.format_top_ops(row['profile']),
                    flush=True)
            save_partial()
    if options['depths']:
      variants = (['scan', 'scan_autodiff', 'unrolled']
                  if 'history_vjp' in config.model else ['scan', 'unrolled'])
      if FLAGS.depth_variants:
        variants = [v for v in variants if v in FLAGS.depth_variants]
      if not variants:
        raise BenchmarkError(
            f'--depth_variants {",".join(FLAGS.depth_variants)}: none '
            f'applies to {label} (scan_autodiff is L2A only)')
      sweeps = [('jax', variants)]
      if 'torch' in FLAGS.frameworks or 'torch_compile' in FLAGS.frameworks:
        sweeps.append(('torch', ['torch']))
      for framework, framework_variants in sweeps:
        spec = dict(spec0, kind='memory_vs_depth', framework=framework,
                    mode='train', dtype=FLAGS.dtype[0],
                    depths=options['depths'], variants=framework_variants)
        result = run_worker(spec, FLAGS.timeout)
        row_keys = {'model': config.model.name,
                    'model_label': (f'{config.model.name} T='
                                    f'{config.model.num_frames} '
                                    f'C={config.model.dim}'),
                    'config': config_spec, 'framework': framework,
                    'batch': FLAGS.batch_size, 'dtype': FLAGS.dtype[0]}
        if result.get('error'):
          depth_rows.append({**row_keys, **result})
        else:
          devices.setdefault(framework, result['device'])
          depth_rows.extend({**row_keys, **r} for r in result['rows'])
        save_partial()
  return build_document(description, results, depth_rows, devices,
                        product_rows)


def partial_json_path(path: str) -> pathlib.Path:
  """Where `--json OUT.json` keeps the rows of a run still going on."""
  out = pathlib.Path(path)
  return out.with_name(f'{out.stem}.partial{out.suffix or ".json"}')


def run_description(options: dict[str, Any]) -> dict[str, Any]:
  """What does not change during a run: host, versions, the config section
  (read once; every document of the run shares it)."""
  return {
      'host': hardware.host_description(),
      'versions': versions(),
      'config': {
          'configs': [spec for spec, _ in options['configs']],
          'overrides': list(FLAGS.set) + [
              f'{field}={text}' for field, text in CONFIG_OVERRIDES],
          'models': {spec: c.model.to_dict()
                     for spec, c in options['configs']},
          'frameworks': list(FLAGS.frameworks),
          'modes': list(FLAGS.mode),
          'dtypes': list(FLAGS.dtype),
          **run_settings(),
          'torch_worker_env': worker_environment('torch'),
          'depths': options['depths'],
          'depth_variants': list(FLAGS.depth_variants),
          'profile_dir': FLAGS.profile_dir,
          'profile_steps': FLAGS.profile_steps if FLAGS.profile_dir else None,
          'linear_products': FLAGS.linear_products,
          'command': 'python -m l2a_jax.benchmark ' + ' '.join(
              shlex.quote(a) for a in sys.argv[1:]),
          'macs_convention': MACS_CONVENTION,
          'mfu_convention': MFU_CONVENTION,
      },
  }


def build_document(description: dict[str, Any],
                   results: list[dict[str, Any]],
                   depth_rows: list[dict[str, Any]],
                   devices: dict[str, Any],
                   product_rows: list[dict[str, Any]] | None = None
                   ) -> dict[str, Any]:
  """The JSON document of the rows measured so far (`description` from
  `run_description`); `linear_products` only for a --linear_products run."""
  results = [dict(row) for row in results]
  add_speedups(results)
  accelerator = next(
      (d.get('device_kind') or d.get('name') for d in devices.values()
       if (d.get('platform') or d.get('device')) not in (None, 'cpu')),
      None)
  host = description['host']
  document = {
      'device': {'name': accelerator or f"cpu: {host['cpu']}",
                 'host': host, **devices},
      'versions': description['versions'],
      'config': description['config'],
      'results': results,
      'memory_vs_depth': depth_rows,
  }
  if product_rows:
    document['linear_products'] = product_rows
  return document


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    cli.fail('benchmark', f'unexpected arguments {list(argv[1:])}')
  try:
    options = parse_flags()
    document = run(options)
  except BenchmarkError as e:
    cli.fail('benchmark', e)
  if document['results']:
    print(markdown_table(document['results']))
  if document['memory_vs_depth']:
    print(depth_table(document['memory_vs_depth']))
  if document.get('linear_products'):
    print(linear_products.markdown_table(document['linear_products']))
  if FLAGS.json:
    common.write_json_atomic(FLAGS.json, document)
    partial_json_path(FLAGS.json).unlink(missing_ok=True)
  if FLAGS.plot:
    from l2a_jax.benchmark import plot as plot_lib  # pylint: disable=g-import-not-at-top
    plot_lib.plot([document], FLAGS.plot)
  failed = [r for r in document['results'] + document['memory_vs_depth']
            + document.get('linear_products', [])
            if r.get('error') and not r.get('out_of_memory')]
  if failed:
    sys.exit(f'benchmark: error: {len(failed)} measurement(s) failed, '
             f"first: {failed[0]['error']}")


def run_command_line() -> None:
  """`python -m l2a_jax.benchmark`: checks the command line, runs `main`."""
  cli.run(main, program='benchmark', doc=__doc__,
          prepare_argv=take_config_overrides)


if __name__ == '__main__':
  run_command_line()
