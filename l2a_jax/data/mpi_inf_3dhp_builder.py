"""TFDS builder of MPI-INF-3DHP (`mpi_inf_3dhp`, reader in `formats_3dhp`)."""

from l2a_jax.data import formats_3dhp
from l2a_jax.data import pose_builder


class MpiInf3dhp(pose_builder.ManualBuilder):
  """MPI-INF-3DHP in the P-STMO npz form (MPI-17 joints, root 14)."""

  name = 'mpi_inf_3dhp'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Put {formats_3dhp.PSTMO_TRAIN_FILE} and {formats_3dhp.PSTMO_TEST_FILE} '
      'in manual_dir; they are read with a restricted unpickler only with '
      '--allow_pickle.')

  def _videos(self, split, directory):
    return formats_3dhp.pstmo_videos(directory, split,
                                     allow_pickle=self._allow_pickle)
