r"""BVH motion capture -> Human3.6M 17 joints seen by virtual cameras.

Reader: the HIERARCHY (ROOT / JOINT / End Site, OFFSET, CHANNELS in any order
and count) and MOTION sections, LF or CRLF line endings. Forward kinematics:
a joint's global transform = parent global transform x translation(OFFSET,
plus the position channels if it has any) x the rotations in CHANNELS order
(degrees). End sites are named '<parent>.end' (e.g. 'Head.end').

Joint mapping to Human3.6M: built in for the two CMU conversions (the
MotionBuilder-friendly names of 01_01.bvh and the 3dsMax-friendly names of
131_01.bvh; CMU length unit = 56.444 mm). Any other skeleton needs a JSON
mapping file:

  {"joints": {"pelvis": "Hips", "r_hip": "RightUpLeg", ...,
              "spine": ["Hips", "Neck"],      # a list = mean of the nodes
              "head": "Head.end"},
   "units_to_mm": 10.0,                      # file length unit in mm
   "up_axis": "y"}                           # "y" (default) or "z"

with all 17 names of `skeleton.H36M.joint_names`. A calibration first frame
(the CMU T-pose: at least 90% of its rotation channels exactly 0 while the
next frame has under 50%) is dropped.

CLI:

  python -m l2a_jax.data.bvh --input FILE.bvh --output OUT.npz \
      [--num_cameras K] [--seed S] [--noise_px SIGMA] [--mapping MAP.json]

writes `keypoints_2d` float32 [K, F, 17, 3] (pixels + confidence), `poses_3d`
float32 [K, F, 17, 3] (camera mm), `image_size` int32 [K, 2] (w, h),
`intrinsics` float32 [K, 3, 3] (pinhole K), `rotation` float32 [K, 3, 3]
(world -> camera), `position` float32 [K, 3] (camera centre, world mm),
`poses_world` float32 [F, 17, 3] (world mm) and `fps` (50).
"""

import argparse
import dataclasses
import json
import pathlib
import sys

import numpy as np

from l2a_jax import atomic_output
from l2a_jax.data import cameras as cameras_lib
from l2a_jax.data import skeleton as skeleton_lib

# One CMU length unit: (1 / 0.45) inch.
CMU_UNITS_TO_MM = 25.4 / 0.45
TARGET_FPS = 50.0
# Rest-pose heights (head top to ankle) outside this range mean wrong units.
_PLAUSIBLE_HEIGHT_MM = (800.0, 2500.0)


class BvhError(ValueError):
  """A BVH file that cannot be read; the message names file and line."""


@dataclasses.dataclass
class BvhClip:
  """A parsed BVH file.

  Attributes:
    names: node names in file order (end sites as '<parent>.end').
    parents: parent index per node (-1 for the root).
    offsets: float64 [nodes, 3] OFFSET per node, file units.
    channels: per node, the channel names in file order ([] for end sites).
    channel_start: per node, the column of its first channel in `motion`.
    frame_time: seconds per frame.
    motion: float64 [frames, total_channels].
  """

  names: list[str]
  parents: list[int]
  offsets: np.ndarray
  channels: list[list[str]]
  channel_start: list[int]
  frame_time: float
  motion: np.ndarray

  @property
  def fps(self) -> float:
    return 1.0 / self.frame_time

  @property
  def num_frames(self) -> int:
    return self.motion.shape[0]


_VALID_CHANNELS = ('Xposition', 'Yposition', 'Zposition', 'Xrotation',
                   'Yrotation', 'Zrotation')


def parse_bvh(text: str, source: str = '<bvh>') -> BvhClip:
  """Parses BVH text.

  Args:
    text: the file contents (LF or CRLF).
    source: file name used in error messages.

  Returns:
    The parsed clip.

  Raises:
    BvhError: with the file name and line number of the first problem.
  """
  lines = text.splitlines()
  # Tokens of the hierarchy with their 1-based line numbers.
  tokens = []
  motion_line = None
  for number, line in enumerate(lines, start=1):
    if line.strip() == 'MOTION':
      motion_line = number
      break
    tokens.extend((token, number) for token in line.split())
  if motion_line is None:
    raise BvhError(f'{source}: no MOTION section')

  position = 0

  def fail(message, line=None):
    if line is None:
      line = tokens[min(position, len(tokens) - 1)][1] if tokens else 1
    raise BvhError(f'{source} line {line}: {message}')

  def take(expected=None):
    nonlocal position
    if position >= len(tokens):
      fail(f'unexpected end of HIERARCHY (expected {expected or "more"})',
           motion_line)
    token, line = tokens[position]
    if expected is not None and token != expected:
      fail(f'expected {expected!r}, got {token!r}', line)
    position += 1
    return token, line

  def take_float(what):
    token, line = take()
    try:
      return float(token)
    except ValueError:
      fail(f'{what}: expected a number, got {token!r}', line)

  names, parents, offsets, channels = [], [], [], []

  def parse_node(name, parent, line):
    index = len(names)
    if name in names:
      fail(f'duplicate joint name {name!r}', line)
    names.append(name)
    parents.append(parent)
    offsets.append(None)
    channels.append([])
    take('{')
    while True:
      token, line = take()
      if token == 'OFFSET':
        offsets[index] = [take_float(f'OFFSET of {name}') for _ in range(3)]
      elif token == 'CHANNELS':
        count_token, count_line = take()
        if not count_token.isdigit():
          fail(f'CHANNELS of {name}: expected a count, got {count_token!r}',
               count_line)
        for _ in range(int(count_token)):
          channel, channel_line = take()
          if channel not in _VALID_CHANNELS:
            fail(f'joint {name}: unknown channel {channel!r}', channel_line)
          channels[index].append(channel)
      elif token == 'JOINT':
        child_name, child_line = take()
        parse_node(child_name, index, child_line)
      elif token == 'End':
        take('Site')
        end_name = f'{name}.end'
        names.append(end_name)
        parents.append(index)
        channels.append([])
        take('{')
        take('OFFSET')
        offsets.append(
            [take_float(f'OFFSET of {end_name}') for _ in range(3)])
        take('}')
      elif token == '}':
        break
      else:
        fail(f'joint {name}: unexpected {token!r}', line)
    if offsets[index] is None:
      fail(f'joint {name} has no OFFSET', line)

  take('HIERARCHY')
  _, line = take('ROOT')
  root_name, line = take()
  parse_node(root_name, -1, line)
  if position != len(tokens):
    fail(f'unexpected {tokens[position][0]!r} after the ROOT joint')

  channel_start, total = [], 0
  for node_channels in channels:
    channel_start.append(total)
    total += len(node_channels)

  # MOTION: 'Frames: N', 'Frame Time: t', then N lines of `total` numbers.
  header = {}
  number = motion_line
  for key in ('Frames:', 'Frame Time:'):
    if number >= len(lines):
      raise BvhError(f'{source} line {number + 1}: missing {key!r}')
    line = lines[number].strip()
    number += 1
    if not line.startswith(key):
      raise BvhError(f'{source} line {number}: expected {key!r}, got '
                     f'{line[:40]!r}')
    try:
      header[key] = float(line[len(key):])
    except ValueError:
      raise BvhError(f'{source} line {number}: bad value in {line!r}') from None
  num_frames = int(header['Frames:'])
  frame_time = header['Frame Time:']
  if num_frames < 1 or frame_time <= 0:
    raise BvhError(f'{source} line {motion_line + 1}: need Frames >= 1 and '
                   f'Frame Time > 0, got {num_frames} and {frame_time}')
  motion = np.empty((num_frames, total), np.float64)
  for frame in range(num_frames):
    if number + frame >= len(lines):
      raise BvhError(f'{source} line {number + frame + 1}: file ends after '
                     f'{frame} of {num_frames} frames')
    values = lines[number + frame].split()
    if len(values) != total:
      raise BvhError(f'{source} line {number + frame + 1}: expected {total} '
                     f'channel values, got {len(values)}')
    try:
      motion[frame] = [float(v) for v in values]
    except ValueError:
      raise BvhError(f'{source} line {number + frame + 1}: a channel value '
                     'is not a number') from None
  if not np.all(np.isfinite(motion)):
    bad = int(np.argwhere(~np.isfinite(motion))[0, 0])
    raise BvhError(f'{source} line {number + bad + 1}: NaN or infinite value')
  return BvhClip(names=names, parents=parents,
                 offsets=np.array(offsets, np.float64), channels=channels,
                 channel_start=channel_start, frame_time=frame_time,
                 motion=motion)


def read_bvh(path) -> BvhClip:
  """Reads and parses a BVH file (see `parse_bvh`)."""
  path = pathlib.Path(path)
  try:
    text = path.read_text(encoding='utf-8', errors='strict')
  except (OSError, UnicodeDecodeError) as error:
    raise BvhError(f'{path}: cannot read ({error})') from None
  return parse_bvh(text, str(path))


def _axis_rotation(axis: str, degrees: np.ndarray) -> np.ndarray:
  """float64 [frames, 3, 3] rotations about a coordinate axis."""
  angle = np.radians(degrees)
  c, s = np.cos(angle), np.sin(angle)
  one, zero = np.ones_like(angle), np.zeros_like(angle)
  if axis == 'X':
    rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
  elif axis == 'Y':
    rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
  else:
    rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
  return np.stack([np.stack(row, -1) for row in rows], -2)


def forward_kinematics(clip: BvhClip) -> np.ndarray:
  """Global node positions of every frame.

  Args:
    clip: a parsed BVH clip.

  Returns:
    float64 `[frames, nodes, 3]` in file units.
  """
  frames = clip.num_frames
  rotations = [None] * len(clip.names)
  positions = np.zeros((frames, len(clip.names), 3))
  for node, parent in enumerate(clip.parents):
    translation = np.broadcast_to(clip.offsets[node], (frames, 3)).copy()
    rotation = np.broadcast_to(np.eye(3), (frames, 3, 3)).copy()
    for k, channel in enumerate(clip.channels[node]):
      values = clip.motion[:, clip.channel_start[node] + k]
      axis, kind = channel[0], channel[1:]
      if kind == 'position':
        translation[:, 'XYZ'.index(axis)] += values
      else:
        rotation = rotation @ _axis_rotation(axis, values)
    if parent < 0:
      positions[:, node] = translation
      rotations[node] = rotation
    else:
      parent_rotation = rotations[parent]
      positions[:, node] = positions[:, parent] + np.einsum(
          'fij,fj->fi', parent_rotation, translation)
      rotations[node] = parent_rotation @ rotation
  return positions


@dataclasses.dataclass(frozen=True)
class H36mMapping:
  """How BVH nodes give the 17 Human3.6M joints.

  Attributes:
    name: a label for messages.
    joints: per H36M joint (in H36M order), the BVH node names whose mean
      position is that joint.
    units_to_mm: millimetres per BVH length unit.
    up_axis: 1 for Y up, 2 for Z up.
  """

  name: str
  joints: tuple[tuple[str, ...], ...]
  units_to_mm: float
  up_axis: int = 1


def _mapping(name, table, units_to_mm, up_axis=1) -> H36mMapping:
  joints = []
  for joint in skeleton_lib.H36M.joint_names:
    nodes = table[joint]
    joints.append((nodes,) if isinstance(nodes, str) else tuple(nodes))
  return H36mMapping(name=name, joints=tuple(joints),
                     units_to_mm=units_to_mm, up_axis=up_axis)


# CMU conversions. The CMU torso chain has a zero-length bone at the base of
# the neck (Spine1 -> Neck, Chest2 -> lowerneck), which sits about 7 cm below
# the shoulders. Human3.6M's thorax is at shoulder height, its neck/nose joint
# about 10 cm above that and the head top another 10 cm up, so the thorax is
# taken one node higher (Neck1 / Neck), the nose at the Head joint, the head
# top at the head end site, and the spine halfway between pelvis and thorax
# (H36M's spine joint sits at 47% of that distance).
BUILTIN_MAPPINGS = {
    'cmu_motionbuilder': _mapping('cmu_motionbuilder', {
        'pelvis': 'Hips',
        'r_hip': 'RightUpLeg', 'r_knee': 'RightLeg', 'r_ankle': 'RightFoot',
        'l_hip': 'LeftUpLeg', 'l_knee': 'LeftLeg', 'l_ankle': 'LeftFoot',
        'spine': ('Hips', 'Neck1'), 'thorax': 'Neck1', 'neck': 'Head',
        'head': 'Head.end',
        'l_shoulder': 'LeftArm', 'l_elbow': 'LeftForeArm',
        'l_wrist': 'LeftHand',
        'r_shoulder': 'RightArm', 'r_elbow': 'RightForeArm',
        'r_wrist': 'RightHand',
    }, CMU_UNITS_TO_MM),
    'cmu_3dsmax': _mapping('cmu_3dsmax', {
        'pelvis': 'Hips',
        'r_hip': 'RightHip', 'r_knee': 'RightKnee', 'r_ankle': 'RightAnkle',
        'l_hip': 'LeftHip', 'l_knee': 'LeftKnee', 'l_ankle': 'LeftAnkle',
        'spine': ('Hips', 'Neck'), 'thorax': 'Neck', 'neck': 'Head',
        'head': 'Head.end',
        'l_shoulder': 'LeftShoulder', 'l_elbow': 'LeftElbow',
        'l_wrist': 'LeftWrist',
        'r_shoulder': 'RightShoulder', 'r_elbow': 'RightElbow',
        'r_wrist': 'RightWrist',
    }, CMU_UNITS_TO_MM),
}


def detect_mapping(clip: BvhClip, source: str = '<bvh>') -> H36mMapping:
  """Picks the built-in mapping whose node names the clip has.

  Raises:
    BvhError: if neither CMU naming scheme matches.
  """
  names = set(clip.names)
  for mapping in BUILTIN_MAPPINGS.values():
    if all(node in names for nodes in mapping.joints for node in nodes):
      return mapping
  raise BvhError(
      f'{source}: unknown skeleton naming (joints: '
      f'{", ".join(n for n in clip.names if not n.endswith(".end"))}); '
      'pass a mapping file (--mapping MAP.json)')


def load_mapping(path) -> H36mMapping:
  """Reads a JSON mapping file (format in the module docstring).

  Raises:
    ValueError: naming the file and the missing or bad field.
  """
  path = pathlib.Path(path)
  try:
    spec = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as error:
    raise ValueError(f'{path}: cannot read mapping ({error})') from None
  if not isinstance(spec, dict) or not isinstance(spec.get('joints'), dict):
    raise ValueError(f'{path}: expected an object with a "joints" object')
  missing = [j for j in skeleton_lib.H36M.joint_names
             if j not in spec['joints']]
  if missing:
    raise ValueError(f'{path}: "joints" lacks {missing}')
  units = spec.get('units_to_mm')
  if not isinstance(units, (int, float)) or units <= 0:
    raise ValueError(f'{path}: "units_to_mm" must be a positive number, got '
                     f'{units!r}')
  up = spec.get('up_axis', 'y')
  if up not in ('y', 'z'):
    raise ValueError(f'{path}: "up_axis" must be "y" or "z", got {up!r}')
  return _mapping(str(path), spec['joints'], float(units),
                  1 if up == 'y' else 2)


def to_h36m(clip: BvhClip, mapping: H36mMapping,
            source: str = '<bvh>') -> np.ndarray:
  """Human3.6M joints of every frame of a clip (native frame rate).

  Drops a calibration first frame (nearly all rotation channels zero).

  Args:
    clip: a parsed BVH clip.
    mapping: the node mapping.
    source: file name for messages.

  Returns:
    float64 `[frames, 17, 3]` world millimetres.

  Raises:
    BvhError: if a mapped node is missing or the body size is implausible.
  """
  for joint, nodes in zip(skeleton_lib.H36M.joint_names, mapping.joints):
    for node in nodes:
      if node not in clip.names:
        raise BvhError(f'{source}: mapping {mapping.name} needs node '
                       f'{node!r} for H36M joint {joint!r}, not in the file')
  rotation_columns = [
      clip.channel_start[n] + k for n in range(len(clip.names))
      for k, c in enumerate(clip.channels[n]) if c.endswith('rotation')]
  if clip.num_frames > 1 and rotation_columns:
    # The CMU calibration frame is a rest pose: nearly every rotation is
    # exactly 0 (01_01 keeps 4 fixed hip-joint angles), unlike real motion.
    zeros = clip.motion[:2, rotation_columns] == 0
    if zeros[0].mean() >= 0.9 and zeros[1].mean() < 0.5:
      clip = dataclasses.replace(clip, motion=clip.motion[1:])
  nodes = forward_kinematics(clip)
  index = {name: i for i, name in enumerate(clip.names)}
  joints = np.stack(
      [nodes[:, [index[n] for n in node_names]].mean(axis=1)
       for node_names in mapping.joints], axis=1)
  joints *= mapping.units_to_mm
  # Body size from the first frame: head top to the lower ankle along up.
  up = mapping.up_axis
  height = joints[0, 10, up] - min(joints[0, 3, up], joints[0, 6, up])
  thigh = np.linalg.norm(joints[0, 2] - joints[0, 1])
  low, high = _PLAUSIBLE_HEIGHT_MM
  if not (low / 3 < thigh < high / 3 and height < high):
    raise BvhError(
        f'{source}: implausible body size (thigh {thigh / 1000:.2f} m, head '
        f'{height / 1000:.2f} m above the ankles) with {mapping.units_to_mm} '
        'mm per unit; wrong units or mapping?')
  return joints


def resample(poses: np.ndarray, source_fps: float,
             target_fps: float = TARGET_FPS) -> np.ndarray:
  """Linear interpolation of joint positions at t_k = k / target_fps.

  Args:
    poses: `[frames, joints, 3]` sampled at `source_fps`.
    source_fps: input frame rate.
    target_fps: output frame rate.

  Returns:
    `[frames_out, joints, 3]`, frames_out = floor(duration * target_fps) + 1
    with duration = (frames - 1) / source_fps.
  """
  frames = poses.shape[0]
  duration = (frames - 1) / source_fps
  times = np.arange(int(np.floor(duration * target_fps + 1e-9)) + 1)
  position = times / target_fps * source_fps
  low = np.minimum(np.floor(position).astype(np.int64), frames - 1)
  high = np.minimum(low + 1, frames - 1)
  weight = (position - low)[:, None, None]
  return poses[low] * (1 - weight) + poses[high] * weight


def load_h36m_motion(path, mapping: H36mMapping | None = None,
                     fps: float = TARGET_FPS):
  """Reads a BVH file as Human3.6M joints at `fps`.

  Args:
    path: the BVH file.
    mapping: node mapping; None picks a built-in CMU mapping by joint names.
    fps: output frame rate.

  Returns:
    (poses, up_axis): float64 `[frames, 17, 3]` world mm and the up axis.

  Raises:
    BvhError: unreadable file, unknown naming, implausible size.
  """
  clip = read_bvh(path)
  if mapping is None:
    mapping = detect_mapping(clip, str(path))
  poses = to_h36m(clip, mapping, str(path))
  poses = resample(poses, clip.fps, fps)
  if poses.shape[0] < 2:
    raise BvhError(f'{path}: fewer than 2 frames at {fps:g} fps')
  return poses, mapping.up_axis


def write_npz_atomic(path, arrays: dict) -> None:
  """Writes an npz next to `path` under a temporary name, then renames it."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with atomic_output.atomic_output(path) as f:
    np.savez(f, **arrays)


def convert(input_path, output_path, *, num_cameras: int = 4, seed: int = 0,
            noise_px: float = 0.0, mapping_path=None) -> dict:
  """BVH file -> npz of virtual-camera views (the CLI's work).

  Returns:
    The arrays written (see the module docstring).
  """
  mapping = load_mapping(mapping_path) if mapping_path else None
  poses_world, up_axis = load_h36m_motion(input_path, mapping)
  rng = np.random.default_rng(seed)
  views = cameras_lib.render_views(
      poses_world, num_cameras, rng, noise_px=noise_px, up_axis=up_axis)
  arrays = {
      'keypoints_2d': np.stack([v.keypoints_2d for v in views]),
      'poses_3d': np.stack([v.poses_camera for v in views]),
      'image_size': np.array([[v.camera.width, v.camera.height]
                              for v in views], np.int32),
      'intrinsics': np.stack([v.camera.matrix for v in views]).astype(
          np.float32),
      'rotation': np.stack([v.camera.rotation for v in views]).astype(
          np.float32),
      'position': np.stack([v.camera.position for v in views]).astype(
          np.float32),
      'poses_world': poses_world.astype(np.float32),
      'fps': np.float32(TARGET_FPS),
  }
  write_npz_atomic(output_path, arrays)
  return arrays


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m l2a_jax.data.bvh',
      description=('Convert a BVH file to Human3.6M 17-joint 2D keypoints '
                   'and camera-space 3D poses seen by K virtual cameras.'))
  parser.add_argument('--input', required=True, help='FILE.bvh')
  parser.add_argument('--output', required=True, help='OUT.npz')
  parser.add_argument('--num_cameras', type=int, default=4,
                      help='virtual cameras K (default 4)')
  parser.add_argument('--seed', type=int, default=0,
                      help='seed of camera placement and noise (default 0)')
  parser.add_argument('--noise_px', type=float, default=0.0,
                      help='detector-like 2D noise sigma in pixels; 0 = exact '
                      '2D with confidence 1 (default)')
  parser.add_argument('--mapping', default=None,
                      help='JSON joint mapping for non-CMU skeletons')
  args = parser.parse_args(argv)
  try:
    if args.num_cameras < 1:
      raise ValueError(f'--num_cameras must be >= 1, got {args.num_cameras}')
    arrays = convert(args.input, args.output, num_cameras=args.num_cameras,
                     seed=args.seed, noise_px=args.noise_px,
                     mapping_path=args.mapping)
  except (ValueError, OSError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  k, f = arrays['keypoints_2d'].shape[:2]
  print(f'wrote {args.output}: {k} cameras x {f} frames at '
        f'{TARGET_FPS:g} fps')
  return 0


if __name__ == '__main__':
  sys.exit(main())
