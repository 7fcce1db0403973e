"""TFDS builders of the pose datasets, without TensorFlow.

Datasets (`name/config`):

- `h36m/motionbert`: MotionBERT's `h36m_sh_conf_cam_source_final.pkl`
  (Stacked-Hourglass 2D with confidence, image-space 3D labels, the 2.5D
  factor, camera ids and video names). Needs `allow_pickle`.
- `h36m/videopose3d_cpn`: VideoPose3D's `data_3d_h36m.npz` and
  `data_2d_h36m_cpn_ft_h36m_dbb.npz`: CPN 2D, camera parameters and
  camera-space millimetre targets. Needs `allow_pickle`.
- `h36m/videopose3d_gt`: the same 3D with 2D projected through the
  calibrated cameras (lens distortion included). Needs `allow_pickle`.
- `mpi_inf_3dhp`: P-STMO's `data_train_3dhp.npz` / `data_test_3dhp.npz`
  (MPI-17 joint order). Needs `allow_pickle`.
- `bvh_motion/default|noisy`: a folder of BVH files (`bvh.py`) seen by 4
  virtual cameras, exact 2D or with 3 px detector-like noise.
- `synthetic/default|large|<custom>`: procedural motion (`synthetic.py`)
  seen by virtual cameras. No download.

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
"""

import fcntl
import inspect
import os
import pathlib
import re
import zlib

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from l2a_jax.data import bvh
from l2a_jax.data import cameras as cameras_lib
from l2a_jax.data import formats
from l2a_jax.data import skeleton as skeleton_lib
from l2a_jax.data import synthetic

DataError = formats.DataError
_NUM_JOINTS = 17


def _features() -> tfds.features.FeaturesDict:
  f = tfds.features

  def per_frame(*shape, dtype=np.float32):
    # BYTES encoding: 6x faster to write than float lists, same to read.
    return f.Tensor(shape=(None,) + shape, dtype=dtype,
                    encoding=f.Encoding.BYTES)

  return f.FeaturesDict({
      'keypoints_2d': per_frame(_NUM_JOINTS, 3),
      'joints_3d': per_frame(_NUM_JOINTS, 3),
      'joints_3d_mm': per_frame(_NUM_JOINTS, 3),
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
  keypoints_2d = formats.check_array(keypoints_2d, (None, _NUM_JOINTS, 3),
                                     f'{where} 2D keypoints')
  frames = keypoints_2d.shape[0]
  if frames < 1:
    raise DataError(f'{where}: no frames')
  joints_3d = formats.check_array(joints_3d, (frames, _NUM_JOINTS, 3),
                                  f'{where} 3D joints')
  if joints_3d_mm is None:
    joints_3d_mm = np.zeros((0, _NUM_JOINTS, 3), np.float32)
  else:
    joints_3d_mm = formats.check_array(
        joints_3d_mm, (frames, _NUM_JOINTS, 3), f'{where} 3D joints in mm')
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


class _PoseBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared info and pickle opt-in of the pose builders."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}

  def __init__(self, *, allow_pickle: bool = False, **kwargs):
    self._allow_pickle = allow_pickle
    # Source files read once for both splits (the H36M files are ~1 GB).
    self._loaded = {}
    super().__init__(**kwargs)

  def _load(self, key, loader):
    if key not in self._loaded:
      self._loaded[key] = loader()
    return self._loaded[key]

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default resolves the package through `importlib_resources`,
    # which is not installed without TensorFlow's extras; the module file
    # is all it needs (it looks for a checksums file next to it).
    return epath.Path(inspect.getfile(cls))

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=_features(),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    directory = self._input_dir(dl_manager)
    return {split: self._keyed(split, directory)
            for split in ('train', 'test')}

  def _input_dir(self, dl_manager):
    del dl_manager
    return None

  def _keyed(self, split, directory):
    for key, example in enumerate(self._videos(split, directory)):
      yield key, example

  def _videos(self, split, directory):
    raise NotImplementedError

  def _generate_examples(self, **kwargs):
    # Splits are generated by `_keyed`; TFDS only requires the method.
    raise NotImplementedError


def _manual_file(directory, name: str) -> pathlib.Path:
  if directory is None:
    raise DataError(f'this dataset needs --manual_dir (the folder with '
                    f'{name})')
  path = pathlib.Path(directory) / name
  if not path.is_file():
    raise DataError(f'{path}: file not found (expected in --manual_dir)')
  return path


class _ManualBuilder(_PoseBuilder, skip_registration=True):
  """A builder that reads files from `manual_dir`."""

  def _input_dir(self, dl_manager):
    return dl_manager.manual_dir


# --------------------------------------------------------------------------
# Human3.6M
# --------------------------------------------------------------------------

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
    raise DataError(f'{where}: joint_2d: expected shape (N, 17, 2), got '
                    f'{joint_2d.shape}')
  n = joint_2d.shape[0]
  if joint3d.ndim != 3 or joint3d.shape[:2] != (n, 17) or (
      joint3d.shape[2] < 3):
    raise DataError(f'{where}: joint3d_image: expected shape ({n}, 17, 3), '
                    f'got {joint3d.shape}')
  for name, value in (('camera_name', cameras), ('source', sources)):
    if value.shape != (n,):
      raise DataError(f'{where}: {name}: expected shape ({n},), got '
                      f'{value.shape}')
  if 'confidence' in part:
    confidence = np.asarray(part['confidence'])
    if confidence.shape == (n, 17):
      confidence = confidence[..., None]
    if confidence.shape != (n, 17, 1):
      raise DataError(f'{where}: confidence: expected shape ({n}, 17) or '
                      f'({n}, 17, 1), got {confidence.shape}')
  else:
    confidence = np.ones((n, 17, 1), np.float32)
  keypoints = np.concatenate([joint_2d[..., :2], confidence], -1)
  joints_mm = factor = actions = None
  if 'joints_2.5d_image' in part:
    joints_mm = np.asarray(part['joints_2.5d_image'])
    if joints_mm.shape[:2] != (n, 17) or joints_mm.shape[2] < 3:
      raise DataError(f'{where}: joints_2.5d_image: expected shape '
                      f'({n}, 17, 3), got {joints_mm.shape}')
  if '2.5d_factor' in part:
    factor = np.asarray(part['2.5d_factor']).reshape(-1)
    if factor.shape != (n,):
      raise DataError(f'{where}: 2.5d_factor: expected shape ({n},), got '
                      f'{np.asarray(part["2.5d_factor"]).shape}')
  if 'action' in part:
    actions = np.asarray(part['action'])
    if actions.shape != (n,):
      raise DataError(f'{where}: action: expected shape ({n},), got '
                      f'{actions.shape}')
  for start, end in _runs(sources):
    source = str(sources[start])
    video_where = f'{where} frames {start}:{end} ({source})'
    camera = str(cameras[start])
    if np.any(cameras[start:end] != cameras[start]):
      raise DataError(f'{video_where}: camera_name changes within a video')
    if camera not in cameras_lib.H36M_IMAGE_SIZE:
      raise DataError(f'{video_where}: unknown camera_name {camera!r}; '
                      f'expected one of {cameras_lib.H36M_CAMERA_IDS}')
    match = _SOURCE_PATTERN.search(source)
    subject = f'S{int(match.group(1))}' if match else ''
    action = ''
    if actions is not None:
      names = set(str(a) for a in actions[start:end])
      if len(names) != 1:
        raise DataError(f'{video_where}: action changes within a video')
      action = skeleton_lib.canonical_h36m_action(names.pop())
    elif match:
      action = skeleton_lib.H36M_ACTION_BY_NUMBER.get(int(match.group(2)),
                                                      '')
    yield make_example(
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
  path_3d = _manual_file(directory, VIDEOPOSE3D_3D_FILE)
  positions = load(path_3d, 'positions_3d')
  detections = None
  if two_d == 'cpn':
    path_2d = _manual_file(directory, VIDEOPOSE3D_CPN_FILE)
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
            raise DataError(f'{where_2d[:-3]}: expected 4 cameras, got '
                            f'{len(per_camera)}')
          keypoints = formats.check_array(per_camera[index], (None, 17, 2),
                                          where_2d)
          if keypoints.shape[0] < frames:
            raise DataError(f'{where_2d}: {keypoints.shape[0]} frames of 2D '
                            f'but {frames} of 3D')
          # Some detection sequences run longer than the mocap.
          keypoints = keypoints[:frames]
        yield make_example(
            keypoints_2d=keypoints, joints_3d=points,
            image_size=(camera.width, camera.height),
            label_space='camera_mm', skeleton='h36m', camera=camera_id,
            subject=subject, action=action,
            source=f'{subject}_{action_key}_{camera_id}', fps=50.0,
            where=where, intrinsics=camera.intrinsics,
            camera_rotation=camera.rotation, camera_position=camera.position)


class H36mConfig(tfds.core.BuilderConfig):
  """Which Human3.6M source files and 2D."""


class H36m(_ManualBuilder):
  """Human3.6M (MotionBERT pickle or VideoPose3D npz)."""

  BUILDER_CONFIGS = [
      H36mConfig(name='motionbert', description=(
          'MotionBERT h36m_sh_conf_cam_source_final.pkl: Stacked-Hourglass '
          '2D + confidence, image-space labels, 2.5D factor.')),
      H36mConfig(name='videopose3d_cpn', description=(
          'VideoPose3D data_3d_h36m.npz + CPN detections: camera mm.')),
      H36mConfig(name='videopose3d_gt', description=(
          'VideoPose3D data_3d_h36m.npz, 2D projected through the cameras.')),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'motionbert: put {MOTIONBERT_FILE} in manual_dir. videopose3d_*: put '
      f'{VIDEOPOSE3D_3D_FILE} (and {VIDEOPOSE3D_CPN_FILE} for _cpn) there. '
      'The files are read with a restricted unpickler only with '
      '--allow_pickle.')

  def _videos(self, split, directory):
    if self.builder_config.name == 'motionbert':
      path = _manual_file(directory, MOTIONBERT_FILE)
      data = self._load(path, lambda: formats.load_pickle(
          path, allow_pickle=self._allow_pickle))
      return motionbert_videos(data, split, path)

    def load(path, key):
      return self._load((path, key), lambda: formats.load_npz_object(
          path, key, allow_pickle=self._allow_pickle))

    two_d = self.builder_config.name.split('_')[-1]
    return videopose3d_videos(directory, split, two_d, load=load)


# --------------------------------------------------------------------------
# MPI-INF-3DHP
# --------------------------------------------------------------------------

PSTMO_TRAIN_FILE = 'data_train_3dhp.npz'
PSTMO_TEST_FILE = 'data_test_3dhp.npz'


def _3dhp_image_size(sequence: str):
  return (1920, 1080) if sequence in ('TS5', 'TS6') else (2048, 2048)


def pstmo_videos(directory, split: str, *, allow_pickle: bool):
  """Yields the records of one split of P-STMO's MPI-INF-3DHP files.

  Train: one record per (subject, sequence, camera), 2048 x 2048 images.
  Test: one record per sequence TS1..TS6 with its valid-frame mask; TS5 and
  TS6 are 1920 x 1080.

  Raises:
    DataError: missing files, keys, shapes, NaNs.
  """
  name = PSTMO_TRAIN_FILE if split == 'train' else PSTMO_TEST_FILE
  path = _manual_file(directory, name)
  data = formats.load_npz_object(path, 'data', allow_pickle=allow_pickle)
  if not isinstance(data, dict):
    raise DataError(f'{path}: data: expected a dict, got '
                    f'{type(data).__name__}')
  for sequence in sorted(data):
    where = f'{path} data[{sequence!r}]'
    if split == 'train':
      entry = data[sequence]
      if not isinstance(entry, (list, tuple)) or not entry:
        raise DataError(f'{where}: expected [camera dict, fps]')
      cams = entry[0]
      fps = float(entry[1]) if len(entry) > 1 else 0.0
      subject = str(sequence).split(' ')[0]
      for camera in sorted(cams, key=str):
        anim = cams[camera]
        camera_where = f'{where}[0][{camera!r}]'
        keypoints = formats.check_array(
            formats.require_key(anim, 'data_2d', camera_where),
            (None, 17, 2), f'{camera_where} data_2d')
        joints = formats.check_array(
            formats.require_key(anim, 'data_3d', camera_where),
            (keypoints.shape[0], 17, 3), f'{camera_where} data_3d')
        yield make_example(
            keypoints_2d=keypoints, joints_3d=joints,
            image_size=(2048, 2048), label_space='camera_mm',
            skeleton='mpi', camera=str(camera), subject=subject, action='',
            source=f'{sequence} cam {camera}', fps=fps, where=camera_where)
    else:
      anim = data[sequence]
      keypoints = formats.check_array(
          formats.require_key(anim, 'data_2d', where), (None, 17, 2),
          f'{where} data_2d')
      frames = keypoints.shape[0]
      joints = formats.check_array(
          formats.require_key(anim, 'data_3d', where), (frames, 17, 3),
          f'{where} data_3d')
      valid = formats.check_array(
          np.asarray(formats.require_key(anim, 'valid', where)).reshape(-1),
          (frames,), f'{where} valid')
      yield make_example(
          keypoints_2d=keypoints, joints_3d=joints,
          image_size=_3dhp_image_size(str(sequence)),
          label_space='camera_mm', skeleton='mpi', camera='',
          subject=str(sequence), action=str(sequence), source=str(sequence),
          fps=50.0 if sequence in ('TS5', 'TS6') else 25.0, where=where,
          valid=valid > 0)


class MpiInf3dhp(_ManualBuilder):
  """MPI-INF-3DHP in the P-STMO npz form (MPI-17 joints, root 14)."""

  name = 'mpi_inf_3dhp'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Put {PSTMO_TRAIN_FILE} and {PSTMO_TEST_FILE} in manual_dir; they are '
      'read with a restricted unpickler only with --allow_pickle.')

  def _videos(self, split, directory):
    return pstmo_videos(directory, split, allow_pickle=self._allow_pickle)


# --------------------------------------------------------------------------
# Virtual-camera datasets: BVH motion capture and synthetic motion
# --------------------------------------------------------------------------


def _views_to_examples(poses_world, *, num_cameras, rng, noise_px, up_axis,
                       subject, action, name, where):
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


BVH_MAPPING_FILE = 'mapping.json'
BVH_TEST_LIST_FILE = 'test_files.txt'


class BvhConfig(tfds.core.BuilderConfig):
  """Virtual cameras and 2D noise of the BVH dataset."""

  def __init__(self, *, num_cameras=4, noise_px=0.0, seed=0, **kwargs):
    super().__init__(**kwargs)
    self.num_cameras = num_cameras
    self.noise_px = noise_px
    self.seed = seed


def bvh_split_files(directory) -> dict:
  """{'train': [...], 'test': [...]} BVH paths of a folder.

  `test_files.txt` (one file name per line, relative to the folder) names
  the test files; without it every fifth file in sorted order (the 5th,
  10th, ...; the last one if there are fewer than 5) is a test file.

  Raises:
    DataError: fewer than 2 files, or a listed test file that is missing.
  """
  directory = pathlib.Path(directory)
  files = sorted(p for p in directory.rglob('*') if p.is_file()
                 and p.suffix.lower() == '.bvh')
  if len(files) < 2:
    raise DataError(f'{directory}: bvh_motion needs at least 2 .bvh files '
                    f'(train and test), found {len(files)}')
  listing = directory / BVH_TEST_LIST_FILE
  if listing.is_file():
    names = [line.strip() for line in listing.read_text().splitlines()
             if line.strip() and not line.startswith('#')]
    test = []
    for name in names:
      path = directory / name
      if path not in files:
        raise DataError(f'{listing}: {name!r} is not a .bvh file in '
                        f'{directory}')
      test.append(path)
  else:
    test = files[4::5] or files[-1:]
  train = [p for p in files if p not in test]
  if not train or not test:
    raise DataError(f'{directory}: need at least one train and one test file')
  return {'train': train, 'test': test}


class BvhMotion(_ManualBuilder):
  """A folder of BVH files as Human3.6M joints seen by virtual cameras."""

  name = 'bvh_motion'
  BUILDER_CONFIGS = [
      BvhConfig(name='default', num_cameras=4, noise_px=0.0,
                description='4 virtual cameras, exact 2D (confidence 1).'),
      BvhConfig(name='noisy', num_cameras=4, noise_px=3.0,
                description='4 virtual cameras, 3 px detector-like noise.'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put .bvh files (any depth) in manual_dir; optional mapping.json for '
      'non-CMU skeletons and test_files.txt listing the test files.')

  def _videos(self, split, directory):
    if directory is None:
      raise DataError('bvh_motion needs --manual_dir (a folder of .bvh)')
    config = self.builder_config
    directory = pathlib.Path(directory)
    mapping_path = directory / BVH_MAPPING_FILE
    mapping = bvh.load_mapping(mapping_path) if mapping_path.is_file() else None
    for path in bvh_split_files(directory)[split]:
      relative = str(path.relative_to(directory))
      clip = bvh.read_bvh(path)
      clip_mapping = mapping
      if clip_mapping is None:
        clip_mapping = bvh.detect_mapping(clip, str(path))
      poses = bvh.resample(bvh.to_h36m(clip, clip_mapping, str(path)),
                           clip.fps, bvh.TARGET_FPS)
      # Cameras depend on the file name, not on which other files exist.
      rng = np.random.default_rng(
          [config.seed, zlib.crc32(relative.encode())])
      yield from _views_to_examples(
          poses, num_cameras=config.num_cameras, rng=rng,
          noise_px=config.noise_px, up_axis=clip_mapping.up_axis,
          subject=path.stem, action=path.stem, name=path.stem,
          where=str(path))


class SyntheticConfig(tfds.core.BuilderConfig):
  """Size and seed of the synthetic dataset."""

  def __init__(self, *, num_train_subjects=4, num_test_subjects=2,
               sequences_per_subject=6, num_frames=600, num_cameras=4,
               noise_px=0.0, seed=0, **kwargs):
    super().__init__(**kwargs)
    self.num_train_subjects = num_train_subjects
    self.num_test_subjects = num_test_subjects
    self.sequences_per_subject = sequences_per_subject
    self.num_frames = num_frames
    self.num_cameras = num_cameras
    self.noise_px = noise_px
    self.seed = seed

  @property
  def parameters(self) -> tuple:
    return (self.num_train_subjects, self.num_test_subjects,
            self.sequences_per_subject, self.num_frames, self.num_cameras,
            float(self.noise_px), self.seed)


_SYNTHETIC_PARAMETER_NAMES = (
    'num_train_subjects', 'num_test_subjects', 'sequences_per_subject',
    'num_frames', 'num_cameras', 'noise_px', 'seed')


class Synthetic(_PoseBuilder):
  """Procedural human-like motion seen by virtual cameras (no download)."""

  BUILDER_CONFIGS = [
      SyntheticConfig(
          name='default', description=(
              'Quickstart size: 4 train + 2 test subjects x 6 sequences x '
              '600 frames (12 s) x 4 cameras.')),
      SyntheticConfig(
          name='large', num_train_subjects=8, num_test_subjects=2,
          sequences_per_subject=12, num_frames=1500, description=(
              '8 train + 2 test subjects x 12 sequences x 1500 frames x 4 '
              'cameras.')),
  ]

  def _videos(self, split, directory):
    del directory
    config = self.builder_config
    if split == 'train':
      subjects = range(config.num_train_subjects)
    else:
      subjects = range(config.num_train_subjects,
                       config.num_train_subjects + config.num_test_subjects)
    for local, subject_index in enumerate(subjects):
      subject = synthetic.sample_subject(
          synthetic.subject_rng(config.seed, subject_index))
      for sequence in range(config.sequences_per_subject):
        # Actions rotate over the split so every split covers all of them.
        action = synthetic.ACTIONS[
            (local * config.sequences_per_subject + sequence)
            % len(synthetic.ACTIONS)]
        rng = synthetic.sequence_rng(config.seed, subject_index, sequence)
        poses = synthetic.generate_sequence(action, config.num_frames,
                                            subject, rng)
        name = f'subject{subject_index}_seq{sequence}'
        yield from _views_to_examples(
            poses, num_cameras=config.num_cameras, rng=rng,
            noise_px=config.noise_px, up_axis=1,
            subject=f'subject{subject_index}', action=action, name=name,
            where=f'synthetic {name}')


def synthetic_config(**parameters) -> SyntheticConfig:
  """The synthetic config with these parameters (a predefined one if equal).

  Args:
    **parameters: any of num_train_subjects, num_test_subjects,
      sequences_per_subject, num_frames, num_cameras, noise_px, seed.

  Returns:
    'default' or 'large' if the parameters match, else a config named after
    its parameters, e.g. 'train4_test2_seq6_frames600_cams4_noise0_seed0'
    (noise in tenths of a pixel).
  """
  unknown = set(parameters) - set(_SYNTHETIC_PARAMETER_NAMES)
  if unknown:
    raise ValueError(f'unknown synthetic parameters {sorted(unknown)}')
  config = SyntheticConfig(name='candidate', **parameters)
  for predefined in Synthetic.BUILDER_CONFIGS:
    if predefined.parameters == config.parameters:
      return predefined
  (train, test, sequences, frames, cams, noise, seed) = config.parameters
  if min(train, test, sequences, frames, cams) < 1 or noise < 0 or seed < 0:
    raise ValueError(f'synthetic parameters must be positive: {parameters}')
  name = (f'train{train}_test{test}_seq{sequences}_frames{frames}_cams{cams}'
          f'_noise{int(round(noise * 10))}_seed{seed}')
  return SyntheticConfig(name=name, **parameters)


BUILDERS = {
    'h36m': H36m,
    'mpi_inf_3dhp': MpiInf3dhp,
    'bvh_motion': BvhMotion,
    'synthetic': Synthetic,
}


def default_data_dir() -> str:
  """$TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return os.environ.get('TFDS_DATA_DIR',
                        os.path.expanduser('~/tensorflow_datasets'))


def get_builder(name: str, config=None, data_dir=None, **kwargs):
  """Instantiates a builder.

  Args:
    name: one of BUILDERS.
    config: a builder config name or instance (None = the first one).
    data_dir: TFDS data root (None = `default_data_dir()`).
    **kwargs: passed to the builder (e.g. allow_pickle=True).

  Returns:
    The builder (not yet prepared).
  """
  if name not in BUILDERS:
    raise ValueError(f'unknown dataset {name!r}; expected one of '
                     f'{sorted(BUILDERS)}')
  cls = BUILDERS[name]
  if isinstance(config, str):
    known = [c.name for c in cls.BUILDER_CONFIGS]
    if config not in known:
      raise ValueError(f'dataset {name} has no config {config!r}; expected '
                       f'one of {known}')
  if config is not None:
    kwargs['config'] = config
  return cls(data_dir=data_dir or default_data_dir(),
             file_format='array_record', **kwargs)


def prepare(builder, manual_dir=None) -> None:
  """Writes a builder's splits (atomically; TFDS renames a finished dir).

  A lock file next to the dataset makes concurrent callers (several
  processes of one run) wait for the first one instead of racing.
  """
  lock_dir = pathlib.Path(builder.data_dir_root) / builder.name
  lock_dir.mkdir(parents=True, exist_ok=True)
  lock_path = lock_dir / f'.{builder.builder_config.name}.lock' if (
      builder.builder_config) else lock_dir / '.lock'
  with open(lock_path, 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      if builder.is_prepared():
        return
      logging.info('Preparing %s in %s', builder.info.full_name,
                   builder.data_dir)
      # Progress bars would interleave with training logs.
      tfds.disable_progress_bar()
      try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir, try_download_gcs=False))
      except BaseException:
        # TFDS removes its unfinished temporary directory; drop the empty
        # config directory it leaves, so nothing half-made remains.
        config_dir = pathlib.Path(builder.data_dir).parent
        if config_dir.is_dir() and not any(config_dir.iterdir()):
          config_dir.rmdir()
        raise
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
