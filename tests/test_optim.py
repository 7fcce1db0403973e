"""Tests of l2a_jax.optim: schedules, weight-decay mask, AdamW updates."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from l2a_jax import optim


def _optim_config(**overrides):
  config = ml_collections.ConfigDict(dict(
      optimizer='adamw', amsgrad=False, learning_rate=5e-4,
      weight_decay=0.01, weight_decay_mask='all', schedule='epoch_decay',
      lr_decay=0.99, warmup_steps=0, grad_clip_norm=0.0,
      accumulation_steps=1))
  config.update(overrides)
  return config


def _params():
  rng = np.random.default_rng(0)
  return {
      'embed': {'kernel': jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
                'bias': jnp.asarray(rng.normal(size=(4,)), jnp.float32)},
      'norm': {'scale': jnp.ones((4,), jnp.float32)},
      'layers': {'mlp': {'kernel': jnp.ones((2, 4, 4), jnp.float32)}},
      'pos_embed': jnp.zeros((5, 4), jnp.float32),
  }


def test_epoch_decay_is_a_staircase():
  schedule = optim.create_learning_rate_schedule(_optim_config(), 10, 100)
  lrs = np.array([schedule(s) for s in (0, 9, 10, 19, 20, 95)])
  np.testing.assert_allclose(
      lrs, 5e-4 * np.array([1, 1, 0.99, 0.99, 0.99**2, 0.99**9]), rtol=1e-6)


def test_warmup_then_cosine():
  schedule = optim.create_learning_rate_schedule(
      _optim_config(schedule='cosine', warmup_steps=4), 10, 24)
  np.testing.assert_allclose(
      [schedule(s) for s in range(4)], 5e-4 * np.array([0.25, 0.5, 0.75, 1]),
      rtol=1e-6)
  # Cosine over the 20 post-warm-up steps: half way at 14, zero at 24.
  np.testing.assert_allclose(schedule(14), 2.5e-4, rtol=1e-5)
  np.testing.assert_allclose(schedule(24), 0.0, atol=1e-12)
  np.testing.assert_allclose(schedule(50), 0.0, atol=1e-12)


def test_bad_values_name_the_config_key():
  with pytest.raises(ValueError, match='config.optim.schedule'):
    optim.create_learning_rate_schedule(
        _optim_config(schedule='linear'), 10, 100)
  with pytest.raises(ValueError, match='config.optim.optimizer'):
    optim.create_optimizer(_optim_config(optimizer='sgd'), 10, 100)
  with pytest.raises(ValueError, match='config.optim.weight_decay_mask'):
    optim.create_optimizer(_optim_config(weight_decay_mask='x'), 10, 100)


def test_weight_decay_mask_keeps_kernels_only():
  mask = optim.weight_decay_mask(_params(), 'no_norm_bias')
  assert mask == {'embed': {'kernel': True, 'bias': False},
                  'norm': {'scale': False},
                  'layers': {'mlp': {'kernel': True}},
                  'pos_embed': False}
  assert all(jax.tree.leaves(optim.weight_decay_mask(_params(), 'all')))


def _numpy_adamw(params, grads_seq, lrs, wd, mask):
  """AdamW as torch.optim.AdamW computes it (decoupled decay times lr)."""
  params = {k: np.array(v, np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in params.items()}
  v = {k: np.zeros_like(x) for k, x in params.items()}
  for t, (grads, lr) in enumerate(zip(grads_seq, lrs), start=1):
    for k in params:
      if mask[k]:
        params[k] = params[k] - lr * wd * params[k]
      m[k] = 0.9 * m[k] + 0.1 * grads[k]
      v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
      m_hat = m[k] / (1 - 0.9**t)
      v_hat = v[k] / (1 - 0.999**t)
      params[k] = params[k] - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
  return params


@pytest.mark.parametrize('mask_mode', ['all', 'no_norm_bias'])
def test_adamw_matches_reference_over_an_epoch_boundary(mask_mode):
  rng = np.random.default_rng(1)
  params = {'kernel': jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
            'bias': jnp.asarray(rng.normal(size=(2,)), jnp.float32)}
  grads_seq = [{k: rng.normal(size=v.shape) for k, v in params.items()}
               for _ in range(4)]
  config = _optim_config(weight_decay=0.1, weight_decay_mask=mask_mode,
                         learning_rate=1e-2)
  tx, schedule = optim.create_optimizer(config, steps_per_epoch=2,
                                        total_steps=4)
  state = tx.init(params)
  current = params
  for grads in grads_seq:
    grads = jax.tree.map(lambda g: jnp.asarray(g, jnp.float32), grads)
    updates, state = tx.update(grads, state, current)
    current = optax.apply_updates(current, updates)
  lrs = [float(schedule(s)) for s in range(4)]
  assert lrs[2] == pytest.approx(0.99e-2)
  mask = {'kernel': True, 'bias': mask_mode == 'all'}
  expected = _numpy_adamw(params, grads_seq, lrs, 0.1, mask)
  for k in params:
    np.testing.assert_allclose(current[k], expected[k], rtol=1e-5, atol=1e-6)


def test_gradient_clipping_bounds_the_global_norm():
  params = {'w': jnp.zeros((3,))}
  tx, _ = optim.create_optimizer(
      _optim_config(optimizer='adam', grad_clip_norm=1.0), 10, 100)
  # Adam's first step ignores the gradient's scale, so use two steps: the
  # first gradient (norm 50) is clipped to norm 1, the second (norm 0.5) is
  # not; plain Adam on the clipped gradients must give the same result.
  grads_seq = [jnp.array([30.0, 40.0, 0.0]), jnp.array([0.3, -0.4, 0.0])]
  clipped_seq = [grads_seq[0] / 50.0, grads_seq[1]]
  plain = optax.adam(5e-4)

  def run(transform, seq):
    state, current = transform.init(params), params
    for g in seq:
      updates, state = transform.update({'w': g}, state, current)
      current = optax.apply_updates(current, updates)
    return current['w']

  np.testing.assert_allclose(run(tx, grads_seq), run(plain, clipped_seq),
                             rtol=1e-6)
  # Without clipping the result differs (the test would notice a no-op).
  assert not np.allclose(run(plain, grads_seq), run(plain, clipped_seq),
                         rtol=1e-3)


def test_learning_rate_scales_with_the_global_batch():
  sqrt = _optim_config(lr_scaling='sqrt', lr_base_batch=16)
  assert optim.scaled_learning_rate(sqrt, 1024) == pytest.approx(5e-4 * 8)
  linear = _optim_config(lr_scaling='linear', lr_base_batch=16)
  assert optim.scaled_learning_rate(linear, 64) == pytest.approx(2e-3)
  assert optim.scaled_learning_rate(_optim_config(), 1024) == 5e-4
  schedule = optim.create_learning_rate_schedule(sqrt, 10, 100, 256)
  assert float(schedule(0)) == pytest.approx(5e-4 * 4, rel=1e-6)
  with pytest.raises(ValueError, match='lr_base_batch'):
    optim.scaled_learning_rate(_optim_config(lr_scaling='sqrt'), 1024)
  with pytest.raises(ValueError, match='config.optim.lr_scaling'):
    optim.scaled_learning_rate(_optim_config(lr_scaling='cubic'), 16)


def test_warmup_epochs_add_to_warmup_steps():
  config = _optim_config(warmup_steps=2, warmup_epochs=0.5)
  assert optim.warmup_steps(config, 10) == 7
  schedule = optim.create_learning_rate_schedule(config, 10, 100)
  np.testing.assert_allclose([schedule(0), schedule(6), schedule(7)],
                             [5e-4 / 7, 5e-4, 5e-4], rtol=1e-6)


@pytest.mark.parametrize('name', ['lamb', 'lars'])
def test_layerwise_optimisers_step_by_the_trust_ratio(name):
  config = _optim_config(optimizer=name, weight_decay=0.0,
                         weight_decay_mask='no_norm_bias', learning_rate=0.1)
  tx, _ = optim.create_optimizer(config, 10, 100)
  params = {'a': {'kernel': jnp.full((4, 4), 2.0)},
            'b': {'kernel': jnp.full((4, 4), 0.01)}}
  grads = {'a': {'kernel': jnp.full((4, 4), 1.0)},
           'b': {'kernel': jnp.full((4, 4), 1.0)}}
  updates, _ = tx.update(grads, tx.init(params), params)
  # Same gradient, update proportional to the tensor's norm (trust ratio):
  # 200x larger weights take a 200x larger step.
  ratio = (float(optax.tree.norm(updates['a'])) /
           float(optax.tree.norm(updates['b'])))
  assert ratio == pytest.approx(200.0, rel=1e-3)
  assert float(updates['a']['kernel'][0, 0]) < 0  # Downhill.
