r"""Quickstart: a small L2A trained on the synthetic dataset in minutes.

The synthetic data (procedural human-like motion seen by four virtual
cameras, `l2a_jax.data.synthetic`) needs no download; it is generated into
`data.data_dir` (default ~/tensorflow_datasets) on first use in a few
seconds. On 2 CPU cores the whole run (start-up, compilation, 450 training
steps, final evaluation with flip test-time augmentation on 28,512 test
frames) takes about 2.5 minutes on an idle machine (138 s measured); it prints the test MPJPE and per-axis
errors next to three baselines (a per-frame linear least-squares lifter,
the mean training pose, the zero-depth back-projection of the 2D) and
writes `WORKDIR/eval_metrics.json`, `WORKDIR/skeletons.png` and
`WORKDIR/training_curves.png`:

  python -m l2a_jax.main --config configs/quickstart.py --workdir /tmp/qs

Expected (jax 0.10.2, CPU; 2.5D image-space targets evaluated in mm as
Human3.6M is, predicted root set to 0): MPJPE about 37.1 mm (x 2.0, y 2.5,
depth 36.6 mm), P-MPJPE about 26 mm, against the linear lifter's 45.3 mm
(depth 45.3), the mean pose's 186 mm (depth 107 mm: the constant-depth
guess) and the zero-depth back-projection's 115 mm (P-MPJPE 86 mm).
Three switches make a run this short lift (docs/training.md, "Diagnosis"):
`model.joint_embed='frame'`, `model.input_norm='root_scale'` and
`data.target_space='image_2_5d'`; without them the model keeps a constant
depth per joint for hundreds of steps.

Everything else is `l2a_h36m.py` (which documents every field).
"""

import ml_collections

from l2a_jax import config_files


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """Returns the quickstart config; `arg` as in l2a_h36m.py (frames=27)."""
  base = config_files.load_sibling(__file__, 'l2a_h36m')
  config = base.get_config(arg or 'frames=27')

  config.model.depth = 4
  config.model.dim = 32
  config.model.num_heads = 4
  config.model.mlp_ratio = 2.0
  config.model.dim_rep = 64
  # With 1e-5 the layers start almost switched off and need many steps to
  # matter; a short run learns more with the branches half open.
  config.model.layer_scale_init = 0.1
  # What makes a 5-minute run lift (docs/training.md, "Diagnosis"): every
  # token's embedding reads its whole frame (with one token per joint the
  # depth stays at the constant guess for hundreds of steps), and the 2D
  # enters relative to the root at unit size, the output scaled back
  # (without it even x, y take hundreds of Adam steps to reach their scale).
  config.model.joint_embed = 'frame'
  config.model.input_norm = 'root_scale'

  config.data.name = 'synthetic'
  config.data.builder_config = None
  # Sizes of the generated dataset: the builder's 'default' config (4 train
  # and 2 test subjects x 6 sequences x 600 frames x 4 cameras).
  config.data.synthetic = ml_collections.ConfigDict(dict(
      num_train_subjects=4, num_test_subjects=2, sequences_per_subject=6,
      num_frames=600, num_cameras=4, noise_px=0.0, seed=0))
  config.data.input_2d = 'gt'
  # MotionBERT's image-space 2.5D targets (x, y = the 2D offsets, depth in
  # the same pixel units), evaluated in mm as Human3.6M is: the pairing
  # input_norm='root_scale' is built for (metric x, y need the unknown
  # camera distance).
  config.data.target_space = 'image_2_5d'
  config.data.batch_size = 32
  config.data.eval_batch_size = 64
  config.data.num_threads = 2
  config.data.prefetch_batches = 2

  # A short run needs a larger step than the lineage's 5e-4 and a decay to
  # zero rather than 0.99 per epoch.
  config.optim.learning_rate = 3e-3
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 20

  # About 2.3 epochs of the synthetic training clips (300 steps: 42.5 mm,
  # 600: 33.8 mm; docs/training.md).
  config.train.num_train_steps = 450
  config.train.log_every_steps = 50
  config.train.eval_every_steps = 1000  # Only the final evaluation.
  config.train.checkpoint_every_steps = 225
  config.train.keep_checkpoints = 1
  config.eval.flip_test = True
  config.eval.write_picture = True
  return config
