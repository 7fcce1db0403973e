r"""L2A on MPI-INF-3DHP (P-STMO preprocessing, ground-truth 2D input).

The lineage's 3DHP recipe (TCPFormer `train_3dhp.py`): T = 81 frames,
training windows every 9 frames, Adam with AMSGrad and no weight decay,
lr 5e-4 x 0.99 per epoch, 90 epochs, batch 8 (16 at T = 27, 32 at T = 9),
seed 1. Evaluation scores the centre frame of a window around every valid
test frame, with flip test-time augmentation: MPJPE over all 17 joints and
PCK@150mm / AUC over 14 joints, pooled over all valid frames of TS1-TS6
(computed in Python; see docs/training.md).

  python -m l2a_jax.data.prepare --dataset mpi_inf_3dhp --allow_pickle \
      --manual_dir DIR_WITH_NPZ --data_dir ~/tensorflow_datasets
  python -m l2a_jax.main --config configs/l2a_3dhp.py --workdir /tmp/l2a3dhp
  python -m l2a_jax.main --config configs/l2a_3dhp.py:frames=27 ...

The model section is L2A's (`l2a_h36m.py`); inputs and outputs are in the
MPI joint order. Note: LPA pooling 'part' assumes the H36M order.
"""

import ml_collections

from l2a_jax import config_files

# Lineage batch size per clip length.
BATCH_SIZE = {81: 8, 27: 16, 9: 32}


def apply_3dhp(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Turns an H36M config into the 3DHP recipe (shared with TCPFormer)."""
  frames = config.model.num_frames
  if frames not in BATCH_SIZE:
    raise ValueError(f'3DHP configs: frames must be one of '
                     f'{sorted(BATCH_SIZE)}, got {frames}')
  config.seed = 1
  config.data.name = 'mpi_inf_3dhp'
  config.data.builder_config = None
  config.data.train_stride = 9
  # Unused by the 3DHP test windows (one centred on every valid frame).
  config.data.test_stride = 1
  config.data.input_2d = 'gt'
  if 'root_joint' in config.model:  # L2A: MPI-INF-3DHP's root is joint 14.
    config.model.root_joint = 14
  config.data.batch_size = BATCH_SIZE[frames]
  config.data.eval_batch_size = 64
  config.optim.optimizer = 'adam'
  config.optim.amsgrad = True
  config.optim.weight_decay = 0.0
  config.train.num_epochs = 90
  return config


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """Returns the run config; `arg` is 'frames=N' (81 | 27 | 9; default 81)."""
  base = config_files.load_sibling(__file__, 'l2a_h36m')
  return apply_3dhp(base.get_config(arg or 'frames=81'))
