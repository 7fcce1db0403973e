"""Grain input pipelines: prepared TFDS videos -> per-process NumPy batches.

Entry point (what the trainer calls):

  datasets = input_pipeline.get_datasets(config.data, seed=config.seed)
  batch = next(datasets.train_iter)          # checkpointable, infinite
  state = datasets.train_iter.get_state()    # store with the checkpoint
  datasets.train_iter.set_state(state)       # resume: same batches follow
  for batch in datasets.make_eval_iter():    # fresh, padded, masked
    ...
  datasets.info.action_names, .num_test_frames, .skeleton, ...

`get_datasets(data_config, *, seed, process_index=None, process_count=None)`
reads both splits into host memory once (a split is at most ~1 GB of
float32), normalises them, cuts clips of T = `num_frames` frames and builds:

- `train_iter`: a `grain.DatasetIterator` over an endless stream of clips
  (of the train split, plus the train splits of `data.extra_train`),
  reshuffled every epoch (`default_rng([seed, epoch]).permutation`), with a
  random left-right flip (probability 0.5, `flip_augment`). Process p of P
  takes elements p, p + P, p + 2P, ... of the shuffled stream in batches of
  `batch_size // P`, so the P per-process batches of a step are exactly the
  global batch a single process would see (as a set). `get_state()` /
  `set_state()` restore the position exactly.
- `make_eval_iter()`: a fresh iterator over this process's share of the
  test clips (clips p, p + P, ...), in batches of `eval_batch_size // P`;
  every process yields `info.num_eval_batches` batches, the last ones
  padded with `mask` False rows (copies of a real clip, `valid` all False,
  `frame_id` -1, `action_id` -1).
- `info`: `DatasetInfo` (action names, test frame count, skeleton, steps per
  epoch, clip counts, batch sizes).

Batches (docs/architecture.md, "Batch contract"):
  train: inputs float32 [b, T, 17, 3] (x, y, confidence, normalised),
         targets float32 [b, T, 17, 3] (root-relative, normalised).
  eval:  + mask bool [b], targets_mm float32 [b, T, 17, 3] (root-relative
         mm), scale_to_mm float32 [b, T], valid bool [b, T], frame_id int64
         [b, T] (index into the test split's frames), action_id int32 [b],
         zero_depth_scale float32 [b, T, 2] (`SplitArrays`).

Normalisation (per video, image width w and height h):
  2D: x / w * 2 - 1, y / w * 2 - h / w; confidence kept.
  MotionBERT labels (pixels): the same for x, y and z / w * 2; targets_mm =
  `joints_2.5d_image` root-relative; scale_to_mm = w / 2 * 2.5d_factor.
  Camera-space labels (mm), `target_space='camera'`: targets = root-relative
  mm * 2 / w; targets_mm = root-relative mm; scale_to_mm = w / 2.
  Camera-space labels, `target_space='image_2_5d'` (the 2.5D label of
  data_and_metrics.md section 10.9b; needs the camera): per frame
  lambda = Z_root / f_x mm per pixel, pixel label (u, v, Z / lambda) with
  (u, v) the projection; targets = root-relative pixel label * 2 / w;
  targets_mm = root-relative pixel label * lambda (the 2.5D mm pose);
  scale_to_mm = w / 2 * lambda (as MotionBERT's labels).
  `input_2d='gt'`: x, y of the normalised label with confidence 1 (image
  labels), or the pinhole(+lens) projection of camera-space labels when the
  camera is known (else the dataset's 2D, which is ground truth for 3DHP).

Clips (data_and_metrics.md section 5):
  Human3.6M protocol (h36m, synthetic, bvh_motion): per video, windows at
  0, stride, 2 stride, ... while a whole window fits (the tail is dropped);
  a video shorter than T gives one clip resampled to T (floor-linspace).
  Train stride `train_stride`, test stride `test_stride`. MotionBERT test
  videos of the three known-bad S9 sequences have `valid` False.
  MPI-INF-3DHP: training windows start at every multiple of `train_stride`;
  one that runs past the end is shortened to the frames left and stretched
  to T. Test: a T-frame window centred on every valid frame, edge-padded;
  only the centre frame is valid.
"""

import dataclasses
import math
import sys
import threading
from typing import Callable, Iterator

from absl import logging
import grain
import ml_collections
import numpy as np

from l2a_jax.data import builders
from l2a_jax.data import cameras as cameras_lib
from l2a_jax.data import skeleton as skeleton_lib
from l2a_jax.data import synthetic
from l2a_jax.data import synthetic_builder
from l2a_jax.data import transforms

# MotionBERT's evaluation skips these S9 videos (bad ground truth).
MOTIONBERT_BLOCKLIST = ('s_09_act_05_subact_02', 's_09_act_10_subact_02',
                        's_09_act_13_subact_01')


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Facts about the datasets the trainer and evaluator need.

  Attributes:
    name: TFDS dataset name.
    builder_config: TFDS config name.
    skeleton: 'h36m' or 'mpi' (joint order of inputs and targets).
    root_joint: index of the root joint (0 for h36m, 14 for mpi).
    action_names: names indexed by `action_id`.
    num_test_frames: size of the `frame_id` space (frames of the test split).
    num_train_clips: training clips per epoch.
    num_test_clips: test clips (all processes).
    steps_per_epoch: ceil(num_train_clips / global batch size).
    num_frames: T.
    per_process_batch_size: training batch rows per process.
    per_process_eval_batch_size: evaluation batch rows per process.
    num_eval_batches: evaluation batches per process (equal on all).
    extra_train: 'name/config' of each `data.extra_train` dataset whose
      train split joined the training clips.
  """

  name: str
  builder_config: str
  skeleton: str
  root_joint: int
  action_names: tuple[str, ...]
  num_test_frames: int
  num_train_clips: int
  num_test_clips: int
  steps_per_epoch: int
  num_frames: int
  per_process_batch_size: int
  per_process_eval_batch_size: int
  num_eval_batches: int
  extra_train: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Datasets:
  """What `get_datasets` returns.

  Attributes:
    train_iter: checkpointable endless iterator of training batches.
    train_dataset: the `grain.IterDataset` behind it (`iter()` it again for
      a fresh iterator from the start).
    make_eval_iter: returns a fresh iterator over the evaluation batches.
    info: dataset facts.
    train_arrays: the training split in memory (fits the baselines).
  """

  train_iter: grain.DatasetIterator
  train_dataset: grain.IterDataset
  make_eval_iter: Callable[[], Iterator[dict[str, np.ndarray]]]
  info: DatasetInfo
  train_arrays: 'SplitArrays | None' = None


@dataclasses.dataclass
class SplitArrays:
  """A split in memory: per-frame arrays of all videos, concatenated.

  Attributes:
    inputs: float32 [N, J, 3] normalised model input.
    targets: float32 [N, J, 3] root-relative normalised targets.
    targets_mm: float32 [N, J, 3] root-relative mm (None if not loaded).
    scale_to_mm: float32 [N] (None if not loaded).
    zero_depth_scale: float32 [N, 2] (None if not loaded): per frame, the
      factors (x, y) that turn root-relative normalised 2D offsets into
      target units with zero relative depth (`baselines.py`): 1 for
      image-space labels, (Z_root / fx, Z_root / fy) for camera-space labels
      with a known camera, 0 where the camera is unknown.
    valid: bool [N].
    video_bounds: int64 [V, 2] (start, end) frame range of each video.
    video_actions: the action name of each video.
    skeleton: the joint order.
  """

  inputs: np.ndarray
  targets: np.ndarray
  targets_mm: np.ndarray | None
  scale_to_mm: np.ndarray | None
  valid: np.ndarray
  video_bounds: np.ndarray
  video_actions: list[str]
  skeleton: skeleton_lib.Skeleton
  zero_depth_scale: np.ndarray | None = None

  @property
  def num_frames(self) -> int:
    return self.inputs.shape[0]


def _project(record, width, height) -> np.ndarray | None:
  """float64 [F, J, 2] pixels of a camera-space record's `joints_3d` through
  its camera (pinhole + lens), or None when the camera is unknown."""
  intrinsics = np.asarray(record['intrinsics'], np.float64)
  if not intrinsics[0] > 0:
    return None
  camera = cameras_lib.Camera(
      name='', intrinsics=intrinsics, width=width, height=height,
      rotation=np.eye(3), position=np.zeros(3))
  return cameras_lib.project(record['joints_3d'], camera,
                             distort=bool(np.any(intrinsics[4:])))


def _ground_truth_2d(record, label_norm, image_space, width, height):
  """[F, J, 2] normalised ground-truth 2D of a video (see module doc).

  `image_space`: `label_norm` is an image-space label (MotionBERT pixels or
  the 2.5D label), whose x, y are that 2D already.
  """
  if image_space:
    return label_norm[..., :2]
  pixels = _project(record, width, height)
  if pixels is None:
    pixels = record['keypoints_2d'][..., :2]
  return transforms.normalize_screen(pixels, width, height)


TARGET_SPACES = ('camera', 'image_2_5d')


def _image_2_5d_label(record, joints, width, height, root, where):
  """Camera-space mm [F, J, 3] -> (pixel label [F, J, 3], lambda [F]).

  Pixel label (u, v, Z / lambda) with lambda = Z_root / f_x (mm per pixel at
  the root's depth): root-relative, x, y are the 2D offsets and depth is in
  the same pixel scale.
  """
  pixels = _project(record, width, height)
  if pixels is None:
    raise ValueError(
        f"{where}: video {record['source']} has no camera intrinsics, so "
        "data.target_space='image_2_5d' cannot build its 2.5D label; use "
        "data.target_space='camera'")
  focal_x = float(record['intrinsics'][0])
  scale = joints[:, root, 2].astype(np.float64) / focal_x
  depth = joints[..., 2].astype(np.float64) / scale[:, None]
  label = np.concatenate([pixels, depth[..., None]], -1)
  return label.astype(np.float32), scale.astype(np.float32)


def load_split(source, *, input_2d: str, with_mm: bool, where: str,
               target_space: str = 'camera') -> SplitArrays:
  """Reads every record of a split and normalises it.

  Args:
    source: a random-access sequence of records (a TFDS data source).
    input_2d: 'detected' or 'gt'.
    with_mm: also compute `targets_mm` and `scale_to_mm` (evaluation).
    where: dataset/split name for messages.
    target_space: 'camera' | 'image_2_5d': the targets of camera-space
      labels (module doc); image-space labels ignore it.

  Returns:
    The split's arrays.

  Raises:
    ValueError: empty split, mixed skeletons, missing mm ground truth.
  """
  if input_2d not in ('detected', 'gt'):
    raise ValueError(f"data.input_2d must be 'detected' or 'gt', got "
                     f'{input_2d!r}')
  if target_space not in TARGET_SPACES:
    raise ValueError(f'data.target_space must be one of {TARGET_SPACES}, '
                     f'got {target_space!r}')
  num_records = len(source)
  if num_records == 0:
    raise ValueError(f'{where}: the split is empty')
  inputs, targets, targets_mm, scales, valids = [], [], [], [], []
  zero_depth_scales = []
  bounds, actions, skeleton = [], [], None
  start = 0
  for i in range(num_records):
    record = source[i]
    record = {k: (v.decode() if isinstance(v, bytes) else v)
              for k, v in record.items()}
    record_skeleton = skeleton_lib.get(record['skeleton'])
    if skeleton is None:
      skeleton = record_skeleton
    elif record_skeleton is not skeleton:
      raise ValueError(f'{where}: record {i} has skeleton '
                       f'{record_skeleton.name}, earlier ones {skeleton.name}')
    width, height = (int(v) for v in record['image_size'])
    keypoints = np.asarray(record['keypoints_2d'], np.float32)
    joints = np.asarray(record['joints_3d'], np.float32)
    frames = keypoints.shape[0]
    image_2_5d = (record['label_space'] != 'image_pixels'
                  and target_space == 'image_2_5d')
    if record['label_space'] == 'image_pixels':
      label_norm = transforms.normalize_screen(joints, width, height)
    elif image_2_5d:
      label_pixels, mm_per_pixel = _image_2_5d_label(
          record, joints, width, height, skeleton.root, where)
      label_norm = transforms.normalize_screen(label_pixels, width, height)
    else:
      label_norm = joints * np.float32(2.0 / width)
    if input_2d == 'gt':
      xy = _ground_truth_2d(
          record, label_norm,
          record['label_space'] == 'image_pixels' or image_2_5d,
          width, height)
      confidence = np.ones((frames, keypoints.shape[1], 1), np.float32)
    else:
      xy = transforms.normalize_screen(keypoints[..., :2], width, height)
      confidence = keypoints[..., 2:3]
    inputs.append(np.concatenate([xy, confidence], -1).astype(np.float32))
    targets.append(transforms.root_relative(label_norm, skeleton.root))
    valid = np.asarray(record['valid'], bool).copy()
    if any(record['source'].startswith(name + '_')
           for name in MOTIONBERT_BLOCKLIST):
      valid[:] = False
    valids.append(valid)
    if with_mm:
      if record['label_space'] == 'image_pixels':
        factor = np.asarray(record['factor_2_5d'], np.float32)
        mm = np.asarray(record['joints_3d_mm'], np.float32)
        if len(factor) != frames or len(mm) != frames:
          raise ValueError(
              f'{where}: video {record["source"]} has no 2.5D factor / '
              'joints_2.5d_image, so it cannot be evaluated in mm')
        targets_mm.append(transforms.root_relative(mm, skeleton.root))
        scales.append(factor * np.float32(width / 2))
        zero_depth_scales.append(np.ones((frames, 2), np.float32))
      elif image_2_5d:
        targets_mm.append(
            transforms.root_relative(label_pixels, skeleton.root)
            * mm_per_pixel[:, None, None])
        scales.append(mm_per_pixel * np.float32(width / 2))
        zero_depth_scales.append(np.ones((frames, 2), np.float32))
      else:
        targets_mm.append(transforms.root_relative(joints, skeleton.root))
        scales.append(np.full((frames,), width / 2, np.float32))
        focal = np.asarray(record['intrinsics'], np.float64)[:2]
        if np.all(focal > 0):
          root_depth = joints[:, skeleton.root, 2:3].astype(np.float64)
          zero_depth_scales.append((root_depth / focal).astype(np.float32))
        else:
          zero_depth_scales.append(np.zeros((frames, 2), np.float32))
    bounds.append((start, start + frames))
    actions.append(record['action'])
    start += frames

  def concat(arrays):
    return np.concatenate(arrays, 0) if arrays else None

  return SplitArrays(
      inputs=concat(inputs), targets=concat(targets),
      targets_mm=concat(targets_mm), scale_to_mm=concat(scales),
      valid=concat(valids), video_bounds=np.array(bounds, np.int64),
      video_actions=actions, skeleton=skeleton,
      zero_depth_scale=concat(zero_depth_scales))


@dataclasses.dataclass
class Clips:
  """A table of clips, each an index rule into the split's frames.

  Clip i reads frames `clip(start + floor(k * length / T), low, high - 1)`
  for k < T: a plain window (length T), a stretched one (length < T) or an
  edge-padded one (start < low or past high).

  Attributes:
    start: int64 [C] first frame (may be < low for edge-padded clips).
    length: int64 [C] frames stretched over the T outputs.
    low: int64 [C] first frame of the clip's video.
    high: int64 [C] end (exclusive) of the clip's video.
    video: int64 [C] video index.
    centre_only: bool [C] only the centre frame counts (3DHP test).
  """

  start: np.ndarray
  length: np.ndarray
  low: np.ndarray
  high: np.ndarray
  video: np.ndarray
  centre_only: np.ndarray

  def __len__(self) -> int:
    return len(self.start)

  def frame_indices(self, clip_ids: np.ndarray,
                    num_frames: int) -> np.ndarray:
    """int64 [len(clip_ids), T] frame indices of the given clips."""
    k = np.arange(num_frames, dtype=np.int64)
    index = (self.start[clip_ids, None]
             + (k * self.length[clip_ids, None]) // num_frames)
    return np.clip(index, self.low[clip_ids, None],
                   self.high[clip_ids, None] - 1)


def _clips(rows) -> Clips:
  rows = np.array(rows, np.int64).reshape(-1, 6)
  return Clips(start=rows[:, 0], length=rows[:, 1], low=rows[:, 2],
               high=rows[:, 3], video=rows[:, 4],
               centre_only=rows[:, 5].astype(bool))


def strided_clips(video_bounds: np.ndarray, num_frames: int,
                  stride: int) -> Clips:
  """Human3.6M protocol windows (MotionBERT `split_clips`).

  Per video: windows at 0, stride, ... while a whole window fits; the tail
  after the last one is dropped; a video shorter than T gives one clip of
  all its frames resampled to T.

  Args:
    video_bounds: int [V, 2] (start, end) of each video.
    num_frames: T.
    stride: window stride (>= 1).

  Returns:
    The clips, video by video in order.
  """
  rows = []
  for video, (low, high) in enumerate(video_bounds):
    n = int(high - low)
    if n >= num_frames:
      for offset in range(0, n - num_frames + 1, stride):
        rows.append((low + offset, num_frames, low, high, video, 0))
    else:
      rows.append((low, n, low, high, video, 0))
  return _clips(rows)


def stretched_clips(video_bounds: np.ndarray, num_frames: int,
                    stride: int) -> Clips:
  """MPI-INF-3DHP training windows: one at every multiple of `stride`.

  A window that runs past the end of its video is shortened to the frames
  left and stretched to T.
  """
  rows = []
  for video, (low, high) in enumerate(video_bounds):
    n = int(high - low)
    for offset in range(0, n, stride):
      rows.append((low + offset, min(num_frames, n - offset), low, high,
                   video, 0))
  return _clips(rows)


def centred_clips(video_bounds: np.ndarray, valid: np.ndarray,
                  num_frames: int) -> Clips:
  """MPI-INF-3DHP test windows: T frames centred on every valid frame.

  Frames outside the video repeat its first / last frame; only the centre
  frame (index (T - 1) // 2) counts.
  """
  half = (num_frames - 1) // 2
  rows = []
  for video, (low, high) in enumerate(video_bounds):
    for centre in np.flatnonzero(valid[low:high]) + low:
      rows.append((centre - half, num_frames, low, high, video, 1))
  return _clips(rows)


def make_clips(arrays: SplitArrays, *, num_frames: int, stride: int,
               train: bool) -> Clips:
  """The protocol's clips of a split (see the module docstring)."""
  if num_frames < 1 or stride < 1:
    raise ValueError(f'num_frames and strides must be >= 1, got '
                     f'{num_frames} and {stride}')
  if arrays.skeleton.name == 'mpi':
    if train:
      return stretched_clips(arrays.video_bounds, num_frames, stride)
    return centred_clips(arrays.video_bounds, arrays.valid, num_frames)
  return strided_clips(arrays.video_bounds, num_frames, stride)


class ShuffledClipBatches:
  """Endless per-process batches of clip ids from a reshuffled stream.

  The global stream is every clip once per epoch, epoch e in the order
  `default_rng([seed, e]).permutation(num_clips)`. Element k of process p is
  the batch of stream positions p + P * (k * b + j), j < b, so the P
  per-process batches of step k together are stream positions
  [k P b, (k + 1) P b): a single process's global batch. The flip of a
  clip is drawn per stream position too (`default_rng([seed, e, 1])`), so
  augmentation does not depend on the number of processes. A grain data
  source (`len`, `getitem`): random access, no state beyond the index.
  (Computing the ids vectorised per batch is ~10x cheaper than grain's
  per-element `shuffle().repeat()[p::P].batch()` chain.)
  """

  def __init__(self, num_clips: int, *, seed: int, batch_size: int,
               process_index: int, process_count: int):
    self._num_clips = num_clips
    self._seed = seed
    self._batch_size = batch_size
    self._process_index = process_index
    self._process_count = process_count
    # A few recent epochs' permutations, shared by grain's reader threads.
    self._permutations = {}
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return sys.maxsize

  def _permutation(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(clip order [num_clips], flip of each stream position [num_clips])."""
    with self._lock:
      permutation = self._permutations.get(epoch)
      if permutation is None:
        permutation = (
            np.random.default_rng([self._seed, epoch]).permutation(
                self._num_clips),
            np.random.default_rng([self._seed, epoch, 1]).random(
                self._num_clips) < 0.5)
        if len(self._permutations) >= 4:
          self._permutations.pop(min(self._permutations))
        self._permutations[epoch] = permutation
      return permutation

  def __getitem__(self, index: int) -> np.ndarray:
    positions = self._process_index + self._process_count * (
        index * self._batch_size + np.arange(self._batch_size, dtype=np.int64))
    epochs, offsets = np.divmod(positions, self._num_clips)
    ids = np.empty((self._batch_size, 2), np.int64)
    for epoch in np.unique(epochs):
      here = epochs == epoch
      order, flips = self._permutation(int(epoch))
      ids[here, 0] = order[offsets[here]]
      ids[here, 1] = flips[offsets[here]]
    return ids


class TrainBatch(grain.transforms.Map):
  """[b, 2] (clip id, flip) -> a training batch, flipped rows mirrored."""

  def __init__(self, arrays: SplitArrays, clips: Clips, num_frames: int,
               flip: bool):
    self._arrays = arrays
    self._clips = clips
    self._num_frames = num_frames
    self._flip = flip

  def map(self, ids_and_flips):
    ids_and_flips = np.asarray(ids_and_flips)
    index = self._clips.frame_indices(ids_and_flips[:, 0], self._num_frames)
    if not self._flip:
      return {'inputs': np.take(self._arrays.inputs, index, axis=0),
              'targets': np.take(self._arrays.targets, index, axis=0)}
    flipped = ids_and_flips[:, 1].astype(bool)
    return {'inputs': _gather_flipped(self._arrays.inputs, index, flipped,
                                      self._arrays.skeleton),
            'targets': _gather_flipped(self._arrays.targets, index, flipped,
                                       self._arrays.skeleton)}


def _gather_flipped(frames: np.ndarray, index: np.ndarray,
                    flipped: np.ndarray,
                    skeleton: skeleton_lib.Skeleton) -> np.ndarray:
  """Gathers clips, mirroring the rows in `flipped` (`transforms.flip`).

  One gather with the joint permutation folded into the index is about
  twice as fast as gathering and then flipping a subset of rows.

  Args:
    frames: [N, J, C] per-frame arrays of a split.
    index: int [b, T] frame indices.
    flipped: bool [b] rows to mirror.
    skeleton: gives the left/right permutation.

  Returns:
    [b, T, J, C].
  """
  num_joints = frames.shape[1]
  joints = np.where(flipped[:, None], skeleton.flip_permutation[None],
                    np.arange(num_joints)[None])
  rows = index[:, :, None] * num_joints + joints[:, None, :]
  out = np.take(frames.reshape(-1, frames.shape[2]), rows, axis=0)
  out[..., 0] *= np.where(flipped, -1, 1).astype(out.dtype)[:, None, None]
  return out


class EvalBatch(grain.transforms.Map):
  """Clip ids [b] (-1 = padding) -> an evaluation batch."""

  def __init__(self, arrays: SplitArrays, clips: Clips, num_frames: int,
               action_ids: np.ndarray):
    self._arrays = arrays
    self._clips = clips
    self._num_frames = num_frames
    self._action_ids = action_ids

  def map(self, clip_ids):
    clip_ids = np.asarray(clip_ids)
    mask = clip_ids >= 0
    safe_ids = np.where(mask, clip_ids, 0)
    index = self._clips.frame_indices(safe_ids, self._num_frames)
    arrays = self._arrays
    valid = arrays.valid[index] & mask[:, None]
    centre = np.zeros(self._num_frames, bool)
    centre[(self._num_frames - 1) // 2] = True
    valid &= ~self._clips.centre_only[safe_ids, None] | centre[None]
    return {
        'inputs': arrays.inputs[index],
        'targets': arrays.targets[index],
        'mask': mask,
        'targets_mm': arrays.targets_mm[index],
        'scale_to_mm': arrays.scale_to_mm[index],
        'zero_depth_scale': arrays.zero_depth_scale[index],
        'valid': valid,
        'frame_id': np.where(mask[:, None], index, -1).astype(np.int64),
        'action_id': np.where(
            mask, self._action_ids[self._clips.video[safe_ids]],
            -1).astype(np.int32),
    }


def _action_names(actions) -> tuple[str, ...]:
  present = sorted(set(a for a in actions if a))
  for canonical in (skeleton_lib.H36M_ACTIONS, synthetic.ACTIONS):
    if present and all(a in canonical for a in present):
      return tuple(a for a in canonical if a in present)
  return tuple(present)


def _resolve_builder(data_config):
  """The TFDS builder named by the config (synthetic: from its sizes)."""
  name = data_config.name
  config_name = data_config.get('builder_config')
  data_dir = data_config.get('data_dir') or builders.default_data_dir()
  if name == 'synthetic':
    parameters = data_config.get('synthetic') or {}
    if hasattr(parameters, 'to_dict'):
      parameters = parameters.to_dict()
    config = synthetic_builder.synthetic_config(**parameters)
    if config_name and config_name != config.name:
      raise ValueError(
          f'data.builder_config={config_name!r} does not match the '
          f'data.synthetic sizes (config {config.name!r}); leave '
          'data.builder_config None for synthetic data')
    builder = builders.get_builder(name, config, data_dir)
    if not builder.is_prepared():
      # Synthetic data needs no download: build it on first use.
      builders.prepare(builder)
    return builder
  builder = builders.get_builder(name, config_name, data_dir)
  if not builder.is_prepared():
    command = (f'python -m l2a_jax.data.prepare --dataset {name}'
               + (f' --builder_config {config_name}' if config_name else '')
               + f' --manual_dir DIR --data_dir {data_dir}')
    raise FileNotFoundError(
        f'dataset {builder.info.full_name} is not prepared in {data_dir}; '
        f'run: {command}')
  return builder


def extra_train_names(data_config) -> list[tuple[str, str | None]]:
  """`data.extra_train` 'name[/config],...' -> [(name, config or None)]."""
  entries = [entry.strip() for entry in
             str(data_config.get('extra_train') or '').split(',')]
  names = []
  for entry in entries:
    if entry:
      name, _, config_name = entry.partition('/')
      names.append((name, config_name or None))
  return names


def _extra_train_arrays(data_config, skeleton, target_space: str
                        ) -> list[tuple[str, SplitArrays]]:
  """(name/config, train split) of each `data.extra_train` dataset.

  Each entry is resolved like `data.name` (same `data_dir`; 'synthetic'
  follows `data.synthetic`), must have a train split and the skeleton of
  the main dataset.
  """
  extras = []
  for name, config_name in extra_train_names(data_config):
    source_config = ml_collections.ConfigDict({
        'name': name, 'builder_config': config_name,
        'data_dir': data_config.get('data_dir'),
        'synthetic': data_config.get('synthetic')})
    builder = _resolve_builder(source_config)
    where = f'data.extra_train {builder.info.full_name}'
    if data_config.train_split not in builder.info.splits:
      raise ValueError(f'{where} has no {data_config.train_split!r} split; '
                       f'its splits: {sorted(builder.info.splits)}')
    arrays = load_split(builder.as_data_source(data_config.train_split),
                        input_2d=data_config.input_2d, with_mm=False,
                        where=f'{where} {data_config.train_split}',
                        target_space=target_space)
    if arrays.skeleton is not skeleton:
      raise ValueError(f'{where}: skeleton {arrays.skeleton.name}, the main '
                       f'dataset {skeleton.name}')
    extras.append((f'{builder.name}/{builder.builder_config.name}'
                   if builder.builder_config else builder.name, arrays))
  return extras


def concatenate_splits(splits: list[SplitArrays]) -> SplitArrays:
  """One SplitArrays holding the videos of every split, in order."""
  if len(splits) == 1:
    return splits[0]

  def concat(name):
    parts = [getattr(split, name) for split in splits]
    return None if any(p is None for p in parts) else np.concatenate(parts)

  offsets = np.cumsum([0] + [split.num_frames for split in splits[:-1]])
  return SplitArrays(
      inputs=concat('inputs'), targets=concat('targets'),
      targets_mm=concat('targets_mm'), scale_to_mm=concat('scale_to_mm'),
      valid=concat('valid'),
      video_bounds=np.concatenate([split.video_bounds + offset for split,
                                   offset in zip(splits, offsets)]),
      video_actions=[a for split in splits for a in split.video_actions],
      skeleton=splits[0].skeleton,
      zero_depth_scale=concat('zero_depth_scale'))


class NoTrainingData:
  """The training stream of a dataset without a train split: iterating it
  raises a ValueError that says so (the dataset is for evaluation)."""

  def __init__(self, where: str, split: str):
    self._message = (f'{where} has no {split!r} split (a test-only corpus): '
                     'evaluate on it (--mode=eval), or train on another')

  def __iter__(self):
    return self

  def __next__(self):
    raise ValueError(self._message)

  def get_state(self):
    return {}

  def set_state(self, state):
    del state


def get_datasets(data_config, *, seed: int, process_index: int | None = None,
                 process_count: int | None = None) -> Datasets:
  """Builds the training and evaluation pipelines of `data_config`.

  Args:
    data_config: the `config.data` section (configs/l2a_h36m.py).
    seed: seed of the shuffle and flip streams.
    process_index: this process (default `jax.process_index()`).
    process_count: processes (default `jax.process_count()`).

  Returns:
    Datasets (see the module docstring).

  Raises:
    ValueError: bad config values (e.g. batch not divisible by processes).
    FileNotFoundError: the dataset is not prepared (the message says how).
  """
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else (
        process_index)
    process_count = jax.process_count() if process_count is None else (
        process_count)
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} not in '
                     f'[0, {process_count})')
  for key in ('batch_size', 'eval_batch_size'):
    value = data_config[key]
    if value < process_count or value % process_count:
      raise ValueError(f'data.{key}={value} must be a positive multiple of '
                       f'the process count {process_count}')
  num_frames = int(data_config.num_frames)

  builder = _resolve_builder(data_config)
  where = builder.info.full_name
  # A test-only corpus (bvh_motion, test_files.txt `*`) has no train split:
  # it can be evaluated, not trained on.
  has_train = data_config.train_split in builder.info.splits
  if data_config.test_split not in builder.info.splits:
    raise ValueError(
        f'{where} has no {data_config.test_split!r} split (a train-only '
        f'corpus?); its splits: {sorted(builder.info.splits)}. Training '
        'evaluates on the test split: give the corpus test files')
  target_space = data_config.get('target_space', 'camera')
  test_arrays = load_split(
      builder.as_data_source(data_config.test_split),
      input_2d=data_config.input_2d, with_mm=True,
      where=f'{where} {data_config.test_split}', target_space=target_space)
  test_clips = make_clips(test_arrays, num_frames=num_frames,
                          stride=int(data_config.test_stride), train=False)
  if has_train:
    train_arrays = load_split(
        builder.as_data_source(data_config.train_split),
        input_2d=data_config.input_2d, with_mm=False,
        where=f'{where} {data_config.train_split}', target_space=target_space)
    extras = _extra_train_arrays(data_config, train_arrays.skeleton,
                                 target_space)
    train_arrays = concatenate_splits(
        [train_arrays] + [arrays for _, arrays in extras])
    train_clips = make_clips(train_arrays, num_frames=num_frames,
                             stride=int(data_config.train_stride), train=True)
  else:
    extras = []
    logging.info('Data %s has no %r split: evaluation only.', where,
                 data_config.train_split)
    train_arrays = test_arrays
    train_clips = dataclasses.replace(
        test_clips, **{f.name: getattr(test_clips, f.name)[:0]
                       for f in dataclasses.fields(test_clips)})
  if (has_train and not len(train_clips)) or not len(test_clips):
    raise ValueError(f'{where}: no clips of {num_frames} frames')

  batch = data_config.batch_size // process_count
  eval_batch = data_config.eval_batch_size // process_count
  read_options = grain.ReadOptions(
      num_threads=int(data_config.num_threads),
      prefetch_buffer_size=int(data_config.prefetch_batches))

  if has_train:
    train = grain.MapDataset.source(ShuffledClipBatches(
        len(train_clips), seed=seed, batch_size=batch,
        process_index=process_index, process_count=process_count))
    train = train.map(TrainBatch(
        train_arrays, train_clips, num_frames,
        bool(data_config.flip_augment)))
    train_dataset = train.to_iter_dataset(read_options)
  else:
    train_dataset = NoTrainingData(where, data_config.train_split)

  action_names = _action_names(test_arrays.video_actions)
  action_ids = np.array(
      [action_names.index(a) if a in action_names else -1
       for a in test_arrays.video_actions], np.int32)
  shard = np.arange(process_index, len(test_clips), process_count)
  per_process = math.ceil(len(test_clips) / process_count)
  num_eval_batches = math.ceil(per_process / eval_batch)
  padded = np.full(num_eval_batches * eval_batch, -1, np.int64)
  padded[:len(shard)] = shard
  eval_ids = padded.reshape(num_eval_batches, eval_batch)
  eval_map = EvalBatch(test_arrays, test_clips, num_frames, action_ids)

  def make_eval_iter():
    dataset = grain.MapDataset.source(list(eval_ids)).map(eval_map)
    return iter(dataset.to_iter_dataset(read_options))

  info = DatasetInfo(
      name=builder.name,
      builder_config=(builder.builder_config.name if builder.builder_config
                      else ''),
      skeleton=train_arrays.skeleton.name,
      root_joint=train_arrays.skeleton.root,
      action_names=action_names,
      num_test_frames=test_arrays.num_frames,
      num_train_clips=len(train_clips),
      num_test_clips=len(test_clips),
      steps_per_epoch=math.ceil(len(train_clips) / data_config.batch_size),
      num_frames=num_frames,
      per_process_batch_size=batch,
      per_process_eval_batch_size=eval_batch,
      num_eval_batches=num_eval_batches,
      extra_train=tuple(name for name, _ in extras),
  )
  logging.info('Data %s: %d train clips, %d test clips of %d frames; '
               'process %d of %d', where, info.num_train_clips,
               info.num_test_clips, num_frames, process_index, process_count)
  return Datasets(train_iter=iter(train_dataset), train_dataset=train_dataset,
                  make_eval_iter=make_eval_iter, info=info,
                  train_arrays=train_arrays)
