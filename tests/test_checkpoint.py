"""Tests of l2a_jax.checkpointing: params-only and full training checkpoints."""

import json

from flax import nnx
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l2a_jax import checkpointing


class _TwoLayers(nnx.Module):
  """A small module with an `nnx.List` (integer path elements)."""

  def __init__(self, rngs: nnx.Rngs):
    self.layers = nnx.List(
        [nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)]
    )
    self.norm = nnx.LayerNorm(2, rngs=rngs)

  def __call__(self, x):
    for layer in self.layers:
      x = layer(x)
    return self.norm(x)


def _params(seed: int = 0) -> nnx.State:
  return nnx.state(_TwoLayers(nnx.Rngs(seed)), nnx.Param)


def _assert_trees_equal(a, b):
  a, b = checkpointing.to_pure_params(a), checkpointing.to_pure_params(b)
  assert checkpointing._flat_paths(a) == checkpointing._flat_paths(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_save_and_restore_params_round_trip(tmp_path):
  params = _params()
  meta = {'step': 7, 'model': {'name': 'l2a', 'depth': 2}}
  step_dir = checkpointing.save_params(tmp_path, params, meta)
  assert step_dir == tmp_path / 'checkpoints' / '7'
  assert (step_dir / 'params').is_dir()

  # No target: host NumPy arrays in a pure dict.
  restored, restored_meta = checkpointing.restore_params(tmp_path)
  assert {k: restored_meta[k] for k in meta} == meta
  assert restored_meta['items'] == ['params']
  assert set(restored_meta['checksums']['params']) == {
      'layers/0/kernel', 'layers/0/bias', 'layers/1/kernel', 'layers/1/bias',
      'norm/scale', 'norm/bias'}
  assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(restored))
  _assert_trees_equal(restored, params)

  # An nnx.State target comes back as an nnx.State that merges into a model.
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params
  )
  restored_state, _ = checkpointing.restore_params(tmp_path, abstract)
  assert isinstance(restored_state, nnx.State)
  _assert_trees_equal(restored_state, params)
  graphdef, _ = nnx.split(_TwoLayers(nnx.Rngs(1)), nnx.Param)
  model = nnx.merge(graphdef, restored_state)
  x = jnp.ones((5, 3))
  reference = nnx.merge(graphdef, params)
  np.testing.assert_array_equal(model(x), reference(x))


def test_restore_params_picks_step_and_reports_errors(tmp_path):
  checkpointing.save_params(tmp_path, _params(0), {'step': 1, 'model': {}})
  checkpointing.save_params(tmp_path, _params(1), {'step': 3, 'model': {}})
  latest, meta = checkpointing.restore_params(tmp_path)
  assert meta['step'] == 3
  _assert_trees_equal(latest, _params(1))
  first, meta = checkpointing.restore_params(tmp_path, step=1)
  assert meta['step'] == 1
  _assert_trees_equal(first, _params(0))

  with pytest.raises(FileExistsError, match='already exists'):
    checkpointing.save_params(tmp_path, _params(), {'step': 3})
  with pytest.raises(FileNotFoundError, match='step 5'):
    checkpointing.restore_params(tmp_path, step=5)
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    checkpointing.restore_params(tmp_path / 'elsewhere')
  wrong = {'layers': {0: {'kernel': jax.ShapeDtypeStruct((3, 4), jnp.float32)}}}
  with pytest.raises(ValueError, match='does not match the model'):
    checkpointing.restore_params(tmp_path, wrong)


def _iterator():
  dataset = grain.MapDataset.range(50).shuffle(seed=3).batch(2)
  return iter(dataset.to_iter_dataset())


def test_manager_keeps_latest_and_best_and_resumes_data(tmp_path):
  params = checkpointing.to_pure_params(_params())
  tx = optax.adamw(1e-3)
  opt_state = tx.init(params)
  data_iter = _iterator()
  next(data_iter)
  expected_next_batch = {}
  mpjpe = {1: 50.0, 2: 40.0, 3: 45.0, 4: None, 5: 48.0}
  with checkpointing.CheckpointManager(tmp_path, keep=2) as manager:
    assert manager.latest_step() is None
    for step in range(1, 6):
      metrics = None if mpjpe[step] is None else {'mpjpe_mm': mpjpe[step]}
      assert manager.save(
          step, params=params, opt_state=opt_state, data_iter=data_iter,
          meta={'model': {'depth': 2}}, metrics=metrics,
      )
      expected_next_batch[step] = next(data_iter)
    # Saving an existing step is refused, not overwritten.
    assert not manager.save(
        5, params=params, opt_state=opt_state, data_iter=None, meta={}
    )
    manager.wait_until_finished()
    # The two latest plus the best by eval MPJPE (step 2).
    assert manager.all_steps() == [2, 4, 5]
    assert manager.best_step() == 2

  with checkpointing.CheckpointManager(tmp_path, keep=2) as manager:
    assert manager.latest_step() == 5
    for step in (2, 5):
      fresh_iter = _iterator()
      restored = manager.restore(
          step, abstract_params=params, abstract_opt_state=opt_state,
          data_iter=fresh_iter,
      )
      assert restored.step == step
      assert restored.data_iter_restored
      np.testing.assert_array_equal(
          next(fresh_iter), expected_next_batch[step]
      )
      _assert_trees_equal(restored.params, params)
      _assert_trees_equal(restored.opt_state, opt_state)
    assert restored.meta['eval'] == {'mpjpe_mm': 48.0}
    assert restored.meta['model'] == {'depth': 2}

  meta = json.loads((tmp_path / 'checkpoints' / '2' / 'meta' /
                     'metadata').read_text())
  assert meta['step'] == 2 and meta['eval']['mpjpe_mm'] == 40.0


def test_manager_restores_params_only_checkpoint_without_optimizer(tmp_path):
  params = _params()
  checkpointing.save_params(tmp_path, params, {'step': 0, 'model': {}})
  pure = checkpointing.to_pure_params(params)
  opt_state = optax.adamw(1e-3).init(pure)
  data_iter = _iterator()
  first_batch = next(_iterator())
  with checkpointing.CheckpointManager(tmp_path) as manager:
    restored = manager.restore(
        None, abstract_params=pure, abstract_opt_state=opt_state,
        data_iter=data_iter,
    )
  assert restored.step == 0
  assert restored.opt_state is None
  assert not restored.data_iter_restored
  np.testing.assert_array_equal(next(data_iter), first_batch)
  _assert_trees_equal(restored.params, params)


def test_async_save_is_not_corrupted_by_a_donating_update(tmp_path):
  """The trainer donates the parameters right after starting a save."""
  params = jax.tree.map(jnp.asarray, checkpointing.to_pure_params(_params()))
  saved_values = jax.tree.map(np.array, params)
  add_one = jax.jit(
      lambda p: jax.tree.map(lambda x: x + 1.0, p), donate_argnums=0
  )
  with checkpointing.CheckpointManager(tmp_path) as manager:
    manager.save(
        1, params=params, opt_state=optax.sgd(0.1).init(params),
        data_iter=None, meta={'model': {}},
    )
    params = add_one(params)
    jax.block_until_ready(params)
  restored, _ = checkpointing.restore_params(tmp_path, step=1)
  _assert_trees_equal(restored, saved_values)
