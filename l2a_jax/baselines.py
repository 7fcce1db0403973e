"""Reference lifters scored beside every evaluation (closed form, no training).

- `mean_pose`: the mean root-relative training target, predicted for every
  frame (its depth channel is the constant-depth guess).
- `linear`: a per-frame linear least-squares map from the 2D of one frame to
  its root-relative 3D, fitted in closed form on the training split. Its
  features are the root-relative 2D of every joint, the root's absolute 2D,
  every joint's confidence and a constant (`linear_features`).
- `zero_depth`: the 2D input back-projected with zero relative depth,
  `((x - x_root) s_x, (y - y_root) s_y, 0)` with `s` the per-frame
  `zero_depth_scale` of the batch (Z_root / f for camera-space labels: the
  ground-truth root depth gives the metric scale, as the 2.5D factor does
  for MotionBERT labels, whose scale is 1). Its P-MPJPE is what a model that
  learned no relative depth reaches. Only where the dataset knows the
  camera (synthetic, BVH, MotionBERT image-space labels).

All poses are in the training units (normalised, root-relative); the
evaluation step multiplies them by `scale_to_mm`.
"""

from typing import Any

import jax.numpy as jnp
import numpy as np

NAMES = ('linear', 'mean_pose', 'zero_depth')
# Ridge term (relative to the mean diagonal of X^T X) keeping the normal
# equations well conditioned when a feature is constant (confidence 1).
_RIDGE = 1e-6


def linear_features(inputs):
  """Per-frame features of the linear lifter.

  Args:
    inputs: `[..., joints, 3]` normalised (x, y, confidence); NumPy or jnp.

  Returns:
    `[..., 3 * joints + 1]`: root-relative (x, y) of every joint (root 0
    included, it is 0), the root's absolute (x, y), every confidence, 1.
  """
  xp = jnp if isinstance(inputs, jnp.ndarray) else np
  xy = inputs[..., :2]
  relative = xy - xy[..., :1, :]
  lead = inputs.shape[:-2]
  return xp.concatenate([
      relative.reshape(*lead, -1), xy[..., 0, :], inputs[..., 2],
      xp.ones(lead + (1,), inputs.dtype)], axis=-1)


def fit(train_inputs: np.ndarray, train_targets: np.ndarray,
        root: int = 0) -> dict[str, np.ndarray]:
  """Fits the baselines on training frames (closed form, float64).

  Args:
    train_inputs: `[N, joints, 3]` normalised model inputs of the training
      split (the data the model is trained on, unflipped).
    train_targets: `[N, joints, 3]` root-relative normalised targets.
    root: root joint (its prediction is zeroed).

  Returns:
    `{'linear_weights': float32 [3 J + 1, 3 J], 'mean_pose': float32
    [J, 3]}`.
  """
  inputs = np.asarray(train_inputs, np.float64)
  targets = np.asarray(train_targets, np.float64)
  if inputs.ndim != 3 or targets.shape != inputs.shape[:2] + (3,):
    raise ValueError(f'baselines.fit: expected [N, J, 3] inputs and targets, '
                     f'got {inputs.shape} and {targets.shape}')
  features = linear_features(inputs)
  gram = features.T @ features
  gram += _RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
  weights = np.linalg.solve(gram, features.T @ targets.reshape(len(targets),
                                                               -1))
  mean = targets.mean(axis=0)
  mean[root] = 0.0
  return {'linear_weights': weights.astype(np.float32),
          'mean_pose': mean.astype(np.float32)}


def predict(params: dict[str, Any], inputs, zero_depth_scale, root: int = 0
            ) -> dict[str, Any]:
  """The baselines' predictions (jnp, jit-friendly).

  Args:
    params: from `fit`.
    inputs: `[b, T, J, 3]` normalised inputs.
    zero_depth_scale: `[b, T, 2]` per-frame back-projection scale (x, y) of
      the 2D offsets into the target units; 0 where unknown.
    root: root joint.

  Returns:
    `{name: [b, T, J, 3]}` for `NAMES`, root at 0, training units.
  """
  shape = inputs.shape[:-1] + (3,)
  linear = (linear_features(inputs) @ params['linear_weights']).reshape(shape)
  linear = linear.at[..., root, :].set(0.0)
  mean = jnp.broadcast_to(params['mean_pose'], shape)
  xy = inputs[..., :2] - inputs[..., root:root + 1, :2]
  zero_depth = jnp.concatenate(
      [xy * zero_depth_scale[..., None, :], jnp.zeros_like(xy[..., :1])], -1)
  return {'linear': linear, 'mean_pose': mean, 'zero_depth': zero_depth}


def to_json(params: dict[str, np.ndarray], fitted_on: str) -> dict:
  """A JSON-able record of fitted baselines (`from_json` reads it back)."""
  return {'fitted_on': fitted_on,
          **{k: np.asarray(v).tolist() for k, v in params.items()}}


def from_json(record: dict) -> tuple[dict[str, np.ndarray], str]:
  """`(params, fitted_on)` from a `to_json` record."""
  try:
    params = {k: np.asarray(record[k], np.float32)
              for k in ('linear_weights', 'mean_pose')}
    return params, str(record['fitted_on'])
  except (KeyError, TypeError, ValueError) as error:
    raise ValueError(f'baselines record: missing or malformed field '
                     f'({error})') from None
