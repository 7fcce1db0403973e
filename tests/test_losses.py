"""Tests of l2a_jax.losses against NumPy formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2a_jax import losses

# Human3.6M parents (data_and_metrics.md section 1.1).
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
WEIGHTS = {'mpjpe': 1.0, 'n_mpjpe': 0.5, 'velocity': 20.0,
           'limb_variance': 0.0, 'limb_gt': 0.0}


def _poses(seed, shape=(2, 5, 17, 3)):
  rng = np.random.default_rng(seed)
  target = rng.normal(size=shape).astype(np.float32)
  target -= target[:, :, :1]
  pred = (target + 0.3 * rng.normal(size=shape)).astype(np.float32)
  return pred, target


def test_mpjpe_and_velocity_match_numpy():
  pred, target = _poses(0)
  np.testing.assert_allclose(
      losses.mpjpe(pred, target),
      np.linalg.norm(pred - target, axis=-1).mean(), rtol=1e-5)
  dv = np.diff(pred, axis=1) - np.diff(target, axis=1)
  np.testing.assert_allclose(
      losses.velocity(pred, target), np.linalg.norm(dv, axis=-1).mean(),
      rtol=1e-5)
  assert float(losses.velocity(pred[:, :1], target[:, :1])) == 0.0
  # A per-clip constant offset has no velocity error.
  assert float(losses.velocity(target + 3.0, target)) == pytest.approx(
      0.0, abs=1e-5)


def test_n_mpjpe_matches_numpy_and_ignores_scale():
  pred, target = _poses(1)
  s = ((pred * target).sum(-1).mean(-1, keepdims=True) /
       (pred * pred).sum(-1).mean(-1, keepdims=True))
  expected = np.linalg.norm(s[..., None] * pred - target, axis=-1).mean()
  np.testing.assert_allclose(losses.n_mpjpe(pred, target), expected,
                             rtol=1e-5)
  np.testing.assert_allclose(losses.n_mpjpe(4.0 * pred, target), expected,
                             rtol=1e-5)
  assert np.isfinite(losses.n_mpjpe(np.zeros_like(pred), target))


def test_limb_terms_match_numpy():
  pred, target = _poses(2)
  bones = [(j, p) for j, p in enumerate(PARENTS) if p >= 0]
  def lengths(x):
    return np.stack([np.linalg.norm(x[..., j, :] - x[..., p, :], axis=-1)
                     for j, p in bones], axis=-1)
  np.testing.assert_allclose(
      losses.limb_variance(pred, PARENTS),
      lengths(pred).var(axis=1, ddof=1).mean(), rtol=1e-5)
  np.testing.assert_allclose(
      losses.limb_gt(pred, target, PARENTS),
      np.abs(lengths(pred) - lengths(target)).mean(), rtol=1e-5)
  assert losses.limb_lengths(pred, PARENTS).shape == (2, 5, 16)


def test_total_loss_is_the_weighted_sum():
  pred, target = _poses(3)
  loss, terms = losses.total_loss(pred, target, WEIGHTS, PARENTS)
  assert set(terms) == set(losses.TERMS)
  expected = terms['mpjpe'] + 0.5 * terms['n_mpjpe'] + 20 * terms['velocity']
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  # Weight-0 terms are logged but carry no gradient.
  weights = dict(WEIGHTS, limb_gt=2.0)
  loss2, _ = losses.total_loss(pred, target, weights, PARENTS)
  np.testing.assert_allclose(loss2 - loss, 2.0 * terms['limb_gt'], rtol=1e-5)
  with pytest.raises(ValueError, match='limb_gt'):
    losses.total_loss(pred, target, {'mpjpe': 1.0}, PARENTS)


def test_gradients_are_finite_at_a_perfect_prediction():
  _, target = _poses(4)
  # Root joint and velocity differences are exactly zero here.
  def objective(pred):
    return losses.total_loss(pred, target, dict(WEIGHTS, limb_gt=1.0,
                                                limb_variance=1.0), PARENTS)[0]
  grads = jax.grad(objective)(jnp.asarray(target))
  assert np.all(np.isfinite(grads))
  grads_zero = jax.grad(objective)(jnp.zeros_like(target))
  assert np.all(np.isfinite(grads_zero))
