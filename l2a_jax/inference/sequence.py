"""Sequences of any length: gap filling, sliding windows, blending.

- `fill_gaps`: joints with confidence 0 (no detection in that frame, or the
  detector gave up on the joint) are linearly interpolated in time between
  the nearest frames where the joint was seen, and held constant before
  the first and after the last of them; the confidence is interpolated the
  same way.
- `lift_sequence`: a model takes exactly T frames. A sequence of F > T
  frames is cut into windows starting at 0, stride, 2 stride, ... plus one
  window ending at the last frame; every frame's output is the average of
  the windows covering it with weights that favour each window's centre
  (`centre_weights`: a triangle, 1 at the centre, 1 / (c + 1) at the
  edges, c = (T - 1) / 2), so frames near a window edge, where the model
  sees only one side of the motion, count less. A sequence of F < T frames
  is padded to T by repeating its first and last frames (half before, half
  after) and the padding's outputs are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from l2a_jax.inference import errors

# [b, T, J, C] -> [b, T, J, 3]
WindowFn = Callable[[np.ndarray], np.ndarray]


def fill_gaps(keypoints: np.ndarray, joint_names: Sequence[str],
              where: str = 'keypoints') -> tuple[np.ndarray, np.ndarray]:
  """Interpolates missing joints over time.

  Args:
    keypoints: float32 `[F, J, 3]` (x, y, confidence); confidence <= 0 is
      missing.
    joint_names: J names, for the message.
    where: input name, for the message.

  Returns:
    `(filled, was_missing)`: float32 `[F, J, 3]` with every joint present,
    and bool `[F, J]`, True where a value was interpolated.

  Raises:
    InputError: a joint that is missing in every frame.
  """
  keypoints = np.asarray(keypoints, np.float32)
  missing = ~(keypoints[..., 2] > 0)
  never = np.all(missing, axis=0)
  if np.any(never):
    names = [joint_names[j] for j in np.flatnonzero(never)]
    raise errors.InputError(
        f'{where}: joint(s) {", ".join(names)} have confidence 0 in all '
        f'{keypoints.shape[0]} frames: cannot fill them')
  filled = keypoints.copy()
  frames = np.arange(keypoints.shape[0], dtype=np.float64)
  for j in np.flatnonzero(np.any(missing, axis=0)):
    seen = ~missing[:, j]
    for c in range(3):
      filled[:, j, c] = np.interp(frames, frames[seen],
                                  keypoints[seen, j, c])
  return filled, missing


def centre_weights(window: int) -> np.ndarray:
  """float64 `[T]` blending weights: 1 at the centre, 1/(c+1) at the ends."""
  centre = (window - 1) / 2
  return 1.0 - np.abs(np.arange(window) - centre) / (centre + 1.0)


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
  """Start frames of the windows covering `num_frames` (module docstring)."""
  if stride < 1:
    raise errors.InputError(f'--stride: expected >= 1, got {stride}')
  if num_frames <= window:
    return [0]
  starts = list(range(0, num_frames - window + 1, stride))
  if starts[-1] != num_frames - window:
    starts.append(num_frames - window)
  return starts


def lift_sequence(window_fn: WindowFn, inputs: np.ndarray, window: int,
                  stride: int) -> np.ndarray:
  """Applies a T-frame model to a sequence of any length.

  Args:
    window_fn: maps `[b, T, J, C]` clips to `[b, T, J, D]` outputs.
    inputs: `[F, J, C]`, F >= 1.
    window: T.
    stride: frames between window starts (<= T for overlap).

  Returns:
    float32 `[F, J, D]`: the centre-weighted average of the windows'
    outputs (module docstring).
  """
  num_frames = inputs.shape[0]
  if num_frames < window:
    before = (window - num_frames) // 2
    index = np.clip(np.arange(window) - before, 0, num_frames - 1)
    return np.asarray(window_fn(inputs[index][None])[0],
                      np.float32)[before:before + num_frames]
  starts = window_starts(num_frames, window, stride)
  clips = np.stack([inputs[s:s + window] for s in starts])
  outputs = np.asarray(window_fn(clips), np.float64)
  weights = centre_weights(window)
  total = np.zeros((num_frames,) + outputs.shape[2:], np.float64)
  weight_sum = np.zeros((num_frames,), np.float64)
  for start, output in zip(starts, outputs):
    total[start:start + window] += weights[:, None, None] * output
    weight_sum[start:start + window] += weights
  return (total / weight_sum[:, None, None]).astype(np.float32)
