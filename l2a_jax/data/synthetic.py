"""Procedural human-like motion on the Human3.6M 17-joint skeleton.

A sequence is a plan of motion segments (idle, walking, turning, reaching,
crouching, jumping) cross-faded over 0.5 s. Each segment gives joint-angle
trajectories (degrees) for a kinematic model of the body:

- root yaw (heading), pelvis tilt/roll/twist;
- lumbar and thoracic bend, side bend and twist; neck pitch/yaw/roll;
- per leg: hip flexion, abduction, rotation and knee flexion;
- per arm: shoulder flexion, abduction, rotation and elbow flexion.

Walking is a gait cycle (a typical hip flexion curve, two-peaked knee
flexion, arm swing opposite to the legs, pelvis and chest counter-rotation,
the supporting foot chosen by gait phase). Low-frequency
sinusoidal noise with random phases adds variation; every angle is then
clipped to anatomical limits. Forward kinematics on per-subject bone lengths
(Human3.6M-like means, +-10% body scale, +-3% per bone, left/right symmetric)
gives joint positions. Translation is not scripted: the supporting foot is
pinned to the ground (by gait phase while walking, else the lower foot), so
the body moves the way its legs push it; the pelvis height keeps the lowest
ankle at ankle height, and jumps add a ballistic flight. Heading follows the
turning segments plus steering that keeps the subject within a few metres of
the origin.

World frame: millimetres, Y up, ground at y = 0; body frame x = left,
y = up, z = forward. Everything is a deterministic function of the seed.
"""

import dataclasses

import numpy as np

FPS = 50.0
ACTIONS = ('walking', 'turning', 'reaching', 'crouching', 'jumping', 'mixed')

# Mean bone lengths in mm (Human3.6M-like adult).
_MEAN_BONES = {
    'hip': 133.0, 'thigh': 443.0, 'shin': 454.0, 'lower_spine': 233.0,
    'upper_spine': 257.0, 'neck': 121.0, 'head': 115.0, 'shoulder': 151.0,
    'upper_arm': 279.0, 'forearm': 252.0,
}
# (parent, rest direction in the body frame, bone) per H36M joint.
_REST = (
    (-1, (0.0, 0.0, 0.0), None),
    (0, (-1.0, -0.08, 0.0), 'hip'),
    (1, (0.0, -1.0, 0.0), 'thigh'),
    (2, (0.0, -1.0, 0.0), 'shin'),
    (0, (1.0, -0.08, 0.0), 'hip'),
    (4, (0.0, -1.0, 0.0), 'thigh'),
    (5, (0.0, -1.0, 0.0), 'shin'),
    (0, (0.0, 1.0, -0.03), 'lower_spine'),
    (7, (0.0, 1.0, 0.06), 'upper_spine'),
    (8, (0.0, 0.82, 0.57), 'neck'),
    (9, (0.0, 0.92, -0.38), 'head'),
    (8, (1.0, -0.15, -0.05), 'shoulder'),
    (11, (0.0, -1.0, 0.0), 'upper_arm'),
    (12, (0.0, -1.0, 0.0), 'forearm'),
    (8, (-1.0, -0.15, -0.05), 'shoulder'),
    (14, (0.0, -1.0, 0.0), 'upper_arm'),
    (15, (0.0, -1.0, 0.0), 'forearm'),
)
ANKLE_HEIGHT_MM = 80.0
_GRAVITY_MM = 9810.0

# Degrees of freedom and their anatomical limits (degrees).
_LIMITS = {
    'pelvis_tilt': (-20, 30), 'pelvis_roll': (-15, 15),
    'pelvis_twist': (-30, 30),
    'lumbar_flex': (-20, 60), 'lumbar_side': (-25, 25),
    'lumbar_twist': (-35, 35),
    'thorax_flex': (-15, 35), 'thorax_side': (-15, 15),
    'thorax_twist': (-25, 25),
    'neck_pitch': (-45, 50), 'neck_yaw': (-70, 70), 'neck_roll': (-30, 30),
    'hip_flex': (-25, 125), 'hip_abd': (-20, 45), 'hip_rot': (-35, 35),
    'knee': (0, 145),
    'shoulder_flex': (-50, 170), 'shoulder_abd': (0, 150),
    'shoulder_rot': (-30, 60), 'elbow': (0, 145),
}
_SIDED = ('hip_flex', 'hip_abd', 'hip_rot', 'knee', 'shoulder_flex',
          'shoulder_abd', 'shoulder_rot', 'elbow')
DOFS = tuple(
    [k for k in _LIMITS if k not in _SIDED]
    + [f'{side}_{k}' for side in ('r', 'l') for k in _SIDED])


def _limits(dof: str):
  return _LIMITS[dof[2:] if dof[:2] in ('r_', 'l_') else dof]


@dataclasses.dataclass(frozen=True)
class Subject:
  """A body: bone lengths (mm) and movement style factors."""

  bones: dict
  arm_swing: float
  stride: float
  cadence_hz: float
  lean_deg: float


def sample_subject(rng: np.random.Generator) -> Subject:
  """Draws a subject: H36M-like bone lengths with per-subject variation."""
  scale = float(np.clip(rng.normal(1.0, 0.05), 0.9, 1.1))
  bones = {name: length * scale * float(np.clip(rng.normal(1.0, 0.03),
                                                0.92, 1.08))
           for name, length in _MEAN_BONES.items()}
  return Subject(
      bones=bones,
      arm_swing=float(rng.uniform(0.6, 1.3)),
      stride=float(rng.uniform(0.85, 1.15)),
      # Gait cycle frequency (half the step cadence); taller is slower.
      cadence_hz=float(rng.uniform(0.82, 1.0) / np.sqrt(scale)),
      lean_deg=float(rng.uniform(-2.0, 6.0)),
  )


def _smoothstep(x):
  x = np.clip(x, 0.0, 1.0)
  return x * x * (3 - 2 * x)


def _envelope(t, rise, hold, fall, start=0.0):
  """0 -> 1 (over `rise` s) -> hold -> 0 (over `fall` s), smooth."""
  up = _smoothstep((t - start) / rise)
  down = 1 - _smoothstep((t - start - rise - hold) / fall)
  return np.minimum(up, down)


def _bump(phase, centre, width):
  """Periodic Gaussian bump over a cycle; phase, centre in cycles."""
  d = (phase - centre + 0.5) % 1.0 - 0.5
  return np.exp(-0.5 * (d / width) ** 2)


# Fourier coefficients (constant, cos/sin of harmonics 1..3) of a typical
# hip flexion curve over one gait cycle, scaled to about [-1, 1]: flexed at
# heel strike, extending almost linearly through stance to its minimum near
# 55% (toe-off), flexing in swing to its maximum near 87%.
_HIP_FOURIER = (0.0891, (0.9606, -0.0575), (-0.0928, -0.158),
                (-0.0336, 0.0321))


def _gait_hip(phase):
  """Hip flexion over a gait cycle in about [-1, 1]; phase 0 = heel strike."""
  angle = 2 * np.pi * np.asarray(phase)
  out = np.full(angle.shape, _HIP_FOURIER[0])
  for k, (a, b) in enumerate(_HIP_FOURIER[1:], start=1):
    out += a * np.cos(k * angle) + b * np.sin(k * angle)
  return out


def _idle_pose(n: int) -> dict:
  """Relaxed standing angles, every DoF as an [n] array."""
  pose = {dof: np.zeros(n) for dof in DOFS}
  for side in ('r', 'l'):
    pose[f'{side}_hip_flex'] += 3.0
    pose[f'{side}_hip_abd'] += 4.0
    pose[f'{side}_knee'] += 5.0
    pose[f'{side}_shoulder_abd'] += 8.0
    pose[f'{side}_shoulder_rot'] += 15.0
    pose[f'{side}_elbow'] += 14.0
  pose['lumbar_flex'] += 2.0
  return pose


class _Segment:
  """Angle trajectories of one motion segment over [0, duration).

  Parameters are drawn in the constructor; `angles` and the other methods
  are pure functions of time. The base class is standing idle: weight
  shifts, looking around, sometimes a small arm gesture.
  """

  kind = 'idle'

  def __init__(self, duration, subject, rng):
    self.duration = duration
    self.subject = subject
    self._sway = rng.uniform(2, 5)
    self._sway_hz = rng.uniform(0.15, 0.35)
    self._sway_phase = rng.uniform(0, 2 * np.pi)
    self._look = rng.uniform(-40, 40)
    self._gesture_side = str(rng.choice(['r', 'l']))
    self._gesture = rng.uniform(0, 1) < 0.5
    self._gesture_start = rng.uniform(0, 0.3) * duration
    self._gesture_shoulder = rng.uniform(30, 70)
    self._gesture_elbow = rng.uniform(30, 80)

  def angles(self, t: np.ndarray) -> dict:
    """DoF -> [n] degrees at local times `t` (may lie outside the segment)."""
    pose = _idle_pose(len(t))
    shift = self._sway * np.sin(2 * np.pi * self._sway_hz * t
                                + self._sway_phase)
    pose['pelvis_roll'] += shift
    pose['r_hip_abd'] += shift
    pose['l_hip_abd'] -= shift
    pose['lumbar_side'] -= 0.7 * shift
    pose['neck_yaw'] += self._look * _envelope(
        t, 0.8, self.duration * 0.3, 0.8, start=self.duration * 0.2)
    if self._gesture:
      env = _envelope(t, 0.6, 0.5, 0.6, start=self._gesture_start)
      side = self._gesture_side
      pose[f'{side}_shoulder_flex'] += self._gesture_shoulder * env
      pose[f'{side}_elbow'] += self._gesture_elbow * env
    return pose

  def yaw_rate(self, t):
    return np.zeros_like(t)

  def stance(self, t):
    """[n, 2] support weights (right, left) from the gait phase, or None."""
    del t
    return None

  def flight(self, t):
    """(lift mm, forward velocity mm/s, in_flight) at local times t."""
    zeros = np.zeros_like(t)
    return zeros, zeros, np.zeros(t.shape, bool)


class _Walk(_Segment):
  """Gait cycle; turning walks add a yaw rate."""

  kind = 'walking'

  def __init__(self, duration, subject, rng, yaw_rate_deg=0.0,
               in_place=False):
    super().__init__(duration, subject, rng)
    self.cycle_hz = subject.cadence_hz * rng.uniform(0.92, 1.1)
    self.phase0 = rng.uniform(0, 1)
    self.hip_amp = (8.0 if in_place else 21.0 * subject.stride
                    * rng.uniform(0.9, 1.1))
    self.arm_amp = (5.0 if in_place else 16.0) * subject.arm_swing
    self.swing_knee = 45.0 if in_place else 52.0
    self.turn = yaw_rate_deg
    self.in_place = in_place

  def angles(self, t):
    pose = _idle_pose(len(t))
    cycle = self.cycle_hz * t + self.phase0
    for side, offset in (('r', 0.0), ('l', 0.5)):
      s = cycle + offset
      c = np.cos(2 * np.pi * s)
      pose[f'{side}_hip_flex'] = 9.0 + self.hip_amp * _gait_hip(s)
      pose[f'{side}_knee'] = (5.0 + 8.0 * _bump(s, 0.15, 0.08)
                              + self.swing_knee * _bump(s, 0.72, 0.11))
      if self.in_place:
        # Stepping on the spot lifts the thigh while the knee bends.
        pose[f'{side}_hip_flex'] += 30.0 * _bump(s, 0.7, 0.1)
      pose[f'{side}_hip_abd'] = 3.0 + 2.0 * np.sin(2 * np.pi * s)
      # Arms swing against the leg of the same side.
      pose[f'{side}_shoulder_flex'] = 4.0 - self.arm_amp * c
      pose[f'{side}_elbow'] = 16.0 + 18.0 * np.clip(-c, 0, 1) * (
          self.arm_amp / 16.0)
      pose[f'{side}_shoulder_abd'] = 9.0
    c_right = np.cos(2 * np.pi * cycle)
    pose['pelvis_twist'] = 5.0 * c_right
    pose['thorax_twist'] = -8.0 * c_right
    pose['pelvis_roll'] = 2.5 * np.sin(4 * np.pi * cycle)
    pose['lumbar_flex'] = self.subject.lean_deg + 2.0
    pose['neck_pitch'] = -2.0 + 2.0 * np.sin(4 * np.pi * cycle)
    return pose

  def yaw_rate(self, t):
    return np.full_like(t, self.turn)

  def stance(self, t):
    # A foot carries the body from its heel strike (phase 0) to the other
    # foot's heel strike (0.5), handing over within 4% of the cycle: the
    # trailing heel rises (the ankle lifts off before the toes do).
    cycle = self.cycle_hz * t + self.phase0
    weights = []
    for offset in (0.0, 0.5):
      s = (cycle + offset) % 1.0
      weights.append(np.where(
          s < 0.5, _smoothstep(s / 0.04), 1 - _smoothstep((s - 0.5) / 0.04)))
    weights = np.stack(weights, -1)
    return weights / weights.sum(-1, keepdims=True)


class _Reach(_Segment):
  """Reach with one or both arms to a low, middle or high target."""

  kind = 'reaching'

  def __init__(self, duration, subject, rng):
    super().__init__(duration, subject, rng)
    self._rise, self._fall = rng.uniform(0.7, 1.1), rng.uniform(0.7, 1.1)
    self._height = str(rng.choice(['low', 'middle', 'high']))
    self._sides = ([str(rng.choice(['r', 'l']))] if rng.uniform() < 0.7
                   else ['r', 'l'])
    self._flex = {'low': rng.uniform(40, 70), 'middle': rng.uniform(75, 100),
                  'high': rng.uniform(120, 160)}[self._height]
    self._abduction = {side: rng.uniform(0, 35) for side in ('r', 'l')}
    self._elbow = {side: rng.uniform(0, 15) - 14.0 for side in ('r', 'l')}
    self._twist = rng.uniform(5, 20)
    self._side_bend = rng.uniform(0, 10)
    self._bend = rng.uniform(15, 40)
    self._knee = rng.uniform(10, 50)

  def angles(self, t):
    pose = _idle_pose(len(t))
    hold = max(self.duration - self._rise - self._fall - 0.6, 0.2)
    env = _envelope(t, self._rise, hold, self._fall, start=0.3)
    for side in self._sides:
      pose[f'{side}_shoulder_flex'] += self._flex * env
      pose[f'{side}_shoulder_abd'] += self._abduction[side] * env
      pose[f'{side}_elbow'] += self._elbow[side] * env
      pose[f'{side}_shoulder_rot'] -= 10.0 * env
    if len(self._sides) == 1:
      # Turn and lean the chest towards the reaching hand.
      sign = -1.0 if self._sides[0] == 'l' else 1.0
      pose['lumbar_twist'] += sign * self._twist * env
      pose['lumbar_side'] += sign * self._side_bend * env
    if self._height == 'low':
      pose['lumbar_flex'] += self._bend * env
      pose['thorax_flex'] += 0.4 * self._bend * env
      for side in ('r', 'l'):
        pose[f'{side}_knee'] += self._knee * env
        pose[f'{side}_hip_flex'] += 0.6 * self._knee * env
      pose['neck_pitch'] += 20.0 * env
    elif self._height == 'high':
      pose['neck_pitch'] -= 25.0 * env
    return pose


class _Crouch(_Segment):
  """Squat down, hold, stand up."""

  kind = 'crouching'

  def __init__(self, duration, subject, rng):
    super().__init__(duration, subject, rng)
    self._down, self._up = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)
    self._depth = rng.uniform(0.45, 1.0)
    self._arms = {side: rng.uniform(20, 70) for side in ('r', 'l')}
    self._elbows = {side: rng.uniform(0, 40) for side in ('r', 'l')}

  def angles(self, t):
    pose = _idle_pose(len(t))
    hold = max(self.duration - self._down - self._up - 0.6, 0.3)
    env = _envelope(t, self._down, hold, self._up, start=0.3)
    depth = self._depth
    for side in ('r', 'l'):
      pose[f'{side}_knee'] += 125.0 * depth * env
      pose[f'{side}_hip_flex'] += 95.0 * depth * env
      pose[f'{side}_hip_abd'] += 10.0 * depth * env
      pose[f'{side}_shoulder_flex'] += self._arms[side] * depth * env
      pose[f'{side}_elbow'] += self._elbows[side] * env
    pose['lumbar_flex'] += 30.0 * depth * env
    pose['thorax_flex'] += 8.0 * depth * env
    pose['neck_pitch'] -= 20.0 * depth * env
    return pose


class _Jump(_Segment):
  """Counter-movement jump in place or forward, with arm swing."""

  kind = 'jumping'

  def __init__(self, duration, subject, rng):
    super().__init__(duration, subject, rng)
    self.start = 0.4
    self.prep = rng.uniform(0.3, 0.45)
    self.push = rng.uniform(0.24, 0.3)
    self.air = rng.uniform(0.3, 0.45)
    self.land = rng.uniform(0.2, 0.3)
    self.recover = 0.5
    self.depth = rng.uniform(0.7, 1.2)
    self.forward = rng.uniform(800, 1600) if rng.uniform() < 0.5 else 0.0

  def _times(self):
    t0 = self.start
    t1 = t0 + self.prep
    t2 = t1 + self.push
    t3 = t2 + self.air
    t4 = t3 + self.land
    t5 = t4 + self.recover
    return t0, t1, t2, t3, t4, t5

  def angles(self, t):
    pose = _idle_pose(len(t))
    t0, t1, t2, t3, t4, t5 = self._times()
    # Key poses (knee, hip, lumbar, shoulder flexion, elbow), interpolated
    # smoothly between the phase boundaries.
    keys = np.array([
        [5, 3, 2, 0, 14],  # standing
        [70, 55, 25, -20, 25],  # bottom of the counter-movement
        [5, -5, 0, 90, 15],  # take-off
        [35, 40, 10, 70, 30],  # flight, legs tucked
        [65, 50, 25, 35, 30],  # landing absorbed
        [5, 3, 2, 0, 14],  # standing
    ], np.float64)
    keys[1:5, :3] *= self.depth
    times = np.array([t0, t1, t2, t3, t4, t5])
    index = np.clip(np.searchsorted(times, t, side='right') - 1, 0, 4)
    frac = _smoothstep((t - times[index]) / (times[index + 1] - times[index]))
    values = keys[index] + (keys[index + 1] - keys[index]) * frac[:, None]
    for side in ('r', 'l'):
      pose[f'{side}_knee'] = values[:, 0]
      pose[f'{side}_hip_flex'] = values[:, 1]
      pose[f'{side}_shoulder_flex'] = values[:, 3]
      pose[f'{side}_elbow'] = values[:, 4]
    pose['lumbar_flex'] = values[:, 2]
    pose['neck_pitch'] = -0.5 * values[:, 2]
    return pose

  def flight(self, t):
    _, _, t2, t3, _, _ = self._times()
    in_air = (t >= t2) & (t < t3)
    s = np.clip(t - t2, 0, self.air)
    lift = 0.5 * _GRAVITY_MM * s * (self.air - s) * in_air
    velocity = np.where(in_air, self.forward, 0.0)
    return lift, velocity, in_air


def _plan(action: str, duration: float, subject: Subject,
          rng: np.random.Generator) -> list[_Segment]:
  """Segments filling `duration` seconds for a sequence of `action`."""

  def make(kind):
    if kind == 'walking':
      return _Walk(rng.uniform(3.0, 5.0), subject, rng,
                   yaw_rate_deg=rng.uniform(-15, 15))
    if kind == 'turning':
      if rng.uniform() < 0.5:
        return _Walk(rng.uniform(2.0, 3.0), subject, rng,
                     yaw_rate_deg=rng.choice([-1, 1]) * rng.uniform(50, 90),
                     in_place=True)
      return _Walk(rng.uniform(2.5, 4.0), subject, rng,
                   yaw_rate_deg=rng.choice([-1, 1]) * rng.uniform(30, 60))
    if kind == 'reaching':
      return _Reach(rng.uniform(2.6, 3.6), subject, rng)
    if kind == 'crouching':
      return _Crouch(rng.uniform(3.0, 4.5), subject, rng)
    if kind == 'jumping':
      return _Jump(2.4, subject, rng)
    return _Segment(rng.uniform(1.5, 3.0), subject, rng)

  kinds = [k for k in ACTIONS if k != 'mixed']
  segments, total = [], 0.0
  while total < duration:
    if action == 'mixed':
      kind = rng.choice(kinds + ['idle'])
    elif len(segments) % 2 == 0:
      kind = action
    else:
      # Connectors between the main motions: standing or walking.
      kind = 'walking' if rng.uniform() < 0.5 else 'idle'
    segment = make(str(kind))
    segments.append(segment)
    total += segment.duration
  return segments


def _rotation(axis: int, degrees: np.ndarray) -> np.ndarray:
  """[n, 3, 3] rotations about a body axis (0 x, 1 y, 2 z)."""
  a = np.radians(degrees)
  c, s = np.cos(a), np.sin(a)
  out = np.zeros(a.shape + (3, 3))
  i, j = [(1, 2), (2, 0), (0, 1)][axis]
  out[:, axis, axis] = 1
  out[:, i, i] = c
  out[:, j, j] = c
  out[:, i, j] = -s
  out[:, j, i] = s
  return out


def body_poses(angles: dict, subject: Subject) -> np.ndarray:
  """Forward kinematics in the body frame (root at 0, heading = +z).

  Args:
    angles: DoF name -> [n] degrees.
    subject: bone lengths.

  Returns:
    float64 `[n, 17, 3]` joint positions in mm.
  """
  n = len(angles['pelvis_tilt'])

  def rx(dof):
    return _rotation(0, angles[dof])

  def ry(dof):
    return _rotation(1, angles[dof])

  def rz(dof):
    return _rotation(2, angles[dof])

  identity = np.broadcast_to(np.eye(3), (n, 3, 3))
  local = [None] * 17
  local[0] = ry('pelvis_twist') @ rx('pelvis_tilt') @ rz('pelvis_roll')
  local[1] = local[4] = identity
  for side, hip, knee, sign in (('r', 2, 3, -1.0), ('l', 5, 6, 1.0)):
    # Flexion swings the thigh forward (+z); abduction moves it outwards
    # (-x on the right, +x on the left); the knee bends the shin backwards.
    local[hip] = (_rotation(0, -angles[f'{side}_hip_flex'])
                  @ _rotation(2, sign * angles[f'{side}_hip_abd'])
                  @ _rotation(1, sign * angles[f'{side}_hip_rot']))
    local[knee] = _rotation(0, angles[f'{side}_knee'])
  local[7] = ry('lumbar_twist') @ rx('lumbar_flex') @ rz('lumbar_side')
  local[8] = ry('thorax_twist') @ rx('thorax_flex') @ rz('thorax_side')
  local[9] = ry('neck_yaw') @ rx('neck_pitch') @ rz('neck_roll')
  local[10] = local[11] = local[14] = identity
  for side, shoulder, elbow, sign in (('l', 12, 13, 1.0), ('r', 15, 16, -1.0)):
    # Flexion raises the arm forwards, abduction sideways; internal rotation
    # turns the elbow's bending plane towards the body.
    local[shoulder] = (_rotation(0, -angles[f'{side}_shoulder_flex'])
                       @ _rotation(2, sign * angles[f'{side}_shoulder_abd'])
                       @ _rotation(1, -sign * angles[f'{side}_shoulder_rot']))
    local[elbow] = _rotation(0, -angles[f'{side}_elbow'])
  globals_ = [None] * 17
  positions = np.zeros((n, 17, 3))
  for joint, (parent, direction, bone) in enumerate(_REST):
    if parent < 0:
      globals_[joint] = local[0]
      continue
    globals_[joint] = globals_[parent] @ local[joint]
    offset = np.asarray(direction) / np.linalg.norm(direction)
    offset = offset * subject.bones[bone]
    positions[:, joint] = positions[:, parent] + globals_[joint] @ offset
  return positions


def _blend(segments: list[_Segment], times: np.ndarray, fade: float = 0.5):
  """Cross-faded angles, yaw rate and flight over global `times`."""
  starts = np.cumsum([0.0] + [s.duration for s in segments[:-1]])
  n = len(times)
  weights = []
  for k, (segment, start) in enumerate(zip(segments, starts)):
    local = times - start
    w = np.ones(n)
    if k > 0:
      w = np.minimum(w, _smoothstep((local + fade / 2) / fade))
    if k < len(segments) - 1:
      w = np.minimum(w, 1 - _smoothstep(
          (local - segment.duration + fade / 2) / fade))
    weights.append(w)
  weights = np.array(weights)
  weights /= weights.sum(axis=0, keepdims=True)
  angles = {dof: np.zeros(n) for dof in DOFS}
  yaw_rate = np.zeros(n)
  lift, velocity, in_air = np.zeros(n), np.zeros(n), np.zeros(n, bool)
  stance, stance_weight = np.zeros((n, 2)), np.zeros(n)
  for w, segment, start in zip(weights, segments, starts):
    active = w > 0
    if not np.any(active):
      continue
    local = times[active] - start
    for dof, values in segment.angles(local).items():
      angles[dof][active] += w[active] * values
    yaw_rate[active] += w[active] * segment.yaw_rate(local)
    segment_stance = segment.stance(local)
    if segment_stance is not None:
      stance[active] += w[active, None] * segment_stance
      stance_weight[active] += w[active]
    seg_lift, seg_velocity, seg_air = segment.flight(local)
    lift[active] += seg_lift
    velocity[active] += seg_velocity
    in_air[active] |= seg_air
  return angles, yaw_rate, (lift, velocity, in_air), (stance, stance_weight)


def _smooth_noise(n: int, rng: np.random.Generator, amplitude: float):
  """Sum of three low-frequency sinusoids with random phases, [n]."""
  t = np.arange(n) / FPS
  out = np.zeros(n)
  for _ in range(3):
    out += rng.uniform(0, amplitude) * np.sin(
        2 * np.pi * rng.uniform(0.1, 0.7) * t + rng.uniform(0, 2 * np.pi))
  return out


def generate_sequence(action: str, num_frames: int, subject: Subject,
                      rng: np.random.Generator,
                      arena_radius_mm: float = 2000.0) -> np.ndarray:
  """One motion sequence in world coordinates.

  Args:
    action: one of ACTIONS (the main motion of the sequence).
    num_frames: frames at 50 fps.
    subject: the body.
    rng: random generator.
    arena_radius_mm: steering keeps the root within about this distance of
      the origin.

  Returns:
    float64 `[num_frames, 17, 3]` world mm, Y up, ground at 0.
  """
  if action not in ACTIONS:
    raise ValueError(f'unknown action {action!r}; expected one of {ACTIONS}')
  times = np.arange(num_frames) / FPS
  segments = _plan(action, num_frames / FPS + 0.5, subject, rng)
  angles, yaw_rate, (lift, velocity, in_air), (stance, walking) = _blend(
      segments, times)
  for dof in DOFS:
    amplitude = 4.0 if 'neck' in dof or 'shoulder' in dof else 2.0
    angles[dof] = angles[dof] + _smooth_noise(num_frames, rng, amplitude)
    low, high = _limits(dof)
    angles[dof] = np.clip(angles[dof], low, high)
  body = body_poses(angles, subject)

  # Heading and horizontal root motion: pin the supporting foot. While
  # walking the gait phase says which foot supports; otherwise the lower
  # foot does (soft weights over 15 mm of height difference).
  ankles = body[:, [3, 6]]  # [n, 2, 3]
  lower = np.exp(-(ankles[..., 1] - ankles[..., 1].min(-1, keepdims=True))
                 / 15.0)
  lower /= lower.sum(-1, keepdims=True)
  foot_weight = stance + (1 - walking)[:, None] * lower
  dt = 1.0 / FPS
  heading = rng.uniform(-np.pi, np.pi)
  position = rng.uniform(-0.4, 0.4, 2) * arena_radius_mm  # world (x, z)
  headings = np.zeros(num_frames)
  roots = np.zeros((num_frames, 2))
  previous = None
  # A short causal low-pass (0.03 s) on the root step smooths the hand-over
  # between feet.
  smoothing = np.exp(-dt / 0.03)
  velocity_step = np.zeros(2)
  for f in range(num_frames):
    # Steer towards the centre while walking when far from it.
    distance = np.hypot(*position)
    rate = np.radians(yaw_rate[f])
    if distance > 0.5 * arena_radius_mm:
      wanted = np.arctan2(-position[0], -position[1])
      error = (wanted - heading + np.pi) % (2 * np.pi) - np.pi
      urgency = min(distance / arena_radius_mm, 1.5)
      rate += walking[f] * 1.5 * urgency * error
    heading += rate * dt
    c, s = np.cos(heading), np.sin(heading)
    # Body (x, z) -> world (x, z) for a rotation by `heading` about +y.
    world_ankles = np.stack([c * ankles[f, :, 0] + s * ankles[f, :, 2],
                             -s * ankles[f, :, 0] + c * ankles[f, :, 2]], -1)
    if previous is not None:
      if in_air[f]:
        step = velocity[f] * dt * np.array([s, c])
      else:
        step = -np.sum((world_ankles - previous) * foot_weight[f, :, None], 0)
      velocity_step = smoothing * velocity_step + (1 - smoothing) * step
      position = position + velocity_step
    previous = world_ankles
    headings[f] = heading
    roots[f] = position

  # Vertical: lowest ankle at ankle height; in flight the support height is
  # interpolated between take-off and landing and the ballistic lift added.
  support = ANKLE_HEIGHT_MM - ankles[..., 1].min(-1)
  if np.any(in_air):
    edges = np.flatnonzero(np.diff(in_air.astype(np.int8)))
    starts = edges[in_air[edges + 1]] + 1
    for start in starts:
      end = start
      while end < num_frames and in_air[end]:
        end += 1
      before = support[start - 1] if start > 0 else support[start]
      after = support[end] if end < num_frames else support[end - 1]
      frac = (np.arange(start, end) - start + 1) / (end - start + 1)
      support[start:end] = before + (after - before) * frac
  height = support + lift

  c, s = np.cos(headings)[:, None], np.sin(headings)[:, None]
  world = np.empty_like(body)
  world[..., 0] = c * body[..., 0] + s * body[..., 2] + roots[:, None, 0]
  world[..., 1] = body[..., 1] + height[:, None]
  world[..., 2] = -s * body[..., 0] + c * body[..., 2] + roots[:, None, 1]
  return world


def sequence_rng(seed: int, subject: int, sequence: int):
  """The generator of one (subject, sequence); independent streams."""
  return np.random.default_rng([seed, subject, sequence])


def subject_rng(seed: int, subject: int):
  return np.random.default_rng([seed, subject, 2**31 - 1])
