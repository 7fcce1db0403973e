"""Orbax checkpoints: `WORKDIR/checkpoints/<step>/` with named items.

One Orbax `CheckpointManager` writes every checkpoint of this project. A step
directory holds up to four items:

- `params`: the model's `nnx.Param` state as a pure nested dict of arrays
  (`nnx.to_pure_dict`), always present;
- `opt_state`: the optax state (training checkpoints only);
- `data_iter`: the grain training-iterator state, one JSON file per process
  (training checkpoints only), so a resumed run continues the data stream;
- `meta`: JSON with at least `step` and `model` (the model config as a dict),
  plus the eval metrics of that step when there were any.

Two entry points:

- `save_params` / `restore_params`: params-only checkpoints (the torch
  converter writes them; `predict` and evaluation read any checkpoint's
  parameters through `restore_params`).
- `CheckpointManager`: the trainer's manager. Async saves, the `keep` latest
  checkpoints plus the best one by an eval metric, and restore of everything;
  for a params-only checkpoint `restore` returns `opt_state=None` and the
  trainer starts a fresh optimizer from those parameters.

Every process of a multi-process run must call the saving and restoring
methods (Orbax synchronises them); only the primary process writes `meta`.
"""

import dataclasses
import functools
import math
import os
from typing import Any, Callable, Mapping

from absl import logging
from etils import epath
from flax import nnx
import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

# Sub-directory of the workdir holding the step directories.
CHECKPOINT_SUBDIR = 'checkpoints'
PARAMS = 'params'
OPT_STATE = 'opt_state'
DATA_ITER = 'data_iter'
META = 'meta'


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
    sharding = getattr(leaf, 'sharding', None)
    if not isinstance(sharding, jax.sharding.Sharding):
      sharding = default
    return jax.ShapeDtypeStruct(
        tuple(leaf.shape), np.dtype(leaf.dtype), sharding=sharding
    )

  return jax.tree.map(to_struct, tree)


def _metric_or_inf(metrics: Mapping[str, float], key: str) -> float:
  return float(metrics.get(key, math.inf))


def _new_orbax_manager(
    directory: epath.Path,
    *,
    keep: int | None,
    best_metric: str | None,
    async_saves: bool,
    read_only: bool = False,
) -> ocp.CheckpointManager:
  """An Orbax manager over the four named items of this layout."""
  policies = []
  if keep is not None:
    policies.append(ocp.checkpoint_managers.LatestN(n=keep))
  best_fn = None
  if best_metric is not None:
    # Lower is better for every tracked metric (errors in mm); a checkpoint
    # without metrics is kept only while it is among the latest `keep`.
    best_fn = functools.partial(_metric_or_inf, key=best_metric)
    policies.append(
        ocp.checkpoint_managers.BestN(
            get_metric_fn=best_fn,
            reverse=True,
            n=1,
            keep_checkpoints_without_metrics=False,
        )
    )
  options = ocp.CheckpointManagerOptions(
      preservation_policy=(
          ocp.checkpoint_managers.AnyPreservationPolicy(policies)
          if policies
          else None
      ),
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
  return sorted(ocp.utils.checkpoint_steps(directory))


def _resolve_step(directory: epath.Path, step: int | None) -> int:
  steps = _existing_steps(directory)
  if not steps:
    raise FileNotFoundError(f'no checkpoint found under {directory}')
  if step is None:
    return steps[-1]
  if step not in steps:
    raise FileNotFoundError(
        f'no checkpoint for step {step} under {directory}; have {steps}'
    )
  return step


def _has_item(directory: epath.Path, step: int, item: str) -> bool:
  return (directory / str(step) / item).exists()


def _params_target(
    manager: ocp.CheckpointManager, step: int, abstract_params: Any
) -> Any:
  """The restore target for `params`: given, or host NumPy from metadata."""
  if abstract_params is not None:
    return _abstract_tree(to_pure_params(abstract_params))
  # Plain shapes: `_abstract_tree` places them on this process's device.
  return _abstract_tree(manager.item_metadata(step)[PARAMS])


def _as_requested_type(restored: dict[str, Any], abstract_params: Any) -> Any:
  """Returns `restored` as an `nnx.State` when the target was one."""
  if isinstance(abstract_params, nnx.State):
    state = jax.tree.map(lambda x: x, abstract_params)
    nnx.replace_by_pure_dict(state, restored)
    return state
  return restored


def _flat_paths(tree: Any) -> set[str]:
  """'a/0/kernel'-style paths of a tree's leaves (int and str keys alike)."""

  def key_name(key) -> str:
    for attr in ('key', 'idx', 'name'):
      if hasattr(key, attr):
        return str(getattr(key, attr))
    return str(key)

  return {
      '/'.join(key_name(k) for k in path)
      for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def _check_params_structure(
    step_dir: epath.Path, target: Any, saved: Any
) -> None:
  """Raises a one-line error when the saved and wanted trees differ."""
  wanted, have = _flat_paths(target), _flat_paths(saved)
  if wanted != have:
    missing = sorted(wanted - have)[:3]
    extra = sorted(have - wanted)[:3]
    raise ValueError(
        f'{step_dir}/{PARAMS}: parameter tree does not match the model: '
        f'missing {missing}, unexpected {extra}'
    )


def save_params(
    workdir: str | os.PathLike[str],
    params: Any,
    meta: Mapping[str, Any],
) -> epath.Path:
  """Writes a params-only checkpoint `WORKDIR/checkpoints/<step>/`.

  Args:
    workdir: run directory; the checkpoint goes under `checkpoints/`.
    params: `nnx.State` of `nnx.Param` or the equivalent pure nested dict of
      arrays (NumPy or JAX).
    meta: JSON-serialisable dict; `meta['step']` (default 0) names the step
      directory; should carry `model` (the model config as a dict).

  Returns:
    The step directory written.

  Raises:
    FileExistsError: a checkpoint for that step already exists.
  """
  directory = checkpoint_directory(workdir)
  meta = dict(meta)
  step = int(meta.setdefault('step', 0))
  if step in _existing_steps(directory):
    raise FileExistsError(f'checkpoint {directory / str(step)} already exists')
  manager = _new_orbax_manager(
      directory, keep=None, best_metric=None, async_saves=False
  )
  try:
    manager.save(
        step,
        args=ocp.args.Composite(
            **{
                PARAMS: ocp.args.StandardSave(to_pure_params(params)),
                META: ocp.args.JsonSave(meta),
            }
        ),
    )
    manager.wait_until_finished()
  finally:
    manager.close()
  return directory / str(step)


def restore_params(
    workdir: str | os.PathLike[str],
    abstract_params: Any = None,
    step: int | None = None,
) -> tuple[Any, dict[str, Any]]:
  """Reads the parameters and meta data of a checkpoint.

  Works for params-only and full training checkpoints alike.

  Args:
    workdir: run directory holding `checkpoints/`.
    abstract_params: target tree (`nnx.State` or pure dict) whose leaves are
      arrays or `jax.ShapeDtypeStruct`s; a leaf's sharding, when set, places
      the restored array. None: restore as saved, as host NumPy arrays.
    step: which step; None = the latest.

  Returns:
    `(params, meta)`: params in the form of `abstract_params` (an
    `nnx.State` when that was one, else a pure dict), meta the JSON dict.

  Raises:
    FileNotFoundError: no checkpoint (or not that step) under the workdir.
    ValueError: the saved parameter tree differs from `abstract_params`.
  """
  directory = checkpoint_directory(workdir)
  step = _resolve_step(directory, step)
  manager = _new_orbax_manager(
      directory, keep=None, best_metric=None, async_saves=False,
      read_only=True,
  )
  try:
    target = _params_target(manager, step, abstract_params)
    if abstract_params is not None:
      _check_params_structure(
          directory / str(step), target, manager.item_metadata(step)[PARAMS]
      )
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            **{
                PARAMS: ocp.args.StandardRestore(target),
                META: ocp.args.JsonRestore(),
            }
        ),
    )
  finally:
    manager.close()
  params = restored[PARAMS]
  if abstract_params is None:
    params = jax.tree.map(np.asarray, params)
  return _as_requested_type(params, abstract_params), dict(restored[META])


@dataclasses.dataclass
class Restored:
  """What `CheckpointManager.restore` returns.

  Attributes:
    step: the restored step.
    params: pure dict of parameters (placed as the abstract target says).
    opt_state: the optax state, or None for a params-only checkpoint.
    meta: the JSON meta data.
    data_iter_restored: whether the data iterator was set to the saved state.
  """

  step: int
  params: Any
  opt_state: Any | None
  meta: dict[str, Any]
  data_iter_restored: bool


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
    """
    if keep < 1:
      raise ValueError(f'keep_checkpoints must be >= 1, got {keep}')
    self.directory = checkpoint_directory(workdir)
    self._manager = _new_orbax_manager(
        self.directory,
        keep=keep,
        best_metric=best_metric,
        async_saves=async_saves,
    )

  def latest_step(self) -> int | None:
    """The newest step on disk, or None."""
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    """The step with the lowest tracked metric (the latest if none has one)."""
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

    Args:
      step: training step (number of optimizer updates done).
      params: pure dict (or `nnx.State`) of the parameters.
      opt_state: optax state.
      data_iter: the training iterator, positioned after the batches consumed
        by `step` updates; None leaves the item out.
      meta: JSON-serialisable dict; `step` is added.
      metrics: eval metrics of this step (for the best-checkpoint policy;
        also stored in meta under `eval`).

    Returns:
      False if a checkpoint for `step` already exists (nothing is written),
      else True.
    """
    if step in self._manager.all_steps():
      return False
    meta = dict(meta, step=int(step))
    if metrics is not None:
      metrics = {k: float(v) for k, v in metrics.items()
                 if np.ndim(v) == 0}
      meta['eval'] = metrics
    items = {
        PARAMS: ocp.args.StandardSave(to_pure_params(params)),
        OPT_STATE: ocp.args.StandardSave(opt_state),
        META: ocp.args.JsonSave(meta),
    }
    if data_iter is not None:
      items[DATA_ITER] = grain.checkpoint.CheckpointSave(data_iter)
    return self._manager.save(
        step, args=ocp.args.Composite(**items), metrics=metrics, force=True
    )

  def restore(
      self,
      step: int | None,
      *,
      abstract_params: Any,
      abstract_opt_state: Any | Callable[[Any], Any],
      data_iter: grain.DatasetIterator | grain.DataLoaderIterator | None,
  ) -> Restored:
    """Restores a checkpoint into the given abstract targets.

    Args:
      step: which step; None = the latest.
      abstract_params: pure dict of `jax.ShapeDtypeStruct` (with sharding).
      abstract_opt_state: abstract optax state, used when the checkpoint has
        one.
      data_iter: the training iterator; set to the saved state in place when
        the checkpoint has one.

    Returns:
      A `Restored`; `opt_state` is None for a params-only checkpoint.

    Raises:
      FileNotFoundError: no checkpoint (or not that step).
      ValueError: the saved parameter tree differs from `abstract_params`.
    """
    step = _resolve_step(self.directory, step)
    step_dir = self.directory / str(step)
    target = _abstract_tree(to_pure_params(abstract_params))
    _check_params_structure(
        step_dir, target, self._manager.item_metadata(step)[PARAMS]
    )
    items = {
        PARAMS: ocp.args.StandardRestore(target),
        META: ocp.args.JsonRestore(),
    }
    has_opt = _has_item(self.directory, step, OPT_STATE)
    if has_opt:
      items[OPT_STATE] = ocp.args.StandardRestore(
          _abstract_tree(abstract_opt_state)
      )
    has_iter = data_iter is not None and _has_item(
        self.directory, step, DATA_ITER
    )
    if has_iter:
      items[DATA_ITER] = grain.checkpoint.CheckpointRestore(data_iter)
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    if not has_opt:
      logging.info(
          'Checkpoint %s has parameters only: starting a fresh optimizer.',
          step_dir,
      )
    return Restored(
        step=step,
        params=restored[PARAMS],
        opt_state=restored[OPT_STATE] if has_opt else None,
        meta=dict(restored[META]),
        data_iter_restored=has_iter,
    )

  def wait_until_finished(self) -> None:
    """Blocks until pending async saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> 'CheckpointManager':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
