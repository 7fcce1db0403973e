r"""Tiny L2A on a tiny synthetic dataset: CPU smoke runs and the tests.

Same code path as the full configs (`l2a_h36m.py` documents every field);
only sizes and cadences change. Two layers of width 16 over 9 frames, a
synthetic dataset of one training and one test subject (prepared on first
use into `data.data_dir`, a second or so):

  python -m l2a_jax.main --config configs/tiny.py --workdir /tmp/tiny \
      --config.data.data_dir=/tmp/tfds
"""

import ml_collections

from l2a_jax import config_files


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """Returns the tiny config; `arg` as in l2a_h36m.py (default frames=9)."""
  base = config_files.load_sibling(__file__, 'l2a_h36m')
  config = base.get_config(arg or 'frames=9')

  config.model.depth = 2
  config.model.dim = 16
  config.model.num_heads = 2
  config.model.mlp_ratio = 2.0
  config.model.dim_rep = 32

  config.data.name = 'synthetic'
  config.data.builder_config = None
  # Sizes of the generated dataset (l2a_jax.data.synthetic_builder.synthetic_config).
  config.data.synthetic = ml_collections.ConfigDict(dict(
      num_train_subjects=1, num_test_subjects=1, sequences_per_subject=2,
      num_frames=120, num_cameras=1, noise_px=0.0, seed=0))
  config.data.input_2d = 'gt'
  # Divisible by 8 (the fake-device tests use 8 CPU devices).
  config.data.batch_size = 8
  config.data.eval_batch_size = 8
  config.data.num_threads = 1
  config.data.prefetch_batches = 1

  config.train.num_train_steps = 2
  config.train.log_every_steps = 1
  config.train.eval_every_steps = 2
  config.train.checkpoint_every_steps = 2
  config.train.keep_checkpoints = 2
  config.eval.flip_test = True
  config.eval.write_picture = False
  return config
