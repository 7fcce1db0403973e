"""Tests of the procedural motion generator: determinism and plausibility."""

import functools

import numpy as np
import pytest

from l2a_jax.data import skeleton
from l2a_jax.data import synthetic

FRAMES = 400


@functools.lru_cache(maxsize=None)
def _sequence(action, seed=0, subject=0, sequence=0):
  body = synthetic.sample_subject(synthetic.subject_rng(seed, subject))
  poses = synthetic.generate_sequence(
      action, FRAMES, body, synthetic.sequence_rng(seed, subject, sequence))
  return body, poses


def _angle(a, b, c):
  """Angle at b (degrees) between b->a and b->c, per frame."""
  u, v = a - b, c - b
  cosine = np.sum(u * v, -1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(
      v, axis=-1)
  return np.degrees(np.arccos(np.clip(cosine, -1, 1)))


def test_deterministic_from_seed():
  _, first = _sequence('mixed', seed=3)
  body = synthetic.sample_subject(synthetic.subject_rng(3, 0))
  again = synthetic.generate_sequence(
      'mixed', FRAMES, body, synthetic.sequence_rng(3, 0, 0))
  np.testing.assert_array_equal(first, again)
  _, other = _sequence('mixed', seed=4)
  assert not np.allclose(first, other)


def test_subjects_differ_within_human_range():
  lengths = []
  for subject in range(8):
    body = synthetic.sample_subject(synthetic.subject_rng(0, subject))
    lengths.append([body.bones['thigh'], body.bones['upper_arm']])
    assert body.bones['hip'] == pytest.approx(body.bones['hip'])
  lengths = np.array(lengths)
  assert np.all((lengths[:, 0] > 360) & (lengths[:, 0] < 530))
  assert np.ptp(lengths[:, 0]) > 10  # per-subject variation


@pytest.mark.parametrize('action', synthetic.ACTIONS)
def test_bones_rigid_and_body_upright(action):
  body, poses = _sequence(action)
  assert poses.shape == (FRAMES, 17, 3)
  assert np.all(np.isfinite(poses))
  for parent, child in skeleton.H36M.bones:
    length = np.linalg.norm(poses[:, child] - poses[:, parent], axis=-1)
    np.testing.assert_allclose(length, length[0], rtol=1e-9)
  # Left and right limbs have equal lengths (a symmetric body).
  np.testing.assert_allclose(
      np.linalg.norm(poses[:, 3] - poses[:, 2], axis=-1),
      np.linalg.norm(poses[:, 6] - poses[:, 5], axis=-1), rtol=1e-9)
  # The head stays above the pelvis and the pelvis above the ankles.
  assert np.all(poses[:, 10, 1] > poses[:, 0, 1])
  assert np.all(poses[:, 0, 1] > np.minimum(poses[:, 3, 1], poses[:, 6, 1]))
  standing = poses[:, 10, 1].max()
  assert 1400 < standing < 2100
  del body


@pytest.mark.parametrize('action', synthetic.ACTIONS)
def test_joint_angles_within_anatomical_limits(action):
  _, poses = _sequence(action)
  for hip, knee, ankle in ((1, 2, 3), (4, 5, 6)):
    inner = _angle(poses[:, hip], poses[:, knee], poses[:, ankle])
    # 180 = straight leg; knee flexion = 180 - inner angle, at most 145.
    assert np.all(inner >= 180 - 146)
  for shoulder, elbow, wrist in ((11, 12, 13), (14, 15, 16)):
    inner = _angle(poses[:, shoulder], poses[:, elbow], poses[:, wrist])
    assert np.all(inner >= 180 - 146)
  # Knees bend backwards only: the bending axis thigh x shin points to the
  # body's left (the knee is never hyperextended).
  pelvis_left = poses[:, 4] - poses[:, 1]
  for hip, knee, ankle in ((1, 2, 3), (4, 5, 6)):
    thigh = poses[:, knee] - poses[:, hip]
    shin = poses[:, ankle] - poses[:, knee]
    flexion = 180 - _angle(poses[:, hip], poses[:, knee], poses[:, ankle])
    bend_axis = np.cross(thigh, shin)
    flexed = flexion > 5
    assert np.all(np.sum(bend_axis * pelvis_left, -1)[flexed] > 0)


@pytest.mark.parametrize('action', synthetic.ACTIONS)
def test_feet_on_the_ground_and_smooth(action):
  _, poses = _sequence(action)
  lowest = np.minimum(poses[:, 3, 1], poses[:, 6, 1])
  assert np.all(lowest >= synthetic.ANKLE_HEIGHT_MM - 1e-6)
  grounded = np.isclose(lowest, synthetic.ANKLE_HEIGHT_MM)
  assert grounded.mean() > (0.6 if action in ('jumping', 'mixed') else 0.99)
  # No joint moves faster than 8 m/s (11 m/s for the arm swing of a jump);
  # the root at most 4 m/s.
  speed = np.linalg.norm(np.diff(poses, axis=0), axis=-1) * synthetic.FPS
  assert speed.max() < (11000 if action in ('jumping', 'mixed') else 8000)
  assert speed[:, 0].max() < 4000
  # The root stays within a few metres (steering) and moves when walking.
  assert np.abs(poses[:, 0, [0, 2]]).max() < 4500


def test_walking_moves_at_human_speed_with_alternating_steps():
  _, poses = _sequence('walking', subject=1)
  root_speed = np.linalg.norm(np.diff(poses[:, 0, [0, 2]], axis=0),
                              axis=-1) * synthetic.FPS
  assert 500 < np.percentile(root_speed, 75) < 2200
  # During walking the two ankles take turns being the lower one.
  lower_right = poses[:, 3, 1] < poses[:, 6, 1]
  switches = np.count_nonzero(np.diff(lower_right.astype(int)))
  assert switches >= 6


def test_jumping_leaves_the_ground():
  _, poses = _sequence('jumping')
  lowest = np.minimum(poses[:, 3, 1], poses[:, 6, 1])
  assert lowest.max() > synthetic.ANKLE_HEIGHT_MM + 80


def test_crouching_lowers_the_pelvis():
  _, poses = _sequence('crouching')
  pelvis = poses[:, 0, 1]
  assert pelvis.min() < 0.8 * np.percentile(pelvis, 90)


def test_unknown_action():
  body = synthetic.sample_subject(np.random.default_rng(0))
  with pytest.raises(ValueError, match='unknown action'):
    synthetic.generate_sequence('swimming', 10, body,
                                np.random.default_rng(0))
