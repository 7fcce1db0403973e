"""Pixels <-> model units for prediction, with checks; output units.

Every dataset of this project feeds the model screen-normalised 2D
(MotionBERT, data_and_metrics.md section 5.1): for a W x H image,
x' = x / W * 2 - 1, y' = y / W * 2 - H / W (both divided by the width), so
the image spans x' in [-1, 1]. The model's output is root-relative in the
same normalised units; times W / 2 it is

- **mm** for checkpoints trained on camera-space millimetre labels (the
  synthetic and BVH datasets, MPI-INF-3DHP and Human3.6M in the VideoPose3D
  format: their targets are mm * 2 / W), at the scale of the training
  cameras;
- **px** for Human3.6M in the MotionBERT format (image-space labels
  `joint3d_image`) and for any run with `data.target_space='image_2_5d'`
  (the same 2.5D labels built from camera-space mm): x, y in pixels and depth in the same pixel scale; times
  the person's mm per pixel (the 2.5D factor, about depth / focal length)
  it is mm. The input carries no such factor, so none is applied.

Refusals (`check_pixels`), so a wrong input is an error and not a silent
one-metre mistake: keypoints that look normalised already (all within
[-2, 2] while the image is many pixels wide), and keypoints far outside
the image (more than half an image beyond an edge: a wrong `image_size` or
another unit).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from l2a_jax.data import transforms
from l2a_jax.inference import errors

# Units of the output of a model trained on each kind of label.
MM = 'mm'
PIXELS = 'px'
NORMALISED = 'normalised'
UNIT_DESCRIPTIONS = {
    MM: ('millimetres, root-relative camera space (x right, y down, z away '
         'from the camera), at the scale of the training cameras'),
    PIXELS: ('pixels, root-relative image space (x right, y down; depth z in '
             'the same pixel scale); multiply by mm per pixel at the '
             "person's depth for mm"),
    NORMALISED: ('the model output untouched (normalised screen units, '
                 'times image width / 2 for pixels; root not zeroed)'),
}
# Keypoints may lie this many image sizes beyond an edge.
_MARGIN = 0.5


def output_units(data_config: ml_collections.ConfigDict) -> str:
  """MM or PIXELS for a checkpoint trained on `config.data` (docstring)."""
  if data_config.name == 'h36m' and data_config.get(
      'builder_config') in (None, 'motionbert'):
    return PIXELS
  if data_config.get('target_space', 'camera') == 'image_2_5d':
    return PIXELS
  return MM


def check_pixels(keypoints: np.ndarray, image_size: tuple[int, int],
                 where: str) -> None:
  """Raises InputError for keypoints that are clearly not pixels of W x H.

  Args:
    keypoints: `[F, J, 3]` x, y, confidence (joints with confidence 0 are
      not checked).
    image_size: (W, H).
    where: input name for the message.
  """
  width, height = image_size
  present = keypoints[..., 2] > 0
  if not np.any(present):
    raise errors.InputError(f'{where}: no joint with confidence > 0')
  xy = keypoints[present][:, :2]
  low, high = xy.min(axis=0), xy.max(axis=0)
  if max(width, height) >= 64 and np.all(np.abs(xy) <= 2.0):
    raise errors.InputError(
        f'{where}: keypoints_2d: expected pixels of a {width}x{height} image, '
        f'got values in x [{low[0]:.3g}, {high[0]:.3g}], y [{low[1]:.3g}, '
        f'{high[1]:.3g}] that look normalised already: pass pixel '
        'coordinates, or --raw to feed normalised keypoints to the model '
        'as they are')
  limits = np.array([width, height], np.float64)
  outside = (xy < -_MARGIN * limits) | (xy > (1 + _MARGIN) * limits)
  if np.any(outside):
    frame, joint = (int(i[0]) for i in np.nonzero(
        present & np.any(
            (keypoints[..., :2] < -_MARGIN * limits)
            | (keypoints[..., :2] > (1 + _MARGIN) * limits), axis=-1)))
    x, y = keypoints[frame, joint, :2]
    raise errors.InputError(
        f'{where}: keypoints_2d: frame {frame} joint {joint} at ({x:.1f}, '
        f'{y:.1f}) px, expected within half an image of the {width}x'
        f'{height} image (x range [{low[0]:.1f}, {high[0]:.1f}], y range '
        f'[{low[1]:.1f}, {high[1]:.1f}]): wrong image_size or not pixels?')


def normalize(keypoints: np.ndarray, image_size: tuple[int, int],
              dim_in: int) -> np.ndarray:
  """Pixels `[F, J, 3]` -> model input `[F, J, dim_in]` (x', y'[, conf])."""
  width, height = image_size
  xy = transforms.normalize_screen(keypoints[..., :2], width, height)
  if dim_in == 2:
    return xy
  return np.concatenate([xy, keypoints[..., 2:3]], -1).astype(np.float32)


def scale_of(image_size: tuple[int, int]) -> float:
  """Output units per normalised unit: W / 2."""
  return image_size[0] / 2.0
