"""TFDS builder of BVH motion capture: `bvh_motion/default|noisy|<corpus>`.

A folder of .bvh files (any depth; `bvh.py` reads them and maps them onto
the 17 Human3.6M joints), split by `test_files.txt` or every fifth file,
cut into segments the cameras can follow and seen by virtual cameras
(`records.views_to_examples`). docs/data.md describes the folder layout.

- Mappings: a file uses the `mapping.json` of its own folder or the nearest
  folder above it (up to `--manual_dir`) when the file has every node that
  mapping reads; otherwise a built-in naming scheme is detected from its
  node names. So CMU clips and clips of other skeletons (each kind in a
  sub-folder with its mapping.json) share one dataset.
- Rejected files (unreadable, unknown naming, implausible body, ...) are
  skipped with a warning naming the file and the reason; preparation fails
  only when no file is usable, or at the first rejected file with `strict`.
- Splits: `test_files.txt` lists test files as paths or glob patterns
  relative to the folder (`*` = every file: a test-only corpus; an empty
  list: a train-only corpus); without it every fifth file in sorted order
  (the last one if there are fewer than five) is a test file.
- Cameras follow the subject: each clip is cut into segments in which the
  root stays within `SEGMENT_RADIUS_MM` of the segment's centre (at least
  `MIN_SEGMENT_S` long, `cameras.segments_in_reach`), and each segment gets
  its own K cameras, so root depths stay in Human3.6M's range.
- Corpora: config `default` / `noisy`, or a corpus name (`bvh_config`):
  'studio' has the default cameras and noise, 'studio_noisy' the noisy
  one, each in its own directory `DATA_DIR/bvh_motion/<name>/`.
"""

import fnmatch
import pathlib
import re
import warnings
import zlib

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from l2a_jax.data import bvh
from l2a_jax.data import cameras as cameras_lib
from l2a_jax.data import formats
from l2a_jax.data import pose_builder
from l2a_jax.data import records


BVH_MAPPING_FILE = 'mapping.json'
BVH_TEST_LIST_FILE = 'test_files.txt'
# A segment's root stays within this distance of the segment's centre, so
# the cameras (4.5-5.5 m from its mean root) see it at 3-7 m, as Human3.6M's
# cameras see a subject within ~2 m of the middle of the capture area.
SEGMENT_RADIUS_MM = 1500.0
# Shortest segment, seconds (a shorter tail joins the segment before it).
MIN_SEGMENT_S = 2.0
_CORPUS_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')


class BvhConfig(tfds.core.BuilderConfig):
  """Virtual cameras and 2D noise of the BVH dataset."""

  def __init__(self, *, num_cameras=4, noise_px=0.0, seed=0, **kwargs):
    super().__init__(**kwargs)
    self.num_cameras = num_cameras
    self.noise_px = noise_px
    self.seed = seed


_PREDEFINED = (
    BvhConfig(name='default', num_cameras=4, noise_px=0.0,
              description='4 virtual cameras, exact 2D (confidence 1).'),
    BvhConfig(name='noisy', num_cameras=4, noise_px=3.0,
              description='4 virtual cameras, 3 px detector-like noise.'),
)


def bvh_config(name: str) -> BvhConfig:
  """The config called `name`: 'default', 'noisy' or a corpus name.

  A corpus name ('cmu', 'studio', ...) gets the default cameras and exact
  2D; a name ending in '_noisy' ('studio_noisy') the noisy config's.

  Raises:
    ValueError: a name with characters other than letters, digits, '_',
      '-' and '.' (or longer than 64).
  """
  for config in _PREDEFINED:
    if config.name == name:
      return config
  if not isinstance(name, str) or not _CORPUS_NAME.match(name):
    raise ValueError(
        f'bvh_motion corpus name {name!r}: expected letters, digits, "_", '
        '"-" or "." (at most 64, starting with a letter or digit)')
  base = _PREDEFINED[1] if name.endswith('_noisy') else _PREDEFINED[0]
  return BvhConfig(
      name=name, num_cameras=base.num_cameras, noise_px=base.noise_px,
      seed=base.seed, description=f'BVH corpus {name!r}: '
      + base.description)


def corpus_config_name(corpus: str, config: str | None) -> str:
  """The config name of corpus `corpus` with base config `config`."""
  if config in (None, 'default'):
    return corpus
  if config == 'noisy':
    return f'{corpus}_noisy'
  raise ValueError(f'bvh_motion --name {corpus}: --builder_config must be '
                   f'default or noisy, got {config!r}')


def bvh_split_files(directory) -> dict:
  """{'train': [...], 'test': [...]} BVH paths of a folder, in sorted order.

  `test_files.txt` (one path or glob pattern per line, relative to the
  folder, `#` comments) selects the test files; `*` selects every file (a
  test-only corpus) and a list without entries none (train-only). Without
  it, every fifth file in sorted order (the 5th, 10th, ...; the last one if
  there are fewer than 5) is a test file.

  Raises:
    DataError: no .bvh file, or a listed entry that matches no file.
  """
  directory = pathlib.Path(directory)
  files = sorted(p for p in directory.rglob('*') if p.is_file()
                 and p.suffix.lower() == '.bvh')
  if not files:
    raise formats.DataError(f'{directory}: no .bvh files (any depth)')
  relative = {p: p.relative_to(directory).as_posix() for p in files}
  listing = directory / BVH_TEST_LIST_FILE
  if listing.is_file():
    patterns = [line.strip() for line in listing.read_text().splitlines()
                if line.strip() and not line.strip().startswith('#')]
    chosen = set()
    for pattern in patterns:
      matched = {p for p in files if fnmatch.fnmatchcase(relative[p],
                                                         pattern)}
      if not matched:
        raise formats.DataError(
            f'{listing}: {pattern!r} matches no .bvh file in {directory}')
      chosen |= matched
    test = [p for p in files if p in chosen]
  else:
    test = files[4::5] or files[-1:]
  train = [p for p in files if p not in test]
  return {'train': train, 'test': test}


def _mapping_file(path: pathlib.Path, directory: pathlib.Path):
  """The mapping.json nearest above `path` within `directory`, or None."""
  folder = path.parent
  while True:
    candidate = folder / BVH_MAPPING_FILE
    if candidate.is_file():
      return candidate
    if folder == directory or directory not in folder.parents:
      return None
    folder = folder.parent


class BvhMotion(pose_builder.ManualBuilder):
  """A folder of BVH files as Human3.6M joints seen by virtual cameras."""

  name = 'bvh_motion'
  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release.',
      '2.0.0': ('Joints follow Human3.6M definitions (pelvis between the '
                'hips, thorax at shoulder height); cameras per segment; '
                'per-folder mappings; rejected files skipped.'),
  }
  BUILDER_CONFIGS = list(_PREDEFINED)
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put .bvh files (any depth) in manual_dir; optional mapping.json per '
      'folder for non-CMU skeletons and test_files.txt listing the test '
      'files (paths or glob patterns).')

  def __init__(self, *, strict: bool = False, **kwargs):
    self._strict = strict
    # (file, reason) of every skipped file and (file, message) of every
    # repair warning of the last preparation.
    self.skipped = []
    self.notes = []
    self._imported = None
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    directory = self._input_dir(dl_manager)
    if directory is None:
      raise formats.DataError(
          'bvh_motion needs --manual_dir (a folder of .bvh)')
    self._imported = self._import_all(pathlib.Path(directory))
    # TFDS cannot write an empty split: a test-only corpus has no 'train'
    # split at all (and a train-only one no 'test').
    return {split: self._keyed(split, directory)
            for split, files in self._imported.items() if files}

  def _import_all(self, directory: pathlib.Path) -> dict:
    """{split: [(path, poses [F, 17, 3] mm at 50 fps, up_axis)]}."""
    self.skipped, self.notes = [], []
    mappings = {}
    imported = {}
    for split, paths in bvh_split_files(directory).items():
      imported[split] = []
      for path in paths:
        mapping_path = _mapping_file(path, directory)
        if mapping_path is not None and mapping_path not in mappings:
          # A broken mapping file is a setup error for all its files.
          mappings[mapping_path] = bvh.load_mapping(mapping_path)
        mapping = mappings.get(mapping_path)
        with warnings.catch_warnings(record=True) as caught:
          warnings.simplefilter('always', bvh.BvhWarning)
          try:
            poses, up_axis = self._import_file(path, mapping, mapping_path)
          except (bvh.BvhError, formats.DataError) as error:
            if self._strict:
              raise
            self.skipped.append((path, str(error)))
            logging.info('bvh_motion: skipping %s', error)
            continue
        for warning in caught:
          if issubclass(warning.category, bvh.BvhWarning):
            self.notes.append((path, str(warning.message)))
            logging.info('bvh_motion: %s', warning.message)
        imported[split].append((path, poses, up_axis))
    if not any(imported.values()):
      reasons = '; '.join(reason for _, reason in self.skipped[:3])
      raise formats.DataError(
          f'{directory}: no usable .bvh file ({len(self.skipped)} rejected: '
          f'{reasons}{"; ..." if len(self.skipped) > 3 else ""})')
    return imported

  @staticmethod
  def _import_file(path, mapping, mapping_path):
    clip = bvh.read_bvh(path)
    if mapping is not None:
      missing = [n for n in mapping.nodes if n not in set(clip.names)]
      if missing:
        try:
          mapping = bvh.detect_mapping(clip, str(path))
        except bvh.BvhError:
          raise bvh.BvhError(
              f'{path}: lacks nodes {missing[:5]} of {mapping_path} and '
              'matches no built-in naming scheme') from None
    else:
      mapping = bvh.detect_mapping(clip, str(path))
    poses = bvh.resample(bvh.to_h36m(clip, mapping, str(path)), clip.fps,
                         bvh.TARGET_FPS)
    if poses.shape[0] < 2:
      raise bvh.BvhError(f'{path}: fewer than 2 frames at '
                         f'{bvh.TARGET_FPS:g} fps')
    return poses, mapping.up_axis

  def _videos(self, split, directory):
    config = self.builder_config
    directory = pathlib.Path(directory)
    min_frames = int(MIN_SEGMENT_S * bvh.TARGET_FPS)
    for path, poses, up_axis in self._imported[split]:
      relative = path.relative_to(directory).as_posix()
      name = relative[:-len(path.suffix)]
      segments = cameras_lib.segments_in_reach(
          poses, up_axis=up_axis, radius_mm=SEGMENT_RADIUS_MM,
          min_frames=min_frames)
      examples = []
      try:
        for s, (start, end) in enumerate(segments):
          # Cameras depend on the file name and segment, not on which other
          # files exist.
          rng = np.random.default_rng(
              [config.seed, zlib.crc32(relative.encode()), s])
          examples += records.views_to_examples(
              poses[start:end], num_cameras=config.num_cameras, rng=rng,
              noise_px=config.noise_px, up_axis=up_axis, subject=path.stem,
              action=path.stem, name=f'{name}_seg{s}',
              where=f'{path} frames {start}:{end}')
      except ValueError as error:  # a camera that cannot see the segment
        if self._strict:
          raise
        self.skipped.append((path, f'{path}: {error}'))
        logging.info('bvh_motion: skipping %s: %s', path, error)
        continue
      yield from examples
