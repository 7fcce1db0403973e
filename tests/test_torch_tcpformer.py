"""Tests of the PyTorch TCPFormer reference against the official layout."""

import pathlib

import numpy as np
import pytest

torch = pytest.importorskip('torch')

# pylint: disable=g-import-not-at-top,wrong-import-position
from l2a_jax import convert_torch
from l2a_jax.torch_reference import layers
from l2a_jax.torch_reference import tcpformer
# pylint: enable=g-import-not-at-top,wrong-import-position

_TRANS_BLOCK = (
    'layer_scale_1', 'layer_scale_2', 'norm1.weight', 'norm1.bias',
    'mixer.proj.weight', 'mixer.proj.bias', 'mixer.qkv.weight',
    'norm2.weight', 'norm2.bias', 'mlp.fc1.weight', 'mlp.fc1.bias',
    'mlp.fc2.weight', 'mlp.fc2.bias')


def _mlp(name):
  return [f'{name}.fc1.weight', f'{name}.fc1.bias', f'{name}.fc2.weight',
          f'{name}.fc2.bias']


def _norm(name):
  return [f'{name}.weight', f'{name}.bias']


def _official_keys(depth):
  """The official state_dict keys in order, written out from the spec (5)."""
  keys = ['pos_embed', 'center_pose', 'center_pos_embed',
          'joints_embed.weight', 'joints_embed.bias', 'norm.weight',
          'norm.bias']
  for i in range(depth):
    for stream in ('att_spatial', 'att_temporal', 'graph_spatial',
                   'graph_temporal'):
      keys += [f'layers.{i}.{stream}.{k}' for k in _TRANS_BLOCK]
    keys += [f'layers.{i}.fusion.weight', f'layers.{i}.fusion.bias']
  keys += ['rep_logit.fc.weight', 'rep_logit.fc.bias', 'head.weight',
           'head.bias']
  for i in range(depth):
    p = f'temporal_layers.{i}'
    for j in range(3):
      keys += [f'{p}.local_attention_list.{j}.proj.weight',
               f'{p}.local_attention_list.{j}.proj.bias',
               f'{p}.local_attention_list.{j}.qkv.weight']
    for j in range(3):
      keys += _mlp(f'{p}.loacl_mlps.{j}')
    for j in range(6):
      keys += _norm(f'{p}.local_norms.{j}')
    c = f'{p}.cross_temporal'
    keys += [f'{c}.layer_scale_{k}' for k in range(1, 9)]
    keys += [f'{c}.att_weight']
    keys += _norm(f'{c}.norm_full') + _norm(f'{c}.norm_center')
    for name in ('full_center', 'center_full'):
      keys += [f'{c}.{name}.{w}.weight' for w in ('wq', 'wk', 'wv', 'proj')]
      keys += [f'{c}.{name}.proj.bias']
    keys += _mlp(f'{c}.mlp_1') + _mlp(f'{c}.mlp_2')
    keys += _norm(f'{c}.norm_1') + _norm(f'{c}.norm_2')
    keys += _norm(f'{c}.norm_sa_self')
    keys += [f'{c}.map_sa_self.proj.weight', f'{c}.map_sa_self.proj.bias',
             f'{c}.map_sa_self.qkv.weight']
    keys += _norm(f'{c}.norm_mlp_self') + _mlp(f'{c}.mlp_sa_self')
    keys += _norm(f'{c}.norm_sa_1')
    keys += [f'{c}.map_sum.proj.weight', f'{c}.map_sum.proj.bias',
             f'{c}.map_sum.qkv.weight']
    keys += _norm(f'{c}.norm_sa_2') + _mlp(f'{c}.mlp_sa')
  return keys


def _num_params(model):
  return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('frames,expected', [(243, 35_118_259),
                                             (81, 35_000_755)])
def test_full_size_parameter_count_and_keys(frames, expected):
  torch.manual_seed(0)
  model = tcpformer.TCPFormer(num_frames=frames)
  state = model.state_dict()
  assert _num_params(model) == expected
  assert len(state) == 2315
  # Same keys in the same order as the official model.
  assert list(state) == _official_keys(16)
  assert state['center_pose'].shape == (frames // 3, 17, 128)
  assert state['layers.3.att_spatial.mixer.qkv.weight'].shape == (384, 128)
  assert state['layers.3.fusion.weight'].shape == (2, 256)
  assert state['temporal_layers.5.cross_temporal.att_weight'].shape == (1,)
  assert state['temporal_layers.5.cross_temporal.map_sum.qkv.weight'].shape == (
      384, 128)
  assert state['head.weight'].shape == (3, 512)


def test_local_layer_scales_are_constants_outside_the_state_dict():
  model = tcpformer.TCPFormer(depth=2, dim=16, num_heads=2, num_frames=9,
                              layer_scale_init=1e-5)
  block = model.temporal_layers[1]
  assert block.local_layer_scales.shape == (6, 16)
  np.testing.assert_array_equal(block.local_layer_scales.numpy(),
                                np.full((6, 16), 1e-5, np.float32))
  names = {n for n, _ in model.named_parameters()}
  assert not any('local_layer_scales' in n for n in names)
  assert not any('local_layer_scales' in k for k in model.state_dict())
  # Buffers follow dtype / device moves (nothing is pinned to one device).
  model.double()
  assert block.local_layer_scales.dtype == torch.float64
  source = pathlib.Path(tcpformer.__file__).read_text() + pathlib.Path(
      layers.__file__).read_text()
  assert 'cuda' not in source


def test_fusion_mixes_streams_half_half_at_init():
  torch.manual_seed(0)
  block = tcpformer.DSTFormerBlock(16, 2, 4.0, 1e-5, 0.0)
  x = torch.randn(2, 6, 5, 16)
  with torch.no_grad():
    expected = 0.5 * block.att_temporal(block.att_spatial(x)) + 0.5 * (
        block.graph_temporal(block.graph_spatial(x)))
    np.testing.assert_allclose(block(x).numpy(), expected.numpy(), atol=1e-6)


def _naive_attention(x, qkv_weight, proj_weight, proj_bias, heads, axis):
  """Loop over heads; attention over `axis` (1 = frames, 2 = joints)."""
  c = x.shape[-1]
  d = c // heads
  outs = []
  for h in range(heads):
    wq = qkv_weight[h * d:(h + 1) * d]
    wk = qkv_weight[c + h * d:c + (h + 1) * d]
    wv = qkv_weight[2 * c + h * d:2 * c + (h + 1) * d]
    q, k, v = x @ wq.T, x @ wk.T, x @ wv.T
    if axis == 1:  # make frames the second-to-last axis
      q, k, v = (a.transpose(1, 2) for a in (q, k, v))
    attn = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, -1)
    out = attn @ v
    outs.append(out.transpose(1, 2) if axis == 1 else out)
  return torch.cat(outs, -1) @ proj_weight.T + proj_bias


@pytest.mark.parametrize('mode,axis', [('spatial', 2), ('temporal', 1)])
def test_attention_matches_per_head_loop(mode, axis):
  torch.manual_seed(1)
  attention = layers.Attention(16, 4, mode)
  x = torch.randn(2, 7, 5, 16)
  with torch.no_grad():
    expected = _naive_attention(x, attention.qkv.weight, attention.proj.weight,
                                attention.proj.bias, 4, axis)
    np.testing.assert_allclose(attention(x).numpy(), expected.numpy(),
                               atol=1e-5)


def test_sum_attention_mixes_probabilities():
  torch.manual_seed(2)
  attention = tcpformer.SumAttention(16, 4)
  plain = layers.Attention(16, 4, 'temporal')
  plain.load_state_dict(attention.state_dict())
  x = torch.randn(2, 6, 3, 16)
  att_map = torch.softmax(torch.randn(2, 4, 3, 6, 6), -1)
  with torch.no_grad():
    # Weight 1: the plain attention; weight 0: the given map applied to v.
    np.testing.assert_allclose(
        attention(x, att_map, torch.ones(1)).numpy(), plain(x).numpy(),
        atol=1e-5)
    _, _, v = attention.qkv_heads(x)
    expected = attention.merge(att_map @ v)
    np.testing.assert_allclose(
        attention(x, att_map, torch.zeros(1)).numpy(), expected.numpy(),
        atol=1e-6)


def test_cross_attention_shapes_and_rows_sum_to_one():
  torch.manual_seed(3)
  cross = tcpformer.CrossAttention(16, 4)
  attn, out = cross(torch.randn(2, 3, 5, 16), torch.randn(2, 9, 5, 16))
  assert attn.shape == (2, 4, 5, 3, 9)
  assert out.shape == (2, 3, 5, 16)
  np.testing.assert_allclose(attn.sum(-1).detach().numpy(), 1.0, atol=1e-6)


def test_frames_enter_only_through_the_chunks():
  """No temporal embedding (spec quirk 4): permuting frames inside one chunk
  permutes the output; moving a frame to another chunk does not, once the
  local (chunk) branch has a visible scale."""
  torch.manual_seed(4)
  model = tcpformer.TCPFormer(depth=2, dim=16, num_heads=2, num_frames=9,
                              layer_scale_init=0.3).eval()
  x = torch.randn(1, 9, 17, 3)
  within = torch.tensor([2, 0, 1, 3, 4, 5, 6, 7, 8])
  across = torch.tensor([3, 1, 2, 0, 4, 5, 6, 7, 8])
  with torch.no_grad():
    y = model(x)
    np.testing.assert_allclose(model(x[:, within]).numpy(),
                               y[:, within].numpy(), atol=1e-5)
    assert np.abs(model(x[:, across]).numpy() -
                  y[:, across].numpy()).max() > 1e-3


def test_official_checkpoint_loads_strictly(tmp_path):
  torch.manual_seed(5)
  model = tcpformer.TCPFormer(depth=2, dim=16, num_heads=2, num_frames=9)
  official = {
      'epoch': 41, 'lr': 3.3e-4, 'optimizer': {'state': {}, 'param_groups': []},
      'model': {'module.' + k: v for k, v in model.state_dict().items()},
      'min_mpjpe': np.float64(40.5), 'wandb_id': 'abc123'}
  path = tmp_path / 'official.pth.tr'
  torch.save(official, path)
  state, info = convert_torch.read_torch_checkpoint(path)
  assert info == {'epoch': 41, 'min_mpjpe': 40.5}
  fresh = tcpformer.TCPFormer(depth=2, dim=16, num_heads=2, num_frames=9)
  fresh.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()},
                        strict=True)
  x = torch.randn(2, 9, 17, 3)
  with torch.no_grad():
    np.testing.assert_array_equal(fresh.eval()(x).numpy(),
                                  model.eval()(x).numpy())
