"""TCPFormer layer stack: scanned == unrolled, with and without remat.

A tiny config (depth 2, dim 32, 4 heads, T = 9, batch 2) whose layer
scales, local constants, `att_weight`, fusion weights and positional
embeddings are first set to random values (`tcpformer_testing.randomise`):
at init they are 1e-5, 0 or 0.5 and would hide mistakes in the layer
stacking or the streams.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from l2a_jax import models
import tcpformer_testing as tt  # pylint: disable=g-bad-import-order

# Many small programs, each run once: compile them cheaply.
pytestmark = pytest.mark.usefixtures('unoptimised_compiles')


@pytest.fixture(scope='module')
def scanned_reference():
  """(model, loss, outputs, grads) of the scanned randomised fp32 model."""
  model = tt.tiny_model(seed=0)
  assert model.scan_layers and model.remat == 'none'
  x, w = tt.inputs()
  return (model,) + tt.value_and_grad(model, x, w)


def test_randomised_parameters_are_informative(scanned_reference):
  model = scanned_reference[0]
  scales = np.asarray(model.layers.att_spatial.layer_scale_1[...])
  assert np.abs(scales).mean() > 0.1
  assert not np.allclose(scales[0], scales[1])
  assert np.abs(model.layers.fusion.kernel[...]).mean() > 0.1
  assert np.abs(model.temporal_layers.local_layer_scales[...]).mean() > 0.1
  assert np.abs(model.pos_embed[...]).mean() > 0.1


@pytest.mark.parametrize('scan_layers,remat,scan_unroll', [
    # The unrolled reference; it runs with a named remat policy too, which
    # changes no value, so a mismatch flags either the loop or the policy.
    (False, 'dots_with_no_batch_dims_saveable', 1),
    (True, 'block', 1),
    # Both pairs in one scan iteration (statically sliced parameters).
    (True, 'none', tt.DEPTH),
])
def test_matches_scanned_reference(scanned_reference, scan_layers, remat,
                                   scan_unroll):
  model, value, out, grads = scanned_reference
  x, w = tt.inputs()
  model.scan_layers, model.remat = scan_layers, remat
  model.scan_unroll = scan_unroll
  try:
    value_2, out_2, grads_2 = tt.value_and_grad(model, x, w)
  finally:
    model.scan_layers, model.remat, model.scan_unroll = True, 'none', 1
  # The outputs are O(1) and depend on the input (not constant).
  assert float(jnp.std(out)) > 0.1
  np.testing.assert_allclose(out_2, out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(value_2, value, rtol=1e-5, atol=1e-5)
  tt.assert_trees_close(grads_2, grads, rtol=1e-5, atol=1e-5)


def test_scan_unroll_unrolls_the_loop_and_is_validated():
  """scan_unroll = depth leaves no while loop; non-ints are refused."""
  model = tt.tiny_model(seed=0)
  x, _ = tt.inputs()

  def hlo(unroll):
    model.scan_unroll = unroll
    graph, state = nnx.split(model)
    return jax.jit(lambda s, x: nnx.merge(graph, s)(x)).lower(
        state, x).as_text()

  try:
    assert 'while' in hlo(1)
    assert 'while' not in hlo(tt.DEPTH)
  finally:
    model.scan_unroll = 1
  for bad in (0, 2.0, True, '2'):
    fields = tt.tiny_config().to_dict()
    fields['scan_unroll'] = bad
    with pytest.raises(ValueError, match='model.scan_unroll'):
      models.create_model(ml_collections.ConfigDict(fields), nnx.Rngs(0))


def test_every_layer_gets_gradients(scanned_reference):
  grads = scanned_reference[3]
  for leaf in jax.tree.leaves(grads['layers']) + jax.tree.leaves(
      grads['temporal_layers']):
    per_layer = np.abs(np.asarray(leaf)).reshape(tt.DEPTH, -1).max(axis=1)
    assert np.all(per_layer > 0)
  for name in ('center_pose', 'pos_embed', 'center_pos_embed'):
    assert np.abs(np.asarray(grads[name][...])).max() > 0, name


def test_recomputed_attention_maps_match_and_save_memory(scanned_reference):
  """recompute_attention=True: the same function, less training memory."""
  _, value, out, grads = scanned_reference
  x, w = tt.inputs()
  model = tt.tiny_model(seed=0, recompute_attention=True)
  value_2, out_2, grads_2 = tt.value_and_grad(model, x, w)
  np.testing.assert_allclose(out_2, out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(value_2, value, rtol=1e-5, atol=1e-5)
  tt.assert_trees_close(grads_2, grads, rtol=1e-5, atol=1e-5)

  def temp_bytes(recompute):
    return tt.gradient_temp_bytes(
        tt.tiny_model(seed=0, recompute_attention=recompute), x, w)

  # The scanned stack keeps its per-layer residuals as stacked scan
  # outputs, so dropping the [heads, T, T] maps shows in XLA's scratch.
  assert temp_bytes(True) < temp_bytes(False)
