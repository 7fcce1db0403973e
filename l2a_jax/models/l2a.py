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

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from l2a_jax.models import history_stack
from l2a_jax.models import hpa_lpa
from l2a_jax.models import l2a_options
from l2a_jax.models import layers

Dtype = jnp.dtype


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

  def __init__(self, options: l2a_options.L2AOptions, *, rngs: nnx.Rngs):
    self.options = options
    o = options
    dim = o.dim
    kw = dict(init=o.init, dtype=o.dtype, param_dtype=o.param_dtype,
              rngs=rngs)
    norm_kw = dict(dtype=o.dtype, param_dtype=o.param_dtype)
    attention_kw = dict(impl=o.attention_impl, **kw)

    def scale():
      return layers.layer_scale(dim, o.layer_scale_init, o.param_dtype)

    if o.fusion == 'channel_split':
      half, half_heads = dim // 2, o.num_heads // 2
      self.norm_1 = layers.LayerNorm(dim, **norm_kw)
      self.attn_s = layers.Attention(half, half_heads, 'spatial',
                                     **attention_kw)
      self.attn_t = layers.Attention(dim - half, half_heads, 'temporal',
                                     **attention_kw)
      self.ls_1 = scale()
      self.norm_2 = layers.LayerNorm(dim, **norm_kw)
      self.mlp = layers.MLP(dim, o.mlp_hidden, **kw)
      self.ls_2 = scale()
    else:
      self.norm_s1 = layers.LayerNorm(dim, **norm_kw)
      self.attn_s = layers.Attention(dim, o.num_heads, 'spatial',
                                     **attention_kw)
      self.ls_s1 = scale()
      if not o.shared_mlp:
        self.norm_s2 = layers.LayerNorm(dim, **norm_kw)
        self.mlp_s = layers.MLP(dim, o.mlp_hidden, **kw)
        self.ls_s2 = scale()
      self.norm_t1 = layers.LayerNorm(dim, **norm_kw)
      self.attn_t = layers.Attention(dim, o.num_heads, 'temporal',
                                     **attention_kw)
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
      self.lpa = hpa_lpa.LPA(o, rngs=rngs)

  def _residual(self, x: jax.Array, branch_out: jax.Array, scale: nnx.Param,
                drop, branch: int) -> jax.Array:
    """x + scale * branch_out, the residual stream x in float32."""
    return layers.scaled_residual(x, _drop_branch(branch_out, drop, branch),
                                  scale[...])

  def _fuse(self, s: jax.Array, t: jax.Array) -> jax.Array:
    """Adaptive fusion of the two branches (float32 streams and weights)."""
    if self.options.fusion == 'mean':
      return (s.astype(jnp.float32) + t.astype(jnp.float32)) * 0.5
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
            alpha_t * t.astype(jnp.float32))

  def backbone(self, x: jax.Array, drop=None) -> jax.Array:
    """The spatial-temporal layer without history.

    Args:
      x: [B, T, J, C] float32 (the layer input, the residual stream).
      drop: (rate, key) for drop path, or None.

    Returns:
      o: [B, T, J, C] float32.
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
    return hpa_lpa.depth_mix(
        view, o,
        query=self.hpa_query[...] if o.hpa_weights != 'static' else None,
        static_logits=(self.hpa_logits[...] if o.hpa_weights == 'static'
                       else None),
        out_proj=self.hpa_out if o.value_dim != o.dim else None)

  def __call__(self, hidden: jax.Array | None,
               view: history_stack.HistoryView, lpa: hpa_lpa.LPA | None,
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
      record: [B, T, J, C] float32 (the residual stream): h_l ('add',
        'none') or the delta D_l = o_l - x_l ('replace').
      key: [B, t', j', key_dim] the LPA record of `record`, or None.
    """
    o = self.options
    if o.hpa_mode == 'replace':
      hidden = self.history_mix(view)
    out = self.backbone(hidden.astype(jnp.float32), drop)
    if o.hpa_mode == 'add':
      gain = self.hpa_gain[...].astype(jnp.float32)
      record = out + gain * self.history_mix(view)
    elif o.hpa_mode == 'replace':
      record = out - hidden
    else:
      record = out
    key = lpa(record) if lpa is not None else None
    return record, key


def _stacked_layers(options: l2a_options.L2AOptions,
                    rngs: nnx.Rngs) -> L2ALayer:
  """`depth` independently initialised layers, every leaf [depth, ...]."""

  @nnx.split_rngs(splits=options.depth)
  @nnx.vmap(in_axes=(0,), out_axes=0)
  def build(layer_rngs):
    return L2ALayer(options, rngs=layer_rngs)

  return build(rngs)


def _block_update(options: l2a_options.L2AOptions, old: jax.Array,
                  new: jax.Array, position) -> jax.Array:
  """Running block summary: sum of deltas ('replace', Block AttnRes) or
  mean of outputs ('add'/'none'); `position` = layers already in the block.
  """
  if options.hpa_mode == 'replace':
    return old + new
  position = jnp.asarray(position, jnp.float32)
  total = old.astype(jnp.float32) * position + new.astype(jnp.float32)
  return (total / (position + 1.0)).astype(old.dtype)


def normalise_input(x: jax.Array, root_joint: int
                    ) -> tuple[jax.Array, jax.Array]:
  """model.input_norm='root_scale': a frame's 2D relative to its root, unit size.

  Args:
    x: [B, T, J, C] with (x, y) in channels 0-1 (confidence etc. after).
    root_joint: index of the root joint.

  Returns:
    (x', scale): x' [B, T, J, C] with (x, y) minus the root's, divided by
    scale [B, T, 1, 1] = the RMS distance of the joints from the root (the
    2D size of the pose; 1e-6 floor); other channels unchanged. A model
    whose output is multiplied by `scale` is scale-equivariant: 2D twice as
    large gives a 3D pose twice as large, as image-space (2.5D) targets are.
  """
  xy = x[..., :2].astype(jnp.float32)
  xy = xy - xy[:, :, root_joint:root_joint + 1]
  scale = jnp.sqrt(jnp.mean(jnp.sum(xy * xy, -1, keepdims=True), axis=2,
                            keepdims=True))
  scale = jax.lax.stop_gradient(jnp.maximum(scale, 1e-6))
  x = jnp.concatenate([(xy / scale).astype(x.dtype), x[..., 2:]], -1)
  return x, scale


class L2A(nnx.Module):
  """L2A lifting model: [B, T, J, dim_in] 2D keypoints -> [B, T, J, 3].

  Submodules: `joints_embed`, `frame_embed` (joint_embed 'frame':
  [J * dim_in] -> [J * C]), `spatial_pos_embed` [J, C],
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
    o = l2a_options.L2AOptions.from_config(model_config)
    self.options = o
    dim = o.dim
    kw = dict(init=o.init, dtype=o.dtype, param_dtype=o.param_dtype,
              rngs=rngs)
    self.joints_embed = layers.Linear(o.dim_in, dim, **kw)
    if o.joint_embed == 'frame':
      self.frame_embed = layers.Linear(o.num_joints * o.dim_in,
                                       o.num_joints * dim, use_bias=False,
                                       **kw)
    pos_init = layers.trunc_normal_init(0.02)
    if o.pos_embed in ('spatial', 'spatial_temporal'):
      self.spatial_pos_embed = nnx.Param(
          pos_init(rngs.params(), (o.num_joints, dim), o.param_dtype))
    if o.pos_embed == 'spatial_temporal':
      self.temporal_pos_embed = nnx.Param(
          pos_init(rngs.params(), (o.num_frames, dim), o.param_dtype))
    if o.uses_keys:
      if o.lpa_shared:
        self.lpa = hpa_lpa.LPA(o, rngs=rngs)
      else:
        self.lpa_embed = hpa_lpa.LPA(o, rngs=rngs)
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
    """[B, T, J, dim_in] -> z0 [B, T, J, C] float32 (the residual stream)."""
    o = self.options
    f32 = jnp.float32
    z = self.joints_embed(x).astype(f32)
    if o.joint_embed == 'frame':
      # Token (t, j) += W_j . (all joints of frame t): [B, T, J * C].
      b, t, j, c = x.shape
      frame = self.frame_embed(x.reshape(b, t, j * c)).astype(f32)
      z = z + frame.reshape(b, t, j, -1)
    if o.pos_embed in ('spatial', 'spatial_temporal'):
      z = z + self.spatial_pos_embed[...].astype(f32)
    if o.pos_embed == 'spatial_temporal':
      z = z + self.temporal_pos_embed[...].astype(f32)[:, None]
    return z

  def _final_mix(self, view: history_stack.HistoryView) -> jax.Array:
    """hpa.mode='replace': the head input, mixed from the whole history."""
    o = self.options
    return hpa_lpa.depth_mix(
        view, o,
        query=(self.final_hpa_query[...] if o.hpa_weights != 'static'
               else None),
        static_logits=(self.final_hpa_logits[...]
                       if o.hpa_weights == 'static' else None),
        out_proj=self.final_hpa_out if o.value_dim != o.dim else None)

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
      def layer_fn(layer_params, shared_params, inputs, index, history,
                   previous):
        view = history_stack.StackedSlots(
            history, hpa_lpa.readable_slots(o, slot_ids, index))
        hidden = None if o.hpa_mode == 'replace' else previous['records']
        record, key = apply(layer_params, shared_params, inputs, hidden, view)
        return {'records': record, 'keys': key} if o.uses_keys else {
            'records': record}

      # The wide records are history only where depth_mix reads them; by
      # default it reads the compact keys, and the records only at l - 1.
      final = history_stack.scan_write_once(
          layer_fn, layer_state, shared_state, layer_inputs, buffers,
          gradient=o.history_gradient, remat=remat,
          history_reads=hpa_lpa.history_buffers_read(o))
      hidden = final['records'][o.depth]
    else:
      def block_step(layer_params, shared_params, inputs, index, carry):
        hidden, bufs = carry
        view = history_stack.StackedSlots(
            bufs, hpa_lpa.readable_slots(o, slot_ids, index))
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
          final, hpa_lpa.readable_slots(o, slot_ids, o.depth + 1))
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
          history, jnp.asarray(hpa_lpa.readable_slots(o, np.arange(num_slots),
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
          history, jnp.asarray(hpa_lpa.readable_slots(o, np.arange(num_slots),
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
    if o.input_norm == 'root_scale':
      x, scale = normalise_input(x, o.root_joint)
    z0 = self.embed(x)
    first = {'records': z0}
    if o.uses_keys:
      first['keys'] = (self.lpa if o.lpa_shared else self.lpa_embed)(z0)
    layer_inputs = self._layer_inputs(dropout_rng)
    if o.scan_layers:
      hidden = self._run_scanned(first, layer_inputs)
    else:
      hidden = self._run_unrolled(first, layer_inputs)
    out = self.head(self.rep_logit(self.norm(hidden))).astype(jnp.float32)
    if o.input_norm == 'root_scale':
      out = out * scale
    return out
