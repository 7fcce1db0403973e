"""Tests of l2a_jax.metrics against straightforward NumPy references."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2a_jax import metrics


def _random_rotation(rng):
  q, r = np.linalg.qr(rng.normal(size=(3, 3)))
  q = q * np.sign(np.diag(r))
  if np.linalg.det(q) < 0:
    q[:, 0] *= -1
  return q


def _reference_p_mpjpe(pred, target):
  """Per-frame Procrustes MPJPE written out frame by frame (row vectors)."""
  errors = []
  for p, g in zip(pred.reshape(-1, *pred.shape[-2:]),
                  target.reshape(-1, *target.shape[-2:])):
    p0, g0 = p - p.mean(0), g - g.mean(0)
    norm_p, norm_g = np.linalg.norm(p0), np.linalg.norm(g0)
    p0, g0 = p0 / norm_p, g0 / norm_g
    u, s, vt = np.linalg.svd(g0.T @ p0)
    v = vt.T
    r = v @ u.T
    if np.linalg.det(r) < 0:
      v[:, -1] *= -1
      s[-1] *= -1
      r = v @ u.T
    a = s.sum() * norm_g / norm_p
    t = g.mean(0) - a * p.mean(0) @ r
    aligned = a * p @ r + t
    errors.append(np.linalg.norm(aligned - g, axis=-1).mean())
  return np.array(errors).reshape(pred.shape[:-2])


def test_mpjpe_matches_numpy():
  rng = np.random.default_rng(0)
  pred, target = rng.normal(size=(2, 2, 5, 17, 3))
  expected = np.sqrt(((pred - target) ** 2).sum(-1)).mean(-1)
  np.testing.assert_allclose(
      metrics.mpjpe_per_frame(pred, target), expected, rtol=1e-5
  )


def test_p_mpjpe_matches_reference_and_is_similarity_invariant():
  rng = np.random.default_rng(1)
  target = rng.normal(size=(4, 6, 17, 3)) * 200.0
  pred = target + rng.normal(size=target.shape) * 30.0
  error = np.asarray(metrics.p_mpjpe_per_frame(pred, target))
  np.testing.assert_allclose(error, _reference_p_mpjpe(pred, target),
                             rtol=1e-4)
  # Alignment can only help.
  assert np.all(error <= np.asarray(metrics.mpjpe_per_frame(pred, target)))

  rotation = _random_rotation(rng)
  moved = 2.7 * pred @ rotation + np.array([100.0, -50.0, 3000.0])
  np.testing.assert_allclose(
      metrics.p_mpjpe_per_frame(moved, target), error, rtol=1e-3, atol=1e-3
  )
  # A similarity transform of the ground truth aligns back exactly.
  exact = 0.5 * target @ rotation.T + 7.0
  np.testing.assert_allclose(
      metrics.p_mpjpe_per_frame(exact, target), 0.0, atol=1e-2
  )


def test_p_mpjpe_handles_reflections_like_the_reference():
  rng = np.random.default_rng(2)
  target = rng.normal(size=(8, 17, 3))
  mirrored = target * np.array([-1.0, 1.0, 1.0]) + rng.normal(
      size=target.shape) * 0.05
  np.testing.assert_allclose(
      metrics.p_mpjpe_per_frame(mirrored, target),
      _reference_p_mpjpe(mirrored, target), rtol=1e-4,
  )
  # A proper rotation cannot undo a mirror image.
  assert np.all(np.asarray(metrics.p_mpjpe_per_frame(mirrored, target)) > 0.1)


def test_p_mpjpe_of_padding_rows_is_finite():
  zeros = np.zeros((2, 3, 17, 3), np.float32)
  assert np.all(np.isfinite(metrics.p_mpjpe_per_frame(zeros, zeros)))


def _hard_3x3_matrices(rng):
  """Random, ill-conditioned, rank-deficient, repeated-value and mirrored."""
  random = rng.normal(size=(64, 3, 3))
  u, _, vt = np.linalg.svd(rng.normal(size=(5, 3, 3)))
  graded = [u @ np.diag(d) @ vt for d in ((1.0, 1e-2, 1e-4), (1.0, 1.0, 1e-3),
                                          (1.0, 1.0, 1.0), (1.0, 0.5, 0.0),
                                          (1.0, 0.0, 0.0))]
  special = [np.eye(3), np.diag([1.0, 1.0, -1.0]), np.diag([3.0, -2.0, 1.0]),
             _random_rotation(rng), -_random_rotation(rng),
             np.diag([1.0, 2.0, 3.0])[[2, 0, 1]]]
  return np.concatenate([random, np.concatenate(graded), np.stack(special)]
                        ).astype(np.float32)


def test_svd_3x3_proper_is_an_svd_with_rotations_only():
  rng = np.random.default_rng(7)
  h = _hard_3x3_matrices(rng)
  u, s, v = (np.asarray(x, np.float64) for x in metrics.svd_3x3_proper(h))
  reference = np.linalg.svd(h.astype(np.float64), compute_uv=False)
  # Magnitudes are the singular values, in decreasing order; the last one
  # carries the sign of det(h).
  np.testing.assert_allclose(np.abs(s), reference, atol=2e-6)
  # (Equal singular values may come in either order within rounding.)
  assert np.all(s[:, 0] >= s[:, 1] - 1e-6)
  assert np.all(s[:, 1] >= np.abs(s[:, 2]) - 1e-6)
  det_h = np.linalg.det(h.astype(np.float64))
  nonsingular = np.abs(det_h) > 1e-6
  np.testing.assert_array_equal(np.sign(s[nonsingular, 2]),
                                np.sign(det_h[nonsingular]))
  # Rotations, and they reconstruct h.
  eye = np.broadcast_to(np.eye(3), h.shape)
  for q in (u, v):
    np.testing.assert_allclose(np.swapaxes(q, -1, -2) @ q, eye, atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(q), 1.0, atol=1e-5)
  np.testing.assert_allclose(u * s[:, None, :] @ np.swapaxes(v, -1, -2), h,
                             atol=1e-5)


def test_svd_3x3_proper_gives_the_kabsch_rotation_of_lapack():
  """V U^T and sum(s) equal LAPACK's SVD plus MotionBERT's reflection fix."""
  rng = np.random.default_rng(8)
  h = _hard_3x3_matrices(rng)[:64]  # distinct singular values
  u, s, v = (np.asarray(x, np.float64) for x in metrics.svd_3x3_proper(h))
  rotation = v @ np.swapaxes(u, -1, -2)
  for i, matrix in enumerate(h.astype(np.float64)):
    lu, ls, lvt = np.linalg.svd(matrix)
    lv = lvt.T
    if np.linalg.det(lv @ lu.T) < 0:
      lv[:, -1] *= -1
      ls[-1] *= -1
    np.testing.assert_allclose(rotation[i], lv @ lu.T, atol=1e-4)
    np.testing.assert_allclose(s[i].sum(), ls.sum(), atol=1e-5)


def test_svd_3x3_proper_of_a_zero_matrix_is_finite():
  u, s, v = metrics.svd_3x3_proper(np.zeros((2, 3, 3), np.float32))
  for x in (u, s, v):
    assert np.all(np.isfinite(np.asarray(x)))
  np.testing.assert_array_equal(np.asarray(s), 0.0)


def test_evaluation_errors_compile_without_custom_calls():
  """No LAPACK kernel in the evaluation's metrics.

  XLA CPU runs batched LAPACK custom calls (the SVD of `jnp.linalg.svd`) on
  its intra-op thread pool; with several CPU devices each blocked in one,
  the pool deadlocked the evaluation (docs/scaling.md). The metrics must
  stay plain XLA operations.
  """
  shape = (4, 27, 17, 3)
  hlo = jax.jit(metrics.eval_errors).lower(
      jax.ShapeDtypeStruct(shape, jnp.float32),
      jax.ShapeDtypeStruct(shape, jnp.float32)).compile().as_text()
  assert ' custom-call(' not in hlo, re.findall(
      r'custom_call_target="[^"]+"', hlo)
  assert 'fusion' in hlo  # the text is the compiled HLO


def test_n_mpjpe_ignores_the_scale_of_the_prediction():
  rng = np.random.default_rng(3)
  target = rng.normal(size=(3, 4, 17, 3))
  pred = target + 0.2 * rng.normal(size=target.shape)
  base = np.asarray(metrics.n_mpjpe_per_frame(pred, target))
  np.testing.assert_allclose(
      metrics.n_mpjpe_per_frame(3.0 * pred, target), base, rtol=1e-5
  )
  # Reference: least-squares scale per frame.
  p, g = pred.reshape(-1, 17, 3), target.reshape(-1, 17, 3)
  s = (p * g).sum((1, 2)) / (p * p).sum((1, 2))
  expected = np.linalg.norm(s[:, None, None] * p - g, axis=-1).mean(-1)
  np.testing.assert_allclose(base.reshape(-1), expected, rtol=1e-5)


def test_velocity_and_acceleration_errors_match_loops():
  rng = np.random.default_rng(4)
  pred, target = rng.normal(size=(2, 3, 6, 17, 3))
  velocity = np.asarray(metrics.velocity_error_per_frame(pred, target))
  accel = np.asarray(metrics.acceleration_error_per_frame(pred, target))
  for b in range(3):
    assert velocity[b, 0] == 0.0 and accel[b, 0] == accel[b, -1] == 0.0
    for t in range(1, 6):
      d = (pred[b, t] - pred[b, t - 1]) - (target[b, t] - target[b, t - 1])
      np.testing.assert_allclose(
          velocity[b, t], np.linalg.norm(d, axis=-1).mean(), rtol=1e-5)
    for t in range(1, 5):
      a_p = pred[b, t - 1] - 2 * pred[b, t] + pred[b, t + 1]
      a_g = target[b, t - 1] - 2 * target[b, t] + target[b, t + 1]
      np.testing.assert_allclose(
          accel[b, t], np.linalg.norm(a_p - a_g, axis=-1).mean(), rtol=1e-5)


def test_pck_and_auc_on_hand_made_errors():
  errors = np.array([[0.0, 100.0, 149.9, 150.0, 200.0]])
  assert metrics.pck(errors) == pytest.approx(60.0)
  # Strictly below: an error of exactly 150 mm is a miss.
  assert metrics.pck(np.array([150.0])) == 0.0
  # Threshold 0 never counts, so a perfect prediction scores 30 / 31.
  assert metrics.auc(np.zeros((4, 14))) == pytest.approx(100.0 * 30 / 31)
  # 72.5 mm is below the 16 thresholds 75, 80, ..., 150.
  assert metrics.auc(np.array([72.5])) == pytest.approx(100.0 * 16 / 31)
  assert metrics.auc(np.array([151.0, 300.0])) == 0.0
  assert len(metrics.AUC_THRESHOLDS_MM) == 31


def _constant_errors(batch, frames, joints, value):
  """Errors dict as `eval_errors` returns, every entry = value per clip."""
  value = np.asarray(value, np.float64)[:, None]
  per_frame = np.broadcast_to(value, (batch, frames)).copy()
  return {
      'joint': np.repeat(per_frame[..., None], joints, axis=-1),
      'p_mpjpe': per_frame / 2,
      'n_mpjpe': per_frame / 4,
      'velocity': per_frame,
      'acceleration': per_frame,
  }


def test_accumulator_averages_overlaps_and_weighs_actions_equally():
  joints, frames = 17, 4
  acc = metrics.FrameAccumulator(
      num_test_frames=12, num_joints=joints, action_names=('Walk', 'Sit'))
  # Batch 1: clip A (frames 0-3, Walk, error 10), clip B (frames 2-5, Walk,
  # error 30; overlaps A on frames 2 and 3), and a padding row.
  frame_id = np.array([[0, 1, 2, 3], [2, 3, 4, 5], [0, 0, 0, 0]])
  valid = np.array([[True] * 4, [True] * 4, [False] * 4])
  acc.add(_constant_errors(3, frames, joints, [10.0, 30.0, 1e6]), frame_id,
          valid, np.array([0, 0, -1]))
  # Batch 2: clip C (frames 8-11, Sit, error 100), last frame invalid (e.g.
  # a blocklisted or padded frame).
  acc.add(_constant_errors(1, frames, joints, [100.0]),
          np.array([[8, 9, 10, 11]]), np.array([[True, True, True, False]]),
          np.array([1]))

  res = acc.results('action_mean')
  # Walk frames 0..5: 10, 10, 20, 20, 30, 30 -> 20; Sit: 100 over 3 frames.
  assert res['per_action']['Walk']['mpjpe_mm'] == pytest.approx(20.0)
  assert res['per_action']['Sit']['mpjpe_mm'] == pytest.approx(100.0)
  assert res['per_action']['Sit']['num_frames'] == 3
  assert res['mpjpe_mm'] == pytest.approx(60.0)
  assert res['p_mpjpe_mm'] == pytest.approx(30.0)
  assert res['n_mpjpe_mm'] == pytest.approx(15.0)
  assert res['mpjpe_mm_frame_mean'] == pytest.approx((120 + 300) / 9)
  assert res['num_frames'] == 9
  # Velocity: Walk frames 1..5 (A: 1, 2, 3 -> 10; B: 3, 4, 5 -> 30 with
  # frame 3 shared) = 10, 10, 20, 30, 30; Sit frames 9, 10.
  assert res['per_action']['Walk']['mpjve_mm'] == pytest.approx(20.0)
  assert res['per_action']['Sit']['mpjve_mm'] == pytest.approx(100.0)
  # Acceleration: Walk frames 1, 2 (A) and 3, 4 (B); Sit frame 9 only.
  assert res['per_action']['Walk']['accel_error_mm'] == pytest.approx(20.0)
  assert res['per_action']['Sit']['accel_error_mm'] == pytest.approx(100.0)

  pooled = acc.results('frame_mean')
  assert pooled['mpjpe_mm'] == pytest.approx((120 + 300) / 9)
  assert pooled['pck_150mm'] == pytest.approx(100.0)


def test_accumulator_pck_uses_the_14_joint_subset():
  acc = metrics.FrameAccumulator(num_test_frames=1, num_joints=17)
  errors = _constant_errors(1, 1, 17, [10.0])
  # Large errors on pelvis, spine and head (MPI joints 14, 15, 16) only.
  errors['joint'][..., 14:] = 500.0
  acc.add(errors, np.array([[0]]), np.array([[True]]), np.array([-1]))
  res = acc.results('frame_mean', skeleton='mpi')
  assert res['pck_150mm'] == pytest.approx(100.0)
  assert res['mpjpe_mm'] == pytest.approx((14 * 10 + 3 * 500) / 17)
  assert res['per_action'] == {}
  with pytest.raises(ValueError, match='action names'):
    acc.results('action_mean')


def test_pck_joint_subsets_are_the_same_14_joints():
  # data_and_metrics.md section 8: H36M order without pelvis, spine, neck.
  assert metrics.PCK_JOINTS['h36m'] == (10, 8, 14, 15, 16, 11, 12, 13, 1, 2,
                                        3, 4, 5, 6)
  assert metrics.PCK_JOINTS['mpi'] == tuple(range(14))


def test_accumulator_rejects_out_of_range_frames():
  acc = metrics.FrameAccumulator(num_test_frames=4, num_joints=17)
  with pytest.raises(ValueError, match='frame_id out of range'):
    acc.add(_constant_errors(1, 2, 17, [1.0]), np.array([[3, 4]]),
            np.array([[True, True]]), np.array([0]))
