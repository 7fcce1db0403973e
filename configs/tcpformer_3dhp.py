r"""TCPFormer on MPI-INF-3DHP (the official `train_3dhp.py` recipe).

The TCPFormer model section (`tcpformer_h36m.py`) with the 3DHP data and
optimiser of `l2a_3dhp.py`: T = 81, Adam with AMSGrad, no weight decay,
batch 8 (16 at T = 27), no gradient accumulation, seed 1, 90 epochs.

  python -m l2a_jax.main --config configs/tcpformer_3dhp.py --workdir ...
  python -m l2a_jax.main --config configs/tcpformer_3dhp.py:frames=27 ...
"""

import ml_collections

from l2a_jax import config_files


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """Returns the run config; `arg` is 'frames=N' (81 | 27; default 81)."""
  tcpformer = config_files.load_sibling(__file__, 'tcpformer_h36m')
  l2a_3dhp = config_files.load_sibling(__file__, 'l2a_3dhp')
  config = tcpformer.get_config(arg or 'frames=81')
  config = l2a_3dhp.apply_3dhp(config)
  # The official 3DHP script trains without accumulation (auto with no
  # per-device bound: one micro-batch).
  config.optim.accumulation_steps = -1
  config.optim.max_per_device_batch = 0
  return config
