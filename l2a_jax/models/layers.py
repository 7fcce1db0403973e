"""Layers shared by L2A and TCPFormer (Flax NNX).

Conventions:
- Feature tensors are channels-last `[batch, frames, joints, channels]`.
- Parameters are stored in `param_dtype` (float32); matmuls run in the
  compute `dtype` (float32 or bfloat16); LayerNorm / RMSNorm statistics,
  attention softmax and the residual stream (`scaled_residual`) are
  float32.
- Parameter names follow the PyTorch lineage (`qkv`, `proj`, `fc1`, `fc2`)
  and Flax conventions (`kernel` [in, out], `bias`, `scale`), so the
  converter maps them one to one (docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from typing import Any, Literal

from flax import nnx
import jax
import jax.numpy as jnp

Dtype = jnp.dtype
InitName = Literal['torch_default', 'trunc_normal']

# LayerNorm epsilon of PyTorch (Flax defaults to 1e-6); needed for parity.
LAYER_NORM_EPS = 1e-5
RMS_NORM_EPS = 1e-6


def canonical_dtype(name: str | Dtype) -> Dtype:
  """Maps a config dtype name ('float32' | 'bfloat16') to a dtype."""
  if name in ('float32', 'bfloat16', 'float16'):
    return jnp.dtype(name)
  if isinstance(name, str):
    raise ValueError(
        f"dtype: expected 'float32' | 'bfloat16' | 'float16', got {name!r}")
  return jnp.dtype(name)


def uniform_init(bound: float):
  """Initializer drawing from U(-bound, +bound)."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def trunc_normal_init(std: float = 0.02):
  """Truncated normal in [-2 std, 2 std] (timm's trunc_normal_ convention)."""
  return nnx.initializers.truncated_normal(stddev=std, lower=-2.0, upper=2.0)


class Linear(nnx.Module):
  """y = x @ kernel + bias, with PyTorch's default init by default.

  `init='torch_default'` draws kernel and bias from U(+-1/sqrt(in_features))
  (PyTorch's kaiming_uniform(a=sqrt(5)) for nn.Linear); 'trunc_normal' draws
  the kernel from a truncated normal (std 0.02) and zeroes the bias.
  """

  def __init__(self, in_features: int, out_features: int, *,
               use_bias: bool = True, init: InitName = 'torch_default',
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs):
    self.in_features = in_features
    self.out_features = out_features
    self.dtype = dtype
    if init == 'torch_default':
      kernel_init = bias_init = uniform_init(1.0 / math.sqrt(in_features))
    elif init == 'trunc_normal':
      kernel_init = trunc_normal_init(0.02)
      bias_init = nnx.initializers.zeros_init()
    else:
      raise ValueError(
          f"init: expected 'torch_default' | 'trunc_normal', got {init!r}")
    self.kernel = nnx.Param(
        kernel_init(rngs.params(), (in_features, out_features), param_dtype))
    self.bias = (
        nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype))
        if use_bias else None)

  def compute_weights(self) -> tuple[jax.Array, jax.Array | None]:
    """(kernel [in, out], bias [out] or None) cast to the compute dtype."""
    bias = None if self.bias is None else self.bias[...].astype(self.dtype)
    return self.kernel[...].astype(self.dtype), bias

  def __call__(self, x: jax.Array) -> jax.Array:
    """[..., in_features] -> [..., out_features] in the compute dtype.

    The product accumulates in float32 and the bias is added in float32
    before the one rounding to the compute dtype (as a bf16 GEMM with a
    bias epilogue, torch autocast's addmm).
    """
    kernel, bias = self.compute_weights()
    return linear_map(x.astype(self.dtype), kernel, bias)


def linear_map(x: jax.Array, kernel: jax.Array,
               bias: jax.Array | None) -> jax.Array:
  """x @ kernel (+ bias), accumulated and biased in float32, returned in
  x's dtype (one rounding under bfloat16).

  The product runs on x flattened to rows [prod(...), in] (a bitcast), so
  that every product of the training step, the weight gradient
  rows^T @ dy included, is a 2-D matrix product. On the N-D input the
  weight gradient contracts three or four axes at once, which XLA
  rewrites into a materialised transpose of dy before the product: on the
  CPU the copies cost 7-10 % of a training step
  (docs/benchmarks.md, tuning log).

  Args:
    x: [..., in] in the compute dtype.
    kernel: [in, out] in the compute dtype.
    bias: [out] or None.

  Returns:
    [..., out] in x's dtype.
  """
  rows = x.reshape(-1, x.shape[-1])
  y = jnp.dot(rows, kernel, preferred_element_type=jnp.float32)
  if bias is not None:
    y = y + bias.astype(jnp.float32)
  return y.astype(x.dtype).reshape(*x.shape[:-1], kernel.shape[-1])


def _layer_norm_forward(x, scale, bias, eps):
  """y = (x - mean) * rstd * scale + bias in float32, plus (mean, rstd)."""
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, axis=-1, keepdims=True)
  rstd = jax.lax.rsqrt(
      jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True) + eps)
  return (x32 - mean) * rstd * scale + bias, mean, rstd


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float,
               dtype: Dtype) -> jax.Array:
  """LayerNorm over the last axis with float32 statistics.

  The backward pass keeps only the input and the per-row mean and 1/std
  (two scalars per row) and recomputes the normalised input from them, as
  PyTorch's native layer norm does; plain autodiff would keep three or four
  float32 copies of the activation. Gradients equal autodiff's (tested).

  Args:
    x: [..., dim] in any float dtype.
    scale: [dim] float32.
    bias: [dim] float32.
    eps: added to the variance.
    dtype: the output dtype.

  Returns:
    [..., dim] in `dtype`.
  """
  y, _, _ = _layer_norm_forward(x, scale, bias, eps)
  return y.astype(dtype)


def _layer_norm_fwd(x, scale, bias, eps, dtype):
  y, mean, rstd = _layer_norm_forward(x, scale, bias, eps)
  return y.astype(dtype), (x, mean, rstd, scale)


def _layer_norm_bwd(eps, dtype, residuals, grad):
  del eps, dtype
  x, mean, rstd, scale = residuals
  grad = grad.astype(jnp.float32)
  normalized = (x.astype(jnp.float32) - mean) * rstd
  rows = tuple(range(grad.ndim - 1))
  grad_scale = jnp.sum(grad * normalized, axis=rows)
  grad_bias = jnp.sum(grad, axis=rows)
  grad_normalized = grad * scale
  grad_x = rstd * (
      grad_normalized
      - jnp.mean(grad_normalized, axis=-1, keepdims=True)
      - normalized * jnp.mean(grad_normalized * normalized, axis=-1,
                              keepdims=True))
  return (grad_x.astype(x.dtype), grad_scale.astype(scale.dtype),
          grad_bias.astype(scale.dtype))


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


class LayerNorm(nnx.Module):
  """LayerNorm over the last axis, statistics in float32, eps 1e-5.

  Runs `layer_norm`, whose backward pass keeps only the input and the row
  statistics.
  """

  def __init__(self, dim: int, *, eps: float = LAYER_NORM_EPS,
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32):
    self.eps = eps
    self.dtype = dtype
    self.scale = nnx.Param(jnp.ones((dim,), param_dtype))
    self.bias = nnx.Param(jnp.zeros((dim,), param_dtype))

  def __call__(self, x: jax.Array) -> jax.Array:
    """[..., dim] -> [..., dim] in the compute dtype."""
    return layer_norm(x, self.scale[...].astype(jnp.float32),
                      self.bias[...].astype(jnp.float32), self.eps,
                      self.dtype)


def rms_normalize(x: jax.Array, eps: float = RMS_NORM_EPS) -> jax.Array:
  """x / sqrt(mean(x^2) + eps) over the last axis, in float32."""
  x32 = x.astype(jnp.float32)
  return x32 * jax.lax.rsqrt(
      jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)


class RMSNorm(nnx.Module):
  """RMSNorm with an optional learned per-channel scale (float32 math)."""

  def __init__(self, dim: int, *, eps: float = RMS_NORM_EPS,
               use_scale: bool = True, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32):
    self.eps = eps
    self.dtype = dtype
    self.scale = (nnx.Param(jnp.ones((dim,), param_dtype))
                  if use_scale else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    """[..., dim] -> [..., dim] in the compute dtype."""
    y = rms_normalize(x, self.eps)
    if self.scale is not None:
      y = y * self.scale[...].astype(jnp.float32)
    return y.astype(self.dtype)


def recompute_in_backward(fn: Callable[..., Any]) -> Callable[..., Any]:
  """`fn` keeping only its inputs; its values are recomputed in backward.

  The memory-lean pieces of the layers (GELU, attention maps, their casts)
  use this. prevent_cse=False: inside a scanned layer stack the
  recomputation sits in the backward loop, where XLA cannot merge it with
  the forward pass; in an unrolled stack XLA may merge the two, which costs
  memory, never correctness.
  """
  return jax.checkpoint(fn, prevent_cse=False)


def gelu(x: jax.Array) -> jax.Array:
  """The exact GELU, x * Phi(x) = x (1 + erf(x / sqrt 2)) / 2, in x's dtype.

  PyTorch's `nn.GELU()` formula. `jax.nn.gelu(approximate=False)` computes
  the same function through erfc, whose XLA CPU expansion is about twice as
  slow as erf's and was 5 % of the L2A CPU training step
  (docs/benchmarks.md, tuning log).
  """
  return x * (0.5 + 0.5 * jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


def gelu_linear(hidden: jax.Array, kernel: jax.Array,
                bias: jax.Array) -> jax.Array:
  """GELU(hidden) @ kernel + bias, recomputing the GELU in the backward pass.

  The exact (erf) GELU differentiated by plain autodiff keeps four
  hidden-width tensors for the backward pass (its output and three
  intermediates); here only `hidden` is kept and the GELU is recomputed from
  it, one elementwise pass. The largest activations of both models are the
  MLP hidden layers, so this is the biggest single memory saving of a
  training step. Gradients equal autodiff's.

  Args:
    hidden: [..., hidden_dim] the first Linear's output.
    kernel: [hidden_dim, dim] in the compute dtype.
    bias: [dim] in the compute dtype.

  Returns:
    [..., dim].
  """

  def gelu_then_linear(hidden, kernel, bias):
    return linear_map(gelu(hidden), kernel, bias)

  return recompute_in_backward(gelu_then_linear)(hidden, kernel, bias)


class MLP(nnx.Module):
  """fc1 -> exact (erf) GELU -> fc2, as PyTorch's nn.GELU default.

  The backward pass keeps the fc1 output and recomputes the GELU
  (`gelu_linear`).
  """

  def __init__(self, dim: int, hidden_dim: int, *,
               init: InitName = 'torch_default', dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    kw = dict(init=init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.fc1 = Linear(dim, hidden_dim, **kw)
    self.fc2 = Linear(hidden_dim, dim, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    """[..., dim] -> [..., dim]."""
    return gelu_linear(self.fc1(x), *self.fc2.compute_weights())


def split_heads(x: jax.Array, num_heads: int) -> jax.Array:
  """[..., C] -> [..., num_heads, C // num_heads] (channel = h * d + i)."""
  return x.reshape(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)


def merge_heads(x: jax.Array) -> jax.Array:
  """[..., num_heads, head_dim] -> [..., num_heads * head_dim]."""
  return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])


@jax.custom_jvp
def softmax(logits: jax.Array) -> jax.Array:
  """Softmax over the last axis, computed and returned in float32.

  Its derivative is written in terms of the output alone, so the backward
  pass keeps one tensor (the probabilities). `jax.nn.softmax` under JAX's
  default `jax_softmax_custom_jvp=False` keeps two (the exponentials and the
  probabilities), which doubles the memory of every attention map.

  Args:
    logits: [..., n] any float dtype.

  Returns:
    [..., n] float32, rows summing to one.
  """
  logits = logits.astype(jnp.float32)
  unnormalized = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
  return unnormalized / jnp.sum(unnormalized, axis=-1, keepdims=True)


@softmax.defjvp
def _softmax_jvp(primals, tangents):
  (logits,), (tangent,) = primals, tangents
  probs = softmax(logits)
  tangent = tangent.astype(jnp.float32)
  return probs, probs * (
      tangent - jnp.sum(probs * tangent, axis=-1, keepdims=True))


def attention_probabilities(q: jax.Array, k: jax.Array,
                            scale: float) -> jax.Array:
  """Softmax attention weights in float32.

  Args:
    q: [batch, q_len, heads, head_dim].
    k: [batch, k_len, heads, head_dim].
    scale: logit scale (head_dim ** -0.5).

  Returns:
    [batch, heads, q_len, k_len] float32, rows summing to one.
  """
  logits = jnp.einsum('bqhd,bkhd->bhqk', q, k,
                      preferred_element_type=jnp.float32) * scale
  return softmax(logits)


def apply_attention(probs: jax.Array, v: jax.Array) -> jax.Array:
  """[batch, heads, q_len, k_len] x [batch, k_len, heads, d] -> [b, q, h, d].

  The probabilities are cast to v's dtype for the product; the cast is
  recomputed in the backward pass, so under bfloat16 only the float32
  probabilities (which the softmax keeps anyway) stay alive, not a second
  bfloat16 copy of the map.
  """

  def attend(probs, v):
    return jnp.einsum('bhqk,bkhd->bqhd', probs.astype(v.dtype), v)

  return recompute_in_backward(attend)(probs, v)


# `model.attention_impl` values. 'auto': cuDNN's fused kernel for bfloat16 /
# float16 on an NVIDIA GPU, 'lean' for bfloat16 / float16 elsewhere, 'xla'
# for float32; 'xla' and 'cudnn' are the
# implementations of `jax.nn.dot_product_attention`; 'lean' is the
# hand-written einsum + float32 softmax pipeline (`attention_probabilities`,
# `apply_attention`).
ATTENTION_IMPLS = ('auto', 'xla', 'cudnn', 'lean')


def _on_nvidia_gpu() -> bool:
  """Whether the default JAX backend is a CUDA (NVIDIA) GPU."""
  if jax.default_backend() != 'gpu':
    return False
  version = getattr(jax.devices()[0].client, 'platform_version', '') or ''
  return 'rocm' not in version.lower()


def check_attention_impl(name: str) -> str:
  """Returns `name` if it is one of `ATTENTION_IMPLS`, else a ValueError."""
  if name not in ATTENTION_IMPLS:
    raise ValueError(f'model.attention_impl: expected one of '
                     f'{ATTENTION_IMPLS}, got {name!r}')
  return name


def resolve_attention_impl(name: str, dtype: Dtype, head_dim: int) -> str:
  """The implementation `name` means for this compute dtype and head size.

  'auto' becomes 'cudnn' for bfloat16 / float16 on an NVIDIA GPU when the
  head size suits cuDNN's fused kernel (a multiple of 8, at most 128);
  otherwise 'lean' for bfloat16 / float16 and 'xla' for float32. The same
  function either way; the reason for 'lean' in low precision is memory:
  `jax.nn.dot_product_attention(implementation='xla')` keeps the float32
  probabilities for the softmax derivative *and* their bf16 cast for the
  value product, 'lean' recomputes the cast (TCPFormer T = 243 bfloat16
  training keeps 21 % less, docs/benchmarks.md). The other names are
  returned unchanged.
  """
  check_attention_impl(name)
  if name != 'auto':
    return name
  low_precision = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16),
                                       jnp.dtype(jnp.float16))
  if not low_precision:
    return 'xla'
  if head_dim % 8 == 0 and head_dim <= 128 and _on_nvidia_gpu():
    return 'cudnn'
  return 'lean'


def _output_only_softmax_derivative() -> contextlib.AbstractContextManager:
  """`jax.softmax_custom_jvp(True)`: `jax.nn.softmax`'s derivative from its
  output alone. The switch is one of JAX's upgrade flags (the new rule
  becomes the default, then the flag goes); where a JAX release no longer
  has it, the new rule is the only one and nothing needs switching."""
  switch = getattr(jax, 'softmax_custom_jvp', None)
  return switch(True) if switch is not None else contextlib.nullcontext()


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
                          scale: float, impl: str) -> jax.Array:
  """softmax(q k^T * scale) v per head, without returning the map.

  Args:
    q: [batch, q_len, heads, head_dim].
    k: [batch, k_len, heads, head_dim].
    v: [batch, k_len, heads, value_dim] (value_dim may differ from
      head_dim for 'xla' and 'lean').
    scale: logit scale.
    impl: a resolved implementation ('xla' | 'cudnn' | 'lean', see
      `resolve_attention_impl`).

  Returns:
    [batch, q_len, heads, value_dim] in v's dtype.

  Memory: 'lean' keeps q, k, v and the float32 probabilities for the
  backward pass. 'xla' keeps q, k, v and the probabilities in v's dtype:
  `jax.nn.softmax` runs under `jax.softmax_custom_jvp(True)`, whose
  derivative needs only its output (JAX's default formulation keeps the
  exponentials too, a second map). 'cudnn' keeps no map at all (fused
  flash attention: q, k, v, the output and the row log-sum-exp).
  """
  if impl == 'lean':
    return apply_attention(attention_probabilities(q, k, scale), v)
  if impl == 'cudnn' and not _on_nvidia_gpu():
    raise ValueError("model.attention_impl='cudnn' needs an NVIDIA GPU, "
                     f'the JAX backend is {jax.default_backend()!r}')
  if impl not in ('xla', 'cudnn'):
    raise ValueError(f"attention impl: expected 'xla' | 'cudnn' | 'lean', "
                     f'got {impl!r}')
  with _output_only_softmax_derivative():
    return jax.nn.dot_product_attention(q, k, v.astype(q.dtype), scale=scale,
                                        implementation=impl)


def to_sequences(x: jax.Array, mode: str) -> jax.Array:
  """Folds [B, T, J, C] into attention sequences.

  'spatial' attends over joints within a frame -> [B * T, J, C] (a
  reshape); 'temporal' attends over frames for one joint -> [B * J, T, C]
  (one transpose of the C-wide input: the fewest a temporal attention needs
  in the channels-last layout, since the qkv projection is three times
  wider and the heads' output as wide).
  """
  b, t, j, c = x.shape
  if mode == 'spatial':
    return x.reshape(b * t, j, c)
  if mode == 'temporal':
    return jnp.swapaxes(x, 1, 2).reshape(b * j, t, c)
  raise ValueError(f"attention mode: expected 'spatial' | 'temporal', "
                   f'got {mode!r}')


def from_sequences(y: jax.Array, shape: tuple[int, ...],
                   mode: str) -> jax.Array:
  """Inverse of `to_sequences` for an output of width y.shape[-1]."""
  b, t, j, _ = shape
  c = y.shape[-1]
  if mode == 'spatial':
    return y.reshape(b, t, j, c)
  return jnp.swapaxes(y.reshape(b, j, t, c), 1, 2)


class Attention(nnx.Module):
  """Multi-head self-attention over joints ('spatial') or frames ('temporal').

  Fused `qkv` projection without bias whose output unit s * C + h * d + i is
  (q|k|v, head h, channel i), then `proj` with bias; scale head_dim ** -0.5.
  q, k, v are laid out [sequences, length, heads, head_dim], the layout of
  `jax.nn.dot_product_attention`, straight from the qkv reshape (no head
  transpose). The core is `dot_product_attention` with `impl`
  (`ATTENTION_IMPLS`; 'auto' resolves per dtype and backend). With
  `recompute_probs=True` the core keeps q, k and v alone and recomputes the
  probabilities (one more q k^T product and softmax) in the backward pass,
  as a fused flash-attention kernel does: the [heads, L, L] maps are the
  largest activations of long temporal sequences (no effect with 'cudnn',
  which keeps no map).
  """

  def __init__(self, dim: int, num_heads: int, mode: str, *,
               init: InitName = 'torch_default', dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32,
               recompute_probs: bool = False, impl: str = 'auto',
               rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
    if mode not in ('spatial', 'temporal'):
      raise ValueError(f"attention mode: expected 'spatial' | 'temporal', "
                       f'got {mode!r}')
    self.num_heads = num_heads
    self.mode = mode
    self.scale = (dim // num_heads) ** -0.5
    self.recompute_probs = recompute_probs
    self.impl = resolve_attention_impl(impl, dtype, dim // num_heads)
    kw = dict(init=init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    # Registration order of the official code: proj, then qkv.
    self.proj = Linear(dim, dim, **kw)
    self.qkv = Linear(dim, 3 * dim, use_bias=False, **kw)

  def qkv_heads(self, seq: jax.Array):
    """[N, L, C] -> q, k, v each [N, L, heads, head_dim]."""
    n, length, c = seq.shape
    qkv = self.qkv(seq).reshape(n, length, 3, self.num_heads,
                                c // self.num_heads)
    return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]

  def core(self, q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Attention of q [N, Lq, H, d] over k, v [N, Lk, H, d'] (this module's
    scale, implementation and recompute setting) -> [N, Lq, H, d']."""

    def attend(q, k, v):
      return dot_product_attention(q, k, v, scale=self.scale, impl=self.impl)

    if self.recompute_probs:
      attend = recompute_in_backward(attend)
    return attend(q, k, v)

  def __call__(self, x: jax.Array) -> jax.Array:
    """[B, T, J, C] -> [B, T, J, C]."""
    q, k, v = self.qkv_heads(to_sequences(x, self.mode))
    return self.proj(from_sequences(merge_heads(self.core(q, k, v)), x.shape,
                                    self.mode))


def scaled_residual(x: jax.Array, branch: jax.Array, scale: jax.Array
                    ) -> jax.Array:
  """x + scale * branch with the residual stream in float32.

  Under a bfloat16 compute dtype the branch (a matmul output) is bf16; the
  stream it is added to stays float32, as under torch autocast, so that
  small branch contributions (layer scales 1e-5 at init) are not rounded
  away. Matmul inputs are cast back to the compute dtype by the next
  LayerNorm / Linear.

  Args:
    x: [..., C] float32 residual stream.
    branch: [..., C] any float dtype.
    scale: [C] (a LayerScale vector) or a scalar.

  Returns:
    [..., C] float32.
  """
  return x.astype(jnp.float32) + (jnp.asarray(scale).astype(jnp.float32) *
                                  branch.astype(jnp.float32))


def layer_scale(dim: int, init_value: float,
                param_dtype: Dtype = jnp.float32) -> nnx.Param:
  """A LayerScale vector [dim] filled with `init_value`."""
  return nnx.Param(jnp.full((dim,), init_value, param_dtype))


def drop_path(x: jax.Array, rate: float,
              rng: jax.Array | None) -> jax.Array:
  """Stochastic depth: zeroes whole samples of a residual branch.

  Args:
    x: [batch, ...] the branch output.
    rate: drop probability; 0 or `rng=None` returns x unchanged.
    rng: PRNG key, or None for deterministic (evaluation) behaviour.

  Returns:
    x with each sample kept with probability 1 - rate and rescaled.
  """
  if rate == 0.0 or rng is None:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, (x.shape[0],) + (1,) *
                              (x.ndim - 1))
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


# `jax.checkpoint_policies` members that are policies themselves; the others
# are factories that need arguments (names to save or offload).
REMAT_POLICIES = (
    'everything_saveable',
    'nothing_saveable',
    'dots_saveable',
    'checkpoint_dots',
    'dots_with_no_batch_dims_saveable',
    'checkpoint_dots_with_no_batch_dims',
)


def resolve_remat(name: str) -> str:
  """The rematerialisation `name` means on the default JAX backend.

  'auto' becomes 'block' on a CPU and 'none' elsewhere. On XLA CPU the
  saved values of a scanned layer stack cost more than recomputing them:
  each [depth, ...] stack is zero-filled, copied and sliced, so
  recomputing every layer in the backward pass is faster: the TCPFormer
  training step at depth 4 / dim 64 / T = 27 took 331 ms with 'block'
  against 384 ms with 'none' on a 2-core VM, with a third of the XLA
  temp memory (docs/benchmarks.md, CPU results).
  On GPUs the second forward pass costs FLOPs and MFU and has not been
  measured, so 'auto' keeps everything there. The other names are checked
  and returned unchanged.

  Raises:
    ValueError: an unknown name.
  """
  if name == 'auto':
    return 'block' if jax.default_backend() == 'cpu' else 'none'
  if name not in ('none', 'block') + REMAT_POLICIES:
    raise ValueError(f"model.remat: expected 'auto' | 'none' | 'block' | "
                     f'one of {REMAT_POLICIES}, got {name!r}')
  return name


def remat_wrapper(remat: str, *, prevent_cse: bool = True
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
  """Returns a decorator applying `jax.checkpoint` as named by `remat`.

  Args:
    remat: the `model.remat` config value: 'auto' (see `resolve_remat`),
      'none' (no rematerialisation), 'block' (save only the inputs of the
      wrapped function, recompute the rest in the backward pass) or the
      name of a policy in `jax.checkpoint_policies` (see `REMAT_POLICIES`).
    prevent_cse: passed to `jax.checkpoint`; False is right inside a scan.

  Returns:
    A function wrapper (the identity for 'none').

  Raises:
    ValueError: an unknown name.
  """
  remat = resolve_remat(remat)
  if remat == 'none':
    return lambda fn: fn
  if remat == 'block':
    return lambda fn: jax.checkpoint(fn, prevent_cse=prevent_cse)
  policy = getattr(jax.checkpoint_policies, remat)
  return lambda fn: jax.checkpoint(fn, policy=policy, prevent_cse=prevent_cse)


def validate_model_config(cfg) -> None:
  """Checks the `config.model` fields both models share.

  Raises a one-line ValueError naming the field: sizes must be >= 1,
  `dim` divisible by `num_heads`, `drop_path` in [0, 1), `remat` and
  `attention_impl` known names.
  """
  for key in ('depth', 'dim', 'num_heads', 'dim_rep', 'num_frames',
              'num_joints', 'dim_in', 'dim_out'):
    if int(cfg[key]) < 1:
      raise ValueError(f'model.{key}: expected >= 1, got {cfg[key]}')
  if cfg.dim % cfg.num_heads:
    raise ValueError(f'model.dim {cfg.dim} is not divisible by '
                     f'model.num_heads {cfg.num_heads}')
  if not 0.0 <= cfg.drop_path < 1.0:
    raise ValueError(f'model.drop_path: expected in [0, 1), got '
                     f'{cfg.drop_path}')
  resolve_remat(cfg.remat)  # Raises on an unknown name.
  # Configs (and checkpoint metadata) written before the field existed
  # mean 'auto'.
  check_attention_impl(cfg.get('attention_impl', 'auto'))
