"""Joint orders, parents, flip lists and joint maps of the 17-joint skeletons.

Human3.6M order (VideoPose3D and MotionBERT; `docs/data.md`):

  0 pelvis (root)  1 R_hip  2 R_knee  3 R_ankle  4 L_hip  5 L_knee  6 L_ankle
  7 spine  8 thorax  9 neck/nose  10 head  11 L_shoulder  12 L_elbow
  13 L_wrist  14 R_shoulder  15 R_elbow  16 R_wrist

MPI-INF-3DHP order (P-STMO preprocessing; root = 14, pelvis):

  0 head_top  1 neck  2 R_shoulder  3 R_elbow  4 R_wrist  5 L_shoulder
  6 L_elbow  7 L_wrist  8 R_hip  9 R_knee  10 R_ankle  11 L_hip  12 L_knee
  13 L_ankle  14 pelvis  15 spine  16 head

A left-right flip negates x and swaps each left joint with its right partner;
the swap is an involution, so `flip(flip(x)) == x`.
"""

import dataclasses
import re

import numpy as np


@dataclasses.dataclass(frozen=True)
class Skeleton:
  """A 17-joint skeleton.

  Attributes:
    name: 'h36m' or 'mpi'.
    joint_names: one name per joint, in storage order.
    parents: parent index of every joint (-1 for the root).
    root: index of the root joint (targets are made relative to it).
    left: left-side joints; `left[i]` is the mirror partner of `right[i]`.
    right: right-side joints.
  """

  name: str
  joint_names: tuple[str, ...]
  parents: tuple[int, ...]
  root: int
  left: tuple[int, ...]
  right: tuple[int, ...]

  @property
  def num_joints(self) -> int:
    return len(self.joint_names)

  @property
  def bones(self) -> tuple[tuple[int, int], ...]:
    """(parent, child) pairs, one per non-root joint, in child order."""
    return tuple((p, j) for j, p in enumerate(self.parents) if p >= 0)

  @property
  def flip_permutation(self) -> np.ndarray:
    """int [num_joints]: `x[..., perm, :]` swaps every left/right pair."""
    perm = np.arange(self.num_joints)
    perm[list(self.left)] = self.right
    perm[list(self.right)] = self.left
    return perm

  def index(self, joint_name: str) -> int:
    return self.joint_names.index(joint_name)


H36M = Skeleton(
    name='h36m',
    joint_names=(
        'pelvis', 'r_hip', 'r_knee', 'r_ankle', 'l_hip', 'l_knee', 'l_ankle',
        'spine', 'thorax', 'neck', 'head', 'l_shoulder', 'l_elbow', 'l_wrist',
        'r_shoulder', 'r_elbow', 'r_wrist',
    ),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    root=0,
    left=(4, 5, 6, 11, 12, 13),
    right=(1, 2, 3, 14, 15, 16),
)

MPI = Skeleton(
    name='mpi',
    joint_names=(
        'head_top', 'neck', 'r_shoulder', 'r_elbow', 'r_wrist', 'l_shoulder',
        'l_elbow', 'l_wrist', 'r_hip', 'r_knee', 'r_ankle', 'l_hip', 'l_knee',
        'l_ankle', 'pelvis', 'spine', 'head',
    ),
    # Tree derived from the joint names: the pelvis is the root, spine ->
    # neck -> head -> head_top, limbs hang off the neck and the pelvis.
    parents=(16, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1),
    root=14,
    left=(5, 6, 7, 11, 12, 13),
    right=(2, 3, 4, 8, 9, 10),
)

SKELETONS = {'h36m': H36M, 'mpi': MPI}

# `mpi_pose[..., H36M_TO_MPI[j], :]` is the MPI joint that corresponds to the
# H36M joint j (head top <-> head, neck/nose <-> head; see data_and_metrics.md).
H36M_TO_MPI = (14, 8, 9, 10, 11, 12, 13, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4)
# Inverse map: `h36m_pose[..., MPI_TO_H36M[m], :]` is MPI joint m.
MPI_TO_H36M = tuple(int(i) for i in np.argsort(H36M_TO_MPI))

# Limb joints (hips, knees, ankles, shoulders, elbows, wrists) in H36M order:
# the subset reported for mocap-derived data, whose torso and head joints are
# defined differently from the marker-based H36M joints.
H36M_LIMB_JOINTS = (1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16)

# The 14 joints of 3DHP PCK/AUC (pelvis, spine and head excluded), MPI order.
MPI_PCK_JOINTS = tuple(range(14))

# Six body parts of the H36M skeleton (for part-pooled features).
H36M_BODY_PARTS = {
    'torso': (0, 7, 8),
    'head': (9, 10),
    'left_arm': (11, 12, 13),
    'right_arm': (14, 15, 16),
    'left_leg': (4, 5, 6),
    'right_leg': (1, 2, 3),
}

# The same six parts in the MPI-INF-3DHP order.
MPI_BODY_PARTS = {
    'torso': (14, 15, 1),
    'head': (16, 0),
    'left_arm': (5, 6, 7),
    'right_arm': (2, 3, 4),
    'left_leg': (11, 12, 13),
    'right_leg': (8, 9, 10),
}
BODY_PARTS = {'h36m': H36M_BODY_PARTS, 'mpi': MPI_BODY_PARTS}

# The 15 Human3.6M actions (evaluation averages over these), and the action
# number used in Human3.6M video names such as 's_09_act_05_subact_02'.
H36M_ACTIONS = (
    'Directions', 'Discussion', 'Eating', 'Greeting', 'Phoning', 'Photo',
    'Posing', 'Purchases', 'Sitting', 'SittingDown', 'Smoking', 'Waiting',
    'WalkDog', 'Walking', 'WalkTogether',
)
H36M_ACTION_BY_NUMBER = {
    2: 'Directions', 3: 'Discussion', 4: 'Eating', 5: 'Greeting',
    6: 'Phoning', 7: 'Posing', 8: 'Purchases', 9: 'Sitting',
    10: 'SittingDown', 11: 'Smoking', 12: 'Photo', 13: 'Waiting',
    14: 'Walking', 15: 'WalkDog', 16: 'WalkTogether',
}
# Other spellings of the same actions (VideoPose3D keys, H36M folder names),
# compared lower-case without spaces or underscores.
_H36M_ACTION_LOOKUP = {a.lower(): a for a in H36M_ACTIONS}
_H36M_ACTION_LOOKUP.update({
    'takingphoto': 'Photo',
    'walkingdog': 'WalkDog',
    'walkingtogether': 'WalkTogether',
})


def canonical_h36m_action(name: str) -> str:
  """Maps 'Directions 1', 'TakingPhoto', 'WalkingDog 2', ... to H36M_ACTIONS.

  Args:
    name: an action name as spelled by VideoPose3D, MotionBERT or the H36M
      release, optionally followed by a sub-action number.

  Returns:
    The canonical name (one of H36M_ACTIONS).

  Raises:
    ValueError: if the name is not a Human3.6M action.
  """
  key = re.sub(r'[\s_]*\d*$', '', name.strip())
  key = key.replace(' ', '').replace('_', '').lower()
  if key not in _H36M_ACTION_LOOKUP:
    raise ValueError(
        f'unknown Human3.6M action {name!r}; expected one of {H36M_ACTIONS}')
  return _H36M_ACTION_LOOKUP[key]


def get(name: str) -> Skeleton:
  """Returns the skeleton called `name` ('h36m' or 'mpi')."""
  if name not in SKELETONS:
    raise ValueError(f'unknown skeleton {name!r}; expected one of '
                     f'{sorted(SKELETONS)}')
  return SKELETONS[name]
