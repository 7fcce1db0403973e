"""What training and evaluation set up alike: config checks, mesh, model, data.

`train.train_and_evaluate` and `evaluate.evaluate_checkpoint` both start
from here, so neither imports the other for it:

- `create_mesh(config)`: the device mesh of `config.mesh`, with the config
  checked against it (one-line `ValueError` naming the field) and its
  device-dependent fields resolved (`accumulation_steps` = -1: chosen from
  `optim.max_per_device_batch`, `batch_split`);
- `load_datasets(config)`: this process's training and test pipelines;
- `abstract_model_state(config, mesh)`: graph definition, parameter shapes
  (a restore target with the train-state sharding: replicated, or split
  over 'fsdp') and constants;
- `init_params(config, mesh)`: fresh parameters, born with that sharding;
- `enable_compilation_cache(config, workdir)`: XLA's persistent cache.
"""

import os
from typing import Any

from absl import logging
from flax import nnx
import jax
import ml_collections

from l2a_jax import losses
from l2a_jax import models
from l2a_jax import sharding
from l2a_jax.data import input_pipeline


# ---------------------------------------------------------------------------
# Config checks and mesh.
# ---------------------------------------------------------------------------


def batch_split(global_batch: int, num_devices: int, accumulation: int,
                max_per_device_batch: int) -> int:
  """Micro-batches per step so that a step fits on `num_devices` devices.

  Each optimizer step takes `global_batch` rows; they are split into
  `accumulation` micro-batches of `global_batch / accumulation` rows, each
  spread evenly over the devices. With `accumulation` = -1 (auto) the
  smallest count is chosen whose micro-batch puts at most
  `max_per_device_batch` rows on a device (0 = no bound: 1 micro-batch), so
  the same config (the same global batch, the same recipe) starts on 1 or 8
  devices: TCPFormer's 16 rows run as 4 x 4 on one device, 1 x 2 per device
  on 8.

  Args:
    global_batch: `config.data.batch_size`.
    num_devices: devices the batch is split over.
    accumulation: `config.optim.accumulation_steps` (>= 1, or -1 = auto).
    max_per_device_batch: `config.optim.max_per_device_batch` (>= 0).

  Returns:
    The number of micro-batches (>= 1). Raises a one-line ValueError naming
    the field when no split works.
  """
  if global_batch < 1:
    raise ValueError(f'config.data.batch_size must be >= 1, got {global_batch}')
  if global_batch % num_devices:
    hint = (' (fewer rows than devices: raise the global batch, e.g. '
            'configs/large_batch.py, or use fewer devices)'
            if global_batch < num_devices else '')
    raise ValueError(
        f'config.data.batch_size={global_batch} must be divisible by the '
        f'{num_devices} devices{hint}')
  if accumulation == -1:
    if max_per_device_batch < 0:
      raise ValueError('config.optim.max_per_device_batch must be >= 0, got '
                       f'{max_per_device_batch}')
    per_device = global_batch // num_devices
    if max_per_device_batch == 0:
      return 1
    for count in range(1, per_device + 1):
      if per_device % count == 0 and per_device // count <= max_per_device_batch:
        return count
  if accumulation < 1:
    raise ValueError(
        f'config.optim.accumulation_steps must be >= 1 or -1 (auto), got '
        f'{accumulation}')
  if global_batch % (accumulation * num_devices):
    raise ValueError(
        f'config.data.batch_size={global_batch} must be divisible by '
        f'accumulation_steps x devices = {accumulation} x {num_devices} '
        f'(accumulation_steps=-1 chooses it from optim.max_per_device_batch)')
  return accumulation


def resolve_for_mesh(config: ml_collections.ConfigDict,
                     mesh: jax.sharding.Mesh) -> None:
  """Fills the device-dependent fields of `config` in place.

  `optim.accumulation_steps` = -1 becomes the count `batch_split` chooses
  (logged, and what TensorBoard's hyper-parameters show), and
  `data.eval_batch_size` is rounded up to a multiple of the devices (the
  last evaluation batch is padded and masked, so the metrics do not
  change).
  """
  devices = mesh.devices.size
  accumulation = batch_split(
      int(config.data.batch_size), devices,
      int(config.optim.accumulation_steps),
      int(config.optim.get('max_per_device_batch', 0)))
  if accumulation != config.optim.accumulation_steps:
    logging.info('Gradient accumulation: %d micro-batches of %d rows (%d '
                 'per device).', accumulation,
                 config.data.batch_size // accumulation,
                 config.data.batch_size // accumulation // devices)
    config.optim.accumulation_steps = accumulation
  eval_batch = int(config.data.eval_batch_size)
  rounded = -(-eval_batch // devices) * devices
  if rounded != eval_batch:
    logging.info('config.data.eval_batch_size %d -> %d (a multiple of the %d '
                 'devices).', eval_batch, rounded, devices)
    config.data.eval_batch_size = rounded


def check_config(config: ml_collections.ConfigDict,
                 mesh: jax.sharding.Mesh) -> None:
  """Raises a one-line ValueError naming the first inconsistent field."""
  if config.data.num_frames != config.model.num_frames:
    raise ValueError(
        f'config.data.num_frames={config.data.num_frames} must equal '
        f'config.model.num_frames={config.model.num_frames}'
    )
  accumulation = int(config.optim.accumulation_steps)
  batch = int(config.data.batch_size)
  devices = mesh.devices.size
  batch_split(batch, devices, accumulation,
              int(config.optim.get('max_per_device_batch', 0)))
  sharding.process_batch_size(batch, mesh)
  eval_batch = int(config.data.eval_batch_size)
  if eval_batch < 1:
    raise ValueError(
        f'config.data.eval_batch_size must be >= 1, got {eval_batch}')
  for key in losses.TERMS:
    if key not in config.loss:
      raise ValueError(f'config.loss.{key} is missing')
  if config.train.keep_checkpoints < 1:
    raise ValueError(
        f'config.train.keep_checkpoints must be >= 1, got '
        f'{config.train.keep_checkpoints}'
    )


def create_mesh(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
  """The mesh of `config.mesh`; checks `config` and resolves it for the mesh.

  After the call `config.optim.accumulation_steps` is >= 1 and
  `config.data.eval_batch_size` a multiple of the devices
  (`resolve_for_mesh`).
  """
  mesh = sharding.create_mesh(config.mesh)
  check_config(config, mesh)
  resolve_for_mesh(config, mesh)
  return mesh


# ---------------------------------------------------------------------------
# Data, model and parameters.
# ---------------------------------------------------------------------------


def load_datasets(config: ml_collections.ConfigDict) -> input_pipeline.Datasets:
  """The training and test pipelines of `config.data` for this process."""
  return input_pipeline.get_datasets(config.data, seed=config.seed)


def _create_split_model(model_config: ml_collections.ConfigDict, seed: int):
  model = models.create_model(model_config, nnx.Rngs(seed))
  return nnx.split(model, nnx.Param, ...)


def abstract_model_state(
    config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh
) -> tuple[nnx.GraphDef, Any, Any]:
  """The model's graph definition, parameter shapes and other state.

  Args:
    config: run config (`model`, `seed`).
    mesh: the data mesh.

  Returns:
    `(graphdef, abstract_params, rest)`: `abstract_params` a pure dict of
    `jax.ShapeDtypeStruct` carrying the train-state sharding
    (`sharding.state_shardings`: replicated, or split over 'fsdp'; a
    restore target), `rest` the model's non-parameter state (constants) as a pure
    dict of replicated arrays.
  """
  graphdef, abstract_params, abstract_rest = nnx.split(
      models.abstract_model(config.model), nnx.Param, ...)
  replicated = sharding.replicated(mesh)
  abstract_params = nnx.to_pure_dict(abstract_params)
  abstract_params = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      abstract_params, sharding.state_shardings(abstract_params, mesh),
  )
  rest = {}
  if jax.tree.leaves(abstract_rest):
    rest = jax.jit(
        lambda: nnx.to_pure_dict(
            _create_split_model(config.model, config.seed)[2]),
        out_shardings=replicated,
    )()
  return graphdef, abstract_params, rest


def init_params(config: ml_collections.ConfigDict,
                mesh: jax.sharding.Mesh) -> Any:
  """Initial parameters, created directly with the train-state sharding."""
  abstract = nnx.to_pure_dict(
      nnx.split(models.abstract_model(config.model), nnx.Param, ...)[1])
  return jax.jit(
      lambda: nnx.to_pure_dict(
          _create_split_model(config.model, config.seed)[1]),
      out_shardings=sharding.state_shardings(abstract, mesh),
  )()


# ---------------------------------------------------------------------------
# Compilation cache.
# ---------------------------------------------------------------------------


def compilation_cache_dir(config: ml_collections.ConfigDict,
                          workdir: str) -> str | None:
  """Where XLA's persistent compilation cache lives, or None (off).

  `config.train.compilation_cache_dir`: 'auto' (the default, also when the
  field is absent) = `~/.cache/l2a_jax/jax_compilation_cache`; '' = off;
  a relative path is relative to the workdir (e.g. '../xla_cache': next to
  the run directories); otherwise a directory or a URL (gs://bucket/cache).
  """
  value = str(config.train.get('compilation_cache_dir', 'auto'))
  if not value:
    return None
  if value == 'auto':
    return os.path.join(os.path.expanduser('~'), '.cache', 'l2a_jax',
                        'jax_compilation_cache')
  if '://' in value or os.path.isabs(value):
    return value
  return os.path.normpath(os.path.join(workdir, value))


def enable_compilation_cache(config: ml_collections.ConfigDict,
                             workdir: str) -> None:
  """Turns on JAX's persistent compilation cache (`compilation_cache_dir`).

  A rerun, a resumed run or an evaluation of the same model then loads the
  compiled train and eval steps instead of compiling them again (minutes
  for the full-size models). JAX caches programs that took at least
  `jax_persistent_cache_min_compile_time_secs` (1 s) to compile.
  """
  path = compilation_cache_dir(config, workdir)
  if path is None:
    return
  if '://' not in path:
    os.makedirs(path, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', path)
  logging.info('Persistent compilation cache: %s', path)
