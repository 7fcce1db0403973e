"""Prediction files: `.npz` or `.json`, written atomically, read back.

Fields (both formats; arrays become nested lists in JSON):

  poses_3d        float32 [F, 17, 3] root-relative, root joint 0
                  (--raw: [N, F, J, 3] or [F, J, 3], the model output)
  units           'mm' | 'px' | 'normalised'
  units_description  what the unit means (normalization.UNIT_DESCRIPTIONS)
  joint_names     17 names, output joint order
  fps             float, only when known
  filled_frames   int [K] frames where a joint was interpolated
  filled_joints   bool [F, 17] which joints were interpolated
  keypoints_2d    float32 [F, 17, 3] the 2D input used (pixels, converted
                  to the output joint order, gaps filled, confidence)
  image_size      int [2] (W, H)
  keypoint_format the input layout
  person          the track lifted; num_people: tracks in the input

The JSON numbers are the exact float32 values, so a JSON file reads back
bit-identically.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np

from l2a_jax import atomic_output
from l2a_jax.inference import errors
from l2a_jax.inference import lifter as lifter_lib
from l2a_jax.inference import normalization

SUFFIXES = ('.npz', '.json')
_ARRAY_DTYPES = {'poses_3d': np.float32, 'keypoints_2d': np.float32,
                 'filled_frames': np.int64, 'filled_joints': bool,
                 'image_size': np.int64}


def check_output_path(path: str | os.PathLike[str], what: str = '--output',
                      suffixes: tuple[str, ...] = SUFFIXES) -> pathlib.Path:
  """Raises InputError unless `path` has a known suffix and its folder exists."""
  path = pathlib.Path(path)
  if path.suffix not in suffixes:
    raise errors.InputError(f'{what} {path}: expected a file ending in '
                            f'{" or ".join(suffixes)}, got {path.suffix!r}')
  if not path.parent.is_dir():
    raise errors.InputError(f'{what} {path}: output directory {path.parent} '
                            'does not exist')
  return path


def result_fields(result: lifter_lib.LiftResult) -> dict[str, Any]:
  """The fields of a prediction file for one lifted person."""
  fields = {
      'poses_3d': result.poses_3d.astype(np.float32),
      'units': result.units,
      'units_description': normalization.UNIT_DESCRIPTIONS[result.units],
      'joint_names': list(result.joint_names),
      'filled_frames': np.asarray(result.filled_frames, np.int64),
      'filled_joints': np.asarray(result.filled_joints, bool),
      'keypoints_2d': result.keypoints_2d.astype(np.float32),
      'image_size': np.asarray(result.image_size, np.int64),
      'keypoint_format': result.keypoint_format,
      'person': int(result.person),
      'num_people': int(result.num_people),
  }
  if result.fps is not None:
    fields['fps'] = float(result.fps)
  return fields


def raw_fields(poses: np.ndarray, joint_names, fps: float | None):
  """The fields of a `--raw` prediction file."""
  fields = {'poses_3d': poses.astype(np.float32),
            'units': normalization.NORMALISED,
            'units_description': normalization.UNIT_DESCRIPTIONS[
                normalization.NORMALISED],
            'joint_names': list(joint_names)}
  if fps is not None:
    fields['fps'] = float(fps)
  return fields


def _jsonable(value: Any) -> Any:
  if isinstance(value, np.ndarray):
    return value.tolist()
  return value


def write_fields(path: str | os.PathLike[str], fields: dict[str, Any]) -> None:
  """Writes the fields as `.npz` or `.json` (by suffix), atomically."""
  path = check_output_path(path)
  if path.suffix == '.json':
    text = json.dumps({k: _jsonable(v) for k, v in fields.items()})
    with atomic_output.atomic_output(path, 'w') as f:
      f.write(text)
  else:
    arrays = {k: (np.asarray(v) if not isinstance(v, list) else
                  np.asarray(v, dtype=str)) for k, v in fields.items()}
    with atomic_output.atomic_output(path) as f:
      np.savez(f, **arrays)


def read_fields(path: str | os.PathLike[str]) -> dict[str, Any]:
  """Reads a prediction file back (arrays as NumPy, strings as str)."""
  path = pathlib.Path(path)
  if path.suffix == '.json':
    with open(path, encoding='utf-8') as f:
      data = json.load(f)
  else:
    with np.load(path, allow_pickle=False) as archive:
      data = {k: archive[k] for k in archive.files}
    for key, value in data.items():
      if value.dtype.kind == 'U':
        data[key] = value.tolist()
      elif value.ndim == 0:
        data[key] = value.item()
  for key, dtype in _ARRAY_DTYPES.items():
    if key in data:
      data[key] = np.asarray(data[key], dtype)
  return data
