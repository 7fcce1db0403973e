"""Tests of the BVH reader, forward kinematics, H36M mapping and CLI."""

import json
import pathlib
import warnings

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest

from l2a_jax.data import bvh
from l2a_jax.data import cameras
from l2a_jax.data import skeleton
import bvh_testing
from bvh_testing import MB_TREE, STUDIO_TREE

# Trimmed copies of the two CMU clips (SOURCE.txt in that folder).
REAL_DATA = pathlib.Path(__file__).resolve().parent / 'testdata' / 'cmu'
# Bones whose two ends are rigidly linked in both CMU skeletons.
RIGID_BONES = ((0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (11, 12),
               (12, 13), (14, 15), (15, 16))
H36M = skeleton.H36M


def _clip(tree=MB_TREE, frames=2, seed=0, **kwargs):
  root, angles = bvh_testing.smooth_motion(
      tree, frames, np.random.default_rng(seed),
      height=0 if tree is STUDIO_TREE else 17)
  return bvh_testing.bvh_text(tree, root, angles, **kwargs)


def _zero_motion_text(tree=MB_TREE, frames=2, **kwargs):
  joints = len(bvh_testing.joint_names(tree))
  return bvh_testing.bvh_text(tree, np.zeros((frames, 3)),
                              np.zeros((frames, joints, 3)), **kwargs)


def _real_clip(name):
  path = REAL_DATA / f'{name}.bvh'
  if not path.exists():
    pytest.skip(f'{path} not available')
  return path


def test_fk_of_rest_pose_is_cumulative_offsets():
  joints = len(bvh_testing.joint_names(MB_TREE))
  text = bvh_testing.bvh_text(MB_TREE, [[10, 20, 30]], np.zeros((1, joints,
                                                                   3)))
  clip = bvh.parse_bvh(text)
  positions = bvh.forward_kinematics(clip)
  expected = bvh_testing.rest_positions(MB_TREE, origin=(10, 20, 30))
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


def test_builtin_mapping_follows_h36m_definitions():
  # Rest pose plus a turn of the root: joints where Human3.6M puts them.
  joints = len(bvh_testing.joint_names(MB_TREE))
  angles = np.zeros((2, joints, 3))
  angles[1, 0, 1] = 90  # Yrotation of the root in frame 1 (ZYX order)
  clip = bvh.parse_bvh(bvh_testing.bvh_text(MB_TREE, [[1, 17, -3]] * 2,
                                            angles))
  mapping = bvh.detect_mapping(clip)
  assert mapping.name == 'cmu_motionbuilder'
  poses = bvh.to_h36m(clip, mapping) / bvh.CMU_UNITS_TO_MM
  rest = bvh_testing.rest_positions(MB_TREE, origin=(1, 17, -3))
  hips = (rest['LeftUpLeg'] + rest['RightUpLeg']) / 2
  shoulder_height = (rest['LeftArm'][1] + rest['RightArm'][1]) / 2
  # The pelvis is between the hips, not at CMU's Hips node 1.8 units above.
  np.testing.assert_allclose(poses[0, 0], hips, atol=1e-9)
  assert rest['Hips'][1] - poses[0, 0, 1] == pytest.approx(1.8)
  # Thorax: on the Spine1 -> Neck1 bone at shoulder height.
  thorax = poses[0, H36M.index('thorax')]
  assert thorax[1] == pytest.approx(shoulder_height)
  np.testing.assert_allclose(thorax[[0, 2]], rest['Neck1'][[0, 2]],
                             atol=1e-9)
  # Spine: at 230 / 485 of the pelvis -> thorax height, on the spine chain.
  spine = poses[0, H36M.index('spine')]
  assert spine[1] == pytest.approx(
      hips[1] + 230 / 485 * (shoulder_height - hips[1]))
  for name, node in (('r_hip', 'RightUpLeg'), ('r_knee', 'RightLeg'),
                     ('r_ankle', 'RightFoot'), ('l_hip', 'LeftUpLeg'),
                     ('l_ankle', 'LeftFoot'), ('neck', 'Head'),
                     ('head', 'Head.end'), ('l_shoulder', 'LeftArm'),
                     ('l_wrist', 'LeftHand'), ('r_elbow', 'RightForeArm')):
    np.testing.assert_allclose(poses[0, H36M.index(name)], rest[node],
                               atol=1e-9, err_msg=name)
  # Frame 1: the body turned 90 degrees about +Y around the root, so the
  # left hip (+X at rest) is now at -Z.
  hip = poses[1, 4] - rest['Hips']
  np.testing.assert_allclose(hip, [0.5, -1.8, -1.6], atol=1e-9)


def test_crlf_and_lf_parse_the_same():
  lf = bvh.forward_kinematics(bvh.parse_bvh(_clip(frames=3)))
  crlf = bvh.forward_kinematics(
      bvh.parse_bvh(_clip(frames=3, newline='\r\n')))
  np.testing.assert_array_equal(lf, crlf)


def test_calibration_frame_is_dropped():
  root, angles = bvh_testing.smooth_motion(MB_TREE, 4,
                                           np.random.default_rng(0))
  angles[0] = 0
  clip = bvh.parse_bvh(bvh_testing.bvh_text(MB_TREE, root, angles))
  poses = bvh.to_h36m(clip, bvh.detect_mapping(clip))
  assert poses.shape == (3, 17, 3)
  kept = bvh.to_h36m(bvh.parse_bvh(bvh_testing.bvh_text(
      MB_TREE, root[1:], angles[1:])), bvh.detect_mapping(clip))
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


_BASE = _zero_motion_text()


@pytest.mark.parametrize('edit,message', [
    (lambda t: t.replace('0.000000 0.000000\n', '0.000000\n', 1),
     r'line \d+: expected 66 channel values, got 65'),
    (lambda t: t.replace('CHANNELS 3 Zrotation', 'CHANNELS 3 Wrotation', 1),
     r'clip.bvh line 9: joint LeftUpLeg: unknown channel'),
    (lambda t: t.replace('MOTION', 'MOVE'), 'no MOTION section'),
    (lambda t: t.replace('Frames: 2', 'Frames: 3'),
     r'line \d+: file ends after 2 of 3 frames'),
    (lambda t: t.replace('OFFSET 0 -7.2 0', 'OFFSET 0 -7.2', 1),
     r'line \d+: OFFSET of LeftLeg: expected a finite number, got'),
    (lambda t: t.replace('0.000000 ', 'nan ', 1), 'NaN'),
    # The input-reliability cases (issue 15).
    (lambda t: t.replace('Frame Time: 0.0083333', 'Frame Time: inf'),
     r"line \d+: Frame Time: expected seconds per frame in .*got 'inf'"),
    (lambda t: t.replace('Frame Time: 0.0083333', 'Frame Time: nan'),
     r"Frame Time: .*got 'nan'"),
    (lambda t: t.replace('Frame Time: 0.0083333', 'Frame Time: 10'),
     r"Frame Time: expected seconds per frame in \[1e-05, 0.2\] "
     r"\(5-100000 fps\), got '10'"),
    (lambda t: t.replace('Frame Time: 0.0083333', 'Frame Time: 0'),
     "Frame Time: .*got '0'"),
    (lambda t: t.replace('Frames: 2', 'Frames: inf'),
     r"Frames: expected a whole number >= 1, got 'inf'"),
    (lambda t: t.replace('Frames: 2', 'Frames: 1e400'),
     r"Frames: expected a whole number >= 1, got '1e400'"),
    (lambda t: t.replace('Frames: 2', 'Frames: 1000000000000'),
     'file ends after 2 of 1000000000000 frames'),
    (lambda t: t.replace('Frames: 2', 'Frames: 1'),
     r'Frames: 1 but 2 motion lines follow'),
    (lambda t: t.replace('OFFSET 0 -7.2 0', 'OFFSET 0 nan 0', 1),
     r"OFFSET of LeftLeg: expected a finite number, got 'nan'"),
    (lambda t: t.replace('OFFSET 0 -7.2 0', 'OFFSET 0 1e400 0', 1),
     r"OFFSET of LeftLeg: expected a finite number, got '1e400'"),
    (lambda t: t.replace('CHANNELS 3 Zrotation Yrotation Xrotation',
                         'CHANNELS 3 Zrotation Zrotation Xrotation', 1),
     'channel Zrotation given twice'),
    (lambda t: t.replace('CHANNELS 3', 'CHANNELS 7', 1),
     "CHANNELS of LeftUpLeg: expected a count 0-6, got '7'"),
])
def test_unreadable_bvh_errors_name_the_line(edit, message):
  text = edit(_BASE)
  assert text != _BASE
  with pytest.raises(bvh.BvhError, match=message):
    bvh.parse_bvh(text, 'clip.bvh')


def test_blank_lines_after_the_motion_are_ignored():
  clip = bvh.parse_bvh(_BASE + '\n\n  \n', 'clip.bvh')
  assert clip.num_frames == 2


def test_deeply_nested_joints_parse_without_recursion():
  depth = 5000
  lines = ['HIERARCHY', 'ROOT J0', '{', 'OFFSET 0 0 0',
           'CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation '
           'Xrotation']
  for k in range(1, depth):
    lines += [f'JOINT J{k}', '{', 'OFFSET 0 1 0',
              'CHANNELS 3 Zrotation Yrotation Xrotation']
  lines += ['End Site', '{', 'OFFSET 0 1 0', '}'] + ['}'] * depth
  lines += ['MOTION', 'Frames: 1', 'Frame Time: 0.01',
            ' '.join(['0'] * (3 + 3 * depth))]
  clip = bvh.parse_bvh('\n'.join(lines), 'deep.bvh')
  assert len(clip.names) == depth + 1
  assert clip.parents[-1] == depth - 1
  positions = bvh.forward_kinematics(clip)
  assert positions[0, -1, 1] == pytest.approx(depth)
  # Unbalanced braces still give a line-numbered error.
  with pytest.raises(bvh.BvhError, match='deep.bvh line'):
    bvh.parse_bvh('\n'.join(lines).replace('}\n}\nMOTION', '}\nMOTION'),
                  'deep.bvh')


def test_huge_root_position_is_named():
  text = _BASE.replace('\n0.000000 0.000000 0.000000 ',
                       '\n1e308 0.000000 0.000000 ', 1)
  assert text != _BASE
  clip = bvh.parse_bvh(text)
  with pytest.raises(bvh.BvhError, match='joint positions beyond 100 km or '
                     'not finite from frame 0'):
    bvh.to_h36m(clip, bvh.detect_mapping(clip), 'clip.bvh')


def _studio_mapping(tmp_path, **changes):
  spec = dict(bvh_testing.STUDIO_MAPPING, **changes)
  path = tmp_path / 'mapping.json'
  path.write_text(json.dumps(spec))
  return bvh.load_mapping(path)


@pytest.mark.parametrize('tree', [MB_TREE, STUDIO_TREE])
def test_both_position_channel_conventions_give_the_same_body(tree,
                                                               tmp_path):
  # The same motion written with position channels on the root only, on
  # every joint added to OFFSET (zeros) and on every joint holding the full
  # translation: one body, bones not doubled.
  root, angles = bvh_testing.smooth_motion(
      tree, 30, np.random.default_rng(1),
      height=0 if tree is STUDIO_TREE else 17)
  texts = {convention: bvh_testing.bvh_text(tree, root, angles,
                                            position_channels=convention)
           for convention in (None, 'added', 'absolute')}
  clips = {k: bvh.parse_bvh(t) for k, t in texts.items()}
  assert bvh.detect_position_channels(clips['absolute']) == ('absolute', [])
  assert bvh.detect_position_channels(clips['added']) == ('added', [])
  assert bvh.detect_position_channels(clips[None]) == ('added', [])
  mapping = (bvh.detect_mapping(clips[None]) if tree is MB_TREE
             else _studio_mapping(tmp_path))
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', bvh.BvhWarning)  # the studio head
    poses = {k: bvh.to_h36m(c, mapping) for k, c in clips.items()}
  np.testing.assert_allclose(poses['added'], poses[None], atol=1e-6)
  np.testing.assert_allclose(poses['absolute'], poses[None], atol=1e-6)
  # Reading the absolute file the other way doubles every bone: refused,
  # with the bone named.
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', bvh.BvhWarning)
    with pytest.raises(bvh.BvhError, match=r'implausible skeleton \(.*added '
                       r'position channels.*(thigh|hip|shin).*outside the '
                       'human range'):
      bvh.to_h36m(clips['absolute'], mapping, 'six.bvh',
                  position_channels='added')
    # The mapping file option forces a convention too.
    forced = dataclasses_replace(mapping, position_channels='absolute')
    np.testing.assert_allclose(
        bvh.to_h36m(clips['absolute'], forced), poses[None], atol=1e-6)


def dataclasses_replace(mapping, **changes):
  import dataclasses  # pylint: disable=g-import-not-at-top
  return dataclasses.replace(mapping, **changes)


def test_position_channels_option_in_the_mapping_file(tmp_path):
  mapping = _studio_mapping(tmp_path, position_channels='absolute')
  assert mapping.position_channels == 'absolute'
  with pytest.raises(ValueError, match='"position_channels" must be one of'):
    _studio_mapping(tmp_path, position_channels='double')


def test_zero_offset_head_end_site_is_estimated_and_warned_once():
  zero_head = _clip(frames=5).replace(
      'OFFSET 0 1.8 0\n\t\t\t\t\t\t\t}', 'OFFSET 0 0 0\n\t\t\t\t\t\t\t}')
  assert zero_head != _clip(frames=5)
  clip = bvh.parse_bvh(zero_head)
  with pytest.warns(bvh.BvhWarning) as caught:
    poses = bvh.to_h36m(clip, bvh.detect_mapping(clip), 'head.bvh')
  assert len(caught) == 1
  message = str(caught[0].message)
  assert 'head.bvh: zero-offset End Site Head.end (H36M head)' in message
  head, nose = poses[:, H36M.index('head')], poses[:, H36M.index('neck')]
  length = np.linalg.norm(head - nose, axis=-1)
  # 115 / 890 of the rest-pose leg (thigh + shin), constant over the clip.
  leg = (7.2 + 7.4) * bvh.CMU_UNITS_TO_MM
  np.testing.assert_allclose(length, 115 / 890 * leg, rtol=1e-6)
  assert f'placed {115 / 890 * leg:.0f} mm from Head' in message
  # Along thorax -> head in the rest pose, turning with the head.
  reference = bvh.to_h36m(bvh.parse_bvh(_clip(frames=5)),
                          bvh.detect_mapping(clip))
  true_direction = reference[:, 10] - reference[:, 9]
  cosine = np.sum(true_direction * (head - nose), -1) / (
      np.linalg.norm(true_direction, axis=-1) * length)
  assert np.all(cosine > 0.95)
  # A clip without zero End Sites warns nothing.
  with warnings.catch_warnings():
    warnings.simplefilter('error', bvh.BvhWarning)
    bvh.to_h36m(bvh.parse_bvh(_clip()), bvh.detect_mapping(clip))


def test_unknown_naming_needs_a_mapping(tmp_path):
  clip = bvh.parse_bvh(_clip(STUDIO_TREE))
  with pytest.raises(bvh.BvhError, match='--mapping'):
    bvh.detect_mapping(clip, 'x.bvh')
  mapping_file = tmp_path / 'map.json'
  mapping_file.write_text(json.dumps({'joints': {'pelvis': 'Root'},
                                      'units_to_mm': 10}))
  with pytest.raises(ValueError, match='lacks'):
    bvh.load_mapping(mapping_file)


@pytest.mark.parametrize('change,message', [
    ({'pelvis': 3}, r'joints.pelvis: expected a node name, a list of names '
     r'or an object with "weights" / "bone", got 3'),
    ({'pelvis': ['UpperLeg_L', 7]}, r'joints.pelvis\[1\]: expected a node '
     'name'),
    ({'spine': {'weights': {'Spine': 0.5, 'Chest': 0.4}}},
     r'joints.spine.weights: must sum to 1'),
    ({'spine': {'weights': {'Spine': 'half', 'Chest': 0.5}}},
     r"joints.spine.weights\['Spine'\]: expected a finite number"),
    ({'head': {'bone': ['Head'], 'beyond_mm': 100}},
     r'joints.head.bone: expected \[from_node, to_node\]'),
    ({'head': {'bone': ['Neck', 'Head'], 'beyond_mm': float('nan')}},
     r'joints.head.beyond_mm: expected a finite number'),
    ({'head': {'node': 'Head'}}, r"unknown keys \['node'\]"),
    ({'nose': 'Head'}, r"unknown H36M joints \['nose'\]"),
])
def test_bad_mapping_fields_are_named(tmp_path, change, message):
  spec = json.loads(json.dumps(bvh_testing.STUDIO_MAPPING))
  spec['joints'].update(change)
  path = tmp_path / 'map.json'
  path.write_text(json.dumps(spec))
  with pytest.raises(ValueError, match=message):
    bvh.load_mapping(path)


def test_mapping_weights_and_offsets_along_a_bone(tmp_path):
  spec = json.loads(json.dumps(bvh_testing.STUDIO_MAPPING))
  spec['joints'].update({
      'spine': {'weights': {'Hips': 0.25, 'Spine': 0.25, 'Chest': 0.5}},
      'head': {'bone': ['Neck', 'Head'], 'beyond_mm': 110},
      'r_shoulder': {'bone': ['Shoulder_R', 'UpperArm_R'],
                     'beyond_mm': 20},
      'thorax': {'weights': {'Chest': 0.5, 'Neck': 0.5},
                 'bone': ['Chest', 'Neck'], 'beyond_mm': -10},
  })
  path = tmp_path / 'map.json'
  path.write_text(json.dumps(spec))
  mapping = bvh.load_mapping(path)
  clip = bvh.parse_bvh(_clip(STUDIO_TREE, position_channels='absolute'))
  with warnings.catch_warnings():
    warnings.simplefilter('error', bvh.BvhWarning)  # Head.end is not used
    poses = bvh.to_h36m(clip, mapping)
  nodes = bvh.forward_kinematics(clip, 'absolute') * 10
  node = {n: nodes[:, i] for i, n in enumerate(clip.names)}

  def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)

  np.testing.assert_allclose(
      poses[:, H36M.index('spine')],
      0.25 * node['Hips'] + 0.25 * node['Spine'] + 0.5 * node['Chest'])
  np.testing.assert_allclose(
      poses[:, H36M.index('head')],
      node['Head'] + 110 * unit(node['Head'] - node['Neck']))
  np.testing.assert_allclose(
      poses[:, H36M.index('r_shoulder')],
      node['UpperArm_R'] + 20 * unit(node['UpperArm_R'] - node['Shoulder_R']))
  np.testing.assert_allclose(
      poses[:, H36M.index('thorax')],
      (node['Chest'] + node['Neck']) / 2
      - 10 * unit(node['Neck'] - node['Chest']))
  # "at" along a bone: 18/22 of Chest -> Neck.
  with pytest.warns(bvh.BvhWarning, match='zero-offset End Site Head.end'):
    poses = bvh.to_h36m(clip, _studio_mapping(tmp_path))
  np.testing.assert_allclose(
      poses[:, H36M.index('thorax')],
      node['Chest'] + 18 / 22 * (node['Neck'] - node['Chest']), atol=1e-9)


def test_implausible_units_are_rejected():
  clip = bvh.parse_bvh(_clip())
  mapping = dataclasses_replace(bvh.detect_mapping(clip), units_to_mm=1.0)
  with pytest.raises(bvh.BvhError, match=r'implausible skeleton \(1 mm per '
                     r'unit.*r_hip \(pelvis-r_hip\) 0.002-0.002 m, outside '
                     'the human range 0.03-0.25 m'):
    bvh.to_h36m(clip, mapping, 'clip.bvh')


def test_bone_lengths_are_checked_over_the_whole_clip():
  # Frame 0 is a normal body; from frame 3 on the right shin is stretched
  # (an animated knee translation): refused, naming the bone and frame.
  text = _clip(frames=6, position_channels='absolute')
  clip = bvh.parse_bvh(text)
  knee = clip.names.index('RightFoot')
  column = clip.channel_start[knee] + 1  # Yposition of RightFoot
  clip.motion[3:, column] *= 1.6
  mapping = bvh.detect_mapping(clip)
  with pytest.raises(bvh.BvhError, match=r'r_shin \(r_knee-r_ankle\) '
                     r'0.418-0.668 m, outside the human range 0.25-0.65 m '
                     r'in 3 of 6 frames \(first: frame 3\)'):
    bvh.to_h36m(clip, mapping, 'clip.bvh')
  # Within the range but not rigid: refused as well.
  clip.motion[3:, column] /= 1.6 / 1.3
  with pytest.raises(bvh.BvhError, match=r'r_shin .* varies 0.418-0.543 m '
                     'over the clip'):
    bvh.to_h36m(clip, mapping, 'clip.bvh')


def test_oversized_skeleton_names_the_height(tmp_path):
  # The studio body 1.4 x too large (as a doubled small skeleton would be):
  # every bone within its own range, the standing height 2.2 m is not.
  mapping = dataclasses_replace(_studio_mapping(tmp_path), units_to_mm=14.0)
  clip = bvh.parse_bvh(_clip(STUDIO_TREE, position_channels='absolute'))
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', bvh.BvhWarning)
    with pytest.raises(bvh.BvhError,
                       match=r'standing height along the bones 2.\d\d m, '
                       r'outside the human range 1.0-2.1 m'):
      bvh.to_h36m(clip, mapping, 'tall.bvh')


@pytest.mark.parametrize('name,naming', [
    ('01_01', 'cmu_motionbuilder'),
    ('131_01', 'cmu_3dsmax'),
])
def test_real_cmu_clips(name, naming):
  path = _real_clip(name)
  clip = bvh.read_bvh(path)
  mapping = bvh.detect_mapping(clip)
  assert mapping.name == naming
  with warnings.catch_warnings():
    warnings.simplefilter('error', bvh.BvhWarning)
    poses = bvh.to_h36m(clip, mapping)
  # 01_01 starts with the T-pose calibration frame (rotations 0), which is
  # dropped.
  tpose = bool(np.mean(clip.motion[0, 3:] == 0) > 0.9)
  assert tpose or name == '131_01'
  assert poses.shape == (clip.num_frames - tpose, 17, 3)
  bones = np.stack([np.linalg.norm(poses[:, c] - poses[:, p], axis=-1)
                    for p, c in RIGID_BONES], 1)
  np.testing.assert_allclose(bones, np.broadcast_to(bones[0], bones.shape),
                             rtol=1e-9)
  # Pelvis between the hips; CMU's Hips node 9-11 cm above it.
  np.testing.assert_allclose(poses[:, 0], (poses[:, 1] + poses[:, 4]) / 2,
                             atol=1e-9)
  nodes = bvh.forward_kinematics(clip)[-len(poses):] * bvh.CMU_UNITS_TO_MM
  hips_node = nodes[:, clip.names.index('Hips')]
  assert np.all((np.linalg.norm(hips_node - poses[:, 0], axis=-1) > 90)
                & (np.linalg.norm(hips_node - poses[:, 0], axis=-1) < 115))
  # Thorax at shoulder height in the rest pose.
  rest = bvh.forward_kinematics(
      bvh.BvhClip(**{**clip.__dict__, 'motion': np.zeros_like(
          clip.motion[:1])})) * bvh.CMU_UNITS_TO_MM
  rest_joints = bvh.to_h36m.__globals__['_joint_positions'](
      rest[0], {n: i for i, n in enumerate(clip.names)}, mapping, name)
  assert rest_joints[8, 1] == pytest.approx(
      (rest_joints[11, 1] + rest_joints[14, 1]) / 2, abs=1e-6)
  # Proportions against Human3.6M's table (data_and_metrics.md 10.2):
  # limb bones within 30%, torso and head bones within 35%, hips (CMU's
  # hip joints sit close together) within 50%.
  for bone in bvh.HUMAN_BONES:
    length = np.median(np.linalg.norm(poses[:, bone.child]
                                      - poses[:, bone.parent], axis=-1))
    tolerance = (0.5 if bone.name.endswith('hip') else
                 0.3 if bone.rigid else 0.35)
    assert abs(length / bone.reference_mm - 1) < tolerance, (bone.name,
                                                             length)
  height = poses[:, 10, 1] - np.minimum(poses[:, 3, 1], poses[:, 6, 1])
  assert 1300 < np.percentile(height, 95) < 1650
  resampled, up_axis = bvh.load_h36m_motion(path)
  assert up_axis == 1
  assert resampled.shape[0] == int(np.floor(
      (len(poses) - 1) / clip.fps * 50 + 1e-9)) + 1
  bones50 = np.stack([np.linalg.norm(resampled[:, c] - resampled[:, p],
                                     axis=-1) for p, c in RIGID_BONES], 1)
  np.testing.assert_allclose(bones50, np.broadcast_to(bones[0], bones50.shape),
                             rtol=5e-3)


def test_cli_writes_views(tmp_path):
  source = tmp_path / 'clip.bvh'
  source.write_text(_clip(frames=60))
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


def test_cli_studio_file_with_mapping_warns_once(tmp_path, capsys):
  source = tmp_path / 'studio.bvh'
  source.write_text(_clip(STUDIO_TREE, frames=30,
                          position_channels='absolute'))
  mapping = tmp_path / 'map.json'
  mapping.write_text(json.dumps(bvh_testing.STUDIO_MAPPING))
  output = tmp_path / 'studio.npz'
  assert bvh.main(['--input', str(source), '--output', str(output),
                   '--mapping', str(mapping)]) == 0
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith(
      f'warning: {source}: zero-offset End Site Head.end')
  bones = np.load(output)['poses_world']
  thigh = np.linalg.norm(bones[:, 2] - bones[:, 1], axis=-1)
  np.testing.assert_allclose(thigh, 430, rtol=1e-3)  # not doubled
  # Forcing the wrong convention: refused in one line, nothing written.
  output.unlink()
  assert bvh.main(['--input', str(source), '--output', str(output),
                   '--mapping', str(mapping), '--position_channels',
                   'added']) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith(f'error: {source}: implausible skeleton')
  assert not output.exists()


@pytest.mark.parametrize('args,message', [
    (['--noise_px', 'nan'], '--noise_px must be a finite number >= 0, got '
     'nan'),
    (['--noise_px', 'inf'], '--noise_px must be a finite number >= 0, got '
     'inf'),
    (['--noise_px', '-1'], '--noise_px must be a finite number >= 0'),
    (['--num_cameras', '0'], '--num_cameras must be >= 1, got 0'),
])
def test_cli_bad_options_one_line_error(tmp_path, capsys, args, message):
  source = tmp_path / 'clip.bvh'
  source.write_text(_clip(frames=30))
  output = tmp_path / 'clip.npz'
  assert bvh.main(['--input', str(source), '--output', str(output)]
                  + args) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f'error: {message}'] or (
      len(err) == 1 and message in err[0])
  assert not output.exists()


def test_cli_bad_mapping_one_line_error(tmp_path, capsys):
  source = tmp_path / 'clip.bvh'
  source.write_text(_clip(STUDIO_TREE, frames=30))
  spec = json.loads(json.dumps(bvh_testing.STUDIO_MAPPING))
  spec['joints']['r_knee'] = 12
  mapping = tmp_path / 'map.json'
  mapping.write_text(json.dumps(spec))
  assert bvh.main(['--input', str(source), '--output',
                   str(tmp_path / 'o.npz'), '--mapping', str(mapping)]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1
  assert f'{mapping}: joints.r_knee: expected a node name' in err[0]


def test_cli_bad_input_one_line_error(tmp_path, capsys):
  source = tmp_path / 'bad.bvh'
  source.write_text(_zero_motion_text(frames=3).replace(
      '0.000000 0.000000\n', '0.000000\n', 2))
  output = tmp_path / 'bad.npz'
  assert bvh.main(['--input', str(source), '--output', str(output)]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert err.startswith('error: ') and 'bad.bvh line' in err
  assert 'expected 66 channel values, got 65' in err
  assert not output.exists()
  assert bvh.main(['--input', str(tmp_path / 'missing.bvh'), '--output',
                   str(output)]) == 1
  assert 'cannot read' in capsys.readouterr().err


# A bounded property test of the reader: any edit of a valid file (tokens
# replaced, deleted or inserted, lines dropped or duplicated) is either read
# or refused with a BvhError; importing a clip that was read raises nothing
# but BvhError.
_FUZZ_TOKENS = ('nan', 'inf', '-inf', '1e400', '1e308', '-1e308', '0', '-0',
                '1e-320', '10', '999999999999', '{', '}', 'JOINT', 'End',
                'Site', 'ROOT', 'OFFSET', 'CHANNELS', 'MOTION', 'Frames:',
                'Frame', 'Time:', 'Xposition', 'Zrotation', '7', '', 'x',
                '\t', '\r')
_FUZZ_BASE = _clip(frames=3)
_FUZZ_LINES = _FUZZ_BASE.split('\n')


@st.composite
def _edited_bvh(draw):
  lines = list(_FUZZ_LINES)
  for _ in range(draw(st.integers(1, 4))):
    kind = draw(st.sampled_from(('token', 'delete_token', 'insert',
                                 'drop_line', 'duplicate_line')))
    row = draw(st.integers(0, len(lines) - 1))
    tokens = lines[row].split(' ')
    if kind == 'drop_line' and len(lines) > 1:
      del lines[row]
    elif kind == 'duplicate_line':
      lines.insert(row, lines[row])
    else:
      column = draw(st.integers(0, len(tokens) - 1))
      if kind == 'token':
        tokens[column] = draw(st.sampled_from(_FUZZ_TOKENS))
      elif kind == 'delete_token':
        del tokens[column]
      else:
        tokens.insert(column, draw(st.sampled_from(_FUZZ_TOKENS)))
      lines[row] = ' '.join(tokens)
  return '\n'.join(lines)


@hypothesis.settings(max_examples=150, deadline=None, derandomize=True,
                     suppress_health_check=[hypothesis.HealthCheck.too_slow])
@hypothesis.given(_edited_bvh())
def test_fuzzed_bvh_is_read_or_refused_with_one_error_type(text):
  try:
    clip = bvh.parse_bvh(text, 'fuzz.bvh')
  except bvh.BvhError as error:
    assert str(error).startswith('fuzz.bvh')
    return
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', bvh.BvhWarning)
    try:
      mapping = bvh.detect_mapping(clip, 'fuzz.bvh')
      poses = bvh.to_h36m(clip, mapping, 'fuzz.bvh')
    except bvh.BvhError:
      return
  assert np.all(np.isfinite(poses))


@pytest.mark.parametrize('case', ['frame_time_inf', 'frames_1e12',
                                  'noise_nan', 'mapping_number'])
def test_cli_subprocess_bad_input_is_one_line(tmp_path, case):
  # The issue-15 input cases through the real command line: exit 1, one
  # `error:` line on stderr, no traceback, no output file.
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  text = _clip(STUDIO_TREE, frames=20, position_channels='absolute')
  mapping = json.loads(json.dumps(bvh_testing.STUDIO_MAPPING))
  extra = []
  if case == 'frame_time_inf':
    text = text.replace('Frame Time: 0.0083333', 'Frame Time: inf')
  elif case == 'frames_1e12':
    text = text.replace('Frames: 20', 'Frames: 1000000000000')
  elif case == 'noise_nan':
    extra = ['--noise_px', 'nan']
  else:
    mapping['joints']['l_knee'] = 5
  source = tmp_path / 'clip.bvh'
  source.write_text(text)
  mapping_path = tmp_path / 'map.json'
  mapping_path.write_text(json.dumps(mapping))
  output = tmp_path / 'clip.npz'
  result = subprocess.run(
      [sys.executable, '-m', 'l2a_jax.data.bvh', '--input', str(source),
       '--output', str(output), '--mapping', str(mapping_path)] + extra,
      capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 1
  err = result.stderr.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('error: '), result.stderr
  assert not output.exists()


def test_disagreeing_position_channels_are_warned():
  # Two joints of an 'absolute' file hold zeros: the majority wins and the
  # two are named.
  clip = bvh.parse_bvh(_clip(frames=4, position_channels='absolute'))
  for name in ('LeftLeg', 'RightLeg'):
    node = clip.names.index(name)
    start = clip.channel_start[node]
    clip.motion[:, start:start + 3] = 0
  assert bvh.detect_position_channels(clip) == ('absolute',
                                                ['LeftLeg', 'RightLeg'])
  with pytest.warns(bvh.BvhWarning, match=r"x.bvh: position channels read "
                    r"as 'absolute' .* but 2 joints \(LeftLeg, RightLeg\) "
                    'look the other way'):
    assert bvh.resolve_position_channels(
        clip, bvh.detect_mapping(clip), 'x.bvh') == 'absolute'
