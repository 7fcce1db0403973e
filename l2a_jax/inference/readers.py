"""Reads 2D keypoint files: arrays, detector results, OpenPose folders.

Accepted inputs (all in pixels; docs/predict.md has examples):

1. Keypoint arrays, `.npz` or a `.json` object:
   `keypoints_2d` `[F, J, 2|3]` (one person) or `[N, F, J, 2|3]` (N people,
   already tracked), x, y[, confidence]; optional `image_size` [W, H],
   `fps`, `keypoint_format` (a name of `keypoint_formats.FORMATS`).
2. COCO / AlphaPose results, `.json`: a list of records
   `{"image_id": int | "name_0012.jpg", "keypoints": [x, y, score, ...],
   "score": float}` (any number of people per frame; frames ordered by
   image id, or by the last number in the image file name; frames missing
   between two ids have no detection). A COCO annotation file (a dict with
   `annotations`, and `images` giving `width` / `height`) is read the same
   way.
3. An OpenPose output folder: one `*_keypoints.json` per frame with
   `people[*].pose_keypoints_2d` (BODY_25), frames ordered by the number in
   the file name.

Detector results (2, 3) are linked into tracks by `tracking.link_tracks`;
every reader returns a `KeypointInput` with tracks `[N, F, J, 3]`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
from typing import Any

import numpy as np

from l2a_jax.inference import errors
from l2a_jax.inference import keypoint_formats
from l2a_jax.inference import tracking

INPUT_KEY = 'keypoints_2d'


@dataclasses.dataclass
class KeypointInput:
  """What a keypoint file holds, people already separated into tracks.

  Attributes:
    tracks: float32 `[N, F, J, 3]` pixels + confidence (0 = missing).
    scores: float64 `[N]`, higher = more confident / longer.
    keypoint_format: the layout the file states (a key of
      `keypoint_formats.FORMATS`), or None.
    assumed_format: the layout assumed when neither the file nor the user
      says: by joint count, 17 joints = 'h36m' for arrays, 'coco' for
      detector results.
    image_size: (W, H) in pixels, or one (W, H) per track (an `[N, 2]`
      `image_size` field, e.g. the per-camera sizes of a BVH import), or
      None when the file does not say.
    fps: frame rate, or None.
    source: the file or folder, for messages.
  """

  tracks: np.ndarray
  scores: np.ndarray
  keypoint_format: str | None
  assumed_format: str
  image_size: tuple[int, int] | list[tuple[int, int]] | None
  fps: float | None
  source: str


def parse_image_size(value: Any, where: str) -> tuple[int, int]:
  """`[W, H]` / 'W,H' -> (W, H) positive ints; InputError otherwise."""
  if isinstance(value, str):
    parts = value.replace('x', ',').split(',')
  else:
    parts = np.asarray(value).reshape(-1).tolist()
  try:
    if len(parts) != 2:
      raise ValueError
    size = tuple(float(p) for p in parts)
    if not all(math.isfinite(s) and s > 0 and s == int(s) for s in size):
      raise ValueError
  except (TypeError, ValueError):
    raise errors.InputError(
        f'{where}: image_size: expected two positive integers W,H, got '
        f'{value!r}') from None
  return int(size[0]), int(size[1])


def _image_sizes(value: Any, num_tracks: int, where: str):
  """An `image_size` field: [W, H], or [N, 2] with one row per track."""
  array = np.asarray(value)
  if array.ndim == 2 and array.shape == (num_tracks, 2):
    return [parse_image_size(row, where) for row in array]
  if array.size != 2:
    raise errors.InputError(
        f'{where}: image_size: expected [W, H] or [{num_tracks}, 2] (one per '
        f'person), got shape {array.shape}')
  return parse_image_size(array, where)


def _check_format_name(value: Any, where: str) -> str:
  name = str(np.asarray(value).reshape(-1)[0]) if not isinstance(
      value, str) else value
  if name not in keypoint_formats.FORMATS:
    raise errors.InputError(
        f'{where}: keypoint_format: expected one of '
        f'{"|".join(keypoint_formats.FORMATS)}, got {name!r}')
  return name


def _fps(value: Any, where: str) -> float:
  try:
    fps = float(np.asarray(value, np.float64).reshape(-1)[0])
  except (TypeError, ValueError, IndexError):
    fps = -1.0
  if not (math.isfinite(fps) and fps > 0):
    raise errors.InputError(f'{where}: fps: expected a positive number, got '
                            f'{value!r}')
  return fps


def _keypoint_array(value: Any, where: str) -> np.ndarray:
  """Validates `keypoints_2d` and returns float32 `[N, F, J, 2|3]`."""
  name = f'{where}: {INPUT_KEY}'
  try:
    array = np.asarray(value)
    if array.dtype == object:
      raise ValueError('ragged')
    array = array.astype(np.float64) if array.dtype.kind in 'iub' else array
  except (TypeError, ValueError):
    raise errors.InputError(
        f'{name}: expected a numeric array [F, J, 2|3] or [N, F, J, 2|3], '
        'got ragged or non-numeric data') from None
  if not np.issubdtype(array.dtype, np.floating):
    raise errors.InputError(f'{name}: expected float numbers, got dtype '
                            f'{array.dtype}')
  if array.ndim == 3:
    array = array[None]
  if array.ndim != 4 or array.shape[-1] not in (2, 3):
    raise errors.InputError(f'{name}: expected shape [F, J, 2|3] or '
                            f'[N, F, J, 2|3], got {array.shape}')
  if array.shape[0] == 0 or array.shape[1] == 0:
    raise errors.InputError(f'{name}: holds no frames (shape {array.shape})')
  if np.any(np.isinf(array)):
    raise errors.InputError(f'{name}: contains Inf (use NaN or confidence 0 '
                            'for missing joints)')
  return array.astype(np.float32)


def _from_arrays(fields: dict[str, Any], where: str) -> KeypointInput:
  """Case 1 of the module docstring, from a dict of fields."""
  if INPUT_KEY not in fields:
    raise errors.InputError(f'{where}: missing field {INPUT_KEY!r} (has '
                            f'{sorted(fields)})')
  array = _keypoint_array(fields[INPUT_KEY], where)
  name = (_check_format_name(fields['keypoint_format'], where)
          if 'keypoint_format' in fields else None)
  tracks = keypoint_formats.with_confidence(array)
  return KeypointInput(
      tracks=tracks, scores=tracking.array_track_scores(tracks),
      keypoint_format=name,
      assumed_format=name or keypoint_formats.guess_format(
          array.shape[2], 'h36m', where),
      image_size=(_image_sizes(fields['image_size'], array.shape[0], where)
                  if 'image_size' in fields else None),
      fps=_fps(fields['fps'], where) if 'fps' in fields else None,
      source=where)


def _frame_numbers(ids: list[Any], where: str) -> list[int]:
  """Frame index per record from image ids (see the module docstring)."""
  if all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
    numbers = list(ids)
  else:
    digits = [re.findall(r'\d+', str(i)) for i in ids]
    if not all(digits):  # names without numbers: sorted order, no gaps
      order = {name: k for k, name in enumerate(sorted(set(map(str, ids))))}
      return [order[str(i)] for i in ids]
    numbers = [int(d[-1]) for d in digits]
  first = min(numbers)
  frames = [n - first for n in numbers]
  if max(frames) > 1_000_000:
    raise errors.InputError(f'{where}: image_id: frame numbers span '
                            f'{max(frames) + 1} frames, expected consecutive '
                            'frame ids')
  return frames


def _from_records(records: list[Any], where: str,
                  images: dict[Any, Any] | None = None) -> KeypointInput:
  """Case 2: COCO / AlphaPose result records, linked into tracks."""
  if not records:
    raise errors.InputError(f'{where}: the result list is empty (no person '
                            'detected)')
  parsed, ids = [], []
  num_values = None
  for k, record in enumerate(records):
    here = f'{where}: record {k}'
    if not isinstance(record, dict):
      raise errors.InputError(f'{here}: expected an object with image_id and '
                              f'keypoints, got {type(record).__name__}')
    for field in ('image_id', 'keypoints'):
      if field not in record:
        raise errors.InputError(f'{here}: missing field {field!r} (has '
                                f'{sorted(record)})')
    try:
      values = np.asarray(record['keypoints'], np.float64).reshape(-1)
    except (TypeError, ValueError):
      raise errors.InputError(f'{here}: keypoints: expected a list of '
                              'numbers [x, y, score, ...]') from None
    if values.size == 0 or values.size % 3:
      raise errors.InputError(f'{here}: keypoints: expected 3 numbers per '
                              f'joint, got {values.size}')
    if num_values is not None and values.size != num_values:
      raise errors.InputError(f'{here}: keypoints: {values.size // 3} '
                              f'joints, earlier records {num_values // 3}')
    num_values = values.size
    keypoints = keypoint_formats.with_confidence(values.reshape(-1, 3))
    score = record.get('score')
    if score is None:
      present = keypoints[:, 2] > 0
      score = float(keypoints[present, 2].mean()) if present.any() else 0.0
    try:
      score = float(score)
    except (TypeError, ValueError):
      raise errors.InputError(f'{here}: score: expected a number, got '
                              f'{score!r}') from None
    parsed.append(tracking.Detection(keypoints, score))
    ids.append(record['image_id'])
  frame_of = _frame_numbers(ids, where)
  frames: list[list[tracking.Detection]] = [
      [] for _ in range(max(frame_of) + 1)]
  for detection, frame in zip(parsed, frame_of):
    frames[frame].append(detection)
  num_joints = num_values // 3
  tracks, scores = tracking.link_tracks(frames, num_joints)
  image_size = None
  if images:
    sizes = {(image.get('width'), image.get('height'))
             for image in images.values()}
    if len(sizes) == 1 and None not in next(iter(sizes)):
      image_size = parse_image_size(list(next(iter(sizes))), where)
  return KeypointInput(
      tracks=tracks, scores=scores,
      keypoint_format=None,
      assumed_format=keypoint_formats.guess_format(num_joints, 'coco', where),
      image_size=image_size, fps=None, source=where)


def _read_json(path: pathlib.Path) -> Any:
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise errors.InputError(f'{path}: not valid JSON ({e})') from e
  except UnicodeDecodeError as e:
    raise errors.InputError(f'{path}: not a UTF-8 JSON text file') from e


def _from_openpose_folder(folder: pathlib.Path) -> KeypointInput:
  """Case 3: an OpenPose `--write_json` folder."""
  files = sorted(folder.glob('*_keypoints.json'))
  if not files:
    raise errors.InputError(f'{folder}: no *_keypoints.json files (expected '
                            'an OpenPose --write_json folder)')
  records = []
  for path in files:
    digits = re.findall(r'\d+', path.name[:-len('_keypoints.json')])
    if not digits:
      raise errors.InputError(f'{path}: expected a frame number in the file '
                              'name (OpenPose writes NAME_000000000012_'
                              'keypoints.json)')
    data = _read_json(path)
    people = data.get('people') if isinstance(data, dict) else None
    if not isinstance(people, list):
      raise errors.InputError(f'{path}: missing field \'people\' (expected '
                              'OpenPose output)')
    for k, person in enumerate(people):
      values = person.get('pose_keypoints_2d') if isinstance(
          person, dict) else None
      if values is None:
        raise errors.InputError(f'{path}: people[{k}]: missing field '
                                "'pose_keypoints_2d'")
      if len(values) != 75:
        raise errors.InputError(
            f'{path}: people[{k}]: pose_keypoints_2d: expected 75 numbers '
            f'(BODY_25), got {len(values)}')
      records.append({'image_id': int(digits[-1]), 'keypoints': values})
  if not records:
    raise errors.InputError(f'{folder}: no person detected in any of '
                            f'{len(files)} frames')
  first = min(int(re.findall(r'\d+', p.name[:-len('_keypoints.json')])[-1])
              for p in files)
  last = max(int(re.findall(r'\d+', p.name[:-len('_keypoints.json')])[-1])
             for p in files)
  result = _from_records(records, str(folder))
  # Frames at the start or end without people still count as frames.
  lead = min(r['image_id'] for r in records) - first
  tail = last - max(r['image_id'] for r in records)
  if lead or tail:
    result.tracks = np.pad(result.tracks,
                           ((0, 0), (lead, tail), (0, 0), (0, 0)))
  result.keypoint_format = result.assumed_format = 'openpose25'
  return result


def read_keypoints(path: str | os.PathLike[str]) -> KeypointInput:
  """Reads any accepted input (module docstring) into tracks.

  Raises:
    InputError: missing or unreadable file, missing field, bad shape.
  """
  path = pathlib.Path(path)
  where = str(path)
  if path.is_dir():
    return _from_openpose_folder(path)
  if not path.is_file():
    raise errors.InputError(f'{where}: no such input file or folder')
  if path.suffix == '.npz':
    try:
      data = np.load(path, allow_pickle=False)
    except Exception as e:  # pylint: disable=broad-exception-caught
      # np.load raises ValueError, OSError, zipfile errors, ... by cause.
      raise errors.InputError(f'{where}: not a readable .npz file ({e})') from e
    if not isinstance(data, np.lib.npyio.NpzFile):
      raise errors.InputError(f'{where}: a single array, expected an .npz '
                              f'with key {INPUT_KEY!r}')
    with data:
      try:
        fields = {key: data[key] for key in data.files}
      except Exception as e:  # pylint: disable=broad-exception-caught
        raise errors.InputError(f'{where}: cannot read its arrays ({e})') from e
    return _from_arrays(fields, where)
  if path.suffix == '.json':
    data = _read_json(path)
    if isinstance(data, list):
      return _from_records(data, where)
    if isinstance(data, dict) and 'annotations' in data:
      images = {image.get('id'): image for image in data.get('images', [])
                if isinstance(image, dict)}
      return _from_records(data['annotations'], where, images)
    if isinstance(data, dict):
      return _from_arrays(data, where)
    raise errors.InputError(f'{where}: expected a JSON object or a list of '
                            f'result records, got {type(data).__name__}')
  raise errors.InputError(f'{where}: expected a .npz or .json file or an '
                          f'OpenPose folder, got suffix {path.suffix!r}')


def raw_array(path: str | os.PathLike[str]) -> np.ndarray:
  """The `keypoints_2d` array of an .npz / .json object as stored (`--raw`).

  Returns:
    float32 `[F, J, C]` or `[N, F, J, C]`, all finite.

  Raises:
    InputError: not an array file, missing field, bad shape, NaN / Inf.
  """
  path = pathlib.Path(path)
  where = str(path)
  if path.suffix == '.npz':
    with np.load(path, allow_pickle=False) as data:
      value = data[INPUT_KEY] if INPUT_KEY in data.files else None
  else:
    data = _read_json(path)
    value = data.get(INPUT_KEY) if isinstance(data, dict) else None
  if value is None:
    raise errors.InputError(f'{where}: --raw needs a keypoint array file with '
                            f'field {INPUT_KEY!r}')
  array = _keypoint_array(value, where)
  if not np.all(np.isfinite(array)):
    raise errors.InputError(f'{where}: {INPUT_KEY}: contains NaN (--raw feeds '
                            'the model as is: fill the gaps first)')
  return array[0] if np.asarray(value).ndim == 3 else array
