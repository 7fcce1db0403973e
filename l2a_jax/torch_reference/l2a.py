"""PyTorch reference of our L2A reconstruction (the twin of models/l2a.py,
hpa_lpa.py and l2a_options.py).

The same design and every `config.model` switch as the JAX model
(l2a_design.md; configs/l2a_h36m.py documents the fields), written the plain
PyTorch way: one `L2ALayer` per layer in an `nn.ModuleList` and the layer
history kept as Python lists. Parameter names follow the naming rule of
docs/architecture.md, so a JAX checkpoint converts by name:
`layers.{i}.attn_s.qkv.weight` is the JAX `layers/attn_s/qkv/kernel[i]`
transposed, `layers.{i}.lpa.norm.weight` the RMSNorm `scale`, and plain
parameters (`ls_s1`, `hpa_query`, `hpa_gain`, `spatial_pos_embed`, ...) keep
name and shape.

Default layer l = 1..L with h_0 = z0 the embedding:

  s = h + ls_s1 * AttnS(LN(h));   s = s + ls_s2 * MLP_s(LN(s))
  t = h + ls_t1 * AttnT(LN(h));   t = t + ls_t2 * MLP_t(LN(t))
  o_l = softmax(fusion([s, t]))-weighted mix of s and t       (per token)
  a_li = softmax_i(q_l . RMSNorm(k_i) / tau), i < l           (per token)
  h_l = o_l + g_l * sum_i a_li k_i;   k_l = RMSNorm(h_l) W_l

then LN -> Linear(C, dim_rep) -> tanh -> Linear(dim_rep, dim_out). Depth
logits, softmaxes and mixes run in float32.
"""

from __future__ import annotations

import dataclasses
import math

import ml_collections
import torch
from torch import nn

from l2a_jax.torch_reference import layers

# Masked depth logits: a large finite negative (not -inf: a fully masked row
# would give NaN).
MASKED_LOGIT = -1e30
RMS_NORM_EPS = 1e-6

# Six body parts of the 17-joint Human3.6M skeleton (lpa.pool='part'):
# torso, head, left arm, right arm, left leg, right leg.
BODY_PARTS = ((0, 7, 8), (9, 10), (11, 12, 13), (14, 15, 16), (4, 5, 6),
              (1, 2, 3))


def _part_tables() -> tuple[torch.Tensor, torch.Tensor]:
  """(part index of every joint [17], joint -> part averaging [17, 6])."""
  part_of_joint = torch.zeros(17, dtype=torch.long)
  average = torch.zeros(17, len(BODY_PARTS))
  for part, joints in enumerate(BODY_PARTS):
    part_of_joint[list(joints)] = part
    average[list(joints), part] = 1.0 / len(joints)
  return part_of_joint, average


_CHOICES = {
    'backbone': ('parallel', 'sequential'),
    'fusion': ('token_softmax', 'channel_softmax', 'mean', 'channel_split'),
    'pos_embed': ('spatial_temporal', 'spatial', 'none'),
    'joint_embed': ('joint', 'frame'),
    'input_norm': ('none', 'root_scale'),
    'init': ('torch_default', 'trunc_normal'),
    'hpa.mode': ('add', 'replace', 'none'),
    'hpa.weights': ('token', 'sample', 'static'),
    'hpa.history': ('all', 'last_k', 'blocks'),
    'hpa.value': ('lpa', 'raw'),
    'hpa.temperature': ('unit', 'sqrt_dim'),
    'lpa.mode': ('proj', 'pool', 'bottleneck', 'rmsnorm', 'identity'),
    'lpa.pool': ('joint', 'frame', 'part'),
}


def _choice(key: str, value: str) -> str:
  if value not in _CHOICES[key]:
    raise ValueError(f'model.{key}: expected one of {_CHOICES[key]}, got '
                     f'{value!r}')
  return value


@dataclasses.dataclass(frozen=True)
class Options:
  """The architecture fields of `config.model`, validated, plus the derived
  quantities the layers need (same meaning as the JAX `L2AOptions`)."""
  depth: int
  dim: int
  num_heads: int
  mlp_hidden: int
  dim_rep: int
  num_frames: int
  num_joints: int
  dim_in: int
  dim_out: int
  drop_path: float
  layer_scale_init: float
  init: str
  backbone: str
  fusion: str
  shared_mlp: bool
  pos_embed: str
  joint_embed: str
  input_norm: str
  root_joint: int
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
  def from_config(cls, cfg: ml_collections.ConfigDict) -> Options:
    hpa, lpa = cfg.hpa, cfg.lpa
    options = cls(
        depth=int(cfg.depth), dim=int(cfg.dim), num_heads=int(cfg.num_heads),
        mlp_hidden=int(cfg.dim * cfg.mlp_ratio), dim_rep=int(cfg.dim_rep),
        num_frames=int(cfg.num_frames), num_joints=int(cfg.num_joints),
        dim_in=int(cfg.dim_in), dim_out=int(cfg.dim_out),
        drop_path=float(cfg.drop_path),
        layer_scale_init=float(cfg.layer_scale_init),
        init=_choice('init', cfg.init),
        backbone=_choice('backbone', cfg.backbone),
        fusion=_choice('fusion', cfg.fusion),
        shared_mlp=bool(cfg.shared_mlp),
        pos_embed=_choice('pos_embed', cfg.pos_embed),
        joint_embed=_choice('joint_embed', cfg.get('joint_embed', 'joint')),
        input_norm=_choice('input_norm', cfg.get('input_norm', 'none')),
        root_joint=int(cfg.get('root_joint', 0)),
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
    if options.fusion == 'channel_split' and options.backbone != 'parallel':
      raise ValueError("model.fusion='channel_split' needs "
                       "model.backbone='parallel'")
    if options.hpa_mode == 'replace' and not options.include_embedding:
      raise ValueError("model.hpa.mode='replace' needs "
                       'model.hpa.include_embedding=True')
    if (options.lpa_mode == 'pool' and options.lpa_pool == 'part' and
        options.num_joints != 17):
      raise ValueError("model.lpa.pool='part' needs model.num_joints=17")
    return options

  @property
  def key_dim(self) -> int:
    """Channels of an LPA record k_i."""
    return self.lpa_dim if self.lpa_mode in ('proj', 'pool') else self.dim

  @property
  def uses_keys(self) -> bool:
    """Whether LPA records are computed and kept next to the records."""
    if self.hpa_mode == 'none' or self.lpa_mode == 'identity':
      return False
    return self.hpa_weights != 'static' or self.value == 'lpa'

  @property
  def values_from_keys(self) -> bool:
    return self.value == 'lpa' and self.uses_keys

  @property
  def value_dim(self) -> int:
    return self.key_dim if self.values_from_keys else self.dim

  @property
  def block_size(self) -> int:
    return -(-self.depth // self.num_blocks)

  @property
  def num_slots(self) -> int:
    """History length: the embedding plus one slot per layer or block."""
    if self.history == 'blocks':
      return -(-self.depth // self.block_size) + 1
    return self.depth + 1


def readable_slots(options: Options, num_slots: int,
                   index: int) -> torch.Tensor:
  """[num_slots] bool: the history slots layer `index` (1-based) reads;
  `index = depth + 1` for the final aggregation of hpa.mode='replace'."""
  slots = torch.arange(num_slots)
  if options.history == 'blocks':
    # Blocks holding at least one of the layers 1 .. index - 1.
    visible = slots <= (index - 1 + options.block_size - 1) // (
        options.block_size)
  else:
    visible = slots < index
    if options.history == 'last_k':
      visible &= slots >= index - options.last_k
  if not options.include_embedding:
    visible &= slots >= 1
  return visible


def pool_tokens(x: torch.Tensor, pool: str,
                part_average: torch.Tensor) -> torch.Tensor:
  """Pools the frame x joint grid in float32.

  Args:
    x: `[b, t, j, c]`.
    pool: 'joint' (mean over frames) | 'frame' (mean over joints) | 'part'
      (mean over frames and the joints of each body part).
    part_average: `[17, 6]` joint -> part averaging matrix.

  Returns:
    `[b, 1, j, c]` | `[b, t, 1, c]` | `[b, 1, 6, c]`.
  """
  x = x.float()
  if pool == 'joint':
    return x.mean(1, keepdim=True)
  if pool == 'frame':
    return x.mean(2, keepdim=True)
  return torch.einsum('btjc,jp->bpc', x, part_average)[:, None] / x.shape[1]


def query_logits(keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
  """q . RMSNorm(k) over the last axis (no learned scale), float32."""
  keys = keys.float()
  dots = (keys * query.float()).sum(-1)
  return dots * torch.rsqrt(keys.pow(2).mean(-1) + RMS_NORM_EPS)


class LPA(nn.Module):
  """The compact record k_i of a history entry h_i.

  'proj': RMSNorm(h) W; 'pool': RMSNorm(pool(h)) W; 'bottleneck':
  fc2(GELU(fc1(RMSNorm(h)))), C -> d_c -> C; 'rmsnorm': RMSNorm(h). No
  biases.
  """

  def __init__(self, options: Options):
    super().__init__()
    self.mode = options.lpa_mode
    self.pool = options.lpa_pool
    self.norm = layers.RMSNorm(options.dim)
    if self.mode in ('proj', 'pool'):
      self.proj = nn.Linear(options.dim, options.lpa_dim, bias=False)
    elif self.mode == 'bottleneck':
      self.fc1 = nn.Linear(options.dim, options.lpa_dim, bias=False)
      self.fc2 = nn.Linear(options.lpa_dim, options.dim, bias=False)
    _, part_average = _part_tables()
    self.register_buffer('part_average', part_average, persistent=False)

  def forward(self, h: torch.Tensor) -> torch.Tensor:
    """`[b, t, j, c]` -> `[b, t', j', key_dim]` (t', j' pooled or not)."""
    if self.mode == 'pool':
      h = pool_tokens(h, self.pool, self.part_average)
    k = self.norm(h)
    if self.mode in ('proj', 'pool'):
      k = self.proj(k)
    elif self.mode == 'bottleneck':
      k = self.fc2(nn.functional.gelu(self.fc1(k)))
    return k


class History:
  """The layer history as Python lists: slot 0 = embedding, then one slot
  per layer (or per block summary), records and (optionally) LPA keys."""

  def __init__(self, record: torch.Tensor, key: torch.Tensor | None):
    self.records = [record]
    self.keys = [key] if key is not None else None

  def __len__(self) -> int:
    return len(self.records)

  def append(self, record: torch.Tensor, key: torch.Tensor | None) -> None:
    self.records.append(record)
    if self.keys is not None:
      self.keys.append(key)


def _block_update(options: Options, old: torch.Tensor, new: torch.Tensor,
                  position: int) -> torch.Tensor:
  """Running block summary: sum of deltas ('replace') or mean of records."""
  if options.hpa_mode == 'replace':
    return old + new
  return (old.float() * position + new.float()) / (position + 1.0)


def depth_mix(options: Options, history: History, mask: torch.Tensor, *,
              query: torch.Tensor | None,
              static_logits: torch.Tensor | None,
              out_proj: nn.Linear | None,
              part_of_joint: torch.Tensor) -> torch.Tensor:
  """HPA read: the depth-attention mix of the readable history slots.

  Args:
    options: the model options.
    history: the slots written so far.
    mask: `[len(history)]` bool, the readable slots.
    query: `[key_dim]` pseudo-query (hpa.weights 'token' | 'sample').
    static_logits: `[num_slots]` (hpa.weights 'static').
    out_proj: Linear(key_dim -> C) when the values are narrower than C.
    part_of_joint: `[17]` part index of every joint (lpa.pool='part').

  Returns:
    `[b, t, j, c]` float32, zero when no slot is readable.
  """
  keys = history.keys if options.uses_keys else history.records
  values = history.keys if options.values_from_keys else history.records
  mask = mask.to(history.records[0].device)
  if options.hpa_weights == 'static':
    logits = static_logits.float()[:len(history)].reshape(-1, 1, 1, 1)
  elif options.hpa_weights == 'token':
    logits = torch.stack([query_logits(k, query) for k in keys])
  else:  # 'sample': one weight per (sample, slot) from the pooled key.
    logits = torch.stack([
        query_logits(k.float().mean((1, 2), keepdim=True), query)
        for k in keys])
  if options.temperature == 'sqrt_dim' and options.hpa_weights != 'static':
    logits = logits / math.sqrt(options.key_dim)
  mask = mask.reshape(-1, 1, 1, 1)
  if options.hpa_weights == 'static' and not options.static_normalise:
    weights = torch.where(mask, logits, torch.zeros_like(logits))
  else:
    weights = torch.softmax(
        torch.where(mask, logits, torch.full_like(logits, MASKED_LOGIT)), 0)
    weights = torch.where(mask, weights, torch.zeros_like(weights))
  pooled_parts = options.lpa_mode == 'pool' and options.lpa_pool == 'part'
  if options.values_from_keys:
    mixed = sum(w[..., None] * v.float() for w, v in zip(weights, values))
  else:
    if pooled_parts and weights.shape[-1] == len(BODY_PARTS):
      weights = weights[..., part_of_joint]
    mixed = sum(w[..., None] * v.float() for w, v in zip(weights, values))
  if out_proj is not None:
    mixed = out_proj(mixed).float()
  if pooled_parts and mixed.shape[2] == len(BODY_PARTS):
    mixed = mixed[:, :, part_of_joint]
  batch = history.records[0].shape[0]
  return mixed.expand(batch, options.num_frames, options.num_joints,
                      options.dim)


def _init_linear(linear: nn.Linear, init: str) -> nn.Linear:
  """'torch_default' keeps PyTorch's init; 'trunc_normal': std 0.02 within
  two standard deviations, zero bias (as the JAX model)."""
  if init == 'trunc_normal':
    nn.init.trunc_normal_(linear.weight, std=0.02, a=-0.04, b=0.04)
    if linear.bias is not None:
      nn.init.zeros_(linear.bias)
  return linear


class L2ALayer(nn.Module):
  """One layer: the spatial-temporal backbone, its HPA read and the LPA of
  its own record. Attribute names are those of the JAX `L2ALayer`."""

  def __init__(self, options: Options, drop_path: float):
    super().__init__()
    self.options = o = options
    dim = o.dim

    def linear(n_in, n_out, bias=True):
      return _init_linear(nn.Linear(n_in, n_out, bias=bias), o.init)

    def attention(width, heads, mode):
      attn = layers.Attention(width, heads, mode)
      _init_linear(attn.proj, o.init)
      _init_linear(attn.qkv, o.init)
      return attn

    def mlp():
      block = layers.MLP(dim, o.mlp_hidden)
      _init_linear(block.fc1, o.init)
      _init_linear(block.fc2, o.init)
      return block

    def scale():
      return nn.Parameter(torch.full((dim,), o.layer_scale_init))

    if o.fusion == 'channel_split':
      half, half_heads = dim // 2, o.num_heads // 2
      self.norm_1 = nn.LayerNorm(dim)
      self.attn_s = attention(half, half_heads, 'spatial')
      self.attn_t = attention(dim - half, half_heads, 'temporal')
      self.ls_1 = scale()
      self.norm_2 = nn.LayerNorm(dim)
      self.mlp = mlp()
      self.ls_2 = scale()
    else:
      self.norm_s1 = nn.LayerNorm(dim)
      self.attn_s = attention(dim, o.num_heads, 'spatial')
      self.ls_s1 = scale()
      if not o.shared_mlp:
        self.norm_s2 = nn.LayerNorm(dim)
        self.mlp_s = mlp()
        self.ls_s2 = scale()
      self.norm_t1 = nn.LayerNorm(dim)
      self.attn_t = attention(dim, o.num_heads, 'temporal')
      self.ls_t1 = scale()
      if not o.shared_mlp:
        self.norm_t2 = nn.LayerNorm(dim)
        self.mlp_t = mlp()
        self.ls_t2 = scale()
      if o.backbone == 'parallel' and o.fusion != 'mean':
        width = 2 if o.fusion == 'token_softmax' else 2 * dim
        self.fusion = nn.Linear(2 * dim, width)
        # Weight 0, bias 0.5: every token starts as the mean of s and t.
        with torch.no_grad():
          self.fusion.weight.zero_()
          self.fusion.bias.fill_(0.5)
      if o.shared_mlp:
        self.norm_2 = nn.LayerNorm(dim)
        self.mlp = mlp()
        self.ls_2 = scale()

    if o.hpa_mode != 'none':
      if o.hpa_weights == 'static':
        self.hpa_logits = nn.Parameter(torch.zeros(o.num_slots))
      else:
        # Zero pseudo-query: uniform depth attention at initialisation.
        self.hpa_query = nn.Parameter(torch.zeros(o.key_dim))
      if o.value_dim != dim:
        self.hpa_out = linear(o.value_dim, dim, bias=False)
      if o.hpa_mode == 'add':
        self.hpa_gain = nn.Parameter(torch.full((dim,), o.gain_init))
    if o.uses_keys and not o.lpa_shared:
      self.lpa = LPA(o)
      for name in ('proj', 'fc1', 'fc2'):
        if hasattr(self.lpa, name):
          _init_linear(getattr(self.lpa, name), o.init)
    self.drop_path = layers.DropPath(drop_path)
    part_of_joint, _ = _part_tables()
    self.register_buffer('part_of_joint', part_of_joint, persistent=False)

  def _fuse(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if self.options.fusion == 'mean':
      return (s.float() + t.float()) * 0.5
    logits = self.fusion(torch.cat([s, t], -1)).float()
    if self.options.fusion == 'token_softmax':
      alpha = torch.softmax(logits, -1)
      alpha_s, alpha_t = alpha[..., 0:1], alpha[..., 1:2]
    else:  # channel_softmax: units [0, C) weigh s, [C, 2C) weigh t.
      alpha = torch.softmax(
          logits.reshape(*logits.shape[:-1], 2, self.options.dim), -2)
      alpha_s, alpha_t = alpha[..., 0, :], alpha[..., 1, :]
    return alpha_s * s.float() + alpha_t * t.float()

  def backbone(self, x: torch.Tensor) -> torch.Tensor:
    """The spatial-temporal layer without history: `[b, t, j, c]` -> same."""
    o = self.options
    dp = self.drop_path
    if o.fusion == 'channel_split':
      y = self.norm_1(x)
      half = o.dim // 2
      mixed = torch.cat([self.attn_s(y[..., :half]),
                         self.attn_t(y[..., half:])], -1)
      x = x + dp(self.ls_1 * mixed)
      return x + dp(self.ls_2 * self.mlp(self.norm_2(x)))
    if o.backbone == 'sequential':
      x = x + dp(self.ls_s1 * self.attn_s(self.norm_s1(x)))
      if not o.shared_mlp:
        x = x + dp(self.ls_s2 * self.mlp_s(self.norm_s2(x)))
      x = x + dp(self.ls_t1 * self.attn_t(self.norm_t1(x)))
      if not o.shared_mlp:
        return x + dp(self.ls_t2 * self.mlp_t(self.norm_t2(x)))
      return x + dp(self.ls_2 * self.mlp(self.norm_2(x)))
    s = x + dp(self.ls_s1 * self.attn_s(self.norm_s1(x)))
    t = x + dp(self.ls_t1 * self.attn_t(self.norm_t1(x)))
    if not o.shared_mlp:
      s = s + dp(self.ls_s2 * self.mlp_s(self.norm_s2(s)))
      t = t + dp(self.ls_t2 * self.mlp_t(self.norm_t2(t)))
      return self._fuse(s, t)
    y = self._fuse(s, t)
    return y + dp(self.ls_2 * self.mlp(self.norm_2(y)))

  def history_mix(self, history: History, mask: torch.Tensor) -> torch.Tensor:
    """This layer's HPA read: `[b, t, j, c]` float32."""
    o = self.options
    return depth_mix(
        o, history, mask,
        query=self.hpa_query if o.hpa_weights != 'static' else None,
        static_logits=self.hpa_logits if o.hpa_weights == 'static' else None,
        out_proj=self.hpa_out if o.value_dim != o.dim else None,
        part_of_joint=self.part_of_joint)

  def forward(
      self, hidden: torch.Tensor | None, history: History,
      mask: torch.Tensor, lpa: LPA | None
  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Applies the layer and computes its history record.

    Args:
      hidden: `[b, t, j, c]` the previous layer's output (modes 'add' and
        'none'); ignored by 'replace', whose input is mixed from history.
      history: the slots written so far.
      mask: `[len(history)]` bool, the slots this layer reads.
      lpa: the LPA computing this layer's key (its own or the shared one),
        or None without keys.

    Returns:
      (record, key): h_l ('add', 'none') or the delta D_l = o_l - x_l
      ('replace'), `[b, t, j, c]`; its LPA record or None.
    """
    o = self.options
    if o.hpa_mode == 'replace':
      hidden = self.history_mix(history, mask)
    out = self.backbone(hidden)
    if o.hpa_mode == 'add':
      record = out.float() + self.hpa_gain.float() * self.history_mix(
          history, mask)
    elif o.hpa_mode == 'replace':
      record = out - hidden
    else:
      record = out
    return record, (lpa(record) if lpa is not None else None)


class L2A(nn.Module):
  """L2A lifting model: `[b, t, j, dim_in]` 2D keypoints -> `[b, t, j, 3]`.

  Submodules (JAX names): `joints_embed`, `spatial_pos_embed` `[J, C]`,
  `temporal_pos_embed` `[T, C]`, `lpa_embed` (slot 0's LPA) or `lpa` (one
  LPA shared by all slots), `layers.{i}`, `final_hpa_query` /
  `final_hpa_logits` / `final_hpa_out` (hpa.mode 'replace'), `norm`,
  `rep_logit.fc`, `head`.
  """

  # Submodule lists whose per-layer parameters the JAX model stacks (scan).
  STACKED_MODULES = ('layers',)

  def __init__(self, options: Options):
    super().__init__()
    self.options = o = options
    dim = o.dim
    self.joints_embed = _init_linear(nn.Linear(o.dim_in, dim), o.init)
    if o.joint_embed == 'frame':
      self.frame_embed = _init_linear(
          nn.Linear(o.num_joints * o.dim_in, o.num_joints * dim, bias=False),
          o.init)
    if o.pos_embed in ('spatial', 'spatial_temporal'):
      self.spatial_pos_embed = nn.Parameter(
          nn.init.trunc_normal_(torch.empty(o.num_joints, dim), std=0.02,
                                a=-0.04, b=0.04))
    if o.pos_embed == 'spatial_temporal':
      self.temporal_pos_embed = nn.Parameter(
          nn.init.trunc_normal_(torch.empty(o.num_frames, dim), std=0.02,
                                a=-0.04, b=0.04))
    if o.uses_keys:
      lpa = LPA(o)
      for name in ('proj', 'fc1', 'fc2'):
        if hasattr(lpa, name):
          _init_linear(getattr(lpa, name), o.init)
      if o.lpa_shared:
        self.lpa = lpa
      else:
        self.lpa_embed = lpa
    # Stochastic depth rates increase linearly over the layers.
    rates = torch.linspace(0.0, o.drop_path, o.depth).tolist()
    self.layers = nn.ModuleList([L2ALayer(o, rate) for rate in rates])
    if o.hpa_mode == 'replace':
      if o.hpa_weights == 'static':
        self.final_hpa_logits = nn.Parameter(torch.zeros(o.num_slots))
      else:
        self.final_hpa_query = nn.Parameter(torch.zeros(o.key_dim))
      if o.value_dim != dim:
        self.final_hpa_out = _init_linear(
            nn.Linear(o.value_dim, dim, bias=False), o.init)
    self.norm = nn.LayerNorm(dim)
    self.rep_logit = nn.Sequential()
    self.rep_logit.add_module('fc', _init_linear(nn.Linear(dim, o.dim_rep),
                                                 o.init))
    self.rep_logit.add_module('act', nn.Tanh())
    self.head = _init_linear(nn.Linear(o.dim_rep, o.dim_out), o.init)
    part_of_joint, _ = _part_tables()
    self.register_buffer('part_of_joint', part_of_joint, persistent=False)

  @classmethod
  def from_config(cls, model_config: ml_collections.ConfigDict) -> L2A:
    """Builds the model from a `config.model` section (l2a_h36m.py)."""
    return cls(Options.from_config(model_config))

  def embed(self, x: torch.Tensor) -> torch.Tensor:
    """`[b, t, j, dim_in]` -> z0 `[b, t, j, c]`."""
    z = self.joints_embed(x)
    if self.options.joint_embed == 'frame':
      b, t, j, c = x.shape
      z = z + self.frame_embed(x.reshape(b, t, j * c)).reshape(b, t, j, -1)
    if self.options.pos_embed in ('spatial', 'spatial_temporal'):
      z = z + self.spatial_pos_embed
    if self.options.pos_embed == 'spatial_temporal':
      z = z + self.temporal_pos_embed[:, None]
    return z

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """Lifts 2D keypoint sequences to 3D.

    Args:
      x: `[batch, num_frames, num_joints, dim_in]`.

    Returns:
      `[batch, num_frames, num_joints, dim_out]`.
    """
    o = self.options
    if tuple(x.shape[1:]) != (o.num_frames, o.num_joints, o.dim_in):
      raise ValueError(
          f'L2A input: expected [batch, {o.num_frames}, {o.num_joints}, '
          f'{o.dim_in}], got {tuple(x.shape)}')
    if o.input_norm == 'root_scale':
      # (x, y) relative to the root joint, divided by the pose's RMS 2D
      # size; the output is multiplied back by it.
      xy = x[..., :2] - x[:, :, o.root_joint:o.root_joint + 1, :2]
      scale = xy.square().sum(-1, keepdim=True).mean(2, keepdim=True).sqrt()
      scale = scale.clamp_min(1e-6).detach()
      x = torch.cat([xy / scale, x[..., 2:]], -1)
    z0 = self.embed(x)
    shared_lpa = self.lpa if o.uses_keys and o.lpa_shared else None
    first_lpa = shared_lpa or (self.lpa_embed if o.uses_keys else None)
    history = History(z0, first_lpa(z0) if first_lpa is not None else None)
    hidden = z0
    for i, layer in enumerate(self.layers):
      index = i + 1
      mask = readable_slots(o, len(history), index)
      lpa = shared_lpa or (layer.lpa if o.uses_keys else None)
      record, key = layer(hidden, history, mask, lpa)
      if o.history == 'blocks':
        block, position = i // o.block_size + 1, i % o.block_size
        if block == len(history):
          history.append(record, key)
        else:
          history.records[block] = _block_update(
              o, history.records[block], record, position)
          if key is not None:
            history.keys[block] = _block_update(o, history.keys[block], key,
                                                position)
      else:
        history.append(record, key)
      hidden = record
    if o.hpa_mode == 'replace':
      hidden = depth_mix(
          o, history, readable_slots(o, len(history), o.depth + 1),
          query=self.final_hpa_query if o.hpa_weights != 'static' else None,
          static_logits=(self.final_hpa_logits if o.hpa_weights == 'static'
                         else None),
          out_proj=self.final_hpa_out if o.value_dim != o.dim else None,
          part_of_joint=self.part_of_joint)
    out = self.head(self.rep_logit(self.norm(hidden)))
    if o.input_norm == 'root_scale':
      out = out * scale
    return out
