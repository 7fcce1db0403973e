"""Device mesh, shardings and host <-> global batch transfer.

Data parallelism is `jax.jit` over a one-axis `Mesh` ('data'): parameters and
optimizer state are replicated (`P()`), every batch array is split along its
leading (batch) axis (`P('data')`). Each process feeds only its own rows;
`global_batch` assembles them into one global `jax.Array` per field.

FSDP (`config.mesh.fsdp` = F > 1): the mesh is ('data', 'fsdp') of shape
(devices / F, F). The batch is split over both axes (every device still
gets its own rows), while every parameter and optimizer-state tensor is
split F ways along its largest dimension divisible by F (`state_shardings`;
tensors with no such dimension stay replicated). The step code is the same:
XLA all-gathers a layer's weights where they are used and reduce-scatters
the gradients, so a device holds 1/F of the train state.

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
FSDP_AXIS = 'fsdp'


def create_mesh(mesh_config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
  """The data-parallel (optionally FSDP) mesh from `config.mesh`.

  Args:
    mesh_config: `config.mesh`; `data` is the number of devices on the data
      axis, -1 for all devices (of all processes) / `fsdp`; `fsdp` (default
      1) the number of devices that share one copy of the train state. A
      mesh smaller than all devices (the first N) is allowed in a
      single-process run only.

  Returns:
    A `Mesh` ('data',) when fsdp is 1, else ('data', 'fsdp') of shape
    (data, fsdp).
  """
  devices = jax.devices()
  fsdp = int(mesh_config.get('fsdp', 1))
  if fsdp < 1 or len(devices) % fsdp:
    raise ValueError(
        f'config.mesh.fsdp={fsdp}: expected a divisor of the '
        f'{len(devices)} devices')
  data = int(mesh_config.data)
  if data == -1:
    data = len(devices) // fsdp
  size = data * fsdp
  if data < 1 or size > len(devices):
    raise ValueError(
        f'config.mesh.data: expected -1 or 1..{len(devices) // fsdp} '
        f'(devices / fsdp), got {mesh_config.data}'
    )
  if size != len(devices) and jax.process_count() > 1:
    raise ValueError(
        f'config.mesh.data={data} x fsdp={fsdp}: a multi-process run must '
        f'use all {len(devices)} devices (data=-1)'
    )
  if fsdp == 1:
    return jax.sharding.Mesh(np.asarray(devices[:size]), (DATA_AXIS,))
  return jax.sharding.Mesh(
      np.asarray(devices[:size]).reshape(data, fsdp), (DATA_AXIS, FSDP_AXIS))


def batch_axes(mesh: jax.sharding.Mesh) -> str | tuple[str, ...]:
  """The mesh axes the batch (leading) dimension is split over: all."""
  if tuple(mesh.axis_names) == (DATA_AXIS,):
    return DATA_AXIS
  return tuple(mesh.axis_names)


def fsdp_spec(shape: tuple[int, ...],
              fsdp_size: int) -> jax.sharding.PartitionSpec:
  """`P` splitting the largest dimension divisible by `fsdp_size` over fsdp.

  Args:
    shape: the tensor's shape.
    fsdp_size: devices on the 'fsdp' axis.

  Returns:
    `P()` (replicated) when `fsdp_size` is 1 or no dimension divides, else a
    spec with 'fsdp' at the chosen dimension (the last of equal sizes).
  """
  if fsdp_size == 1:
    return jax.sharding.PartitionSpec()
  candidates = [(size, axis) for axis, size in enumerate(shape)
                if size >= fsdp_size and size % fsdp_size == 0]
  if not candidates:
    return jax.sharding.PartitionSpec()
  _, axis = max(candidates)
  spec = [None] * len(shape)
  spec[axis] = FSDP_AXIS
  return jax.sharding.PartitionSpec(*spec)


def state_shardings(tree: Any, mesh: jax.sharding.Mesh) -> Any:
  """Shardings of train-state leaves (parameters, optimizer state).

  Args:
    tree: leaves with `.shape` (arrays or `jax.ShapeDtypeStruct`).
    mesh: the mesh of `create_mesh`.

  Returns:
    A tree of `NamedSharding` of the same structure: replicated without an
    'fsdp' axis, else `fsdp_spec` of each leaf's shape.
  """
  fsdp_size = dict(mesh.shape).get(FSDP_AXIS, 1)
  return jax.tree.map(
      lambda x: jax.sharding.NamedSharding(
          mesh, fsdp_spec(tuple(x.shape), fsdp_size)), tree)


def bytes_per_device(tree: Any) -> int:
  """Bytes of `tree`'s arrays that one device holds (its shards)."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shard_shape = leaf.sharding.shard_shape(leaf.shape)
    total += int(np.prod(shard_shape)) * leaf.dtype.itemsize
  return total


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Sharding of parameters and optimizer state: a full copy per device."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Sharding of batch arrays: the leading axis split over every device."""
  return jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(batch_axes(mesh))
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
