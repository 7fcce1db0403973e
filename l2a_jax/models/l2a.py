"""L2A: a parallel spatial-temporal Transformer with History Pose
Accumulation (HPA) over Layer Pose History Aggregation (LPA) records.

Only the abstract of L2A (arXiv 2605.08806) is public; this is the
reconstruction of l2a_design.md (docs/models.md says what is confirmed and
what is ours). Default layer l = 1..L, h_0 = z0 the embedding:

  s   = h + ls_s1 * AttnS(LN(h));   s = s + ls_s2 * MLP_s(LN(s))
  t   = h + ls_t1 * AttnT(LN(h));   t = t + ls_t2 * MLP_t(LN(t))
  o_l = softmax(fusion([s, t]))-weighted mix of s and t        (per token)
  a_li = softmax_i(q_l . RMSNorm(k_i) / tau), i < l            (per token)
  h_l = o_l + g_l * sum_i a_li k_i;   k_l = LPA_l(h_l) = RMSNorm(h_l) W_l

then LN -> Linear(C, dim_rep) -> tanh -> Linear(dim_rep, 3). Every
alternative of l2a_design.md section 4 is a `config.model` switch
(configs/l2a_h36m.py documents each).

Layer stack: the L layers are one module `layers` whose parameters have a
leading axis of size L (`nnx.split_rngs` + `nnx.vmap` at init). The history
(slot 0 = embedding, slot l = layer l's record h_l or delta D_l, plus its
LPA key) is a fixed-size buffer `[L + 1, ...]` written once per slot and
read under a mask; `history_stack.scan_write_once` scans the layers over it
with an O(L)-memory custom VJP. `model.scan_layers=False` runs the same
stacked parameters in an unrolled Python loop with the history as a Python
list (the reference path of the tests).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from l2a_jax.models import history_stack
from l2a_jax.models import layers

Dtype = jnp.dtype

# Masked depth logits: a large finite negative (not -inf, whose arithmetic
# yields NaN when a whole row is masked).
MASKED_LOGIT = -1e30

# Six body parts of the 17-joint Human3.6M skeleton for LPA pooling 'part'
# (l2a_design.md section 4.2): torso, head, left arm, right arm, left leg,
# right leg.
BODY_PARTS = ((0, 7, 8), (9, 10), (11, 12, 13), (14, 15, 16), (4, 5, 6),
              (1, 2, 3))
PART_OF_JOINT = np.zeros(17, np.int32)
for _part, _joints in enumerate(BODY_PARTS):
  PART_OF_JOINT[list(_joints)] = _part
# [17, 6]: averaging matrix joints -> parts.
PART_AVERAGE = np.zeros((17, len(BODY_PARTS)), np.float32)
for _part, _joints in enumerate(BODY_PARTS):
  PART_AVERAGE[list(_joints), _part] = 1.0 / len(_joints)

_CHOICES = {
    'backbone': ('parallel', 'sequential'),
    'fusion': ('token_softmax', 'channel_softmax', 'mean', 'channel_split'),
    'pos_embed': ('spatial_temporal', 'spatial', 'none'),
    'history_vjp': ('custom', 'autodiff'),
    'init': ('torch_default', 'trunc_normal'),
    'hpa.mode': ('add', 'replace', 'none'),
    'hpa.weights': ('token', 'sample', 'static'),
    'hpa.history': ('all', 'last_k', 'blocks'),
    'hpa.value': ('lpa', 'raw'),
    'hpa.temperature': ('unit', 'sqrt_dim'),
    'lpa.mode': ('proj', 'pool', 'bottleneck', 'rmsnorm', 'identity'),
    'lpa.pool': ('joint', 'frame', 'part'),
}


def _choice(key: str, value: Any) -> Any:
  if value not in _CHOICES[key]:
    raise ValueError(f'model.{key}: expected one of {_CHOICES[key]}, got '
                     f'{value!r}')
  return value


@dataclasses.dataclass(frozen=True)
class L2AOptions:
  """The validated, static settings of one L2A model (from `config.model`).

  Derived fields: `key_dim` (width of an LPA record), `uses_keys` (whether
  a separate LPA key buffer exists), `values_from_keys` (HPA values are the
  LPA records, else the raw records), `num_slots` (history buffer length),
  `block_size` (layers per block summary with history='blocks').
  """
  depth: int
  dim: int
  num_heads: int
  mlp_hidden: int
  dim_rep: int
  num_frames: int
  num_joints: int
  dim_in: int
  dim_out: int
  dtype: Dtype
  param_dtype: Dtype
  scan_layers: bool
  remat: str
  history_vjp: str
  drop_path: float
  layer_scale_init: float
  init: str
  backbone: str
  fusion: str
  shared_mlp: bool
  pos_embed: str
  hpa_mode: str
  hpa_weights: str
  static_normalise: bool
  history: str
  last_k: int
  num_blocks: int
  value: str
  temperature: str
  gain_init: float
  include_embedding: bool
  lpa_mode: str
  lpa_pool: str
  lpa_dim: int
  lpa_shared: bool

  @classmethod
  def from_config(cls, cfg: ml_collections.ConfigDict) -> L2AOptions:
    """Validates `config.model` (one-line errors naming the field)."""
    hpa, lpa = cfg.hpa, cfg.lpa
    layers.validate_model_config(cfg)
    options = cls(
        depth=int(cfg.depth), dim=int(cfg.dim), num_heads=int(cfg.num_heads),
        mlp_hidden=int(cfg.dim * cfg.mlp_ratio), dim_rep=int(cfg.dim_rep),
        num_frames=int(cfg.num_frames), num_joints=int(cfg.num_joints),
        dim_in=int(cfg.dim_in), dim_out=int(cfg.dim_out),
        dtype=layers.canonical_dtype(cfg.dtype),
        param_dtype=layers.canonical_dtype(cfg.param_dtype),
        scan_layers=bool(cfg.scan_layers), remat=cfg.remat,
        history_vjp=_choice('history_vjp', cfg.history_vjp),
        drop_path=float(cfg.drop_path),
        layer_scale_init=float(cfg.layer_scale_init),
        init=_choice('init', cfg.init),
        backbone=_choice('backbone', cfg.backbone),
        fusion=_choice('fusion', cfg.fusion),
        shared_mlp=bool(cfg.shared_mlp),
        pos_embed=_choice('pos_embed', cfg.pos_embed),
        hpa_mode=_choice('hpa.mode', hpa.mode),
        hpa_weights=_choice('hpa.weights', hpa.weights),
        static_normalise=bool(hpa.static_normalise),
        history=_choice('hpa.history', hpa.history),
        last_k=int(hpa.last_k), num_blocks=int(hpa.num_blocks),
        value=_choice('hpa.value', hpa.value),
        temperature=_choice('hpa.temperature', hpa.temperature),
        gain_init=float(hpa.gain_init),
        include_embedding=bool(hpa.include_embedding),
        lpa_mode=_choice('lpa.mode', lpa.mode),
        lpa_pool=_choice('lpa.pool', lpa.pool),
        lpa_dim=int(lpa.dim) or int(cfg.dim), lpa_shared=bool(lpa.shared))
    if options.mlp_hidden < 1:
      raise ValueError(f'model.mlp_ratio: expected > 0, got {cfg.mlp_ratio}')
    if options.fusion == 'channel_split':
      if options.backbone != 'parallel':
        raise ValueError("model.fusion='channel_split' needs "
                         "model.backbone='parallel', got "
                         f'{options.backbone!r}')
      if options.num_heads % 2:
        raise ValueError("model.fusion='channel_split' splits the heads in "
                         'two halves: model.num_heads must be even, got '
                         f'{options.num_heads}')
    if options.last_k < 1 or options.num_blocks < 1:
      raise ValueError('model.hpa.last_k and model.hpa.num_blocks: expected '
                       f'>= 1, got {options.last_k}, {options.num_blocks}')
    if options.lpa_dim < 1 or int(lpa.dim) < 0:
      raise ValueError(f'model.lpa.dim: expected >= 0, got {lpa.dim}')
    if (options.lpa_mode == 'pool' and options.lpa_pool == 'part' and
        options.num_joints != len(PART_OF_JOINT)):
      raise ValueError("model.lpa.pool='part' uses the 17-joint Human3.6M "
                       f'body parts, got model.num_joints={options.num_joints}')
    if options.hpa_mode == 'replace' and not options.include_embedding:
      raise ValueError("model.hpa.mode='replace' builds the first layer's "
                       'input from the embedding: model.hpa.include_embedding '
                       'must be True')
    return options

  @property
  def key_dim(self) -> int:
    """Channels of an LPA record k_i."""
    return self.lpa_dim if self.lpa_mode in ('proj', 'pool') else self.dim

  @property
  def uses_keys(self) -> bool:
    """Whether LPA records are computed and kept in a 'keys' buffer."""
    if self.hpa_mode == 'none' or self.lpa_mode == 'identity':
      return False
    return self.hpa_weights != 'static' or self.value == 'lpa'

  @property
  def values_from_keys(self) -> bool:
    """HPA values v_i = k_i (else the raw records h_i, or D_i for H2)."""
    return self.value == 'lpa' and self.uses_keys

  @property
  def value_dim(self) -> int:
    return self.key_dim if self.values_from_keys else self.dim

  @property
  def block_size(self) -> int:
    """Layers per block summary (history='blocks')."""
    return -(-self.depth // self.num_blocks)

  @property
  def num_slots(self) -> int:
    """History buffer length: embedding + one slot per layer or block."""
    if self.history == 'blocks':
      return -(-self.depth // self.block_size) + 1
    return self.depth + 1

  @property
  def compact_shape(self) -> tuple[int, int]:
    """(frames, joints) axes of an LPA record (pooled by lpa.mode='pool')."""
    if self.lpa_mode != 'pool':
      return self.num_frames, self.num_joints
    return {'joint': (1, self.num_joints), 'frame': (self.num_frames, 1),
            'part': (1, len(BODY_PARTS))}[self.lpa_pool]

  @property
  def history_gradient(self) -> str:
    """'custom' | 'autodiff'; block summaries are rewritten: autodiff."""
    return 'autodiff' if self.history == 'blocks' else self.history_vjp

  @property
  def scan_remat(self) -> str:
    """Remat of one scan step; block summaries force per-step remat."""
    if self.history == 'blocks' and self.remat == 'none':
      return 'block'
    return self.remat


def readable_slots(options: L2AOptions, slot_ids, index):
  """Which history slots layer `index` (1-based) reads.

  Args:
    options: the model options.
    slot_ids: [num_slots] int slot numbers (NumPy or jnp).
    index: the reading layer (int or traced int32); depth + 1 for the final
      aggregation of hpa.mode='replace'.

  Returns:
    [num_slots] bool (NumPy for NumPy inputs).
  """
  xp = np if isinstance(slot_ids, np.ndarray) and isinstance(
      index, (int, np.integer)) else jnp
  if options.history == 'blocks':
    # Blocks holding at least one of the layers 1 .. index - 1.
    written = (index - 1 + options.block_size - 1) // options.block_size
    visible = slot_ids <= written
  else:
    visible = slot_ids < index
    if options.history == 'last_k':
      visible = xp.logical_and(visible, slot_ids >= index - options.last_k)
  if not options.include_embedding:
    visible = xp.logical_and(visible, slot_ids >= 1)
  return visible


def pool_tokens(x: jax.Array, pool: str) -> jax.Array:
  """Structured pooling of the frame x joint grid, in float32.

  Args:
    x: [batch, frames, joints, channels].
    pool: 'joint' (temporal mean per joint) | 'frame' (joint mean per
      frame) | 'part' (temporal mean per body part).

  Returns:
    [batch, 1, joints, C] | [batch, frames, 1, C] | [batch, 1, 6, C].
  """
  x = x.astype(jnp.float32)
  if pool == 'joint':
    return jnp.mean(x, axis=1, keepdims=True)
  if pool == 'frame':
    return jnp.mean(x, axis=2, keepdims=True)
  return jnp.einsum('btjc,jp->bpc', x, PART_AVERAGE)[:, None] / x.shape[1]


def expand_to_tokens(x: jax.Array, options: L2AOptions,
                     axis_offset: int = 0) -> jax.Array:
  """Broadcasts a compact (pooled) array back onto the frame x joint grid.

  Args:
    x: [..., t', j', ...] with frames at axis 1 + axis_offset and joints at
      2 + axis_offset, t' in {1, T}, j' in {1, J, 6 parts}.
    options: the model options (pool mode, T, J).
    axis_offset: leading axes before the batch axis.

  Returns:
    x with the frame and joint axes broadcast to (T, J); 6 body parts are
    gathered onto their joints.
  """
  joint_axis = 2 + axis_offset
  if (options.lpa_mode == 'pool' and options.lpa_pool == 'part' and
      x.shape[joint_axis] == len(BODY_PARTS)):
    x = jnp.take(x, PART_OF_JOINT, axis=joint_axis)
  return x


def query_logits(keys: jax.Array, query: jax.Array) -> jax.Array:
  """q . RMSNorm(k) over the last axis, float32 (no learned scale).

  Computed as (q . k) * rsqrt(mean(k^2) + eps): the same value as
  normalising first, but autodiff keeps no normalised copy of k.

  Args:
    keys: [..., d].
    query: [d].

  Returns:
    [...] float32.
  """
  keys = keys.astype(jnp.float32)
  dots = jnp.einsum('...d,d->...', keys, query.astype(jnp.float32))
  mean_square = jnp.mean(jnp.square(keys), axis=-1)
  return dots * jax.lax.rsqrt(mean_square + layers.RMS_NORM_EPS)


def depth_mix(view: history_stack.HistoryView, options: L2AOptions, *,
              query: jax.Array | None, static_logits: jax.Array | None,
              out_proj: layers.Linear | None) -> jax.Array:
  """HPA read: the depth-attention mix of the readable history slots.

  Args:
    view: `history_stack.StackedSlots` or `ListSlots` with buffers 'records'
      (records [S, B, T, J, C]) and, if `options.uses_keys`, 'keys'
      ([S, B, t', j', key_dim]); its mask says which slots are read.
    options: the model options.
    query: [key_dim] pseudo-query (hpa.weights 'token' | 'sample').
    static_logits: [num_slots] logits (hpa.weights 'static').
    out_proj: Linear(key_dim -> C) when the values are narrower than C.

  Returns:
    [B, T, J, C] float32: sum_i a_i v_i over readable slots (zero if none).
  """
  key_name = 'keys' if options.uses_keys else 'records'
  value_name = 'keys' if options.values_from_keys else 'records'
  if options.hpa_weights == 'static':
    logits = jnp.asarray(static_logits, jnp.float32)[view.slot_ids]
    logits = logits.reshape(-1, 1, 1, 1)
  elif options.hpa_weights == 'token':
    logits = view.map(lambda k: query_logits(k, query), key_name)
  else:  # 'sample': one weight per (sample, slot) from the pooled key.
    logits = view.map(
        lambda k: query_logits(
            jnp.mean(k.astype(jnp.float32), axis=(1, 2), keepdims=True),
            query), key_name)
  if options.temperature == 'sqrt_dim' and options.hpa_weights != 'static':
    logits = logits / math.sqrt(options.key_dim)
  mask = view.mask.reshape(-1, 1, 1, 1)
  if options.hpa_weights == 'static' and not options.static_normalise:
    weights = jnp.where(mask, logits, 0.0)
  else:
    weights = jax.nn.softmax(jnp.where(mask, logits, MASKED_LOGIT), axis=0)
    # All slots masked (layer 1 without the embedding): no history, zero.
    weights = jnp.where(mask, weights, 0.0)
  if value_name == 'keys':
    # Mix in the compact space, then project and broadcast (a linear map
    # commutes with the weighted sum: one projection per layer).
    mixed = view.weighted_sum(weights[..., None], 'keys')
  else:
    mixed = view.weighted_sum(
        expand_to_tokens(weights, options, axis_offset=1)[..., None],
        'records')
  if out_proj is not None:
    mixed = out_proj(mixed).astype(jnp.float32)
  mixed = expand_to_tokens(mixed, options)
  batch = mixed.shape[0]
  return jnp.broadcast_to(
      mixed, (batch, options.num_frames, options.num_joints, options.dim))


def _drop_branch(x: jax.Array, drop: tuple[jax.Array, jax.Array] | None,
                 branch: int) -> jax.Array:
  """Stochastic depth of one residual branch.

  Args:
    x: [batch, ...] the branch output.
    drop: (rate, key) of this layer (rate may be traced) or None.
    branch: which of the layer's residual branches (key fold-in).

  Returns:
    x with whole samples zeroed with probability `rate`, rescaled.
  """
  if drop is None:
    return x
  rate, key = drop
  keep = jax.random.bernoulli(jax.random.fold_in(key, branch), 1.0 - rate,
                              (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(keep, x / (1.0 - rate).astype(x.dtype), jnp.zeros_like(x))


class LPA(nnx.Module):
  """Layer Pose History Aggregation: the compact record k_i of h_i.

  'proj' (P1): RMSNorm(h) W [C, d_c]; 'pool' (P2): RMSNorm(pool(h)) W;
  'bottleneck' (P3): W2 GELU(W1 RMSNorm(h)), C -> d_c -> C; 'rmsnorm':
  RMSNorm(h). No biases. ('identity' has no module: the record itself.)
  """

  def __init__(self, options: L2AOptions, *, rngs: nnx.Rngs):
    self.options = options
    kw = dict(init=options.init, dtype=options.dtype,
              param_dtype=options.param_dtype, rngs=rngs)
    dim, dim_c = options.dim, options.lpa_dim
    self.norm = layers.RMSNorm(dim, dtype=options.dtype,
                               param_dtype=options.param_dtype)
    if options.lpa_mode in ('proj', 'pool'):
      self.proj = layers.Linear(dim, dim_c, use_bias=False, **kw)
    elif options.lpa_mode == 'bottleneck':
      self.fc1 = layers.Linear(dim, dim_c, use_bias=False, **kw)
      self.fc2 = layers.Linear(dim_c, dim, use_bias=False, **kw)

  def __call__(self, h: jax.Array) -> jax.Array:
    """[B, T, J, C] -> [B, t', j', key_dim] (compact_shape) compute dtype."""
    mode = self.options.lpa_mode
    if mode == 'pool':
      h = pool_tokens(h, self.options.lpa_pool)
    k = self.norm(h)
    if mode in ('proj', 'pool'):
      k = self.proj(k)
    elif mode == 'bottleneck':
      k = self.fc2(jax.nn.gelu(self.fc1(k), approximate=False))
    return k


class RepLogit(nnx.Module):
  """Pre-head representation: tanh(fc(x)), as the lineage's `rep_logit`."""

  def __init__(self, dim: int, dim_rep: int, *, init: str, dtype: Dtype,
               param_dtype: Dtype, rngs: nnx.Rngs):
    self.fc = layers.Linear(dim, dim_rep, init=init, dtype=dtype,
                            param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """[..., dim] -> [..., dim_rep]."""
    return jnp.tanh(self.fc(x))


class L2ALayer(nnx.Module):
  """One L2A layer: the spatial-temporal backbone layer plus its HPA read
  and the LPA of its own record.

  Attributes by configuration (names mirrored by the PyTorch reference):
  - branches: `norm_s1`, `attn_s`, `ls_s1`, `norm_s2`, `mlp_s`, `ls_s2`
    (spatial) and the same with `_t` (temporal); with shared_mlp the
    per-branch MLPs are replaced by `norm_2`, `mlp`, `ls_2`; `fusion`
    (Linear 2C -> 2 or 2C) for the softmax fusions;
  - fusion='channel_split': `norm_1`, `attn_s`, `attn_t` (C/2 channels,
    num_heads/2 heads each), `ls_1`, `norm_2`, `mlp`, `ls_2`;
  - HPA: `hpa_query` [key_dim] or `hpa_logits` [num_slots], `hpa_out`
    (Linear key_dim -> C, no bias, when the values are narrower than C),
    `hpa_gain` [C] (mode 'add');
  - `lpa`: the LPA of this layer's record (unless lpa.shared).
  """

  def __init__(self, options: L2AOptions, *, rngs: nnx.Rngs):
    self.options = options
    o = options
    dim = o.dim
    kw = dict(init=o.init, dtype=o.dtype, param_dtype=o.param_dtype,
              rngs=rngs)
    norm_kw = dict(dtype=o.dtype, param_dtype=o.param_dtype)

    def scale():
      return layers.layer_scale(dim, o.layer_scale_init, o.param_dtype)

    if o.fusion == 'channel_split':
      half, half_heads = dim // 2, o.num_heads // 2
      self.norm_1 = layers.LayerNorm(dim, **norm_kw)
      self.attn_s = layers.Attention(half, half_heads, 'spatial', **kw)
      self.attn_t = layers.Attention(dim - half, half_heads, 'temporal', **kw)
      self.ls_1 = scale()
      self.norm_2 = layers.LayerNorm(dim, **norm_kw)
      self.mlp = layers.MLP(dim, o.mlp_hidden, **kw)
      self.ls_2 = scale()
    else:
      self.norm_s1 = layers.LayerNorm(dim, **norm_kw)
      self.attn_s = layers.Attention(dim, o.num_heads, 'spatial', **kw)
      self.ls_s1 = scale()
      if not o.shared_mlp:
        self.norm_s2 = layers.LayerNorm(dim, **norm_kw)
        self.mlp_s = layers.MLP(dim, o.mlp_hidden, **kw)
        self.ls_s2 = scale()
      self.norm_t1 = layers.LayerNorm(dim, **norm_kw)
      self.attn_t = layers.Attention(dim, o.num_heads, 'temporal', **kw)
      self.ls_t1 = scale()
      if not o.shared_mlp:
        self.norm_t2 = layers.LayerNorm(dim, **norm_kw)
        self.mlp_t = layers.MLP(dim, o.mlp_hidden, **kw)
        self.ls_t2 = scale()
      if o.backbone == 'parallel' and o.fusion != 'mean':
        width = 2 if o.fusion == 'token_softmax' else 2 * dim
        self.fusion = layers.Linear(2 * dim, width, **kw)
        # Weight 0, bias 0.5: every token starts as the plain mean of s, t.
        self.fusion.kernel[...] = jnp.zeros((2 * dim, width), o.param_dtype)
        self.fusion.bias[...] = jnp.full((width,), 0.5, o.param_dtype)
      if o.shared_mlp:
        self.norm_2 = layers.LayerNorm(dim, **norm_kw)
        self.mlp = layers.MLP(dim, o.mlp_hidden, **kw)
        self.ls_2 = scale()

    if o.hpa_mode != 'none':
      if o.hpa_weights == 'static':
        # Zero logits: uniform weights over the readable slots (normalised)
        # or no history contribution at all (unnormalised).
        self.hpa_logits = nnx.Param(jnp.zeros((o.num_slots,), o.param_dtype))
      else:
        # Zero pseudo-query: uniform depth attention at initialisation.
        self.hpa_query = nnx.Param(jnp.zeros((o.key_dim,), o.param_dtype))
      if o.value_dim != dim:
        self.hpa_out = layers.Linear(o.value_dim, dim, use_bias=False, **kw)
      if o.hpa_mode == 'add':
        self.hpa_gain = nnx.Param(jnp.full((dim,), o.gain_init,
                                           o.param_dtype))
    if o.uses_keys and not o.lpa_shared:
      self.lpa = LPA(o, rngs=rngs)

  def _residual(self, x: jax.Array, branch_out: jax.Array, scale: nnx.Param,
                drop, branch: int) -> jax.Array:
    return x + _drop_branch(branch_out * scale[...].astype(x.dtype), drop,
                            branch)

  def _fuse(self, s: jax.Array, t: jax.Array) -> jax.Array:
    """Adaptive fusion of the two branches, weights in float32."""
    dtype = self.options.dtype
    if self.options.fusion == 'mean':
      return ((s.astype(jnp.float32) + t.astype(jnp.float32)) *
              0.5).astype(dtype)
    logits = self.fusion(jnp.concatenate([s, t], axis=-1)).astype(
        jnp.float32)
    if self.options.fusion == 'token_softmax':
      alpha = layers.softmax(logits)  # [..., 2]
      alpha_s, alpha_t = alpha[..., 0:1], alpha[..., 1:2]
    else:  # channel_softmax: units [0, C) weigh s, [C, 2C) weigh t.
      alpha = jax.nn.softmax(
          logits.reshape(*logits.shape[:-1], 2, self.options.dim), axis=-2)
      alpha_s, alpha_t = alpha[..., 0, :], alpha[..., 1, :]
    return (alpha_s * s.astype(jnp.float32) +
            alpha_t * t.astype(jnp.float32)).astype(dtype)

  def backbone(self, x: jax.Array, drop=None) -> jax.Array:
    """The spatial-temporal layer without history.

    Args:
      x: [B, T, J, C] compute dtype (the layer input).
      drop: (rate, key) for drop path, or None.

    Returns:
      o: [B, T, J, C] compute dtype.
    """
    o = self.options
    res = self._residual
    if o.fusion == 'channel_split':
      y = self.norm_1(x)
      half = o.dim // 2
      mixed = jnp.concatenate(
          [self.attn_s(y[..., :half]), self.attn_t(y[..., half:])], axis=-1)
      x = res(x, mixed, self.ls_1, drop, 0)
      return res(x, self.mlp(self.norm_2(x)), self.ls_2, drop, 1)
    if o.backbone == 'sequential':
      x = res(x, self.attn_s(self.norm_s1(x)), self.ls_s1, drop, 0)
      if not o.shared_mlp:
        x = res(x, self.mlp_s(self.norm_s2(x)), self.ls_s2, drop, 1)
      x = res(x, self.attn_t(self.norm_t1(x)), self.ls_t1, drop, 2)
      if not o.shared_mlp:
        return res(x, self.mlp_t(self.norm_t2(x)), self.ls_t2, drop, 3)
      return res(x, self.mlp(self.norm_2(x)), self.ls_2, drop, 1)
    s = res(x, self.attn_s(self.norm_s1(x)), self.ls_s1, drop, 0)
    t = res(x, self.attn_t(self.norm_t1(x)), self.ls_t1, drop, 2)
    if not o.shared_mlp:
      s = res(s, self.mlp_s(self.norm_s2(s)), self.ls_s2, drop, 1)
      t = res(t, self.mlp_t(self.norm_t2(t)), self.ls_t2, drop, 3)
      return self._fuse(s, t)
    y = self._fuse(s, t)
    return res(y, self.mlp(self.norm_2(y)), self.ls_2, drop, 1)

  def history_mix(self, view: history_stack.HistoryView) -> jax.Array:
    """This layer's HPA read of `view`: [B, T, J, C] float32."""
    o = self.options
    return depth_mix(
        view, o,
        query=self.hpa_query[...] if o.hpa_weights != 'static' else None,
        static_logits=(self.hpa_logits[...] if o.hpa_weights == 'static'
                       else None),
        out_proj=self.hpa_out if o.value_dim != o.dim else None)

  def __call__(self, hidden: jax.Array | None,
               view: history_stack.HistoryView, lpa: LPA | None,
               drop=None) -> tuple[jax.Array, jax.Array | None]:
    """Applies the layer and computes its history record.

    Args:
      hidden: [B, T, J, C] the previous layer's output h_{l-1} (modes 'add'
        and 'none'); None for 'replace', whose input is mixed from history.
      view: the readable history (`history_stack.StackedSlots` or
        `ListSlots`).
      lpa: the LPA module owning this layer's record (the layer's own or the
        shared one), or None without keys.
      drop: (rate, key) for drop path, or None.

    Returns:
      record: [B, T, J, C] compute dtype: h_l ('add', 'none') or the delta
        D_l = o_l - x_l ('replace').
      key: [B, t', j', key_dim] the LPA record of `record`, or None.
    """
    o = self.options
    if o.hpa_mode == 'replace':
      hidden = self.history_mix(view).astype(o.dtype)
    out = self.backbone(hidden, drop)
    if o.hpa_mode == 'add':
      gain = self.hpa_gain[...].astype(jnp.float32)
      record = (out.astype(jnp.float32) +
                gain * self.history_mix(view)).astype(o.dtype)
    elif o.hpa_mode == 'replace':
      record = out - hidden
    else:
      record = out
    key = lpa(record) if lpa is not None else None
    return record, key


def _stacked_layers(options: L2AOptions, rngs: nnx.Rngs) -> L2ALayer:
  """`depth` independently initialised layers, every leaf [depth, ...]."""

  @nnx.split_rngs(splits=options.depth)
  @nnx.vmap(in_axes=(0,), out_axes=0)
  def build(layer_rngs):
    return L2ALayer(options, rngs=layer_rngs)

  return build(rngs)


def _block_update(options: L2AOptions, old: jax.Array, new: jax.Array,
                  position) -> jax.Array:
  """Running block summary: sum of deltas ('replace', Block AttnRes) or
  mean of outputs ('add'/'none'); `position` = layers already in the block.
  """
  if options.hpa_mode == 'replace':
    return old + new
  position = jnp.asarray(position, jnp.float32)
  total = old.astype(jnp.float32) * position + new.astype(jnp.float32)
  return (total / (position + 1.0)).astype(old.dtype)


class L2A(nnx.Module):
  """L2A lifting model: [B, T, J, dim_in] 2D keypoints -> [B, T, J, 3].

  Submodules: `joints_embed`, `spatial_pos_embed` [J, C],
  `temporal_pos_embed` [T, C], `lpa_embed` (LPA of the embedding, slot 0)
  or `lpa` (one LPA shared by all slots), `layers` (stacked L2ALayer),
  `final_hpa_query` / `final_hpa_logits` / `final_hpa_out` (hpa.mode
  'replace': the aggregation feeding the head), `norm`, `rep_logit`,
  `head`.
  """

  # Submodules whose parameters carry a leading layer axis (stacking.py).
  STACKED_MODULES = ('layers',)

  def __init__(self, model_config: ml_collections.ConfigDict, *,
               rngs: nnx.Rngs):
    """Builds the model from a `config.model` section (l2a_h36m.py).

    Args:
      model_config: the `config.model` section (every field documented in
        configs/l2a_h36m.py).
      rngs: NNX RNG streams; `params` initialises the weights.
    """
    o = L2AOptions.from_config(model_config)
    self.options = o
    dim = o.dim
    kw = dict(init=o.init, dtype=o.dtype, param_dtype=o.param_dtype,
              rngs=rngs)
    self.joints_embed = layers.Linear(o.dim_in, dim, **kw)
    pos_init = layers.trunc_normal_init(0.02)
    if o.pos_embed in ('spatial', 'spatial_temporal'):
      self.spatial_pos_embed = nnx.Param(
          pos_init(rngs.params(), (o.num_joints, dim), o.param_dtype))
    if o.pos_embed == 'spatial_temporal':
      self.temporal_pos_embed = nnx.Param(
          pos_init(rngs.params(), (o.num_frames, dim), o.param_dtype))
    if o.uses_keys:
      if o.lpa_shared:
        self.lpa = LPA(o, rngs=rngs)
      else:
        self.lpa_embed = LPA(o, rngs=rngs)
    self.layers = _stacked_layers(o, rngs)
    if o.hpa_mode == 'replace':
      if o.hpa_weights == 'static':
        self.final_hpa_logits = nnx.Param(
            jnp.zeros((o.num_slots,), o.param_dtype))
      else:
        self.final_hpa_query = nnx.Param(
            jnp.zeros((o.key_dim,), o.param_dtype))
      if o.value_dim != dim:
        self.final_hpa_out = layers.Linear(o.value_dim, dim, use_bias=False,
                                           **kw)
    self.norm = layers.LayerNorm(dim, dtype=o.dtype,
                                 param_dtype=o.param_dtype)
    self.rep_logit = RepLogit(dim, o.dim_rep, **kw)
    self.head = layers.Linear(o.dim_rep, o.dim_out, **kw)

  # -- pieces -------------------------------------------------------------

  def embed(self, x: jax.Array) -> jax.Array:
    """[B, T, J, dim_in] -> z0 [B, T, J, C] compute dtype."""
    o = self.options
    z = self.joints_embed(x)
    if o.pos_embed in ('spatial', 'spatial_temporal'):
      z = z + self.spatial_pos_embed[...].astype(o.dtype)
    if o.pos_embed == 'spatial_temporal':
      z = z + self.temporal_pos_embed[...].astype(o.dtype)[:, None]
    return z

  def _final_mix(self, view: history_stack.HistoryView) -> jax.Array:
    """hpa.mode='replace': the head input, mixed from the whole history."""
    o = self.options
    return depth_mix(
        view, o,
        query=(self.final_hpa_query[...] if o.hpa_weights != 'static'
               else None),
        static_logits=(self.final_hpa_logits[...]
                       if o.hpa_weights == 'static' else None),
        out_proj=self.final_hpa_out if o.value_dim != o.dim else None
    ).astype(o.dtype)

  def _layer_inputs(self, dropout_rng: jax.Array | None):
    """Per-layer scan inputs: (drop rates [L], keys [L]) or None."""
    o = self.options
    if dropout_rng is None or o.drop_path == 0.0:
      return None
    # Linearly increasing rates, as the lineage's torch.linspace(0, p, L).
    rates = jnp.linspace(0.0, o.drop_path, o.depth, dtype=jnp.float32)
    return rates, jax.random.split(dropout_rng, o.depth)

  def _layer_fn(self, layer_def, shared_def):
    """The pure function of one layer over (params, shared, inputs, view).

    Returns:
      fn(layer_params, shared_params, layer_inputs, hidden, view)
        -> (record, key); shared_params are the shared LPA's (or None).
    """
    o = self.options

    def apply(layer_params, shared_params, layer_inputs, hidden, view):
      layer = nnx.merge(layer_def, layer_params)
      if not o.uses_keys:
        lpa = None
      elif o.lpa_shared:
        lpa = nnx.merge(shared_def, shared_params)
      else:
        lpa = layer.lpa
      return layer(hidden, view, lpa, layer_inputs)

    return apply

  # -- the two stack paths -------------------------------------------------

  def _run_scanned(self, first: dict[str, jax.Array], layer_inputs):
    """Scans the stacked layers; returns the head input [B, T, J, C]."""
    o = self.options
    layer_def, layer_state = nnx.split(self.layers)
    shared_def, shared_state = (nnx.split(self.lpa) if o.uses_keys and
                                o.lpa_shared else (None, None))
    apply = self._layer_fn(layer_def, shared_def)
    slot_ids = np.arange(o.num_slots)
    buffers = {
        name: jnp.zeros((o.num_slots,) + value.shape, value.dtype).at[0].set(
            value) for name, value in first.items()
    }
    remat = layers.remat_wrapper(o.scan_remat, prevent_cse=False)

    if o.history != 'blocks':
      def layer_fn(layer_params, shared_params, inputs, index, bufs):
        view = history_stack.StackedSlots(
            bufs, readable_slots(o, slot_ids, index))
        hidden = (None if o.hpa_mode == 'replace'
                  else view.slot('records', index - 1))
        record, key = apply(layer_params, shared_params, inputs, hidden, view)
        return {'records': record, 'keys': key} if o.uses_keys else {
            'records': record}

      final = history_stack.scan_write_once(
          layer_fn, layer_state, shared_state, layer_inputs, buffers,
          gradient=o.history_gradient, remat=remat)
      hidden = final['records'][o.depth]
    else:
      def block_step(layer_params, shared_params, inputs, index, carry):
        hidden, bufs = carry
        view = history_stack.StackedSlots(
            bufs, readable_slots(o, slot_ids, index))
        record, key = apply(layer_params, shared_params, inputs, hidden, view)
        block = (index - 1) // o.block_size + 1
        position = (index - 1) % o.block_size
        old = history_stack.read_slots(bufs, block)
        new = {'records': record, 'keys': key} if o.uses_keys else {
            'records': record}
        summary = {name: _block_update(o, old[name], new[name], position)
                   for name in bufs}
        bufs = history_stack.write_slots(bufs, block, summary)
        return (record if o.hpa_mode != 'replace' else hidden), bufs

      hidden, final = history_stack.scan_carry(
          block_step, layer_state, shared_state, layer_inputs,
          (first['records'], buffers), remat=remat)
    if o.hpa_mode == 'replace':
      view = history_stack.StackedSlots(
          final, readable_slots(o, slot_ids, o.depth + 1))
      hidden = self._final_mix(view)
    return hidden

  def _run_unrolled(self, first: dict[str, jax.Array], layer_inputs):
    """The reference: a Python loop over per-layer slices of the same
    stacked parameters, the history a Python list; returns the head input.
    """
    o = self.options
    layer_def, layer_state = nnx.split(self.layers)
    shared_def, shared_state = (nnx.split(self.lpa) if o.uses_keys and
                                o.lpa_shared else (None, None))
    apply = layers.remat_wrapper(o.remat)(self._layer_fn(layer_def,
                                                         shared_def))
    history = {name: [value] for name, value in first.items()}
    hidden = first['records']
    for i in range(o.depth):
      index = i + 1
      num_slots = len(history['records'])
      view = history_stack.ListSlots(
          history, jnp.asarray(readable_slots(o, np.arange(num_slots),
                                              index)))
      record, key = apply(
          jax.tree.map(lambda a, i=i: a[i], layer_state), shared_state,
          jax.tree.map(lambda a, i=i: a[i], layer_inputs),
          None if o.hpa_mode == 'replace' else hidden, view)
      new = {'records': record, 'keys': key} if o.uses_keys else {
          'records': record}
      if o.history == 'blocks':
        block = i // o.block_size + 1
        position = i % o.block_size
        for name, value in new.items():
          if block == len(history[name]):
            history[name] = history[name] + [value]
          else:
            updated = _block_update(o, history[name][block], value, position)
            history[name] = (history[name][:block] + [updated] +
                             history[name][block + 1:])
      else:
        history = {name: history[name] + [value]
                   for name, value in new.items()}
      hidden = record
    if o.hpa_mode == 'replace':
      num_slots = len(history['records'])
      view = history_stack.ListSlots(
          history, jnp.asarray(readable_slots(o, np.arange(num_slots),
                                              o.depth + 1)))
      hidden = self._final_mix(view)
    return hidden

  def __call__(self, x: jax.Array, *,
               dropout_rng: jax.Array | None = None) -> jax.Array:
    """Lifts 2D keypoint sequences to 3D.

    Args:
      x: [batch, frames, joints, dim_in] float32 (x, y, confidence).
      dropout_rng: a key enabling drop path (when `model.drop_path > 0`),
        or None for deterministic behaviour.

    Returns:
      [batch, frames, joints, dim_out] float32.
    """
    o = self.options
    if (x.ndim != 4 or x.shape[2] != o.num_joints or x.shape[3] != o.dim_in
        or x.shape[1] != o.num_frames):
      raise ValueError(
          f'L2A input: expected [batch, {o.num_frames}, {o.num_joints}, '
          f'{o.dim_in}] (model.num_frames, num_joints, dim_in), got '
          f'{tuple(x.shape)}')
    z0 = self.embed(x)
    first = {'records': z0}
    if o.uses_keys:
      first['keys'] = (self.lpa if o.lpa_shared else self.lpa_embed)(z0)
    layer_inputs = self._layer_inputs(dropout_rng)
    if o.scan_layers:
      hidden = self._run_scanned(first, layer_inputs)
    else:
      hidden = self._run_unrolled(first, layer_inputs)
    out = self.head(self.rep_logit(self.norm(hidden)))
    return out.astype(jnp.float32)
