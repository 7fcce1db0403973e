"""TFDS builder of Human3.6M: `h36m/motionbert`, `h36m/videopose3d_cpn`,
`h36m/videopose3d_gt` (readers in `formats_h36m`)."""

import tensorflow_datasets as tfds

from l2a_jax.data import formats
from l2a_jax.data import formats_h36m
from l2a_jax.data import pose_builder


class H36mConfig(tfds.core.BuilderConfig):
  """Which Human3.6M source files and 2D."""


class H36m(pose_builder.ManualBuilder):
  """Human3.6M (MotionBERT pickle or VideoPose3D npz)."""

  BUILDER_CONFIGS = [
      H36mConfig(name='motionbert', description=(
          'MotionBERT h36m_sh_conf_cam_source_final.pkl: Stacked-Hourglass '
          '2D + confidence, image-space labels, 2.5D factor.')),
      H36mConfig(name='videopose3d_cpn', description=(
          'VideoPose3D data_3d_h36m.npz + CPN detections: camera mm.')),
      H36mConfig(name='videopose3d_gt', description=(
          'VideoPose3D data_3d_h36m.npz, 2D projected through the cameras.')),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'motionbert: put {formats_h36m.MOTIONBERT_FILE} in manual_dir. '
      f'videopose3d_*: put {formats_h36m.VIDEOPOSE3D_3D_FILE} (and '
      f'{formats_h36m.VIDEOPOSE3D_CPN_FILE} for _cpn) there. The files are '
      'read with a restricted unpickler only with --allow_pickle.')

  def _videos(self, split, directory):
    if self.builder_config.name == 'motionbert':
      path = formats.manual_file(directory, formats_h36m.MOTIONBERT_FILE)
      data = self._load(path, lambda: formats.load_pickle(
          path, allow_pickle=self._allow_pickle))
      return formats_h36m.motionbert_videos(data, split, path)

    def load(path, key):
      return self._load((path, key), lambda: formats.load_npz_object(
          path, key, allow_pickle=self._allow_pickle))

    two_d = self.builder_config.name.split('_')[-1]
    return formats_h36m.videopose3d_videos(directory, split, two_d, load=load)
