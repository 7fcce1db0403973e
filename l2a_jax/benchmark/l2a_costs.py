r"""How L2A's train-step compile time and memory scale with depth.

For every depth and stack path, builds `jax.jit(jax.value_and_grad(loss))`
of an L2A model (loss = mean squared error of the output), and reports the
lowering and XLA compile times, XLA's temporary memory
(`compiled.memory_analysis().temp_size_in_bytes`: activations saved for the
backward pass and scratch, without parameters, inputs and outputs) and the
steady-state step time. Paths:

- `scan_custom`: scanned stack, custom history VJP (the default);
- `scan_autodiff`: scanned stack, reverse-mode through the scan (one buffer
  copy per layer, O(L^2));
- `unrolled`: the Python loop over per-layer slices, history as a list.

`--report=size` adds parameter counts and forward MACs
(`l2a_jax.benchmark.macs`) of the default model (configs/l2a_h36m.py) at T = 27, 81, 243.

  python -m l2a_jax.benchmark.l2a_costs --report=scaling,size \
      --depths=4,8,16,32 --dim=32 --num_heads=4 --frames=27 --batch_size=2

docs/models.md lists the commands behind its numbers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Sequence

from absl import flags
import flax
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections

from l2a_jax import atomic_output
from l2a_jax import cli
from l2a_jax import config_files
from l2a_jax import models
from l2a_jax.benchmark import macs

FLAGS = flags.FLAGS


PATHS = {
    'scan_custom': dict(scan_layers=True, history_vjp='custom'),
    'scan_autodiff': dict(scan_layers=True, history_vjp='autodiff'),
    'unrolled': dict(scan_layers=False, history_vjp='custom'),
}


def default_model_config(frames: int) -> ml_collections.ConfigDict:
  """The `config.model` section of configs/l2a_h36m.py."""
  # configs/ is not a package: load the file next to a path inside it.
  config_dir = os.path.join(os.path.dirname(__file__), '..', '..', 'configs')
  base = config_files.load_sibling(os.path.join(config_dir, 'any.py'),
                                   'l2a_h36m')
  return base.get_model_config(frames)


@dataclasses.dataclass
class StepCost:
  """Cost of one compiled train step (value_and_grad under jit)."""
  depth: int
  path: str
  lower_s: float
  compile_s: float
  temp_bytes: int
  argument_bytes: int
  run_ms: float | None


def measure_step(model_config: ml_collections.ConfigDict, batch: int,
                 run_steps: int, repeats: int = 1
                 ) -> tuple[float, float, int, int, float | None]:
  """Lowers, compiles (and runs) the train step of one model config.

  Args:
    model_config: the `config.model` section to build.
    batch: clips per step.
    run_steps: timed executions after one warm-up (0: none).
    repeats: lowerings and compilations from a fresh `jax.jit` each; the
      fastest counts.

  Returns:
    (lower seconds, compile seconds, temporary bytes, argument bytes,
    median run milliseconds or None).
  """
  model = models.create_model(model_config, nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  shape = (batch, model_config.num_frames, model_config.num_joints,
           model_config.dim_in)
  x = jax.random.normal(jax.random.key(1), shape, jnp.float32)
  y = jax.random.normal(jax.random.key(2), shape[:-1] + (3,), jnp.float32)

  def loss(p, inputs, targets):
    return jnp.mean(jnp.square(nnx.merge(graphdef, p)(inputs) - targets))

  lower_s = compile_s = float('inf')
  for _ in range(max(1, repeats)):
    # A fresh jit object each time: nothing is reused from a previous round.
    step = jax.jit(jax.value_and_grad(loss))
    start = time.perf_counter()
    lowered = step.lower(params, x, y)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    compiled_at = time.perf_counter()
    lower_s = min(lower_s, lowered_at - start)
    compile_s = min(compile_s, compiled_at - lowered_at)
  memory = compiled.memory_analysis()
  run_ms = None
  if run_steps > 0:
    jax.block_until_ready(compiled(params, x, y))  # warm-up
    times = []
    for _ in range(run_steps):
      begin = time.perf_counter()
      jax.block_until_ready(compiled(params, x, y))
      times.append((time.perf_counter() - begin) * 1e3)
    run_ms = statistics.median(times)
  return (lower_s, compile_s, int(memory.temp_size_in_bytes),
          int(memory.argument_size_in_bytes), run_ms)


def scaling_report(depths: Sequence[int], paths: Sequence[str]
                   ) -> list[StepCost]:
  """Measures every (depth, path) with the flag-sized model."""
  results = []
  for depth in depths:
    for path in paths:
      cfg = default_model_config(FLAGS.frames)
      cfg.depth = depth
      cfg.dim = FLAGS.dim
      cfg.num_heads = FLAGS.num_heads
      cfg.dtype = FLAGS.dtype
      cfg.update(PATHS[path])
      lower_s, compile_s, temp, args, run_ms = measure_step(
          cfg, FLAGS.batch_size, FLAGS.run_steps, FLAGS.repeats)
      cost = StepCost(depth, path, lower_s, compile_s, temp, args, run_ms)
      print(f'depth {depth:3d} {path:14s} lower {lower_s:6.2f} s  compile '
            f'{compile_s:6.2f} s  temp {temp / 2**20:8.1f} MiB  run '
            f'{run_ms if run_ms is None else round(run_ms, 1)} ms',
            flush=True)
      results.append(cost)
  return results


def size_report(frames_list: Sequence[int] = (27, 81, 243)) -> list[dict]:
  """Parameter counts and forward MACs of the default model."""
  rows = []
  for frames in frames_list:
    cfg = default_model_config(frames)
    abstract = models.abstract_model(cfg)
    params = nnx.state(abstract, nnx.Param)
    count = sum(leaf.size for leaf in jax.tree.leaves(params))
    scanned = macs.count_model_macs(cfg)
    cfg.scan_layers = False
    unrolled = macs.count_model_macs(cfg)
    row = dict(frames=frames, params=int(count),
               linear_gmacs=scanned.linear / 1e9,
               full_gmacs_unrolled=unrolled.full / 1e9,
               full_gmacs_scanned=scanned.full / 1e9)
    print(f'T={frames:3d}: {count:,} params; linear {row["linear_gmacs"]:.2f}'
          f' GMACs; full {row["full_gmacs_unrolled"]:.2f} GMACs (unrolled), '
          f'{row["full_gmacs_scanned"]:.2f} GMACs (scan: the masked '
          'depth-attention slots are computed too)', flush=True)
    rows.append(row)
  return rows


def _write_json(path: str, payload: dict) -> None:
  """Writes atomically: a temporary file in the same folder, then rename."""
  with atomic_output.atomic_output(path, 'w') as f:
    json.dump(payload, f, indent=2)


def _define_flags() -> None:
  """The flags (only when run as a program: the benchmark CLI defines some
  of the same names)."""
  flags.DEFINE_list('report', ['scaling', 'size'],
                    "What to report: 'scaling' (compile time and temporary "
                    "memory vs depth) and/or 'size' (params and MACs).")
  flags.DEFINE_list('depths', ['4', '8', '16', '32'], 'Depths L to measure.')
  flags.DEFINE_list('paths', ['scan_custom', 'scan_autodiff', 'unrolled'],
                    'Stack paths to measure.')
  flags.DEFINE_integer('dim', 32, 'Width C of the measured models.')
  flags.DEFINE_integer('num_heads', 4, 'Attention heads of the measured models.')
  flags.DEFINE_integer('frames', 27, 'Frames T of the measured models.')
  flags.DEFINE_integer('batch_size', 2,
                       'Batch B of the measured train step.')
  flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'],
                    'Compute dtype of the measured models.')
  flags.DEFINE_integer('run_steps', 3,
                       'Timed executions per compiled step (0 = do not run).')
  flags.DEFINE_integer('repeats', 1,
                       'Lower and compile this many times, report the fastest '
                       '(compile times on a shared machine are noisy).')
  flags.DEFINE_string('json', None, 'Also write the results to this JSON file.')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    cli.fail('l2a_costs', f'unexpected arguments {argv[1:]}')
  unknown = set(FLAGS.report) - {'scaling', 'size'}
  if unknown:
    cli.fail('l2a_costs', f"--report: expected 'scaling' and/or 'size', "
             f'got {sorted(unknown)}')
  unknown = set(FLAGS.paths) - set(PATHS)
  if unknown:
    cli.fail('l2a_costs', f'--paths: expected some of {sorted(PATHS)}, '
             f'got {sorted(unknown)}')
  try:
    depths = [int(d) for d in FLAGS.depths]
  except ValueError:
    cli.fail('l2a_costs', f'--depths: expected integers, got {FLAGS.depths}')
  print(f'jax {jax.__version__}, flax {flax.__version__}, backend '
        f'{jax.default_backend()}, {os.cpu_count()} CPUs, '
        f'{platform.processor() or platform.machine()}', flush=True)
  payload = dict(jax=jax.__version__, flax=flax.__version__,
                 backend=jax.default_backend(), cpus=os.cpu_count(),
                 model=dict(dim=FLAGS.dim, num_heads=FLAGS.num_heads,
                            frames=FLAGS.frames, batch=FLAGS.batch_size,
                            dtype=FLAGS.dtype))
  if 'scaling' in FLAGS.report:
    print(f'train step = jit(value_and_grad(mse)), C={FLAGS.dim}, heads='
          f'{FLAGS.num_heads}, T={FLAGS.frames}, J=17, B={FLAGS.batch_size}, '
          f'{FLAGS.dtype}', flush=True)
    payload['scaling'] = [dataclasses.asdict(c)
                          for c in scaling_report(depths, FLAGS.paths)]
  if 'size' in FLAGS.report:
    payload['size'] = size_report()
  if FLAGS.json:
    _write_json(FLAGS.json, payload)


if __name__ == '__main__':
  _define_flags()
  cli.run(main, program='l2a_costs', doc=__doc__,
          config=False)
