r"""BVH motion capture -> Human3.6M 17 joints seen by virtual cameras.

Reader: the HIERARCHY (ROOT / JOINT / End Site, OFFSET, CHANNELS in any order
and count, nested to any depth) and MOTION sections, LF or CRLF line
endings. End sites are named '<parent>.end' (e.g. 'Head.end'). Every problem
is a `BvhError` naming the file, the line and what was expected.

Forward kinematics: a joint's global transform = parent global transform x
translation x the rotations in CHANNELS order (degrees). Exporters disagree
on what the position channels of a joint hold (`position_channels`):

  'added'     translation = OFFSET + channel values (the usual reading; CMU
              files have position channels on the root only)
  'absolute'  the channels hold the full local translation and OFFSET is
              only the rest pose (exporters that write 6 channels on every
              joint); adding them would double every bone
  'auto'      (default) 'absolute' when the position channels of the
              non-root joints hold values near their OFFSET (their median
              over the clip is closer to OFFSET than to 0), else 'added'

Joint mapping to Human3.6M (`BUILTIN_SKELETONS`, chosen by the node names):
the two CMU conversions (the MotionBuilder-friendly names of 01_01.bvh and
the 3dsMax-friendly names of 131_01.bvh; CMU length unit = 56.444 mm), with
joints placed where Human3.6M defines them (pelvis between the hip joints,
thorax at shoulder height; docs/data.md). Any other skeleton needs a JSON
mapping file:

  {"joints": {
     "pelvis": ["UpperLeg_L", "UpperLeg_R"],       # a list: the mean
     "spine": {"weights": {"Hips": 0.4, "Spine": 0.6}},  # weights sum to 1
     "head": {"bone": ["Neck", "Head"], "beyond_mm": 110},  # along a bone
     "r_shoulder": {"bone": ["Shoulder_R", "UpperArm_R"], "beyond_mm": 25},
     "thorax": {"bone": ["Chest", "Neck"], "at": 0.7},   # 70% along it
     "r_hip": "UpperLeg_R", ...},                 # a string: one node
   "units_to_mm": 10.0,                          # file length unit in mm
   "up_axis": "y",                               # "y" (default) or "z"
   "position_channels": "auto"}                  # or "added" / "absolute"

with all 17 names of `skeleton.H36M.joint_names`. A "bone" [A, B] joint is
A + at * (B - A) (at = 1 by default), or the "weights" point when both are
given, moved a further `beyond_mm` along A -> B (negative: backwards).

Checks after the mapping (every frame of the clip, at the native rate): the
bone lengths of `HUMAN_BONES` within human ranges, the limb bones rigid
(longest / shortest <= 1.2), the standing height along the bones within
`HUMAN_HEIGHT_MM`; a failure names the bone, its lengths and the range.
A zero-offset End Site that the mapping uses (the head of re-exported CMU
files) is placed at a distance and direction from Human3.6M's rest-pose
proportions, with one warning (`BvhWarning`) per file. A calibration first
frame (the CMU T-pose: at least 90% of its rotation channels exactly 0 while
the next frame has under 50%) is dropped.

CLI:

  python -m l2a_jax.data.bvh --input FILE.bvh --output OUT.npz \
      [--num_cameras K] [--seed S] [--noise_px SIGMA] [--mapping MAP.json] \
      [--position_channels auto|added|absolute]

writes `keypoints_2d` float32 [K, F, 17, 3] (pixels + confidence), `poses_3d`
float32 [K, F, 17, 3] (camera mm), `image_size` int32 [K, 2] (w, h),
`intrinsics` float32 [K, 3, 3] (pinhole K), `rotation` float32 [K, 3, 3]
(world -> camera), `position` float32 [K, 3] (camera centre, world mm),
`poses_world` float32 [F, 17, 3] (world mm) and `fps` (50). Warnings are
printed as `warning: ...` lines on stderr.

`--coco_json OUT.json [--camera K]` also writes camera K's pixel keypoints
as a COCO-17 keypoint annotation file (`images` with width / height, one
`annotations` record per frame, image ids = frame numbers), the input a
2D detector would give `python -m l2a_jax.predict`. COCO's face points are
placed around the Human3.6M head (`coco_keypoints`).
"""

import dataclasses
import json
import math
import pathlib
import re
import sys
import warnings

import numpy as np

from l2a_jax import atomic_output
from l2a_jax import cli
from l2a_jax.data import cameras as cameras_lib
from l2a_jax.data import skeleton as skeleton_lib

# One CMU length unit: (1 / 0.45) inch.
CMU_UNITS_TO_MM = 25.4 / 0.45
TARGET_FPS = 50.0
# Accepted `Frame Time` (seconds): 5 fps at the slowest, so resampling to
# 50 fps interpolates at most 10 frames per source frame.
FRAME_TIME_RANGE_S = (1e-5, 0.2)
# Joint positions beyond this distance from the origin (100 km) mean broken
# position channels or units.
MAX_POSITION_MM = 1e8
POSITION_CHANNEL_CONVENTIONS = ('auto', 'added', 'absolute')


class BvhError(ValueError):
  """A BVH file that cannot be read; the message names file and line."""


class BvhWarning(UserWarning):
  """Something in a BVH file that was repaired or guessed (the message says
  what and how)."""


@dataclasses.dataclass(frozen=True)
class HumanBone:
  """A Human3.6M bone with its reference length and accepted human range.

  Attributes:
    name: e.g. 'r_thigh'.
    parent: H36M joint index of the upper end.
    child: H36M joint index of the lower end.
    reference_mm: Human3.6M's approximate adult length
      (data_and_metrics.md section 10.2).
    low_mm: shortest accepted length.
    high_mm: longest accepted length.
    rigid: a limb bone whose length must not change over a clip.
  """

  name: str
  parent: int
  child: int
  reference_mm: float
  low_mm: float
  high_mm: float
  rigid: bool = False


def _bones():
  # (name, reference, low, high, rigid, [(parent, child) right, left]).
  table = (
      ('hip', 130, 30, 250, False, ((0, 1), (0, 4))),
      ('thigh', 440, 250, 650, True, ((1, 2), (4, 5))),
      ('shin', 450, 250, 650, True, ((2, 3), (5, 6))),
      ('pelvis_spine', 230, 50, 450, False, ((0, 7),)),
      ('spine_thorax', 255, 50, 450, False, ((7, 8),)),
      ('thorax_nose', 115, 30, 300, False, ((8, 9),)),
      ('nose_head', 115, 30, 300, False, ((9, 10),)),
      ('shoulder', 150, 50, 320, False, ((8, 14), (8, 11))),
      ('upper_arm', 280, 170, 420, True, ((14, 15), (11, 12))),
      ('forearm', 250, 130, 380, True, ((15, 16), (12, 13))),
  )
  bones = []
  for name, reference, low, high, rigid, pairs in table:
    sides = ('r_', 'l_') if len(pairs) == 2 else ('',)
    for side, (parent, child) in zip(sides, pairs):
      bones.append(HumanBone(side + name, parent, child, reference, low,
                             high, rigid))
  return tuple(bones)


# The 16 Human3.6M bones with reference lengths and the accepted ranges
# (wide enough for small and tall adults and for the joint definitions of
# different exporters; a doubled or halved skeleton falls outside).
HUMAN_BONES = _bones()
# Standing height along the bones: mean (thigh + shin) + pelvis -> spine ->
# thorax -> nose -> head top (Human3.6M's reference: 1605 mm).
HUMAN_HEIGHT_MM = (1000.0, 2100.0)
# A rigid limb bone may vary by this ratio (longest / shortest) over a clip.
RIGID_BONE_RATIO = 1.2
_BONE_REFERENCE = {(b.parent, b.child): b.reference_mm for b in HUMAN_BONES}
_LEG_REFERENCE_MM = 440.0 + 450.0


@dataclasses.dataclass
class BvhClip:
  """A parsed BVH file.

  Attributes:
    names: node names in file order (end sites as '<parent>.end').
    parents: parent index per node (-1 for the root); parents come first.
    offsets: float64 [nodes, 3] OFFSET per node, file units.
    channels: per node, the channel names in file order ([] for end sites).
    channel_start: per node, the column of its first channel in `motion`.
    frame_time: seconds per frame.
    motion: float64 [frames, total_channels].
    end_sites: per node, whether it is an End Site.
  """

  names: list[str]
  parents: list[int]
  offsets: np.ndarray
  channels: list[list[str]]
  channel_start: list[int]
  frame_time: float
  motion: np.ndarray
  end_sites: list[bool] = dataclasses.field(default_factory=list)

  def __post_init__(self):
    if not self.end_sites:
      self.end_sites = [name.endswith('.end') and not channels
                        for name, channels in zip(self.names, self.channels)]

  @property
  def fps(self) -> float:
    return 1.0 / self.frame_time

  @property
  def num_frames(self) -> int:
    return self.motion.shape[0]


_VALID_CHANNELS = ('Xposition', 'Yposition', 'Zposition', 'Xrotation',
                   'Yrotation', 'Zrotation')
_INTEGER = re.compile(r'^[+]?\d+$')


def _finite_float(token: str):
  """float(token) if it is a finite number, else None."""
  try:
    value = float(token)
  except ValueError:
    return None
  return value if math.isfinite(value) else None


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

  def fail(message, line):
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

  def take_offset(name):
    values = []
    for _ in range(3):
      token, line = take()
      value = _finite_float(token)
      if value is None:
        fail(f'OFFSET of {name}: expected a finite number, got {token!r}',
             line)
      values.append(value)
    return values

  names, parents, offsets, channels, end_sites = [], [], [], [], []
  known = set()

  def open_node(name, parent, line, end_site=False):
    if name in known:
      fail(f'duplicate joint name {name!r}', line)
    known.add(name)
    names.append(name)
    parents.append(parent)
    offsets.append(None)
    channels.append([])
    end_sites.append(end_site)
    take('{')
    return len(names) - 1

  take('HIERARCHY')
  take('ROOT')
  root_name, line = take()
  # Iterative descent (any nesting depth): the stack holds the open joints.
  stack = [(open_node(root_name, -1, line), line)]
  while stack:
    index, open_line = stack[-1]
    name = names[index]
    token, line = take()
    if token == 'OFFSET':
      offsets[index] = take_offset(name)
    elif token == 'CHANNELS':
      count_token, count_line = take()
      if not _INTEGER.match(count_token) or int(count_token) > 6:
        fail(f'CHANNELS of {name}: expected a count 0-6, got '
             f'{count_token!r}', count_line)
      for _ in range(int(count_token)):
        channel, channel_line = take()
        if channel not in _VALID_CHANNELS:
          fail(f'joint {name}: unknown channel {channel!r}', channel_line)
        if channel in channels[index]:
          fail(f'joint {name}: channel {channel} given twice', channel_line)
        channels[index].append(channel)
    elif token == 'JOINT':
      child_name, child_line = take()
      stack.append((open_node(child_name, index, child_line), child_line))
    elif token == 'End':
      take('Site')
      end_index = open_node(f'{name}.end', index, line, end_site=True)
      take('OFFSET')
      offsets[end_index] = take_offset(names[end_index])
      take('}')
    elif token == '}':
      if offsets[index] is None:
        fail(f'joint {name} has no OFFSET', open_line)
      stack.pop()
    else:
      fail(f'joint {name}: unexpected {token!r}', line)
  if position != len(tokens):
    fail(f'unexpected {tokens[position][0]!r} after the ROOT joint',
         tokens[position][1])

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
    header[key] = (line[len(key):].strip(), number)
  frames_token, frames_line = header['Frames:']
  if not _INTEGER.match(frames_token) or int(frames_token) < 1:
    raise BvhError(f'{source} line {frames_line}: Frames: expected a whole '
                   f'number >= 1, got {frames_token[:40]!r}')
  num_frames = int(frames_token)
  time_token, time_line = header['Frame Time:']
  frame_time = _finite_float(time_token)
  low, high = FRAME_TIME_RANGE_S
  if frame_time is None or not low <= frame_time <= high:
    raise BvhError(
        f'{source} line {time_line}: Frame Time: expected seconds per frame '
        f'in [{low:g}, {high:g}] ({1 / high:g}-{1 / low:g} fps), got '
        f'{time_token[:40]!r}')
  # Motion lines: every non-blank line after the header (blank lines at the
  # end are common); their count must equal Frames.
  body = [(n, line) for n, line in enumerate(lines[number:], number + 1)
          if line.strip()]
  if len(body) < num_frames:
    raise BvhError(f'{source} line {frames_line}: file ends after '
                   f'{len(body)} of {num_frames} frames')
  if len(body) > num_frames:
    raise BvhError(
        f'{source} line {frames_line}: Frames: {num_frames} but '
        f'{len(body)} motion lines follow; fix the Frames header (or '
        'truncate the file)')
  motion = np.empty((num_frames, total), np.float64)
  for frame, (line_number, line) in enumerate(body):
    values = line.split()
    if len(values) != total:
      raise BvhError(f'{source} line {line_number}: expected {total} '
                     f'channel values, got {len(values)}')
    try:
      motion[frame] = [float(v) for v in values]
    except ValueError:
      raise BvhError(f'{source} line {line_number}: a channel value '
                     'is not a number') from None
  if not np.all(np.isfinite(motion)):
    bad = int(np.argwhere(~np.isfinite(motion))[0, 0])
    raise BvhError(f'{source} line {body[bad][0]}: NaN or infinite value')
  return BvhClip(names=names, parents=parents,
                 offsets=np.array(offsets, np.float64).reshape(-1, 3),
                 channels=channels, channel_start=channel_start,
                 frame_time=frame_time, motion=motion, end_sites=end_sites)


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


def detect_position_channels(clip: BvhClip) -> tuple[str, list[str]]:
  """Which convention the position channels of non-root joints follow.

  A non-root joint with position channels and a non-zero OFFSET votes
  'absolute' when the median of its channel values over the clip (its rest
  value) is closer to its OFFSET than to 0, else 'added'.

  Args:
    clip: a parsed clip.

  Returns:
    (convention, dissenters): the majority convention ('added' when no joint
    votes) and the joints that voted the other way.
  """
  scale = max(1.0, float(np.max(np.linalg.norm(clip.offsets, axis=-1),
                                initial=0.0)))
  votes = {}
  for node, parent in enumerate(clip.parents):
    if parent < 0:
      continue
    columns, axes = [], []
    for k, channel in enumerate(clip.channels[node]):
      if channel.endswith('position'):
        columns.append(clip.channel_start[node] + k)
        axes.append('XYZ'.index(channel[0]))
    if not columns:
      continue
    offset = clip.offsets[node, axes]
    if np.linalg.norm(offset) <= 1e-9 * scale:
      continue  # a zero OFFSET reads the same either way
    rest = np.median(clip.motion[:, columns], axis=0)
    votes[clip.names[node]] = bool(
        np.linalg.norm(rest - offset) < np.linalg.norm(rest))
  if not votes:
    return 'added', []
  absolute = 2 * sum(votes.values()) > len(votes)
  dissenters = [name for name, vote in votes.items() if vote != absolute]
  return ('absolute' if absolute else 'added'), dissenters


def forward_kinematics(clip: BvhClip,
                       position_channels: str = 'added') -> np.ndarray:
  """Global node positions of every frame.

  Args:
    clip: a parsed BVH clip.
    position_channels: 'added' (translation = OFFSET + position channels) or
      'absolute' (the channels replace OFFSET on their axes); see the module
      docstring.

  Returns:
    float64 `[frames, nodes, 3]` in file units.
  """
  if position_channels not in ('added', 'absolute'):
    raise ValueError(f'position_channels: expected added | absolute, got '
                     f'{position_channels!r}')
  frames = clip.num_frames
  rotations = [None] * len(clip.names)
  positions = np.zeros((frames, len(clip.names), 3))
  with np.errstate(over='ignore', invalid='ignore'):
    for node, parent in enumerate(clip.parents):
      translation = np.broadcast_to(clip.offsets[node], (frames, 3)).copy()
      rotation = np.broadcast_to(np.eye(3), (frames, 3, 3)).copy()
      for k, channel in enumerate(clip.channels[node]):
        values = clip.motion[:, clip.channel_start[node] + k]
        axis, kind = channel[0], channel[1:]
        if kind == 'position':
          if position_channels == 'absolute':
            translation[:, 'XYZ'.index(axis)] = values
          else:
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


def _rest_positions(clip: BvhClip) -> np.ndarray:
  """float64 [nodes, 3]: every rotation 0 and translation = OFFSET."""
  rest = np.zeros((len(clip.names), 3))
  for node, parent in enumerate(clip.parents):
    rest[node] = clip.offsets[node] + (rest[parent] if parent >= 0 else 0)
  return rest


# --------------------------------------------------------------------------
# Mapping to Human3.6M
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class JointSource:
  """How one Human3.6M joint is computed from BVH nodes.

  position = sum_i weights[i] * node(nodes[i])
             + beyond_mm * unit(node(bone[1]) - node(bone[0]))

  Attributes:
    nodes: BVH node names.
    weights: one weight per node, summing to 1.
    bone: optional (from, to) node names of the direction of `beyond_mm`.
    beyond_mm: distance moved along `bone` (mm).
  """

  nodes: tuple[str, ...]
  weights: tuple[float, ...]
  bone: tuple[str, str] | None = None
  beyond_mm: float = 0.0

  @property
  def all_nodes(self) -> tuple[str, ...]:
    return self.nodes + (self.bone or ())


@dataclasses.dataclass(frozen=True)
class H36mMapping:
  """How BVH nodes give the 17 Human3.6M joints.

  Attributes:
    name: a label for messages.
    joints: per H36M joint (in H36M order), its `JointSource`.
    units_to_mm: millimetres per BVH length unit.
    up_axis: 1 for Y up, 2 for Z up.
    position_channels: 'auto', 'added' or 'absolute' (module docstring).
  """

  name: str
  joints: tuple[JointSource, ...]
  units_to_mm: float
  up_axis: int = 1
  position_channels: str = 'auto'

  @property
  def nodes(self) -> tuple[str, ...]:
    """Every node name the mapping reads, once, in joint order."""
    return tuple(dict.fromkeys(n for j in self.joints for n in j.all_nodes))


def _name(value, where):
  if not isinstance(value, str) or not value:
    raise ValueError(f'{where}: expected a node name (a string), got '
                     f'{value!r}')
  return value


def _number(value, where):
  if isinstance(value, bool) or not isinstance(value, (int, float)) or (
      not math.isfinite(value)):
    raise ValueError(f'{where}: expected a finite number, got {value!r}')
  return float(value)


def joint_source(spec, where: str) -> JointSource:
  """Parses one joint of a mapping (forms in the module docstring).

  Args:
    spec: a node name, a list of names (their mean), or an object with
      "weights" and/or "bone" (+ "at", "beyond_mm").
    where: prefix of error messages (file and joint).

  Raises:
    ValueError: naming `where`, the field and what was expected.
  """
  if isinstance(spec, str):
    return JointSource(nodes=(_name(spec, where),), weights=(1.0,))
  if isinstance(spec, list):
    if not spec:
      raise ValueError(f'{where}: expected at least one node name, got []')
    nodes = tuple(_name(n, f'{where}[{i}]') for i, n in enumerate(spec))
    return JointSource(nodes=nodes, weights=(1.0 / len(nodes),) * len(nodes))
  if not isinstance(spec, dict):
    raise ValueError(
        f'{where}: expected a node name, a list of names or an object with '
        f'"weights" / "bone", got {spec!r}')
  unknown = set(spec) - {'weights', 'bone', 'at', 'beyond_mm'}
  if unknown:
    raise ValueError(f'{where}: unknown keys {sorted(unknown)} (expected '
                     'weights, bone, at, beyond_mm)')
  if 'weights' not in spec and 'bone' not in spec:
    raise ValueError(f'{where}: an object needs "weights" or "bone"')
  bone = None
  if 'bone' in spec:
    value = spec['bone']
    if not isinstance(value, list) or len(value) != 2:
      raise ValueError(f'{where}.bone: expected [from_node, to_node], got '
                       f'{value!r}')
    bone = (_name(value[0], f'{where}.bone[0]'),
            _name(value[1], f'{where}.bone[1]'))
    if bone[0] == bone[1]:
      raise ValueError(f'{where}.bone: the two nodes are the same '
                       f'({bone[0]!r})')
  elif 'at' in spec or 'beyond_mm' in spec:
    raise ValueError(f'{where}: "at" and "beyond_mm" need a "bone"')
  if 'weights' in spec:
    if 'at' in spec:
      raise ValueError(f'{where}: give "weights" or "at", not both')
    weights = spec['weights']
    if not isinstance(weights, dict) or not weights:
      raise ValueError(f'{where}.weights: expected an object node -> '
                       f'weight, got {weights!r}')
    nodes = tuple(_name(n, f'{where}.weights') for n in weights)
    values = tuple(_number(w, f'{where}.weights[{n!r}]')
                   for n, w in weights.items())
    if abs(sum(values) - 1.0) > 1e-6:
      raise ValueError(f'{where}.weights: must sum to 1 (a point), got '
                       f'{sum(values):g}')
  else:
    at = _number(spec.get('at', 1.0), f'{where}.at')
    nodes, values = bone, (1.0 - at, at)
  beyond = _number(spec.get('beyond_mm', 0.0), f'{where}.beyond_mm')
  return JointSource(nodes=nodes, weights=values, bone=bone,
                     beyond_mm=beyond)


def make_mapping(name: str, joints: dict, units_to_mm: float, up_axis='y',
                 position_channels='auto') -> H36mMapping:
  """A mapping from a joint table (the "joints" object of a mapping file).

  Raises:
    ValueError: a missing or malformed field, named with `name`.
  """
  if not isinstance(joints, dict):
    raise ValueError(f'{name}: "joints": expected an object, got '
                     f'{type(joints).__name__}')
  missing = [j for j in skeleton_lib.H36M.joint_names if j not in joints]
  if missing:
    raise ValueError(f'{name}: "joints" lacks {missing}')
  extra = sorted(set(joints) - set(skeleton_lib.H36M.joint_names))
  if extra:
    raise ValueError(f'{name}: "joints" has unknown H36M joints {extra} '
                     f'(expected {list(skeleton_lib.H36M.joint_names)})')
  units = _number(units_to_mm, f'{name}: "units_to_mm"')
  if units <= 0:
    raise ValueError(f'{name}: "units_to_mm" must be a positive number, got '
                     f'{units_to_mm!r}')
  if up_axis not in ('y', 'z'):
    raise ValueError(f'{name}: "up_axis" must be "y" or "z", got '
                     f'{up_axis!r}')
  if position_channels not in POSITION_CHANNEL_CONVENTIONS:
    raise ValueError(f'{name}: "position_channels" must be one of '
                     f'{list(POSITION_CHANNEL_CONVENTIONS)}, got '
                     f'{position_channels!r}')
  sources = tuple(joint_source(joints[j], f'{name}: joints.{j}')
                  for j in skeleton_lib.H36M.joint_names)
  return H36mMapping(name=name, joints=sources, units_to_mm=units,
                     up_axis=1 if up_axis == 'y' else 2,
                     position_channels=position_channels)


def load_mapping(path) -> H36mMapping:
  """Reads a JSON mapping file (format in the module docstring).

  Raises:
    ValueError: naming the file and the missing or bad field.
  """
  path = pathlib.Path(path)
  try:
    spec = json.loads(path.read_text(encoding='utf-8'))
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
    raise ValueError(f'{path}: cannot read mapping ({error})') from None
  if not isinstance(spec, dict) or not isinstance(spec.get('joints'), dict):
    raise ValueError(f'{path}: expected an object with a "joints" object')
  unknown = sorted(set(spec) - {'joints', 'units_to_mm', 'up_axis',
                                'position_channels', 'comment'})
  if unknown:
    raise ValueError(f'{path}: unknown keys {unknown} (expected joints, '
                     'units_to_mm, up_axis, position_channels, comment)')
  return make_mapping(str(path), spec['joints'], spec.get('units_to_mm'),
                      spec.get('up_axis', 'y'),
                      spec.get('position_channels', 'auto'))


# Human3.6M's spine joint lies at this fraction of the pelvis -> thorax path
# (pelvis -> spine 230 mm, spine -> thorax 255 mm).
_SPINE_FRACTION = 230.0 / (230.0 + 255.0)


@dataclasses.dataclass(frozen=True)
class BuiltinSkeleton:
  """A known BVH naming scheme and where Human3.6M's joints lie on it.

  The limb joints are nodes. The pelvis is the hip midpoint. The thorax is
  the point of the spine chain at the height of the shoulders, the spine
  the point of the chain at `_SPINE_FRACTION` of the pelvis -> thorax
  height, both measured in each file's rest pose (subjects differ). Neck /
  nose and head top are nodes.

  Attributes:
    name: the mapping's name.
    limbs: H36M joint -> node for hips, knees, ankles, shoulders, elbows
      and wrists.
    spine_chain: nodes from the lower back up to the neck, in order.
    nose: node of H36M's neck/nose joint.
    head_top: node of the head top.
    units_to_mm: millimetres per file unit.
  """

  name: str
  limbs: dict
  spine_chain: tuple[str, ...]
  nose: str
  head_top: str
  units_to_mm: float

  @property
  def nodes(self) -> tuple[str, ...]:
    return (tuple(self.limbs.values()) + self.spine_chain
            + (self.nose, self.head_top))

  def mapping(self, clip: BvhClip, up_axis: int = 1) -> H36mMapping:
    """The H36M mapping fitted to `clip`'s rest pose."""
    index = {name: i for i, name in enumerate(clip.names)}
    rest = _rest_positions(clip)
    height = {n: rest[index[n], up_axis] for n in self.nodes}
    pelvis = (height[self.limbs['l_hip']] + height[self.limbs['r_hip']]) / 2
    shoulders = (height[self.limbs['l_shoulder']]
                 + height[self.limbs['r_shoulder']]) / 2
    spine = pelvis + _SPINE_FRACTION * (shoulders - pelvis)
    joints = dict(self.limbs)
    joints['pelvis'] = [self.limbs['l_hip'], self.limbs['r_hip']]
    joints['thorax'] = self._chain_point(height, shoulders)
    joints['spine'] = self._chain_point(height, spine)
    joints['neck'] = self.nose
    joints['head'] = self.head_top
    return make_mapping(self.name, joints, self.units_to_mm)

  def _chain_point(self, height: dict, target: float) -> dict:
    """{'bone': [a, b], 'at': t}: the chain point at `target` height."""
    chain = self.spine_chain
    segments = [(a, b) for a, b in zip(chain[:-1], chain[1:])
                if height[b] - height[a] > 1e-9]
    for a, b in segments:
      if height[a] <= target <= height[b]:
        break
    else:  # below or above the chain: the nearest end segment, clipped
      a, b = segments[0] if target < height[chain[0]] else segments[-1]
    at = (target - height[a]) / (height[b] - height[a])
    return {'bone': [a, b], 'at': float(np.clip(at, -0.5, 1.5))}


_CMU_LIMBS_MB = {
    'r_hip': 'RightUpLeg', 'r_knee': 'RightLeg', 'r_ankle': 'RightFoot',
    'l_hip': 'LeftUpLeg', 'l_knee': 'LeftLeg', 'l_ankle': 'LeftFoot',
    'l_shoulder': 'LeftArm', 'l_elbow': 'LeftForeArm', 'l_wrist': 'LeftHand',
    'r_shoulder': 'RightArm', 'r_elbow': 'RightForeArm',
    'r_wrist': 'RightHand'}
_CMU_LIMBS_3DSMAX = {
    'r_hip': 'RightHip', 'r_knee': 'RightKnee', 'r_ankle': 'RightAnkle',
    'l_hip': 'LeftHip', 'l_knee': 'LeftKnee', 'l_ankle': 'LeftAnkle',
    'l_shoulder': 'LeftShoulder', 'l_elbow': 'LeftElbow',
    'l_wrist': 'LeftWrist', 'r_shoulder': 'RightShoulder',
    'r_elbow': 'RightElbow', 'r_wrist': 'RightWrist'}

# The CMU conversions. Their `Hips` node sits about 10 cm above the hip
# joints and their `Neck` / `lowerneck` node (the top of the zero-length
# `Spine1 -> Neck` / `Chest2 -> lowerneck` bone) 7-8 cm below the shoulders,
# so neither is used directly (docs/data.md has the measured proportions).
BUILTIN_SKELETONS = {
    'cmu_motionbuilder': BuiltinSkeleton(
        name='cmu_motionbuilder', limbs=_CMU_LIMBS_MB,
        spine_chain=('LowerBack', 'Spine', 'Spine1', 'Neck1'),
        nose='Head', head_top='Head.end', units_to_mm=CMU_UNITS_TO_MM),
    'cmu_3dsmax': BuiltinSkeleton(
        name='cmu_3dsmax', limbs=_CMU_LIMBS_3DSMAX,
        spine_chain=('lowerback', 'Chest', 'Chest2', 'Neck'),
        nose='Head', head_top='Head.end', units_to_mm=CMU_UNITS_TO_MM),
}


def detect_mapping(clip: BvhClip, source: str = '<bvh>') -> H36mMapping:
  """The built-in mapping whose node names the clip has, fitted to it.

  Raises:
    BvhError: if no built-in naming scheme matches.
  """
  names = set(clip.names)
  for builtin in BUILTIN_SKELETONS.values():
    if all(node in names for node in builtin.nodes):
      return builtin.mapping(clip)
  shown = [n for n in clip.names if not n.endswith('.end')]
  listing = ', '.join(shown[:40]) + (', ...' if len(shown) > 40 else '')
  raise BvhError(
      f'{source}: unknown skeleton naming (joints: {listing}); pass a '
      'mapping file (--mapping MAP.json, or mapping.json in the folder)')


def _drop_calibration_frame(clip: BvhClip) -> BvhClip:
  rotation_columns = [
      clip.channel_start[n] + k for n in range(len(clip.names))
      for k, c in enumerate(clip.channels[n]) if c.endswith('rotation')]
  if clip.num_frames > 1 and rotation_columns:
    # The CMU calibration frame is a rest pose: nearly every rotation is
    # exactly 0 (01_01 keeps 4 fixed hip-joint angles), unlike real motion.
    zeros = clip.motion[:2, rotation_columns] == 0
    if zeros[0].mean() >= 0.9 and zeros[1].mean() < 0.5:
      return dataclasses.replace(clip, motion=clip.motion[1:])
  return clip


def _joint_positions(nodes_mm: np.ndarray, index: dict,
                     mapping: H36mMapping, source: str) -> np.ndarray:
  """[..., 17, 3] H36M joints from [..., nodes, 3] node positions (mm)."""
  joints = []
  for joint, spec in zip(skeleton_lib.H36M.joint_names, mapping.joints):
    point = sum(w * nodes_mm[..., index[n], :]
                for n, w in zip(spec.nodes, spec.weights))
    if spec.beyond_mm:
      a, b = (nodes_mm[..., index[n], :] for n in spec.bone)
      length = np.linalg.norm(b - a, axis=-1, keepdims=True)
      if np.any(length <= 1e-6):
        raise BvhError(
            f'{source}: mapping {mapping.name} joint {joint!r}: bone '
            f'{spec.bone[0]} -> {spec.bone[1]} has zero length, so '
            '"beyond_mm" has no direction')
      point = point + spec.beyond_mm * (b - a) / length
    joints.append(point)
  return np.stack(joints, axis=-2)


def _estimate_zero_end_sites(clip: BvhClip, mapping: H36mMapping,
                             source: str) -> BvhClip:
  """Gives zero-offset End Sites the mapping uses a rest-pose estimate.

  The End Site of H36M joint j is placed at reference(j's bone) /
  reference(thigh + shin) x the file's rest-pose leg length from its parent
  node, in the rest-pose direction from the nearest H36M ancestor joint at
  another place to that node (for the head top: thorax -> head, i.e. up the
  neck). Warns once per file, naming each End Site and the distance.
  """
  scale = float(np.max(np.linalg.norm(clip.offsets, axis=-1), initial=0.0))
  index = {name: i for i, name in enumerate(clip.names)}
  zero = [n for n in mapping.nodes
          if clip.end_sites[index[n]]
          and np.linalg.norm(clip.offsets[index[n]]) <= 1e-6 * scale]
  if not zero:
    return clip
  rest_mm = _rest_positions(clip) * mapping.units_to_mm
  rest_joints = _joint_positions(rest_mm, index, mapping, source)
  leg = np.mean([np.linalg.norm(rest_joints[h] - rest_joints[k])
                 + np.linalg.norm(rest_joints[k] - rest_joints[a])
                 for h, k, a in ((1, 2, 3), (4, 5, 6))])
  offsets = clip.offsets.copy()
  notes = []
  for name in zero:
    node, parent = index[name], clip.parents[index[name]]
    joint = next(j for j, spec in enumerate(mapping.joints)
                 if name in spec.all_nodes)
    h36m_parent = skeleton_lib.H36M.parents[joint]
    reference = _BONE_REFERENCE.get((h36m_parent, joint), 115.0)
    length_mm = reference / _LEG_REFERENCE_MM * (
        leg if leg > 1e-6 else _LEG_REFERENCE_MM)
    direction = np.zeros(3)
    ancestor = h36m_parent
    while ancestor >= 0:
      direction = rest_mm[parent] - rest_joints[ancestor]
      if np.linalg.norm(direction) > 1e-6:
        break
      ancestor = skeleton_lib.H36M.parents[ancestor]
    norm = np.linalg.norm(direction)
    if norm <= 1e-6:
      direction, norm = np.eye(3)[mapping.up_axis], 1.0
      ancestor_name = 'the up axis'
    else:
      ancestor_name = skeleton_lib.H36M.joint_names[ancestor]
    # Rest rotations are the identity: a rest-pose direction is also the
    # direction in the parent node's frame.
    offsets[node] = direction / norm * length_mm / mapping.units_to_mm
    notes.append(f'{name} (H36M {skeleton_lib.H36M.joint_names[joint]}) '
                 f'placed {length_mm:.0f} mm from {clip.names[parent]} '
                 f'along {ancestor_name} -> {clip.names[parent]}')
  warnings.warn(BvhWarning(
      f'{source}: zero-offset End Site {"; ".join(notes)} (Human3.6M '
      'rest-pose proportions)'), stacklevel=3)
  return dataclasses.replace(clip, offsets=offsets)


def resolve_position_channels(clip: BvhClip, mapping: H36mMapping,
                              source: str = '<bvh>',
                              override: str | None = None) -> str:
  """'added' or 'absolute' for this clip (see the module docstring).

  `override` (the CLI flag) wins over the mapping's setting; 'auto' detects
  it and warns when the joints disagree.
  """
  convention = override or mapping.position_channels
  if convention not in POSITION_CHANNEL_CONVENTIONS:
    raise ValueError(f'position_channels: expected one of '
                     f'{list(POSITION_CHANNEL_CONVENTIONS)}, got '
                     f'{convention!r}')
  if convention != 'auto':
    return convention
  convention, dissenters = detect_position_channels(clip)
  if dissenters:
    shown = ', '.join(dissenters[:5]) + (', ...' if len(dissenters) > 5
                                         else '')
    near = 'their OFFSET' if convention == 'absolute' else '0'
    warnings.warn(BvhWarning(
        f'{source}: position channels read as {convention!r} (most joints '
        f'hold values near {near}), but {len(dissenters)} joints ({shown}) '
        'look the other way; set "position_channels" in a mapping file if '
        'this is wrong'), stacklevel=3)
  return convention


def check_body(joints: np.ndarray, source: str, detail: str) -> None:
  """Refuses joints whose bone lengths are not human (every frame).

  Args:
    joints: [frames, 17, 3] Human3.6M joints in mm.
    source: file name for messages.
    detail: how the file was read (units, convention), for messages.

  Raises:
    BvhError: naming up to three offending bones with their lengths, the
      frames and the accepted range, or the standing height.
  """
  problems = []
  lengths = {}
  for bone in HUMAN_BONES:
    length = np.linalg.norm(joints[:, bone.child] - joints[:, bone.parent],
                            axis=-1)
    lengths[bone.name] = length
    low, high = length.min(), length.max()
    names = skeleton_lib.H36M.joint_names
    what = f'{bone.name} ({names[bone.parent]}-{names[bone.child]})'
    outside = np.flatnonzero((length < bone.low_mm) | (length > bone.high_mm))
    if outside.size:
      problems.append(
          f'{what} {low / 1000:.3f}-{high / 1000:.3f} m, outside the human '
          f'range {bone.low_mm / 1000:.2f}-{bone.high_mm / 1000:.2f} m in '
          f'{outside.size} of {len(length)} frames (first: frame '
          f'{outside[0]})')
    elif bone.rigid and high > RIGID_BONE_RATIO * low:
      problems.append(
          f'{what} varies {low / 1000:.3f}-{high / 1000:.3f} m over the clip '
          f'(a limb bone must be rigid: at most x{RIGID_BONE_RATIO:g})')
  if not problems:
    legs = np.median((lengths['r_thigh'] + lengths['r_shin']
                      + lengths['l_thigh'] + lengths['l_shin']) / 2)
    trunk = sum(np.median(lengths[n]) for n in (
        'pelvis_spine', 'spine_thorax', 'thorax_nose', 'nose_head'))
    height = legs + trunk
    low, high = HUMAN_HEIGHT_MM
    if not low <= height <= high:
      problems.append(
          f'standing height along the bones {height / 1000:.2f} m, outside '
          f'the human range {low / 1000:.1f}-{high / 1000:.1f} m')
  if problems:
    more = f' (+{len(problems) - 3} more)' if len(problems) > 3 else ''
    raise BvhError(
        f'{source}: implausible skeleton ({detail}): '
        + '; '.join(problems[:3]) + more
        + '; wrong units, mapping or position-channel convention?')


def to_h36m(clip: BvhClip, mapping: H36mMapping, source: str = '<bvh>',
            position_channels: str | None = None) -> np.ndarray:
  """Human3.6M joints of every frame of a clip (native frame rate).

  Drops a calibration first frame (nearly all rotation channels zero),
  resolves the position-channel convention, places zero-offset End Sites
  the mapping uses, and checks the body over the whole clip.

  Args:
    clip: a parsed BVH clip.
    mapping: the node mapping.
    source: file name for messages.
    position_channels: overrides `mapping.position_channels`.

  Returns:
    float64 `[frames, 17, 3]` world millimetres.

  Raises:
    BvhError: a mapped node is missing, positions are not finite, or the
      body is not human.
  Warns:
    BvhWarning: a repaired End Site or an uncertain convention.
  """
  index = {name: i for i, name in enumerate(clip.names)}
  for joint, spec in zip(skeleton_lib.H36M.joint_names, mapping.joints):
    for node in spec.all_nodes:
      if node not in index:
        raise BvhError(f'{source}: mapping {mapping.name} needs node '
                       f'{node!r} for H36M joint {joint!r}, not in the file')
  clip = _drop_calibration_frame(clip)
  convention = resolve_position_channels(clip, mapping, source,
                                         position_channels)
  clip = _estimate_zero_end_sites(clip, mapping, source)
  with np.errstate(over='ignore', invalid='ignore'):
    nodes = forward_kinematics(clip, convention) * mapping.units_to_mm
    extent = np.abs(nodes).max(axis=(1, 2))
  bad = np.flatnonzero(~(extent <= MAX_POSITION_MM))
  if bad.size:
    raise BvhError(
        f'{source}: joint positions beyond {MAX_POSITION_MM / 1e6:g} km or '
        f'not finite from frame {bad[0]} (root position channels '
        f'{clip.motion[bad[0], :3].tolist()} with {mapping.units_to_mm:g} mm '
        'per unit): broken position channels, OFFSETs or units')
  joints = _joint_positions(nodes, index, mapping, source)
  check_body(joints, source, f'{mapping.units_to_mm:g} mm per unit, '
             f'{convention} position channels, mapping {mapping.name}')
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
                     fps: float = TARGET_FPS,
                     position_channels: str | None = None):
  """Reads a BVH file as Human3.6M joints at `fps`.

  Args:
    path: the BVH file.
    mapping: node mapping; None picks a built-in mapping by joint names.
    fps: output frame rate.
    position_channels: overrides the mapping's convention.

  Returns:
    (poses, up_axis): float64 `[frames, 17, 3]` world mm and the up axis.

  Raises:
    BvhError: unreadable file, unknown naming, implausible body.
  """
  clip = read_bvh(path)
  if mapping is None:
    mapping = detect_mapping(clip, str(path))
  poses = to_h36m(clip, mapping, str(path), position_channels)
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
            noise_px: float = 0.0, mapping_path=None,
            position_channels: str | None = None) -> dict:
  """BVH file -> npz of virtual-camera views (the CLI's work).

  Returns:
    The arrays written (see the module docstring).
  """
  if num_cameras < 1:
    raise ValueError(f'--num_cameras must be >= 1, got {num_cameras}')
  if not math.isfinite(noise_px) or noise_px < 0:
    raise ValueError(f'--noise_px must be a finite number >= 0, got '
                     f'{noise_px}')
  mapping = load_mapping(mapping_path) if mapping_path else None
  poses_world, up_axis = load_h36m_motion(
      input_path, mapping, position_channels=position_channels)
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
  for key, value in arrays.items():
    if not np.all(np.isfinite(value)):
      raise ValueError(f'{input_path}: {key} has NaN or infinite values; '
                       'nothing written')
  write_npz_atomic(output_path, arrays)
  return arrays


# COCO face points around the H36M head, in mm along the shoulder axis: the
# eyes' midpoint is the H36M head joint (so the usual COCO -> H36M rule,
# head = mean of the eyes, gives it back), the ears sit half-way between
# nose and head.
_EYE_OFFSET_MM = 32.0
_EAR_OFFSET_MM = 75.0
# COCO-17 joint -> H36M joint for the body joints.
_COCO_FROM_H36M = {0: 9, 5: 11, 6: 14, 7: 12, 8: 15, 9: 13, 10: 16, 11: 4,
                   12: 1, 13: 5, 14: 2, 15: 6, 16: 3}


def coco_keypoints(poses_camera: np.ndarray) -> np.ndarray:
  """H36M camera-space `[F, 17, 3]` mm -> COCO-17 camera-space `[F, 17, 3]`.

  Body joints and the nose are the H36M joints; eyes are the H36M head
  joint +-32 mm along the shoulder axis, ears the nose-head midpoint
  +-75 mm.
  """
  poses = np.asarray(poses_camera, np.float64)
  lateral = poses[:, 11] - poses[:, 14]  # right -> left shoulder
  lateral /= np.maximum(np.linalg.norm(lateral, axis=-1, keepdims=True), 1e-6)
  coco = np.zeros_like(poses)
  for coco_joint, h36m_joint in _COCO_FROM_H36M.items():
    coco[:, coco_joint] = poses[:, h36m_joint]
  head, ear_centre = poses[:, 10], 0.5 * (poses[:, 9] + poses[:, 10])
  coco[:, 1] = head + _EYE_OFFSET_MM * lateral   # left eye
  coco[:, 2] = head - _EYE_OFFSET_MM * lateral   # right eye
  coco[:, 3] = ear_centre + _EAR_OFFSET_MM * lateral
  coco[:, 4] = ear_centre - _EAR_OFFSET_MM * lateral
  return coco


def write_coco_json(path, camera: cameras_lib.Camera,
                    poses_camera: np.ndarray) -> int:
  """Writes one camera's COCO-17 pixel keypoints (module docstring).

  Returns:
    The number of frames written.
  """
  pixels = cameras_lib.project(coco_keypoints(poses_camera), camera)
  images, annotations = [], []
  for frame, points in enumerate(pixels):
    images.append({'id': frame, 'file_name': f'frame_{frame:06d}.png',
                   'width': int(camera.width), 'height': int(camera.height)})
    keypoints = np.concatenate([points, np.ones((17, 1))], -1)
    annotations.append({
        'id': frame, 'image_id': frame, 'category_id': 1, 'score': 1.0,
        'num_keypoints': 17,
        'keypoints': [round(float(v), 3) for v in keypoints.reshape(-1)]})
  document = {'info': {'description': f'virtual camera {camera.name}, '
                                      f'{TARGET_FPS:g} fps'},
              'images': images, 'annotations': annotations,
              'categories': [{'id': 1, 'name': 'person'}]}
  path = pathlib.Path(path)
  with atomic_output.atomic_output(path, 'w') as f:
    json.dump(document, f)
  return len(images)


def _check_coco_arguments(args) -> None:
  """Raises ValueError for a bad --camera / --coco_json before any work."""
  if args.coco_json is None:
    return
  if not 0 <= args.camera < args.num_cameras:
    raise ValueError(f'--camera: expected 0..{args.num_cameras - 1}, got '
                     f'{args.camera}')
  if not pathlib.Path(args.coco_json).parent.is_dir():
    raise ValueError(f'--coco_json {args.coco_json}: output directory does '
                     'not exist')


def _export_coco(path, arrays: dict, k: int) -> None:
  """Writes camera k of `convert`'s arrays as COCO-17 JSON."""
  camera = cameras_lib.Camera(
      name=f'virtual_{k}',
      intrinsics=np.concatenate([
          arrays['intrinsics'][k][[0, 1, 0, 1], [0, 1, 2, 2]],
          np.zeros(5)]).astype(np.float64),
      width=int(arrays['image_size'][k][0]),
      height=int(arrays['image_size'][k][1]),
      rotation=arrays['rotation'][k].astype(np.float64),
      position=arrays['position'][k].astype(np.float64))
  count = write_coco_json(path, camera, arrays['poses_3d'][k])
  print(f'wrote {path}: camera {k}, {count} frames, COCO-17 pixel keypoints')


def main(argv=None) -> int:
  parser = cli.OneLineArgumentParser(
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
  parser.add_argument('--position_channels', default=None,
                      choices=POSITION_CHANNEL_CONVENTIONS,
                      help='what non-root position channels hold: added to '
                      'OFFSET, absolute (the full translation) or auto '
                      '(detected; default: the mapping file\'s setting, '
                      'else auto)')
  parser.add_argument('--coco_json', default=None,
                      help='also write camera --camera as COCO-17 JSON')
  parser.add_argument('--camera', type=int, default=0,
                      help='camera of --coco_json (default 0)')
  args = parser.parse_args(argv)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always', BvhWarning)
    try:
      _check_coco_arguments(args)
      arrays = convert(args.input, args.output, num_cameras=args.num_cameras,
                       seed=args.seed, noise_px=args.noise_px,
                       mapping_path=args.mapping,
                       position_channels=args.position_channels)
      if args.coco_json:
        _export_coco(args.coco_json, arrays, args.camera)
    except (ValueError, OSError) as error:
      error_line = f'error: {" ".join(str(error).split())}'
    else:
      error_line = None
  for warning in caught:
    if issubclass(warning.category, BvhWarning):
      print(f'warning: {warning.message}', file=sys.stderr)
  if error_line:
    print(error_line, file=sys.stderr)
    return 1
  k, f = arrays['keypoints_2d'].shape[:2]
  print(f'wrote {args.output}: {k} cameras x {f} frames at '
        f'{TARGET_FPS:g} fps')
  return 0


if __name__ == '__main__':
  sys.exit(main())
