"""In-process tests of l2a_jax.train: durations, config checks, NaN guard,
gradient accumulation (single device; the multi-device runs are in
test_train_e2e.py)."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2a_jax import config_files
from l2a_jax import optim
from l2a_jax import run_setup
from l2a_jax import sharding
from l2a_jax import train
from l2a_jax.data import skeleton as skeleton_lib

_CONFIGS = pathlib.Path(__file__).resolve().parent.parent / 'configs'


# Small programs compiled once each: compile them cheaply.
pytestmark = pytest.mark.usefixtures('unoptimised_compiles')


def _tiny_config():
  module = config_files.load_sibling(str(_CONFIGS / 'tiny.py'), 'tiny')
  config = module.get_config()
  config.model.depth = 1
  return config


def test_is_time_includes_the_last_step():
  assert [s for s in range(1, 11) if train.is_time(s, 4, 10)] == [4, 8, 10]
  assert train.cadence(-1, 37) == 37
  assert train.cadence(5, 37) == 5


def test_total_train_steps_from_epochs_or_steps():
  config = _tiny_config()
  config.train.num_train_steps = -1
  config.train.num_epochs = 3
  assert train.total_train_steps(config, 10) == 30
  config.train.num_train_steps = 7
  assert train.total_train_steps(config, 10) == 7
  config.train.num_train_steps = -1
  config.train.num_epochs = 0
  with pytest.raises(ValueError, match='num_epochs'):
    train.total_train_steps(config, 10)


def test_check_config_names_the_bad_field():
  mesh = sharding.create_mesh(_tiny_config().mesh)
  config = _tiny_config()
  config.data.num_frames = 27
  with pytest.raises(ValueError, match='config.data.num_frames=27'):
    run_setup.check_config(config, mesh)
  config = _tiny_config()
  config.optim.accumulation_steps = 3
  with pytest.raises(ValueError, match='accumulation_steps x devices'):
    run_setup.check_config(config, mesh)
  config = _tiny_config()
  config.mesh.data = 99
  with pytest.raises(ValueError, match='config.mesh.data'):
    sharding.create_mesh(config.mesh)


def test_pending_metrics_guard_names_step_and_metric():
  pending = train._PendingMetrics()
  pending.add(1, {'loss': jnp.float32(1.0), 'grad_norm': jnp.float32(2.0)})
  pending.add(2, {'loss': jnp.float32(3.0), 'grad_norm': jnp.float32(4.0)})
  assert pending.flush() == {'loss': 2.0, 'grad_norm': 3.0}
  assert pending.flush() == {}
  pending.add(3, {'loss': jnp.float32(1.0), 'grad_norm': jnp.float32(1.0)})
  pending.add(4, {'loss': jnp.float32(np.nan),
                  'grad_norm': jnp.float32(np.inf)})
  with pytest.raises(train.NonFiniteError, match=r'^step 4: loss is nan'):
    pending.flush()


def _run_steps(config, mesh, batch, num_steps, initial):
  """`num_steps` train steps from `initial` (NumPy parameters: the step
  donates, i.e. deletes, the device arrays it is given)."""
  graphdef, _, rest = run_setup.abstract_model_state(config, mesh)
  params = initial
  tx, schedule = optim.create_optimizer(config.optim, 10, 100)
  opt_state = tx.init(params)
  step_fn = train.make_train_step(
      graphdef, tx, schedule, config, skeleton_lib.H36M.parents, mesh)
  global_batch = sharding.global_batch(batch, mesh)
  key = jax.random.key(0)
  losses = []
  for step in range(num_steps):
    params, opt_state, metrics = step_fn(
        params, opt_state, global_batch, rest, key, np.int32(step))
    losses.append(float(metrics['loss']))
  return jax.device_get(params), losses


def test_gradient_accumulation_matches_the_full_batch():
  config = _tiny_config()
  mesh = sharding.create_mesh(config.mesh)
  rng = np.random.default_rng(0)
  frames = config.model.num_frames
  batch = {
      'inputs': rng.normal(size=(8, frames, 17, 3)).astype(np.float32),
      'targets': rng.normal(size=(8, frames, 17, 3)).astype(np.float32),
  }
  # Initialised once for both runs (it compiles a program of its own).
  initial = jax.device_get(run_setup.init_params(config, mesh))
  full, full_losses = _run_steps(config, mesh, batch, 2, initial)
  config.optim.accumulation_steps = 4
  accumulated, acc_losses = _run_steps(config, mesh, batch, 2, initial)
  np.testing.assert_allclose(acc_losses, full_losses, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(accumulated), jax.tree.leaves(full)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # The parameters moved (the comparison is not between two no-ops).
  moved = [np.abs(a - b).max() for a, b in
           zip(jax.tree.leaves(full), jax.tree.leaves(initial))]
  assert max(moved) > 1e-4
