r"""L2A on Human3.6M (MotionBERT Stacked-Hourglass pipeline), full size.

Every field of a run is listed here with a comment; the other L2A configs
(`tiny.py`, `quickstart.py`, `l2a_3dhp.py`) load this one and change a few.

Variants through the config argument (big_vision style):

  python -m l2a_jax.main --config configs/l2a_h36m.py --workdir /tmp/l2a
  python -m l2a_jax.main --config configs/l2a_h36m.py:frames=81 --workdir ...

Any field can also be overridden on the command line, e.g.
`--config.model.hpa.mode=replace --config.data.batch_size=32`.

Prepare the data first (see README, "Data"):
  python -m l2a_jax.data.prepare --dataset h36m/motionbert --allow_pickle \
      --manual_dir DIR_WITH_PKL --data_dir ~/tensorflow_datasets
"""

import ml_collections


def get_model_config(frames: int = 243) -> ml_collections.ConfigDict:
  """The L2A model section (also used by the benchmark and the converter)."""
  model = ml_collections.ConfigDict()
  # Which model `l2a_jax.models.create_model` builds: 'l2a' | 'tcpformer'.
  model.name = 'l2a'
  # Number of layers L (each a parallel spatial-temporal layer + HPA).
  model.depth = 16
  # Feature width C of every token (one token per frame and joint).
  model.dim = 128
  # Attention heads; head dim = dim / num_heads (16 at the defaults).
  model.num_heads = 8
  # MLP hidden width = mlp_ratio * dim.
  model.mlp_ratio = 4.0
  # Width of the pre-head representation: LN -> Linear(C, dim_rep) -> tanh.
  model.dim_rep = 512
  # Frames T per clip (the temporal embedding has this length).
  model.num_frames = frames
  # Joints J per frame (Human3.6M order).
  model.num_joints = 17
  # Input channels per joint: (x, y, confidence).
  model.dim_in = 3
  # Output channels per joint: (x, y, z).
  model.dim_out = 3
  # Compute dtype of matmuls and activations: 'float32' | 'bfloat16'.
  # LayerNorm statistics, softmax, HPA logits and the loss stay float32.
  model.dtype = 'float32'
  # Parameter storage dtype (keep float32; AdamW state follows it).
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
  # True: one compiled layer scanned over parameters stacked on a leading
  # layer axis (compile time flat in depth). False: the unrolled Python loop,
  # kept as the reference implementation.
  model.scan_layers = True
  # Rematerialisation of each layer: 'none' | 'block' (recompute the whole
  # layer in the backward pass) | a `jax.checkpoint_policies` name, e.g.
  # 'dots_with_no_batch_dims_saveable'. With history_vjp='custom' every
  # layer is already recomputed once in the backward pass; remat then only
  # bounds the activations of the one layer being recomputed ('block' adds
  # a second recomputation for nothing; a policy can pay off at large T).
  model.remat = 'none'
  # Gradient of the scanned history stack: 'custom' (reverse scan against the
  # final write-once buffer, O(L) activation memory) | 'autodiff' (plain
  # reverse-mode through the scan; O(L^2) memory, the reference). Ignored
  # with scan_layers=False and with hpa.history='blocks' (block summaries
  # are rewritten, so that stack always uses autodiff with per-layer remat:
  # remat='block' when remat='none').
  model.history_vjp = 'custom'
  # Stochastic depth rate (linearly increasing over layers); 0 = off.
  model.drop_path = 0.0
  # Initial value of every LayerScale vector.
  model.layer_scale_init = 1e-5
  # Weight init of Linear layers: 'torch_default' (U(+-1/sqrt(fan_in)), as
  # the PyTorch lineage) | 'trunc_normal' (std 0.02, zero bias).
  model.init = 'torch_default'
  # Backbone of one layer: 'parallel' (spatial and temporal branches read the
  # same input, outputs fused; the L2A design) | 'sequential' (S then T).
  model.backbone = 'parallel'
  # Fusion of the two branches: 'token_softmax' (Linear(2C->2), w 0 / b 0.5)
  # | 'channel_softmax' (Linear(2C->2C), per-channel pair softmax) | 'mean'
  # | 'channel_split' (STCFormer-style: spatial attention on half the
  # channels, temporal on the other half, concatenated, one MLP; needs
  # backbone='parallel' and an even num_heads). Unused by 'sequential'.
  model.fusion = 'token_softmax'
  # True: one MLP after the fusion (sequential: after both attentions)
  # instead of one per branch. Implied by fusion='channel_split'.
  model.shared_mlp = False
  # Positional embeddings added to the joint embedding: 'spatial_temporal'
  # (P_s [J, C] + P_t [T, C], trunc-normal 0.02) | 'spatial' | 'none'.
  model.pos_embed = 'spatial_temporal'
  # Joint embedding: 'joint' (each token embeds its own joint's (x, y,
  # confidence): the paper's design) | 'frame' (ours, not in the paper:
  # each token also gets a joint-specific linear map of the whole frame's
  # input, [J * dim_in] -> [dim], so every token starts from the frame's
  # configuration; a short run then learns relative depth,
  # docs/training.md "Diagnosis").
  model.joint_embed = 'joint'
  # Input normalisation inside the model: 'none' (the 2D as the data gives
  # it: the paper) | 'root_scale' (ours: each frame's (x, y) minus the root
  # joint's, divided by the RMS distance of the joints from the root, and
  # the output multiplied by that size: scale-equivariant, meant for
  # image-space 2.5D targets, data.target_space='image_2_5d' or MotionBERT
  # labels; docs/training.md "Diagnosis").
  model.input_norm = 'none'
  # Root joint of the skeleton (h36m 0; MPI-INF-3DHP 14): input_norm's root.
  model.root_joint = 0

  # History Pose Accumulation: each layer reads a learned mix of the outputs
  # of all earlier layers (docs/models.md, l2a_design.md section 3.4).
  model.hpa = ml_collections.ConfigDict()
  # 'add' (H1: h_l = o_l + g_l * sum_i a_li v_i) | 'replace' (H2: Attention
  # Residuals; the next input is the convex mix of layer deltas) | 'none'
  # (plain parallel backbone with residuals only).
  model.hpa.mode = 'add'
  # Granularity of the depth weights: 'token' (per b, t, j) | 'sample' (H4:
  # keys pooled over T and J) | 'static' (H3: learned logits per layer).
  model.hpa.weights = 'token'
  # H3 only: False gives DenseFormer-style unnormalised weights (zero init:
  # no history contribution at start).
  model.hpa.static_normalise = True
  # Which history entries are read: 'all' | 'last_k' | 'blocks' (slot 0 and
  # num_blocks running block summaries: sums of deltas with mode='replace'
  # as Block AttnRes, means of layer outputs otherwise).
  model.hpa.history = 'all'
  # With history='last_k': how many most recent entries.
  model.hpa.last_k = 4
  # With history='blocks': number of block summaries (Block AttnRes).
  model.hpa.num_blocks = 8
  # Values of the depth attention: 'lpa' (v_i = k_i, the LPA record; mapped
  # back to C channels by a per-layer Linear `hpa_out` when d_c < C; pooled
  # records are broadcast back over the pooled axes) | 'raw' (v_i = h_i, or
  # the delta D_i with mode='replace').
  model.hpa.value = 'lpa'
  # Logit temperature: 'unit' (tau = 1) | 'sqrt_dim' (tau = sqrt(d_c)).
  model.hpa.temperature = 'unit'
  # Initial value of the per-channel HPA gain g_l (0 = exactly the backbone
  # at init; 1e-5 = near it with a live gradient).
  model.hpa.gain_init = 1e-5
  # Whether the embedding (slot 0) is part of the history (must be True with
  # mode='replace': the first layer's input is mixed from it).
  model.hpa.include_embedding = True

  # Layer Pose History Aggregation: the compact per-layer record that HPA
  # reads, computed once by the layer that produces h_i and cached.
  model.lpa = ml_collections.ConfigDict()
  # 'proj' (P1: RMSNorm(h) W) | 'pool' (P2) | 'bottleneck' (P3:
  # W2 GELU(W1 RMSNorm(h))) | 'rmsnorm' | 'identity'.
  model.lpa.mode = 'proj'
  # With mode='pool': 'joint' (temporal mean per joint) | 'frame' (joint mean
  # per frame) | 'part' (temporal mean of six H36M body parts; needs 17
  # joints). The pooled record gives one depth weight per pooled position.
  model.lpa.pool = 'joint'
  # Compact width d_c (of 'proj' / 'pool' records, the hidden width of
  # 'bottleneck'); 0 means d_c = dim.
  model.lpa.dim = 0
  # True: one LPA shared by all layers; False: one per producing layer.
  model.lpa.shared = False
  return model


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """Returns the run config; `arg` is 'frames=N' (27 | 81 | 243)."""
  options = dict(kv.split('=') for kv in arg.split(',') if kv)
  frames = int(options.pop('frames', 243))
  if options:
    raise ValueError(f'l2a_h36m.py: unknown config argument(s) {options}')

  config = ml_collections.ConfigDict()
  # Seed of parameter init, dropout and data shuffling.
  config.seed = 0
  config.model = get_model_config(frames)

  config.data = ml_collections.ConfigDict()
  # TFDS dataset name: 'h36m' | 'mpi_inf_3dhp' | 'bvh_motion' | 'synthetic'.
  config.data.name = 'h36m'
  # TFDS builder config of the dataset (None = the builder's default; for
  # h36m: 'motionbert' | 'videopose3d_cpn' | 'videopose3d_gt'; bvh_motion:
  # 'default' | 'noisy' | the corpus name given to `prepare --name`). Leave
  # None for 'synthetic': its config follows data.synthetic below.
  config.data.builder_config = 'motionbert'
  # Root of prepared TFDS datasets; None = ~/tensorflow_datasets.
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  # TFDS splits used for training and evaluation.
  config.data.train_split = 'train'
  config.data.test_split = 'test'
  # Frames per clip (must equal model.num_frames).
  config.data.num_frames = frames
  # More training data: 'name[/builder_config],...' of other prepared
  # datasets (same data_dir, same skeleton; 'synthetic' follows
  # data.synthetic) whose train splits join this dataset's training clips;
  # evaluation stays on this dataset. '' = none (configs/real_motion.py:
  # 'synthetic').
  config.data.extra_train = ''
  # Window stride for training clips (T/3, overlapping, as the lineage).
  config.data.train_stride = frames // 3
  # Window stride for test clips (T: non-overlapping, the protocol).
  config.data.test_stride = frames
  # Input 2D: 'detected' (the dataset's detections with confidence) | 'gt'
  # (x, y of the normalised 3D label, confidence 1; the GT-2D setting).
  config.data.input_2d = 'detected'
  # Training targets of datasets with camera-space mm labels (synthetic,
  # bvh_motion, MPI-INF-3DHP, VideoPose3D Human3.6M): 'camera' (root-relative
  # mm * 2 / W; evaluated against the camera-space mm pose) | 'image_2_5d'
  # (MotionBERT's image-space 2.5D label, data_and_metrics.md section 10.9b:
  # (u, v, (Z - Z_root) / lambda) in pixels, lambda = Z_root / f_x mm per
  # pixel, times 2 / W; evaluated in mm as the Human3.6M protocol does, the
  # prediction times W / 2 times lambda against the 2.5D mm pose; needs the
  # camera intrinsics). Image-space labels (MotionBERT Human3.6M) are 2.5D
  # already and ignore it.
  config.data.target_space = 'camera'
  # Random left-right flip of input and target with probability 0.5.
  config.data.flip_augment = True
  # Global batch size (split over processes and devices).
  config.data.batch_size = 16
  # Global evaluation batch size (the last batch is padded and masked).
  config.data.eval_batch_size = 16
  # Host threads reading and windowing clips; batches prefetched ahead.
  config.data.num_threads = 4
  config.data.prefetch_batches = 4
  # Size of the procedural dataset when data.name == 'synthetic' (built
  # automatically into data_dir on first use, a few seconds, no download;
  # the defaults are the TFDS config 'synthetic/default').
  config.data.synthetic = ml_collections.ConfigDict()
  # Subjects (bodies with their own bone lengths and style) per split.
  config.data.synthetic.num_train_subjects = 4
  config.data.synthetic.num_test_subjects = 2
  # Sequences per subject; their main motions cycle through walking,
  # turning, reaching, crouching, jumping, mixed.
  config.data.synthetic.sequences_per_subject = 6
  # Frames per sequence at 50 fps.
  config.data.synthetic.num_frames = 600
  # Virtual cameras per sequence (each view is one video).
  config.data.synthetic.num_cameras = 4
  # Detector-like 2D noise in pixels (0 = exact 2D, confidence 1).
  config.data.synthetic.noise_px = 0.0
  # Seed of bodies, motions and cameras (independent of config.seed).
  config.data.synthetic.seed = 0

  config.loss = ml_collections.ConfigDict()
  # Weights of the training loss terms (normalised, root-relative units).
  config.loss.mpjpe = 1.0
  config.loss.n_mpjpe = 0.5
  config.loss.velocity = 20.0
  # Optional terms (lineage: weight 0, logged only).
  config.loss.limb_variance = 0.0
  config.loss.limb_gt = 0.0

  config.optim = ml_collections.ConfigDict()
  # 'adamw' | 'adam' (Adam with amsgrad=optim.amsgrad, no weight decay) |
  # 'lamb' | 'lars' (layer-wise adaptive, for large batches; optax).
  config.optim.optimizer = 'adamw'
  config.optim.amsgrad = False
  # Peak learning rate.
  config.optim.learning_rate = 5e-4
  # Decoupled weight decay (AdamW).
  config.optim.weight_decay = 0.01
  # Parameters that get weight decay: 'all' (lineage) | 'no_norm_bias'
  # (exclude LayerNorm/RMSNorm, biases, embeddings, layer scales).
  config.optim.weight_decay_mask = 'all'
  # Schedule: 'epoch_decay' (x lr_decay after every epoch, staircase) |
  # 'cosine' (to 0 over training).
  config.optim.schedule = 'epoch_decay'
  config.optim.lr_decay = 0.99
  # Linear warm-up from 0 over warmup_steps + warmup_epochs x steps per
  # epoch updates (0 = off, lineage).
  config.optim.warmup_steps = 0
  config.optim.warmup_epochs = 0.0
  # Peak learning rate scaled with the global batch B: learning_rate x
  # (B / lr_base_batch) ** p, p = 0 'none' (lineage) | 1/2 'sqrt' (Adam,
  # LAMB) | 1 'linear' (SGD, LARS); see docs/scaling.md.
  config.optim.lr_scaling = 'none'
  config.optim.lr_base_batch = 16
  # Global-norm gradient clipping (0 = off, lineage).
  config.optim.grad_clip_norm = 0.0
  # Micro-batches per optimizer step (the batch is split into this many;
  # one update per step either way). -1 = auto: the fewest micro-batches
  # that put at most max_per_device_batch rows on a device, so the same
  # global batch starts on 1, 8, ... devices (run_setup.batch_split).
  config.optim.accumulation_steps = -1
  # Upper bound on rows per device per micro-batch for the auto choice
  # (0 = no bound: one micro-batch).
  config.optim.max_per_device_batch = 0

  config.train = ml_collections.ConfigDict()
  # Training length in epochs (one epoch = one pass over the training clips).
  config.train.num_epochs = 90
  # If > 0, overrides num_epochs with an exact number of steps.
  config.train.num_train_steps = -1
  # Cadences in steps (-1 = once per epoch for eval and checkpoints); the
  # last step always logs, evaluates and saves.
  config.train.log_every_steps = 100
  config.train.eval_every_steps = -1
  config.train.checkpoint_every_steps = -1
  # Checkpoints kept: the latest N plus the best by eval MPJPE.
  config.train.keep_checkpoints = 3
  # XLA's persistent compilation cache (reruns, resumes and evaluations
  # load the compiled steps): 'auto' = ~/.cache/l2a_jax/jax_compilation_cache,
  # '' = off, or a directory (e.g. next to the workdirs: '../xla_cache').
  config.train.compilation_cache_dir = 'auto'
  # Evaluate on at most this many test batches during training (-1 = all);
  # the final evaluation always uses the whole test set.
  config.train.eval_max_batches = -1

  config.eval = ml_collections.ConfigDict()
  # The protocol follows the data: Human3.6M averages per action, then over
  # the 15 actions (MotionBERT); other data average over all valid frames
  # and add PCK@150mm / AUC (MPI-INF-3DHP). See docs/training.md.
  # Flip test-time augmentation: average model(x) and flip(model(flip(x))).
  config.eval.flip_test = True
  # Write a picture of predicted vs ground-truth skeletons to the workdir.
  config.eval.write_picture = True

  config.mesh = ml_collections.ConfigDict()
  # Devices on the data-parallel axis (-1 = all devices of all processes,
  # divided by fsdp).
  config.mesh.data = -1
  # FSDP: devices sharing one copy of the parameters and optimizer state,
  # each holding 1/fsdp of it (1 = plain data parallelism; the batch is split
  # over data x fsdp devices either way; l2a_jax/sharding.py).
  config.mesh.fsdp = 1
  return config
