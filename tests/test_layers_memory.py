"""The layers' hand-written derivatives: autodiff's gradients, less memory.

`layers.layer_norm` (custom VJP keeping the input and the row statistics),
`layers.softmax` (custom JVP keeping the output), `layers.gelu_linear`
(recomputes the GELU) and `layers.Attention(recompute_probs=True)` must give
the gradients of the plain formulas; each is checked against a plain-JAX
reference on random inputs, and the memory claims are checked on XLA's
compiled scratch memory of a scan over layers, where every value kept for
the backward pass becomes a stacked buffer.
"""

import math

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2a_jax.models import layers


def plain_layer_norm(x, scale, bias, eps=layers.LAYER_NORM_EPS):
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
  return (x - mean) / jnp.sqrt(var + eps) * scale + bias


def plain_softmax(x):
  e = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True))
  return e / jnp.sum(e, axis=-1, keepdims=True)


def plain_gelu_linear(hidden, kernel, bias):
  gelu = 0.5 * hidden * (1.0 + jax.scipy.special.erf(hidden / math.sqrt(2)))
  return gelu @ kernel + bias


def random(seed, shape, scale=1.0):
  return scale * jax.random.normal(jax.random.key(seed), shape)


@pytest.mark.parametrize('shape', [(7, 16), (2, 3, 5, 32)])
def test_layer_norm_gradients_equal_autodiff(shape):
  dim = shape[-1]
  # Offset and scaled rows: the mean and variance terms both matter.
  x = random(0, shape, 3.0) + random(1, shape[:-1] + (1,), 5.0)
  scale, bias = random(2, (dim,)) + 1.0, random(3, (dim,))
  cotangent = random(4, shape)

  def loss(fn):
    return lambda x, s, b: jnp.sum(fn(x, s, b) * cotangent)

  custom = jax.grad(loss(lambda x, s, b: layers.layer_norm(
      x, s, b, layers.LAYER_NORM_EPS, jnp.float32)), argnums=(0, 1, 2))
  plain = jax.grad(loss(plain_layer_norm), argnums=(0, 1, 2))
  np.testing.assert_allclose(
      layers.layer_norm(x, scale, bias, layers.LAYER_NORM_EPS, jnp.float32),
      plain_layer_norm(x, scale, bias), rtol=1e-5, atol=1e-5)
  for got, want in zip(custom(x, scale, bias), plain(x, scale, bias)):
    assert float(jnp.abs(want).max()) > 1e-2
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_layer_norm_bfloat16_input_gets_bfloat16_gradient():
  x = random(0, (4, 8), 2.0).astype(jnp.bfloat16)
  scale, bias = jnp.ones(8), jnp.zeros(8)
  grad = jax.grad(lambda x: jnp.sum(layers.layer_norm(
      x, scale, bias, 1e-5, jnp.bfloat16).astype(jnp.float32) *
                                     random(1, (4, 8))))(x)
  want = jax.grad(lambda x: jnp.sum(plain_layer_norm(x, scale, bias) *
                                    random(1, (4, 8))))(x.astype(jnp.float32))
  assert grad.dtype == jnp.bfloat16
  np.testing.assert_allclose(grad.astype(jnp.float32), want, rtol=2e-2,
                             atol=2e-2)


def test_softmax_matches_and_differentiates_like_plain():
  x = random(0, (3, 4, 9), 4.0)
  cotangent = random(1, (3, 4, 9))
  np.testing.assert_allclose(layers.softmax(x), plain_softmax(x), rtol=1e-6,
                             atol=1e-7)
  got = jax.grad(lambda x: jnp.sum(layers.softmax(x) * cotangent))(x)
  want = jax.grad(lambda x: jnp.sum(plain_softmax(x) * cotangent))(x)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Second order too (custom JVP, not VJP): Hessian-vector products work.
  hvp = jax.jvp(jax.grad(lambda x: jnp.sum(layers.softmax(x) * cotangent)),
                (x,), (cotangent,))[1]
  hvp_plain = jax.jvp(jax.grad(lambda x: jnp.sum(plain_softmax(x) *
                                                 cotangent)),
                      (x,), (cotangent,))[1]
  np.testing.assert_allclose(hvp, hvp_plain, rtol=1e-4, atol=1e-5)
  # Large logits do not overflow; bfloat16 logits give float32 output.
  assert layers.softmax(jnp.array([1e4, 0.0], jnp.bfloat16)).dtype == (
      jnp.float32)
  np.testing.assert_allclose(layers.softmax(jnp.array([1e4, 0.0])), [1, 0])


def test_gelu_linear_gradients_equal_autodiff():
  hidden, kernel, bias = random(0, (5, 6, 24), 2.0), random(1, (24, 8)), (
      random(2, (8,)))
  cotangent = random(3, (5, 6, 8))
  np.testing.assert_allclose(layers.gelu_linear(hidden, kernel, bias),
                             plain_gelu_linear(hidden, kernel, bias),
                             rtol=1e-5, atol=1e-5)
  got = jax.grad(lambda *a: jnp.sum(layers.gelu_linear(*a) * cotangent),
                 argnums=(0, 1, 2))(hidden, kernel, bias)
  want = jax.grad(lambda *a: jnp.sum(plain_gelu_linear(*a) * cotangent),
                  argnums=(0, 1, 2))(hidden, kernel, bias)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def scanned_temp_bytes(layer_fn, x, params, depth=6):
  """Scratch bytes of grad(sum(scan of `layer_fn` over `depth` layers))."""

  def loss(params, x):
    def step(h, p):
      return layer_fn(h, p), None
    stacked = jax.tree.map(lambda a: jnp.stack([a] * depth), params)
    return jnp.sum(jax.lax.scan(step, x, stacked)[0])

  compiled = jax.jit(jax.grad(loss)).lower(params, x).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_memory_layer_norm_and_mlp_keep_less_than_plain_autodiff():
  x = random(0, (64, 17, 32))
  ln_params = (jnp.ones(32), jnp.zeros(32))
  custom_ln = scanned_temp_bytes(
      lambda h, p: h + layers.layer_norm(h, *p, 1e-5, jnp.float32), x,
      ln_params)
  plain_ln = scanned_temp_bytes(
      lambda h, p: h + plain_layer_norm(h, *p), x, ln_params)
  mlp_params = (random(1, (32, 128), 0.1), random(2, (128, 32), 0.1),
                jnp.zeros(32))
  custom_mlp = scanned_temp_bytes(
      lambda h, p: h + layers.gelu_linear(h @ p[0], p[1], p[2]), x,
      mlp_params)
  plain_mlp = scanned_temp_bytes(
      lambda h, p: h + plain_gelu_linear(h @ p[0], p[1], p[2]), x,
      mlp_params)
  activation = x.size * 4  # One [64, 17, 32] float32 tensor per layer.
  # Per layer (6), at least two activation-sized tensors fewer for the norm
  # (plain autodiff keeps three or four float32 copies, the custom VJP the
  # input) and at least two hidden-sized ones (4 activations each) for the
  # MLP.
  assert plain_ln - custom_ln >= 6 * 2 * activation
  assert plain_mlp - custom_mlp >= 6 * 2 * 4 * activation


def test_attention_recompute_probs_same_function_less_memory():
  x = random(0, (2, 27, 17, 32))
  plain = layers.Attention(32, 4, 'temporal', rngs=nnx.Rngs(0))
  recompute = layers.Attention(32, 4, 'temporal', recompute_probs=True,
                               rngs=nnx.Rngs(0))
  cotangent = random(1, x.shape)

  def grads(module):
    graphdef, params = nnx.split(module)
    return jax.grad(lambda p, x: jnp.sum(
        nnx.merge(graphdef, p)(x) * cotangent), argnums=(0, 1))(params, x)

  for got, want in zip(jax.tree.leaves(grads(recompute)),
                       jax.tree.leaves(grads(plain))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  def growth(module):
    """Scratch bytes added by layers 3-6 of a scanned stack."""
    graphdef, params = nnx.split(module)

    def temp(depth):
      return scanned_temp_bytes(
          lambda h, p: h + nnx.merge(graphdef, p)(h), x, params, depth=depth)

    return temp(6) - temp(2)

  # Per layer the plain version keeps the [2 * 17, 4, 27, 27] float32 map;
  # the recomputing one keeps none (it needs one layer's map at a time in
  # the backward pass, a fixed workspace). Comparing the growth from 2 to 6
  # layers cancels the fixed workspaces: at least 4 maps fewer.
  map_bytes = 2 * 17 * 4 * 27 * 27 * 4
  assert growth(plain) - growth(recompute) >= 4 * map_bytes
