"""Tests of skeleton tables, pose transforms and cameras (NumPy only)."""

import numpy as np
import pytest

from l2a_jax.data import cameras
from l2a_jax.data import skeleton
from l2a_jax.data import transforms


@pytest.mark.parametrize('name', ['h36m', 'mpi'])
def test_flip_is_an_involution(name):
  skel = skeleton.get(name)
  rng = np.random.default_rng(0)
  poses = rng.normal(size=(2, 5, 17, 3)).astype(np.float32)
  once = transforms.flip(poses, skel)
  assert not np.allclose(once, poses)
  np.testing.assert_array_equal(transforms.flip(once, skel), poses)


def test_flip_negates_x_and_swaps_sides():
  poses = np.arange(17 * 3, dtype=np.float32).reshape(17, 3)
  flipped = transforms.flip(poses, skeleton.H36M)
  # Left knee (5) takes the right knee's (2) values with x negated.
  np.testing.assert_array_equal(flipped[5], [-poses[2, 0], *poses[2, 1:]])
  np.testing.assert_array_equal(flipped[13], [-poses[16, 0], *poses[16, 1:]])
  # Centre joints keep their place.
  np.testing.assert_array_equal(flipped[9], [-poses[9, 0], *poses[9, 1:]])
  # The confidence channel is only permuted.
  inputs = np.concatenate([poses[..., :2], np.linspace(0, 1, 17)[:, None]],
                          -1)
  np.testing.assert_array_equal(
      transforms.flip(inputs, skeleton.H36M)[:, 2],
      inputs[skeleton.H36M.flip_permutation, 2])


@pytest.mark.parametrize('name', ['h36m', 'mpi'])
def test_flip_lists_pair_left_and_right_names(name):
  skel = skeleton.get(name)
  for left, right in zip(skel.left, skel.right):
    assert skel.joint_names[left].replace('l_', '') == (
        skel.joint_names[right].replace('r_', ''))
    assert skel.joint_names[left].startswith('l_')
  perm = skel.flip_permutation
  np.testing.assert_array_equal(perm[perm], np.arange(17))


def test_h36m_mpi_maps_are_inverse_and_match_names():
  to_mpi = np.array(skeleton.H36M_TO_MPI)
  to_h36m = np.array(skeleton.MPI_TO_H36M)
  np.testing.assert_array_equal(to_h36m[to_mpi], np.arange(17))
  for h36m_joint, mpi_joint in enumerate(to_mpi):
    name = skeleton.H36M.joint_names[h36m_joint]
    if name.startswith(('l_', 'r_')) or name == 'pelvis':
      assert skeleton.MPI.joint_names[mpi_joint] == name
  assert skeleton.MPI.root == skeleton.H36M_TO_MPI[skeleton.H36M.root] == 14
  # The 14 PCK joints in H36M order (data_and_metrics.md section 8).
  assert [skeleton.MPI_TO_H36M[m] for m in skeleton.MPI_PCK_JOINTS] == [
      10, 8, 14, 15, 16, 11, 12, 13, 1, 2, 3, 4, 5, 6]


def test_body_parts_cover_each_skeleton_once_and_correspond():
  for name, parts in skeleton.BODY_PARTS.items():
    joints = sorted(j for part in parts.values() for j in part)
    assert joints == list(range(17)), name
  for part, h36m_joints in skeleton.H36M_BODY_PARTS.items():
    mapped = sorted(skeleton.H36M_TO_MPI[j] for j in h36m_joints)
    assert mapped == sorted(skeleton.MPI_BODY_PARTS[part])


@pytest.mark.parametrize('name', ['h36m', 'mpi'])
def test_parents_form_a_tree_rooted_at_root(name):
  skel = skeleton.get(name)
  assert skel.parents[skel.root] == -1
  for joint in range(17):
    seen, node = set(), joint
    while node != skel.root:
      assert node not in seen
      seen.add(node)
      node = skel.parents[node]
  assert len(skel.bones) == 16


def test_canonical_actions():
  assert skeleton.canonical_h36m_action('Directions 1') == 'Directions'
  assert skeleton.canonical_h36m_action('TakingPhoto') == 'Photo'
  assert skeleton.canonical_h36m_action('WalkingDog 2') == 'WalkDog'
  assert skeleton.canonical_h36m_action('sittingdown') == 'SittingDown'
  with pytest.raises(ValueError, match='unknown Human3.6M action'):
    skeleton.canonical_h36m_action('Dancing')


def test_screen_normalisation_known_values_and_inverse():
  points = np.array([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0]])
  norm = transforms.normalize_screen(points, 1000, 1002)
  np.testing.assert_allclose(norm, [[-1, -1.002], [1, 1.002], [0, 0]],
                             atol=1e-6)
  back = transforms.denormalize_screen(norm, 1000, 1002)
  np.testing.assert_allclose(back, points, atol=1e-3)
  # Depth is only scaled.
  depth = transforms.normalize_screen(np.array([[10.0, 20.0, 250.0]]), 1000,
                                      1000)
  assert depth[0, 2] == pytest.approx(0.5)


def test_root_relative():
  poses = np.random.default_rng(1).normal(size=(4, 17, 3))
  rel = transforms.root_relative(poses, 14)
  np.testing.assert_allclose(rel[:, 14], 0)
  np.testing.assert_allclose(rel[:, 3] - rel[:, 5], poses[:, 3] - poses[:, 5])


def test_resample_indices():
  np.testing.assert_array_equal(transforms.resample_indices(9, 9),
                                np.arange(9))
  np.testing.assert_array_equal(transforms.resample_indices(3, 9),
                                [0, 0, 0, 1, 1, 1, 2, 2, 2])
  np.testing.assert_array_equal(
      transforms.resample_indices(5, 10), np.floor(
          np.linspace(0, 5, 10, endpoint=False)).astype(int))
  with pytest.raises(ValueError):
    transforms.resample_indices(0, 4)


def test_h36m_cameras_look_at_the_capture_area():
  for subject in ('S1', 'S9', 'S11'):
    for index in range(4):
      camera = cameras.h36m_camera(subject, index)
      np.testing.assert_allclose(camera.rotation @ camera.rotation.T,
                                 np.eye(3), atol=1e-6)
      assert np.linalg.det(camera.rotation) == pytest.approx(1.0, abs=1e-6)
      # A subject near the world origin (Z up) is in front of the camera
      # and projects inside the image.
      pelvis = np.array([0.0, 0.0, 900.0])
      point = cameras.world_to_camera(pelvis, camera)
      assert 3000 < point[2] < 7000
      pixel = cameras.project(point, camera, distort=True)
      assert 0 < pixel[0] < camera.width and 0 < pixel[1] < camera.height
      # World up points up in the image (v decreases).
      head = cameras.world_to_camera(pelvis + [0, 0, 800], camera)
      assert cameras.project(head, camera)[1] < pixel[1]


def test_pinhole_projection_and_look_at():
  camera = cameras.Camera(
      name='c', intrinsics=np.array([1000, 900, 500, 400, 0, 0, 0, 0, 0.0]),
      width=1000, height=800,
      rotation=cameras.look_at([0, 1000, -5000], [0, 1000, 0]),
      position=np.array([0, 1000, -5000.0]))
  assert np.linalg.det(camera.rotation) == pytest.approx(1.0)
  # The target projects to the principal point; +Y world is up in the image;
  # looking along +Z with Y up, world -X is image right.
  target = cameras.world_to_camera([0, 1000, 0], camera)
  np.testing.assert_allclose(target, [0, 0, 5000], atol=1e-9)
  np.testing.assert_allclose(cameras.project(target, camera), [500, 400])
  up = cameras.project(cameras.world_to_camera([0, 1500, 0], camera), camera)
  np.testing.assert_allclose(up, [500, 400 - 900 * 500 / 5000])
  right = cameras.project(cameras.world_to_camera([-500, 1000, 0], camera),
                          camera)
  np.testing.assert_allclose(right, [500 + 1000 * 500 / 5000, 400])


def test_distortion_is_identity_without_coefficients():
  camera = cameras.Camera(
      name='c', intrinsics=np.array([1145, 1144, 512, 515, 0, 0, 0, 0, 0.0]),
      width=1000, height=1002, rotation=np.eye(3), position=np.zeros(3))
  points = np.random.default_rng(0).uniform([-500, -500, 3000],
                                            [500, 500, 6000], (20, 3))
  np.testing.assert_allclose(cameras.project(points, camera, distort=True),
                             cameras.project(points, camera))


def test_virtual_cameras_see_every_joint():
  rng = np.random.default_rng(3)
  # A person-sized point cloud walking 3 m along X (Y up).
  frames = np.linspace(0, 3000, 50)
  poses = np.zeros((50, 17, 3))
  poses[:, :, 0] = frames[:, None]
  poses[:, :, 1] = np.linspace(80, 1700, 17)[None]
  views = cameras.render_views(poses, 4, rng)
  assert len(views) == 4
  for view in views:
    assert view.keypoints_2d.shape == (50, 17, 3)
    assert np.all(view.poses_camera[..., 2] > 0)
    u, v = view.keypoints_2d[..., 0], view.keypoints_2d[..., 1]
    assert np.all((u > 0) & (u < view.camera.width))
    assert np.all((v > 0) & (v < view.camera.height))
    np.testing.assert_array_equal(view.keypoints_2d[..., 2], 1.0)
    # Camera space is a rigid transform of the world.
    np.testing.assert_allclose(
        np.linalg.norm(view.poses_camera[:, 16] - view.poses_camera[:, 0],
                       axis=-1),
        np.linalg.norm(poses[:, 16] - poses[:, 0], axis=-1), rtol=1e-5)
  positions = np.array([v.camera.position for v in views])
  # Spread around the clip: no two cameras at the same spot.
  distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
  assert np.all(distances[~np.eye(4, dtype=bool)] > 1000)


def test_detector_noise_confidence_follows_error():
  rng = np.random.default_rng(0)
  exact = rng.uniform(0, 1000, (2000, 17, 2))
  noisy = cameras.detector_noise(exact, rng, sigma_px=3.0, outlier_prob=0.05)
  error = np.linalg.norm(noisy[..., :2] - exact, axis=-1)
  confidence = noisy[..., 2]
  assert 2.0 < np.median(error) < 6.0
  assert np.all((confidence >= 0.05) & (confidence <= 1.0))
  assert np.corrcoef(error.ravel(), confidence.ravel())[0, 1] < -0.5
  assert confidence[error > 30].mean() < 0.2 < confidence[error < 3].mean()
  clean = cameras.detector_noise(exact, rng, sigma_px=0.0)
  np.testing.assert_allclose(clean[..., :2], exact, atol=1e-3)
  np.testing.assert_array_equal(clean[..., 2], 1.0)
