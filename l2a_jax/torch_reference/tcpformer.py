"""PyTorch TCPFormer with the official module tree and state_dict keys.

A clean reimplementation of `MemoryInducedTransformer` (AsukaCamellia/
TCPFormer, AAAI 2025) following docs `tcpformer_spec.md`: the same 2,315
state_dict tensors with the same names and shapes (35,118,259 parameters at
T = 243), so an official checkpoint loads with `load_state_dict(strict=True)`
once the `module.` prefix of `nn.DataParallel` is stripped
(`l2a_jax.convert_torch.read_torch_checkpoint` does that).

Official quirks kept on purpose (spec section 4):
- the six local layer scales of every MemoryInducedBlock are constants equal
  to `layer_scale_init` (1e-5): a non-persistent buffer, so they are neither
  parameters nor state_dict entries, and never trained;
- `graph_spatial` is a temporal and `graph_temporal` a spatial attention block;
  `loacl_mlps` keeps its typo;
- no temporal positional embedding.
Unlike the official code, nothing is moved to CUDA in the constructor.
"""

import collections

import ml_collections
import torch
from torch import nn

from l2a_jax.torch_reference import layers


class CrossAttention(nn.Module):
  """Temporal cross-attention per joint: queries from one sequence, keys and
  values from another (the PUM / PIM attention)."""

  def __init__(self, dim: int, num_heads: int):
    super().__init__()
    self.num_heads = num_heads
    self.scale = (dim // num_heads) ** -0.5
    self.wq = nn.Linear(dim, dim, bias=False)
    self.wk = nn.Linear(dim, dim, bias=False)
    self.wv = nn.Linear(dim, dim, bias=False)
    self.proj = nn.Linear(dim, dim)

  def forward(
      self, query: torch.Tensor, context: torch.Tensor
  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Attends from `query` frames to `context` frames, per head and joint.

    Args:
      query: `[b, t_q, j, dim]`.
      context: `[b, t_k, j, dim]`.

    Returns:
      (attn, out): the post-softmax attention `[b, heads, j, t_q, t_k]` and the
      output `[b, t_q, j, dim]`.
    """
    # [b, heads, t, j, d] -> [b, heads, j, t, d]: attention over frames.
    q = layers.split_heads(self.wq(query), self.num_heads).transpose(2, 3)
    k = layers.split_heads(self.wk(context), self.num_heads).transpose(2, 3)
    v = layers.split_heads(self.wv(context), self.num_heads).transpose(2, 3)
    attn = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)
    out = layers.merge_heads((attn @ v).transpose(2, 3))
    return attn, self.proj(out)


class SumAttention(layers.Attention):
  """Temporal attention whose map is mixed with an external one (PAM).

  M = w * softmax(q k^T * scale) + (1 - w) * att_map; out = proj(M v). The
  mix is of probabilities (no re-softmax), as in the official code.
  """

  def __init__(self, dim: int, num_heads: int):
    super().__init__(dim, num_heads, mode='temporal')

  def forward(  # pytype: disable=signature-mismatch
      self, x: torch.Tensor, att_map: torch.Tensor, weight: torch.Tensor
  ) -> torch.Tensor:
    """Mixed-map temporal attention.

    Args:
      x: `[b, t, j, dim]`.
      att_map: `[b, heads, j, t, t]`, row-stochastic.
      weight: mixing weight in (0, 1), broadcastable (shape `[1]`).

    Returns:
      `[b, t, j, dim]`.
    """
    q, k, v = self.qkv_heads(x)
    probs = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)
    mixed = weight * probs + (1.0 - weight) * att_map
    return self.merge(mixed @ v)


class TransBlock(nn.Module):
  """Pre-norm Transformer block with two trainable layer scales.

  x <- x + ls1 * mixer(norm1(x)); x <- x + ls2 * mlp(norm2(x)).
  """

  def __init__(self, dim: int, num_heads: int, mlp_ratio: float, mode: str,
               layer_scale_init: float, drop_path: float):
    super().__init__()
    self.layer_scale_1 = nn.Parameter(layer_scale_init * torch.ones(dim))
    self.layer_scale_2 = nn.Parameter(layer_scale_init * torch.ones(dim))
    self.norm1 = nn.LayerNorm(dim)
    self.mixer = layers.Attention(dim, num_heads, mode)
    self.norm2 = nn.LayerNorm(dim)
    self.mlp = layers.MLP(dim, int(dim * mlp_ratio))
    self.drop_path = layers.DropPath(drop_path)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """Maps `[b, t, j, dim]` to `[b, t, j, dim]`."""
    x = x + self.drop_path(self.layer_scale_1 * self.mixer(self.norm1(x)))
    return x + self.drop_path(self.layer_scale_2 * self.mlp(self.norm2(x)))


class DSTFormerBlock(nn.Module):
  """Dual-stream spatio-temporal block with adaptive softmax fusion.

  Stream 1 (S then T): att_temporal(att_spatial(x)). Stream 2 (T then S):
  graph_temporal(graph_spatial(x)), where despite the names `graph_spatial`
  attends over frames and `graph_temporal` over joints.
  """

  def __init__(self, dim: int, num_heads: int, mlp_ratio: float,
               layer_scale_init: float, drop_path: float):
    super().__init__()

    def block(mode):
      return TransBlock(dim, num_heads, mlp_ratio, mode, layer_scale_init,
                        drop_path)

    self.att_spatial = block('spatial')
    self.att_temporal = block('temporal')
    self.graph_spatial = block('temporal')
    self.graph_temporal = block('spatial')
    self.fusion = nn.Linear(2 * dim, 2)
    # Weight 0 and bias 0.5: every token mixes the streams 0.5 / 0.5 at init.
    with torch.no_grad():
      self.fusion.weight.zero_()
      self.fusion.bias.fill_(0.5)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """Maps `[b, t, j, dim]` to `[b, t, j, dim]`."""
    x_attn = self.att_temporal(self.att_spatial(x))
    x_graph = self.graph_temporal(self.graph_spatial(x))
    alpha = torch.softmax(self.fusion(torch.cat([x_attn, x_graph], -1)), -1)
    return x_attn * alpha[..., 0:1] + x_graph * alpha[..., 1:2]


class MIBlock(nn.Module):
  """Proxy update (PUM), proxy invocation (PIM), temporal self-attention and
  proxy attention (PAM) over the frames of every joint (spec section 2.5)."""

  def __init__(self, dim: int, num_heads: int, mlp_ratio: float,
               layer_scale_init: float, drop_path: float):
    super().__init__()
    hidden = int(dim * mlp_ratio)
    for i in range(1, 9):
      self.register_parameter(
          f'layer_scale_{i}',
          nn.Parameter(layer_scale_init * torch.ones(dim)))
    # sigmoid(att_weight) is the PAM mixing weight; U[0, 1) as the official.
    self.att_weight = nn.Parameter(torch.rand(1))
    self.norm_full = nn.LayerNorm(dim)
    self.norm_center = nn.LayerNorm(dim)
    self.full_center = CrossAttention(dim, num_heads)
    self.center_full = CrossAttention(dim, num_heads)
    self.mlp_1 = layers.MLP(dim, hidden)
    self.mlp_2 = layers.MLP(dim, hidden)
    self.norm_1 = nn.LayerNorm(dim)
    self.norm_2 = nn.LayerNorm(dim)
    self.norm_sa_self = nn.LayerNorm(dim)
    self.map_sa_self = layers.Attention(dim, num_heads, 'temporal')
    self.norm_mlp_self = nn.LayerNorm(dim)
    self.mlp_sa_self = layers.MLP(dim, hidden)
    self.norm_sa_1 = nn.LayerNorm(dim)
    self.map_sum = SumAttention(dim, num_heads)
    self.norm_sa_2 = nn.LayerNorm(dim)
    self.mlp_sa = layers.MLP(dim, hidden)
    self.drop_path = layers.DropPath(drop_path)

  def forward(
      self, x: torch.Tensor, proxy: torch.Tensor
  ) -> tuple[torch.Tensor, torch.Tensor]:
    """One MIBlock.

    Args:
      x: pose features `[b, t, j, dim]`.
      proxy: pose proxy `[b, t // 3, j, dim]`.

    Returns:
      The updated (x, proxy), same shapes.
    """
    dp = self.drop_path
    # PUM: the proxy reads the sequence; attn_pum is [b, heads, j, L, t].
    x_normed = self.norm_full(x)
    attn_pum, update = self.center_full(self.norm_center(proxy), x_normed)
    proxy = proxy + dp(self.layer_scale_1 * update)
    proxy = proxy + dp(self.layer_scale_2 * self.mlp_1(self.norm_1(proxy)))
    # PIM: the sequence reads the updated proxy; attn_pim is [b, h, j, t, L].
    attn_pim, update = self.full_center(x_normed, self.norm_center(proxy))
    x = x + dp(self.layer_scale_3 * update)
    x = x + dp(self.layer_scale_4 * self.mlp_2(self.norm_2(x)))
    # Frame-to-frame map through the proxy, row-stochastic: [b, h, j, t, t].
    aggregation = attn_pim @ attn_pum
    mix = torch.sigmoid(self.att_weight)
    # Plain temporal self-attention sub-block (in the code, not the paper).
    x = x + dp(self.layer_scale_7 * self.map_sa_self(self.norm_sa_self(x)))
    x = x + dp(self.layer_scale_8 * self.mlp_sa_self(self.norm_mlp_self(x)))
    # PAM.
    x = x + dp(self.layer_scale_5 *
               self.map_sum(self.norm_sa_1(x), aggregation, mix))
    x = x + dp(self.layer_scale_6 * self.mlp_sa(self.norm_sa_2(x)))
    return x, proxy


class MemoryInducedBlock(nn.Module):
  """Chunked local temporal attention, then an MIBlock (spec section 2.4)."""

  def __init__(self, dim: int, num_heads: int, mlp_ratio: float,
               layer_scale_init: float, drop_path: float):
    super().__init__()
    self.local_attention_list = nn.ModuleList(
        [layers.Attention(dim, num_heads, 'temporal') for _ in range(3)])
    self.loacl_mlps = nn.ModuleList(
        [layers.MLP(dim, int(dim * mlp_ratio)) for _ in range(3)])
    self.local_norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(6)])
    self.cross_temporal = MIBlock(dim, num_heads, mlp_ratio, layer_scale_init,
                                  drop_path)
    # The official code keeps these six vectors in a plain Python list, so
    # they are never registered, trained or saved: constants. A
    # non-persistent buffer reproduces that and still follows `.to(device)`.
    self.register_buffer(
        'local_layer_scales', layer_scale_init * torch.ones(6, dim),
        persistent=False)
    self.drop_path = layers.DropPath(drop_path)

  def forward(
      self, x: torch.Tensor, proxy: torch.Tensor
  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps (x `[b, t, j, dim]`, proxy `[b, t // 3, j, dim]`) to the same."""
    scales = self.local_layer_scales
    # torch.chunk: three contiguous chunks (equal when t % 3 == 0).
    chunks = list(torch.chunk(x, 3, dim=1))
    for i, chunk in enumerate(chunks):
      chunk = chunk + self.drop_path(
          scales[i] * self.local_attention_list[i](self.local_norms[i](chunk)))
      chunks[i] = chunk + self.drop_path(
          scales[i + 3] * self.loacl_mlps[i](self.local_norms[i + 3](chunk)))
    return self.cross_temporal(torch.cat(chunks, dim=1), proxy)


class TCPFormer(nn.Module):
  """`MemoryInducedTransformer`: 16 (DSTFormerBlock, MemoryInducedBlock) pairs.

  `model(x)`: x `[batch, frames, joints, dim_in]` -> `[batch, frames, joints,
  dim_out]`.
  """

  # Submodule lists whose per-layer parameters the JAX model stacks (scan).
  STACKED_MODULES = ('layers', 'temporal_layers')

  def __init__(self, depth: int = 16, dim: int = 128, num_heads: int = 8,
               mlp_ratio: float = 4.0, dim_rep: int = 512,
               num_frames: int = 243, num_joints: int = 17, dim_in: int = 3,
               dim_out: int = 3, layer_scale_init: float = 1e-5,
               drop_path: float = 0.0):
    super().__init__()
    self.num_frames = num_frames
    self.pos_embed = nn.Parameter(torch.zeros(1, num_joints, dim))
    # The implicit pose proxy: T // 3 frames, standard normal init.
    self.center_pose = nn.Parameter(
        torch.randn(num_frames // 3, num_joints, dim))
    self.center_pos_embed = nn.Parameter(torch.zeros(1, num_joints, dim))
    self.joints_embed = nn.Linear(dim_in, dim)
    self.norm = nn.LayerNorm(dim)
    # The official code applies the same stochastic-depth rate in every layer.
    block_args = (dim, num_heads, mlp_ratio, layer_scale_init, drop_path)
    self.layers = nn.ModuleList(
        [DSTFormerBlock(*block_args) for _ in range(depth)])
    self.rep_logit = nn.Sequential(collections.OrderedDict([
        ('fc', nn.Linear(dim, dim_rep)), ('act', nn.Tanh())]))
    self.head = nn.Linear(dim_rep, dim_out)
    self.temporal_layers = nn.ModuleList(
        [MemoryInducedBlock(*block_args) for _ in range(depth)])

  @classmethod
  def from_config(cls, model_config: ml_collections.ConfigDict) -> 'TCPFormer':
    """Builds the model from a `config.model` section (tcpformer_h36m.py)."""
    return cls(
        depth=model_config.depth, dim=model_config.dim,
        num_heads=model_config.num_heads, mlp_ratio=model_config.mlp_ratio,
        dim_rep=model_config.dim_rep, num_frames=model_config.num_frames,
        num_joints=model_config.num_joints, dim_in=model_config.dim_in,
        dim_out=model_config.dim_out,
        layer_scale_init=model_config.layer_scale_init,
        drop_path=model_config.drop_path)

  def forward(self, x: torch.Tensor, return_rep: bool = False) -> torch.Tensor:
    """Lifts 2D keypoint sequences to 3D.

    Args:
      x: `[batch, frames, joints, dim_in]` (x, y, confidence).
      return_rep: return the motion representation instead of the poses.

    Returns:
      `[batch, frames, joints, dim_out]`, or `[batch, frames, joints,
      dim_rep]` with `return_rep`.
    """
    proxy = self.center_pose.unsqueeze(0).expand(x.shape[0], -1, -1, -1)
    proxy = proxy + self.center_pos_embed
    x = self.joints_embed(x) + self.pos_embed
    for layer, temporal_layer in zip(self.layers, self.temporal_layers):
      x = layer(x)
      x, proxy = temporal_layer(x, proxy)
    rep = self.rep_logit(self.norm(x))
    return rep if return_rep else self.head(rep)
