"""Orbax checkpoints: `WORKDIR/checkpoints/<step>/` with named items.

One Orbax `CheckpointManager` writes every checkpoint of this project. A step
directory holds up to four items:

- `params`: the model's `nnx.Param` state as a pure nested dict of arrays
  (`nnx.to_pure_dict`), always present;
- `opt_state`: the optax state (training checkpoints only);
- `data_iter`: the grain training-iterator state, one JSON file per process
  (training checkpoints only), so a resumed run continues the data stream;
- `meta`: JSON with `step`, `model` (the model config as a dict), `items`
  (the items written) and `checksums` (a 64-bit fingerprint of every array
  of `params` and `opt_state`, taken from the arrays before they were
  written), plus the eval metrics of that step when there were any.

Every restore is verified: the meta data must parse, the saved model config
must equal the wanted one (`check_model_config`, execution-only fields
aside), the parameter tree must match, every array must be finite and equal
its recorded fingerprint (Orbax records no checksum of the array data, so
flipped bytes would otherwise restore silently). Restoring "the latest"
checkpoint falls back, newest first, to the first usable one, with one
warning per unusable checkpoint naming its path and the cause; when none is
usable the error is one line listing them all. A requested `step` is never
replaced by another one.

Two entry points:

- `save_params` / `restore_params`: params-only checkpoints (the torch
  converter writes them; `predict`, `--mode=eval` and `convert_torch
  --direction=to_torch` read any checkpoint's parameters through the same
  verified `restore_params`).
- `CheckpointManager`: the trainer's manager. Async saves, the `keep` latest
  checkpoints plus the best one by an eval metric, and restore of everything;
  for a params-only checkpoint `restore` returns `opt_state=None` and the
  trainer starts a fresh optimizer from those parameters. Old checkpoints are
  removed only after a newer one is complete on disk; a failed save is one
  `CheckpointSaveError` line naming the step directory and the cause, the
  earlier checkpoints untouched.

Every process of a multi-process run must call the saving and restoring
methods (Orbax synchronises them); only the primary process writes `meta`.
"""

from collections.abc import Sequence
import dataclasses
import functools
import json
import math
import os
from typing import Any, Callable, Mapping

from absl import logging
from etils import epath
from flax import nnx
import grain
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from l2a_jax import sharding

# Sub-directory of the workdir holding the step directories.
CHECKPOINT_SUBDIR = 'checkpoints'
# Where the trainer moves unusable checkpoints newer than the one it resumed
# from (so that it can save those steps again); nothing is deleted.
UNUSABLE_SUBDIR = 'unusable_checkpoints'
PARAMS = 'params'
OPT_STATE = 'opt_state'
DATA_ITER = 'data_iter'
META = 'meta'
# The file Orbax's JSON handler writes inside the `meta` item.
META_FILE = 'metadata'
# Meta keys written by this module.
CHECKSUMS = 'checksums'
ITEMS = 'items'
# Model config fields that change how the model runs, not what it computes:
# a checkpoint may be resumed, evaluated or used for prediction with other
# values than it was made with.
EXECUTION_ONLY_FIELDS = ('dtype', 'param_dtype', 'scan_layers',
                         'scan_unroll', 'remat',
                         'recompute_attention', 'attention_impl',
                         'history_vjp', 'drop_path')
# Longest cause quoted from a library error in a one-line message.
_MAX_CAUSE = 300


class UnusableCheckpointError(ValueError):
  """A checkpoint (or every checkpoint) cannot be restored; one line."""


class ModelConfigMismatchError(ValueError):
  """A checkpoint was made with another model config; one line naming it."""


class CheckpointSaveError(OSError):
  """Writing a checkpoint failed; one line naming the step and the cause."""


def one_line_cause(error: BaseException) -> str:
  """`Type: message` of an exception on one line, at most ~300 characters."""
  message = ' '.join(str(error).split())
  if len(message) > _MAX_CAUSE:
    # Library errors put the context first and the OS cause last: keep both.
    half = _MAX_CAUSE // 2
    message = f'{message[:half]} ... {message[-half:]}'
  return f'{type(error).__name__}: {message}' if message else (
      type(error).__name__)


def checkpoint_directory(workdir: str | os.PathLike[str]) -> epath.Path:
  """Returns `WORKDIR/checkpoints` as an absolute path (Orbax needs one)."""
  if '://' in os.fspath(workdir):  # gs://bucket/run and other URLs.
    return epath.Path(workdir) / CHECKPOINT_SUBDIR
  return epath.Path(os.path.abspath(os.fspath(workdir))) / CHECKPOINT_SUBDIR


def to_pure_params(params: Any) -> dict[str, Any]:
  """Returns a pure nested dict of arrays from an `nnx.State` or a dict."""
  if isinstance(params, nnx.State):
    return nnx.to_pure_dict(params)
  return params


def _abstract_tree(tree: Any) -> Any:
  """Leaves -> `jax.ShapeDtypeStruct` with a sharding.

  A leaf's own sharding is kept; leaves without one (NumPy arrays, plain
  shapes) get this process's first device: without an explicit sharding
  Orbax recreates the saved one, which fails on another device count.
  """
  default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def to_struct(leaf):
    sharding_ = getattr(leaf, 'sharding', None)
    if not isinstance(sharding_, jax.sharding.Sharding):
      sharding_ = default
    return jax.ShapeDtypeStruct(
        tuple(leaf.shape), np.dtype(leaf.dtype), sharding=sharding_
    )

  return jax.tree.map(to_struct, tree)


# ---------------------------------------------------------------------------
# Model config comparison.
# ---------------------------------------------------------------------------


def model_config_differences(saved: Mapping[str, Any],
                             wanted: Mapping[str, Any],
                             prefix: str = '') -> list[str]:
  """'field: saved (checkpoint) vs wanted (config)' for each differing field.

  Only fields present in both are compared (a field added to the code later
  is not a difference); `EXECUTION_ONLY_FIELDS` are ignored.
  """
  diffs = []
  for key in sorted(set(saved) & set(wanted)):
    if not prefix and key in EXECUTION_ONLY_FIELDS:
      continue
    a, b = saved[key], wanted[key]
    if isinstance(a, Mapping) and isinstance(b, Mapping):
      diffs += model_config_differences(a, b, f'{prefix}{key}.')
    elif _normalised(a) != _normalised(b):
      diffs.append(f'{prefix}{key}: {a!r} (checkpoint) vs {b!r} (config)')
  return diffs


def _normalised(value: Any) -> Any:
  """JSON round trip turns tuples into lists: compare them alike."""
  if isinstance(value, (list, tuple)):
    return [_normalised(v) for v in value]
  return value


def check_model_config(meta: Mapping[str, Any], model_config: Any,
                       source: str | os.PathLike[str]) -> None:
  """Raises `ModelConfigMismatchError` naming the fields that differ.

  Args:
    meta: a checkpoint's meta data (its `model` entry is compared; a
      checkpoint without one is accepted).
    model_config: the wanted `config.model` (ConfigDict or dict).
    source: the checkpoint's step directory, for the message.
  """
  saved = meta.get('model')
  if not isinstance(saved, Mapping):
    return
  wanted = (model_config.to_dict() if hasattr(model_config, 'to_dict')
            else dict(model_config))
  diffs = model_config_differences(saved, wanted)
  if diffs:
    raise ModelConfigMismatchError(
        f'{source} was made with another model config: ' + '; '.join(diffs)
        + ' (use the config it was made with, or another --workdir)')


# ---------------------------------------------------------------------------
# Fingerprints of arrays (Orbax records no checksum of the data).
# ---------------------------------------------------------------------------


def _mix32(h: jax.Array) -> jax.Array:
  """A bijective uint32 -> uint32 scrambler (the MurmurHash3 finaliser).

  Written with `lax` primitives: it is traced once per array of a
  checkpoint (hundreds of leaves), and `jnp`'s operator wrappers made that
  tracing cost seconds per save.
  """
  lax = jax.lax

  def shift_xor(v, bits):
    return lax.bitwise_xor(v, lax.shift_right_logical(v, np.uint32(bits)))

  h = lax.mul(shift_xor(h, 16), np.uint32(0x85EBCA6B))
  h = lax.mul(shift_xor(h, 13), np.uint32(0xC2B2AE35))
  return shift_xor(h, 16)


def _bits32(x: jax.Array) -> jax.Array:
  """The bit pattern of an array as flat uint32 (1-, 2-, 4-, 8-byte types)."""
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32).reshape(-1)
  size = jnp.dtype(x.dtype).itemsize
  if size in (1, 2):
    unsigned = jnp.uint8 if size == 1 else jnp.uint16
    return jax.lax.bitcast_convert_type(x, unsigned).astype(
        jnp.uint32).reshape(-1)
  return jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)


def _position_keys(size: int) -> tuple[jax.Array, jax.Array]:
  """The two scrambled position streams of `size` elements (uint32 [size]):
  mix(2i + 1) and mix(2i + 2)."""
  index = jax.lax.iota(jnp.uint32, size)
  twice = jax.lax.add(index, index)
  return (_mix32(jax.lax.add(twice, np.uint32(1))),
          _mix32(jax.lax.add(twice, np.uint32(2))))


def _leaf_summary(
    x: jax.Array,
    position_keys: Callable[[int], tuple[jax.Array, jax.Array]],
) -> tuple[jax.Array, jax.Array]:
  """(uint32 [2] fingerprint, all-finite flag) of one array.

  Each element's bits are scrambled together with its position and summed
  with uint32 wrap-around (exact and order-independent, so any device and
  NumPy agree); two differently seeded sums make 64 bits. Changing one
  element always changes both sums.

  Args:
    x: the array (any shape and type of 1, 2, 4 or 8 bytes).
    position_keys: `_position_keys` (or a cache of it), called with the
      length of `_bits32(x)`.
  """
  bits = _bits32(x)
  odd, even = position_keys(bits.size)
  first = jnp.sum(_mix32(jax.lax.bitwise_xor(bits, odd)), dtype=jnp.uint32)
  second = jnp.sum(_mix32(jax.lax.add(bits, even)), dtype=jnp.uint32)
  if jnp.issubdtype(x.dtype, jnp.inexact):
    finite = jnp.all(jnp.isfinite(x))
  else:
    finite = jnp.asarray(True)
  return jnp.stack([first, second]), finite


@jax.jit
def _summaries(leaves: list[jax.Array]) -> list[tuple[jax.Array, jax.Array]]:
  """`_leaf_summary` of every leaf; position keys computed once per size."""
  keys = {}

  def cached_position_keys(size):
    if size not in keys:
      keys[size] = _position_keys(size)
    return keys[size]

  return [_leaf_summary(x, cached_position_keys) for x in leaves]


def _key_name(key: Any) -> str:
  for attr in ('key', 'idx', 'name'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _named_leaves(tree: Any) -> list[tuple[str, Any]]:
  """('a/0/kernel', leaf) pairs of a tree (int and str keys alike)."""
  return [('/'.join(_key_name(k) for k in path), leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _flat_paths(tree: Any) -> set[str]:
  """'a/0/kernel'-style paths of a tree's leaves (int and str keys alike)."""
  return {name for name, _ in _named_leaves(tree)}


def array_summaries(tree: Any) -> tuple[dict[str, str], list[str]]:
  """Fingerprints and non-finite leaves of a tree of arrays.

  Args:
    tree: pytree of `jax.Array`s (any sharding; every process must call this
      for multi-process arrays) or NumPy arrays of <= 32-bit types.

  Returns:
    `(checksums, non_finite)`: leaf path -> 16 hex digits, and the paths of
    floating leaves holding NaN or Inf.
  """
  named = _named_leaves(tree)
  if not named:
    return {}, []
  results = sharding.to_host(_summaries([leaf for _, leaf in named]))
  checksums, non_finite = {}, []
  for (name, _), (fingerprint, finite) in zip(named, results):
    first, second = (int(v) for v in np.asarray(fingerprint))
    checksums[name] = f'{first:08x}{second:08x}'
    if not bool(finite):
      non_finite.append(name)
  return checksums, non_finite


def _listed(names: Sequence[str], limit: int = 3) -> str:
  shown = ', '.join(names[:limit])
  return shown + (f' (+{len(names) - limit} more)' if len(names) > limit
                  else '')


def _verify(location: epath.Path, tree: Any,
            recorded: Mapping[str, str] | None) -> None:
  """Raises `UnusableCheckpointError` for non-finite or changed arrays."""
  checksums, non_finite = array_summaries(tree)
  if non_finite:
    raise UnusableCheckpointError(
        f'{location}: NaN or Inf in {len(non_finite)} arrays '
        f'({_listed(non_finite)})')
  if recorded is None:
    return  # Written before checksums were recorded: finiteness only.
  changed = sorted(name for name in set(checksums) | set(recorded)
                   if checksums.get(name) != recorded.get(name))
  if changed:
    raise UnusableCheckpointError(
        f'{location}: checksum mismatch in {len(changed)} arrays '
        f'({_listed(changed)}): the files changed after they were written')


# ---------------------------------------------------------------------------
# The Orbax manager and the verified restore of one step.
# ---------------------------------------------------------------------------


def _metric_or_inf(metrics: Mapping[str, float], key: str) -> float:
  return float(metrics.get(key, math.inf))


def _new_orbax_manager(
    directory: epath.Path,
    *,
    best_metric: str | None,
    async_saves: bool,
    read_only: bool = False,
) -> ocp.CheckpointManager:
  """An Orbax manager over the four named items of this layout.

  It keeps every checkpoint: `CheckpointManager` removes old ones itself,
  and only after a newer one is complete (Orbax decides what to delete when
  a save starts).
  """
  best_fn = None
  if best_metric is not None:
    best_fn = functools.partial(_metric_or_inf, key=best_metric)
  options = ocp.CheckpointManagerOptions(
      preservation_policy=ocp.checkpoint_managers.LatestN(n=None),
      best_fn=best_fn,
      best_mode='min',
      enable_async_checkpointing=async_saves,
      create=not read_only,
      read_only=read_only,
  )
  # Handlers are named up front so that metadata (and so the structure
  # check and restore without a target) work before any save in this process.
  item_handlers = {
      PARAMS: ocp.StandardCheckpointHandler(),
      OPT_STATE: ocp.StandardCheckpointHandler(),
      DATA_ITER: grain.checkpoint.CheckpointHandler(),
      META: ocp.JsonCheckpointHandler(),
  }
  return ocp.CheckpointManager(
      directory, item_handlers=item_handlers, options=options
  )


def _existing_steps(directory: epath.Path) -> list[int]:
  if not directory.exists():
    return []
  if not directory.is_dir():
    raise NotADirectoryError(f'{directory} is not a directory')
  return sorted(ocp.utils.checkpoint_steps(directory))


def _check_step(directory: epath.Path, step: int | None) -> list[int]:
  """The steps to try, newest first: all of them, or only `step`."""
  steps = _existing_steps(directory)
  if not steps:
    raise FileNotFoundError(f'no checkpoint found under {directory}')
  if step is None:
    return steps[::-1]
  if step not in steps:
    raise FileNotFoundError(
        f'no checkpoint for step {step} under {directory}; have {steps}'
    )
  return [step]


def _read_meta(step_dir: epath.Path) -> dict[str, Any]:
  path = step_dir / META / META_FILE
  try:
    meta = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise UnusableCheckpointError(
        f'{path}: unreadable meta data ({one_line_cause(e)})') from e
  if not isinstance(meta, dict):
    raise UnusableCheckpointError(
        f'{path}: meta data is a {type(meta).__name__}, expected a JSON '
        'object')
  return meta


def _check_params_structure(
    step_dir: epath.Path, target: Any, saved: Any
) -> None:
  """Raises a one-line error when the saved and wanted trees differ."""
  wanted, have = _flat_paths(target), _flat_paths(saved)
  if wanted != have:
    missing = sorted(wanted - have)[:3]
    extra = sorted(have - wanted)[:3]
    raise UnusableCheckpointError(
        f'{step_dir}/{PARAMS}: parameter tree does not match the model: '
        f'missing {missing}, unexpected {extra}'
    )


def _with_saved_dtypes(target: Any, saved: Any) -> Any:
  """`target` with each leaf's dtype as saved (the checksums are of those).

  Leaves whose path is not in `saved` keep their dtype.
  """
  dtypes = {name: getattr(leaf, 'dtype', None)
            for name, leaf in _named_leaves(saved)}
  named = _named_leaves(target)
  leaves = []
  for name, leaf in named:
    dtype = dtypes.get(name)
    if dtype is None:
      leaves.append(leaf)
    else:
      leaves.append(jax.ShapeDtypeStruct(leaf.shape, np.dtype(dtype),
                                         sharding=leaf.sharding))
  return jax.tree.unflatten(jax.tree.structure(target), leaves)


def _cast_like(tree: Any, target: Any) -> Any:
  """Casts restored leaves to the dtypes the caller asked for (by path)."""
  dtypes = {name: np.dtype(leaf.dtype) for name, leaf in _named_leaves(target)}
  leaves = [leaf if dtypes.get(name, leaf.dtype) == leaf.dtype
            else leaf.astype(dtypes[name])
            for name, leaf in _named_leaves(tree)]
  return jax.tree.unflatten(jax.tree.structure(tree), leaves)


def _has_item(step_dir: epath.Path, meta: Mapping[str, Any],
              item: str) -> bool:
  """Whether the checkpoint holds `item`; raises when meta lists a lost one.

  Checkpoints written before `items` was recorded: whether the folder is
  there.
  """
  present = (step_dir / item).exists()
  listed = meta.get(ITEMS)
  if isinstance(listed, list) and item in listed and not present:
    raise UnusableCheckpointError(
        f'{step_dir}/{item}: missing (the checkpoint was written with it)')
  return present


def _restore_step(
    manager: ocp.CheckpointManager,
    directory: epath.Path,
    step: int,
    *,
    abstract_params: Any,
    abstract_opt_state: Any = None,
    model_config: Any = None,
) -> tuple[Any, Any | None, dict[str, Any]]:
  """Restores and verifies the params (and opt_state) of one step.

  Args:
    manager: the Orbax manager over `directory`.
    directory: `WORKDIR/checkpoints`.
    step: the step.
    abstract_params: pure dict of arrays / `jax.ShapeDtypeStruct`s, or None
      to restore as saved (host NumPy).
    abstract_opt_state: abstract optax state; None: do not restore it.
    model_config: compared with the saved model config when given.

  Returns:
    `(params, opt_state or None, meta)`.

  Raises:
    UnusableCheckpointError: anything wrong with this step's files.
    ModelConfigMismatchError: the step was made with another model config.
  """
  step_dir = directory / str(step)
  meta = _read_meta(step_dir)
  if model_config is not None:
    check_model_config(meta, model_config, step_dir)
  _has_item(step_dir, meta, PARAMS)
  try:
    metadata = manager.item_metadata(step)
    saved_params = metadata[PARAMS]
  except Exception as e:  # pylint: disable=broad-exception-caught
    # Orbax / TensorStore raise KeyError, ValueError, OSError, ... by cause.
    raise UnusableCheckpointError(
        f'{step_dir}/{PARAMS}: unreadable metadata ({one_line_cause(e)})'
    ) from e
  if saved_params is None:
    raise UnusableCheckpointError(f'{step_dir}/{PARAMS}: missing')
  if abstract_params is None:
    wanted = _abstract_tree(saved_params)
  else:
    wanted = _abstract_tree(to_pure_params(abstract_params))
    _check_params_structure(step_dir, wanted, saved_params)
  items = {PARAMS: ocp.args.StandardRestore(
      _with_saved_dtypes(wanted, saved_params))}
  has_opt = abstract_opt_state is not None and _has_item(
      step_dir, meta, OPT_STATE)
  if has_opt:
    wanted_opt = _abstract_tree(abstract_opt_state)
    saved_opt = getattr(metadata, OPT_STATE, None) if not isinstance(
        metadata, Mapping) else metadata.get(OPT_STATE)
    items[OPT_STATE] = ocp.args.StandardRestore(
        wanted_opt if saved_opt is None
        else _with_saved_dtypes(wanted_opt, saved_opt))
  try:
    restored = manager.restore(step, args=ocp.args.Composite(**items))
  except Exception as e:  # pylint: disable=broad-exception-caught
    raise UnusableCheckpointError(
        f'{step_dir}: cannot be read ({one_line_cause(e)})') from e
  recorded = meta.get(CHECKSUMS)
  recorded = recorded if isinstance(recorded, Mapping) else {}
  params = restored[PARAMS]
  _verify(step_dir / PARAMS, params, recorded.get(PARAMS))
  params = _cast_like(params, wanted)
  opt_state = None
  if has_opt:
    opt_state = restored[OPT_STATE]
    _verify(step_dir / OPT_STATE, opt_state, recorded.get(OPT_STATE))
    opt_state = _cast_like(opt_state, wanted_opt)
  return params, opt_state, meta


def _first_usable(
    directory: epath.Path, steps: Sequence[int],
    attempt: Callable[[int], Any],
) -> tuple[int, Any, list[int]]:
  """Tries `attempt(step)` newest first; returns (step, result, failed).

  One warning per unusable checkpoint; `UnusableCheckpointError` listing
  every cause when none is usable (only `ModelConfigMismatchError` and
  other errors stop the search at once).
  """
  failed, causes = [], []
  for index, step in enumerate(steps):
    try:
      return step, attempt(step), failed
    except UnusableCheckpointError as e:
      failed.append(step)
      causes.append(str(e))
      if index + 1 < len(steps):
        logging.warning('Checkpoint %s is unusable: %s; trying step %d.',
                        directory / str(step), e, steps[index + 1])
  if len(steps) == 1:
    raise UnusableCheckpointError(causes[0])
  raise UnusableCheckpointError(
      f'no usable checkpoint under {directory}: ' + '; '.join(causes)
      + ' (move or delete them to start afresh)')


def save_params(
    workdir: str | os.PathLike[str],
    params: Any,
    meta: Mapping[str, Any],
) -> epath.Path:
  """Writes a params-only checkpoint `WORKDIR/checkpoints/<step>/`.

  Args:
    workdir: run directory; the checkpoint goes under `checkpoints/`.
    params: `nnx.State` of `nnx.Param` or the equivalent pure nested dict of
      arrays (NumPy or JAX, <= 32-bit types), all finite.
    meta: JSON-serialisable dict; `meta['step']` (default 0) names the step
      directory; should carry `model` (the model config as a dict).

  Returns:
    The step directory written.

  Raises:
    FileExistsError: a checkpoint for that step already exists.
    ValueError: NaN or Inf in the parameters.
    CheckpointSaveError: writing failed.
  """
  directory = checkpoint_directory(workdir)
  meta = dict(meta)
  step = int(meta.setdefault('step', 0))
  if step in _existing_steps(directory):
    raise FileExistsError(f'checkpoint {directory / str(step)} already exists')
  pure = to_pure_params(params)
  checksums, non_finite = array_summaries(pure)
  if non_finite:
    raise ValueError(f'NaN or Inf in {len(non_finite)} parameter arrays '
                     f'({_listed(non_finite)}): not saved')
  meta[CHECKSUMS] = {PARAMS: checksums}
  meta[ITEMS] = [PARAMS]
  try:
    manager = _new_orbax_manager(directory, best_metric=None,
                                 async_saves=False)
    try:
      manager.save(step, args=ocp.args.Composite(**{
          PARAMS: ocp.args.StandardSave(pure),
          META: ocp.args.JsonSave(meta),
      }))
      manager.wait_until_finished()
    finally:
      manager.close()
  except Exception as e:  # pylint: disable=broad-exception-caught
    raise CheckpointSaveError(
        f'saving checkpoint {directory / str(step)} failed: '
        f'{one_line_cause(e)}') from e
  return directory / str(step)


def restore_params(
    workdir: str | os.PathLike[str],
    abstract_params: Any = None,
    step: int | None = None,
    *,
    model_config: Any = None,
) -> tuple[Any, dict[str, Any]]:
  """Reads and verifies the parameters and meta data of a checkpoint.

  Works for params-only and full training checkpoints alike. `predict`,
  `--mode=eval` and the torch export all read checkpoints through here.

  Args:
    workdir: run directory holding `checkpoints/`.
    abstract_params: target tree (`nnx.State` or pure dict) whose leaves are
      arrays or `jax.ShapeDtypeStruct`s; a leaf's sharding, when set, places
      the restored array. None: restore as saved, as host NumPy arrays.
    step: which step; None = the latest usable one (falling back over
      unusable ones with a warning each).
    model_config: the wanted `config.model`; refused if the checkpoint was
      made with another one.

  Returns:
    `(params, meta)`: params in the form of `abstract_params` (an
    `nnx.State` when that was one, else a pure dict), meta the JSON dict.

  Raises:
    FileNotFoundError: no checkpoint (or not that step) under the workdir.
    UnusableCheckpointError: the step (or every step) fails verification.
    ModelConfigMismatchError: made with another model config.
  """
  directory = checkpoint_directory(workdir)
  steps = _check_step(directory, step)
  manager = _new_orbax_manager(directory, best_metric=None,
                               async_saves=False, read_only=True)
  try:
    _, (params, _, meta), _ = _first_usable(
        directory, steps,
        lambda s: _restore_step(manager, directory, s,
                                abstract_params=abstract_params,
                                model_config=model_config))
  finally:
    manager.close()
  if abstract_params is None:
    params = jax.tree.map(np.asarray, params)
  return _as_requested_type(params, abstract_params), meta


def _as_requested_type(restored: dict[str, Any], abstract_params: Any) -> Any:
  """Returns `restored` as an `nnx.State` when the target was one."""
  if isinstance(abstract_params, nnx.State):
    state = jax.tree.map(lambda x: x, abstract_params)
    nnx.replace_by_pure_dict(state, restored)
    return state
  return restored


@dataclasses.dataclass
class Restored:
  """What `CheckpointManager.restore` returns.

  Attributes:
    step: the restored step.
    params: pure dict of parameters (placed as the abstract target says).
    opt_state: the optax state, or None for a params-only checkpoint.
    meta: the JSON meta data.
    data_iter_restored: whether the data iterator was set to the saved state.
    unusable_steps: newer steps that failed verification (moved to
      `WORKDIR/unusable_checkpoints/`).
  """

  step: int
  params: Any
  opt_state: Any | None
  meta: dict[str, Any]
  data_iter_restored: bool
  unusable_steps: list[int] = dataclasses.field(default_factory=list)


def _iterator_state_of_other_process_count(
    directory: epath.Path) -> dict[str, Any] | None:
  """The data-iterator state when the checkpoint has another process count.

  Grain writes one `process_<i>-of-<n>.json` per process. The training
  stream is indexed by step (`input_pipeline`: step k is clips k*B ..
  (k+1)*B - 1 of the shuffled stream, whatever the process count; process p
  takes every P-th), so every process's saved state is the same
  `next_index` and a run with another process count continues the same
  stream from it.

  Returns:
    None when this process's own file exists (restore as saved), else the
    common state of the saved files. Raises ValueError when the saved
    states differ or there are none.
  """
  own = directory / (f'process_{jax.process_index()}-of-'
                     f'{jax.process_count()}.json')
  if own.exists():
    return None
  saved = sorted(directory.glob('process_*-of-*.json'))
  states = [json.loads(path.read_text()) for path in saved]
  if not states or any(state != states[0] for state in states):
    raise ValueError(
        f'{directory}: cannot continue the data stream with '
        f'{jax.process_count()} processes: saved iterator states '
        f'{[p.name for p in saved]} are missing or differ')
  logging.info('Data iterator saved by %d processes, restored in %d: '
               'state %s.', len(states), jax.process_count(), states[0])
  return states[0]


class CheckpointManager:
  """The trainer's checkpoints: async saves, latest N + best, full restore.

  Attributes:
    directory: `WORKDIR/checkpoints`.
  """

  def __init__(
      self,
      workdir: str | os.PathLike[str],
      *,
      keep: int = 3,
      best_metric: str | None = 'mpjpe_mm',
      async_saves: bool = True,
  ):
    """Opens (creating if needed) `WORKDIR/checkpoints`.

    Args:
      workdir: run directory.
      keep: how many of the latest checkpoints to keep (>= 1).
      best_metric: key of the `metrics` passed to `save` by which the single
        best (lowest) checkpoint is kept besides the latest ones; None keeps
        only the latest.
      async_saves: write in a background thread (`save` returns after the
        device-to-host copy).

    Raises:
      ValueError: keep < 1.
      CheckpointSaveError: the directory cannot be created or opened.
    """
    if keep < 1:
      raise ValueError(f'keep_checkpoints must be >= 1, got {keep}')
    self.directory = checkpoint_directory(workdir)
    self._unusable_directory = self.directory.parent / UNUSABLE_SUBDIR
    self._keep = keep
    self._best_metric = best_metric
    self._pending_step: int | None = None
    try:
      _existing_steps(self.directory)
      self._manager = _new_orbax_manager(
          self.directory, best_metric=best_metric, async_saves=async_saves)
    except Exception as e:  # pylint: disable=broad-exception-caught
      raise CheckpointSaveError(
          f'cannot open checkpoint directory {self.directory}: '
          f'{one_line_cause(e)}') from e

  def latest_step(self) -> int | None:
    """The newest step on disk, or None."""
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    """The step with the lowest tracked metric (None if none has one)."""
    if self._best_metric is None:
      return None
    return self._manager.best_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(
      self,
      step: int,
      *,
      params: Any,
      opt_state: Any,
      data_iter: grain.DatasetIterator | grain.DataLoaderIterator | None,
      meta: Mapping[str, Any],
      metrics: Mapping[str, float] | None = None,
  ) -> bool:
    """Starts an (async) save of a full training checkpoint.

    Waits for the previous save first (raising if it failed), then removes
    the checkpoints that the newer complete ones make redundant.

    Args:
      step: training step (number of optimizer updates done).
      params: pure dict (or `nnx.State`) of the parameters.
      opt_state: optax state.
      data_iter: the training iterator, positioned after the batches consumed
        by `step` updates; None leaves the item out.
      meta: JSON-serialisable dict; `step`, `items` and `checksums` are
        added.
      metrics: eval metrics of this step (for the best-checkpoint policy;
        also stored in meta under `eval`).

    Returns:
      False if a checkpoint for `step` already exists (nothing is written),
      else True.

    Raises:
      CheckpointSaveError: this save or the previous one failed.
    """
    self.wait_until_finished()
    if step in self._manager.all_steps():
      return False
    params = to_pure_params(params)
    meta = dict(meta, step=int(step))
    if metrics is not None:
      metrics = {k: float(v) for k, v in metrics.items()
                 if np.ndim(v) == 0}
      meta['eval'] = metrics
    # Fingerprints of what is written, taken before the caller may donate
    # the arrays to its next step.
    meta[CHECKSUMS] = {PARAMS: array_summaries(params)[0],
                       OPT_STATE: array_summaries(opt_state)[0]}
    items = {
        PARAMS: ocp.args.StandardSave(params),
        OPT_STATE: ocp.args.StandardSave(opt_state),
    }
    if data_iter is not None:
      items[DATA_ITER] = grain.checkpoint.CheckpointSave(data_iter)
    meta[ITEMS] = sorted(items)
    items[META] = ocp.args.JsonSave(meta)
    try:
      started = self._manager.save(
          step, args=ocp.args.Composite(**items), metrics=metrics,
          force=True)
    except Exception as e:  # pylint: disable=broad-exception-caught
      raise self._save_error(step, e) from e
    if started:
      self._pending_step = step
    return started

  def _save_error(self, step: int, error: BaseException
                  ) -> CheckpointSaveError:
    kept = self.all_steps()
    return CheckpointSaveError(
        f'saving checkpoint {self.directory / str(step)} failed: '
        f'{one_line_cause(error)}; earlier checkpoints kept: '
        f'{[s for s in kept if s != step] or "none"}')

  def check_for_errors(self) -> None:
    """Raises now if a finished background save failed (single process).

    Multi-process runs learn about a failed save at the next `save` or
    `close`, which every process reaches together.
    """
    if (self._pending_step is not None and jax.process_count() == 1
        and not self._manager.is_saving_in_progress()):
      self.wait_until_finished()

  def wait_until_finished(self) -> None:
    """Blocks until pending saves are on disk, then removes old ones.

    Raises:
      CheckpointSaveError: the pending save failed (its step is not kept;
        the earlier checkpoints are untouched).
    """
    step, self._pending_step = self._pending_step, None
    try:
      self._manager.wait_until_finished()
      self._manager.check_for_errors()
    except Exception as e:  # pylint: disable=broad-exception-caught
      raise self._save_error(step, e) from e
    if step is not None and not (self.directory / str(step)).exists():
      raise self._save_error(step, OSError('the step was not finalised'))
    self._remove_redundant()

  def _remove_redundant(self) -> None:
    """Deletes complete checkpoints not among the latest `keep` or best."""
    steps = self.all_steps()
    wanted = set(steps[-self._keep:])
    best = self.best_step()
    if best is not None:
      wanted.add(best)
    for step in steps:
      if step not in wanted:
        self._manager.delete(step)

  def restore(
      self,
      step: int | None,
      *,
      abstract_params: Any,
      abstract_opt_state: Any,
      data_iter: grain.DatasetIterator | grain.DataLoaderIterator | None,
      model_config: Any = None,
  ) -> Restored:
    """Restores and verifies a checkpoint into the given abstract targets.

    With `step=None` the newest usable checkpoint is restored; newer ones
    that fail verification are reported (one warning each) and moved to
    `WORKDIR/unusable_checkpoints/`, so the run can save those steps again.

    Args:
      step: which step; None = the latest usable one.
      abstract_params: pure dict of `jax.ShapeDtypeStruct` (with sharding).
      abstract_opt_state: abstract optax state, used when the checkpoint has
        one.
      data_iter: the training iterator; set to the saved state in place when
        the checkpoint has one (only after the arrays verified).
      model_config: the run's `config.model`; a checkpoint made with another
        one is refused.

    Returns:
      A `Restored`; `opt_state` is None for a params-only checkpoint.

    Raises:
      FileNotFoundError: no checkpoint (or not that step).
      UnusableCheckpointError: no usable checkpoint (or that step is not).
      ModelConfigMismatchError: made with another model config.
    """
    self.wait_until_finished()
    steps = _check_step(self.directory, step)

    def attempt(candidate: int):
      params, opt_state, meta = _restore_step(
          self._manager, self.directory, candidate,
          abstract_params=abstract_params,
          abstract_opt_state=abstract_opt_state, model_config=model_config)
      step_dir = self.directory / str(candidate)
      has_iter = data_iter is not None and _has_item(step_dir, meta,
                                                     DATA_ITER)
      if has_iter:
        before = data_iter.get_state()
        try:
          # Saved by another process count: the common stream position.
          other_count_state = _iterator_state_of_other_process_count(
              step_dir / DATA_ITER)
          if other_count_state is not None:
            data_iter.set_state(other_count_state)
          else:
            self._manager.restore(candidate, args=ocp.args.Composite(**{
                DATA_ITER: grain.checkpoint.CheckpointRestore(data_iter)}))
        except Exception as e:  # pylint: disable=broad-exception-caught
          data_iter.set_state(before)
          raise UnusableCheckpointError(
              f'{step_dir}/{DATA_ITER}: cannot be read '
              f'({one_line_cause(e)})') from e
      return params, opt_state, meta, has_iter

    restored_step, (params, opt_state, meta, has_iter), failed = (
        _first_usable(self.directory, steps, attempt))
    if failed:
      self._set_aside(failed)
    if opt_state is None:
      logging.info(
          'Checkpoint %s has parameters only: starting a fresh optimizer.',
          self.directory / str(restored_step),
      )
    return Restored(
        step=restored_step,
        params=params,
        opt_state=opt_state,
        meta=meta,
        data_iter_restored=has_iter,
        unusable_steps=failed,
    )

  def _set_aside(self, steps: Sequence[int]) -> None:
    """Moves unusable step directories to `WORKDIR/unusable_checkpoints/`."""
    if jax.process_index() == 0:
      self._unusable_directory.mkdir(parents=True, exist_ok=True)
      for step in steps:
        source = self.directory / str(step)
        target = self._unusable_directory / str(step)
        suffix = 1
        while target.exists():
          target = self._unusable_directory / f'{step}.{suffix}'
          suffix += 1
        source.rename(target)
        logging.warning('Moved unusable checkpoint %s to %s.', source,
                        target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('l2a_jax:unusable_checkpoints')
    self._manager.reload()

  def close(self) -> None:
    """Waits for pending saves (raising if one failed), releases Orbax."""
    try:
      self.wait_until_finished()
    finally:
      self._manager.close()

  def __enter__(self) -> 'CheckpointManager':
    return self

  def __exit__(self, exc_type, exc, traceback) -> None:
    if exc_type is None:
      self.close()
      return
    try:  # Do not hide the error that is already propagating.
      self.close()
    except CheckpointSaveError as error:
      logging.error('%s', error)
