"""Device mesh, shardings and host <-> global batch transfer.

Data parallelism is `jax.jit` over a one-axis `Mesh` ('data'): parameters and
optimizer state are replicated (`P()`), every batch array is split along its
leading (batch) axis (`P('data')`). Each process feeds only its own rows;
`global_batch` assembles them into one global `jax.Array` per field.

This replaces the pmap idiom: no `replicate` / `unreplicate`, no
`[devices, per_device, ...]` reshapes and no `pmean` in the step. The
gradient of a mean over a globally sharded batch already is the all-device
mean; XLA inserts the all-reduce.
"""

from typing import Any, Mapping

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

DATA_AXIS = 'data'


def create_mesh(mesh_config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
  """The data-parallel mesh from `config.mesh`.

  Args:
    mesh_config: `config.mesh`; `data` is the number of devices on the data
      axis, -1 for all devices of all processes. A smaller number (the first
      N devices) is allowed in a single-process run only.

  Returns:
    A one-axis `Mesh` named 'data'.
  """
  devices = jax.devices()
  size = int(mesh_config.data)
  if size == -1:
    size = len(devices)
  if size < 1 or size > len(devices):
    raise ValueError(
        f'config.mesh.data: expected -1 or 1..{len(devices)} devices, '
        f'got {mesh_config.data}'
    )
  if size != len(devices) and jax.process_count() > 1:
    raise ValueError(
        f'config.mesh.data={size}: a multi-process run must use all '
        f'{len(devices)} devices (-1)'
    )
  return jax.sharding.Mesh(np.asarray(devices[:size]), (DATA_AXIS,))


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Sharding of parameters and optimizer state: a full copy per device."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Sharding of batch arrays: the leading axis split over 'data'."""
  return jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(DATA_AXIS)
  )


def process_batch_size(global_batch_size: int, mesh: jax.sharding.Mesh,
                       name: str = 'config.data.batch_size') -> int:
  """Rows each process feeds per step; checks every split is even.

  Args:
    global_batch_size: the batch over all devices.
    mesh: the data mesh.
    name: the config key, for the error message.

  Returns:
    `global_batch_size // jax.process_count()`.
  """
  devices = mesh.devices.size
  processes = jax.process_count()
  if global_batch_size % devices or global_batch_size % processes:
    raise ValueError(
        f'{name}={global_batch_size} must be divisible by the {devices} '
        f'devices of the mesh (and the {processes} processes); per device it '
        f'would be {global_batch_size / devices:g}'
    )
  return global_batch_size // processes


def global_batch(
    local_batch: Mapping[str, np.ndarray],
    mesh: jax.sharding.Mesh,
    keys: tuple[str, ...] | None = None,
) -> dict[str, jax.Array]:
  """Assembles per-process NumPy rows into globally sharded arrays.

  Args:
    local_batch: this process's rows, every field `[b_local, ...]`.
    mesh: the data mesh.
    keys: which fields to transfer (default: all).

  Returns:
    `{field: jax.Array [b_local * process_count, ...]}` sharded over 'data'.
  """
  sharding = batch_sharding(mesh)
  keys = tuple(local_batch) if keys is None else keys
  return {
      key: jax.make_array_from_process_local_data(
          sharding, np.asarray(local_batch[key])
      )
      for key in keys
  }


def to_host(tree: Any) -> Any:
  """Fetches (possibly multi-process) global arrays as full NumPy arrays.

  Every process gets the whole array; use for small per-batch outputs such as
  evaluation errors, not for parameters.
  """

  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)

  return jax.tree.map(fetch, tree)
