"""Layers shared by the PyTorch TCPFormer and L2A references.

Every feature tensor is channels-last `[batch, frames, joints, channels]`.
Heads split the channel axis head-major (channel = head * head_dim + d), the
layout of the official TCPFormer / MotionAGFormer code, so a fused `qkv`
Linear has output unit `s * C + h * head_dim + d` for s in (q, k, v).
"""

import torch
from torch import nn
from torch.nn import functional as F


class MLP(nn.Module):
  """fc1 -> exact GELU -> fc2 (the lineage's MLP, no dropout)."""

  def __init__(self, dim: int, hidden_dim: int):
    super().__init__()
    self.fc1 = nn.Linear(dim, hidden_dim)
    self.act = nn.GELU()  # exact erf GELU, torch's default
    self.fc2 = nn.Linear(hidden_dim, dim)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """Maps `[..., dim]` to `[..., dim]`."""
    return self.fc2(self.act(self.fc1(x)))


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
  """`[b, t, j, heads * d]` -> `[b, heads, t, j, d]` (head-major channels)."""
  b, t, j, c = x.shape
  return x.reshape(b, t, j, num_heads, c // num_heads).permute(0, 3, 1, 2, 4)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
  """`[b, heads, t, j, d]` -> `[b, t, j, heads * d]`."""
  b, h, t, j, d = x.shape
  return x.permute(0, 2, 3, 1, 4).reshape(b, t, j, h * d)


class Attention(nn.Module):
  """Multi-head self-attention over joints ('spatial') or frames ('temporal').

  Parameters are registered `proj` then `qkv`, the official order, so the
  state_dict lists `proj.weight`, `proj.bias`, `qkv.weight`.
  """

  def __init__(self, dim: int, num_heads: int, mode: str):
    super().__init__()
    if mode not in ('spatial', 'temporal'):
      raise ValueError(f"mode: expected 'spatial' or 'temporal', got {mode!r}")
    if dim % num_heads:
      raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
    self.num_heads = num_heads
    self.mode = mode
    self.scale = (dim // num_heads) ** -0.5
    self.proj = nn.Linear(dim, dim)
    self.qkv = nn.Linear(dim, 3 * dim, bias=False)

  def qkv_heads(
      self, x: torch.Tensor
  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-head q, k, v laid out for attention over the mode's axis.

    Args:
      x: `[b, t, j, dim]`.

    Returns:
      q, k, v, each `[b, heads, j, t, d]` (temporal) or `[b, heads, t, j, d]`
      (spatial): the second-to-last axis is the one attended over.
    """
    q, k, v = self.qkv(x).chunk(3, dim=-1)
    q, k, v = (split_heads(a, self.num_heads) for a in (q, k, v))
    if self.mode == 'temporal':
      q, k, v = (a.transpose(2, 3) for a in (q, k, v))
    return q, k, v

  def merge(self, out: torch.Tensor) -> torch.Tensor:
    """Undoes the layout of `qkv_heads`, then `proj`: -> `[b, t, j, dim]`."""
    if self.mode == 'temporal':
      out = out.transpose(2, 3)
    return self.proj(merge_heads(out))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """Maps `[b, t, j, dim]` to `[b, t, j, dim]`."""
    q, k, v = self.qkv_heads(x)
    # The fused kernel computes softmax(q k^T * scale) v without storing the
    # score matrix; it equals the explicit form up to float rounding.
    out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
    return self.merge(out)


class DropPath(nn.Module):
  """Stochastic depth: drops the whole residual branch per sample.

  Active only in training mode with `rate > 0`; kept samples are scaled by
  1 / (1 - rate) so the expectation is unchanged.
  """

  def __init__(self, rate: float):
    super().__init__()
    self.rate = rate

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    if not self.training or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class RMSNorm(nn.Module):
  """x / sqrt(mean(x^2) + eps), times a learned per-channel `weight`.

  The statistics are computed in float32, as in the JAX model.
  """

  def __init__(self, dim: int, eps: float = 1e-6, learned_scale: bool = True):
    super().__init__()
    self.eps = eps
    self.weight = nn.Parameter(torch.ones(dim)) if learned_scale else None

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x32 = x.float()
    out = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
    if self.weight is not None:
      out = out * self.weight.float()
    return out.to(x.dtype)
