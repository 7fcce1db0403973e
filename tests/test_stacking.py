"""Tests for l2a_jax.models.stacking (stacked <-> per-layer, torch names)."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2a_jax.models import layers
from l2a_jax.models import stacking


def _random_flat(depth=3, seed=0):
  """A flat parameter dict with two stacked modules and global leaves."""
  rng = np.random.default_rng(seed)

  def r(*shape):
    return rng.standard_normal(shape).astype(np.float32)

  return {
      'pos_embed': r(1, 5, 4),
      'head/kernel': r(4, 3),
      'head/bias': r(3),
      'norm/scale': r(4),
      'norm/bias': r(4),
      'layers/mixer/qkv/kernel': r(depth, 4, 12),
      'layers/mixer/proj/bias': r(depth, 4),
      'layers/layer_scale_1': r(depth, 4),
      'layers/norm1/scale': r(depth, 4),
      'temporal_layers/local_norms/0/scale': r(depth, 4),
      'temporal_layers/cross_temporal/att_weight': r(depth, 1),
      # Shares a name prefix with a stacked module but is not under it.
      'layers_extra/kernel': r(4, 2),
  }


PREFIXES = ('layers', 'temporal_layers')


class TestFlatten:

  def test_nnx_state_round_trip(self):

    class Net(nnx.Module):

      def __init__(self, rngs):
        self.proj = layers.Linear(4, 6, rngs=rngs)
        self.norms = nnx.List([layers.LayerNorm(6) for _ in range(2)])

    net = Net(nnx.Rngs(0))
    state = nnx.state(net, nnx.Param)
    flat = stacking.flatten_params(state)
    assert list(flat) == ['norms/0/bias', 'norms/0/scale', 'norms/1/bias',
                          'norms/1/scale', 'proj/bias', 'proj/kernel']
    np.testing.assert_array_equal(flat['proj/kernel'], net.proj.kernel[...])
    # Back into the module through the pure-dict API of nnx.State.
    doubled = {k: v * 2.0 for k, v in flat.items()}
    nnx.replace_by_pure_dict(state, stacking.unflatten_params(doubled))
    nnx.update(net, state)
    np.testing.assert_array_equal(net.norms[1].scale[...], 2.0 * np.ones(6))
    np.testing.assert_array_equal(net.proj.kernel[...], doubled['proj/kernel'])

  def test_unflatten_int_keys_and_conflicts(self):
    tree = stacking.unflatten_params({'a/0/b': 1, 'a/1/b': 2, 'c': 3})
    assert tree == {'a': {0: {'b': 1}, 1: {'b': 2}}, 'c': 3}
    with pytest.raises(ValueError, match="'a/b'"):
      stacking.unflatten_params({'a': 1, 'a/b': 2})

  def test_flatten_rejects_separator_in_key(self):
    with pytest.raises(ValueError, match='contains'):
      stacking.flatten_params({'a': {'b/c': 1}})


class TestStacking:

  def test_unstack_slices_each_layer(self):
    flat = _random_flat(depth=3)
    per_layer = stacking.unstack_layers(flat, PREFIXES, 3)
    # 6 stacked leaves x 3 layers + 6 global leaves.
    assert len(per_layer) == 6 * 3 + 6
    for i in range(3):
      np.testing.assert_array_equal(
          per_layer[f'layers/{i}/mixer/qkv/kernel'],
          flat['layers/mixer/qkv/kernel'][i])
      np.testing.assert_array_equal(
          per_layer[f'temporal_layers/{i}/local_norms/0/scale'],
          flat['temporal_layers/local_norms/0/scale'][i])
    assert per_layer['layers/2/mixer/qkv/kernel'].shape == (4, 12)
    np.testing.assert_array_equal(per_layer['layers_extra/kernel'],
                                  flat['layers_extra/kernel'])
    assert 'layers/mixer/qkv/kernel' not in per_layer

  @pytest.mark.parametrize('as_jax', [False, True])
  def test_round_trip(self, as_jax):
    flat = _random_flat(depth=4, seed=1)
    if as_jax:
      flat = {k: jnp.asarray(v) for k, v in flat.items()}
    back = stacking.stack_layers(
        stacking.unstack_layers(flat, PREFIXES, 4), PREFIXES, 4)
    assert set(back) == set(flat)
    for key, value in flat.items():
      assert isinstance(back[key], jax.Array) == as_jax, key
      np.testing.assert_array_equal(np.asarray(back[key]), np.asarray(value))

  def test_shape_dtype_structs(self):
    flat = {'layers/k': jax.ShapeDtypeStruct((2, 3, 5), jnp.float32),
            'g': jax.ShapeDtypeStruct((7,), jnp.float32)}
    per_layer = stacking.unstack_layers(flat, ('layers',), 2)
    assert per_layer['layers/1/k'].shape == (3, 5)
    back = stacking.stack_layers(per_layer, ('layers',), 2)
    assert back['layers/k'].shape == (2, 3, 5)
    assert back['g'].shape == (7,)

  def test_unstack_wrong_depth(self):
    message = r'layers/mixer/qkv/kernel.*axis 5.*\(3, 4, 12\)'
    with pytest.raises(ValueError, match=message):
      stacking.unstack_layers(_random_flat(depth=3), PREFIXES, 5)

  def test_stack_missing_layer(self):
    per_layer = stacking.unstack_layers(_random_flat(depth=3), PREFIXES, 3)
    del per_layer['layers/1/norm1/scale']
    with pytest.raises(ValueError, match='layers/1/norm1/scale: missing'):
      stacking.stack_layers(per_layer, PREFIXES, 3)

  def test_stack_extra_layer(self):
    per_layer = stacking.unstack_layers(_random_flat(depth=3), PREFIXES, 3)
    with pytest.raises(ValueError, match='layer 2 out of range for depth 2'):
      stacking.stack_layers(per_layer, PREFIXES, 2)

  def test_stack_shape_mismatch(self):
    per_layer = stacking.unstack_layers(_random_flat(depth=2), PREFIXES, 2)
    per_layer['layers/1/layer_scale_1'] = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match='different shapes'):
      stacking.stack_layers(per_layer, PREFIXES, 2)

  def test_stack_non_integer_layer(self):
    with pytest.raises(ValueError, match='layer index'):
      stacking.stack_layers({'layers/x/w': np.zeros(2)}, PREFIXES, 1)

  def test_prefix_must_be_a_sequence(self):
    with pytest.raises(TypeError, match='string'):
      stacking.unstack_layers({}, 'layers', 2)


class TestTorchNames:

  def test_naming_rule(self):
    per_layer = stacking.unstack_layers(_random_flat(depth=2), PREFIXES, 2)
    torch_like = stacking.to_torch_names(per_layer)
    assert 'layers.1.mixer.qkv.weight' in torch_like
    np.testing.assert_array_equal(torch_like['layers.1.mixer.qkv.weight'],
                                  per_layer['layers/1/mixer/qkv/kernel'].T)
    assert torch_like['layers.1.mixer.qkv.weight'].shape == (12, 4)
    np.testing.assert_array_equal(torch_like['norm.weight'],
                                  per_layer['norm/scale'])
    np.testing.assert_array_equal(
        torch_like['temporal_layers.0.local_norms.0.weight'],
        per_layer['temporal_layers/0/local_norms/0/scale'])
    np.testing.assert_array_equal(torch_like['head.bias'],
                                  per_layer['head/bias'])
    np.testing.assert_array_equal(
        torch_like['temporal_layers.1.cross_temporal.att_weight'],
        per_layer['temporal_layers/1/cross_temporal/att_weight'])
    np.testing.assert_array_equal(torch_like['pos_embed'],
                                  per_layer['pos_embed'])
    assert len(torch_like) == len(per_layer)

  def test_round_trip(self):
    per_layer = stacking.unstack_layers(_random_flat(depth=2), PREFIXES, 2)
    back = stacking.from_torch_names(stacking.to_torch_names(per_layer))
    assert set(back) == set(per_layer)
    for key, value in per_layer.items():
      np.testing.assert_array_equal(back[key], value)

  def test_shape_dtype_struct_kernel(self):
    out = stacking.to_torch_names(
        {'fc/kernel': jax.ShapeDtypeStruct((3, 5), jnp.float32)})
    assert out['fc.weight'].shape == (5, 3)

  def test_stacked_kernel_rejected(self):
    with pytest.raises(ValueError, match='2-D Linear kernel'):
      stacking.to_torch_names({'layers/fc/kernel': np.zeros((2, 3, 4))})

  def test_jax_leaf_named_weight_rejected(self):
    with pytest.raises(ValueError, match='ambiguous'):
      stacking.to_torch_names({'fc/weight': np.zeros((3, 4))})

  def test_torch_weight_rank(self):
    with pytest.raises(ValueError, match=r'conv\.weight.*\(2, 3, 4\)'):
      stacking.from_torch_names({'conv.weight': np.zeros((2, 3, 4))})

  def test_malformed_torch_key(self):
    with pytest.raises(ValueError, match='a..b'):
      stacking.from_torch_names({'a..b': np.zeros(2)})
