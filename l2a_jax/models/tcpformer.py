"""TCPFormer (AAAI 2025) in Flax NNX with the official parameter names.

`MemoryInducedTransformer` of AsukaCamellia/TCPFormer: `depth` layer pairs,
each a dual-stream spatio-temporal `DSTFormerBlock` followed by a
`MemoryInducedBlock` (chunked local temporal attention, then the `MIBlock`
that updates and reads a learnable pose proxy). Specification:
docs/models.md (TCPFormer section) and tcpformer_spec.md.

Official quirks reproduced on purpose:
- the six local layer scales of every MemoryInducedBlock are constants equal
  to `layer_scale_init` (the official code keeps them in a plain Python list,
  so they are never trained or saved): a `FrozenLayerScale` variable here,
  not an `nnx.Param`, hence neither trained nor checkpointed;
- `graph_spatial` attends over frames and `graph_temporal` over joints;
  `loacl_mlps` keeps its typo;
- no temporal positional embedding; the proxy `center_pose` [T // 3, J, C]
  is drawn from N(0, 1); `att_weight` [1] goes through a sigmoid; the fusion
  Linear starts at weight 0 / bias 0.5.

Layer stack: the `depth` DSTFormerBlocks live in one module `layers` and the
MemoryInducedBlocks in `temporal_layers`, each parameter with a leading axis
of size `depth` (`STACKED_MODULES`). One scan step applies one pair
(layers[i], temporal_layers[i]) to the carry (x, proxy);
`scan_layers=False` runs the same stacked parameters in an unrolled Python
loop (the reference). `l2a_jax.models.stacking` maps the stacked tree onto
the official per-layer state_dict keys.
"""

from __future__ import annotations

from collections.abc import Callable
import math
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections

from l2a_jax.models import layers

Dtype = jnp.dtype


class FrozenLayerScale(nnx.Variable):
  """A layer-scale vector that is a constant, not a parameter.

  Holds the official MemoryInducedBlock's six unregistered scales: never in
  `nnx.state(model, nnx.Param)`, so never optimised or checkpointed.
  """


def _branch_keys(rng: jax.Array | None, count: int) -> list[Any]:
  """`count` independent keys from `rng` ([None] * count when rng is None)."""
  if rng is None:
    return [None] * count
  return list(jax.random.split(rng, count))


class TransBlock(nnx.Module):
  """Pre-norm Transformer block with two trainable layer scales.

  x <- x + layer_scale_1 * mixer(norm1(x));
  x <- x + layer_scale_2 * mlp(norm2(x)).
  """

  def __init__(self, dim: int, num_heads: int, mlp_ratio: float, mode: str,
               *, layer_scale_init: float, drop_path: float, dtype: Dtype,
               param_dtype: Dtype, recompute_attention: bool = False,
               attention_impl: str = 'auto', rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.drop_path = drop_path
    # Attribute order = official state_dict order.
    self.layer_scale_1 = layers.layer_scale(dim, layer_scale_init,
                                            param_dtype)
    self.layer_scale_2 = layers.layer_scale(dim, layer_scale_init,
                                            param_dtype)
    self.norm1 = layers.LayerNorm(dim, **kw)
    self.mixer = layers.Attention(dim, num_heads, mode, rngs=rngs,
                                  recompute_probs=recompute_attention,
                                  impl=attention_impl, **kw)
    self.norm2 = layers.LayerNorm(dim, **kw)
    self.mlp = layers.MLP(dim, int(dim * mlp_ratio), rngs=rngs, **kw)

  def __call__(self, x: jax.Array, rng: jax.Array | None = None) -> jax.Array:
    """[batch, frames, joints, dim] float32 -> same shape, float32."""
    keys = _branch_keys(rng, 2)
    x = layers.scaled_residual(x, layers.drop_path(
        self.mixer(self.norm1(x)), self.drop_path, keys[0]),
                               self.layer_scale_1[...])
    return layers.scaled_residual(x, layers.drop_path(
        self.mlp(self.norm2(x)), self.drop_path, keys[1]),
                                  self.layer_scale_2[...])


class DSTFormerBlock(nnx.Module):
  """Dual-stream spatio-temporal block with adaptive softmax fusion.

  Stream 1 (S then T): att_temporal(att_spatial(x)). Stream 2 (T then S):
  graph_temporal(graph_spatial(x)); despite their names `graph_spatial`
  attends over frames and `graph_temporal` over joints (official quirk).
  alpha = softmax(fusion([x1, x2])) per token; out = alpha0 x1 + alpha1 x2.
  """

  def __init__(self, dim: int, num_heads: int, mlp_ratio: float, *,
               layer_scale_init: float, drop_path: float, dtype: Dtype,
               param_dtype: Dtype, recompute_attention: bool = False,
               attention_impl: str = 'auto', rngs: nnx.Rngs):
    kw = dict(layer_scale_init=layer_scale_init, drop_path=drop_path,
              dtype=dtype, param_dtype=param_dtype,
              recompute_attention=recompute_attention,
              attention_impl=attention_impl, rngs=rngs)
    self.att_spatial = TransBlock(dim, num_heads, mlp_ratio, 'spatial', **kw)
    self.att_temporal = TransBlock(dim, num_heads, mlp_ratio, 'temporal', **kw)
    self.graph_spatial = TransBlock(dim, num_heads, mlp_ratio, 'temporal',
                                    **kw)
    self.graph_temporal = TransBlock(dim, num_heads, mlp_ratio, 'spatial',
                                     **kw)
    self.fusion = layers.Linear(2 * dim, 2, dtype=dtype,
                                param_dtype=param_dtype, rngs=rngs)
    # Official init: weight 0, bias 0.5, so both streams weigh 0.5 at init.
    self.fusion.kernel[...] = jnp.zeros((2 * dim, 2), param_dtype)
    self.fusion.bias[...] = jnp.full((2,), 0.5, param_dtype)

  def __call__(self, x: jax.Array, rng: jax.Array | None = None) -> jax.Array:
    """[batch, frames, joints, dim] float32 -> same shape, float32."""
    keys = _branch_keys(rng, 4)
    x_attn = self.att_temporal(self.att_spatial(x, keys[0]), keys[1])
    x_graph = self.graph_temporal(self.graph_spatial(x, keys[2]), keys[3])
    logits = self.fusion(jnp.concatenate([x_attn, x_graph], axis=-1))
    alpha = layers.softmax(logits)  # float32, as the streams.
    return x_attn * alpha[..., 0:1] + x_graph * alpha[..., 1:2]


class CrossAttention(nnx.Module):
  """Temporal cross-attention per joint (the PUM / PIM attention).

  Queries from one sequence, keys and values from another. `wq`, `wk`, `wv`
  have no bias, `proj` has one; heads split channel = head * head_dim + i;
  scale head_dim ** -0.5. Besides its output it returns its per-head
  queries and keys, so that PAM can apply the same attention map to other
  values (`SumAttention`) without the map ever being materialised.
  """

  def __init__(self, dim: int, num_heads: int, *, dtype: Dtype,
               param_dtype: Dtype, recompute_attention: bool = False,
               attention_impl: str = 'auto', rngs: nnx.Rngs):
    if dim % num_heads:
      raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
    self.num_heads = num_heads
    self.scale = (dim // num_heads) ** -0.5
    self.recompute_attention = recompute_attention
    self.impl = layers.resolve_attention_impl(attention_impl, dtype,
                                              dim // num_heads)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.wq = layers.Linear(dim, dim, use_bias=False, **kw)
    self.wk = layers.Linear(dim, dim, use_bias=False, **kw)
    self.wv = layers.Linear(dim, dim, use_bias=False, **kw)
    self.proj = layers.Linear(dim, dim, **kw)

  def apply_map(self, queries_keys: tuple[jax.Array, jax.Array],
                values: jax.Array) -> jax.Array:
    """softmax(q k^T * scale) values, the map of `queries_keys`.

    Args:
      queries_keys: (q [N, q_frames, heads, d], k [N, k_frames, heads, d])
        as returned by `__call__`.
      values: [N, k_frames, heads, d_v].

    Returns:
      [N, q_frames, heads, d_v].
    """
    q, k = queries_keys

    def attend(q, k, values):
      return layers.dot_product_attention(q, k, values, scale=self.scale,
                                          impl=self.impl)

    if self.recompute_attention:
      attend = layers.recompute_in_backward(attend)
    return attend(q, k, values)

  def __call__(self, query: jax.Array, context: jax.Array
               ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    """Attends from `query` frames to `context` frames, per head and joint.

    Args:
      query: [batch, q_frames, joints, dim].
      context: [batch, k_frames, joints, dim].

    Returns:
      ((q, k), out): the per-head queries [batch * joints, q_frames, heads,
      head_dim] and keys [batch * joints, k_frames, heads, head_dim] that
      define the attention map (sequences ordered batch-major as
      `layers.to_sequences(..., 'temporal')`), and the output [batch,
      q_frames, joints, dim].
    """
    q = layers.split_heads(self.wq(layers.to_sequences(query, 'temporal')),
                           self.num_heads)
    context_seq = layers.to_sequences(context, 'temporal')
    k = layers.split_heads(self.wk(context_seq), self.num_heads)
    v = layers.split_heads(self.wv(context_seq), self.num_heads)
    out = layers.merge_heads(self.apply_map((q, k), v))
    return (q, k), self.proj(
        layers.from_sequences(out, query.shape, 'temporal'))


class SumAttention(layers.Attention):
  """Temporal self-attention mixed with the map through the proxy (PAM).

  The official `Sum_Attention` applies M = w * P + (1 - w) * A to its
  values, P = softmax(q k^T * scale) its own map and A = A_pim @ A_pum the
  frame-to-frame map through the proxy (probabilities mixed, no
  re-softmax). Since M v = w * (P v) + (1 - w) * A_pim (A_pum v), every
  product is an attention call with some value tensor: P v (this module's
  q, k), A_pum v (PUM's queries and keys: proxy frames x frames) and
  A_pim (A_pum v) (PIM's: frames x proxy frames). No frames x frames map
  but P's (none at all with the cuDNN kernel) is ever built, and the
  T x T x L product A_pim @ A_pum is gone. Parameters `proj` and `qkv` as
  `layers.Attention`.
  """

  def __init__(self, dim: int, num_heads: int, *, dtype: Dtype,
               param_dtype: Dtype, recompute_probs: bool = False,
               impl: str = 'auto', rngs: nnx.Rngs):
    super().__init__(dim, num_heads, 'temporal', dtype=dtype,
                     param_dtype=param_dtype, recompute_probs=recompute_probs,
                     impl=impl, rngs=rngs)

  def __call__(  # pytype: disable=signature-mismatch
      self, x: jax.Array, pim: CrossAttention, pim_qk: tuple[jax.Array,
                                                             jax.Array],
      pum: CrossAttention, pum_qk: tuple[jax.Array, jax.Array],
      weight: jax.Array
  ) -> jax.Array:
    """Mixed-map temporal attention.

    Args:
      x: [batch, frames, joints, dim].
      pim: the PIM cross-attention (sequence reads proxy); `pim_qk` its
        queries [batch * joints, frames, heads, d] and keys [batch * joints,
        proxy_frames, heads, d].
      pum: the PUM cross-attention (proxy reads sequence); `pum_qk` its
        queries [batch * joints, proxy_frames, heads, d] and keys
        [batch * joints, frames, heads, d].
      weight: the mixing weight in (0, 1), shape [1] (float32).

    Returns:
      [batch, frames, joints, dim].
    """
    q, k, v = self.qkv_heads(layers.to_sequences(x, 'temporal'))
    own = self.core(q, k, v)
    through_proxy = pim.apply_map(pim_qk, pum.apply_map(pum_qk, v))
    mixed = (weight * own.astype(jnp.float32) +
             (1.0 - weight) * through_proxy.astype(jnp.float32))
    return self.proj(layers.from_sequences(
        layers.merge_heads(mixed.astype(v.dtype)), x.shape, 'temporal'))


class MIBlock(nnx.Module):
  """Proxy update (PUM), proxy invocation (PIM), a plain temporal
  self-attention sub-block and proxy attention (PAM); spec section 2.5."""

  def __init__(self, dim: int, num_heads: int, mlp_ratio: float, *,
               layer_scale_init: float, drop_path: float, dtype: Dtype,
               param_dtype: Dtype, recompute_attention: bool = False,
               attention_impl: str = 'auto', rngs: nnx.Rngs):
    hidden = int(dim * mlp_ratio)
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.drop_path = drop_path
    for i in range(1, 9):
      setattr(self, f'layer_scale_{i}',
              layers.layer_scale(dim, layer_scale_init, param_dtype))
    # sigmoid(att_weight) is the PAM mixing weight; U[0, 1) as the official.
    self.att_weight = nnx.Param(
        jax.random.uniform(rngs.params(), (1,), param_dtype))
    self.norm_full = layers.LayerNorm(dim, **kw)
    self.norm_center = layers.LayerNorm(dim, **kw)
    attention_kw = dict(recompute_attention=recompute_attention,
                        attention_impl=attention_impl)
    self.full_center = CrossAttention(dim, num_heads, rngs=rngs,
                                      **attention_kw, **kw)
    self.center_full = CrossAttention(dim, num_heads, rngs=rngs,
                                      **attention_kw, **kw)
    self.mlp_1 = layers.MLP(dim, hidden, rngs=rngs, **kw)
    self.mlp_2 = layers.MLP(dim, hidden, rngs=rngs, **kw)
    self.norm_1 = layers.LayerNorm(dim, **kw)
    self.norm_2 = layers.LayerNorm(dim, **kw)
    self.norm_sa_self = layers.LayerNorm(dim, **kw)
    self.map_sa_self = layers.Attention(
        dim, num_heads, 'temporal', rngs=rngs,
        recompute_probs=recompute_attention, impl=attention_impl, **kw)
    self.norm_mlp_self = layers.LayerNorm(dim, **kw)
    self.mlp_sa_self = layers.MLP(dim, hidden, rngs=rngs, **kw)
    self.norm_sa_1 = layers.LayerNorm(dim, **kw)
    self.map_sum = SumAttention(dim, num_heads, rngs=rngs,
                                recompute_probs=recompute_attention,
                                impl=attention_impl, **kw)
    self.norm_sa_2 = layers.LayerNorm(dim, **kw)
    self.mlp_sa = layers.MLP(dim, hidden, rngs=rngs, **kw)

  def __call__(self, x: jax.Array, proxy: jax.Array,
               rng: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """One MIBlock.

    Args:
      x: pose features [batch, frames, joints, dim].
      proxy: pose proxy [batch, proxy_frames, joints, dim].
      rng: drop-path key, or None (deterministic).

    Returns:
      The updated (x, proxy), same shapes, float32 (the residual streams).
    """
    keys = _branch_keys(rng, 8)
    rate = self.drop_path

    def residual(stream, i, branch, key):
      return layers.scaled_residual(
          stream, layers.drop_path(branch, rate, key),
          getattr(self, f'layer_scale_{i}')[...])

    # PUM: the proxy reads the sequence; pum_qk defines its map A_pum
    # [b*j, heads, L, frames].
    x_normed = self.norm_full(x)
    pum_qk, update = self.center_full(self.norm_center(proxy), x_normed)
    proxy = residual(proxy, 1, update, keys[0])
    proxy = residual(proxy, 2, self.mlp_1(self.norm_1(proxy)), keys[1])
    # PIM: the sequence reads the updated proxy; pim_qk defines A_pim
    # [b*j, heads, frames, L].
    pim_qk, update = self.full_center(x_normed, self.norm_center(proxy))
    x = residual(x, 3, update, keys[2])
    x = residual(x, 4, self.mlp_2(self.norm_2(x)), keys[3])
    mix = jax.nn.sigmoid(self.att_weight[...].astype(jnp.float32))
    # The plain temporal self-attention sub-block (code only, not in the
    # paper) runs before PAM.
    x = residual(x, 7, self.map_sa_self(self.norm_sa_self(x)), keys[4])
    x = residual(x, 8, self.mlp_sa_self(self.norm_mlp_self(x)), keys[5])
    # PAM, with the frame-to-frame map through the proxy, A_pim @ A_pum,
    # applied as two attention calls (not detached: gradients flow into
    # both cross-attentions' queries and keys).
    x = residual(x, 5, self.map_sum(self.norm_sa_1(x), self.full_center,
                                    pim_qk, self.center_full, pum_qk, mix),
                 keys[6])
    x = residual(x, 6, self.mlp_sa(self.norm_sa_2(x)), keys[7])
    return x, proxy


def torch_chunk_bounds(length: int, chunks: int) -> list[tuple[int, int]]:
  """[start, stop) of `torch.chunk(x, chunks)` along an axis of `length`.

  Chunks of ceil(length / chunks) frames, the last one shorter; fewer than
  `chunks` pieces when the length is too short (T = 4 -> 2 chunks), exactly
  as torch.chunk. Every official config has T % 3 == 0 (equal chunks).
  """
  size = math.ceil(length / chunks)
  return [(start, min(start + size, length))
          for start in range(0, length, size)]


class MemoryInducedBlock(nnx.Module):
  """Chunked local temporal attention, then an MIBlock (spec section 2.4).

  The frames split into three contiguous chunks; chunk i gets
  x <- x + s[i] * local_attention_list[i](local_norms[i](x)) and
  x <- x + s[i+3] * loacl_mlps[i](local_norms[i+3](x)), where the six
  scales s are constants (official quirk), then `cross_temporal` updates
  (x, proxy).
  """

  def __init__(self, dim: int, num_heads: int, mlp_ratio: float, *,
               layer_scale_init: float, drop_path: float, dtype: Dtype,
               param_dtype: Dtype, recompute_attention: bool = False,
               attention_impl: str = 'auto', rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.drop_path = drop_path
    self.local_attention_list = nnx.List([
        layers.Attention(dim, num_heads, 'temporal', rngs=rngs,
                         recompute_probs=recompute_attention,
                         impl=attention_impl, **kw)
        for _ in range(3)])
    self.loacl_mlps = nnx.List([
        layers.MLP(dim, int(dim * mlp_ratio), rngs=rngs, **kw)
        for _ in range(3)])
    self.local_norms = nnx.List([layers.LayerNorm(dim, **kw)
                                 for _ in range(6)])
    self.cross_temporal = MIBlock(
        dim, num_heads, mlp_ratio, layer_scale_init=layer_scale_init,
        drop_path=drop_path, recompute_attention=recompute_attention,
        attention_impl=attention_impl, rngs=rngs, **kw)
    # [6, dim]: rows 0-2 scale the chunk attentions, rows 3-5 the chunk MLPs.
    self.local_layer_scales = FrozenLayerScale(
        jnp.full((6, dim), layer_scale_init, param_dtype))

  def __call__(self, x: jax.Array, proxy: jax.Array,
               rng: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Maps (x [batch, frames, joints, dim], proxy [batch, L, joints, dim]),
    float32, to the updated pair, same shapes, float32."""
    keys = _branch_keys(rng, 7)
    scales = self.local_layer_scales[...]
    pieces = []
    for i, (start, stop) in enumerate(torch_chunk_bounds(x.shape[1], 3)):
      chunk = x[:, start:stop]
      chunk = layers.scaled_residual(chunk, layers.drop_path(
          self.local_attention_list[i](self.local_norms[i](chunk)),
          self.drop_path, keys[2 * i]), scales[i])
      chunk = layers.scaled_residual(chunk, layers.drop_path(
          self.loacl_mlps[i](self.local_norms[i + 3](chunk)),
          self.drop_path, keys[2 * i + 1]), scales[i + 3])
      pieces.append(chunk)
    return self.cross_temporal(jnp.concatenate(pieces, axis=1), proxy,
                               keys[6])


class RepLogit(nnx.Module):
  """`rep_logit`: Linear(dim -> dim_rep) then tanh (official nn.Sequential)."""

  def __init__(self, dim: int, dim_rep: int, *, dtype: Dtype,
               param_dtype: Dtype, rngs: nnx.Rngs):
    self.fc = layers.Linear(dim, dim_rep, dtype=dtype, param_dtype=param_dtype,
                            rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """[..., dim] -> [..., dim_rep]."""
    return jnp.tanh(self.fc(x))


def _stacked(build: Callable[[nnx.Rngs], nnx.Module], depth: int,
             rngs: nnx.Rngs) -> nnx.Module:
  """Builds `depth` independently initialised copies of a module, stacked.

  Every variable of the result has a leading axis of size `depth`.
  """

  @nnx.split_rngs(splits=depth)
  @nnx.vmap(in_axes=(0,), out_axes=0)
  def build_all(layer_rngs):
    return build(layer_rngs)

  return build_all(rngs)


class TCPFormer(nnx.Module):
  """`MemoryInducedTransformer`: `depth` (DSTFormerBlock, MemoryInducedBlock)
  pairs over a pose sequence and a learnable pose proxy.

  `model(x)`: x float32 [batch, frames, joints, dim_in] -> float32 [batch,
  frames, joints, dim_out]. Parameters in `param_dtype`, matmuls in `dtype`;
  LayerNorm statistics, softmaxes, the PAM mix and the residual streams
  (the scan carry) in float32.
  """

  # Submodules whose parameters carry a leading layer axis (stacking.py).
  STACKED_MODULES = ('layers', 'temporal_layers')

  def __init__(self, model_config: ml_collections.ConfigDict, *,
               rngs: nnx.Rngs):
    """Builds the model from a `config.model` section (tcpformer_h36m.py).

    Args:
      model_config: fields depth, dim, num_heads, mlp_ratio, dim_rep,
        num_frames, num_joints, dim_in, dim_out, dtype, param_dtype,
        scan_layers, scan_unroll (absent = 1), remat, recompute_attention,
        attention_impl (absent = 'auto'), drop_path, layer_scale_init.
      rngs: NNX RNG streams; `params` initialises the weights.
    """
    cfg = model_config
    layers.validate_model_config(cfg)
    if cfg.num_frames < 3:
      raise ValueError('model.num_frames: expected >= 3 (the proxy has '
                       f'num_frames // 3 frames), got {cfg.num_frames}')
    dtype = layers.canonical_dtype(cfg.dtype)
    param_dtype = layers.canonical_dtype(cfg.param_dtype)
    self.depth = cfg.depth
    self.num_joints = cfg.num_joints
    self.dim_in = cfg.dim_in
    self.dtype = dtype
    self.scan_layers = bool(cfg.scan_layers)
    self.scan_unroll = cfg.get('scan_unroll', 1)
    if (isinstance(self.scan_unroll, bool) or
        not isinstance(self.scan_unroll, int) or self.scan_unroll < 1):
      raise ValueError('model.scan_unroll: expected an int >= 1, got '
                       f'{self.scan_unroll!r}')
    # 'auto' resolved here, so the attribute names what runs.
    self.remat = layers.resolve_remat(cfg.remat)
    self.drop_path = float(cfg.drop_path)
    dim, joints = cfg.dim, cfg.num_joints
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    block_kw = dict(layer_scale_init=cfg.layer_scale_init,
                    drop_path=self.drop_path,
                    recompute_attention=bool(cfg.recompute_attention),
                    attention_impl=cfg.get('attention_impl', 'auto'), **kw)

    # Attribute order = official state_dict order.
    self.pos_embed = nnx.Param(jnp.zeros((1, joints, dim), param_dtype))
    # The implicit pose proxy: T // 3 frames, standard normal init.
    self.center_pose = nnx.Param(jax.random.normal(
        rngs.params(), (cfg.num_frames // 3, joints, dim), param_dtype))
    self.center_pos_embed = nnx.Param(jnp.zeros((1, joints, dim),
                                                param_dtype))
    self.joints_embed = layers.Linear(cfg.dim_in, dim, rngs=rngs, **kw)
    self.norm = layers.LayerNorm(dim, **kw)
    self.layers = _stacked(
        lambda r: DSTFormerBlock(dim, cfg.num_heads, cfg.mlp_ratio, rngs=r,
                                 **block_kw), cfg.depth, rngs)
    self.rep_logit = RepLogit(dim, cfg.dim_rep, rngs=rngs, **kw)
    self.head = layers.Linear(cfg.dim_rep, cfg.dim_out, rngs=rngs, **kw)
    self.temporal_layers = _stacked(
        lambda r: MemoryInducedBlock(dim, cfg.num_heads, cfg.mlp_ratio,
                                     rngs=r, **block_kw), cfg.depth, rngs)

  def _run_pairs(self, x: jax.Array, proxy: jax.Array,
                 dropout_rng: jax.Array | None
                 ) -> tuple[jax.Array, jax.Array]:
    """Applies the `depth` layer pairs (scanned or unrolled).

    Args:
      x: [batch, frames, joints, dim] float32 (the residual stream; the scan
        carry stays float32 under a bfloat16 compute dtype).
      proxy: [batch, proxy_frames, joints, dim] float32.
      dropout_rng: drop-path key or None.

    Returns:
      The final (x, proxy).
    """
    layer_def, layer_state = nnx.split(self.layers)
    temporal_def, temporal_state = nnx.split(self.temporal_layers)
    layer_keys = (None if dropout_rng is None or self.drop_path == 0.0
                  else jax.random.split(dropout_rng, self.depth))

    def pair(carry, per_layer):
      x, proxy = carry
      layer_params, temporal_params, key = per_layer
      keys = _branch_keys(key, 2)
      x = nnx.merge(layer_def, layer_params)(x, keys[0])
      x, proxy = nnx.merge(temporal_def, temporal_params)(x, proxy, keys[1])
      return (x, proxy), None

    stacked = (layer_state, temporal_state, layer_keys)
    if self.scan_layers:
      step = layers.remat_wrapper(self.remat, prevent_cse=False)(pair)
      # unroll > 1: that many pairs per loop iteration (XLA slices the
      # stacked parameters and saved values statically within it).
      (x, proxy), _ = jax.lax.scan(step, (x, proxy), stacked,
                                   unroll=min(self.scan_unroll, self.depth))
    else:
      step = layers.remat_wrapper(self.remat)(pair)
      for i in range(self.depth):
        (x, proxy), _ = step((x, proxy),
                             jax.tree.map(lambda a, i=i: a[i], stacked))
    return x, proxy

  def __call__(self, x: jax.Array, *,
               dropout_rng: jax.Array | None = None) -> jax.Array:
    """Lifts 2D keypoint sequences to 3D.

    Args:
      x: [batch, frames, joints, dim_in] (x, y, confidence), float32.
      dropout_rng: a key enabling drop path (when `drop_path > 0`), or None
        for deterministic behaviour.

    Returns:
      [batch, frames, joints, dim_out] float32.
    """
    if x.ndim != 4 or x.shape[2] != self.num_joints or (
        x.shape[3] != self.dim_in):
      raise ValueError(
          'TCPFormer input: expected [batch, frames, '
          f'{self.num_joints}, {self.dim_in}], got {tuple(x.shape)}')
    batch = x.shape[0]
    f32 = jnp.float32
    # The proxy is shared by the batch; every sample updates its own copy.
    # Residual streams (x, proxy) are float32 under any compute dtype.
    proxy = (self.center_pose[...].astype(f32) +
             self.center_pos_embed[...].astype(f32))
    proxy = jnp.broadcast_to(proxy[None], (batch,) + proxy.shape)
    # Spatial (per-joint) embedding only: no temporal positional embedding.
    x = self.joints_embed(x).astype(f32) + self.pos_embed[...].astype(f32)
    x, _ = self._run_pairs(x, proxy, dropout_rng)
    return self.head(self.rep_logit(self.norm(x))).astype(jnp.float32)
