"""Helpers shared by the L2A test files (not a test module itself).

- `model_config`: the L2A `config.model` of configs/l2a_h36m.py shrunk to a
  CPU-test size, with dotted-key overrides.
- `informative_params`: every parameter moved away from its initial value.
  At initialisation the layer scales are 1e-5, the HPA pseudo-queries are 0
  and the fusion weights 0: the history path is almost inert and a wrong
  gradient or a wrong slot read would hardly change any number.
- `outputs_and_grads`: output and parameter VJP of several stack paths of
  one model, compiled together.
- `assert_trees_close`: scale-aware comparison of pytrees.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from l2a_jax.models import l2a

_CONFIG_PATH = os.path.join(os.path.dirname(__file__), '..', 'configs',
                            'l2a_h36m.py')

# Stack paths: options replaced on a built model (same parameters).
PATHS = {
    'scan_custom': dict(scan_layers=True, history_vjp='custom'),
    'scan_autodiff': dict(scan_layers=True, history_vjp='autodiff'),
    'unrolled': dict(scan_layers=False),
}


def full_model_config(frames: int = 243) -> ml_collections.ConfigDict:
  """`get_model_config(frames)` of configs/l2a_h36m.py (full size)."""
  spec = importlib.util.spec_from_file_location('l2a_h36m_config',
                                                _CONFIG_PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_model_config(frames)


def model_config(overrides: dict | None = None, *, frames: int = 9,
                 depth: int = 3, dim: int = 16,
                 num_heads: int = 2) -> ml_collections.ConfigDict:
  """A tiny L2A config; `overrides` maps dotted keys ('hpa.mode') to values."""
  cfg = full_model_config(frames)
  cfg.depth, cfg.dim, cfg.num_heads, cfg.dim_rep = depth, dim, num_heads, 32
  for key, value in (overrides or {}).items():
    node = cfg
    *parents, leaf = key.split('.')
    for parent in parents:
      node = node[parent]
    if leaf not in node:
      raise KeyError(f'unknown config key {key!r}')
    node[leaf] = value
  return cfg


def informative_params(params: nnx.State, seed: int = 0,
                       scale: float = 0.3) -> nnx.State:
  """Adds scale * N(0, 1) noise to every parameter leaf."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(treedef, [
      leaf + scale * jax.random.normal(key, leaf.shape, leaf.dtype)
      for leaf, key in zip(leaves, keys)
  ])


def build(cfg: ml_collections.ConfigDict, seed: int = 0):
  """(graphdef, informative params) of the model `cfg` describes."""
  model = l2a.L2A(cfg, rngs=nnx.Rngs(seed))
  graphdef, params = nnx.split(model)
  return graphdef, informative_params(params, seed)


def apply(graphdef, params, x, path: str = 'scan_custom', dropout_rng=None,
          **option_changes):
  """model(x) with the stack path (and other options) replaced."""
  model = nnx.merge(graphdef, params)
  model.options = dataclasses.replace(model.options, **PATHS[path],
                                      **option_changes)
  return model(x, dropout_rng=dropout_rng)


def outputs_and_grads(graphdef, params, x, cotangent, paths,
                      dropout_rng=None):
  """{path: (output, parameter VJP of `cotangent`)}, one jit for all paths."""

  def run(params, x, cotangent, dropout_rng):
    results = {}
    for path in paths:
      out, vjp = jax.vjp(
          lambda p, path=path: apply(graphdef, p, x, path, dropout_rng),
          params)
      results[path] = (out, vjp(cotangent)[0])
    return results

  return jax.jit(run)(params, x, cotangent, dropout_rng)


def inputs(cfg, batch: int = 2, seed: int = 1):
  """(x [B, T, J, dim_in], cotangent [B, T, J, dim_out]) float32."""
  kx, kc = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(kx, (batch, cfg.num_frames, cfg.num_joints,
                             cfg.dim_in), jnp.float32)
  cot = jax.random.normal(kc, (batch, cfg.num_frames, cfg.num_joints,
                               cfg.dim_out), jnp.float32)
  return x, cot


def assert_trees_close(got, want, rtol: float = 1e-5):
  """Leafwise |got - want| <= rtol * (|want| + max |want|) (same structure).

  The absolute part scales with each array: float32 sums of many terms lose
  relative precision on entries that nearly cancel.
  """
  got_leaves, got_def = jax.tree.flatten(got)
  want_leaves, want_def = jax.tree.flatten(want)
  assert got_def == want_def, (got_def, want_def)
  for g, w in zip(got_leaves, want_leaves):
    w = np.asarray(w, np.float32)
    np.testing.assert_allclose(np.asarray(g, np.float32), w, rtol=rtol,
                               atol=rtol * float(np.abs(w).max()))


def assert_paths_agree(overrides: dict, paths=('scan_custom', 'unrolled'),
                       rtol: float = 1e-5):
  """Builds a tiny model with `overrides`; every path's output and parameter
  VJP equal those of the last path (the reference), and are not trivial.
  """
  cfg = model_config(overrides)
  graphdef, params = build(cfg)
  x, cot = inputs(cfg)
  results = outputs_and_grads(graphdef, params, x, cot, paths)
  want_out, want_grads = results[paths[-1]]
  assert want_out.shape == x.shape[:3] + (cfg.dim_out,)
  assert float(jnp.abs(want_out).max()) > 0.1
  assert np.all(np.isfinite(np.asarray(want_out)))
  for path in paths[:-1]:
    assert_trees_close(results[path][0], want_out, rtol)
    assert_trees_close(results[path][1], want_grads, rtol)
  # Every stacked parameter takes part (a gradient in some layer). Single
  # layer slices can be legitimately inert: the last layer's LPA in 'add'
  # mode (nobody reads slot L's key), the pseudo-query of a layer reading
  # one slot (a softmax over one entry is constant).
  for path, leaf in jax.tree_util.tree_leaves_with_path(want_grads['layers']):
    assert np.abs(np.asarray(leaf)).max() > 0, path
  return results
