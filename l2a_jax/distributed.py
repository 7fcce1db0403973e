"""The one place that decides about `jax.distributed.initialize()`.

A multi-process run (TPU pod slice, several GPU hosts, N local CPU
processes) runs the same `python -m l2a_jax.main` command in every process;
each process must call `jax.distributed.initialize()` before anything else
touches JAX devices. `decide(...)` picks how, in this order:

1. explicit settings: `--coordinator_address`, `--num_processes`,
   `--process_id` (flags of `main`), or the environment variables
   `L2A_JAX_COORDINATOR_ADDRESS`, `L2A_JAX_NUM_PROCESSES`,
   `L2A_JAX_PROCESS_ID` (what `launch/local.sh` sets);
2. `--distributed` / `--nodistributed` or `L2A_JAX_DISTRIBUTED=1|0`:
   force initialisation on (JAX's own cluster detection finds the
   coordinator) or off;
3. auto-detection: a SLURM job step with more than one task
   (`SLURM_JOB_ID` and `SLURM_NTASKS` > 1), or a Cloud TPU VM (`libtpu`
   installed and a TPU device node present) -- JAX reads the coordinator
   from the SLURM environment or the TPU metadata server;
4. otherwise: a single process, no initialisation.

`initialize(decision)` then calls JAX and `describe()` returns the line that
`main` logs: process index and count, local and global devices.
"""

import dataclasses
import glob
import importlib.util
import os
from typing import Mapping

from absl import logging

# Environment variables (the same meaning as the flags of `main`).
ENV_DISTRIBUTED = 'L2A_JAX_DISTRIBUTED'
ENV_COORDINATOR = 'L2A_JAX_COORDINATOR_ADDRESS'
ENV_NUM_PROCESSES = 'L2A_JAX_NUM_PROCESSES'
ENV_PROCESS_ID = 'L2A_JAX_PROCESS_ID'


@dataclasses.dataclass(frozen=True)
class Decision:
  """How (and whether) this process joins a multi-process run.

  Attributes:
    initialize: whether to call `jax.distributed.initialize()`.
    reason: why, for the log ('explicit coordinator', 'SLURM', ...).
    coordinator_address: 'host:port' of process 0, or None for JAX's
      cluster detection.
    num_processes: number of processes (with `coordinator_address`).
    process_id: this process (with `coordinator_address`).
  """

  initialize: bool
  reason: str
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None


def _int_or_none(value: str | int | None, name: str) -> int | None:
  if value is None or value == '':
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f'{name}: expected an integer, got {value!r}') from None


def _on_cloud_tpu_vm() -> bool:
  """libtpu installed and a TPU device node present (a Cloud TPU VM)."""
  if importlib.util.find_spec('libtpu') is None:
    return False
  return bool(glob.glob('/dev/accel*') or glob.glob('/dev/vfio/[0-9]*'))


def decide(
    *,
    distributed: bool | None = None,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: Mapping[str, str] | None = None,
    on_cloud_tpu_vm: bool | None = None,
) -> Decision:
  """Decides about distributed initialisation (order in the module doc).

  Args:
    distributed: `--distributed` (True), `--nodistributed` (False) or not
      given (None: environment, then auto-detection).
    coordinator_address: `--coordinator_address`, 'host:port'.
    num_processes: `--num_processes`.
    process_id: `--process_id`.
    environ: the environment (default `os.environ`).
    on_cloud_tpu_vm: override of the TPU VM detection (tests).

  Returns:
    The decision. Raises ValueError (one line) on an incomplete explicit
    setting.
  """
  env = os.environ if environ is None else environ
  coordinator_address = coordinator_address or env.get(ENV_COORDINATOR) or None
  num_processes = (num_processes if num_processes is not None else
                   _int_or_none(env.get(ENV_NUM_PROCESSES), ENV_NUM_PROCESSES))
  process_id = (process_id if process_id is not None else
                _int_or_none(env.get(ENV_PROCESS_ID), ENV_PROCESS_ID))
  if distributed is None and env.get(ENV_DISTRIBUTED, '') in ('0', '1'):
    distributed = env[ENV_DISTRIBUTED] == '1'

  if coordinator_address:
    if distributed is False:
      return Decision(False, 'switched off (--nodistributed)')
    if num_processes is None or process_id is None:
      raise ValueError(
          f'coordinator address {coordinator_address} given without '
          f'num_processes ({num_processes}) and process_id ({process_id})')
    if not 0 <= process_id < num_processes:
      raise ValueError(
          f'process_id={process_id}: expected 0..{num_processes - 1}')
    return Decision(True, 'explicit coordinator', coordinator_address,
                    num_processes, process_id)
  if num_processes is not None or process_id is not None:
    raise ValueError(
        'num_processes / process_id given without a coordinator address '
        f'(--coordinator_address or {ENV_COORDINATOR})')
  if distributed is not None:
    return Decision(distributed, 'forced on (JAX cluster detection)'
                    if distributed else 'switched off')
  if 'SLURM_JOB_ID' in env and _int_or_none(
      env.get('SLURM_NTASKS'), 'SLURM_NTASKS') not in (None, 1):
    return Decision(True, f"SLURM job {env['SLURM_JOB_ID']} with "
                    f"{env['SLURM_NTASKS']} tasks")
  if on_cloud_tpu_vm is None:
    on_cloud_tpu_vm = _on_cloud_tpu_vm()
  if on_cloud_tpu_vm:
    return Decision(True, 'Cloud TPU VM')
  return Decision(False, 'single process (nothing detected)')


def initialize(decision: Decision) -> None:
  """Calls `jax.distributed.initialize()` as `decision` says."""
  logging.info('Distributed initialisation: %s (%s).',
               'yes' if decision.initialize else 'no', decision.reason)
  if not decision.initialize:
    return
  import jax  # pylint: disable=g-import-not-at-top
  kwargs = {}
  if decision.coordinator_address:
    kwargs = dict(coordinator_address=decision.coordinator_address,
                  num_processes=decision.num_processes,
                  process_id=decision.process_id)
  jax.distributed.initialize(**kwargs)


def describe() -> str:
  """'process I of N; L local / G global devices: [...]' (after init)."""
  import jax  # pylint: disable=g-import-not-at-top
  return (f'process {jax.process_index()} of {jax.process_count()}; '
          f'{jax.local_device_count()} local / {jax.device_count()} global '
          f'devices ({jax.default_backend()}): {jax.local_devices()}')
