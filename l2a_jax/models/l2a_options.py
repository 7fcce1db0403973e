"""L2A's static settings: `L2AOptions.from_config(config.model)`.

Validates the `config.model` section of an L2A run (every choice of
l2a_design.md section 4 against its allowed values, one-line `ValueError`s
naming the field) and derives the sizes the layers and the history stack
need (`key_dim`, `num_slots`, `block_size`, ...). Also the body-part
grouping of the 17 Human3.6M joints used by LPA pooling 'part'.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np

from l2a_jax.models import layers

Dtype = jnp.dtype

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
    'joint_embed': ('joint', 'frame'),
    'input_norm': ('none', 'root_scale'),
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
  attention_impl: str
  history_vjp: str
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
        scan_layers=bool(cfg.scan_layers),
        remat=layers.resolve_remat(cfg.remat),
        # Absent in configs written before the field existed: 'auto'.
        attention_impl=layers.check_attention_impl(
            cfg.get('attention_impl', 'auto')),
        history_vjp=_choice('history_vjp', cfg.history_vjp),
        drop_path=float(cfg.drop_path),
        layer_scale_init=float(cfg.layer_scale_init),
        init=_choice('init', cfg.init),
        backbone=_choice('backbone', cfg.backbone),
        fusion=_choice('fusion', cfg.fusion),
        shared_mlp=bool(cfg.shared_mlp),
        pos_embed=_choice('pos_embed', cfg.pos_embed),
        # Absent in configs written before the field existed: 'joint'.
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
