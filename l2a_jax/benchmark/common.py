"""Helpers shared by the benchmark's CLI, worker and both framework sides.

The measurement spec's keys, the synthetic batch every framework times, the
step timer and its summary, host memory, out-of-memory detection and the
atomic JSON writer. Imports nothing of the benchmark package, so the worker
(which imports the JAX and torch sides) and the sides (which need these
helpers) do not import each other.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import statistics
import time
from typing import Any, Callable

import numpy as np

from l2a_jax import atomic_output

# Keys of a measurement spec (written by `l2a_jax.benchmark.cli`):
#   kind: 'steps' (time a train or inference step) | 'memory_vs_depth'.
#   framework: 'jax' | 'torch' | 'torch_compile'.
#   mode: 'train' | 'infer'; dtype: 'float32' | 'bfloat16'.
#   batch, steps, warmup, seed: ints.
#   fp32_matmul: 'highest' | 'tf32' (float32 matmul precision, both sides).
#   torch_threads: CPU threads of PyTorch (0 = its default).
#   model: the `config.model` section as a dict.
#   loss: {'mpjpe', 'n_mpjpe', 'velocity'} weights.
#   optim: {'learning_rate', 'weight_decay'} of AdamW.
#   depths, variants: the depth sweep ('memory_vs_depth' only).


def synthetic_batch(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
  """The same random (inputs, targets) for every framework.

  Args:
    spec: a measurement spec (batch, seed, model shape).

  Returns:
    inputs float32 `[batch, frames, joints, dim_in]` and targets float32
    `[batch, frames, joints, dim_out]`, standard normal (never zeros, which
    can run faster than real data).
  """
  model = spec['model']
  rng = np.random.default_rng(spec['seed'])
  shape = (spec['batch'], model['num_frames'], model['num_joints'])
  inputs = rng.standard_normal(shape + (model['dim_in'],), np.float32)
  targets = rng.standard_normal(shape + (model['dim_out'],), np.float32)
  return inputs, targets


def time_steps(step: Callable[[], Any], wait: Callable[[Any], None],
               warmup: int, steps: int) -> dict[str, Any]:
  """Times `steps` calls of `step` after one first call and `warmup` more.

  Args:
    step: runs one step and returns something `wait` can block on.
    wait: blocks until the device finished the work behind its argument
      (JAX `block_until_ready`, `torch.cuda.synchronize`).
    warmup: untimed calls after the first one.
    steps: timed calls.

  Returns:
    first_step_s (the first call, including any lazy compilation) and
    step_ms (one wall-clock time per timed call, device work included).
  """
  start = time.perf_counter()
  wait(step())
  first = time.perf_counter() - start
  for _ in range(warmup):
    wait(step())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    wait(step())
    times.append((time.perf_counter() - start) * 1e3)
  return {'first_step_s': first, 'step_ms': times}


def summarise_times(timing: dict[str, Any], batch: int) -> dict[str, Any]:
  """Adds median / quartiles / samples per second to a `time_steps` result."""
  times = timing['step_ms']
  median = statistics.median(times)
  # 'inclusive' interpolates between measured times; the default
  # 'exclusive' extrapolates beyond them for few steps (even below zero).
  quartiles = (statistics.quantiles(times, n=4, method='inclusive')
               if len(times) > 1 else [times[0]] * 3)
  return {
      **timing,
      'step_ms_median': median,
      'step_ms_q1': quartiles[0],
      'step_ms_q3': quartiles[2],
      'step_ms_min': min(times),
      'samples_per_s': batch / (median / 1e3),
  }


def host_peak_rss_bytes() -> int:
  """Peak resident memory of this process so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
  """Writes JSON to a temporary file next to `path`, then renames it."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with atomic_output.atomic_output(path, 'w') as f:
    json.dump(data, f, indent=1, sort_keys=False)
    f.write('\n')


def is_out_of_memory(error: BaseException) -> bool:
  """Whether an exception is a device out-of-memory error (either side)."""
  text = f'{type(error).__name__}: {error}'
  return ('RESOURCE_EXHAUSTED' in text or 'OutOfMemoryError' in text or
          'out of memory' in text.lower())
