"""The Python API: a model loaded once, pixel keypoints in, 3D poses out.

  from l2a_jax import inference

  lifter = inference.Lifter.from_workdir('configs/quickstart.py', '/tmp/qs')
  result = lifter.lift(keypoints_px, keypoint_format='coco',
                       image_size=(1000, 1002), fps=50)
  result.poses_3d      # float32 [F, 17, 3], root-relative, result.units
  result.filled_frames # frames where a joint was interpolated

  result = lifter.lift_file('detections.json', image_size=(1920, 1080))

`lift` is the whole pipeline of `python -m l2a_jax.predict` for one
person: conversion to the model's 17 joints (`keypoint_formats`), gap
filling (`sequence.fill_gaps`), the pixel checks and screen normalisation
(`normalization`), sliding windows with centre-weighted blending
(`sequence.lift_sequence`), flip test-time augmentation when the config's
`eval.flip_test` says so (average of model(x) and flip(model(flip(x)))),
the root joint set to 0 and the scale back to output units (W / 2 per
normalised unit). `lift_raw` feeds already normalised inputs to the model
and returns its output untouched, apart from the windowing.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections
import numpy as np

from l2a_jax import cli
from l2a_jax.data import skeleton as skeleton_lib
from l2a_jax.data import transforms
from l2a_jax.inference import errors
from l2a_jax.inference import keypoint_formats
from l2a_jax.inference import model_loading
from l2a_jax.inference import normalization
from l2a_jax.inference import readers
from l2a_jax.inference import sequence
from l2a_jax.inference import tracking


@dataclasses.dataclass
class LiftResult:
  """3D poses of one person and what they mean.

  Attributes:
    poses_3d: float32 `[F, 17, 3]`, root-relative (root joint exactly 0).
    units: 'mm', 'px' or 'normalised' (`normalization.UNIT_DESCRIPTIONS`).
    joint_names: the 17 joint names in output order (the model's skeleton).
    fps: frames per second, or None when unknown.
    filled_frames: frames in which at least one joint was interpolated.
    filled_joints: bool `[F, 17]`, True where a joint was interpolated.
    keypoints_2d: float32 `[F, 17, 3]`: the 2D input in pixels after
      conversion and filling (x, y, confidence), model joint order.
    image_size: (W, H).
    keypoint_format: the input layout.
    person: the chosen track (index into the input's people / tracks).
    num_people: how many tracks the input had.
  """

  poses_3d: np.ndarray
  units: str
  joint_names: tuple[str, ...]
  fps: float | None
  filled_frames: list[int]
  filled_joints: np.ndarray
  keypoints_2d: np.ndarray
  image_size: tuple[int, int]
  keypoint_format: str
  person: int = 0
  num_people: int = 1


def skeleton_for(config: ml_collections.ConfigDict) -> skeleton_lib.Skeleton:
  """The joint order of the config's dataset (MPI-INF-3DHP or Human3.6M)."""
  return skeleton_lib.get(
      'mpi' if config.data.name == 'mpi_inf_3dhp' else 'h36m')


def _run_in_batches(forward, clips: np.ndarray, batch_size: int) -> np.ndarray:
  """`forward` over `[n, T, J, C]` in batches; the last one is padded."""
  n = clips.shape[0]
  batch_size = max(1, min(batch_size, n))
  outputs = []
  for start in range(0, n, batch_size):
    batch = clips[start:start + batch_size]
    pad = batch_size - batch.shape[0]
    if pad:
      batch = np.concatenate([batch, np.repeat(batch[-1:], pad, 0)])
    outputs.append(np.asarray(forward(batch))[:batch_size - pad])
  return np.concatenate(outputs).astype(np.float32)


class Lifter:
  """A lifting model with its config, ready for sequences of any length.

  Attributes:
    config: the run config (model, data, eval sections are used).
    skeleton: the model's joint order.
    num_frames: T, the model's window.
    stride: frames between window starts.
    units: output unit of `lift` (`normalization.output_units`).
    flip_test: whether `lift` averages with the flipped prediction.
  """

  def __init__(self, forward, config: ml_collections.ConfigDict, *,
               stride: int | None = None, batch_size: int = 16,
               flip_test: bool | None = None):
    """Wraps a forward function.

    Args:
      forward: maps float32 `[b, T, J, dim_in]` to `[b, T, J, 3]` (NumPy
        or JAX arrays), e.g. `model_loading.jitted_forward(model)`.
      config: the run config of the model.
      stride: window stride; None = max(1, T // 2) (50% overlap).
      batch_size: windows per model call.
      flip_test: None = `config.eval.flip_test`.
    """
    self.config = config
    self._forward = forward
    self.skeleton = skeleton_for(config)
    self.num_frames = int(config.model.num_frames)
    self.stride = stride if stride is not None else max(
        1, self.num_frames // 2)
    if self.stride < 1:
      raise errors.InputError(f'--stride: expected >= 1, got {self.stride}')
    if batch_size < 1:
      raise errors.InputError(f'--batch_size: expected >= 1, got {batch_size}')
    self.batch_size = batch_size
    self.flip_test = (bool(config.eval.flip_test) if flip_test is None
                      else flip_test)
    self.units = normalization.output_units(config.data)
    self.dim_in = int(config.model.dim_in)

  @classmethod
  def from_workdir(cls, config: ml_collections.ConfigDict | str,
                   workdir: str | os.PathLike[str], *, step: int | None = None,
                   **kwargs) -> 'Lifter':
    """Loads the checkpoint of `workdir` into the model of `config`.

    Args:
      config: a config, or a config file path `PATH[:ARG]`.
      workdir: the run directory (its `checkpoints/`).
      step: checkpoint step; None = the latest.
      **kwargs: `stride`, `batch_size`, `flip_test` (see `__init__`).
    """
    if isinstance(config, str):
      try:
        config = cli.load_config_file(config)
      except cli.UsageError as e:
        raise errors.InputError(str(e)) from e
    model, _ = model_loading.load_model(config.model, workdir, step)
    return cls(model_loading.jitted_forward(model), config, **kwargs)

  @property
  def joint_names(self) -> tuple[str, ...]:
    return self.skeleton.joint_names

  def _windows(self, clips: np.ndarray, tta: bool) -> np.ndarray:
    """`[n, T, J, C]` normalised -> `[n, T, J, 3]`, flip-averaged if tta."""
    poses = _run_in_batches(self._forward, clips, self.batch_size)
    if tta:
      flipped = _run_in_batches(
          self._forward, transforms.flip(clips, self.skeleton),
          self.batch_size)
      poses = 0.5 * (poses + transforms.flip(flipped, self.skeleton))
    return poses

  def _check_model_input(self, inputs: np.ndarray, where: str) -> None:
    shape = inputs.shape
    if inputs.ndim != 3 or shape[1:] != (self.skeleton.num_joints,
                                         self.dim_in):
      raise errors.InputError(
          f'{where}: expected model input [F, {self.skeleton.num_joints}, '
          f'{self.dim_in}], got {shape}')
    if shape[0] == 0:
      raise errors.InputError(f'{where}: holds no frames')
    if not np.all(np.isfinite(inputs)):
      raise errors.InputError(f'{where}: contains NaN or Inf')

  def lift_normalized(self, inputs: np.ndarray,
                      where: str = 'inputs') -> np.ndarray:
    """Normalised `[F, J, dim_in]` -> `[F, J, 3]` normalised, root at 0.

    Windows, flip test-time augmentation (if `flip_test`), root zeroed.
    """
    inputs = np.asarray(inputs, np.float32)
    self._check_model_input(inputs, where)
    poses = sequence.lift_sequence(
        lambda clips: self._windows(clips, self.flip_test), inputs,
        self.num_frames, self.stride)
    return _finite_output(
        transforms.root_relative(poses, self.skeleton.root), where)

  def lift_raw(self, inputs: np.ndarray, where: str = 'inputs') -> np.ndarray:
    """The model output for normalised `[F, J, dim_in]`, windows only.

    No flip averaging, no root zeroing, no (de)normalisation; for F = T
    exactly the model's output.
    """
    inputs = np.asarray(inputs, np.float32)
    self._check_model_input(inputs, where)
    return _finite_output(sequence.lift_sequence(
        lambda clips: self._windows(clips, False), inputs, self.num_frames,
        self.stride), where)

  def lift(self, keypoints: np.ndarray, *, keypoint_format: str = 'h36m',
           image_size: tuple[int, int] | Any, fps: float | None = None,
           where: str = 'keypoints') -> LiftResult:
    """3D poses of one person's pixel keypoints.

    Args:
      keypoints: `[F, J, 2|3]` pixels (x, y[, confidence]) of the layout
        `keypoint_format`; confidence 0 or NaN marks a missing joint.
      keypoint_format: a key of `keypoint_formats.FORMATS`.
      image_size: (W, H) of the image the keypoints are in.
      fps: frame rate, passed through to the result.
      where: input name for messages.

    Returns:
      A `LiftResult` (poses in `self.units`).

    Raises:
      InputError: wrong shape, a joint never seen, keypoints that are not
        pixels of `image_size`.
    """
    image_size = readers.parse_image_size(image_size, where)
    layout = keypoint_formats.get(keypoint_format)
    keypoints = np.asarray(keypoints)
    if keypoints.ndim != 3:
      raise errors.InputError(f'{where}: expected one person [F, J, 2|3], '
                              f'got shape {keypoints.shape}')
    h36m = keypoint_formats.to_h36m(keypoints, layout, where)
    points = keypoint_formats.to_skeleton(h36m, self.skeleton)
    filled, was_missing = sequence.fill_gaps(points, self.joint_names, where)
    normalization.check_pixels(filled, image_size, where)
    inputs = normalization.normalize(filled, image_size, self.dim_in)
    poses = self.lift_normalized(inputs, where)
    poses = poses * np.float32(normalization.scale_of(image_size))
    return LiftResult(
        poses_3d=poses.astype(np.float32), units=self.units,
        joint_names=self.joint_names, fps=fps,
        filled_frames=[int(t) for t in np.flatnonzero(was_missing.any(-1))],
        filled_joints=was_missing, keypoints_2d=filled,
        image_size=image_size, keypoint_format=layout.name)

  def lift_file(self, path: str | os.PathLike[str], *,
                keypoint_format: str | None = None,
                image_size: Any = None, person: int | None = None,
                fps: float | None = None) -> LiftResult:
    """`lift` for a keypoint file or OpenPose folder (`readers`).

    Args:
      path: the input.
      keypoint_format: overrides the file's layout (must agree with a
        `keypoint_format` field the file has).
      image_size: (W, H) or 'W,H'; must agree with the file's if it has one.
      person: track to lift; None = the highest-scoring.
      fps: frame rate when the file gives none.
    """
    data = readers.read_keypoints(path)
    where = data.source
    layout = data.keypoint_format or data.assumed_format
    if keypoint_format is not None:
      keypoint_formats.get(keypoint_format)
      if data.keypoint_format not in (None, keypoint_format):
        raise errors.InputError(
            f'{where}: keypoint_format: the file says '
            f'{data.keypoint_format}, --keypoint_format says '
            f'{keypoint_format}')
      layout = keypoint_format
    index = tracking.select_person(data.tracks, data.scores, person, where)
    size = data.image_size
    if isinstance(size, list):
      size = size[index]
    if image_size is not None:
      given = readers.parse_image_size(image_size, '--image_size')
      if size is not None and size != given:
        raise errors.InputError(
            f'{where}: image_size: the file says {size[0]}x{size[1]}, '
            f'--image_size says {given[0]}x{given[1]}')
      size = given
    if size is None:
      raise errors.InputError(f'{where}: image_size: not in the file; pass '
                              '--image_size W,H (the video frame size)')
    result = self.lift(data.tracks[index],
                       keypoint_format=layout, image_size=size,
                       fps=data.fps if data.fps is not None else fps,
                       where=where)
    result.person = index
    result.num_people = int(data.tracks.shape[0])
    return result


def _finite_output(poses: np.ndarray, where: str) -> np.ndarray:
  """`poses`, or InputError when the model produced NaN / Inf.

  Finite inputs can still overflow inside the model (values near the float32
  limit, far outside the normalised range); no NaN pose is ever written.
  """
  if not np.all(np.isfinite(poses)):
    raise errors.InputError(
        f'{where}: the model output is NaN or Inf (inputs far outside the '
        'normalised range? largest |input| overflows float32 inside the '
        'model)')
  return poses
