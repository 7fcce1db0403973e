"""Small BVH files written by the tests: two skeletons and their motion.

A tree is (name, offset, children) with children a list of trees, or the End
Site offset (a 3-tuple) for a leaf. Rotation channels are ZYX degrees.

- `MB_TREE`: CMU MotionBuilder names (01_01.bvh's scheme, trimmed to the
  nodes the built-in mapping reads), CMU units (56.444 mm), 3 channels per
  joint, 6 on the root. Its `Hips` sits 1.8 units (102 mm) above the hips.
- `STUDIO_TREE`: another exporter's naming ('UpperLeg_L', 'Shoulder_R', ...),
  centimetres, 6 channels on every joint (the position channels hold the
  full local translation), a zero-offset head End Site; `STUDIO_MAPPING` is
  its mapping file.
"""

import numpy as np

MB_TREE = ('Hips', (0, 0, 0), [
    ('LeftUpLeg', (1.6, -1.8, 0.5), [
        ('LeftLeg', (0, -7.2, 0), [('LeftFoot', (0, -7.4, 0), (0, -0.5, 2))])]),
    ('RightUpLeg', (-1.6, -1.8, 0.5), [
        ('RightLeg', (0, -7.2, 0), [
            ('RightFoot', (0, -7.4, 0), (0, -0.5, 2))])]),
    ('LowerBack', (0, 0, 0), [('Spine', (0, 2.1, 0), [('Spine1', (0, 2.1, 0), [
        ('Neck', (0, 0, 0), [('Neck1', (0, 1.7, 0), [
            ('Head', (0, 1.8, 0.1), (0, 1.8, 0))])]),
        ('LeftShoulder', (0, 0, 0), [('LeftArm', (3.2, 1.2, 0), [
            ('LeftForeArm', (5, 0, 0), [
                ('LeftHand', (4, 0, 0), (1, 0, 0))])])]),
        ('RightShoulder', (0, 0, 0), [('RightArm', (-3.2, 1.2, 0), [
            ('RightForeArm', (-5, 0, 0), [
                ('RightHand', (-4, 0, 0), (-1, 0, 0))])])]),
    ])])]),
])

STUDIO_TREE = ('Hips', (0, 95, 0), [
    ('Spine', (0, 10, 0), [('Chest', (0, 15, 0), [
        ('Neck', (0, 22, 0), [('Head', (0, 10, 1), (0, 0, 0))]),
        ('Shoulder_L', (4, 18, 0), [('UpperArm_L', (12, 0, 0), [
            ('LowerArm_L', (28, 0, 0), [('Hand_L', (25, 0, 0), (8, 0, 0))])])]),
        ('Shoulder_R', (-4, 18, 0), [('UpperArm_R', (-12, 0, 0), [
            ('LowerArm_R', (-28, 0, 0), [
                ('Hand_R', (-25, 0, 0), (-8, 0, 0))])])]),
    ])]),
    ('UpperLeg_L', (9, -2, 0), [('LowerLeg_L', (0, -43, 0), [
        ('Foot_L', (0, -44, 0), (0, -5, 12))])]),
    ('UpperLeg_R', (-9, -2, 0), [('LowerLeg_R', (0, -43, 0), [
        ('Foot_R', (0, -44, 0), (0, -5, 12))])]),
])

# The studio skeleton's mapping file: pelvis between the hips, thorax at
# shoulder height (18 of the 22 cm of Chest -> Neck), spine at 47% of the
# pelvis -> thorax height on Spine -> Chest, head top from the End Site
# (zero: estimated by the importer).
STUDIO_MAPPING = {
    'joints': {
        'pelvis': ['UpperLeg_L', 'UpperLeg_R'],
        'r_hip': 'UpperLeg_R', 'r_knee': 'LowerLeg_R', 'r_ankle': 'Foot_R',
        'l_hip': 'UpperLeg_L', 'l_knee': 'LowerLeg_L', 'l_ankle': 'Foot_L',
        'spine': {'bone': ['Spine', 'Chest'], 'at': 0.5},
        'thorax': {'bone': ['Chest', 'Neck'], 'at': 18 / 22},
        'neck': 'Head', 'head': 'Head.end',
        'l_shoulder': 'UpperArm_L', 'l_elbow': 'LowerArm_L',
        'l_wrist': 'Hand_L',
        'r_shoulder': 'UpperArm_R', 'r_elbow': 'LowerArm_R',
        'r_wrist': 'Hand_R',
    },
    'units_to_mm': 10.0,
}


def joint_names(tree):
  """Names of the joints (not end sites) in file order."""
  name, _, children = tree
  names = [name]
  if isinstance(children, list):
    for child in children:
      names += joint_names(child)
  return names


def rest_positions(tree, origin=(0, 0, 0)):
  """{node: position} with every rotation zero (end sites '<parent>.end')."""
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


def _offsets(tree):
  name, offset, children = tree
  out = {name: np.asarray(offset, np.float64)}
  if isinstance(children, list):
    for child in children:
      out.update(_offsets(child))
  return out


def bvh_text(tree, root, angles, *, frame_time=1 / 120, newline='\n',
             channel_order='Zrotation Yrotation Xrotation',
             position_channels=None):
  """BVH text of a motion.

  Args:
    tree: the skeleton.
    root: [F, 3] root position channel values (added to the root OFFSET, or
      with position_channels='absolute' the OFFSET is added here).
    angles: [F, joints, 3] rotation channel values in `channel_order`.
    frame_time: seconds per frame.
    newline: '\n' or '\r\n'.
    channel_order: rotation channel order of every joint.
    position_channels: None (position channels on the root only), 'added'
      (6 channels on every joint, non-root ones 0) or 'absolute' (6 on every
      joint holding the full local translation).
  """
  names = joint_names(tree)
  offsets = _offsets(tree)
  all_positions = position_channels is not None

  def block(node, depth):
    name, offset, children = node
    pad = '\t' * depth
    lines = [f'{pad}{"ROOT" if depth == 0 else "JOINT"} {name}', pad + '{',
             f'{pad}\tOFFSET {offset[0]} {offset[1]} {offset[2]}']
    if depth == 0 or all_positions:
      lines.append(f'{pad}\tCHANNELS 6 Xposition Yposition Zposition '
                   f'{channel_order}')
    else:
      lines.append(f'{pad}\tCHANNELS 3 {channel_order}')
    if isinstance(children, list):
      for child in children:
        lines += block(child, depth + 1)
    else:
      lines += [f'{pad}\tEnd Site', pad + '\t{',
                f'{pad}\t\tOFFSET {children[0]} {children[1]} {children[2]}',
                pad + '\t}']
    return lines + [pad + '}']

  root = np.asarray(root, np.float64)
  angles = np.asarray(angles, np.float64)
  frames = len(root)
  columns = []
  for j, name in enumerate(names):
    if j == 0:
      position = root + (offsets[name] if position_channels == 'absolute'
                         else 0)
      columns.append(position)
    elif all_positions:
      value = offsets[name] if position_channels == 'absolute' else 0 * (
          offsets[name])
      columns.append(np.broadcast_to(value, (frames, 3)))
    columns.append(angles[:, j])
  motion = np.concatenate(columns, axis=1)
  lines = ['HIERARCHY'] + block(tree, 0) + [
      'MOTION', f'Frames: {frames}', f'Frame Time: {frame_time:.7f}']
  lines += [' '.join(f'{v:.6f}' for v in row) for row in motion]
  return newline.join(lines) + newline


def smooth_motion(tree, frames, rng, *, fps=120.0, amplitude=15.0,
                  speed_units=0.0, height=17.0):
  """(root [F, 3], angles [F, joints, 3]): smooth random rotations.

  The root moves along +X at `speed_units` file units per second at
  `height` above the origin.
  """
  joints = len(joint_names(tree))
  t = np.arange(frames)[:, None, None] / fps
  phase = rng.uniform(0, 1, (1, joints, 3))
  frequency = rng.uniform(0.3, 0.8, (1, joints, 3))
  angles = amplitude * np.sin(2 * np.pi * (frequency * t + phase))
  root = np.column_stack([speed_units * t[:, 0, 0], np.full(frames, height),
                          np.zeros(frames)])
  return root, angles


def write_clip(path, tree, frames, rng, **kwargs):
  """Writes a BVH of smooth random motion (kwargs: smooth_motion's, then
  bvh_text's)."""
  motion_keys = ('fps', 'amplitude', 'speed_units', 'height')
  motion_args = {k: kwargs.pop(k) for k in motion_keys if k in kwargs}
  root, angles = smooth_motion(tree, frames, rng, **motion_args)
  if 'fps' in motion_args:
    kwargs.setdefault('frame_time', 1 / motion_args['fps'])
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(bvh_text(tree, root, angles, **kwargs))
  return path
