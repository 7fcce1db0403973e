"""Tests of the L2A model: shapes, parameter tree and count, the add-mode
identity, bfloat16 tolerance, configuration errors, history masks.

Gradient paths are tested in test_l2a_gradients.py, the config variants in
test_l2a_variants*.py, memory scaling in test_l2a_memory.py.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2a_jax import models
from l2a_jax.models import hpa_lpa
from l2a_jax.models import l2a
from l2a_jax.models import l2a_options
import l2a_testing

# Many small programs, each run once: compile them cheaply.
pytestmark = pytest.mark.usefixtures('unoptimised_compiles')

# Max |y_bf16 - y_f32| / max |y_f32| on the tiny informative model, with
# every layer built in bfloat16. (Until issue 12 this test only swapped
# `options.dtype` on a float32-built model, so most layers stayed float32;
# the 1.7e-3 to 4.4e-3 of docs/models.md came from that setup.) Measured
# with real bf16 layers: 1.59e-2 with the float32 residual stream, 2.03e-2
# with the bf16 stream before it. The bound is the old code's error: the
# float32 stream must be no worse.
BFLOAT16_TOLERANCE = 2.0e-2


@pytest.mark.parametrize('frames', [9, 27, 81, 243])
def test_output_shape_default_model(frames):
  cfg = l2a_testing.full_model_config(frames)
  model = nnx.eval_shape(lambda: models.create_model(cfg, nnx.Rngs(0)))
  x = jax.ShapeDtypeStruct((2, frames, 17, 3), jnp.float32)
  out = jax.eval_shape(lambda m, x: m(x), model, x)
  assert out.shape == (2, frames, 17, 3) and out.dtype == jnp.float32


def _count(tree):
  return sum(leaf.size for leaf in jax.tree.leaves(tree))


def test_parameter_count_matches_design_formula():
  """Default model, T = 243: the l2a_design.md section 6 formula."""
  cfg = l2a_testing.full_model_config(243)
  model = nnx.eval_shape(lambda: models.create_model(cfg, nnx.Rngs(0)))
  c, depth, frames, joints = 128, 16, 243, 17
  backbone_layer = 24 * c * c + 28 * c + 2  # two branches + fusion
  hpa_layer = 2 * c  # pseudo-query + gain
  lpa_slot = c * c + c  # projection + RMSNorm scale, slots 0 .. L
  embed = 3 * c + c + (joints + frames) * c
  head = 2 * c + (c * 512 + 512) + (512 * 3 + 3)
  expected = (depth * (backbone_layer + hpa_layer) + (depth + 1) * lpa_slot +
              embed + head)
  assert _count(nnx.state(model, nnx.Param)) == expected == 6_735_267


def test_parameter_tree_is_stacked_and_named():
  cfg = l2a_testing.model_config({'hpa.mode': 'replace', 'lpa.dim': 8})
  model = l2a.L2A(cfg, rngs=nnx.Rngs(0))
  assert l2a.L2A.STACKED_MODULES == ('layers',)
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  layer_names = set(params['layers'])
  assert {'norm_s1', 'attn_s', 'ls_s1', 'norm_s2', 'mlp_s', 'ls_s2',
          'norm_t1', 'attn_t', 'ls_t1', 'norm_t2', 'mlp_t', 'ls_t2',
          'fusion', 'hpa_query', 'hpa_out', 'lpa'} == layer_names
  assert {'joints_embed', 'spatial_pos_embed', 'temporal_pos_embed',
          'lpa_embed', 'layers', 'final_hpa_query', 'final_hpa_out', 'norm',
          'rep_logit', 'head'} == set(params)
  for leaf in jax.tree.leaves(params['layers']):
    assert leaf.shape[0] == cfg.depth
  qkv = params['layers']['attn_s']['qkv']['kernel']
  assert qkv.shape == (cfg.depth, 16, 48)
  assert params['layers']['lpa']['proj']['kernel'].shape == (cfg.depth, 16, 8)
  # Initial values of the design (l2a_design.md section 3.6).
  np.testing.assert_array_equal(params['layers']['fusion']['kernel'], 0.0)
  np.testing.assert_array_equal(params['layers']['fusion']['bias'], 0.5)
  np.testing.assert_array_equal(params['layers']['hpa_query'], 0.0)
  np.testing.assert_array_equal(params['layers']['ls_t2'], np.float32(1e-5))
  # The layers were initialised independently.
  assert not np.allclose(qkv[0], qkv[1])


def test_add_mode_gain_zero_equals_plain_backbone():
  """H1 with g = 0 is exactly the parallel backbone (hpa.mode='none')."""
  cfg = l2a_testing.model_config({'hpa.gain_init': 0.0})
  graphdef, params = l2a_testing.build(cfg)
  params['layers']['hpa_gain'][...] = jnp.zeros_like(
      params['layers']['hpa_gain'][...])
  x, _ = l2a_testing.inputs(cfg)
  none_cfg = l2a_testing.model_config({'hpa.mode': 'none'})
  none_def, none_params = l2a_testing.build(none_cfg)
  # Same backbone, embedding and head parameters.
  pure, none_pure = nnx.to_pure_dict(params), nnx.to_pure_dict(none_params)
  for name in none_pure['layers']:
    none_pure['layers'][name] = pure['layers'][name]
  for name in none_pure:
    if name != 'layers':
      none_pure[name] = pure[name]
  nnx.replace_by_pure_dict(none_params, none_pure)
  got = jax.jit(lambda p: l2a_testing.apply(graphdef, p, x))(params)
  want = jax.jit(lambda p: l2a_testing.apply(none_def, p, x))(none_params)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_bfloat16_compute_close_to_float32():
  cfg = l2a_testing.model_config()
  graphdef, params = l2a_testing.build(cfg)
  # The same parameters in a model built with model.dtype='bfloat16' (every
  # Linear / LayerNorm carries its compute dtype).
  graphdef16, _ = l2a_testing.build(l2a_testing.model_config(
      {'dtype': 'bfloat16'}))
  x, _ = l2a_testing.inputs(cfg)

  def run(params, graphdef):
    return l2a_testing.apply(graphdef, params, x)

  run = jax.jit(run, static_argnums=1)
  y32 = run(params, graphdef)
  y16 = run(params, graphdef16)
  assert y16.dtype == jnp.float32  # the output is always float32
  error = float(jnp.abs(y16 - y32).max() / jnp.abs(y32).max())
  assert 0 < error < BFLOAT16_TOLERANCE, error


def test_rejects_wrong_input_shape():
  cfg = l2a_testing.model_config()
  model = l2a.L2A(cfg, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'expected \[batch, 9, 17, 3\]'):
    model(jnp.zeros((1, 27, 17, 3)))
  with pytest.raises(ValueError, match='L2A input'):
    model(jnp.zeros((1, 9, 16, 3)))


@pytest.mark.parametrize('overrides, message', [
    ({'hpa.mode': 'sum'}, 'model.hpa.mode'),
    ({'lpa.mode': 'pca'}, 'model.lpa.mode'),
    ({'fusion': 'concat'}, 'model.fusion'),
    ({'history_vjp': 'manual'}, 'model.history_vjp'),
    ({'remat': 'full'}, 'model.remat'),
    ({'num_heads': 3}, 'divisible'),
    ({'fusion': 'channel_split', 'backbone': 'sequential'}, 'channel_split'),
    ({'hpa.mode': 'replace', 'hpa.include_embedding': False},
     'include_embedding'),
    ({'lpa.mode': 'pool', 'lpa.pool': 'part', 'num_joints': 16}, 'part'),
    ({'drop_path': 1.0}, 'model.drop_path'),
    ({'depth': 0}, 'model.depth'),
])
def test_rejects_bad_config(overrides, message):
  with pytest.raises(ValueError, match=message):
    l2a_options.L2AOptions.from_config(l2a_testing.model_config(overrides))


def test_remat_auto_resolves_at_validation():
  options = l2a_options.L2AOptions.from_config(
      l2a_testing.model_config({'remat': 'auto'}))
  assert options.remat == 'block'  # The CPU's choice (layers.resolve_remat).
  assert options.scan_remat == 'block'


def test_readable_slots():
  cfg = l2a_testing.model_config({'hpa.history': 'last_k', 'hpa.last_k': 2},
                                 depth=5)
  options = l2a_options.L2AOptions.from_config(cfg)
  slots = np.arange(options.num_slots)
  np.testing.assert_array_equal(
      hpa_lpa.readable_slots(options, slots, 4), [0, 0, 1, 1, 0, 0])
  # The traced path (inside the scan) gives the same mask.
  np.testing.assert_array_equal(
      jax.jit(lambda i: hpa_lpa.readable_slots(options, slots, i))(4),
      [0, 0, 1, 1, 0, 0])
  cfg = l2a_testing.model_config({'hpa.history': 'blocks',
                                  'hpa.num_blocks': 2,
                                  'hpa.include_embedding': False}, depth=5)
  options = l2a_options.L2AOptions.from_config(cfg)
  assert (options.block_size, options.num_slots) == (3, 3)
  assert options.history_gradient == 'autodiff'
  assert options.scan_remat == 'block'
  # Layer 5 reads block 1 (layers 1-3) and the partial block 2 (layer 4).
  np.testing.assert_array_equal(
      hpa_lpa.readable_slots(options, np.arange(3), 5), [0, 1, 1])
  np.testing.assert_array_equal(
      hpa_lpa.readable_slots(options, np.arange(3), 1), [0, 0, 0])
