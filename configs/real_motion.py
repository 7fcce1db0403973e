r"""Real motion: L2A trained on synthetic plus real mocap, tested on real clips.

Trains on the synthetic dataset's training split *and* the training files
of a BVH corpus (`data.extra_train = 'synthetic'` joins the synthetic
clips to the corpus's own), and evaluates on the corpus's held-out test
files: MPJPE / P-MPJPE in mm, per axis, next to the linear lifter, the
mean pose and the zero-relative-depth back-projection of the 2D (the
baseline to beat on P-MPJPE: it is what a model that learned no depth
scores). About 28 minutes on 2 CPU cores (measured with another job
sharing them: docs/training.md, "Real motion"): held-out P-MPJPE 57.2 mm
against the zero-depth back-projection's 81.9 mm.

The corpus is a folder of BVH files whose `test_files.txt` names the
held-out ones; `launch/real_motion.sh` builds it from the two CMU clips
(01_01 trains, 131_01 is held out) and runs this config:

  bash launch/real_motion.sh ../shared/realdata /tmp/real_motion

or by hand:

  python -m l2a_jax.data.prepare --dataset bvh_motion --name cmu \
      --manual_dir CORPUS --data_dir DATA_DIR
  python -m l2a_jax.main --config configs/real_motion.py --workdir WORKDIR \
      --config.data.data_dir=DATA_DIR

Measured results: docs/training.md, "Real motion".

Everything not set here is `quickstart.py` / `l2a_h36m.py` (which
documents every field).
"""

import ml_collections

from l2a_jax import config_files


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """Returns the real-motion config; `arg` as in l2a_h36m.py (frames=27)."""
  base = config_files.load_sibling(__file__, 'quickstart')
  config = base.get_config(arg)

  # Twice the quickstart's width: real motion is more varied.
  config.model.dim = 64
  config.model.dim_rep = 128

  # The test split is the corpus's held-out files; the training split is
  # its training files plus the synthetic training split (data.synthetic:
  # the quickstart's 'default' sizes, built into data.data_dir on first
  # use).
  config.data.name = 'bvh_motion'
  config.data.builder_config = 'cmu'  # launch/real_motion.sh's --name.
  config.data.extra_train = 'synthetic'
  # Keeps quickstart's exact 2D, 2.5D targets and batch 32.

  config.optim.learning_rate = 2e-3
  config.optim.warmup_steps = 50
  config.train.num_train_steps = 1500
  config.train.log_every_steps = 100
  config.train.eval_every_steps = 500
  config.train.checkpoint_every_steps = 500
  return config
