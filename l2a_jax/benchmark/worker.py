"""One benchmark measurement in a process of its own.

`python -m l2a_jax.benchmark` starts this module once per (framework, model,
mode, dtype) so that measurements cannot disturb each other: JAX's
`peak_bytes_in_use` is a high-water mark over the life of a process, XLA on
GPU preallocates most of the device memory (which would starve a PyTorch run
in the same process), and each framework's caches and thread pools start
fresh.

  python -m l2a_jax.benchmark.worker SPEC.json RESULT.json

SPEC.json is written by `l2a_jax.benchmark` (keys in
`l2a_jax.benchmark.common`); the result
is written atomically to RESULT.json. Torch is imported only for torch
measurements and JAX only for JAX ones.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from l2a_jax.benchmark import common


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
  """Runs one measurement and returns its result dict."""
  # Imported here so that a torch measurement never imports the JAX model
  # code and a JAX measurement never imports torch.
  if spec['framework'] == 'jax':
    from l2a_jax.benchmark import jax_side  # pylint: disable=g-import-not-at-top
    module = jax_side
  else:
    from l2a_jax.benchmark import torch_side  # pylint: disable=g-import-not-at-top
    module = torch_side
  measure = {'steps': module.measure_steps,
             'memory_vs_depth': module.measure_memory_vs_depth,
             'linear_products': module.measure_linear_products}.get(
                 spec['kind'])
  if measure is None:
    raise ValueError(f"spec kind: expected 'steps' | 'memory_vs_depth' | "
                     f"'linear_products', got {spec['kind']!r}")
  # Other processes on the host distort CPU timings badly (PyTorch's OpenMP
  # threads spin when they lose their core): record the load around the run.
  load_before = os.getloadavg()[0]
  result = measure(spec)
  result['host_load_1min'] = [load_before, os.getloadavg()[0]]
  return result


def main(argv: list[str]) -> int:
  if len(argv) != 3:
    print('usage: python -m l2a_jax.benchmark.worker SPEC.json RESULT.json',
          file=sys.stderr)
    return 2
  with open(argv[1], encoding='utf-8') as f:
    spec = json.load(f)
  try:
    result = run_spec(spec)
  except Exception as e:  # pylint: disable=broad-except
    # An out-of-memory run is a result ("does not fit"), not a crash of the
    # benchmark; anything else is reported by the parent and fails the run.
    message = f'{type(e).__name__}: {e}'.splitlines()[0][:500]
    result = {'error': message, 'out_of_memory': common.is_out_of_memory(e)}
    if not result['out_of_memory']:
      import traceback  # pylint: disable=g-import-not-at-top
      traceback.print_exc()
  common.write_json_atomic(argv[2], result)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
