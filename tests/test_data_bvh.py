"""Tests of the BVH reader, forward kinematics, H36M mapping and CLI."""

import json
import pathlib

import numpy as np
import pytest

from l2a_jax.data import bvh
from l2a_jax.data import cameras
from l2a_jax.data import skeleton

# Trimmed copies of the two CMU clips, in the repository (testdata/cmu/SOURCE.txt).
REAL_DATA = pathlib.Path(__file__).resolve().parent / 'testdata' / 'cmu'
# Bones whose two ends are rigidly linked in both CMU skeletons.
RIGID_BONES = ((0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (11, 12),
               (12, 13), (14, 15), (15, 16))

# A small MotionBuilder-named skeleton: (name, offset, children); None
# children = end site offset. Units are arbitrary; CMU scale applies.
_MB_TREE = ('Hips', (0, 0, 0), [
    ('LeftUpLeg', (2, -1, 0), [
        ('LeftLeg', (0, -7, 0), [('LeftFoot', (0, -7, 0), (0, -1, 2))])]),
    ('RightUpLeg', (-2, -1, 0), [
        ('RightLeg', (0, -7, 0), [('RightFoot', (0, -7, 0), (0, -1, 2))])]),
    ('Spine', (0, 3, 0), [
        ('Neck1', (0, 4, 0), [
            ('Head', (0, 2, 0.5), (0, 2, -0.5)),
            ('LeftArm', (3, 0, 0), [
                ('LeftForeArm', (0, -5, 0), [
                    ('LeftHand', (0, -4, 0), (0, -1, 0))])]),
            ('RightArm', (-3, 0, 0), [
                ('RightForeArm', (0, -5, 0), [
                    ('RightHand', (0, -4, 0), (0, -1, 0))])]),
        ])]),
])


def _hierarchy_lines(node, depth, channel_order):
  name, offset, children = node
  pad = '\t' * depth
  keyword = 'ROOT' if depth == 0 else 'JOINT'
  lines = [f'{pad}{keyword} {name}', f'{pad}{{',
           f'{pad}\tOFFSET {offset[0]} {offset[1]} {offset[2]}']
  if depth == 0:
    lines.append(f'{pad}\tCHANNELS 6 Xposition Yposition Zposition '
                 f'{channel_order}')
  else:
    lines.append(f'{pad}\tCHANNELS 3 {channel_order}')
  if isinstance(children, list):
    for child in children:
      lines += _hierarchy_lines(child, depth + 1, channel_order)
  else:
    lines += [f'{pad}\tEnd Site', f'{pad}\t{{',
              f'{pad}\t\tOFFSET {children[0]} {children[1]} {children[2]}',
              f'{pad}\t}}']
  lines.append(f'{pad}}}')
  return lines


def _count_joints(node):
  _, _, children = node
  if not isinstance(children, list):
    return 1
  return 1 + sum(_count_joints(c) for c in children)


def make_bvh(frames, tree=_MB_TREE,
             channel_order='Zrotation Yrotation Xrotation',
             frame_time=1 / 120, newline='\n'):
  """BVH text; `frames` is [F, 3 + 3 * joints] channel values."""
  lines = ['HIERARCHY'] + _hierarchy_lines(tree, 0, channel_order)
  lines += ['MOTION', f'Frames: {len(frames)}', f'Frame Time: {frame_time}']
  lines += [' '.join(f'{v:.6f}' for v in row) for row in frames]
  return newline.join(lines) + newline


def _rest_positions(tree=_MB_TREE, origin=(0, 0, 0)):
  """{node: position} with all rotations zero."""
  out = {}

  def walk(node, base):
    name, offset, children = node
    position = np.add(base, offset)
    out[name] = position
    if isinstance(children, list):
      for child in children:
        walk(child, position)
    else:
      out[f'{name}.end'] = position + children

  walk(tree, origin)
  return out


NUM_CHANNELS = 3 + 3 * _count_joints(_MB_TREE)


def test_fk_of_rest_pose_is_cumulative_offsets():
  joints = _count_joints(_MB_TREE)
  frame = np.zeros(3 + 3 * joints)
  frame[:3] = (10, 20, 30)
  clip = bvh.parse_bvh(make_bvh([frame]))
  positions = bvh.forward_kinematics(clip)
  expected = _rest_positions(origin=(10, 20, 30))
  assert set(clip.names) == set(expected)
  for i, name in enumerate(clip.names):
    np.testing.assert_allclose(positions[0, i], expected[name], atol=1e-9)


def test_fk_rotation_order_follows_channels():
  # One root with a child: root channels Z then X, 90 degrees each.
  text = '\n'.join([
      'HIERARCHY', 'ROOT A', '{', 'OFFSET 0 0 0',
      'CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation '
      'Yrotation', 'JOINT B', '{', 'OFFSET 0 10 0',
      'CHANNELS 3 Zrotation Xrotation Yrotation', 'End Site', '{',
      'OFFSET 0 0 5', '}', '}', '}', 'MOTION', 'Frames: 1',
      'Frame Time: 0.02', '1 2 3 90 90 0 0 0 0'])
  positions = bvh.forward_kinematics(bvh.parse_bvh(text))
  rz = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
  rx = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0.0]])
  rotation = rz @ rx  # applied in CHANNELS order: R = Rz Rx
  np.testing.assert_allclose(positions[0, 1],
                             np.array([1, 2, 3]) + rotation @ [0, 10, 0],
                             atol=1e-9)
  np.testing.assert_allclose(positions[0, 2],
                             positions[0, 1] + rotation @ [0, 0, 5],
                             atol=1e-9)
  # The other order gives another answer: the order is read, not assumed.
  swapped = text.replace('Zrotation Xrotation Yrotation\nJ',
                         'Xrotation Zrotation Yrotation\nJ')
  other = bvh.forward_kinematics(bvh.parse_bvh(swapped))
  assert not np.allclose(other[0, 2], positions[0, 2])


def test_h36m_joints_from_known_positions_and_units():
  joints = _count_joints(_MB_TREE)
  frames = np.zeros((2, 3 + 3 * joints))
  frames[:, :3] = (1, 17, -3)
  frames[1, 4] = 90  # Yrotation of the root in frame 1 (ZYX order)
  clip = bvh.parse_bvh(make_bvh(frames))
  mapping = bvh.detect_mapping(clip)
  assert mapping.name == 'cmu_motionbuilder'
  poses = bvh.to_h36m(clip, mapping)
  rest = _rest_positions(origin=(1, 17, -3))
  expected = {
      'pelvis': rest['Hips'], 'r_hip': rest['RightUpLeg'],
      'r_knee': rest['RightLeg'], 'r_ankle': rest['RightFoot'],
      'l_hip': rest['LeftUpLeg'], 'l_ankle': rest['LeftFoot'],
      'spine': (rest['Hips'] + rest['Neck1']) / 2, 'thorax': rest['Neck1'],
      'neck': rest['Head'], 'head': rest['Head.end'],
      'l_wrist': rest['LeftHand'], 'r_elbow': rest['RightForeArm'],
  }
  for name, position in expected.items():
    np.testing.assert_allclose(
        poses[0, skeleton.H36M.index(name)], position * bvh.CMU_UNITS_TO_MM,
        atol=1e-6, err_msg=name)
  # Frame 1: the body turned 90 degrees about +Y around the root, so the
  # left hip (+X at rest) is now at -Z.
  hip = poses[1, 4] - poses[1, 0]
  np.testing.assert_allclose(hip / bvh.CMU_UNITS_TO_MM, [0, -1, -2],
                             atol=1e-9)


def test_crlf_and_lf_parse_the_same():
  frames = np.random.default_rng(0).uniform(-30, 30, (3, NUM_CHANNELS))
  lf = bvh.forward_kinematics(bvh.parse_bvh(make_bvh(frames)))
  crlf = bvh.forward_kinematics(
      bvh.parse_bvh(make_bvh(frames, newline='\r\n')))
  np.testing.assert_array_equal(lf, crlf)


def test_calibration_frame_is_dropped():
  joints = _count_joints(_MB_TREE)
  frames = np.random.default_rng(0).uniform(-20, 20, (4, 3 + 3 * joints))
  frames[0, 3:] = 0
  clip = bvh.parse_bvh(make_bvh(frames))
  poses = bvh.to_h36m(clip, bvh.detect_mapping(clip))
  assert poses.shape == (3, 17, 3)
  kept = bvh.to_h36m(bvh.parse_bvh(make_bvh(frames[1:])),
                     bvh.detect_mapping(clip))
  np.testing.assert_allclose(poses, kept)


def test_resample_to_50_fps_is_linear_in_time():
  # Positions moving linearly in time are reproduced exactly.
  times = np.arange(25) / 120
  poses = np.zeros((25, 17, 3))
  poses[..., 0] = 1000 * times[:, None]
  out = bvh.resample(poses, 120, 50)
  assert out.shape[0] == int(np.floor(24 / 120 * 50)) + 1
  np.testing.assert_allclose(out[:, 0, 0], 1000 * np.arange(len(out)) / 50,
                             atol=1e-9)


@pytest.mark.parametrize('lines,message', [
    (lambda t: t.replace('0.000000 0.000000\n', '0.000000\n', 1),
     r'line \d+: expected 51 channel values, got 50'),
    (lambda t: t.replace('CHANNELS 3 Zrotation', 'CHANNELS 3 Wrotation', 1),
     r'clip.bvh line 9: joint LeftUpLeg: unknown channel'),
    (lambda t: t.replace('MOTION', 'MOVE'), 'no MOTION section'),
    (lambda t: t.replace('Frames: 2', 'Frames: 3'),
     r'line \d+: file ends after 2 of 3 frames'),
    (lambda t: t.replace('OFFSET 0 -7 0', 'OFFSET 0 -7', 1),
     r'line \d+: OFFSET of LeftLeg: expected a number, got'),
    (lambda t: t.replace('0.000000 ', 'nan ', 1), 'NaN'),
])
def test_unreadable_bvh_errors_name_the_line(lines, message):
  text = lines(make_bvh(np.zeros((2, NUM_CHANNELS))))
  with pytest.raises(bvh.BvhError, match=message):
    bvh.parse_bvh(text, 'clip.bvh')


def test_unknown_naming_needs_a_mapping(tmp_path):
  tree = ('Root', (0, 0, 0), [('Leg', (0, -5, 0), (0, -5, 0))])
  clip = bvh.parse_bvh(make_bvh(np.zeros((1, 9)), tree=tree))
  with pytest.raises(bvh.BvhError, match='--mapping'):
    bvh.detect_mapping(clip, 'x.bvh')
  mapping_file = tmp_path / 'map.json'
  mapping_file.write_text(json.dumps({'joints': {'pelvis': 'Root'},
                                      'units_to_mm': 10}))
  with pytest.raises(ValueError, match='lacks'):
    bvh.load_mapping(mapping_file)


def test_mapping_file_for_another_skeleton(tmp_path):
  # The MB test skeleton renamed, read through a JSON mapping (5 cm units).
  renames = {'Hips': 'root', 'LeftUpLeg': 'thigh_l', 'LeftLeg': 'shin_l',
             'LeftFoot': 'foot_l', 'RightUpLeg': 'thigh_r',
             'RightLeg': 'shin_r', 'RightFoot': 'foot_r', 'Neck1': 'chest',
             'Head': 'head', 'LeftArm': 'arm_l', 'LeftForeArm': 'forearm_l',
             'LeftHand': 'hand_l', 'RightArm': 'arm_r',
             'RightForeArm': 'forearm_r', 'RightHand': 'hand_r'}
  text = make_bvh(np.zeros((1, NUM_CHANNELS)))
  for old, new in sorted(renames.items(), key=lambda kv: -len(kv[0])):
    text = text.replace(f'JOINT {old}\n', f'JOINT {new}\n').replace(
        f'ROOT {old}\n', f'ROOT {new}\n')
  mapping = {
      'pelvis': 'root', 'r_hip': 'thigh_r', 'r_knee': 'shin_r',
      'r_ankle': 'foot_r', 'l_hip': 'thigh_l', 'l_knee': 'shin_l',
      'l_ankle': 'foot_l', 'spine': ['root', 'chest'], 'thorax': 'chest',
      'neck': 'head', 'head': 'head.end', 'l_shoulder': 'arm_l',
      'l_elbow': 'forearm_l', 'l_wrist': 'hand_l', 'r_shoulder': 'arm_r',
      'r_elbow': 'forearm_r', 'r_wrist': 'hand_r'}
  path = tmp_path / 'map.json'
  path.write_text(json.dumps({'joints': mapping, 'units_to_mm': 50.0}))
  clip = bvh.parse_bvh(text)
  poses = bvh.to_h36m(clip, bvh.load_mapping(path))
  rest = _rest_positions()
  np.testing.assert_allclose(poses[0, 10], rest['Head.end'] * 50)
  np.testing.assert_allclose(poses[0, 7], rest['Neck1'] * 25)


def test_implausible_units_are_rejected():
  clip = bvh.parse_bvh(make_bvh(np.zeros((1, NUM_CHANNELS))))
  mapping = bvh.BUILTIN_MAPPINGS['cmu_motionbuilder']
  tiny = bvh.H36mMapping(name='mm', joints=mapping.joints, units_to_mm=1.0)
  with pytest.raises(bvh.BvhError, match='implausible body size'):
    bvh.to_h36m(clip, tiny)


@pytest.mark.parametrize('name,naming,native_frames,fps50_frames', [
    # 361 frames at 120 fps, the first a T-pose; 360 frames at 120 fps.
    ('01_01', 'cmu_motionbuilder', 360, 150),
    ('131_01', 'cmu_3dsmax', 360, 150),
])
def test_real_cmu_clips(name, naming, native_frames, fps50_frames):
  path = REAL_DATA / f'{name}.bvh'
  clip = bvh.read_bvh(path)
  mapping = bvh.detect_mapping(clip)
  assert mapping.name == naming
  poses = bvh.to_h36m(clip, mapping)
  assert poses.shape == (native_frames, 17, 3)  # 01_01 drops its T-pose
  bones = np.stack([np.linalg.norm(poses[:, c] - poses[:, p], axis=-1)
                    for p, c in RIGID_BONES], 1)
  np.testing.assert_allclose(bones, np.broadcast_to(bones[0], bones.shape),
                             rtol=1e-9)
  # Thigh and shin about 0.4 m; head top 1.3-1.6 m above the lower ankle.
  assert np.all((bones[0, [1, 2, 4, 5]] > 370) & (bones[0, [1, 2, 4, 5]]
                                                   < 450))
  height = poses[:, 10, 1] - np.minimum(poses[:, 3, 1], poses[:, 6, 1])
  assert 1300 < np.percentile(height, 95) < 1600
  resampled, up_axis = bvh.load_h36m_motion(path)
  assert up_axis == 1
  assert resampled.shape == (fps50_frames, 17, 3)
  bones50 = np.stack([np.linalg.norm(resampled[:, c] - resampled[:, p],
                                     axis=-1) for p, c in RIGID_BONES], 1)
  np.testing.assert_allclose(bones50, np.broadcast_to(bones[0], bones50.shape),
                             rtol=5e-3)


def test_cli_writes_views(tmp_path):
  joints = _count_joints(_MB_TREE)
  frames = np.random.default_rng(0).uniform(-10, 10, (60, 3 + 3 * joints))
  frames[:, :3] = [0, 17, 0]
  source = tmp_path / 'clip.bvh'
  source.write_text(make_bvh(frames))
  output = tmp_path / 'out' / 'clip.npz'
  assert bvh.main(['--input', str(source), '--output', str(output),
                   '--num_cameras', '3', '--seed', '1']) == 0
  data = np.load(output)
  num = int(np.floor(59 / 120 * 50)) + 1
  assert data['keypoints_2d'].shape == (3, num, 17, 3)
  assert data['poses_3d'].shape == (3, num, 17, 3)
  assert data['image_size'].shape == (3, 2)
  assert data['intrinsics'].shape == (3, 3, 3)
  assert float(data['fps']) == 50.0
  for k in range(3):
    camera = cameras.Camera(
        name='', intrinsics=np.array([
            data['intrinsics'][k, 0, 0], data['intrinsics'][k, 1, 1],
            data['intrinsics'][k, 0, 2], data['intrinsics'][k, 1, 2],
            0, 0, 0, 0, 0]), width=int(data['image_size'][k, 0]),
        height=int(data['image_size'][k, 1]), rotation=np.eye(3),
        position=np.zeros(3))
    np.testing.assert_allclose(
        cameras.project(data['poses_3d'][k], camera),
        data['keypoints_2d'][k, ..., :2], atol=0.05)
    # World -> camera with the stored extrinsics reproduces poses_3d.
    world_camera = cameras.Camera(
        name='', intrinsics=camera.intrinsics, width=1, height=1,
        rotation=data['rotation'][k].astype(np.float64),
        position=data['position'][k].astype(np.float64))
    np.testing.assert_allclose(
        cameras.world_to_camera(data['poses_world'], world_camera),
        data['poses_3d'][k], atol=0.5)
  assert list(tmp_path.glob('out/.*')) == []


def test_cli_bad_input_one_line_error(tmp_path, capsys):
  source = tmp_path / 'bad.bvh'
  source.write_text(make_bvh(np.zeros((3, NUM_CHANNELS))).replace(
      '0.000000 0.000000\n', '0.000000\n', 2))
  output = tmp_path / 'bad.npz'
  assert bvh.main(['--input', str(source), '--output', str(output)]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert err.startswith('error: ') and 'bad.bvh line' in err
  assert 'expected 51 channel values, got 50' in err
  assert not output.exists()
  assert bvh.main(['--input', str(tmp_path / 'missing.bvh'), '--output',
                   str(output)]) == 1
  assert 'cannot read' in capsys.readouterr().err
