"""L2A's history math: HPA (depth attention over the history) and LPA.

- `readable_slots`: which history slots a layer reads (all earlier layers,
  the last k, or block summaries; with or without the embedding slot);
- `depth_mix`: the HPA read, a softmax over the readable slots of
  q . RMSNorm(k_i) (per token, per sample or static logits) mixing the
  records or their LPA keys;
- `LPA`: the compact record k_i of a layer output (projection, pooling,
  bottleneck or RMSNorm), with `pool_tokens` / `expand_to_tokens` for the
  pooled variants.

Pure functions of `l2a_options.L2AOptions` and the history views of
`history_stack`; the layer and the stack that use them are in `l2a.py`.
"""

from __future__ import annotations

import math

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from l2a_jax.models import history_stack
from l2a_jax.models import layers
from l2a_jax.models import l2a_options

# Masked depth logits: a large finite negative (not -inf, whose arithmetic
# yields NaN when a whole row is masked).
MASKED_LOGIT = -1e30


def readable_slots(options: l2a_options.L2AOptions, slot_ids, index):
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
  return (jnp.einsum('btjc,jp->bpc', x, l2a_options.PART_AVERAGE)[:, None]
          / x.shape[1])


def expand_to_tokens(x: jax.Array, options: l2a_options.L2AOptions,
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
      x.shape[joint_axis] == len(l2a_options.BODY_PARTS)):
    x = jnp.take(x, l2a_options.PART_OF_JOINT, axis=joint_axis)
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


def history_buffers_read(options: l2a_options.L2AOptions) -> frozenset[str]:
  """The history buffers `depth_mix` reads at earlier slots.

  'keys' or 'records' for the logits (none with static weights) and for the
  values; nothing with hpa.mode='none'. Any other buffer a layer needs only
  at slot l - 1 (the records of mode 'add' / 'none': its input h_{l-1}).
  """
  if options.hpa_mode == 'none':
    return frozenset()
  names = {'keys' if options.values_from_keys else 'records'}
  if options.hpa_weights != 'static':
    names.add('keys' if options.uses_keys else 'records')
  return frozenset(names)


def depth_mix(view: history_stack.HistoryView,
              options: l2a_options.L2AOptions, *,
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


class LPA(nnx.Module):
  """Layer Pose History Aggregation: the compact record k_i of h_i.

  'proj' (P1): RMSNorm(h) W [C, d_c]; 'pool' (P2): RMSNorm(pool(h)) W;
  'bottleneck' (P3): W2 GELU(W1 RMSNorm(h)), C -> d_c -> C; 'rmsnorm':
  RMSNorm(h). No biases. ('identity' has no module: the record itself.)
  """

  def __init__(self, options: l2a_options.L2AOptions, *, rngs: nnx.Rngs):
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
      k = self.fc2(layers.gelu(self.fc1(k)))
    return k
