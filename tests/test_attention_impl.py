"""`model.attention_impl` and TCPFormer's map-free proxy attention (PAM).

- every implementation runnable here ('xla', 'lean'; 'auto' resolves to
  'xla' in float32 and 'lean' in bf16 off NVIDIA GPUs) gives the same
  outputs and gradients; in bf16 'xla' keeps a second (bf16) copy of each
  map, 'lean' does not;
- unknown names fail with one line naming the field, 'cudnn' without an
  NVIDIA GPU fails with one line;
- 'xla' keeps no more for the backward pass than the hand-written 'lean'
  pipeline (XLA's compiled scratch memory of a scan over layers);
- `SumAttention` equals the official formula proj((w P + (1 - w) A_pim
  A_pum) v) written with explicit maps, and its program builds exactly one
  frames x frames array (its own logits), no A_pim @ A_pum.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpr_testing
import l2a_testing
import tcpformer_testing
from l2a_jax import models
from l2a_jax.models import layers
from l2a_jax.models import tcpformer


def random(seed, shape, scale=1.0):
  return scale * jax.random.normal(jax.random.key(seed), shape)


def outputs_and_grads(module, x, cotangent):
  graphdef, params = nnx.split(module)

  def loss(p, x):
    return jnp.sum(nnx.merge(graphdef, p)(x) * cotangent)

  out = nnx.merge(graphdef, params)(x)
  return out, jax.grad(loss, argnums=(0, 1))(params, x)


@pytest.mark.parametrize('mode', ['spatial', 'temporal'])
@pytest.mark.parametrize('recompute', [False, True])
def test_implementations_agree(mode, recompute):
  x = random(0, (2, 9, 17, 32))
  cotangent = random(1, x.shape)
  results = {}
  for impl in ('lean', 'xla', 'auto'):
    module = layers.Attention(32, 4, mode, impl=impl,
                              recompute_probs=recompute, rngs=nnx.Rngs(0))
    results[impl] = outputs_and_grads(module, x, cotangent)
  for impl in ('xla', 'auto'):
    got_out, got_grads = results[impl]
    want_out, want_grads = results['lean']
    np.testing.assert_allclose(got_out, want_out, rtol=1e-5, atol=1e-6)
    for got, want in zip(jax.tree.leaves(got_grads),
                         jax.tree.leaves(want_grads)):
      scale = float(jnp.abs(want).max())
      assert scale > 0
      # Float32 summation order differs between the implementations (and
      # between CPU generations): absolute error ~1 ulp of the tensor's
      # largest entry, so the floor is relative to that scale.
      np.testing.assert_allclose(got, want, rtol=1e-4,
                                 atol=1e-6 * max(1.0, scale))


def test_xla_attention_runs_where_jax_has_no_softmax_switch(monkeypatch):
  # jax.softmax_custom_jvp is an upgrade flag: a later JAX may drop it.
  x = random(0, (2, 9, 17, 32))
  cotangent = random(1, x.shape)
  module = layers.Attention(32, 4, 'temporal', impl='xla', rngs=nnx.Rngs(0))
  want_out, want_grads = outputs_and_grads(module, x, cotangent)
  monkeypatch.delattr(jax, 'softmax_custom_jvp')
  module = layers.Attention(32, 4, 'temporal', impl='xla', rngs=nnx.Rngs(0))
  got_out, got_grads = outputs_and_grads(module, x, cotangent)
  np.testing.assert_allclose(got_out, want_out, rtol=1e-6, atol=1e-7)
  for got, want in zip(jax.tree.leaves(got_grads),
                       jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(got, want, rtol=1e-5,
                               atol=1e-6 * max(1.0, float(jnp.abs(want).max())))


def test_auto_resolves_to_xla_in_float32_and_lean_in_bf16_off_gpu():
  assert jax.default_backend() != 'gpu'  # The CI machines are CPU only.
  assert layers.resolve_attention_impl('auto', jnp.float32, 16) == 'xla'
  for dtype in (jnp.bfloat16, jnp.float16):
    assert layers.resolve_attention_impl('auto', dtype, 16) == 'lean'
  assert layers.resolve_attention_impl('lean', jnp.bfloat16, 16) == 'lean'
  assert layers.resolve_attention_impl('xla', jnp.bfloat16, 16) == 'xla'


def test_in_bf16_xla_keeps_a_second_copy_of_each_map_and_lean_does_not():
  # Why 'auto' is 'lean' in low precision off cuDNN: jax's 'xla' attention
  # keeps the float32 probabilities and their bf16 cast; 'lean' recomputes
  # the cast. Counted on the traced residuals of one temporal attention.
  from l2a_jax.benchmark import jax_side  # pylint: disable=g-import-not-at-top
  x = random(0, (2, 27, 17, 32)).astype(jnp.bfloat16)
  map_elements = 2 * 17 * 4 * 27 * 27  # [B * J, heads, T, T]

  def kept(impl):
    module = layers.Attention(32, 4, 'temporal', impl=impl,
                              dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(module)
    return jax_side.residual_bytes(
        lambda p, x: jnp.sum(nnx.merge(graphdef, p)(x).astype(jnp.float32)),
        params, x)

  # Both keep the float32 map (4 bytes per entry); 'xla' also its bf16 copy.
  assert kept('lean') >= 4 * map_elements
  assert kept('xla') - kept('lean') >= 2 * map_elements


def test_unknown_impl_is_a_one_line_error():
  for cfg in (tcpformer_testing.tiny_config(attention_impl='flash'),
              l2a_testing.model_config({'attention_impl': 'flash'})):
    with pytest.raises(ValueError, match=r'model\.attention_impl') as info:
      models.create_model(cfg, nnx.Rngs(0))
    assert '\n' not in str(info.value) and "'flash'" in str(info.value)


def test_cudnn_without_nvidia_gpu_is_a_one_line_error():
  q = jnp.ones((2, 5, 2, 8), jnp.bfloat16)
  with pytest.raises(ValueError, match='needs an NVIDIA GPU') as info:
    layers.dot_product_attention(q, q, q, scale=0.5, impl='cudnn')
  assert '\n' not in str(info.value)


def test_models_pass_the_setting_to_every_attention():
  for cfg in (tcpformer_testing.tiny_config(attention_impl='lean'),
              l2a_testing.model_config({'attention_impl': 'lean'})):
    model = models.create_model(cfg, nnx.Rngs(0))
    impls = {module.impl for _, module in nnx.iter_graph(model)
             if isinstance(module, (layers.Attention,
                                    tcpformer.CrossAttention))}
    assert impls == {'lean'}


def test_xla_keeps_no_more_than_lean():
  x = random(0, (2, 27, 17, 32))

  def temp(impl):
    module = layers.Attention(32, 4, 'temporal', impl=impl, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(module)

    def loss(params, x):
      def step(h, p):
        return h + nnx.merge(graphdef, p)(h), None
      stacked = jax.tree.map(lambda a: jnp.stack([a] * 6), params)
      return jnp.sum(jax.lax.scan(step, x, stacked)[0])

    compiled = jax.jit(jax.grad(loss)).lower(params, x).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  map_bytes = 2 * 17 * 4 * 27 * 27 * 4
  # JAX's default softmax derivative would keep the exponentials as a
  # second map per layer (6 maps more); the custom-JVP softmax keeps one.
  assert temp('xla') < temp('lean') + map_bytes


def explicit_pam(module, pim, pum, x, pim_qk, pum_qk, weight):
  """The official Sum_Attention with explicit float32 maps (NumPy)."""
  def probs(q, k, scale):
    logits = np.einsum('nqhd,nkhd->nhqk', q, k) * scale
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)

  q, k, v = (np.asarray(a, np.float64) for a in module.qkv_heads(
      layers.to_sequences(x, 'temporal')))
  own = probs(q, k, module.scale)
  a_pim = probs(*(np.asarray(a, np.float64) for a in pim_qk), pim.scale)
  a_pum = probs(*(np.asarray(a, np.float64) for a in pum_qk), pum.scale)
  w = float(weight[0])
  mixed = w * own + (1 - w) * np.einsum('nhtl,nhls->nhts', a_pim, a_pum)
  out = np.einsum('nhqk,nkhd->nqhd', mixed, v)
  out = out.reshape(*out.shape[:2], -1)
  kernel = np.asarray(module.proj.kernel[...], np.float64)
  bias = np.asarray(module.proj.bias[...], np.float64)
  b, t, j, _ = x.shape
  out = out.reshape(b, j, t, -1).transpose(0, 2, 1, 3)
  return out @ kernel + bias


@pytest.mark.parametrize('impl', ['xla', 'lean'])
def test_map_free_pam_equals_the_official_formula(impl):
  dim, heads, frames, proxy_frames = 32, 4, 12, 4
  rngs = nnx.Rngs(0)
  kw = dict(dtype=jnp.float32, param_dtype=jnp.float32, attention_impl=impl)
  pim = tcpformer.CrossAttention(dim, heads, rngs=rngs, **kw)
  pum = tcpformer.CrossAttention(dim, heads, rngs=rngs, **kw)
  module = tcpformer.SumAttention(dim, heads, dtype=jnp.float32,
                                  param_dtype=jnp.float32, impl=impl,
                                  rngs=rngs)
  x = random(0, (2, frames, 17, dim))
  proxy = random(1, (2, proxy_frames, 17, dim))
  pum_qk, _ = pum(proxy, x)
  pim_qk, _ = pim(x, proxy)
  weight = jnp.array([0.3])
  got = module(x, pim, pim_qk, pum, pum_qk, weight)
  want = explicit_pam(module, pim, pum, x, pim_qk, pum_qk, weight)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)

  # The program: one frames x frames array family (its own logits and
  # probabilities), never a product of the two cross-attention maps.
  jaxpr = jax.make_jaxpr(
      lambda x, pim_qk, pum_qk: module(x, pim, pim_qk, pum, pum_qk,
                                       weight))(x, pim_qk, pum_qk)
  square_products = [
      eqn for eqn in jaxpr_testing.all_eqns(jaxpr.jaxpr)
      if eqn.primitive.name == 'dot_general'
      and list(eqn.outvars[0].aval.shape).count(frames) >= 2]
  assert len(square_products) == 1


def test_checkpoints_do_not_pin_the_attention_implementation():
  from l2a_jax import checkpointing  # pylint: disable=g-import-not-at-top
  assert checkpointing.model_config_differences(
      {'attention_impl': 'cudnn', 'dim': 8},
      {'attention_impl': 'xla', 'dim': 8}) == []
