"""Pure NumPy pose transforms: flip, root-relative, screen (de)normalisation.

Screen normalisation (MotionBERT / VideoPose3D, aspect preserved, both axes
divided by the image width w):

  x' = x / w * 2 - 1,   y' = y / w * 2 - h / w,   z' = z / w * 2.

A length in pixels (or, for camera-space data, in millimetres) times 2 / w is
a length in normalised units; `scale_to_mm` in the batches is the inverse.
"""

import numpy as np

from l2a_jax.data import skeleton as skeleton_lib


def flip(poses: np.ndarray, skeleton: skeleton_lib.Skeleton) -> np.ndarray:
  """Mirrors poses left-right in normalised (image-centred) coordinates.

  Negates channel 0 (x) and swaps every left joint with its right partner.
  Other channels (y, z, confidence) are only permuted with the joints.

  Args:
    poses: `[..., joints, channels]`, x in channel 0, centred on 0.
    skeleton: gives the left/right joint lists.

  Returns:
    The flipped poses, same shape and dtype (a new array).
  """
  flipped = poses[..., skeleton.flip_permutation, :].copy()
  flipped[..., 0] *= -1
  return flipped


def root_relative(poses: np.ndarray, root: int) -> np.ndarray:
  """Subtracts the root joint per frame.

  Args:
    poses: `[..., joints, channels]`.
    root: root joint index.

  Returns:
    `[..., joints, channels]` with the root joint at 0.
  """
  return poses - poses[..., root:root + 1, :]


def normalize_screen(points: np.ndarray, width, height) -> np.ndarray:
  """Pixels -> normalised screen coordinates (x' in [-1, 1]).

  Args:
    points: `[..., 2]` (x, y) or `[..., 3]` (x, y, z with z in pixel units).
    width: image width in pixels, a scalar or broadcastable to `[...]`.
    height: image height in pixels, same.

  Returns:
    Normalised points, same shape, float32.
  """
  width = np.asarray(width, np.float32)[..., None]
  height = np.asarray(height, np.float32)[..., None]
  out = np.asarray(points, np.float32) / width * 2
  out[..., 0:1] -= 1
  out[..., 1:2] -= height / width
  return out


def denormalize_screen(points: np.ndarray, width, height) -> np.ndarray:
  """Inverse of `normalize_screen`: normalised coordinates -> pixels.

  Args:
    points: `[..., 2]` or `[..., 3]` normalised points.
    width: image width in pixels, a scalar or broadcastable to `[...]`.
    height: image height in pixels, same.

  Returns:
    Points in pixels, same shape, float32.
  """
  width = np.asarray(width, np.float32)[..., None]
  height = np.asarray(height, np.float32)[..., None]
  out = np.array(points, np.float32)
  out[..., 0:1] += 1
  out[..., 1:2] += height / width
  return out * width / 2


def resample_indices(length: int, num_frames: int) -> np.ndarray:
  """Floor-linspace indices that stretch `length` frames to `num_frames`.

  `floor(k * length / num_frames)` for k = 0..num_frames-1 (exact integer
  arithmetic; equals `arange` when the lengths match).

  Args:
    length: frames available (>= 1).
    num_frames: frames wanted.

  Returns:
    int64 `[num_frames]`, non-decreasing, in [0, length).
  """
  if length < 1:
    raise ValueError(f'cannot resample an empty sequence to {num_frames}')
  return (np.arange(num_frames, dtype=np.int64) * length) // num_frames
