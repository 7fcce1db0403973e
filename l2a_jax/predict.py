r"""Lifts 2D keypoint clips to 3D with the latest checkpoint of a workdir.

  python -m l2a_jax.predict --config configs/tcpformer_h36m.py \
      --workdir /tmp/tcp243 --input clips.npz --output poses.npz [--raw]

Input: an `.npz` with `keypoints_2d`, float `[N, T, J, C]`: N clips of
exactly T = `model.num_frames` frames, J = `model.num_joints` joints in the
skeleton's order (Human3.6M order unless `config.data.name` is
'mpi_inf_3dhp'), C = `model.dim_in` channels (x, y[, confidence]) already
normalised the way the model was trained (MotionBERT screen normalisation:
x' = x / w * 2 - 1, y' = y / w * 2 - h / w for an image w pixels wide and h
high). Longer sequences must be cut into T-frame clips first; the program
refuses other lengths rather than guessing a windowing.

Output: an `.npz` with `poses_3d`, float32 `[N, T, J, 3]`, written
atomically (temp file + rename), in the model's normalised units (multiply
by w / 2 for pixels; the evaluation protocols' mm conversion needs data the
input does not carry, so none is applied):
- default: flip test-time augmentation when `config.eval.flip_test` (the
  average of model(x) and flip(model(flip(x))), flipping x and swapping the
  skeleton's left/right joints), then the root joint set to 0 (targets are
  root-relative, as the evaluation protocol does);
- `--raw`: the model's output untouched (no flip averaging, no root zeroing,
  no (de)normalisation), e.g. for comparison with a PyTorch forward.

The checkpoint's parameters are re-laid out to the model of `--config`
(scanned or per-layer stacks alike); its saved model config must agree with
`--config` except for execution-only fields (dtype, scan_layers, remat,
history_vjp, drop_path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import os
import pathlib
import sys
from typing import Any

from absl import flags
from flax import nnx
import jax
import ml_collections
from ml_collections import config_flags
import numpy as np

from l2a_jax import atomic_output
from l2a_jax import checkpointing
from l2a_jax import cli
from l2a_jax import console
from l2a_jax import convert_torch
from l2a_jax import models
from l2a_jax.data import skeleton as skeleton_lib
from l2a_jax.data import transforms

INPUT_KEY = 'keypoints_2d'
OUTPUT_KEY = 'poses_3d'
# Model fields that change how the model runs, not what it computes: a
# checkpoint may be used with other values than it was trained with.
EXECUTION_ONLY_FIELDS = ('dtype', 'param_dtype', 'scan_layers', 'remat',
                         'recompute_attention', 'history_vjp', 'drop_path')


class InputError(ValueError):
  """Bad input or checkpoint for prediction; the message is one line."""


def skeleton_for(config: ml_collections.ConfigDict) -> skeleton_lib.Skeleton:
  """The joint order of the config's dataset (MPI-INF-3DHP or Human3.6M)."""
  return skeleton_lib.get(
      'mpi' if config.data.name == 'mpi_inf_3dhp' else 'h36m')


def load_keypoints(path: str | os.PathLike[str],
                   model_config: ml_collections.ConfigDict) -> np.ndarray:
  """Reads and validates the input clips.

  Args:
    path: `.npz` file with `keypoints_2d` `[N, T, J, C]`.
    model_config: gives T, J and C.

  Returns:
    float32 `[N, T, J, C]`.

  Raises:
    InputError: unreadable file, missing key, wrong rank, sizes or values.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(f'{path}: no such input file')
  try:
    data = np.load(path, allow_pickle=False)
  except Exception as e:  # pylint: disable=broad-exception-caught
    # np.load raises ValueError, OSError, zipfile errors, ... by cause.
    raise InputError(f'{path}: not a readable .npz file ({e})') from e
  if not isinstance(data, np.lib.npyio.NpzFile):
    raise InputError(f'{path}: a single array, expected an .npz with key '
                     f'{INPUT_KEY!r}')
  with data:
    if INPUT_KEY not in data.files:
      raise InputError(f'{path}: missing key {INPUT_KEY!r} (has '
                       f'{sorted(data.files)})')
    try:
      keypoints = data[INPUT_KEY]
    except Exception as e:  # pylint: disable=broad-exception-caught
      raise InputError(f'{path}: cannot read {INPUT_KEY!r} ({e})') from e
  name = f'{path}: {INPUT_KEY}'
  if not np.issubdtype(keypoints.dtype, np.floating):
    raise InputError(f'{name} has dtype {keypoints.dtype}, expected float32')
  if keypoints.ndim != 4:
    raise InputError(f'{name} has shape {keypoints.shape}, expected rank 4 '
                     '[clips, frames, joints, channels]')
  n, t, j, c = keypoints.shape
  expected = (model_config.num_frames, model_config.num_joints,
              model_config.dim_in)
  if n == 0:
    raise InputError(f'{name} holds no clips (shape {keypoints.shape})')
  if t != expected[0]:
    raise InputError(
        f'{name} has {t} frames per clip, the model takes exactly '
        f'model.num_frames = {expected[0]}: cut or resample the sequences '
        f'into {expected[0]}-frame clips')
  if j != expected[1]:
    raise InputError(f'{name} has {j} joints, expected model.num_joints = '
                     f'{expected[1]}')
  if c != expected[2]:
    raise InputError(f'{name} has {c} channels, expected model.dim_in = '
                     f'{expected[2]}')
  if not np.all(np.isfinite(keypoints)):
    raise InputError(f'{name} contains NaN or Inf')
  return keypoints.astype(np.float32)


def _config_differences(saved: Mapping[str, Any], wanted: Mapping[str, Any],
                        prefix: str = '') -> list[str]:
  """Fields present in both configs whose values differ."""
  diffs = []
  for key in sorted(set(saved) & set(wanted)):
    if not prefix and key in EXECUTION_ONLY_FIELDS:
      continue
    a, b = saved[key], wanted[key]
    if isinstance(a, Mapping) and isinstance(b, Mapping):
      diffs += _config_differences(a, b, f'{prefix}{key}.')
    elif a != b:
      diffs.append(f'{prefix}{key}: {a!r} (checkpoint) vs {b!r} (config)')
  return diffs


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
    InputError: the checkpoint does not belong to this model config.
    FileNotFoundError: no checkpoint.
  """
  saved, meta = checkpointing.restore_params(workdir, None, step)
  source = (f'{checkpointing.checkpoint_directory(workdir)}/'
            f'{meta.get("step", step)}')
  if isinstance(meta.get('model'), Mapping):
    diffs = _config_differences(meta['model'], model_config.to_dict())
    if diffs:
      raise InputError(f'{source}: model config differs from --config: '
                       + '; '.join(diffs))
  abstract = models.abstract_model(model_config)
  stacked = convert_torch.stacked_modules_of(abstract)
  # Through the per-layer torch naming, so a checkpoint of a scanned model
  # loads into an unrolled one and back, with one key / shape check.
  try:
    params = convert_torch.torch_to_jax(
        convert_torch.jax_to_torch(saved, stacked),
        convert_torch.abstract_params_of(abstract), stacked, source=source)
  except convert_torch.ConversionError as e:
    raise InputError(str(e)) from e
  model = convert_torch.model_from_params(model_config, params)
  return model, meta


def jitted_forward(model: nnx.Module):
  """`f(x)`: the deterministic model under `jax.jit`, NumPy in and out."""
  graphdef, state = nnx.split(model)
  forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
  return lambda x: np.asarray(forward(state, x))


def run_model(forward, keypoints: np.ndarray,
              batch_size: int) -> np.ndarray:
  """Applies a forward function to all clips in fixed-size batches.

  Args:
    forward: from `jitted_forward`, maps `[b, T, J, C]` to `[b, T, J, 3]`.
    keypoints: float32 `[N, T, J, C]`.
    batch_size: clips per call; the last batch is padded (with copies of
      the last clip), so one shape is compiled.

  Returns:
    float32 `[N, T, J, dim_out]`.
  """
  n = keypoints.shape[0]
  batch_size = max(1, min(batch_size, n))
  outputs = []
  for start in range(0, n, batch_size):
    batch = keypoints[start:start + batch_size]
    pad = batch_size - batch.shape[0]
    if pad:
      batch = np.concatenate([batch, np.repeat(batch[-1:], pad, 0)])
    outputs.append(forward(batch)[:batch_size - pad])
  return np.concatenate(outputs).astype(np.float32)


def predict_poses(model: nnx.Module, keypoints: np.ndarray, *,
                  raw: bool, flip_test: bool,
                  skeleton: skeleton_lib.Skeleton,
                  batch_size: int) -> np.ndarray:
  """3D poses for `[N, T, J, C]` clips (see the module docstring).

  Args:
    model: the lifting model.
    keypoints: float32 `[N, T, J, C]`, normalised.
    raw: return the model output untouched.
    flip_test: average with the un-flipped prediction of the flipped input.
    skeleton: joint order (flip pairs and root).
    batch_size: clips per model call.

  Returns:
    float32 `[N, T, J, 3]`.
  """
  forward = jitted_forward(model)
  poses = run_model(forward, keypoints, batch_size)
  if raw:
    return poses
  if flip_test:
    flipped = run_model(forward, transforms.flip(keypoints, skeleton),
                        batch_size)
    poses = 0.5 * (poses + transforms.flip(flipped, skeleton))
  poses[..., skeleton.root, :] = 0.0
  return poses


def write_outputs(path: str | os.PathLike[str], poses: np.ndarray) -> None:
  """Writes `poses_3d` to an .npz atomically (temp file, then rename)."""
  path = pathlib.Path(path)
  if not path.parent.is_dir():
    raise InputError(f'{path}: output directory {path.parent} does not exist')
  with atomic_output.atomic_output(path) as f:
    np.savez(f, **{OUTPUT_KEY: poses.astype(np.float32)})


def _define_flags() -> None:
  """Defines the command-line flags (only when run as a program)."""
  config_flags.DEFINE_config_file(
      'config', None, 'Run config file; fields can be overridden with '
      '--config.KEY=VALUE.', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Run directory with checkpoints/.')
  flags.DEFINE_string('input', None, f'.npz with {INPUT_KEY} [N, T, J, C].')
  flags.DEFINE_string('output', None, f'.npz to write ({OUTPUT_KEY}).')
  flags.DEFINE_bool('raw', False, 'Write the model output untouched.')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
  flags.DEFINE_integer('batch_size', 16, 'Clips per model call.')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    sys.exit(f'predict: error: unexpected arguments {argv[1:]}')
  console.configure()
  args = flags.FLAGS
  for name in ('config', 'workdir', 'input', 'output'):
    if not getattr(args, name):
      sys.exit(f'predict: error: --{name} is required')
  if args.batch_size < 1:
    sys.exit(f'predict: error: --batch_size must be >= 1, got '
             f'{args.batch_size}')
  config = args.config
  try:
    keypoints = load_keypoints(args.input, config.model)
    model, _ = load_model(config.model, args.workdir, args.step)
    poses = predict_poses(
        model, keypoints, raw=args.raw, flip_test=config.eval.flip_test,
        skeleton=skeleton_for(config), batch_size=args.batch_size)
    write_outputs(args.output, poses)
  except (InputError, OSError, ValueError) as e:
    message = ' '.join(str(e).split())
    sys.exit(f'predict: error: {message}')
  print(f'wrote {args.output}: {OUTPUT_KEY} {poses.shape}')


if __name__ == '__main__':
  _define_flags()
  cli.run(main, program='predict', doc=__doc__,
          required=('config', 'workdir', 'input', 'output'))
