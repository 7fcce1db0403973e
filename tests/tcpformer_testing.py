"""Helpers shared by the TCPFormer test files (not a test module itself).

- `model_config` / `tiny_config`: the TCPFormer `config.model` of
  configs/tcpformer_h36m.py, full size or shrunk to a CPU-test size.
- `randomise` / `tiny_model`: move the parameters whose initial value is
  degenerate (layer scales 1e-5, the constant local scales, `att_weight`,
  fusion weight 0 / bias 0.5, zero positional embeddings) to U(-1, 1). At
  init they make whole branches nearly inert, so a wrong layer index, stream
  order or gradient would hardly change any number.
- `forward`, `value_and_grad`: jitted with the graphdef static, so models
  with the same structure share one compilation.
- `assert_trees_close`: leaf-by-leaf comparison of two pytrees.
"""

from __future__ import annotations

import functools
import os
import zlib

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from l2a_jax import config_files
from l2a_jax import models
from l2a_jax.models import tcpformer

FRAMES = 9
DEPTH = 2

_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..',
                        'configs')



def model_config(frames: int = 243, **overrides) -> ml_collections.ConfigDict:
  """`get_model_config(frames)` of configs/tcpformer_h36m.py, overridden."""
  module = config_files.load_sibling(os.path.join(_CONFIGS, 'x.py'),
                                     'tcpformer_h36m')
  cfg = module.get_model_config(frames)
  for key, value in overrides.items():
    setattr(cfg, key, value)
  return cfg


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  """Depth 2, dim 32, 4 heads, dim_rep 64, T = 9 (proxy of 3 frames).

  remat='none' (the config's 'auto' is 'block' on a CPU): the reference
  every remat variant is compared with (test_tcpformer_scan.py).
  """
  sizes = dict(depth=DEPTH, dim=32, num_heads=4, dim_rep=64, remat='none')
  sizes.update(overrides)
  return model_config(FRAMES, **sizes)


# Leaves whose initial value (1e-5 / 0 / 0.5 / U[0, 1)) is degenerate.
_DEGENERATE_LEAVES = ('local_layer_scales', 'att_weight', 'pos_embed',
                      'center_pos_embed', 'fusion/kernel', 'fusion/bias')


def randomise(model: nnx.Module, seed: int) -> None:
  """Sets the degenerate-at-init parameters and constants to U(-1, 1)."""
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


def tiny_model(seed: int = 0, **overrides) -> nnx.Module:
  """A randomised tiny model; equal seeds give equal parameters."""
  model = models.create_model(tiny_config(**overrides), nnx.Rngs(seed))
  randomise(model, seed + 100)
  return model


def inputs(seed: int = 0, batch: int = 2) -> tuple[jax.Array, jax.Array]:
  """Input poses x and loss weights w, both [batch, FRAMES, 17, 3]."""
  key = jax.random.key(seed)
  x = jax.random.normal(key, (batch, FRAMES, 17, 3))
  w = jax.random.normal(jax.random.fold_in(key, 1), (batch, FRAMES, 17, 3))
  return x, w


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, x, dropout_rng):
  return nnx.merge(graphdef, state)(x, dropout_rng=dropout_rng)


def forward(model: nnx.Module, x: jax.Array,
            dropout_rng: jax.Array | None = None) -> jax.Array:
  """Jitted `model(x)`; one compilation per graphdef (scan, remat, dtype)."""
  graphdef, state = nnx.split(model)
  return _forward(graphdef, state, x, dropout_rng)


@functools.partial(jax.jit, static_argnums=0)
def _value_and_grad(graphdef, params, rest, x, w):

  def loss(params):
    out = nnx.merge(graphdef, params, rest)(x)
    return jnp.sum(out * w), out

  return jax.value_and_grad(loss, has_aux=True)(params)


def value_and_grad(model: nnx.Module, x: jax.Array, w: jax.Array):
  """(loss, output, grads): loss = sum(model(x) * w), grads per nnx.Param."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  (value, out), grads = _value_and_grad(graphdef, params, rest, x, w)
  return value, out, grads


def gradient_temp_bytes(model: nnx.Module, x: jax.Array,
                        w: jax.Array) -> int:
  """XLA's scratch memory of the compiled `value_and_grad` step, bytes."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  compiled = _value_and_grad.lower(graphdef, params, rest, x, w).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def assert_trees_close(actual, expected, rtol: float, atol: float) -> None:
  """Same structure and every leaf allclose; names the failing leaf."""
  leaves = jax.tree_util.tree_leaves_with_path(actual)
  assert len(leaves) == len(jax.tree.leaves(expected))
  for (path, x), y in zip(leaves, jax.tree.leaves(expected)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol,
                               atol=atol, err_msg=jax.tree_util.keystr(path))
