"""Tests of the shared layers (l2a_jax.models.layers) against NumPy."""

import math

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

import jaxpr_testing
from l2a_jax.models import layers


def test_canonical_dtype():
  assert layers.canonical_dtype('float32') == jnp.float32
  assert layers.canonical_dtype('bfloat16') == jnp.bfloat16
  assert layers.canonical_dtype(jnp.bfloat16) == jnp.bfloat16
  with pytest.raises(ValueError, match="got 'fp32'"):
    layers.canonical_dtype('fp32')


def test_linear_torch_default_init_and_math():
  layer = layers.Linear(50, 30, rngs=nnx.Rngs(0))
  bound = 1 / math.sqrt(50)
  kernel, bias = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
  assert kernel.shape == (50, 30) and bias.shape == (30,)
  assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
  # Uniform, not concentrated: the extremes come close to the bound.
  assert np.abs(kernel).max() > 0.95 * bound
  x = np.random.default_rng(0).normal(size=(4, 50)).astype(np.float32)
  np.testing.assert_allclose(layer(jnp.asarray(x)), x @ kernel + bias,
                             rtol=1e-5, atol=1e-6)


def test_linear_products_are_matrix_products_forward_and_backward():
  # On [B, T, J, in] every product of the Linear's training step (forward,
  # input gradient, weight gradient) is a 2-D matrix product with one
  # contracted axis: a weight gradient contracting B, T and J at once is
  # rewritten by XLA into a materialised transpose (docs/benchmarks.md).
  layer = layers.Linear(8, 6, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(layer)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 3, 8)),
                  jnp.float32)

  def loss(params, x):
    return jnp.sum(jnp.sin(nnx.merge(graphdef, params)(x)))

  jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(params, x).jaxpr
  products = [eqn for eqn in jaxpr_testing.all_eqns(jaxpr)
              if eqn.primitive.name == 'dot_general']
  assert len(products) == 3  # forward, input gradient, weight gradient
  for eqn in products:
    (lhs_contract, rhs_contract), (lhs_batch, _) = (
        eqn.params['dimension_numbers'])
    assert [v.aval.ndim for v in eqn.invars] == [2, 2], eqn
    assert len(lhs_contract) == len(rhs_contract) == 1 and not lhs_batch
  # And the result is still x @ kernel + bias on the last axis, with
  # autodiff's gradients.
  kernel, bias = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
  np.testing.assert_allclose(layer(x), np.asarray(x) @ kernel + bias,
                             rtol=1e-5, atol=1e-6)
  grads = jax.grad(loss)(params, x)
  want = jax.grad(lambda k, b: jnp.sum(jnp.sin(
      jnp.einsum('btjc,cd->btjd', x, k) + b)), argnums=(0, 1))(
          layer.kernel[...], layer.bias[...])
  np.testing.assert_allclose(grads['kernel'], want[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(grads['bias'], want[1], rtol=1e-5, atol=1e-6)


def test_linear_trunc_normal_init():
  layer = layers.Linear(256, 256, init='trunc_normal', use_bias=True,
                        rngs=nnx.Rngs(1))
  kernel = np.asarray(layer.kernel[...])
  assert np.all(np.asarray(layer.bias[...]) == 0)
  assert np.abs(kernel).max() <= 0.04 + 1e-7  # truncated at 2 std
  # Std of N(0, 0.02) truncated at +-2 std is 0.88 * 0.02.
  assert abs(kernel.std() - 0.88 * 0.02) < 0.1 * 0.02
  with pytest.raises(ValueError, match='init'):
    layers.Linear(2, 2, init='xavier', rngs=nnx.Rngs(0))


def test_linear_bfloat16_compute_keeps_float32_params():
  layer = layers.Linear(8, 4, use_bias=False, dtype=jnp.bfloat16,
                        rngs=nnx.Rngs(0))
  assert layer.bias is None
  assert layer.kernel[...].dtype == jnp.float32
  y = layer(jnp.ones((3, 8), jnp.float32))
  assert y.dtype == jnp.bfloat16


def test_layer_norm_uses_torch_epsilon():
  # Variance 1e-5: eps 1e-5 and Flax's 1e-6 give clearly different outputs.
  rng = np.random.default_rng(0)
  x = (rng.normal(size=(5, 16)) * math.sqrt(1e-5)).astype(np.float32)
  norm = layers.LayerNorm(16)
  mean = x.mean(-1, keepdims=True)
  var = x.var(-1, keepdims=True)
  expected = (x - mean) / np.sqrt(var + 1e-5)
  np.testing.assert_allclose(norm(jnp.asarray(x)), expected, rtol=1e-4,
                             atol=1e-5)
  flax_eps = (x - mean) / np.sqrt(var + 1e-6)
  assert np.abs(expected - flax_eps).max() > 0.1


def test_layer_norm_statistics_in_float32_under_bfloat16():
  # A large common offset: bfloat16 statistics would lose the signal.
  x = jnp.asarray(1000.0 + np.arange(8, dtype=np.float32))[None]
  norm = layers.LayerNorm(8, dtype=jnp.bfloat16)
  y = norm(x)
  assert y.dtype == jnp.bfloat16
  ref = (np.arange(8) - 3.5) / np.sqrt(np.var(np.arange(8)) + 1e-5)
  np.testing.assert_allclose(np.asarray(y, np.float32)[0], ref, atol=2e-2)


def test_rms_norm():
  x = np.random.default_rng(1).normal(size=(3, 6)).astype(np.float32)
  expected = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(layers.rms_normalize(jnp.asarray(x)), expected,
                             rtol=1e-5)
  norm = layers.RMSNorm(6)
  norm.scale[...] = jnp.arange(6, dtype=jnp.float32)
  np.testing.assert_allclose(norm(jnp.asarray(x)), expected * np.arange(6),
                             rtol=1e-5, atol=1e-6)
  assert layers.RMSNorm(6, use_scale=False).scale is None


def test_mlp_uses_exact_gelu():
  mlp = layers.MLP(4, 16, rngs=nnx.Rngs(0))
  x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32) * 3
  k1, b1 = np.asarray(mlp.fc1.kernel[...]), np.asarray(mlp.fc1.bias[...])
  k2, b2 = np.asarray(mlp.fc2.kernel[...]), np.asarray(mlp.fc2.bias[...])
  h = x @ k1 + b1
  exact = 0.5 * h * (1 + special.erf(h / math.sqrt(2)))
  np.testing.assert_allclose(mlp(jnp.asarray(x)), exact @ k2 + b2,
                             rtol=1e-5, atol=1e-5)
  tanh_approx = np.asarray(jax.nn.gelu(jnp.asarray(h), approximate=True))
  assert np.abs(tanh_approx - exact).max() > 1e-4  # the test can tell them


def test_gelu_is_the_erf_formula_in_the_input_dtype():
  """layers.gelu = x Phi(x): float64 reference, jax's erfc form, gradient."""
  x = np.linspace(-8, 8, 4001).astype(np.float32)
  exact = 0.5 * x.astype(np.float64) * (
      1 + special.erf(x.astype(np.float64) / math.sqrt(2)))
  got = np.asarray(layers.gelu(jnp.asarray(x)))
  np.testing.assert_allclose(got, exact, rtol=1e-6, atol=2e-6)
  np.testing.assert_allclose(
      got, jax.nn.gelu(jnp.asarray(x), approximate=False), rtol=1e-6,
      atol=2e-6)
  slope = np.asarray(jax.vmap(jax.grad(layers.gelu))(jnp.asarray(x)))
  phi = np.exp(-0.5 * x.astype(np.float64)**2) / math.sqrt(2 * math.pi)
  np.testing.assert_allclose(slope, (exact / np.where(x == 0, 1, x)) *
                             (x != 0) + 0.5 * (x == 0) + x * phi,
                             rtol=1e-5, atol=2e-6)
  assert layers.gelu(jnp.ones(3, jnp.bfloat16)).dtype == jnp.bfloat16


def _reference_attention(x, layer, mode):
  """NumPy multi-head attention with the head-major qkv layout."""
  b, t, j, c = x.shape
  heads = layer.num_heads
  d = c // heads
  seq = (x.reshape(b * t, j, c) if mode == 'spatial' else
         x.transpose(0, 2, 1, 3).reshape(b * j, t, c))
  qkv = seq @ np.asarray(layer.qkv.kernel[...])  # unit s * C + h * d + i
  out = np.zeros_like(seq)
  for h in range(heads):
    q = qkv[..., 0 * c + h * d:0 * c + (h + 1) * d]
    k = qkv[..., 1 * c + h * d:1 * c + (h + 1) * d]
    v = qkv[..., 2 * c + h * d:2 * c + (h + 1) * d]
    logits = q @ k.transpose(0, 2, 1) * d ** -0.5
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out[..., h * d:(h + 1) * d] = probs @ v
  out = out @ np.asarray(layer.proj.kernel[...]) + np.asarray(
      layer.proj.bias[...])
  if mode == 'spatial':
    return out.reshape(b, t, j, c)
  return out.reshape(b, j, t, c).transpose(0, 2, 1, 3)


@pytest.mark.parametrize('mode', ['spatial', 'temporal'])
def test_attention_matches_numpy(mode):
  layer = layers.Attention(8, 2, mode, rngs=nnx.Rngs(3))
  x = np.random.default_rng(3).normal(size=(2, 5, 4, 8)).astype(np.float32)
  np.testing.assert_allclose(layer(jnp.asarray(x)),
                             _reference_attention(x, layer, mode),
                             rtol=1e-4, atol=1e-5)


def test_attention_mixes_only_its_axis():
  """Spatial attention never mixes frames; temporal never mixes joints."""
  x = np.random.default_rng(4).normal(size=(1, 4, 3, 8)).astype(np.float32)
  x2 = x.copy()
  x2[:, 2] += 1.0  # change frame 2 only
  spatial = layers.Attention(8, 2, 'spatial', rngs=nnx.Rngs(0))
  diff = np.abs(np.asarray(spatial(jnp.asarray(x2)) -
                           spatial(jnp.asarray(x)))).sum(axis=(0, 2, 3))
  assert diff[2] > 0 and np.all(diff[[0, 1, 3]] == 0)
  x3 = x.copy()
  x3[:, :, 1] += 1.0  # change joint 1 only
  temporal = layers.Attention(8, 2, 'temporal', rngs=nnx.Rngs(0))
  diff = np.abs(np.asarray(temporal(jnp.asarray(x3)) -
                           temporal(jnp.asarray(x)))).sum(axis=(0, 1, 3))
  assert diff[1] > 0 and np.all(diff[[0, 2]] == 0)


def test_attention_validation():
  with pytest.raises(ValueError, match='divisible'):
    layers.Attention(10, 3, 'spatial', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='mode'):
    layers.Attention(8, 2, 'channel', rngs=nnx.Rngs(0))


def test_sequence_folding_round_trip_and_probabilities():
  x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 3, 4, 6)),
                  jnp.float32)
  for mode in ('spatial', 'temporal'):
    seq = layers.to_sequences(x, mode)
    np.testing.assert_array_equal(layers.from_sequences(seq, x.shape, mode),
                                  x)
  q = jnp.ones((2, 3, 2, 4))
  k = jnp.asarray(np.random.default_rng(6).normal(size=(2, 5, 2, 4)),
                  jnp.float32)
  probs = layers.attention_probabilities(q, k, 0.5)
  assert probs.shape == (2, 2, 3, 5) and probs.dtype == jnp.float32
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
  v = jnp.ones((2, 5, 2, 4))
  np.testing.assert_allclose(layers.apply_attention(probs, v), 1.0,
                             rtol=1e-6)


def test_layer_scale_and_drop_path():
  scale = layers.layer_scale(4, 1e-5)
  assert isinstance(scale, nnx.Param)
  np.testing.assert_array_equal(scale[...], np.full(4, 1e-5, np.float32))
  x = jnp.ones((64, 3, 2))
  assert layers.drop_path(x, 0.0, jax.random.key(0)) is x
  assert layers.drop_path(x, 0.5, None) is x
  y = np.asarray(layers.drop_path(x, 0.5, jax.random.key(0)))
  per_sample = y.reshape(64, -1)
  # Whole samples are either dropped or scaled by 1 / (1 - rate).
  assert set(np.unique(per_sample)) <= {0.0, 2.0}
  assert np.all(per_sample.min(1) == per_sample.max(1))
  assert 10 < (per_sample[:, 0] == 0).sum() < 54


def test_remat_wrapper():
  def fn(w, x):
    return jnp.sum(jnp.tanh(x @ w) ** 2)

  w = jnp.asarray(np.random.default_rng(7).normal(size=(4, 4)), jnp.float32)
  x = jnp.ones((3, 4))
  plain = jax.grad(fn)(w, x)
  assert layers.remat_wrapper('none')(fn) is fn
  for name in ('block', 'dots_saveable', 'nothing_saveable'):
    wrapped = layers.remat_wrapper(name, prevent_cse=False)(fn)
    np.testing.assert_allclose(jax.grad(wrapped)(w, x), plain, rtol=1e-6)
  with pytest.raises(ValueError, match='model.remat'):
    layers.remat_wrapper('save_everything')


def test_resolve_remat_auto_follows_the_backend(monkeypatch):
  assert jax.default_backend() == 'cpu'
  assert layers.resolve_remat('auto') == 'block'
  fn = lambda x: jnp.sum(jnp.sin(x))  # pylint: disable=unnecessary-lambda-assignment
  # On the CPU 'auto' wraps (as 'block'); the identity is 'none' only.
  assert layers.remat_wrapper('auto')(fn) is not fn
  for name in ('none', 'block', 'dots_saveable'):
    assert layers.resolve_remat(name) == name
  for backend in ('gpu', 'tpu'):
    monkeypatch.setattr(jax, 'default_backend', lambda b=backend: b)
    assert layers.resolve_remat('auto') == 'none'
    assert layers.remat_wrapper('auto')(fn) is fn
  with pytest.raises(ValueError, match=r"model.remat: expected 'auto'.*"
                     r"got 'full'"):
    layers.resolve_remat('full')
