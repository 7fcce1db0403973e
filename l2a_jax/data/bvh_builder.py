"""TFDS builder of BVH motion capture: `bvh_motion/default|noisy`.

A folder of .bvh files (any depth; `bvh.py` reads them and maps them onto
the 17 Human3.6M joints), split by `test_files.txt` or every fifth file,
seen by virtual cameras (`records.views_to_examples`).
"""

import pathlib
import zlib

import numpy as np
import tensorflow_datasets as tfds

from l2a_jax.data import bvh
from l2a_jax.data import formats
from l2a_jax.data import pose_builder
from l2a_jax.data import records


BVH_MAPPING_FILE = 'mapping.json'
BVH_TEST_LIST_FILE = 'test_files.txt'


class BvhConfig(tfds.core.BuilderConfig):
  """Virtual cameras and 2D noise of the BVH dataset."""

  def __init__(self, *, num_cameras=4, noise_px=0.0, seed=0, **kwargs):
    super().__init__(**kwargs)
    self.num_cameras = num_cameras
    self.noise_px = noise_px
    self.seed = seed


def bvh_split_files(directory) -> dict:
  """{'train': [...], 'test': [...]} BVH paths of a folder.

  `test_files.txt` (one file name per line, relative to the folder) names
  the test files; without it every fifth file in sorted order (the 5th,
  10th, ...; the last one if there are fewer than 5) is a test file.

  Raises:
    DataError: fewer than 2 files, or a listed test file that is missing.
  """
  directory = pathlib.Path(directory)
  files = sorted(p for p in directory.rglob('*') if p.is_file()
                 and p.suffix.lower() == '.bvh')
  if len(files) < 2:
    raise formats.DataError(
        f'{directory}: bvh_motion needs at least 2 .bvh files '
        f'(train and test), found {len(files)}')
  listing = directory / BVH_TEST_LIST_FILE
  if listing.is_file():
    names = [line.strip() for line in listing.read_text().splitlines()
             if line.strip() and not line.startswith('#')]
    test = []
    for name in names:
      path = directory / name
      if path not in files:
        raise formats.DataError(
            f'{listing}: {name!r} is not a .bvh file in '
            f'{directory}')
      test.append(path)
  else:
    test = files[4::5] or files[-1:]
  train = [p for p in files if p not in test]
  if not train or not test:
    raise formats.DataError(
        f'{directory}: need at least one train and one test file')
  return {'train': train, 'test': test}


class BvhMotion(pose_builder.ManualBuilder):
  """A folder of BVH files as Human3.6M joints seen by virtual cameras."""

  name = 'bvh_motion'
  BUILDER_CONFIGS = [
      BvhConfig(name='default', num_cameras=4, noise_px=0.0,
                description='4 virtual cameras, exact 2D (confidence 1).'),
      BvhConfig(name='noisy', num_cameras=4, noise_px=3.0,
                description='4 virtual cameras, 3 px detector-like noise.'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put .bvh files (any depth) in manual_dir; optional mapping.json for '
      'non-CMU skeletons and test_files.txt listing the test files.')

  def _videos(self, split, directory):
    if directory is None:
      raise formats.DataError(
          'bvh_motion needs --manual_dir (a folder of .bvh)')
    config = self.builder_config
    directory = pathlib.Path(directory)
    mapping_path = directory / BVH_MAPPING_FILE
    mapping = bvh.load_mapping(mapping_path) if mapping_path.is_file() else None
    for path in bvh_split_files(directory)[split]:
      relative = str(path.relative_to(directory))
      clip = bvh.read_bvh(path)
      clip_mapping = mapping
      if clip_mapping is None:
        clip_mapping = bvh.detect_mapping(clip, str(path))
      poses = bvh.resample(bvh.to_h36m(clip, clip_mapping, str(path)),
                           clip.fps, bvh.TARGET_FPS)
      # Cameras depend on the file name, not on which other files exist.
      rng = np.random.default_rng(
          [config.seed, zlib.crc32(relative.encode())])
      yield from records.views_to_examples(
          poses, num_cameras=config.num_cameras, rng=rng,
          noise_px=config.noise_px, up_axis=clip_mapping.up_axis,
          subject=path.stem, action=path.stem, name=path.stem,
          where=str(path))
