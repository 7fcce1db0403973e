r"""Quickstart: a small L2A trained on the synthetic dataset in minutes.

The synthetic data (procedural human-like motion seen by four virtual
cameras, `l2a_jax.data.synthetic`) needs no download; it is generated into
`data.data_dir` (default ~/tensorflow_datasets) on first use in a few
seconds. On 2 CPU cores the whole run (start-up, compilation, 200 training
steps, final evaluation with flip test-time augmentation on 28,512 test
frames) takes about 2-4 minutes; it prints the test MPJPE and per-axis
errors next to three baselines (a per-frame linear least-squares lifter,
the mean training pose, the zero-depth back-projection of the 2D) and
writes `WORKDIR/eval_metrics.json`, `WORKDIR/skeletons.png` and
`WORKDIR/training_curves.png`:

  python -m l2a_jax.main --config configs/quickstart.py --workdir /tmp/qs

Expected (jax 0.10.2, CPU, the corrected protocol: predicted root set to
0): MPJPE about 132 mm (x 46, y 30, depth 108 mm), P-MPJPE about 94 mm,
against the linear lifter's 64 mm (depth 48 mm), the mean pose's 176 mm
(depth 107 mm: the constant-depth guess) and the zero-depth
back-projection's P-MPJPE of 88 mm. This recipe does NOT learn relative
depth yet (issue 11, docs/training.md "Diagnosis"): it is a smoke run of
the pipeline, not a lifting result.

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
  # matter; a 200-step run learns more with the branches half open.
  config.model.layer_scale_init = 0.1

  config.data.name = 'synthetic'
  config.data.builder_config = None
  # Sizes of the generated dataset: the builder's 'default' config (4 train
  # and 2 test subjects x 6 sequences x 600 frames x 4 cameras).
  config.data.synthetic = ml_collections.ConfigDict(dict(
      num_train_subjects=4, num_test_subjects=2, sequences_per_subject=6,
      num_frames=600, num_cameras=4, noise_px=0.0, seed=0))
  config.data.input_2d = 'gt'
  config.data.batch_size = 32
  config.data.eval_batch_size = 64
  config.data.num_threads = 2
  config.data.prefetch_batches = 2

  # A short run needs a larger step than the lineage's 5e-4 and a decay to
  # zero rather than 0.99 per epoch.
  config.optim.learning_rate = 3e-3
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 20

  # About one epoch of the synthetic training clips.
  config.train.num_train_steps = 200
  config.train.log_every_steps = 50
  config.train.eval_every_steps = 1000  # Only the final evaluation.
  config.train.checkpoint_every_steps = 100
  config.train.keep_checkpoints = 1
  config.eval.flip_test = True
  config.eval.write_picture = True
  return config
