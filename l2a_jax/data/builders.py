"""TFDS builders of the pose datasets, without TensorFlow.

Datasets (`name/config`):

- `h36m/motionbert`: MotionBERT's `h36m_sh_conf_cam_source_final.pkl`
  (Stacked-Hourglass 2D with confidence, image-space 3D labels, the 2.5D
  factor, camera ids and video names). Needs `allow_pickle`.
- `h36m/videopose3d_cpn`: VideoPose3D's `data_3d_h36m.npz` and
  `data_2d_h36m_cpn_ft_h36m_dbb.npz`: CPN 2D, camera parameters and
  camera-space millimetre targets. Needs `allow_pickle`.
- `h36m/videopose3d_gt`: the same 3D with 2D projected through the
  calibrated cameras (lens distortion included). Needs `allow_pickle`.
- `mpi_inf_3dhp`: P-STMO's `data_train_3dhp.npz` / `data_test_3dhp.npz`
  (MPI-17 joint order). Needs `allow_pickle`.
- `bvh_motion/default|noisy|<corpus>`: a folder of BVH files (`bvh.py`)
  seen by 4 virtual cameras per segment, exact 2D or with 3 px
  detector-like noise; a corpus name keeps several folders apart
  (`bvh_builder.bvh_config`).
- `synthetic/default|large|<custom>`: procedural motion (`synthetic.py`)
  seen by virtual cameras. No download.

Each dataset's builder has its own module (`h36m_builder`,
`mpi_inf_3dhp_builder`, `bvh_builder`, `synthetic_builder`), the source-file
readers sit next to `formats` (`formats_h36m`, `formats_3dhp`), the record
every builder writes is `records`, the base classes `pose_builder`.

Splits: 'train' and 'test'. Records keep generation order
(`disable_shuffling` with integer keys), so the frames of a split are the
source file's frames in order; the evaluation protocol relies on it.
"""

import fcntl
import os
import pathlib

from absl import logging
import tensorflow_datasets as tfds

from l2a_jax import console
from l2a_jax.data import bvh_builder
from l2a_jax.data import h36m_builder
from l2a_jax.data import mpi_inf_3dhp_builder
from l2a_jax.data import synthetic_builder

BUILDERS = {
    'h36m': h36m_builder.H36m,
    'mpi_inf_3dhp': mpi_inf_3dhp_builder.MpiInf3dhp,
    'bvh_motion': bvh_builder.BvhMotion,
    'synthetic': synthetic_builder.Synthetic,
}


def default_data_dir() -> str:
  """$TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return os.environ.get('TFDS_DATA_DIR',
                        os.path.expanduser('~/tensorflow_datasets'))


def get_builder(name: str, config=None, data_dir=None, **kwargs):
  """Instantiates a builder.

  Args:
    name: one of BUILDERS.
    config: a builder config name or instance (None = the first one).
    data_dir: TFDS data root (None = `default_data_dir()`).
    **kwargs: passed to the builder (e.g. allow_pickle=True).

  Returns:
    The builder (not yet prepared).
  """
  if name not in BUILDERS:
    raise ValueError(f'unknown dataset {name!r}; expected one of '
                     f'{sorted(BUILDERS)}')
  cls = BUILDERS[name]
  if name == 'bvh_motion' and isinstance(config, str):
    config = bvh_builder.bvh_config(config)  # a predefined or corpus name
  if isinstance(config, str):
    known = [c.name for c in cls.BUILDER_CONFIGS]
    if config not in known:
      raise ValueError(f'dataset {name} has no config {config!r}; expected '
                       f'one of {known}')
  if config is not None:
    kwargs['config'] = config
  return cls(data_dir=data_dir or default_data_dir(),
             file_format='array_record', **kwargs)


def prepare(builder, manual_dir=None) -> None:
  """Writes a builder's splits (atomically; TFDS renames a finished dir).

  A lock file next to the dataset makes concurrent callers (several
  processes of one run) wait for the first one instead of racing.
  """
  lock_dir = pathlib.Path(builder.data_dir_root) / builder.name
  lock_dir.mkdir(parents=True, exist_ok=True)
  lock_path = lock_dir / f'.{builder.builder_config.name}.lock' if (
      builder.builder_config) else lock_dir / '.lock'
  with open(lock_path, 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      if builder.is_prepared():
        return
      logging.info('Preparing %s in %s', builder.info.full_name,
                   builder.data_dir)
      # Progress bars would interleave with training logs.
      tfds.disable_progress_bar()
      try:
        # TFDS prints 'Downloading and preparing dataset Unknown size'; it
        # goes to the log file (shown with --verbosity=1).
        with console.printed_output_to_log():
          builder.download_and_prepare(
              download_config=tfds.download.DownloadConfig(
                  manual_dir=manual_dir, try_download_gcs=False))
      except BaseException:
        # TFDS removes its unfinished temporary directory; drop the empty
        # config directory it leaves, so nothing half-made remains.
        config_dir = pathlib.Path(builder.data_dir).parent
        if config_dir.is_dir() and not any(config_dir.iterdir()):
          config_dir.rmdir()
        raise
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
