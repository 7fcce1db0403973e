"""Readers of the Human3.6M source files (MotionBERT pickle, VideoPose3D npz).

`motionbert_videos` and `videopose3d_videos` turn the loaded files (see
`formats` for the safe loaders) into one validated record per video and
camera (`records.make_example`); `h36m_builder.H36m` writes them.
"""

import re

import numpy as np

from l2a_jax.data import cameras as cameras_lib
from l2a_jax.data import formats
from l2a_jax.data import records
from l2a_jax.data import skeleton as skeleton_lib


MOTIONBERT_FILE = 'h36m_sh_conf_cam_source_final.pkl'
VIDEOPOSE3D_3D_FILE = 'data_3d_h36m.npz'
VIDEOPOSE3D_CPN_FILE = 'data_2d_h36m_cpn_ft_h36m_dbb.npz'
H36M_TRAIN_SUBJECTS = ('S1', 'S5', 'S6', 'S7', 'S8')
H36M_TEST_SUBJECTS = ('S9', 'S11')
# VideoPose3D keeps 17 of the 32 mocap joints (the rest are static or
# duplicates) in the Human3.6M 17-joint order.
VIDEOPOSE3D_KEPT_JOINTS = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19,
                           25, 26, 27)
_SOURCE_PATTERN = re.compile(r's_(\d+)_act_(\d+)_subact_(\d+)_ca_(\d+)')


def _runs(values: np.ndarray):
  """(start, end) of each run of equal consecutive values."""
  if len(values) == 0:  # pylint: disable=g-explicit-length-test
    return []
  change = np.flatnonzero(values[1:] != values[:-1]) + 1
  bounds = np.concatenate([[0], change, [len(values)]])
  return list(zip(bounds[:-1], bounds[1:]))


def motionbert_videos(data, split: str, path):
  """Yields the records of one split of MotionBERT's pickle.

  Videos are the runs of equal consecutive `source` values, in file order.

  Args:
    data: the unpickled file ({'train': {...}, 'test': {...}}).
    split: 'train' or 'test'.
    path: the file, for messages.

  Raises:
    DataError: missing keys, wrong shapes, NaNs, unknown cameras.
  """
  part = formats.require_key(data, split, str(path))
  where = f'{path} [{split!r}]'
  joint_2d = np.asarray(formats.require_key(part, 'joint_2d', where))
  joint3d = np.asarray(formats.require_key(part, 'joint3d_image', where))
  cameras = np.asarray(formats.require_key(part, 'camera_name', where))
  sources = np.asarray(formats.require_key(part, 'source', where))
  if joint_2d.ndim != 3 or joint_2d.shape[1:2] != (17,) or (
      joint_2d.shape[2] < 2):
    raise formats.DataError(
        f'{where}: joint_2d: expected shape (N, 17, 2), got '
        f'{joint_2d.shape}')
  n = joint_2d.shape[0]
  if joint3d.ndim != 3 or joint3d.shape[:2] != (n, 17) or (
      joint3d.shape[2] < 3):
    raise formats.DataError(
        f'{where}: joint3d_image: expected shape ({n}, 17, 3), '
        f'got {joint3d.shape}')
  for name, value in (('camera_name', cameras), ('source', sources)):
    if value.shape != (n,):
      raise formats.DataError(
          f'{where}: {name}: expected shape ({n},), got '
          f'{value.shape}')
  if 'confidence' in part:
    confidence = np.asarray(part['confidence'])
    if confidence.shape == (n, 17):
      confidence = confidence[..., None]
    if confidence.shape != (n, 17, 1):
      raise formats.DataError(
          f'{where}: confidence: expected shape ({n}, 17) or '
          f'({n}, 17, 1), got {confidence.shape}')
  else:
    confidence = np.ones((n, 17, 1), np.float32)
  keypoints = np.concatenate([joint_2d[..., :2], confidence], -1)
  joints_mm = factor = actions = None
  if 'joints_2.5d_image' in part:
    joints_mm = np.asarray(part['joints_2.5d_image'])
    if joints_mm.shape[:2] != (n, 17) or joints_mm.shape[2] < 3:
      raise formats.DataError(
          f'{where}: joints_2.5d_image: expected shape '
          f'({n}, 17, 3), got {joints_mm.shape}')
  if '2.5d_factor' in part:
    factor = np.asarray(part['2.5d_factor']).reshape(-1)
    if factor.shape != (n,):
      raise formats.DataError(
          f'{where}: 2.5d_factor: expected shape ({n},), got '
          f'{np.asarray(part["2.5d_factor"]).shape}')
  if 'action' in part:
    actions = np.asarray(part['action'])
    if actions.shape != (n,):
      raise formats.DataError(
          f'{where}: action: expected shape ({n},), got '
          f'{actions.shape}')
  for start, end in _runs(sources):
    source = str(sources[start])
    video_where = f'{where} frames {start}:{end} ({source})'
    camera = str(cameras[start])
    if np.any(cameras[start:end] != cameras[start]):
      raise formats.DataError(
          f'{video_where}: camera_name changes within a video')
    if camera not in cameras_lib.H36M_IMAGE_SIZE:
      raise formats.DataError(
          f'{video_where}: unknown camera_name {camera!r}; '
          f'expected one of {cameras_lib.H36M_CAMERA_IDS}')
    match = _SOURCE_PATTERN.search(source)
    subject = f'S{int(match.group(1))}' if match else ''
    action = ''
    if actions is not None:
      names = set(str(a) for a in actions[start:end])
      if len(names) != 1:
        raise formats.DataError(f'{video_where}: action changes within a video')
      action = skeleton_lib.canonical_h36m_action(names.pop())
    elif match:
      action = skeleton_lib.H36M_ACTION_BY_NUMBER.get(int(match.group(2)),
                                                      '')
    yield records.make_example(
        keypoints_2d=keypoints[start:end],
        joints_3d=joint3d[start:end, :, :3],
        joints_3d_mm=(None if joints_mm is None
                      else joints_mm[start:end, :, :3]),
        factor_2_5d=None if factor is None else factor[start:end],
        image_size=cameras_lib.H36M_IMAGE_SIZE[camera],
        label_space='image_pixels', skeleton='h36m', camera=camera,
        subject=subject, action=action, source=source, fps=50.0,
        where=video_where)


def videopose3d_videos(directory, split: str, two_d: str, *, load):
  """Yields the records of one split of VideoPose3D's files.

  Args:
    directory: folder with data_3d_h36m.npz (and the CPN file for 'cpn').
    split: 'train' (S1, S5-S8) or 'test' (S9, S11).
    two_d: 'cpn' (detections, confidence 1) or 'gt' (projected 3D).
    load: `load(path, key)` reads an object array of an npz file.

  Raises:
    DataError: missing files, keys, shapes, NaNs, 2D shorter than 3D.
  """
  path_3d = formats.manual_file(directory, VIDEOPOSE3D_3D_FILE)
  positions = load(path_3d, 'positions_3d')
  detections = None
  if two_d == 'cpn':
    path_2d = formats.manual_file(directory, VIDEOPOSE3D_CPN_FILE)
    detections = load(path_2d, 'positions_2d')
  subjects = H36M_TRAIN_SUBJECTS if split == 'train' else H36M_TEST_SUBJECTS
  for subject in subjects:
    actions = formats.require_key(positions, subject, f'{path_3d} positions_3d')
    for action_key in sorted(actions):
      where = f'{path_3d} positions_3d[{subject!r}][{action_key!r}]'
      world = formats.check_array(actions[action_key], (None, 32, 3), where)
      world_mm = world[:, VIDEOPOSE3D_KEPT_JOINTS].astype(np.float64) * 1000
      action = skeleton_lib.canonical_h36m_action(action_key)
      frames = world_mm.shape[0]
      for index, camera_id in enumerate(cameras_lib.H36M_CAMERA_IDS):
        camera = cameras_lib.h36m_camera(subject, index)
        points = cameras_lib.world_to_camera(world_mm, camera)
        if detections is None:
          keypoints = cameras_lib.project(points, camera, distort=True)
        else:
          where_2d = (f'{path_2d} positions_2d[{subject!r}]'
                      f'[{action_key!r}][{index}]')
          per_camera = formats.require_key(
              formats.require_key(detections, subject,
                                  f'{path_2d} positions_2d'),
              action_key, f'{path_2d} positions_2d[{subject!r}]')
          if len(per_camera) != 4:
            raise formats.DataError(
                f'{where_2d[:-3]}: expected 4 cameras, got '
                f'{len(per_camera)}')
          keypoints = formats.check_array(per_camera[index], (None, 17, 2),
                                          where_2d)
          if keypoints.shape[0] < frames:
            raise formats.DataError(
                f'{where_2d}: {keypoints.shape[0]} frames of 2D '
                f'but {frames} of 3D')
          # Some detection sequences run longer than the mocap.
          keypoints = keypoints[:frames]
        yield records.make_example(
            keypoints_2d=keypoints, joints_3d=points,
            image_size=(camera.width, camera.height),
            label_space='camera_mm', skeleton='h36m', camera=camera_id,
            subject=subject, action=action,
            source=f'{subject}_{action_key}_{camera_id}', fps=50.0,
            where=where, intrinsics=camera.intrinsics,
            camera_rotation=camera.rotation, camera_position=camera.position)
