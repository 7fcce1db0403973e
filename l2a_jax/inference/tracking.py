"""People across frames: bounding-box-overlap tracks and the choice of one.

Detector results list the people of each frame independently. `link_tracks`
links them into tracks frame by frame: each track is matched to the
detection whose keypoint bounding box overlaps its last box most
(intersection over union >= `min_iou`, greedy, best pairs first); a track
that finds no match waits (its last box stays) and may continue after a gap;
unmatched detections start new tracks. Tracks are numbered by their score
(the sum of their detections' scores), highest first, so track 0 is the
person seen longest and most confidently.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses

import numpy as np

from l2a_jax.inference import errors

MIN_IOU = 0.3


@dataclasses.dataclass(frozen=True)
class Detection:
  """One person in one frame.

  Attributes:
    keypoints: float32 `[J, 3]` (x, y, confidence), confidence 0 = missing.
    score: the detection's score (higher = more confident).
  """

  keypoints: np.ndarray
  score: float


def bounding_box(keypoints: np.ndarray) -> np.ndarray | None:
  """`[J, 3]` -> (x0, y0, x1, y1) of the joints with confidence > 0."""
  present = keypoints[:, 2] > 0
  if not np.any(present):
    return None
  xy = keypoints[present, :2]
  return np.concatenate([xy.min(axis=0), xy.max(axis=0)])


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
  """Intersection over union of two (x0, y0, x1, y1) boxes (0 if empty)."""
  width = min(a[2], b[2]) - max(a[0], b[0])
  height = min(a[3], b[3]) - max(a[1], b[1])
  if width <= 0 or height <= 0:
    return 0.0
  intersection = width * height
  union = ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
           - intersection)
  return float(intersection / union) if union > 0 else 0.0


def link_tracks(frames: Sequence[Sequence[Detection]], num_joints: int,
                min_iou: float = MIN_IOU) -> tuple[np.ndarray, np.ndarray]:
  """Links per-frame detections into tracks (see the module docstring).

  Args:
    frames: per frame, the detections of that frame (possibly none).
    num_joints: J.
    min_iou: least box overlap for a detection to continue a track.

  Returns:
    `(tracks, scores)`: float32 `[N, F, J, 3]`, confidence 0 in frames where
    the track has no detection, and float64 `[N]` track scores, sorted
    highest first.
  """
  boxes: list[np.ndarray] = []        # last box per track
  members: list[dict[int, Detection]] = []
  for t, detections in enumerate(frames):
    candidates = [(i, bounding_box(d.keypoints)) for i, d in
                  enumerate(detections)]
    candidates = [(i, box) for i, box in candidates if box is not None]
    pairs = sorted(
        ((box_iou(boxes[k], box), k, i) for k in range(len(boxes))
         for i, box in candidates), reverse=True)
    taken_tracks, taken_detections = set(), set()
    for iou, k, i in pairs:
      if iou < min_iou:
        break
      if k in taken_tracks or i in taken_detections:
        continue
      taken_tracks.add(k)
      taken_detections.add(i)
      members[k][t] = detections[i]
    for i, box in candidates:
      if i not in taken_detections:
        boxes.append(box)
        members.append({t: detections[i]})
    for k, track in enumerate(members):
      if t in track:
        boxes[k] = bounding_box(track[t].keypoints)
  num_frames = len(frames)
  scores = np.array([sum(d.score for d in track.values())
                     for track in members], np.float64)
  order = np.argsort(-scores, kind='stable')
  tracks = np.zeros((len(members), num_frames, num_joints, 3), np.float32)
  for n, k in enumerate(order):
    for t, detection in members[k].items():
      tracks[n, t] = detection.keypoints
  return tracks, scores[order]


def array_track_scores(tracks: np.ndarray) -> np.ndarray:
  """Scores of already-separated people `[N, F, J, 3]`: summed mean conf."""
  return tracks[..., 2].mean(axis=-1).sum(axis=-1).astype(np.float64)


def select_person(tracks: np.ndarray, scores: np.ndarray,
                  person: int | None, where: str) -> int:
  """The track to lift: `person` if given, else the highest-scoring.

  Args:
    tracks: `[N, F, J, 3]`.
    scores: `[N]`.
    person: a track index or None.
    where: file name for messages.

  Returns:
    The track index.

  Raises:
    InputError: no person at all, or `person` out of range.
  """
  count = tracks.shape[0]
  if count == 0 or not np.any(tracks[..., 2] > 0):
    raise errors.InputError(f'{where}: no person detected in any frame')
  if person is None:
    return int(np.argmax(scores))
  if not 0 <= person < count:
    raise errors.InputError(
        f'--person: expected 0..{count - 1} ({count} '
        f'{"person" if count == 1 else "people"} in {where}), got {person}')
  return person
