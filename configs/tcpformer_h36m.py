r"""TCPFormer on Human3.6M (MotionBERT Stacked-Hourglass pipeline), full size.

The official architecture (AsukaCamellia/TCPFormer, AAAI 2025) with its
parameter names, so official checkpoints convert (see README). Data, loss,
optimiser and cadences are those of `l2a_h36m.py` (documented field by field
there); the model section is documented here.

  python -m l2a_jax.main --config configs/tcpformer_h36m.py --workdir /tmp/tcp
  python -m l2a_jax.main --config configs/tcpformer_h36m.py:frames=81 ...
"""

import ml_collections

from l2a_jax import config_files


def get_model_config(frames: int = 243) -> ml_collections.ConfigDict:
  """The TCPFormer model section (official hyperparameters)."""
  model = ml_collections.ConfigDict()
  # Which model `l2a_jax.models.create_model` builds.
  model.name = 'tcpformer'
  # Layer pairs (DSTFormerBlock + MemoryInducedBlock), scanned.
  model.depth = 16
  # Feature width C.
  model.dim = 128
  # Attention heads (head dim 16).
  model.num_heads = 8
  # MLP hidden width = mlp_ratio * dim.
  model.mlp_ratio = 4.0
  # Representation width before the head (rep_logit.fc).
  model.dim_rep = 512
  # Frames T; the pose proxy `center_pose` has T // 3 frames.
  model.num_frames = frames
  # Joints J (Human3.6M order).
  model.num_joints = 17
  # Input channels (x, y, confidence) and output channels (x, y, z).
  model.dim_in = 3
  model.dim_out = 3
  # Compute dtype ('float32' | 'bfloat16') and parameter dtype.
  model.dtype = 'float32'
  model.param_dtype = 'float32'
  # Attention kernel: 'auto' (cuDNN's fused flash attention for bfloat16 /
  # float16 on an NVIDIA GPU, 'lean' for bfloat16 / float16 elsewhere,
  # 'xla' in float32) | 'xla' | 'cudnn' (the two implementations of
  # jax.nn.dot_product_attention; 'cudnn' needs an NVIDIA GPU and bfloat16 /
  # float16) | 'lean' (the hand-written einsum pipeline with float32
  # probabilities). For the backward pass 'lean' keeps q, k, v and the
  # float32 map per attention, 'xla' the same plus, under bfloat16, a bf16
  # copy of the map; 'cudnn' keeps no map (docs/models.md, "Attention").
  model.attention_impl = 'auto'
  # Scan the 16 layer pairs over stacked parameters (False: unrolled loop).
  model.scan_layers = True
  # Layer pairs per scan iteration: 1 = one compiled pair for any depth;
  # k > 1 unrolls k pairs per iteration (depth: all), so XLA slices the
  # stacked weights and the saved activations statically instead of
  # copying them in and out of [depth, ...] stacks. Compile time grows
  # with k. On the 2-core CPU the depth-4 training step ran about 10 %
  # faster fully unrolled (docs/benchmarks.md, tuning log); unmeasured on
  # GPUs.
  model.scan_unroll = 1
  # Rematerialisation per layer pair: 'auto' | 'none' | 'block' (keep only
  # each pair's inputs, recompute the pair in the backward pass) | a policy
  # of `jax.checkpoint_policies` taking no arguments, e.g.
  # 'dots_with_no_batch_dims_saveable' (layers.REMAT_POLICIES). 'auto' is
  # 'block' on a CPU and 'none' on GPUs and TPUs (layers.resolve_remat):
  # on XLA CPU the zero-fills, copies and slices of the scan's stacks of
  # saved values cost more than the recomputation (the depth-4 training
  # step took 331 ms with 'block' against 384 ms with 'none' on a 2-core
  # VM, docs/benchmarks.md, CPU results); on GPUs the second forward pass
  # costs FLOPs and MFU and has not been measured. Without remat fp32
  # training keeps about 6.8 GiB of activations per 243-frame clip
  # (PyTorch: 8.2 GiB); 'block' keeps about 0.07 GiB: the way to batch 16
  # at T = 243 in fp32 on an 80 GB GPU (docs/benchmarks.md, T = 243 memory
  # table). Checkpoints do not depend on it.
  model.remat = 'auto'
  # Recompute the softmax attention maps in the backward pass instead of
  # keeping them (one more q k^T product and softmax per attention, about 4 %
  # more training FLOPs). At T = 243 the [heads, T, T] temporal maps are
  # about 40 % of the activations; True frees them without the full pair
  # recomputation of remat='block' (docs/benchmarks.md, memory table).
  model.recompute_attention = False
  # Stochastic depth rate, the same in every layer (as the PyTorch reference)
  # (official configs: 0).
  model.drop_path = 0.0
  # Initial value of the trainable LayerScale vectors. The six local layer
  # scales of every MemoryInducedBlock are constants 1e-5 (official quirk).
  model.layer_scale_init = 1e-5
  return model


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """Returns the run config; `arg` is 'frames=N' (81 | 243)."""
  base = config_files.load_sibling(__file__, 'l2a_h36m')
  config = base.get_config(arg)
  frames = config.model.num_frames
  config.model = get_model_config(frames)
  # The official recipe: batch 4 x 4 accumulation at T = 243 and 8 x 2 at
  # T = 81, i.e. an effective batch of 16. Expressed as a bound on the rows
  # per device, so that one device accumulates 4 (2) micro-batches and 8
  # devices (2 rows each) none: the same global batch of 16 either way.
  config.optim.accumulation_steps = -1
  config.optim.max_per_device_batch = 4 if frames == 243 else 8
  return config
