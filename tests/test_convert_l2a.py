"""PyTorch L2A reference == JAX L2A, through the generic converter.

Every `config.model` switch value appears in at least one variant below;
the torch model's constant-initialised parameters (layer scales, HPA
queries and gains, fusion, norms) get random values first, so the history
paths are live in every comparison.
"""

import pathlib

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2a_jax import config_files
from l2a_jax import convert_torch
from l2a_jax import models

torch = pytest.importorskip('torch')

# pylint: disable=g-import-not-at-top,wrong-import-position,g-bad-import-order
from l2a_jax import torch_reference
import test_convert_torch as tcp_tests
# pylint: enable=g-import-not-at-top,wrong-import-position,g-bad-import-order

_CONFIGS = config_files.load_sibling(
    str(pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'x.py'),
    'l2a_h36m')
_FRAMES = 6


# Small programs compiled once each: compile them cheaply.
pytestmark = pytest.mark.usefixtures('one_torch_thread',
                                     'unoptimised_compiles')


def l2a_config(depth=2, scan_layers=True, **changes):
  """A tiny L2A `config.model`; changes use dotted keys ('hpa.mode')."""
  config = _CONFIGS.get_model_config(_FRAMES)
  config.depth = depth
  config.dim = 16
  config.num_heads = 2
  config.mlp_ratio = 2.0
  config.dim_rep = 24
  config.scan_layers = scan_layers
  for key, value in changes.items():
    node = config
    *parents, leaf = key.split('.')
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def torch_l2a(config, seed=0):
  torch.manual_seed(seed)
  model = torch_reference.create_model(config)
  return tcp_tests.randomize_constant_parameters(model, seed).eval()


# Together these cover every value of every switch of configs/l2a_h36m.py.
VARIANTS = {
    'default': {},
    'replace_blocks_static': {'depth': 3, 'hpa.mode': 'replace',
                              'hpa.history': 'blocks', 'hpa.num_blocks': 2,
                              'hpa.weights': 'static'},
    'sample_last_k_sqrt_no_embedding': {
        'depth': 3, 'hpa.weights': 'sample', 'hpa.history': 'last_k',
        'hpa.last_k': 1, 'hpa.temperature': 'sqrt_dim',
        'hpa.include_embedding': False},
    'static_unnormalised_raw': {'hpa.weights': 'static',
                                'hpa.static_normalise': False,
                                'hpa.value': 'raw'},
    'pool_part_raw': {'lpa.mode': 'pool', 'lpa.pool': 'part',
                      'hpa.value': 'raw'},
    'pool_joint_compact': {'lpa.mode': 'pool', 'lpa.pool': 'joint',
                           'lpa.dim': 8},
    'pool_frame_shared': {'lpa.mode': 'pool', 'lpa.pool': 'frame',
                          'lpa.shared': True},
    'bottleneck_channel_softmax': {'lpa.mode': 'bottleneck', 'lpa.dim': 8,
                                   'fusion': 'channel_softmax'},
    'rmsnorm_sequential_shared_mlp': {'lpa.mode': 'rmsnorm',
                                      'backbone': 'sequential',
                                      'shared_mlp': True},
    'identity_mean_spatial': {'lpa.mode': 'identity', 'fusion': 'mean',
                              'pos_embed': 'spatial'},
    'split_none_trunc_normal': {'fusion': 'channel_split', 'hpa.mode': 'none',
                                'pos_embed': 'none', 'init': 'trunc_normal'},
    'replace_compact_shared_mlp': {'hpa.mode': 'replace', 'lpa.dim': 8,
                                   'shared_mlp': True},
    'frame_embed_root_scale': {'joint_embed': 'frame',
                               'input_norm': 'root_scale', 'root_joint': 3},
}


@pytest.mark.parametrize('name', list(VARIANTS))
def test_forward_parity(name):
  config = l2a_config(**VARIANTS[name])
  model = torch_l2a(config)
  x = tcp_tests.inputs((2, _FRAMES, 17, 3))
  with torch.no_grad():
    expected = model(torch.from_numpy(x)).numpy()
  got = tcp_tests.jax_forward(tcp_tests.jax_model_from_torch(config, model),
                              x)
  assert got.shape == (2, _FRAMES, 17, 3)
  assert np.abs(expected).max() > 0.05
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize('name', ['default', 'replace_blocks_static'])
def test_unrolled_forward_parity(name):
  config = l2a_config(scan_layers=False, **VARIANTS[name])
  model = torch_l2a(config, seed=1)
  x = tcp_tests.inputs((1, _FRAMES, 17, 3), seed=1)
  with torch.no_grad():
    expected = model(torch.from_numpy(x)).numpy()
  got = tcp_tests.jax_forward(tcp_tests.jax_model_from_torch(config, model),
                              x)
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_history_path_is_live_in_the_comparison():
  """The HPA read moves the output far more than the parity tolerance, so
  the parity tests would see a wrong history implementation."""
  config = l2a_config()
  model = torch_l2a(config)
  x = torch.from_numpy(tcp_tests.inputs((1, _FRAMES, 17, 3)))
  with torch.no_grad():
    with_history = model(x)
    for layer in model.layers:
      layer.hpa_gain.zero_()
    assert (model(x) - with_history).abs().max() > 1e-3


def test_gradient_parity_through_the_custom_vjp():
  config = l2a_config(depth=3)
  assert config.history_vjp == 'custom'
  model = torch_l2a(config, seed=2)
  x = tcp_tests.inputs((2, _FRAMES, 17, 3), seed=2)
  weights = tcp_tests.inputs((2, _FRAMES, 17, 3), seed=3)

  x_torch = torch.from_numpy(x).requires_grad_()
  (model(x_torch) * torch.from_numpy(weights)).sum().backward()
  # A parameter that does not reach the output has no .grad in torch.
  torch_grads = {
      n: p.grad.numpy() if p.grad is not None else np.zeros(p.shape)
      for n, p in model.named_parameters()}

  jax_model = tcp_tests.jax_model_from_torch(config, model)
  graphdef, params, rest = nnx.split(jax_model, nnx.Param, ...)

  def loss(params, x):
    return jnp.sum(nnx.merge(graphdef, params, rest)(x) * weights)

  param_grads, input_grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(
      params, x)
  relative = tcp_tests.relative_error
  assert relative(np.asarray(input_grads), x_torch.grad.numpy()) < 1e-4
  jax_grads = convert_torch.jax_to_torch(
      nnx.to_pure_dict(param_grads),
      convert_torch.stacked_modules_of(jax_model))
  assert set(jax_grads) == set(torch_grads)
  # Without a gradient, on both sides: the first layer's query (one
  # readable slot, so its depth softmax is constant 1) and the LPA of the
  # last layer's record (never read).
  dead = {n for n, g in torch_grads.items() if not np.any(g)}
  assert dead == {'layers.0.hpa_query'} | {
      n for n in torch_grads if n.startswith(f'layers.{config.depth - 1}.lpa.')}
  for name, expected in torch_grads.items():
    if name in dead:
      assert np.abs(jax_grads[name]).max() < 1e-7, name
    else:
      assert relative(jax_grads[name], expected) < 1e-4, name


@pytest.mark.parametrize('name', ['default', 'replace_compact_shared_mlp'])
def test_round_trip_through_orbax_is_bit_exact(name, tmp_path):
  config = l2a_config(**VARIANTS[name])
  model = torch_l2a(config, seed=4)
  torch.save(model.state_dict(), tmp_path / 'l2a.pt')
  convert_torch.convert_to_jax(config, tmp_path / 'l2a.pt',
                               tmp_path / 'work')
  convert_torch.convert_to_torch(config, tmp_path / 'work',
                                 tmp_path / 'back.pt')
  back = torch.load(tmp_path / 'back.pt', weights_only=True)
  original = model.state_dict()
  assert list(back) == list(original)
  for key, value in original.items():
    assert torch.equal(back[key], value), key
  fresh = torch_reference.create_model(config)
  fresh.load_state_dict(back, strict=True)


def test_parameter_count_matches_the_jax_model():
  for changes in VARIANTS.values():
    config = l2a_config(**changes)
    torch_count = sum(
        p.numel() for p in torch_reference.create_model(config).parameters())
    abstract = models.abstract_model(config)
    jax_count = sum(
        int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(
            convert_torch.abstract_params_of(abstract)))
    assert torch_count == jax_count, changes
