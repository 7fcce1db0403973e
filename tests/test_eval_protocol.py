"""Evaluation protocol, baselines, per-axis errors and the dropout key stream.

The protocol test compares `evaluate.run_evaluation` with an independent
NumPy implementation of MotionBERT's action-wise evaluation
(data_and_metrics.md section 6) on a model whose predicted root is not 0.
"""

import types

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from l2a_jax import baselines
from l2a_jax import evaluate
from l2a_jax import metrics
from l2a_jax import sharding
from l2a_jax import train
from l2a_jax.data import skeleton as skeleton_lib

T, J = 6, 17
WIDTH, HEIGHT = 1000, 1002


class AffineLifter(nnx.Module):
  """3D = a fixed nonlinear map of the 2D plus a per-joint offset.

  The offset of the root joint is far from 0, so subtracting the predicted
  root from every joint differs from zeroing it.
  """

  def __init__(self, seed: int):
    rng = np.random.default_rng(seed)
    self.offset = nnx.Param(jnp.asarray(rng.normal(0, 0.2, (J, 3)),
                                        jnp.float32).at[0].set(
                                            jnp.array([0.3, -0.25, 0.4])))
    self.mix = nnx.Param(jnp.asarray(rng.normal(0, 0.5, (2, 3)),
                                     jnp.float32))

  def __call__(self, x, dropout_rng=None):
    del dropout_rng
    return jnp.tanh(x[..., :2] @ self.mix[...]) + self.offset[...]


def _numpy_procrustes_error(pred, gt):
  """Per-frame P-MPJPE, written from the definition (section 7)."""
  errors = []
  for p, g in zip(pred, gt):
    mp, mg = p.mean(0), g.mean(0)
    p0, g0 = p - mp, g - mg
    np_, ng = np.linalg.norm(p0), np.linalg.norm(g0)
    p0, g0 = p0 / np_, g0 / ng
    u, s, vt = np.linalg.svd(g0.T @ p0)
    v = vt.T
    r = v @ u.T
    if np.linalg.det(r) < 0:
      v[:, -1] *= -1
      s[-1] *= -1
      r = v @ u.T
    a = s.sum() * ng / np_
    t = mg - a * mp @ r
    errors.append(np.linalg.norm(a * p @ r + t - g, axis=-1).mean())
  return np.array(errors)


def motionbert_protocol(pred_norm, gt_mm, factor, frame_ids, actions,
                        blocked, num_frames):
  """MotionBERT `evaluate` in NumPy: returns (P1, P2) action-wise means.

  Args:
    pred_norm: [clips, T, J, 3] raw model outputs (normalised units).
    gt_mm: [clips, T, J, 3] `joints_2.5d_image` (mm, not root-relative).
    factor: [clips, T] 2.5D factors.
    frame_ids: [clips, T] global frame index of every clip frame.
    actions: [clips] action name of each clip.
    blocked: [clips] bool, clip is one of the known-bad sequences.
    num_frames: test-split frame count.
  """
  e1_all = np.zeros(num_frames)
  e2_all = np.zeros(num_frames)
  oc = np.zeros(num_frames)
  action_of = np.empty(num_frames, object)
  pred_norm = pred_norm.copy()
  pred_norm[:, :, 0, :] = 0  # rootrel: set the predicted root to 0.
  for c in range(len(pred_norm)):
    if blocked[c]:
      continue
    pred = pred_norm[c].copy()
    pred[..., :2] = (pred[..., :2] + np.array([1, HEIGHT / WIDTH])) * WIDTH / 2
    pred[..., 2] = pred[..., 2] * WIDTH / 2
    pred = pred * factor[c][:, None, None]
    pred = pred - pred[:, 0:1]
    gt = gt_mm[c] - gt_mm[c][:, 0:1]
    e1 = np.linalg.norm(pred - gt, axis=-1).mean(-1)
    e2 = _numpy_procrustes_error(pred, gt)
    e1_all[frame_ids[c]] += e1
    e2_all[frame_ids[c]] += e2
    oc[frame_ids[c]] += 1
    action_of[frame_ids[c]] = actions[c]
  seen = oc > 0
  e1_all[seen] /= oc[seen]
  e2_all[seen] /= oc[seen]
  per_action1, per_action2 = {}, {}
  for f in np.flatnonzero(e1_all > 0):
    per_action1.setdefault(action_of[f], []).append(e1_all[f])
    per_action2.setdefault(action_of[f], []).append(e2_all[f])
  p1 = np.mean([np.mean(v) for v in per_action1.values()])
  p2 = np.mean([np.mean(v) for v in per_action2.values()])
  return p1, p2


def _mesh():
  return sharding.create_mesh(ml_collections.ConfigDict({'data': 1}))


def test_eval_zeroes_the_predicted_root_as_motionbert():
  rng = np.random.default_rng(0)
  skeleton = skeleton_lib.get('h36m')
  model = AffineLifter(1)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  mesh = _mesh()
  step = evaluate.make_eval_step(graphdef, skeleton, False, mesh)

  num_clips, num_test_frames = 4, 20
  inputs = rng.uniform(-0.6, 0.6, (num_clips, T, J, 3)).astype(np.float32)
  inputs[..., 2] = 1.0
  gt_mm = rng.normal(0, 300, (num_clips, T, J, 3)).astype(np.float32)
  factor = rng.uniform(3, 5, (num_clips, T)).astype(np.float32)
  # Clips 0 and 1 overlap on frames 3..5 (scatter-add and count); clip 3 is
  # blocked.
  frame_ids = np.stack([np.arange(0, 6), np.arange(3, 9), np.arange(9, 15),
                        np.arange(14, 20)])
  action_names = ('Walking', 'Eating')
  action_ids = np.array([0, 0, 1, 1], np.int32)
  blocked = np.array([False, False, False, True])
  # Overlapping frames carry the same ground truth in both clips.
  gt_mm[1, :3] = gt_mm[0, 3:]
  factor[1, :3] = factor[0, 3:]
  batch = {
      'inputs': inputs,
      'targets_mm': gt_mm - gt_mm[:, :, :1],
      'scale_to_mm': factor * WIDTH / 2,
      'zero_depth_scale': np.ones((num_clips, T, 2), np.float32),
      'valid': np.repeat(~blocked[:, None], T, 1),
      'mask': np.ones(num_clips, bool),
      'frame_id': frame_ids,
      'action_id': action_ids,
  }
  info = types.SimpleNamespace(num_test_frames=num_test_frames,
                               action_names=action_names, skeleton='h36m',
                               num_eval_batches=1)
  fitted = baselines.fit(inputs.reshape(-1, J, 3),
                         rng.normal(0, 0.3, (num_clips * T, J, 3)))
  results, _ = evaluate.run_evaluation(
      step, params, rest, [batch], mesh, info, protocol='action_mean',
      baseline_params=fitted)

  raw = np.asarray(model(jnp.asarray(inputs)))
  # The root is really not zero.
  assert np.linalg.norm(raw[:, :, 0], axis=-1).min() > 0.05
  p1, p2 = motionbert_protocol(raw, gt_mm, factor, frame_ids,
                               [action_names[a] for a in action_ids],
                               blocked, num_test_frames)
  np.testing.assert_allclose(results['mpjpe_mm'], p1, rtol=1e-5)
  np.testing.assert_allclose(results['p_mpjpe_mm'], p2, rtol=1e-4)
  # The old behaviour (subtracting the predicted root from every joint)
  # gives another number, so the comparison above can tell them apart.
  old_p1, _ = motionbert_protocol(
      raw - raw[:, :, :1], gt_mm, factor, frame_ids,
      [action_names[a] for a in action_ids], blocked, num_test_frames)
  assert abs(old_p1 - p1) > 1.0
  assert set(results['baselines']) == {'linear', 'mean_pose', 'zero_depth'}


def test_linear_baseline_recovers_a_linear_map_and_axis_errors():
  rng = np.random.default_rng(1)
  inputs = rng.uniform(-1, 1, (400, J, 3)).astype(np.float32)
  inputs[..., 2] = rng.uniform(0.5, 1, (400, J))
  features = baselines.linear_features(inputs.astype(np.float64))
  true_map = rng.normal(0, 0.3, (features.shape[-1], J * 3))
  targets = (features @ true_map).reshape(-1, J, 3)
  targets -= targets[:, :1]
  fitted = baselines.fit(inputs, targets)
  guess = baselines.predict(fitted, jnp.asarray(inputs[None]),
                            jnp.ones((1, 400, 2)))
  np.testing.assert_allclose(np.asarray(guess['linear'][0]), targets,
                             atol=2e-3)
  np.testing.assert_allclose(np.asarray(guess['mean_pose'][0, 0]),
                             targets.mean(0), atol=1e-5)
  # Zero-depth back-projection: scaled root-relative 2D, depth 0.
  scale = rng.uniform(2, 4, (1, 400, 2)).astype(np.float32)
  zero = np.asarray(baselines.predict(fitted, jnp.asarray(inputs[None]),
                                      jnp.asarray(scale))['zero_depth'][0])
  expected = (inputs[..., :2] - inputs[:, :1, :2]) * scale[0][:, None]
  np.testing.assert_allclose(zero[..., :2], expected, rtol=1e-6, atol=1e-6)
  assert np.all(zero[..., 2] == 0)

  # Per-axis errors: mean over joints of |difference| along x, y, depth.
  pred = rng.normal(0, 50, (2, T, J, 3)).astype(np.float32)
  gt = rng.normal(0, 50, (2, T, J, 3)).astype(np.float32)
  errors = {k: np.asarray(v) for k, v in metrics.eval_errors(
      jnp.asarray(pred), jnp.asarray(gt)).items()}
  accumulator = metrics.FrameAccumulator(2 * T, J)
  accumulator.add(errors, np.arange(2 * T).reshape(2, T),
                  np.ones((2, T), bool), np.zeros(2, np.int32))
  results = accumulator.results('frame_mean')
  axis = np.abs(pred - gt).mean(axis=(0, 1, 2))
  for index, name in enumerate(('error_x_mm', 'error_y_mm',
                                'error_depth_mm')):
    np.testing.assert_allclose(results[name], axis[index], rtol=1e-5)


def test_baselines_json_round_trip_and_bad_record():
  fitted = baselines.fit(np.zeros((5, J, 3)) + 0.1, np.ones((5, J, 3)))
  params, label = baselines.from_json(baselines.to_json(fitted, 'synthetic'))
  assert label == 'synthetic'
  np.testing.assert_array_equal(params['mean_pose'], fitted['mean_pose'])
  try:
    baselines.from_json({'fitted_on': 'x'})
  except ValueError as error:
    assert 'linear_weights' in str(error)
  else:
    raise AssertionError('a record without weights was accepted')


def test_dropout_keys_do_not_repeat_parameter_init_keys():
  seed = 0
  init_keys = {tuple(np.asarray(jax.random.key_data(
      jax.random.fold_in(jax.random.key(seed), n))).tolist())
               for n in range(5000)}
  root = train.dropout_key(seed)
  for step in range(200):
    key = tuple(np.asarray(jax.random.key_data(
        jax.random.fold_in(root, step))).tolist())
    assert key not in init_keys, step
  # The keys the model actually drew at init are among `init_keys`.
  rngs = nnx.Rngs(seed)
  drawn = tuple(np.asarray(jax.random.key_data(rngs.params())).tolist())
  assert drawn in init_keys
