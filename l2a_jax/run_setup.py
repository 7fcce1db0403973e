"""What training and evaluation set up alike: config checks, mesh, model, data.

`train.train_and_evaluate` and `evaluate.evaluate_checkpoint` both start
from here, so neither imports the other for it:

- `create_mesh(config)`: the device mesh of `config.mesh`, with the config
  checked against it (one-line `ValueError` naming the field);
- `load_datasets(config)`: this process's training and test pipelines;
- `abstract_model_state(config, mesh)`: graph definition, parameter shapes
  (a restore target with the replicated sharding) and constants;
- `init_params(config, mesh)`: fresh parameters, born replicated;
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


def check_config(config: ml_collections.ConfigDict,
                 mesh: jax.sharding.Mesh) -> None:
  """Raises a one-line ValueError naming the first inconsistent field."""
  if config.data.num_frames != config.model.num_frames:
    raise ValueError(
        f'config.data.num_frames={config.data.num_frames} must equal '
        f'config.model.num_frames={config.model.num_frames}'
    )
  accumulation = int(config.optim.accumulation_steps)
  if accumulation < 1:
    raise ValueError(
        f'config.optim.accumulation_steps must be >= 1, got {accumulation}'
    )
  batch = int(config.data.batch_size)
  devices = mesh.devices.size
  if batch % (accumulation * devices):
    raise ValueError(
        f'config.data.batch_size={batch} must be divisible by '
        f'accumulation_steps x devices = {accumulation} x {devices}'
    )
  sharding.process_batch_size(batch, mesh)
  sharding.process_batch_size(
      int(config.data.eval_batch_size), mesh, 'config.data.eval_batch_size'
  )
  for key in losses.TERMS:
    if key not in config.loss:
      raise ValueError(f'config.loss.{key} is missing')
  if config.train.keep_checkpoints < 1:
    raise ValueError(
        f'config.train.keep_checkpoints must be >= 1, got '
        f'{config.train.keep_checkpoints}'
    )


def create_mesh(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
  """The mesh of `config.mesh`, after checking `config` against it."""
  mesh = sharding.create_mesh(config.mesh)
  check_config(config, mesh)
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
    `jax.ShapeDtypeStruct` carrying the replicated sharding (a restore
    target), `rest` the model's non-parameter state (constants) as a pure
    dict of replicated arrays.
  """
  graphdef, abstract_params, abstract_rest = nnx.split(
      models.abstract_model(config.model), nnx.Param, ...)
  replicated = sharding.replicated(mesh)
  abstract_params = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
      nnx.to_pure_dict(abstract_params),
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
  """Initial parameters, created directly with the replicated sharding."""
  return jax.jit(
      lambda: nnx.to_pure_dict(
          _create_split_model(config.model, config.seed)[1]),
      out_shardings=sharding.replicated(mesh),
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
