"""TCPFormer layer stack: scanned == unrolled, with and without remat.

A tiny config (depth 2, dim 32, 4 heads, T = 9, batch 2) whose layer
scales, local constants, `att_weight`, fusion weights and positional
embeddings are first set to random values: at init they are 1e-5, 0 or
0.5 and would hide mistakes in the layer stacking or the streams.

The helpers here (`tiny_config`, `randomise`, `forward`, ...) are shared by
the other test_tcpformer_*.py files.
"""

import functools
import pathlib
import sys
import zlib

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2a_jax import models
from l2a_jax.models import tcpformer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] /
                       'configs'))
import tcpformer_h36m  # pylint: disable=g-import-not-at-top,wrong-import-position

# Compile speed matters more than code quality for these small graphs.
jax.config.update('jax_disable_most_optimizations', True)

FRAMES = 9
DEPTH = 2


def tiny_config(**overrides):
  """The TCPFormer model section shrunk for CPU tests."""
  cfg = tcpformer_h36m.get_model_config(FRAMES)
  cfg.depth = DEPTH
  cfg.dim = 32
  cfg.num_heads = 4
  cfg.dim_rep = 64
  for key, value in overrides.items():
    setattr(cfg, key, value)
  return cfg


# Leaves whose initial value (1e-5 / 0 / 0.5 / U[0, 1)) is degenerate.
_DEGENERATE_LEAVES = ('local_layer_scales', 'att_weight', 'pos_embed',
                      'center_pos_embed', 'fusion/kernel', 'fusion/bias')


def randomise(model: nnx.Module, seed: int) -> None:
  """Sets degenerate-at-init parameters and constants to U(-1, 1) values."""
  state = nnx.state(model, (nnx.Param, tcpformer.FrozenLayerScale))
  key = jax.random.key(seed)

  def visit(path, leaf):
    name = '/'.join(str(getattr(p, 'key', p)) for p in path)
    if not (name.rsplit('/', 1)[-1].startswith('layer_scale_') or
            name.endswith(_DEGENERATE_LEAVES)):
      return leaf
    sub = jax.random.fold_in(key, zlib.crc32(name.encode()))
    return jax.random.uniform(sub, leaf.shape, leaf.dtype, -1.0, 1.0)

  nnx.replace_by_pure_dict(state, jax.tree_util.tree_map_with_path(
      visit, nnx.to_pure_dict(state)))
  nnx.update(model, state)


def tiny_model(seed=0, **overrides):
  """A randomised tiny model; equal seeds give equal parameters."""
  model = models.create_model(tiny_config(**overrides), nnx.Rngs(seed))
  randomise(model, seed + 100)
  return model


def inputs(seed=0, batch=2):
  """Input poses x and loss weights w, both [batch, FRAMES, 17, 3]."""
  key = jax.random.key(seed)
  x = jax.random.normal(key, (batch, FRAMES, 17, 3))
  w = jax.random.normal(jax.random.fold_in(key, 1), (batch, FRAMES, 17, 3))
  return x, w


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, x, dropout_rng):
  return nnx.merge(graphdef, state)(x, dropout_rng=dropout_rng)


def forward(model, x, dropout_rng=None):
  """Jitted model(x); one compilation per graphdef (scan, remat, dtype)."""
  graphdef, state = nnx.split(model)
  return _forward(graphdef, state, x, dropout_rng)


@functools.partial(jax.jit, static_argnums=0)
def _value_and_grad(graphdef, params, rest, x, w):

  def loss(params):
    out = nnx.merge(graphdef, params, rest)(x)
    return jnp.sum(out * w), out

  return jax.value_and_grad(loss, has_aux=True)(params)


def value_and_grad(model, x, w):
  """(loss, output, grads): loss = sum(model(x) * w), grads per nnx.Param."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  (value, out), grads = _value_and_grad(graphdef, params, rest, x, w)
  return value, out, grads


def assert_trees_close(actual, expected, rtol, atol):
  leaves = jax.tree_util.tree_leaves_with_path(actual)
  assert len(leaves) == len(jax.tree.leaves(expected))
  for (path, x), y in zip(leaves, jax.tree.leaves(expected)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol,
                               atol=atol, err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope='module')
def scanned_reference():
  """(model, loss, outputs, grads) of the scanned randomised fp32 model."""
  model = tiny_model(seed=0)
  assert model.scan_layers and model.remat == 'none'
  x, w = inputs()
  return (model,) + value_and_grad(model, x, w)


def test_randomised_parameters_are_informative(scanned_reference):
  model = scanned_reference[0]
  scales = np.asarray(model.layers.att_spatial.layer_scale_1[...])
  assert np.abs(scales).mean() > 0.1
  assert not np.allclose(scales[0], scales[1])
  assert np.abs(model.layers.fusion.kernel[...]).mean() > 0.1
  assert np.abs(model.temporal_layers.local_layer_scales[...]).mean() > 0.1
  assert np.abs(model.pos_embed[...]).mean() > 0.1


@pytest.mark.parametrize('scan_layers,remat', [
    # The unrolled reference; it runs with a named remat policy too, which
    # changes no value, so a mismatch flags either the loop or the policy.
    (False, 'dots_with_no_batch_dims_saveable'),
    (True, 'block'),
])
def test_matches_scanned_reference(scanned_reference, scan_layers, remat):
  model, value, out, grads = scanned_reference
  x, w = inputs()
  model.scan_layers, model.remat = scan_layers, remat
  try:
    value_2, out_2, grads_2 = value_and_grad(model, x, w)
  finally:
    model.scan_layers, model.remat = True, 'none'
  # The outputs are O(1) and depend on the input (not constant).
  assert float(jnp.std(out)) > 0.1
  np.testing.assert_allclose(out_2, out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(value_2, value, rtol=1e-5, atol=1e-5)
  assert_trees_close(grads_2, grads, rtol=1e-5, atol=1e-5)


def test_every_layer_gets_gradients(scanned_reference):
  grads = scanned_reference[3]
  for leaf in jax.tree.leaves(grads['layers']) + jax.tree.leaves(
      grads['temporal_layers']):
    per_layer = np.abs(np.asarray(leaf)).reshape(DEPTH, -1).max(axis=1)
    assert np.all(per_layer > 0)
  for name in ('center_pose', 'pos_embed', 'center_pos_embed'):
    assert np.abs(np.asarray(grads[name][...])).max() > 0, name
