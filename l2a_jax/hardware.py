"""What a run is on: host description and peak FLOP/s for MFU.

Shared by the benchmark (`l2a_jax.benchmark`) and the trainer's throughput
log (`l2a_jax.throughput`); imports nothing of `l2a_jax`.

Peak rates are vendor datasheet numbers for dense (not 2:4 sparse) matrix
math, per device, in FLOP/s (one MAC = 2 FLOPs). They are an upper bound, not
a measured ceiling: model FLOP utilisation (MFU) = achieved model FLOP/s /
this peak. Unknown devices and CPUs get no peak (MFU is reported as null).
"""

from __future__ import annotations

import os
import platform

# Peak dense FLOP/s by matmul precision: 'bf16' (bfloat16 tensor cores),
# 'tf32' (float32 inputs on TF32 tensor cores) and 'fp32' (IEEE float32, no
# tensor cores). Sources: NVIDIA H100 / H200 / A100 datasheets.
_TERA = 1e12
_H100_SXM = {'bf16': 989.4 * _TERA, 'tf32': 494.7 * _TERA,
             'fp32': 66.9 * _TERA}
_H100_NVL = {'bf16': 835.5 * _TERA, 'tf32': 417.5 * _TERA,
             'fp32': 60.0 * _TERA}
PEAK_FLOPS = {
    'H100 SXM': _H100_SXM,
    'H100 PCIe': {'bf16': 756.5 * _TERA, 'tf32': 378.0 * _TERA,
                  'fp32': 51.2 * _TERA},
    'H100 NVL': _H100_NVL,
    # H200 has the H100's compute (SXM, NVL) with more, faster memory.
    'H200 SXM': _H100_SXM,
    'H200 NVL': _H100_NVL,
    'A100': {'bf16': 312.0 * _TERA, 'tf32': 156.0 * _TERA,
             'fp32': 19.5 * _TERA},
}


def gpu_model(device_name: str) -> str | None:
  """Maps a device name to a key of `PEAK_FLOPS`, or None if unknown.

  Args:
    device_name: what the framework reports, e.g. JAX `device_kind`
      'NVIDIA H100 80GB HBM3' or torch 'NVIDIA H200'.

  Returns:
    'H100 SXM', 'H100 PCIe', 'H100 NVL', 'H200 SXM', 'H200 NVL', 'A100' or
    None.
  """
  name = device_name.upper()
  if 'H100' in name:
    if 'PCIE' in name:
      return 'H100 PCIe'
    if 'NVL' in name:
      return 'H100 NVL'
    return 'H100 SXM'
  if 'H200' in name:  # Also GH200.
    return 'H200 NVL' if 'NVL' in name else 'H200 SXM'
  if 'A100' in name:
    return 'A100'
  return None


def matmul_precision_class(dtype: str, fp32_matmul: str) -> str:
  """Which peak applies: 'bf16', 'tf32' or 'fp32'.

  Args:
    dtype: compute dtype of the run, 'float32' | 'bfloat16'.
    fp32_matmul: how float32 matmuls run, 'highest' (IEEE) | 'tf32'.
  """
  if dtype == 'bfloat16':
    return 'bf16'
  return 'tf32' if fp32_matmul == 'tf32' else 'fp32'


def peak_flops(device_name: str, dtype: str, fp32_matmul: str) -> float | None:
  """Datasheet peak FLOP/s of one device, or None (CPU, unknown GPU)."""
  model = gpu_model(device_name)
  if model is None:
    return None
  return PEAK_FLOPS[model][matmul_precision_class(dtype, fp32_matmul)]


def model_flops_utilisation(macs_per_sample: float | None,
                            samples_per_s: float | None, mode: str,
                            peak: float | None) -> float | None:
  """MFU of a run: 2 FLOPs per MAC, x3 for training (forward + backward).

  The backward pass of a matmul costs two matmuls of the forward's size, the
  usual 6 N rule for training. Rematerialisation or a custom VJP that
  recomputes the forward is not counted as model FLOPs (it is overhead).

  Args:
    macs_per_sample: forward MACs of one clip.
    samples_per_s: measured throughput.
    mode: 'train' | 'infer'.
    peak: peak FLOP/s of the device (None on CPU / unknown devices).

  Returns:
    A fraction in [0, 1] in principle, or None when anything is unknown.
  """
  if peak is None or macs_per_sample is None or samples_per_s is None:
    return None
  passes = 3 if mode == 'train' else 1
  return 2.0 * passes * macs_per_sample * samples_per_s / peak


def host_description() -> dict[str, object]:
  """CPU model, usable logical cores and physical memory of this host."""
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('model name'):
          cpu = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  memory = None
  try:
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    pass
  try:
    cores = len(os.sched_getaffinity(0))  # The cores this process may use.
  except AttributeError:
    cores = os.cpu_count()
  return {
      'cpu': cpu,
      'cpu_cores': cores,
      'memory_bytes': memory,
      'os': platform.platform(),
      'python': platform.python_version(),
  }
