"""Throughput accounting of a training run: step time, clips/s, MFU, wall time.

- `rate_scalars(...)`: what every training log line and TensorBoard get:
  `step_time_s` (wall seconds per step over the logging window, evaluation
  and checkpointing excluded), `clips_per_second` (global) and
  `clips_per_second_per_device`, and `mfu` where the device's peak is known
  (`l2a_jax/hardware.py`: NVIDIA H100 / H200 / A100; none on CPU or TPU).
  MFU here is the XLA-counted FLOPs of the compiled step per device
  (`compiled.cost_analysis()`, so recomputation under remat counts) divided
  by step time x peak FLOP/s.
- `WallClock`: splits a run's wall time into compilation, input waiting
  (the next batch from the host pipeline and its transfer), checkpointing
  (the blocking part of the saves), evaluation and the rest (training
  steps, logging); `summary()` is the line the run ends with.
- `write_run_summary(...)`: the same split plus the run's mean training
  rates as `WORKDIR/run_summary.json`, for tools that compare runs
  (launch/batch_scaling.sh).
"""

import contextlib
import json
import time
from typing import Any, Iterator

from etils import epath
import jax

from l2a_jax import atomic_output
from l2a_jax import hardware

CATEGORIES = ('compilation', 'input', 'checkpointing', 'evaluation')


def step_flops_per_device(compiled: Any) -> float | None:
  """XLA's FLOP count of one call of a compiled step on one device."""
  try:
    analysis = compiled.cost_analysis()
  except (NotImplementedError, RuntimeError):
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or 'flops' not in analysis:
    return None
  flops = float(analysis['flops'])
  return flops if flops > 0 else None


def device_peak_flops(dtype: str) -> float | None:
  """Datasheet peak FLOP/s of this run's devices, None when not known.

  Args:
    dtype: the model's compute dtype ('float32' | 'bfloat16'); float32
      matmuls count at the TF32 rate unless JAX's default matmul precision
      is 'highest'/'float32'.
  """
  precision = str(jax.config.jax_default_matmul_precision or '').lower()
  fp32_matmul = 'highest' if precision in ('highest', 'float32') else 'tf32'
  return hardware.peak_flops(jax.devices()[0].device_kind, dtype, fp32_matmul)


def rate_scalars(steps: int, seconds: float, global_batch: int,
                 num_devices: int, flops_per_device_step: float | None,
                 peak_flops: float | None) -> dict[str, float]:
  """Step time, clips/s (global, per device) and MFU over a window.

  Args:
    steps: training steps in the window.
    seconds: their wall time (evaluation and checkpointing excluded).
    global_batch: clips per step over all devices.
    num_devices: devices of the mesh.
    flops_per_device_step: `step_flops_per_device` (None: no MFU).
    peak_flops: `device_peak_flops` (None: no MFU).

  Returns:
    `{step_time_s, clips_per_second, clips_per_second_per_device[, mfu]}`.
  """
  step_time = seconds / max(steps, 1)
  clips = global_batch / max(step_time, 1e-12)
  scalars = {'step_time_s': step_time, 'clips_per_second': clips,
             'clips_per_second_per_device': clips / num_devices}
  if flops_per_device_step and peak_flops:
    scalars['mfu'] = flops_per_device_step / max(step_time, 1e-12) / peak_flops
  return scalars


class WallClock:
  """Wall time of a run, split into `CATEGORIES` and the rest."""

  def __init__(self):
    self._start = time.perf_counter()
    self.seconds = dict.fromkeys(CATEGORIES, 0.0)

  @contextlib.contextmanager
  def timed(self, category: str) -> Iterator[None]:
    """Adds the wall time of the `with` body to `category`."""
    if category not in self.seconds:
      raise ValueError(f'unknown wall-time category {category!r}; expected '
                       f'one of {CATEGORIES}')
    start = time.perf_counter()
    try:
      yield
    finally:
      self.seconds[category] += time.perf_counter() - start

  def totals(self) -> dict[str, float]:
    """`{total, compilation, input, checkpointing, evaluation, training}`."""
    total = time.perf_counter() - self._start
    rest = max(total - sum(self.seconds.values()), 0.0)
    return {'total': total, **self.seconds, 'training': rest}

  def summary(self) -> str:
    """'Wall time 12.3 s: compilation 4.0 s (33%), input ...'."""
    totals = self.totals()
    total = totals.pop('total')
    parts = ', '.join(f'{name} {value:.1f} s ({100 * value / max(total, 1e-9):.0f}%)'
                      for name, value in totals.items())
    return f'Wall time {total:.1f} s: {parts}'


RUN_SUMMARY_FILE = 'run_summary.json'


def write_run_summary(workdir: str, totals: dict[str, float], steps: int,
                      global_batch: int) -> str:
  """Writes `WORKDIR/run_summary.json` (process 0 only, write then rename).

  Args:
    workdir: the run directory (local or a URL such as gs://bucket/run).
    totals: `WallClock.totals()` of the run.
    steps: training steps taken by this run (since its start or restart).
    global_batch: clips per optimizer step.

  Returns:
    The file path. Keys: `wall_seconds` (the totals), `steps`,
    `global_batch`, `train_steps_per_second` and `train_clips_per_second`
    (steps over the 'training' seconds: compilation, input waiting,
    checkpointing and evaluation excluded).
  """
  training = max(totals['training'], 1e-9)
  summary = {
      'wall_seconds': {k: round(v, 3) for k, v in totals.items()},
      'steps': int(steps),
      'global_batch': int(global_batch),
      'train_steps_per_second': steps / training,
      'train_clips_per_second': steps * global_batch / training,
  }
  path = epath.Path(workdir) / RUN_SUMMARY_FILE
  if jax.process_index() == 0:
    atomic_output.replace_file(
        path, json.dumps(summary, indent=2, sort_keys=True) + '\n')
  return str(path)
