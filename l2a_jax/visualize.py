"""Pictures of predicted vs ground-truth skeletons (matplotlib, no display).

Poses are root-relative in camera or image orientation (x right, y down,
z away from the camera); the plots show x to the right, depth into the
picture and y up, so people stand upright.
"""

import io
import os
from typing import Sequence

import numpy as np

from l2a_jax import atomic_output
from l2a_jax.data import skeleton as skeleton_lib

_GT_COLOR = '#2b6cb0'
_PRED_COLOR = '#dd6b20'


def _pyplot():
  """matplotlib.pyplot on the Agg backend (no display), imported on first
  use: a training process that draws nothing does not pay for it."""
  # pylint: disable=g-import-not-at-top
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot
  # pylint: enable=g-import-not-at-top
  return pyplot


def _to_plot_axes(pose: np.ndarray) -> np.ndarray:
  """(x right, y down, z forward) -> plot (x, depth, up)."""
  return np.stack([pose[..., 0], pose[..., 2], -pose[..., 1]], axis=-1)


def plot_clip(
    inputs: np.ndarray,
    pred_mm: np.ndarray,
    target_mm: np.ndarray,
    skeleton: skeleton_lib.Skeleton,
    path: str | os.PathLike[str],
    *,
    frame_labels: Sequence[str] | None = None,
    title: str = '',
) -> str:
  """Frames of one clip: the 2D input above the 3D prediction and truth.

  Args:
    inputs: `[frames, joints, >=2]` normalised 2D input (x right, y down).
    pred_mm: `[frames, joints, 3]` root-relative prediction in mm.
    target_mm: `[frames, joints, 3]` ground truth, same frames.
    skeleton: joint parents for the bones.
    path: PNG file to write (temporary name, then renamed).
    frame_labels: a caption per column.
    title: figure title (e.g. the clip's MPJPE).

  Returns:
    The path written.
  """
  inputs = np.asarray(inputs, np.float64)[..., :2]
  pred = _to_plot_axes(np.asarray(pred_mm, np.float64))
  target = _to_plot_axes(np.asarray(target_mm, np.float64))
  if (pred.shape != target.shape or pred.ndim != 3
      or inputs.shape[:2] != pred.shape[:2]):
    raise ValueError(
        f'expected [frames, joints, 2|3] arrays of one shape, got inputs '
        f'{inputs.shape}, pred {pred.shape}, target {target.shape}')
  num_frames = pred.shape[0]
  labels = frame_labels or [f'frame {i}' for i in range(num_frames)]
  both = np.concatenate([pred, target], axis=0)
  centre = 0.5 * (both.max(axis=(0, 1)) + both.min(axis=(0, 1)))
  radius = max(0.55 * float(np.max(both.max(axis=(0, 1))
                                   - both.min(axis=(0, 1)))), 1e-6)
  low2d, high2d = inputs.min(axis=(0, 1)), inputs.max(axis=(0, 1))
  centre2d = 0.5 * (low2d + high2d)
  radius2d = max(0.55 * float(np.max(high2d - low2d)), 1e-6)

  plt = _pyplot()
  fig = plt.figure(figsize=(3.2 * num_frames, 6.8))
  for i in range(num_frames):
    ax = fig.add_subplot(2, num_frames, i + 1)
    for parent, child in skeleton.bones:
      ax.plot(*zip(inputs[i, parent], inputs[i, child]), color='#444444',
              linewidth=1.8)
    ax.scatter(*inputs[i].T, color='#444444', s=6)
    ax.set_xlim(centre2d[0] - radius2d, centre2d[0] + radius2d)
    ax.set_ylim(centre2d[1] + radius2d, centre2d[1] - radius2d)  # y down
    ax.set_aspect('equal')
    ax.set_title(f'{labels[i]}: 2D input', fontsize=9)
    ax.tick_params(labelsize=7)
    if i == 0:
      ax.set_ylabel('normalised image y', fontsize=8)
    ax.set_xlabel('normalised image x', fontsize=8)
    ax = fig.add_subplot(2, num_frames, num_frames + i + 1, projection='3d')
    for pose, color, name in ((target[i], _GT_COLOR, 'ground truth'),
                              (pred[i], _PRED_COLOR, 'prediction')):
      for parent, child in skeleton.bones:
        ax.plot(*zip(pose[parent], pose[child]), color=color, linewidth=2.0)
      ax.scatter(*pose.T, color=color, s=6, label=name)
    ax.set_xlim(centre[0] - radius, centre[0] + radius)
    ax.set_ylim(centre[1] - radius, centre[1] + radius)
    ax.set_zlim(centre[2] - radius, centre[2] + radius)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=12.0, azim=-70.0)
    ax.set_xlabel('x (mm)', fontsize=7)
    ax.set_ylabel('depth (mm)', fontsize=7)
    ax.set_zlabel('up (mm)', fontsize=7)
    ax.tick_params(labelsize=6)
    error = float(np.mean(np.linalg.norm(pred[i] - target[i], axis=-1)))
    ax.set_title(f'{labels[i]}: {error:.0f} mm', fontsize=9)
    if i == 0:
      ax.legend(loc='upper left', fontsize=7)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=80)
  plt.close(fig)
  return str(atomic_output.replace_file(path, buffer.getvalue()))


def plot_training_curves(
    curves: dict[str, list[tuple[int, float]]],
    path: str | os.PathLike[str],
    *,
    baselines: dict[str, float] | None = None,
) -> str:
  """Training loss and evaluation MPJPE over steps (two panels).

  Args:
    curves: `{'loss': [(step, mean loss)], 'eval_mpjpe': [(step, mm)]}`.
    path: PNG file to write (temporary name, then renamed).
    baselines: `{name: MPJPE mm}` drawn as horizontal lines on the MPJPE
      panel.

  Returns:
    The path written.
  """
  plt = _pyplot()
  fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(9.0, 3.6))
  if curves.get('loss'):
    steps, values = zip(*curves['loss'])
    ax_loss.plot(steps, values, color=_PRED_COLOR, marker='.')
  ax_loss.set_xlabel('step')
  ax_loss.set_ylabel('training loss (normalised units)')
  ax_loss.set_yscale('log')
  ax_loss.set_title('training loss', fontsize=10)
  if curves.get('eval_mpjpe'):
    steps, values = zip(*curves['eval_mpjpe'])
    ax_eval.plot(steps, values, color=_PRED_COLOR, marker='o', label='model')
  for (name, value), style in zip(sorted((baselines or {}).items()),
                                  ('--', ':', '-.')):
    ax_eval.axhline(value, color='#666666', linestyle=style,
                    label=f'{name} baseline')
  ax_eval.set_xlabel('step')
  ax_eval.set_ylabel('test MPJPE (mm)')
  ax_eval.set_title('evaluation MPJPE', fontsize=10)
  ax_eval.legend(fontsize=8)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=80)
  plt.close(fig)
  return str(atomic_output.replace_file(path, buffer.getvalue()))
