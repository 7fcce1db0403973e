"""Reader of P-STMO's MPI-INF-3DHP files (`data_train_3dhp.npz`,
`data_test_3dhp.npz`): one validated record per video (`records`);
`mpi_inf_3dhp_builder.MpiInf3dhp` writes them."""

import numpy as np

from l2a_jax.data import formats
from l2a_jax.data import records


PSTMO_TRAIN_FILE = 'data_train_3dhp.npz'
PSTMO_TEST_FILE = 'data_test_3dhp.npz'


def _3dhp_image_size(sequence: str):
  return (1920, 1080) if sequence in ('TS5', 'TS6') else (2048, 2048)


def pstmo_videos(directory, split: str, *, allow_pickle: bool):
  """Yields the records of one split of P-STMO's MPI-INF-3DHP files.

  Train: one record per (subject, sequence, camera), 2048 x 2048 images.
  Test: one record per sequence TS1..TS6 with its valid-frame mask; TS5 and
  TS6 are 1920 x 1080.

  Raises:
    DataError: missing files, keys, shapes, NaNs.
  """
  name = PSTMO_TRAIN_FILE if split == 'train' else PSTMO_TEST_FILE
  path = formats.manual_file(directory, name)
  data = formats.load_npz_object(path, 'data', allow_pickle=allow_pickle)
  if not isinstance(data, dict):
    raise formats.DataError(
        f'{path}: data: expected a dict, got '
        f'{type(data).__name__}')
  for sequence in sorted(data):
    where = f'{path} data[{sequence!r}]'
    if split == 'train':
      entry = data[sequence]
      if not isinstance(entry, (list, tuple)) or not entry:
        raise formats.DataError(f'{where}: expected [camera dict, fps]')
      cams = entry[0]
      fps = float(entry[1]) if len(entry) > 1 else 0.0
      subject = str(sequence).split(' ')[0]
      for camera in sorted(cams, key=str):
        anim = cams[camera]
        camera_where = f'{where}[0][{camera!r}]'
        keypoints = formats.check_array(
            formats.require_key(anim, 'data_2d', camera_where),
            (None, 17, 2), f'{camera_where} data_2d')
        joints = formats.check_array(
            formats.require_key(anim, 'data_3d', camera_where),
            (keypoints.shape[0], 17, 3), f'{camera_where} data_3d')
        yield records.make_example(
            keypoints_2d=keypoints, joints_3d=joints,
            image_size=(2048, 2048), label_space='camera_mm',
            skeleton='mpi', camera=str(camera), subject=subject, action='',
            source=f'{sequence} cam {camera}', fps=fps, where=camera_where)
    else:
      anim = data[sequence]
      keypoints = formats.check_array(
          formats.require_key(anim, 'data_2d', where), (None, 17, 2),
          f'{where} data_2d')
      frames = keypoints.shape[0]
      joints = formats.check_array(
          formats.require_key(anim, 'data_3d', where), (frames, 17, 3),
          f'{where} data_3d')
      valid = formats.check_array(
          np.asarray(formats.require_key(anim, 'valid', where)).reshape(-1),
          (frames,), f'{where} valid')
      yield records.make_example(
          keypoints_2d=keypoints, joints_3d=joints,
          image_size=_3dhp_image_size(str(sequence)),
          label_space='camera_mm', skeleton='mpi', camera='',
          subject=str(sequence), action=str(sequence), source=str(sequence),
          fps=50.0 if sequence in ('TS5', 'TS6') else 25.0, where=where,
          valid=valid > 0)
