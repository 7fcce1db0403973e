"""A workdir checkpoint's parameters in the model of a config.

`load_model` restores the parameters of any checkpoint (training or
params-only), re-lays the layer stacks out to the model of the config
(a checkpoint of a scanned model loads into an unrolled one and back:
stacked leaves `layers/...` [depth, ...] <-> per-layer `layers/<i>/...`),
and checks every parameter path and shape against the abstract model's
parameter tree before anything is built. The checkpoint's saved model
config must agree with the config except for execution-only fields.
"""

from __future__ import annotations

from collections.abc import Mapping
import os
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from l2a_jax import checkpointing
from l2a_jax import models
from l2a_jax.inference import errors
from l2a_jax.models import stacking

_MAX_LISTED = 3


def _stacked_depths(flat: Mapping[str, Any],
                    stacked_modules: tuple[str, ...]) -> dict[str, int]:
  """Modules kept as one stacked leaf per parameter, with their depth."""
  depths = {}
  for module in stacked_modules:
    prefix = module + stacking.SEPARATOR
    leading = {tuple(v.shape)[0] for k, v in flat.items()
               if k.startswith(prefix) and tuple(v.shape)
               and not k[len(prefix):].split(stacking.SEPARATOR)[0].isdigit()}
    if len(leading) == 1:
      depths[module] = leading.pop()
  return depths


def relayout(saved: Mapping[str, Any], wanted: Mapping[str, Any],
             stacked_modules: tuple[str, ...]) -> dict[str, Any]:
  """Saved flat params in the stacking layout of `wanted` (flat dicts)."""
  per_layer = dict(saved)
  for module, depth in _stacked_depths(saved, stacked_modules).items():
    per_layer = stacking.unstack_layers(per_layer, (module,), depth)
  for module, depth in _stacked_depths(wanted, stacked_modules).items():
    per_layer = stacking.stack_layers(per_layer, (module,), depth)
  return per_layer


def _listed(names: list[str]) -> str:
  more = len(names) - _MAX_LISTED
  shown = ', '.join(names[:_MAX_LISTED])
  return f'{shown}, ... (+{more} more)' if more > 0 else shown


def check_against(source: str, got: Mapping[str, Any],
                  wanted: Mapping[str, Any]) -> None:
  """Raises a one-line InputError listing missing / extra / mis-shaped."""
  missing = [k for k in wanted if k not in got]
  unexpected = [k for k in got if k not in wanted]
  misshaped = [f'{k} {tuple(got[k].shape)} vs {tuple(wanted[k].shape)}'
               for k in wanted
               if k in got and tuple(got[k].shape) != tuple(wanted[k].shape)]
  parts = []
  if missing:
    parts.append(f'missing {len(missing)}: {_listed(missing)}')
  if unexpected:
    parts.append(f'unexpected {len(unexpected)}: {_listed(unexpected)}')
  if misshaped:
    parts.append(f'mis-shaped {len(misshaped)} (checkpoint vs model): '
                 f'{_listed(misshaped)}')
  if parts:
    raise errors.InputError(f'{source}: parameters do not match the model '
                            'of --config: ' + '; '.join(parts))


def load_model(model_config: ml_collections.ConfigDict,
               workdir: str | os.PathLike[str],
               step: int | None = None) -> tuple[nnx.Module, dict[str, Any]]:
  """Builds the model of `model_config` with a workdir checkpoint's weights.

  Args:
    model_config: the `config.model` section.
    workdir: run directory holding `checkpoints/`.
    step: which checkpoint; None = the latest.

  Returns:
    (model, meta): the model with the checkpoint's parameters (constants
    that are not parameters come from the model's own init) and the
    checkpoint's meta data.

  Raises:
    InputError: made with another model config, or the parameters do not
      fit this model config.
    checkpointing.UnusableCheckpointError: no usable checkpoint.
    FileNotFoundError: no checkpoint.
  """
  # The verified restore shared with training and --mode=eval: finite
  # arrays matching their recorded checksums, the same model config
  # (execution-only fields aside), the latest usable checkpoint.
  try:
    saved, meta = checkpointing.restore_params(workdir, None, step,
                                               model_config=model_config)
  except checkpointing.ModelConfigMismatchError as e:
    raise errors.InputError(str(e)) from e
  source = (f'{checkpointing.checkpoint_directory(workdir)}/'
            f'{meta.get("step", step)}')
  abstract = models.abstract_model(model_config)
  wanted = stacking.flatten_params(nnx.state(abstract, nnx.Param))
  stacked = tuple(getattr(type(abstract), 'STACKED_MODULES', ()))
  flat = stacking.flatten_params(saved)
  try:
    flat = relayout(flat, wanted, stacked)
  except ValueError as e:
    raise errors.InputError(f'{source}: {e}') from e
  check_against(source, flat, wanted)
  params = stacking.unflatten_params(
      {k: np.asarray(v).astype(wanted[k].dtype, copy=False)
       for k, v in flat.items()})
  return _model_with(model_config, abstract, params), meta


def _model_with(model_config: ml_collections.ConfigDict,
                abstract: nnx.Module, params: dict[str, Any]) -> nnx.Module:
  """The model carrying `params`; only its non-parameter constants (e.g.
  TCPFormer's fixed local layer scales) come from a jitted init, from which
  XLA drops the unused random draws."""
  graphdef, param_state, _ = nnx.split(abstract, nnx.Param, ...)

  def constants():
    built = models.create_model(model_config, nnx.Rngs(0))
    return nnx.split(built, nnx.Param, ...)[2]

  nnx.replace_by_pure_dict(param_state, jax.tree.map(jnp.asarray, params))
  return nnx.merge(graphdef, param_state, jax.jit(constants)())


def jitted_forward(model: nnx.Module):
  """`f(x)`: the deterministic model under `jax.jit`, NumPy in and out."""
  graphdef, state = nnx.split(model)
  forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
  return lambda x: np.asarray(forward(state, x))
