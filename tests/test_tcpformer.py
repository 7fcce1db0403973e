"""TCPFormer structure: official keys, parameter counts, init, shapes.

Everything here runs on abstract shapes (`nnx.eval_shape`, `jax.eval_shape`)
or a tiny model, so it is cheap on CPU.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2a_jax import models
from l2a_jax.models import stacking
from l2a_jax.models import tcpformer

import tcpformer_testing as tt  # pylint: disable=g-bad-import-order


def official_state_dict_shapes(depth=16, frames=243, dim=128, joints=17,
                               mlp_ratio=4, dim_rep=512, dim_in=3,
                               dim_out=3):
  """The official MemoryInducedTransformer state_dict, key -> torch shape.

  Written from the structure listed in tcpformer_spec.md section 5 (torch
  Linear layout (out, in)), independently of the model code.
  """
  hidden = dim * mlp_ratio
  shapes = {}

  def linear(name, fan_in, fan_out, bias=True):
    shapes[f'{name}.weight'] = (fan_out, fan_in)
    if bias:
      shapes[f'{name}.bias'] = (fan_out,)

  def norm(name):
    shapes[f'{name}.weight'] = (dim,)
    shapes[f'{name}.bias'] = (dim,)

  def mlp(name):
    linear(f'{name}.fc1', dim, hidden)
    linear(f'{name}.fc2', hidden, dim)

  def attention(name):
    linear(f'{name}.proj', dim, dim)
    linear(f'{name}.qkv', dim, 3 * dim, bias=False)

  shapes['pos_embed'] = (1, joints, dim)
  shapes['center_pose'] = (frames // 3, joints, dim)
  shapes['center_pos_embed'] = (1, joints, dim)
  linear('joints_embed', dim_in, dim)
  norm('norm')
  linear('rep_logit.fc', dim, dim_rep)
  linear('head', dim_rep, dim_out)
  for i in range(depth):
    for block in ('att_spatial', 'att_temporal', 'graph_spatial',
                  'graph_temporal'):
      prefix = f'layers.{i}.{block}'
      shapes[f'{prefix}.layer_scale_1'] = (dim,)
      shapes[f'{prefix}.layer_scale_2'] = (dim,)
      norm(f'{prefix}.norm1')
      attention(f'{prefix}.mixer')
      norm(f'{prefix}.norm2')
      mlp(f'{prefix}.mlp')
    linear(f'layers.{i}.fusion', 2 * dim, 2)
    prefix = f'temporal_layers.{i}'
    for j in range(3):
      attention(f'{prefix}.local_attention_list.{j}')
      mlp(f'{prefix}.loacl_mlps.{j}')
    for j in range(6):
      norm(f'{prefix}.local_norms.{j}')
    mi = f'{prefix}.cross_temporal'
    for j in range(1, 9):
      shapes[f'{mi}.layer_scale_{j}'] = (dim,)
    shapes[f'{mi}.att_weight'] = (1,)
    for name in ('norm_full', 'norm_center', 'norm_1', 'norm_2',
                 'norm_sa_self', 'norm_mlp_self', 'norm_sa_1', 'norm_sa_2'):
      norm(f'{mi}.{name}')
    for name in ('full_center', 'center_full'):
      for w in ('wq', 'wk', 'wv'):
        linear(f'{mi}.{name}.{w}', dim, dim, bias=False)
      linear(f'{mi}.{name}.proj', dim, dim)
    for name in ('mlp_1', 'mlp_2', 'mlp_sa_self', 'mlp_sa'):
      mlp(f'{mi}.{name}')
    attention(f'{mi}.map_sa_self')
    attention(f'{mi}.map_sum')
  return shapes


def _config(frames=243, **overrides):
  return tt.model_config(frames, **overrides)


def _abstract_model(cfg):
  return nnx.eval_shape(lambda: models.create_model(cfg, nnx.Rngs(0)))


def _torch_like_shapes(model, depth):
  flat = stacking.flatten_params(nnx.state(model, nnx.Param))
  per_layer = stacking.unstack_layers(flat, type(model).STACKED_MODULES,
                                      depth)
  return {k: tuple(v.shape)
          for k, v in stacking.to_torch_names(per_layer).items()}


@pytest.fixture(scope='module')
def full_model():
  return _abstract_model(_config(243))


def test_spec_key_list_is_self_consistent():
  # The generator above reproduces the spec's own totals.
  shapes = official_state_dict_shapes()
  assert len(shapes) == 2315
  assert sum(int(np.prod(s)) for s in shapes.values()) == 35_118_259


def test_official_state_dict_keys_and_shapes(full_model):
  assert tcpformer.TCPFormer.STACKED_MODULES == ('layers', 'temporal_layers')
  ours = _torch_like_shapes(full_model, 16)
  expected = official_state_dict_shapes()
  assert len(ours) == 2315
  assert sorted(set(expected) - set(ours)) == []
  assert sorted(set(ours) - set(expected)) == []
  wrong = {k: (ours[k], expected[k])
           for k in expected if ours[k] != expected[k]}
  assert not wrong


@pytest.mark.parametrize('frames,count', [
    (243, 35_118_259), (81, 35_000_755), (27, 34_961_587), (9, 34_948_531)])
def test_parameter_count(frames, count, full_model):
  model = full_model if frames == 243 else _abstract_model(_config(frames))
  params = nnx.state(model, nnx.Param)
  assert sum(x.size for x in jax.tree.leaves(params)) == count


def test_local_layer_scales_are_constants_not_params(full_model):
  frozen = nnx.state(full_model, tcpformer.FrozenLayerScale)
  leaves = jax.tree.leaves(frozen)
  assert [x.shape for x in leaves] == [(16, 6, 128)]
  params = stacking.flatten_params(nnx.state(full_model, nnx.Param))
  assert not [k for k in params if 'local_layer_scales' in k]


@pytest.fixture(scope='module')
def small_model():
  cfg = _config(27, depth=3, dim=32, num_heads=4, dim_rep=64)
  return models.create_model(cfg, nnx.Rngs(0))


class TestInit:
  """Official initial values, on a small real (not abstract) model."""

  @pytest.fixture
  def model(self, small_model):
    return small_model

  def test_fusion_and_embeddings(self, model):
    np.testing.assert_array_equal(model.layers.fusion.kernel[...], 0.0)
    np.testing.assert_array_equal(model.layers.fusion.bias[...], 0.5)
    np.testing.assert_array_equal(model.pos_embed[...], 0.0)
    np.testing.assert_array_equal(model.center_pos_embed[...], 0.0)

  def test_layer_scales(self, model):
    flat = stacking.flatten_params(nnx.state(model, nnx.Param))
    scales = [k for k in flat if k.split('/')[-1].startswith('layer_scale_')]
    # 4 TransBlocks x 2 + MIBlock 8.
    assert len(scales) == 16
    for key in scales:
      np.testing.assert_allclose(flat[key], 1e-5, err_msg=key)
    np.testing.assert_allclose(
        model.temporal_layers.local_layer_scales[...], 1e-5)

  def test_att_weight_uniform_and_independent_per_layer(self, model):
    w = np.asarray(model.temporal_layers.cross_temporal.att_weight[...])
    assert w.shape == (3, 1)
    assert np.all((w >= 0) & (w < 1))
    assert len(np.unique(w)) == 3

  def test_proxy_standard_normal(self):
    model = models.create_model(_config(243, depth=1, dim=128),
                                nnx.Rngs(1))
    proxy = np.asarray(model.center_pose[...])
    assert proxy.shape == (81, 17, 128)
    # 176,256 draws: the sample mean / std are within 0.01 of 0 / 1.
    assert abs(proxy.mean()) < 0.01
    assert abs(proxy.std() - 1.0) < 0.01

  def test_torch_default_linear_init(self, model):
    kernel = np.asarray(model.layers.att_spatial.mlp.fc2.kernel[...])
    bound = 1.0 / np.sqrt(128)  # fan_in = 4 * 32.
    assert kernel.shape == (3, 128, 32)
    assert np.abs(kernel).max() <= bound
    assert np.abs(kernel).max() > 0.9 * bound
    # Layers are initialised independently.
    assert not np.allclose(kernel[0], kernel[1])


@pytest.mark.parametrize('frames', [9, 27, 81, 243])
def test_output_shapes(frames):
  model = _abstract_model(_config(frames))
  graphdef, state = nnx.split(model)

  def forward(state, x):
    return nnx.merge(graphdef, state)(x)

  x = jax.ShapeDtypeStruct((2, frames, 17, 3), jnp.float32)
  out = jax.eval_shape(forward, state, x)
  assert out.shape == (2, frames, 17, 3)
  assert out.dtype == jnp.float32


def test_rejects_bad_input_shape(full_model):
  with pytest.raises(ValueError, match=r'\[batch, frames, 17, 3\].*16, 2'):
    full_model(jnp.zeros((1, 9, 16, 2)))


@pytest.mark.parametrize('field,value,message', [
    ('remat', 'save_only_these_names', 'model.remat'),
    ('num_frames', 2, 'model.num_frames'),
    ('depth', 0, 'model.depth'),
    ('num_heads', 3, 'divisible'),
])
def test_rejects_bad_config(field, value, message):
  with pytest.raises(ValueError, match=message):
    _abstract_model(_config(9, **{field: value}))


def test_config_remat_auto_resolves_per_backend(monkeypatch):
  cfg = _config(9)
  assert cfg.remat == 'auto'
  # The model names what runs: 'block' on this CPU, 'none' on a GPU.
  assert _abstract_model(cfg).remat == 'block'
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert _abstract_model(cfg).remat == 'none'


def test_torch_chunk_bounds():
  assert tcpformer.torch_chunk_bounds(9, 3) == [(0, 3), (3, 6), (6, 9)]
  assert tcpformer.torch_chunk_bounds(10, 3) == [(0, 4), (4, 8), (8, 10)]
  # torch.chunk returns fewer pieces when they do not fit.
  assert tcpformer.torch_chunk_bounds(4, 3) == [(0, 2), (2, 4)]
