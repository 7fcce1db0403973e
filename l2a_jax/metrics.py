"""Evaluation metrics and the test-set aggregation protocols.

Two halves:

- Per-frame errors (jnp, also fine on NumPy inputs): MPJPE per joint,
  P-MPJPE (Procrustes), N-MPJPE, MPJVE and acceleration error. They run
  inside the jitted evaluation step on root-relative poses in mm.
- `FrameAccumulator` (host NumPy): scatter-adds the per-clip-frame errors onto
  the global test frames, so a frame seen by several windows counts once, then
  averages with the dataset's protocol: action-wise for Human3.6M (MotionBERT),
  frame-wise with PCK@150mm / AUC for MPI-INF-3DHP.

Definitions: `docs` `data_and_metrics.md` sections 6-8.
"""

from typing import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from l2a_jax.data import skeleton as skeleton_lib

# PCK/AUC use 14 joints: the head top, neck, shoulders, elbows, wrists, hips,
# knees and ankles; pelvis, spine and head are excluded (3DHP test scripts).
PCK_JOINTS = {
    'mpi': tuple(skeleton_lib.MPI_PCK_JOINTS),
    'h36m': tuple(
        skeleton_lib.MPI_TO_H36M[m] for m in skeleton_lib.MPI_PCK_JOINTS
    ),
}
PCK_THRESHOLD_MM = 150.0
# AUC thresholds 0, 5, ..., 150 mm (31 values).
AUC_THRESHOLDS_MM = tuple(float(t) for t in range(0, 151, 5))

# Per-frame quantities accumulated by `FrameAccumulator`, each with its own
# validity (velocity needs a previous frame, acceleration both neighbours).
FRAME_METRICS = ('p_mpjpe', 'n_mpjpe', 'velocity', 'acceleration')
# Per-axis errors (mean over joints of |pred - target| along x, y and depth,
# root-relative, root included as 0 like MPJPE); keys `<name>_mm`.
AXIS_NAMES = ('error_x', 'error_y', 'error_depth')

_EPS = 1e-12


def _norm(x, axis=-1):
  return jnp.sqrt(jnp.sum(jnp.square(x), axis=axis))


def joint_errors(pred, target):
  """Euclidean error of every joint.

  Args:
    pred: `[..., joints, 3]`.
    target: same shape.

  Returns:
    `[..., joints]`.
  """
  return _norm(pred - target)


def mpjpe_per_frame(pred, target):
  """MPJPE of every frame: the mean over joints of `joint_errors`.

  Args:
    pred: `[..., joints, 3]`.
    target: same shape.

  Returns:
    `[...]`.
  """
  return jnp.mean(joint_errors(pred, target), axis=-1)


# Sweeps of the one-sided Jacobi SVD below. Convergence is quadratic: 3x3
# float32 matrices are orthogonalised to rounding after 3-4 sweeps; 6 leave
# a margin for ill-conditioned frames.
_JACOBI_SWEEPS = 6


def _dot3(a, b):
  """Inner product of `[..., 3]` vectors, `[...]`."""
  return jnp.sum(a * b, axis=-1)


def _unit(x):
  """`x / |x|` on `[..., 3]`; the zero vector stays zero (padding frames)."""
  return x / jnp.maximum(_norm(x), _EPS)[..., None]


def svd_3x3_proper(h):
  """Singular value decomposition of 3 x 3 matrices with rotations only.

  `h = U diag(s) V^T` with U and V proper rotations (det +1), s sorted by
  decreasing magnitude, s[0] >= s[1] >= |s[2]| and s[2] carrying the sign of
  det(h). So `V U^T` is the rotation of the Kabsch / Procrustes problem and
  `sum(s)` its trace term, with the reflection case already resolved (the
  same result as LAPACK's SVD followed by MotionBERT's flip of the weakest
  direction, data_and_metrics.md section 6).

  One-sided (Hestenes) Jacobi: plane rotations V applied on the right make
  the columns of `h V` orthogonal; their norms are the singular values and
  their directions U. Only elementwise arithmetic and a sort: no LAPACK
  call, so the evaluation step has no custom call (XLA CPU runs batched
  LAPACK kernels on its intra-op thread pool and, with several CPU devices
  each blocked in one, deadlocks; docs/scaling.md), it fuses, and it is the
  same code on every backend.

  Args:
    h: `[..., 3, 3]` float32.

  Returns:
    `(u, s, v)`: `[..., 3, 3]` (columns are the singular vectors), `[..., 3]`,
    `[..., 3, 3]`. For a zero matrix (padding frames) s is 0 and u has zero
    columns: finite, not a rotation.
  """
  columns = [h[..., :, i] for i in range(3)]  # of h V, each [..., 3]
  eye = jnp.eye(3, dtype=h.dtype)
  v_columns = [jnp.broadcast_to(eye[:, i], h.shape[:-1]) for i in range(3)]
  tiny = jnp.finfo(h.dtype).tiny
  for _ in range(_JACOBI_SWEEPS):
    for p, q in ((0, 1), (0, 2), (1, 2)):
      alpha = _dot3(columns[p], columns[p])
      beta = _dot3(columns[q], columns[q])
      gamma = _dot3(columns[p], columns[q])
      rotate = jnp.abs(gamma) > tiny
      zeta = (beta - alpha) / (2.0 * jnp.where(rotate, gamma, 1.0))
      # The smaller root of t^2 + 2 zeta t - 1 = 0 (rotation angle <= 45 deg);
      # zeta^2 overflowing to inf gives t = 0, the right limit.
      t = jnp.sign(zeta) / (jnp.abs(zeta) + jnp.sqrt(1.0 + zeta * zeta))
      t = jnp.where(rotate, jnp.where(zeta == 0, 1.0, t), 0.0)
      c = 1.0 / jnp.sqrt(1.0 + t * t)
      s = c * t
      for vectors in (columns, v_columns):
        a, b = vectors[p], vectors[q]
        vectors[p] = c[..., None] * a - s[..., None] * b
        vectors[q] = s[..., None] * a + c[..., None] * b
  a = jnp.stack(columns, axis=-1)
  v = jnp.stack(v_columns, axis=-1)
  # Sort by decreasing singular value (column norm).
  order = jnp.argsort(-_norm(a, axis=-2), axis=-1)[..., None, :]
  a = jnp.take_along_axis(a, order, axis=-1)
  v = jnp.take_along_axis(v, order, axis=-1)
  # The permutation may have made V improper: flip its last column (and the
  # matching column of h V) so that det V = +1.
  det_v = _dot3(jnp.cross(v[..., 0], v[..., 1]), v[..., 2])
  flip = jnp.where(det_v < 0, -1.0, 1.0)[..., None]
  v = v.at[..., 2].multiply(flip)
  a3 = a[..., 2] * flip
  u1 = _unit(a[..., 0])
  # Re-orthogonalised against u1 (exact after convergence, robust before).
  u2 = _unit(a[..., 1] - _dot3(u1, a[..., 1])[..., None] * u1)
  u3 = jnp.cross(u1, u2)
  s = jnp.stack([_dot3(u1, a[..., 0]), _dot3(u2, a[..., 1]), _dot3(u3, a3)],
                axis=-1)
  u = jnp.stack([u1, u2, u3], axis=-1)
  return u, s, v


def procrustes_align(pred, target):
  """Similarity transform (rotation, scale, translation) of pred onto target.

  Per frame: centre both point sets, divide each by its Frobenius norm,
  SVD of G0^T P0 = U S V^T, R = V U^T with a reflection fixed by negating the
  last column of V and the last singular value, scale = sum(S) |G0| / |P0|,
  t = mean(G) - scale mean(P) R (row vectors), as MotionBERT's `p_mpjpe`.
  The SVD is `svd_3x3_proper`, which returns the reflection-fixed U, S, V
  directly.

  Args:
    pred: `[..., joints, 3]`.
    target: same shape.

  Returns:
    The aligned prediction `[..., joints, 3]`.
  """
  pred = jnp.asarray(pred, jnp.float32)
  target = jnp.asarray(target, jnp.float32)
  mu_pred = jnp.mean(pred, axis=-2, keepdims=True)
  mu_target = jnp.mean(target, axis=-2, keepdims=True)
  pred0 = pred - mu_pred
  target0 = target - mu_target
  # Degenerate frames (padding rows are all zero) must not produce NaN that
  # would survive the masking as NaN * 0.
  norm_pred = jnp.maximum(_norm(pred0, axis=(-2, -1)), _EPS)[..., None, None]
  norm_target = jnp.maximum(_norm(target0, axis=(-2, -1)), _EPS)[
      ..., None, None
  ]
  pred0 = pred0 / norm_pred
  target0 = target0 / norm_target
  h = jnp.swapaxes(target0, -1, -2) @ pred0
  u, s, v = svd_3x3_proper(h)
  rotation = v @ jnp.swapaxes(u, -1, -2)
  scale = jnp.sum(s, axis=-1)[..., None, None] * norm_target / norm_pred
  translation = mu_target - scale * (mu_pred @ rotation)
  return scale * (pred @ rotation) + translation


def p_mpjpe_per_frame(pred, target):
  """MPJPE after Procrustes alignment (protocol 2), per frame.

  Args:
    pred: `[..., joints, 3]`.
    target: same shape.

  Returns:
    `[...]`.
  """
  return mpjpe_per_frame(procrustes_align(pred, target), target)


def n_mpjpe_per_frame(pred, target):
  """MPJPE after the least-squares scale of each frame's prediction.

  s = mean_j(P . G) / mean_j(P . P) (the N-MPJPE loss, per frame).

  Args:
    pred: `[..., joints, 3]`.
    target: same shape.

  Returns:
    `[...]`.
  """
  pred_sq = jnp.mean(jnp.sum(pred * pred, axis=-1), axis=-1)
  cross = jnp.mean(jnp.sum(pred * target, axis=-1), axis=-1)
  scale = cross / jnp.maximum(pred_sq, _EPS)
  return mpjpe_per_frame(scale[..., None, None] * pred, target)


def velocity_error_per_frame(pred, target):
  """Per-joint velocity error (MPJVE) of frame t against frame t - 1.

  Args:
    pred: `[batch, frames, joints, 3]`.
    target: same shape.

  Returns:
    `[batch, frames]`; frame 0 has no previous frame and holds 0 (see
    `velocity_valid`).
  """
  diff = (pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])
  error = jnp.mean(_norm(diff), axis=-1)
  return jnp.pad(error, ((0, 0), (1, 0)))


def acceleration_error_per_frame(pred, target):
  """Per-joint acceleration error (second differences) at interior frames.

  Args:
    pred: `[batch, frames, joints, 3]`.
    target: same shape.

  Returns:
    `[batch, frames]`; the first and last frame hold 0 (see
    `acceleration_valid`).
  """
  def accel(x):
    return x[:, :-2] - 2.0 * x[:, 1:-1] + x[:, 2:]

  if pred.shape[1] < 3:
    return jnp.zeros(pred.shape[:2], jnp.float32)
  error = jnp.mean(_norm(accel(pred) - accel(target)), axis=-1)
  return jnp.pad(error, ((0, 0), (1, 1)))


def velocity_valid(valid):
  """Frames with a velocity error: valid and preceded by a valid frame.

  Args:
    valid: bool `[batch, frames]`.

  Returns:
    bool `[batch, frames]`.
  """
  valid = np.asarray(valid, bool)
  out = np.zeros_like(valid)
  out[:, 1:] = valid[:, 1:] & valid[:, :-1]
  return out


def acceleration_valid(valid):
  """Frames with an acceleration error: valid with both neighbours valid.

  Args:
    valid: bool `[batch, frames]`.

  Returns:
    bool `[batch, frames]`.
  """
  valid = np.asarray(valid, bool)
  out = np.zeros_like(valid)
  out[:, 1:-1] = valid[:, :-2] & valid[:, 1:-1] & valid[:, 2:]
  return out


def pck(joint_error_mm, threshold_mm: float = PCK_THRESHOLD_MM) -> float:
  """Percentage of joint errors strictly below the threshold.

  Args:
    joint_error_mm: `[frames, joints]` (or any shape) errors in mm.
    threshold_mm: the threshold.

  Returns:
    PCK in percent.
  """
  return 100.0 * float(np.mean(np.asarray(joint_error_mm) < threshold_mm))


def auc(joint_error_mm,
        thresholds_mm: Sequence[float] = AUC_THRESHOLDS_MM) -> float:
  """Area under the PCK curve: the mean PCK over the thresholds, in percent.

  Args:
    joint_error_mm: `[frames, joints]` (or any shape) errors in mm.
    thresholds_mm: the thresholds (default 0, 5, ..., 150 mm).

  Returns:
    AUC in percent.
  """
  return float(np.mean([pck(joint_error_mm, t) for t in thresholds_mm]))


def eval_errors(pred_mm, target_mm):
  """Every per-frame error the evaluation accumulates (jit-friendly).

  Args:
    pred_mm: `[batch, frames, joints, 3]` root-relative prediction in mm.
    target_mm: same shape, root-relative ground truth in mm.

  Returns:
    `{'joint': [batch, frames, joints], 'axis': [batch, frames, 3] (the
    mean over joints of |pred - target| per axis x, y, depth), name:
    [batch, frames] for name in FRAME_METRICS}`.
  """
  return {
      'joint': joint_errors(pred_mm, target_mm),
      'axis': jnp.mean(jnp.abs(pred_mm - target_mm), axis=-2),
      'p_mpjpe': p_mpjpe_per_frame(pred_mm, target_mm),
      'n_mpjpe': n_mpjpe_per_frame(pred_mm, target_mm),
      'velocity': velocity_error_per_frame(pred_mm, target_mm),
      'acceleration': acceleration_error_per_frame(pred_mm, target_mm),
  }


class FrameAccumulator:
  """Scatter-adds per-clip errors onto test frames and averages them.

  Errors of a frame covered by several windows are averaged (the protocol's
  accumulate-and-count); frames never covered by a valid window do not count.
  """

  def __init__(
      self,
      num_test_frames: int,
      num_joints: int,
      action_names: Sequence[str] = (),
  ):
    """Allocates the per-frame accumulators.

    Args:
      num_test_frames: size of the global test-frame index (`frame_id` range).
      num_joints: J.
      action_names: the dataset's action names (`action_id` indexes them).
    """
    self.num_test_frames = int(num_test_frames)
    self.action_names = tuple(action_names)
    self._joint_sum = np.zeros((num_test_frames, num_joints), np.float64)
    self._axis_sum = np.zeros((num_test_frames, 3), np.float64)
    self._sums = {
        name: np.zeros(num_test_frames, np.float64) for name in FRAME_METRICS
    }
    self._counts = {
        name: np.zeros(num_test_frames, np.int64)
        for name in FRAME_METRICS + ('joint',)
    }
    self._action = np.full(num_test_frames, -1, np.int64)

  def add(
      self,
      errors: Mapping[str, np.ndarray],
      frame_id: np.ndarray,
      valid: np.ndarray,
      action_id: np.ndarray,
  ) -> None:
    """Adds one evaluation batch.

    Args:
      errors: `eval_errors` output as NumPy (`joint` `[b, T, J]`, the others
        `[b, T]`), in mm; a missing per-frame metric is skipped (its
        results are NaN), `joint` is required.
      frame_id: int `[b, T]` global test-frame index of every clip frame.
      valid: bool `[b, T]`: frames that count (False on padding rows).
      action_id: int `[b]`: action of each clip (-1 unknown).
    """
    valid = np.asarray(valid, bool)
    frame_id = np.asarray(frame_id, np.int64)
    if valid.any():
      ids = frame_id[valid]
      if ids.min() < 0 or ids.max() >= self.num_test_frames:
        raise ValueError(
            f'frame_id out of range [0, {self.num_test_frames}): '
            f'{ids.min()}..{ids.max()}'
        )
    validity = {
        'joint': valid,
        'p_mpjpe': valid,
        'n_mpjpe': valid,
        'velocity': velocity_valid(valid),
        'acceleration': acceleration_valid(valid),
    }
    for name, mask in validity.items():
      if not mask.any() or name not in errors:
        continue
      ids = frame_id[mask]
      np.add.at(self._counts[name], ids, 1)
      if name == 'joint':
        np.add.at(self._joint_sum, ids, np.asarray(errors['joint'])[mask])
        if 'axis' in errors:
          np.add.at(self._axis_sum, ids, np.asarray(errors['axis'])[mask])
      else:
        np.add.at(self._sums[name], ids, np.asarray(errors[name])[mask])
    clip_action = np.broadcast_to(
        np.asarray(action_id, np.int64)[:, None], valid.shape
    )
    self._action[frame_id[valid]] = clip_action[valid]

  def _frame_means(self):
    covered = self._counts['joint'] > 0
    joint = self._joint_sum[covered] / self._counts['joint'][covered, None]
    per_frame = {'mpjpe': joint.mean(axis=-1)}
    axis = self._axis_sum[covered] / self._counts['joint'][covered, None]
    for index, name in enumerate(AXIS_NAMES):
      per_frame[name] = axis[:, index]
    for name in ('p_mpjpe', 'n_mpjpe'):
      # NaN where a metric was not accumulated (e.g. a joints-only baseline).
      count = self._counts[name][covered]
      per_frame[name] = np.divide(
          self._sums[name][covered], count,
          out=np.full(count.shape, np.nan), where=count > 0)
    return covered, joint, per_frame

  def results(self, protocol: str, skeleton: str = 'h36m') -> dict:
    """Final metrics.

    Args:
      protocol: 'action_mean' (Human3.6M: average within each action, then
        the unweighted mean over actions) | 'frame_mean' (every covered frame
        weighs the same; MPI-INF-3DHP, synthetic data).
      skeleton: joint order ('h36m' | 'mpi'), for the PCK joint subset.

    Returns:
      `{'mpjpe_mm', 'p_mpjpe_mm', 'n_mpjpe_mm', 'error_x_mm', 'error_y_mm',
      'error_depth_mm', 'mpjve_mm', 'accel_error_mm',
      'pck_150mm', 'auc', 'num_frames', 'protocol', 'per_action'}`;
      `per_action` maps action names to their frame-mean metrics (empty
      without action names); with 'action_mean' the frame means are also
      given as `*_frame_mean`.
    """
    if protocol not in ('action_mean', 'frame_mean'):
      raise ValueError(f'unknown evaluation protocol {protocol!r}')
    if skeleton not in PCK_JOINTS:
      raise ValueError(f'unknown skeleton {skeleton!r}')
    covered, joint, per_frame = self._frame_means()
    if not covered.any():
      raise ValueError('evaluation covered no valid test frame')
    actions = self._action[covered]
    motion = {}
    for name, key in (('velocity', 'mpjve'), ('acceleration', 'accel_error')):
      has = self._counts[name] > 0
      motion[key] = (self._sums[name][has] / self._counts[name][has], has)
    pck_joints = list(PCK_JOINTS[skeleton])

    def summarise(frame_mask, motion_masks):
      out = {
          'mpjpe_mm': _mean(per_frame['mpjpe'][frame_mask]),
          'p_mpjpe_mm': _mean(per_frame['p_mpjpe'][frame_mask]),
          'n_mpjpe_mm': _mean(per_frame['n_mpjpe'][frame_mask]),
          **{f'{name}_mm': _mean(per_frame[name][frame_mask])
             for name in AXIS_NAMES},
          'pck_150mm': pck(joint[frame_mask][:, pck_joints]),
          'auc': auc(joint[frame_mask][:, pck_joints]),
      }
      for key, (values, _) in motion.items():
        out[f'{key}_mm'] = _mean(values[motion_masks[key]])
      out['num_frames'] = int(frame_mask.sum())
      return out

    everything = summarise(
        np.ones(len(actions), bool),
        {key: np.ones(len(values), bool)
         for key, (values, _) in motion.items()},
    )
    per_action = {}
    for index, name in enumerate(self.action_names):
      frames = actions == index
      if not frames.any():
        continue
      motion_masks = {
          key: self._action[has] == index for key, (_, has) in motion.items()
      }
      per_action[name] = summarise(frames, motion_masks)

    if protocol == 'action_mean':
      if not per_action:
        raise ValueError('action_mean protocol needs action names and ids')
      results = {
          key: float(np.mean([table[key] for table in per_action.values()]))
          for key in everything
          if key != 'num_frames'
      }
      results.update(
          {f'{key}_frame_mean': value for key, value in everything.items()
           if key != 'num_frames'}
      )
    else:
      results = {k: v for k, v in everything.items() if k != 'num_frames'}
    results['num_frames'] = everything['num_frames']
    results['protocol'] = protocol
    results['per_action'] = per_action
    return results


def _mean(values: np.ndarray) -> float:
  return float(np.mean(values)) if values.size else float('nan')
