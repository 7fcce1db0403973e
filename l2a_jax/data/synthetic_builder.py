"""TFDS builder of the procedural motion of `synthetic.py`:
`synthetic/default|large|<custom>` (no download), and `synthetic_config`
for custom sizes."""

import tensorflow_datasets as tfds

from l2a_jax.data import pose_builder
from l2a_jax.data import records
from l2a_jax.data import synthetic


class SyntheticConfig(tfds.core.BuilderConfig):
  """Size and seed of the synthetic dataset."""

  def __init__(self, *, num_train_subjects=4, num_test_subjects=2,
               sequences_per_subject=6, num_frames=600, num_cameras=4,
               noise_px=0.0, seed=0, **kwargs):
    super().__init__(**kwargs)
    self.num_train_subjects = num_train_subjects
    self.num_test_subjects = num_test_subjects
    self.sequences_per_subject = sequences_per_subject
    self.num_frames = num_frames
    self.num_cameras = num_cameras
    self.noise_px = noise_px
    self.seed = seed

  @property
  def parameters(self) -> tuple:
    return (self.num_train_subjects, self.num_test_subjects,
            self.sequences_per_subject, self.num_frames, self.num_cameras,
            float(self.noise_px), self.seed)


_SYNTHETIC_PARAMETER_NAMES = (
    'num_train_subjects', 'num_test_subjects', 'sequences_per_subject',
    'num_frames', 'num_cameras', 'noise_px', 'seed')


class Synthetic(pose_builder.PoseBuilder):
  """Procedural human-like motion seen by virtual cameras (no download)."""

  BUILDER_CONFIGS = [
      SyntheticConfig(
          name='default', description=(
              'Quickstart size: 4 train + 2 test subjects x 6 sequences x '
              '600 frames (12 s) x 4 cameras.')),
      SyntheticConfig(
          name='large', num_train_subjects=8, num_test_subjects=2,
          sequences_per_subject=12, num_frames=1500, description=(
              '8 train + 2 test subjects x 12 sequences x 1500 frames x 4 '
              'cameras.')),
  ]

  def _videos(self, split, directory):
    del directory
    config = self.builder_config
    if split == 'train':
      subjects = range(config.num_train_subjects)
    else:
      subjects = range(config.num_train_subjects,
                       config.num_train_subjects + config.num_test_subjects)
    for local, subject_index in enumerate(subjects):
      subject = synthetic.sample_subject(
          synthetic.subject_rng(config.seed, subject_index))
      for sequence in range(config.sequences_per_subject):
        # Actions rotate over the split so every split covers all of them.
        action = synthetic.ACTIONS[
            (local * config.sequences_per_subject + sequence)
            % len(synthetic.ACTIONS)]
        rng = synthetic.sequence_rng(config.seed, subject_index, sequence)
        poses = synthetic.generate_sequence(action, config.num_frames,
                                            subject, rng)
        name = f'subject{subject_index}_seq{sequence}'
        yield from records.views_to_examples(
            poses, num_cameras=config.num_cameras, rng=rng,
            noise_px=config.noise_px, up_axis=1,
            subject=f'subject{subject_index}', action=action, name=name,
            where=f'synthetic {name}')


def synthetic_config(**parameters) -> SyntheticConfig:
  """The synthetic config with these parameters (a predefined one if equal).

  Args:
    **parameters: any of num_train_subjects, num_test_subjects,
      sequences_per_subject, num_frames, num_cameras, noise_px, seed.

  Returns:
    'default' or 'large' if the parameters match, else a config named after
    its parameters, e.g. 'train4_test2_seq6_frames600_cams4_noise0_seed0'
    (noise in tenths of a pixel).
  """
  unknown = set(parameters) - set(_SYNTHETIC_PARAMETER_NAMES)
  if unknown:
    raise ValueError(f'unknown synthetic parameters {sorted(unknown)}')
  config = SyntheticConfig(name='candidate', **parameters)
  for predefined in Synthetic.BUILDER_CONFIGS:
    if predefined.parameters == config.parameters:
      return predefined
  (train, test, sequences, frames, cams, noise, seed) = config.parameters
  if min(train, test, sequences, frames, cams) < 1 or noise < 0 or seed < 0:
    raise ValueError(f'synthetic parameters must be positive: {parameters}')
  name = (f'train{train}_test{test}_seq{sequences}_frames{frames}_cams{cams}'
          f'_noise{int(round(noise * 10))}_seed{seed}')
  return SyntheticConfig(name=name, **parameters)
