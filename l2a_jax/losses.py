"""Training losses for 3D pose lifting (pure jnp, float32).

All terms take root-relative poses in the training units (normalised pixels
for MotionBERT data, mm * 2 / res_w for camera-space data) and average over
every batch element, frame and joint, like the PyTorch lineage
(MotionBERT `loss/pose3d.py`, reused by MotionAGFormer and TCPFormer). The
default objective is `MPJPE + 0.5 N-MPJPE + 20 velocity`
(docs: `data_and_metrics.md` section 7).
"""

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp

# Loss-term names, in the order they are logged; each has a weight of the
# same name in `config.loss`.
TERMS = ('mpjpe', 'n_mpjpe', 'velocity', 'limb_variance', 'limb_gt')


def safe_norm(x: jax.Array, axis: int = -1) -> jax.Array:
  """Euclidean norm whose gradient is 0 (not NaN) at x = 0.

  A zero difference happens in practice: the root joint of a root-relative
  prediction against its zero target, or a constant clip's velocity.

  Args:
    x: any shape `[..., D]`.
    axis: the axis reduced.

  Returns:
    `[...]` (the reduced axis removed).
  """
  squared = jnp.sum(jnp.square(x), axis=axis)
  positive = squared > 0
  # The double `where` keeps the sqrt's infinite derivative at 0 out of the
  # backward pass.
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def mpjpe(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Mean per-joint position error.

  Args:
    pred: `[batch, frames, joints, 3]`.
    target: same shape as `pred`.

  Returns:
    Scalar: mean over batch, frames and joints of `||pred - target||_2`.
  """
  return jnp.mean(safe_norm(pred - target))


def n_mpjpe(pred: jax.Array, target: jax.Array) -> jax.Array:
  """MPJPE after the least-squares scale of each (batch, frame) prediction.

  s = mean_j(P . G) / mean_j(P . P), with the dot products over xyz, then
  MPJPE(s P, G) (MotionBERT `n_mpjpe`).

  Args:
    pred: `[batch, frames, joints, 3]`.
    target: same shape as `pred`.

  Returns:
    Scalar.
  """
  pred_sq = jnp.mean(jnp.sum(pred * pred, axis=-1, keepdims=True), axis=-2,
                     keepdims=True)
  cross = jnp.mean(jnp.sum(target * pred, axis=-1, keepdims=True), axis=-2,
                   keepdims=True)
  # The reference divides without a guard; an all-zero prediction (a
  # zero-initialised head) would give NaN or Inf in the loss or its gradient.
  # Such a frame gets scale 0 (double `where`, as in `safe_norm`).
  usable = pred_sq > 1e-12
  scale = jnp.where(usable, cross / jnp.where(usable, pred_sq, 1.0), 0.0)
  return mpjpe(scale * pred, target)


def velocity(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Mean per-joint velocity error (frame differences along axis 1).

  Args:
    pred: `[batch, frames, joints, 3]`.
    target: same shape as `pred`.

  Returns:
    Scalar; 0 when there is a single frame.
  """
  if pred.shape[1] <= 1:
    return jnp.zeros((), jnp.float32)
  pred_velocity = pred[:, 1:] - pred[:, :-1]
  target_velocity = target[:, 1:] - target[:, :-1]
  return jnp.mean(safe_norm(pred_velocity - target_velocity))


def limb_lengths(pose: jax.Array, parents: Sequence[int]) -> jax.Array:
  """Bone lengths ||x_j - x_parent(j)|| for every non-root joint.

  Args:
    pose: `[..., joints, 3]`.
    parents: parent index of every joint, -1 for the root.

  Returns:
    `[..., bones]` with one bone per joint whose parent is >= 0.
  """
  children = [j for j, p in enumerate(parents) if p >= 0]
  heads = [parents[j] for j in children]
  return safe_norm(pose[..., children, :] - pose[..., heads, :])


def limb_variance(pred: jax.Array, parents: Sequence[int]) -> jax.Array:
  """Variance over frames of each predicted bone length, averaged.

  Args:
    pred: `[batch, frames, joints, 3]`.
    parents: parent index of every joint, -1 for the root.

  Returns:
    Scalar (unbiased variance, as `torch.var`); 0 for a single frame.
  """
  if pred.shape[1] <= 1:
    return jnp.zeros((), jnp.float32)
  return jnp.mean(jnp.var(limb_lengths(pred, parents), axis=1, ddof=1))


def limb_gt(
    pred: jax.Array, target: jax.Array, parents: Sequence[int]
) -> jax.Array:
  """L1 distance between predicted and ground-truth bone lengths.

  Args:
    pred: `[batch, frames, joints, 3]`.
    target: same shape as `pred`.
    parents: parent index of every joint, -1 for the root.

  Returns:
    Scalar.
  """
  return jnp.mean(
      jnp.abs(limb_lengths(pred, parents) - limb_lengths(target, parents))
  )


def compute_terms(
    pred: jax.Array, target: jax.Array, parents: Sequence[int]
) -> dict[str, jax.Array]:
  """Every loss term of `TERMS`, in float32.

  Args:
    pred: `[batch, frames, joints, 3]` model output.
    target: `[batch, frames, joints, 3]` root-relative ground truth.
    parents: parent index of every joint (for the limb terms).

  Returns:
    `{term name: scalar}`.
  """
  pred = pred.astype(jnp.float32)
  target = target.astype(jnp.float32)
  return {
      'mpjpe': mpjpe(pred, target),
      'n_mpjpe': n_mpjpe(pred, target),
      'velocity': velocity(pred, target),
      'limb_variance': limb_variance(pred, parents),
      'limb_gt': limb_gt(pred, target, parents),
  }


def total_loss(
    pred: jax.Array,
    target: jax.Array,
    weights: Mapping[str, float],
    parents: Sequence[int],
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The weighted training objective and its terms.

  Terms with weight 0 are still computed and returned (logged only, as the
  lineage does); they add nothing to the loss or its gradient.

  Args:
    pred: `[batch, frames, joints, 3]` model output.
    target: `[batch, frames, joints, 3]` root-relative ground truth.
    weights: `{term: weight}` for every name in `TERMS` (`config.loss`).
    parents: parent index of every joint (for the limb terms).

  Returns:
    `(loss, terms)`: the scalar objective and `{term: scalar}`.
  """
  missing = [name for name in TERMS if name not in weights]
  if missing:
    raise ValueError(f'config.loss: missing weight(s) for {missing}')
  terms = compute_terms(pred, target, parents)
  loss = sum(
      float(weights[name]) * terms[name]
      for name in TERMS
      if float(weights[name]) != 0.0
  )
  return jnp.asarray(loss, jnp.float32), terms
