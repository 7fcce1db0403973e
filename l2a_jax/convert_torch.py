r"""PyTorch state_dict <-> Orbax checkpoint, for TCPFormer and L2A.

Official TCPFormer checkpoint (or a state_dict of our PyTorch reference) to a
params-only Orbax checkpoint that training, evaluation and `predict` load:

  python -m l2a_jax.convert_torch --config configs/tcpformer_h36m.py \
      --checkpoint TCPFormer_h36m_243_379.pth.tr --workdir /tmp/tcp243

Back from a workdir (its latest checkpoint, or `--step`) to a PyTorch
state_dict file that `l2a_jax.torch_reference` models load with
`load_state_dict(strict=True)`:

  python -m l2a_jax.convert_torch --direction=to_torch \
      --config configs/tcpformer_h36m.py --workdir /tmp/tcp243 \
      --output tcp243_state_dict.pt

The mapping is the parameter naming rule of docs/architecture.md, the same
for both models: the JAX path is the torch key with '.' -> '/', a Linear
`kernel` [in, out] is the transposed torch `weight` (out, in), a norm `scale`
is the torch `weight`, everything else keeps its name and shape; the
per-layer torch keys `layers.{i}.*` of a module listed in the model class's
`STACKED_MODULES` are stacked on a leading axis of size depth (both JAX
models keep their layers stacked, scanned or not; a tree with one subtree
per layer, `layers/{i}/*`, is mapped as well). The fused `qkv` Linear keeps the official output
order s * C + h * head_dim + d (s in q, k, v) on both sides, so it is a plain
transpose as well.

Torch files are read with `torch.load(..., weights_only=True)`; the only
non-tensor objects allowed besides the PyTorch defaults are NumPy scalars
(the official training checkpoints store `min_mpjpe` as one).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
import os
import pathlib
import sys
from typing import Any

from absl import flags
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np

from l2a_jax import atomic_output
from l2a_jax import checkpointing
from l2a_jax import cli
from l2a_jax import console
from l2a_jax import models
from l2a_jax.models import stacking

# Prefix that `nn.DataParallel` puts on every key.
DATA_PARALLEL_PREFIX = 'module.'
# How many names of each kind a mismatch message lists.
_MAX_LISTED = 6


class ConversionError(ValueError):
  """A checkpoint does not fit the model; the message is one line."""


# ----------------------------------------------------------------------------
# Reading and writing torch files.
# ----------------------------------------------------------------------------


def _numpy_scalar_globals() -> list[Any]:
  """NumPy scalar reconstruction, allowlisted for `weights_only` loading.

  `np.float64(...)` pickles as `numpy.core.multiarray.scalar(dtype, bytes)`
  (`numpy._core` since NumPy 2): it builds a number and runs no code.
  """
  try:
    from numpy._core import multiarray  # pylint: disable=g-import-not-at-top
  except ImportError:  # NumPy 1.x
    from numpy.core import multiarray  # pylint: disable=g-import-not-at-top
  scalar = multiarray.scalar
  dtype_classes = {type(np.dtype(c)) for c in np.typecodes['All'] if c != 'O'}
  return [scalar, (scalar, 'numpy.core.multiarray.scalar'), np.dtype,
          *sorted(dtype_classes, key=lambda c: c.__name__)]


def _tensor_to_numpy(name: str, value: Any, path: str) -> np.ndarray:
  import torch  # pylint: disable=g-import-not-at-top
  if not isinstance(value, torch.Tensor):
    raise ConversionError(
        f'{path}: state_dict entry {name!r} is a {type(value).__name__}, '
        'not a tensor')
  value = value.detach().cpu()
  if value.dtype == torch.bfloat16:  # NumPy has no bfloat16.
    value = value.float()
  return value.numpy()


def _load_failure(path: str, error: Exception) -> str:
  """One line saying why `torch.load(weights_only=True)` failed on a file."""
  import pickle  # pylint: disable=g-import-not-at-top
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  reason = next((line for line in lines if 'Unsupported' in line
                 or 'WeightsUnpickler error' in line), None)
  if reason is None:
    reason = lines[0] if lines else ''
  reason = f'{type(error).__name__}: {reason}'[:300].rstrip(': ')
  with open(path, 'rb') as f:
    is_zip = f.read(4) == b'PK\x03\x04'
  if isinstance(error, pickle.UnpicklingError):
    return (f'{path}: not a valid PyTorch checkpoint: torch.load('
            f'weights_only=True) refused it ({reason}); a file that needs '
            'code to load is never run')
  if is_zip:
    return (f'{path}: not a valid PyTorch checkpoint (truncated or corrupted '
            f'zip archive; torch.load(weights_only=True): {reason})')
  return (f'{path}: not a valid PyTorch checkpoint (truncated, corrupted or '
          f'another format; torch.load(weights_only=True): {reason})')


def read_torch_checkpoint(
    path: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Reads a bare state_dict or an official training checkpoint.

  Args:
    path: a `torch.save` file: either a state_dict (name -> tensor) or a dict
      with the state_dict under 'model' (official training checkpoints, which
      also hold 'epoch', 'lr', 'optimizer', 'min_mpjpe', 'wandb_id').

  Returns:
    (state_dict, info): NumPy arrays by torch key, the `module.` prefix of
    `nn.DataParallel` removed; `info` holds the checkpoint's 'epoch' and
    'min_mpjpe' when present (JSON-ready).

  Raises:
    FileNotFoundError: no such file.
    ConversionError: not loadable with weights_only=True, or not a state_dict.
  """
  import torch  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such checkpoint file')
  if os.path.getsize(path) == 0:
    raise ConversionError(f'{path}: not a valid PyTorch checkpoint (empty '
                          'file)')
  try:
    with torch.serialization.safe_globals(_numpy_scalar_globals()):
      obj = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-exception-caught
    # torch raises UnpicklingError, RuntimeError, EOFError, ... by cause.
    raise ConversionError(_load_failure(path, e)) from e
  if not isinstance(obj, Mapping):
    raise ConversionError(
        f'{path}: expected a state_dict or a dict with key "model", got '
        f'{type(obj).__name__}')
  info = {}
  if 'model' in obj and isinstance(obj['model'], Mapping):
    for key in ('epoch', 'min_mpjpe'):
      if key in obj and np.ndim(obj[key]) == 0:
        info[key] = np.asarray(obj[key]).item()
    obj = obj['model']
  state = {str(k): _tensor_to_numpy(str(k), v, path) for k, v in obj.items()}
  if not state:
    raise ConversionError(f'{path}: the state_dict is empty')
  non_finite = [k for k, v in state.items()
                if np.issubdtype(v.dtype, np.inexact)
                and not np.all(np.isfinite(v))]
  if non_finite:
    raise ConversionError(
        f'{path}: NaN or Inf in {len(non_finite)} tensors '
        f'({_listed(non_finite)}): refusing to convert')
  if all(k.startswith(DATA_PARALLEL_PREFIX) for k in state):
    state = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in state.items()}
  return state, info


def write_torch_state_dict(
    state_dict: Mapping[str, np.ndarray], path: str | os.PathLike[str]
) -> None:
  """`torch.save`s a state_dict of NumPy arrays, atomically (temp + rename).

  Args:
    state_dict: torch key -> array, in the order to store.
    path: output file; its directory must exist.
  """
  import torch  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  tensors = collections.OrderedDict(
      (k, torch.from_numpy(np.ascontiguousarray(v)))
      for k, v in state_dict.items())
  with atomic_output.atomic_output(path) as f:
    torch.save(tensors, f)


# ----------------------------------------------------------------------------
# The naming rule (through `l2a_jax.models.stacking`).
# ----------------------------------------------------------------------------


def _stack_depths(flat_params: Mapping[str, Any],
                  stacked_modules: Sequence[str]) -> dict[str, int]:
  """The stacked modules that are stacked in this tree, with their depth.

  A module of `stacked_modules` is stacked when its leaves sit directly
  under it (`layers/att_spatial/...`, leading axis = depth); a model that
  keeps one subtree per layer has `layers/0/...` instead.
  """
  depths = {}
  for module in stacked_modules:
    prefix = module + stacking.SEPARATOR
    leading = {
        tuple(value.shape)[0] if tuple(value.shape) else None
        for key, value in flat_params.items()
        if key.startswith(prefix) and not key[len(prefix):].split(
            stacking.SEPARATOR)[0].isdigit()}
    if not leading:
      continue
    if len(leading) != 1 or None in leading:
      raise ConversionError(
          f'stacked module {module!r}: leaves have leading axes '
          f'{sorted(map(str, leading))}, expected one layer axis')
    depths[module] = leading.pop()
  return depths


def _unstack(flat_params: Mapping[str, Any],
             depths: Mapping[str, int]) -> dict[str, Any]:
  for module, depth in depths.items():
    flat_params = stacking.unstack_layers(flat_params, (module,), depth)
  return dict(flat_params)


def _listed(names: Sequence[str]) -> str:
  names = list(names)
  shown = ', '.join(names[:_MAX_LISTED])
  more = len(names) - _MAX_LISTED
  return f'{shown}, ... (+{more} more)' if more > 0 else shown


def _compare(source: str, got: Mapping[str, Any],
             wanted: Mapping[str, Any]) -> str | None:
  """One-line description of key / shape differences, or None if equal.

  Args:
    source: what `got` is, for the message.
    got: key -> array (or anything with `.shape`).
    wanted: key -> the expected array or `jax.ShapeDtypeStruct`.
  """
  missing = [k for k in wanted if k not in got]
  unexpected = [k for k in got if k not in wanted]
  misshaped = [
      f'{k} {tuple(got[k].shape)} vs {tuple(wanted[k].shape)}'
      for k in wanted
      if k in got and tuple(got[k].shape) != tuple(wanted[k].shape)]
  if not (missing or unexpected or misshaped):
    return None
  parts = []
  if missing:
    parts.append(f'missing {len(missing)}: {_listed(missing)}')
  if unexpected:
    parts.append(f'unexpected {len(unexpected)}: {_listed(unexpected)}')
  if misshaped:
    parts.append(f'mis-shaped {len(misshaped)} (got vs expected): '
                 f'{_listed(misshaped)}')
  return f'{source} does not match the model config: ' + '; '.join(parts)


def _hint(state_dict: Mapping[str, np.ndarray],
          model_config: ml_collections.ConfigDict | None) -> str:
  """A suggestion for the commonest mistake: the wrong frame count."""
  if model_config is None:
    return ''
  frames = None
  proxy = state_dict.get('center_pose')  # TCPFormer: [T // 3, J, C]
  if proxy is not None and proxy.ndim == 3:
    frames = 3 * proxy.shape[0]
  embedding = state_dict.get('temporal_pos_embed')  # L2A: [T, C]
  if embedding is not None and embedding.ndim == 2:
    frames = embedding.shape[0]
  if frames is None or frames == model_config.num_frames:
    return ''
  return (f' (the checkpoint is for num_frames={frames}, the config says '
          f'{model_config.num_frames}: pass the config argument '
          f':frames={frames})')


def torch_state_dict_shapes(
    abstract_params: Any, stacked_modules: Sequence[str]
) -> dict[str, jax.ShapeDtypeStruct]:
  """The torch keys and shapes (torch layout) a JAX parameter tree maps to.

  Args:
    abstract_params: pure nested dict (or `nnx.State`) of arrays or
      `jax.ShapeDtypeStruct`s.
    stacked_modules: the model class's `STACKED_MODULES`.

  Returns:
    torch key -> `jax.ShapeDtypeStruct`, sorted by key.
  """
  flat = {k: jax.ShapeDtypeStruct(tuple(v.shape), v.dtype)
          for k, v in stacking.flatten_params(abstract_params).items()}
  flat = _unstack(flat, _stack_depths(flat, stacked_modules))
  return stacking.to_torch_names(flat)


def torch_to_jax(
    state_dict: Mapping[str, np.ndarray],
    abstract_params: Any,
    stacked_modules: Sequence[str],
    *,
    source: str = 'state_dict',
    model_config: ml_collections.ConfigDict | None = None,
) -> dict[Any, Any]:
  """Maps a torch state_dict onto a JAX parameter tree.

  Args:
    state_dict: torch key -> array (torch layout), no `module.` prefix.
    abstract_params: the model's `nnx.Param` state (an `nnx.State` or its
      pure nested dict) with arrays or `jax.ShapeDtypeStruct` leaves.
    stacked_modules: the model class's `STACKED_MODULES`.
    source: name of the state_dict's origin, for error messages.
    model_config: the model section, only used to phrase hints.

  Returns:
    A pure nested dict of NumPy arrays with the structure, shapes and dtypes
    of `abstract_params`.

  Raises:
    ConversionError: listing missing, unexpected and mis-shaped keys.
  """
  flat_abstract = stacking.flatten_params(abstract_params)
  depths = _stack_depths(flat_abstract, stacked_modules)
  wanted = torch_state_dict_shapes(abstract_params, stacked_modules)
  problem = _compare(source, state_dict, wanted)
  if problem:
    raise ConversionError(problem + _hint(state_dict, model_config))
  flat = stacking.from_torch_names(dict(state_dict))
  for module, depth in depths.items():
    flat = stacking.stack_layers(flat, (module,), depth)
  # Same keys and shapes by construction; checked again as a safety net.
  problem = _compare('converted parameters', flat, flat_abstract)
  if problem:
    raise ConversionError(problem)
  flat = {k: np.asarray(v).astype(flat_abstract[k].dtype, copy=False)
          for k, v in flat.items()}
  return stacking.unflatten_params(flat)


def jax_to_torch(
    params: Any, stacked_modules: Sequence[str]
) -> dict[str, np.ndarray]:
  """Maps a JAX parameter tree to a torch state_dict (the inverse mapping).

  Args:
    params: pure nested dict (or `nnx.State`) of arrays; stacked or
      per-layer layer subtrees, layer indices as ints or digit strings (as
      Orbax restores them without a target).
    stacked_modules: the model class's `STACKED_MODULES`.

  Returns:
    torch key -> contiguous NumPy array in torch layout, sorted by key.
  """
  flat = {k: np.asarray(v)
          for k, v in stacking.flatten_params(params).items()}
  flat = _unstack(flat, _stack_depths(flat, stacked_modules))
  return {k: np.ascontiguousarray(v)
          for k, v in stacking.to_torch_names(flat).items()}


# ----------------------------------------------------------------------------
# Model-level entry points.
# ----------------------------------------------------------------------------


def abstract_params_of(model: nnx.Module) -> dict[Any, Any]:
  """The pure-dict `nnx.Param` state of a (possibly abstract) model."""
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def stacked_modules_of(model: nnx.Module) -> tuple[str, ...]:
  """The model class's stacked submodule names (empty when it has none)."""
  return tuple(getattr(type(model), 'STACKED_MODULES', ()))


def model_from_params(model_config: ml_collections.ConfigDict,
                      params: Any) -> nnx.Module:
  """The model of `model_config` carrying `params`, without a random init.

  Only the variables that are not parameters (e.g. TCPFormer's constant
  local layer scales) are computed, by a jitted init from which XLA drops
  the unused random draws: much faster than building the model eagerly.

  Args:
    model_config: the `config.model` section.
    params: pure nested dict of arrays with the model's `nnx.Param`
      structure (e.g. from `torch_to_jax`).

  Returns:
    The model, parameters as `jax.Array`s.
  """
  model = models.abstract_model(model_config)
  graphdef, param_state, _ = nnx.split(model, nnx.Param, ...)

  def constants():
    built = models.create_model(model_config, nnx.Rngs(0))
    return nnx.split(built, nnx.Param, ...)[2]

  nnx.replace_by_pure_dict(param_state, jax.tree.map(jnp.asarray, params))
  return nnx.merge(graphdef, param_state, jax.jit(constants)())


def convert_to_jax(
    model_config: ml_collections.ConfigDict,
    checkpoint: str | os.PathLike[str],
    workdir: str | os.PathLike[str],
) -> pathlib.Path:
  """Converts a torch checkpoint into a params-only Orbax checkpoint.

  Args:
    model_config: the `config.model` section describing the checkpoint's
      model (name, sizes, num_frames, scan_layers, ...).
    checkpoint: bare state_dict or official training checkpoint file.
    workdir: run directory; must not hold checkpoints yet. The result is
      `WORKDIR/checkpoints/0/` with items `params` and `meta`.

  Returns:
    The step directory written.

  Raises:
    ConversionError, FileNotFoundError, FileExistsError.
  """
  directory = checkpointing.checkpoint_directory(workdir)
  if directory.exists() and any(directory.iterdir()):
    raise FileExistsError(
        f'{directory} is not empty: convert into a new workdir')
  state_dict, info = read_torch_checkpoint(checkpoint)
  model = models.abstract_model(model_config)
  params = torch_to_jax(
      state_dict, abstract_params_of(model), stacked_modules_of(model),
      source=os.fspath(checkpoint), model_config=model_config)
  meta = {
      'step': 0,
      'model': model_config.to_dict(),
      'converted_from': {'checkpoint': os.path.abspath(checkpoint), **info},
  }
  return pathlib.Path(
      os.fspath(checkpointing.save_params(workdir, params, meta)))


def convert_to_torch(
    model_config: ml_collections.ConfigDict,
    workdir: str | os.PathLike[str],
    output: str | os.PathLike[str],
    step: int | None = None,
) -> dict[str, np.ndarray]:
  """Writes the parameters of a workdir checkpoint as a torch state_dict.

  The checkpoint is read as saved, so a scanned (stacked) and an unrolled
  (per-layer) checkpoint convert alike; the result is checked against the
  PyTorch reference model of `model_config` (keys and shapes, strict).

  Args:
    model_config: the `config.model` section of the checkpoint's model.
    workdir: run directory holding `checkpoints/`.
    output: the state_dict file to write (atomically).
    step: which checkpoint; None = the latest.

  Returns:
    The state_dict written (torch key -> NumPy array).

  Raises:
    ConversionError, FileNotFoundError.
  """
  from l2a_jax import torch_reference  # pylint: disable=g-import-not-at-top
  params, _ = checkpointing.restore_params(workdir, None, step)
  model = models.abstract_model(model_config)
  state_dict = jax_to_torch(params, stacked_modules_of(model))
  reference = torch_reference.create_model(model_config).state_dict()
  problem = _compare(
      f'{checkpointing.checkpoint_directory(workdir)} (step '
      f'{"latest" if step is None else step})', state_dict, reference)
  if problem:
    raise ConversionError(problem)
  # The reference's key order (the official order for TCPFormer).
  ordered = collections.OrderedDict((k, state_dict[k]) for k in reference)
  write_torch_state_dict(ordered, output)
  return ordered


# ----------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------

def _define_flags() -> None:
  """Defines the command-line flags (only when run as a program, so that
  importing this module next to another CLI module defines nothing)."""
  config_flags.DEFINE_config_file(
      'config', None, 'Run config file (its `model` section describes the '
      'checkpoint); fields can be overridden with --config.model.KEY=VALUE.',
      lock_config=True)
  flags.DEFINE_enum(
      'direction', 'to_jax', ['to_jax', 'to_torch'],
      'to_jax: --checkpoint -> Orbax checkpoint in --workdir; to_torch: the '
      'latest (or --step) checkpoint in --workdir -> --output state_dict.')
  flags.DEFINE_string(
      'checkpoint', None, 'to_jax: torch file (bare state_dict or official '
      'training checkpoint).')
  flags.DEFINE_string('workdir', None, 'Run directory.')
  flags.DEFINE_string('output', None, 'to_torch: state_dict file to write.')
  flags.DEFINE_integer(
      'step', None, 'to_torch: checkpoint step (default: the latest).')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    cli.fail('convert_torch', f'unexpected arguments {argv[1:]}')
  console.configure()
  args = flags.FLAGS
  config = args.config
  try:
    if args.direction == 'to_jax':
      if not args.checkpoint:
        cli.fail('convert_torch', '--checkpoint is required (to_jax)')
      step_dir = convert_to_jax(config.model, args.checkpoint,
                                args.workdir)
      print(f'wrote {step_dir}')
    else:
      if not args.output:
        cli.fail('convert_torch', '--output is required (to_torch)')
      state_dict = convert_to_torch(config.model, args.workdir,
                                    args.output, args.step)
      print(f'wrote {args.output} ({len(state_dict)} tensors)')
  except (ConversionError, OSError, ValueError) as e:
    message = ' '.join(str(e).split())
    sys.exit(f'convert_torch: error: {message}')


if __name__ == '__main__':
  _define_flags()
  cli.run(main, program='convert_torch', doc=__doc__,
          required=('config', 'workdir'))
