"""The pose record every dataset builder writes, and its validation.

One record per video (one subject, sequence and camera), with the same
features in every dataset (frames F, 17 joints):

  keypoints_2d   float32 [F, 17, 3]  pixels (x, y) + confidence
  joints_3d      float32 [F, 17, 3]  the 3D label: camera mm, or for
                                     `label_space == 'image_pixels'`
                                     (MotionBERT) x, y in pixels and depth in
                                     pixel-scaled units
  joints_3d_mm   float32 [F|0, 17, 3] MotionBERT test: `joints_2.5d_image`
                                     (evaluation ground truth); empty else
  factor_2_5d    float32 [F|0]       MotionBERT test: `2.5d_factor`; empty
  valid          bool    [F]         frames that count (3DHP test valid mask)
  image_size     int32   [2]         (width, height)
  intrinsics     float32 [9]         fx, fy, cx, cy, k1, k2, k3, p1, p2 (0 =
                                     unknown)
  camera_rotation float32 [3, 3]     world -> camera (0 = unknown)
  camera_position float32 [3]        camera centre, world mm (0 = unknown)
  fps            float32
  label_space    text  'camera_mm' | 'image_pixels'
  skeleton       text  'h36m' | 'mpi'
  camera, subject, action, source    text

Splits: 'train' and 'test'. Records keep generation order
(`disable_shuffling` with integer keys), so the frames of a split are the
source file's frames in order; the evaluation protocol relies on it.

`make_example` validates one record (shapes, joint counts, NaNs) with
`formats.check_array`; `views_to_examples` turns world-space motion into one
record per virtual camera (the BVH and synthetic builders).
"""

import numpy as np
import tensorflow_datasets as tfds

from l2a_jax.data import cameras as cameras_lib
from l2a_jax.data import formats
from l2a_jax.data import skeleton as skeleton_lib
from l2a_jax.data import synthetic

NUM_JOINTS = 17


def features() -> tfds.features.FeaturesDict:
  """The TFDS features of a record (per-frame arrays stored as bytes)."""
  f = tfds.features

  def per_frame(*shape, dtype=np.float32):
    # BYTES encoding: 6x faster to write than float lists, same to read.
    return f.Tensor(shape=(None,) + shape, dtype=dtype,
                    encoding=f.Encoding.BYTES)

  return f.FeaturesDict({
      'keypoints_2d': per_frame(NUM_JOINTS, 3),
      'joints_3d': per_frame(NUM_JOINTS, 3),
      'joints_3d_mm': per_frame(NUM_JOINTS, 3),
      'factor_2_5d': per_frame(),
      'valid': per_frame(dtype=np.bool_),
      'image_size': f.Tensor(shape=(2,), dtype=np.int32),
      'intrinsics': f.Tensor(shape=(9,), dtype=np.float32),
      'camera_rotation': f.Tensor(shape=(3, 3), dtype=np.float32),
      'camera_position': f.Tensor(shape=(3,), dtype=np.float32),
      'fps': f.Scalar(dtype=np.float32),
      'label_space': f.Text(),
      'skeleton': f.Text(),
      'camera': f.Text(),
      'subject': f.Text(),
      'action': f.Text(),
      'source': f.Text(),
  })


def make_example(*, keypoints_2d, joints_3d, image_size, label_space: str,
                 skeleton: str, camera: str, subject: str, action: str,
                 source: str, fps: float, where: str, joints_3d_mm=None,
                 factor_2_5d=None, valid=None, intrinsics=None,
                 camera_rotation=None, camera_position=None) -> dict:
  """A validated record (see the module docstring for the fields).

  Args:
    keypoints_2d: [F, 17, 2] pixels or [F, 17, 3] with confidence.
    joints_3d: [F, 17, 3] label.
    image_size: (width, height).
    label_space: 'camera_mm' or 'image_pixels'.
    skeleton: 'h36m' or 'mpi'.
    camera: camera id.
    subject: subject name.
    action: action name ('' unknown).
    source: video id.
    fps: frame rate.
    where: file/key prefix for error messages.
    joints_3d_mm: optional [F, 17, 3].
    factor_2_5d: optional [F].
    valid: optional [F] (default all True).
    intrinsics: optional [9].
    camera_rotation: optional [3, 3].
    camera_position: optional [3].

  Returns:
    The feature dict.

  Raises:
    DataError: wrong shapes, joint counts, NaNs, or too few frames.
  """
  keypoints_2d = np.asarray(keypoints_2d)
  if keypoints_2d.ndim == 3 and keypoints_2d.shape[-1] == 2:
    keypoints_2d = np.concatenate(
        [keypoints_2d, np.ones(keypoints_2d.shape[:2] + (1,))], -1)
  keypoints_2d = formats.check_array(keypoints_2d, (None, NUM_JOINTS, 3),
                                     f'{where} 2D keypoints')
  frames = keypoints_2d.shape[0]
  if frames < 1:
    raise formats.DataError(f'{where}: no frames')
  joints_3d = formats.check_array(joints_3d, (frames, NUM_JOINTS, 3),
                                  f'{where} 3D joints')
  if joints_3d_mm is None:
    joints_3d_mm = np.zeros((0, NUM_JOINTS, 3), np.float32)
  else:
    joints_3d_mm = formats.check_array(
        joints_3d_mm, (frames, NUM_JOINTS, 3), f'{where} 3D joints in mm')
  if factor_2_5d is None:
    factor_2_5d = np.zeros((0,), np.float32)
  else:
    factor_2_5d = formats.check_array(factor_2_5d, (frames,),
                                      f'{where} 2.5D factor')
  if valid is None:
    valid = np.ones((frames,), bool)
  valid = formats.check_array(valid, (frames,), f'{where} valid mask',
                              dtype_kind='').astype(bool)
  if label_space not in ('camera_mm', 'image_pixels'):
    raise ValueError(f'bad label_space {label_space!r}')
  skeleton_lib.get(skeleton)

  def zeros(*shape):
    return np.zeros(shape, np.float32)

  return {
      'keypoints_2d': keypoints_2d,
      'joints_3d': joints_3d,
      'joints_3d_mm': joints_3d_mm,
      'factor_2_5d': factor_2_5d,
      'valid': valid,
      'image_size': np.asarray(image_size, np.int32),
      'intrinsics': (zeros(9) if intrinsics is None
                     else np.asarray(intrinsics, np.float32)),
      'camera_rotation': (zeros(3, 3) if camera_rotation is None
                          else np.asarray(camera_rotation, np.float32)),
      'camera_position': (zeros(3) if camera_position is None
                          else np.asarray(camera_position, np.float32)),
      'fps': np.float32(fps),
      'label_space': label_space,
      'skeleton': skeleton,
      'camera': str(camera),
      'subject': str(subject),
      'action': str(action),
      'source': str(source),
  }


def views_to_examples(poses_world, *, num_cameras, rng, noise_px, up_axis,
                       subject, action, name, where):
  """One record per virtual camera of `poses_world` [F, 17, 3] (mm).

  Cameras come from `cameras.render_views` (random placements from `rng`,
  `noise_px` of 2D noise); records are named `{name}_cam{k}`.
  """
  for k, view in enumerate(cameras_lib.render_views(
      poses_world, num_cameras, rng, noise_px=noise_px, up_axis=up_axis)):
    yield make_example(
        keypoints_2d=view.keypoints_2d, joints_3d=view.poses_camera,
        image_size=(view.camera.width, view.camera.height),
        label_space='camera_mm', skeleton='h36m', camera=view.camera.name,
        subject=subject, action=action, source=f'{name}_cam{k}',
        fps=synthetic.FPS, where=f'{where} camera {k}',
        intrinsics=view.camera.intrinsics,
        camera_rotation=view.camera.rotation,
        camera_position=view.camera.position)
