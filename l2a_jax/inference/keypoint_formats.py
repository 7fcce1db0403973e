"""2D keypoint layouts of common detectors and their conversion to H36M-17.

Supported layouts (`FORMATS`):

- 'h36m': Human3.6M 17 joints (`skeleton.H36M`), taken as they are.
- 'mpi': MPI-INF-3DHP 17 joints (`skeleton.MPI`), re-ordered.
- 'coco': COCO-17 (COCO keypoints, most 2D detectors: ViTPose, RTMPose,
  MMPose, Detectron2, YOLO-pose, AlphaPose's COCO models).
- 'halpe26': Halpe-26 (AlphaPose's Halpe / "136" body part): COCO-17, then
  head (top), neck, hip (centre), big toes, small toes, heels.
- 'openpose25': OpenPose BODY_25.

Every Human3.6M joint is the mean of one or more source joints
(`H36M_SOURCES`); the joints Human3.6M has and the detectors do not are
derived the usual way (MotionBERT's and VideoPose3D's in-the-wild demos):

| H36M joint   | coco                         | halpe26        | openpose25          |
|--------------|------------------------------|----------------|---------------------|
| 0 pelvis     | mean(l_hip, r_hip)           | hip            | mid_hip             |
| 1-6 legs     | r/l hip, knee, ankle         | same as coco   | r/l hip, knee, ankle|
| 7 spine      | mean(pelvis, thorax)         | mean(hip, neck)| mean(mid_hip, neck) |
| 8 thorax     | mean(l_shoulder, r_shoulder) | neck           | neck                |
| 9 neck/nose  | nose                         | nose           | nose                |
| 10 head      | mean(l_eye, r_eye)           | head (top)     | mean(l_eye, r_eye)  |
| 11-16 arms   | l/r shoulder, elbow, wrist   | same as coco   | l/r shoulder, ...   |

(coco's spine is the mean of both hips and both shoulders, which equals the
mean of its pelvis and thorax.) A derived joint's confidence is the smallest
confidence of its sources, so it is missing when any source is missing.
Missing joints are those with confidence <= 0 or a non-finite coordinate
(OpenPose writes (0, 0, 0) for them).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from l2a_jax.data import skeleton as skeleton_lib
from l2a_jax.inference import errors

COCO_JOINTS = (
    'nose', 'l_eye', 'r_eye', 'l_ear', 'r_ear', 'l_shoulder', 'r_shoulder',
    'l_elbow', 'r_elbow', 'l_wrist', 'r_wrist', 'l_hip', 'r_hip', 'l_knee',
    'r_knee', 'l_ankle', 'r_ankle',
)
HALPE26_JOINTS = COCO_JOINTS + (
    'head', 'neck', 'hip', 'l_big_toe', 'r_big_toe', 'l_small_toe',
    'r_small_toe', 'l_heel', 'r_heel',
)
OPENPOSE25_JOINTS = (
    'nose', 'neck', 'r_shoulder', 'r_elbow', 'r_wrist', 'l_shoulder',
    'l_elbow', 'l_wrist', 'mid_hip', 'r_hip', 'r_knee', 'r_ankle', 'l_hip',
    'l_knee', 'l_ankle', 'r_eye', 'l_eye', 'r_ear', 'l_ear', 'l_big_toe',
    'l_small_toe', 'l_heel', 'r_big_toe', 'r_small_toe', 'r_heel',
)

_LIMBS = {name: (name,) for name in (
    'r_hip', 'r_knee', 'r_ankle', 'l_hip', 'l_knee', 'l_ankle',
    'l_shoulder', 'l_elbow', 'l_wrist', 'r_shoulder', 'r_elbow', 'r_wrist')}


@dataclasses.dataclass(frozen=True)
class KeypointFormat:
  """A detector's joint layout and how it maps to Human3.6M-17.

  Attributes:
    name: the `--keypoint_format` value.
    joint_names: the layout's joints in storage order.
    h36m_sources: per Human3.6M joint (in `skeleton.H36M` order), the
      source joint names whose mean it is.
  """

  name: str
  joint_names: tuple[str, ...]
  h36m_sources: tuple[tuple[str, ...], ...]

  @property
  def num_joints(self) -> int:
    return len(self.joint_names)

  def source_indices(self) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(self.joint_names.index(s) for s in sources)
                 for sources in self.h36m_sources)


def _table(**named) -> tuple[tuple[str, ...], ...]:
  """Sources in H36M joint order from keyword arguments per joint name."""
  table = dict(_LIMBS, **named)
  return tuple(table[name] for name in skeleton_lib.H36M.joint_names)


FORMATS = {
    'h36m': KeypointFormat(
        'h36m', skeleton_lib.H36M.joint_names,
        tuple((n,) for n in skeleton_lib.H36M.joint_names)),
    'mpi': KeypointFormat(
        'mpi', skeleton_lib.MPI.joint_names,
        tuple((skeleton_lib.MPI.joint_names[m],)
              for m in skeleton_lib.H36M_TO_MPI)),
    'coco': KeypointFormat('coco', COCO_JOINTS, _table(
        pelvis=('l_hip', 'r_hip'),
        spine=('l_hip', 'r_hip', 'l_shoulder', 'r_shoulder'),
        thorax=('l_shoulder', 'r_shoulder'),
        neck=('nose',),
        head=('l_eye', 'r_eye'))),
    'halpe26': KeypointFormat('halpe26', HALPE26_JOINTS, _table(
        pelvis=('hip',), spine=('hip', 'neck'), thorax=('neck',),
        neck=('nose',), head=('head',))),
    'openpose25': KeypointFormat('openpose25', OPENPOSE25_JOINTS, _table(
        pelvis=('mid_hip',), spine=('mid_hip', 'neck'), thorax=('neck',),
        neck=('nose',), head=('l_eye', 'r_eye'))),
}
# The layout assumed for a joint count when no format is given: 17 joints
# are Human3.6M for keypoint arrays and COCO for detector results.
_DEFAULT_BY_COUNT = {25: 'openpose25', 26: 'halpe26'}


def get(name: str) -> KeypointFormat:
  if name not in FORMATS:
    raise errors.InputError(
        f'--keypoint_format: expected one of {"|".join(FORMATS)}, got '
        f'{name!r}')
  return FORMATS[name]


def guess_format(num_joints: int, seventeen: str, where: str) -> str:
  """The format of keypoints with `num_joints` joints, if unambiguous.

  Args:
    num_joints: J of the input.
    seventeen: the format meant by 17 joints ('h36m' or 'coco').
    where: file name for the message.

  Returns:
    A key of `FORMATS`.

  Raises:
    InputError: no format has that many joints.
  """
  if num_joints == 17:
    return seventeen
  if num_joints in _DEFAULT_BY_COUNT:
    return _DEFAULT_BY_COUNT[num_joints]
  raise errors.InputError(
      f'{where}: keypoints have {num_joints} joints, expected 17 (h36m, '
      'coco, mpi), 25 (openpose25) or 26 (halpe26); pass --keypoint_format')


def with_confidence(keypoints: np.ndarray) -> np.ndarray:
  """`[..., J, 2|3]` -> float32 `[..., J, 3]`; missing joints get conf 0.

  Two channels get confidence 1. A joint with a non-finite coordinate or
  confidence gets confidence 0 and coordinates 0.
  """
  keypoints = np.asarray(keypoints, np.float32)
  if keypoints.shape[-1] == 2:
    keypoints = np.concatenate(
        [keypoints, np.ones(keypoints.shape[:-1] + (1,), np.float32)], -1)
  else:
    keypoints = keypoints.copy()
  bad = ~np.all(np.isfinite(keypoints), axis=-1)
  keypoints[bad] = 0.0
  keypoints[..., 2] = np.maximum(keypoints[..., 2], 0.0)
  return keypoints


def to_h36m(keypoints: np.ndarray, keypoint_format: KeypointFormat,
            where: str = 'keypoints') -> np.ndarray:
  """Converts keypoints of a layout to Human3.6M-17 (table above).

  Args:
    keypoints: `[..., J, 2|3]` in the layout's order (pixels or any unit;
      conversion is a mean of points, so units are kept).
    keypoint_format: the layout.
    where: name for messages.

  Returns:
    float32 `[..., 17, 3]`: (x, y, confidence) in H36M order; a derived
    joint's confidence is the minimum of its sources'. Joints whose
    confidence is 0 hold coordinates 0 (they are filled later).

  Raises:
    InputError: the joint count does not match the layout.
  """
  keypoints = np.asarray(keypoints)
  if keypoints.ndim < 2 or keypoints.shape[-1] not in (2, 3):
    raise errors.InputError(f'{where}: expected shape [..., J, 2|3], got '
                            f'{keypoints.shape}')
  if keypoints.shape[-2] != keypoint_format.num_joints:
    raise errors.InputError(
        f'{where}: {keypoint_format.name} keypoints have '
        f'{keypoint_format.num_joints} joints, got {keypoints.shape[-2]}')
  points = with_confidence(keypoints)
  joints = []
  for indices in keypoint_format.source_indices():
    sources = points[..., list(indices), :]
    xy = sources[..., :2].mean(axis=-2)
    confidence = sources[..., 2].min(axis=-1)
    joints.append(np.concatenate([xy, confidence[..., None]], -1))
  out = np.stack(joints, axis=-2).astype(np.float32)
  out[out[..., 2] <= 0] = 0.0
  return out


def to_skeleton(h36m: np.ndarray,
                skeleton: skeleton_lib.Skeleton) -> np.ndarray:
  """H36M-ordered `[..., 17, C]` -> the order of `skeleton` (h36m or mpi)."""
  if skeleton.name == 'h36m':
    return h36m
  if skeleton.name == 'mpi':
    return h36m[..., list(skeleton_lib.MPI_TO_H36M), :]
  raise ValueError(f'no joint map from h36m to {skeleton.name!r}')
