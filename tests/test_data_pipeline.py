"""Tests of the grain input pipeline on a tiny synthetic dataset."""


import ml_collections
import numpy as np
import pytest

from l2a_jax.data import input_pipeline
from l2a_jax.data import skeleton
from l2a_jax.data import transforms

T = 9
TINY = dict(num_train_subjects=1, num_test_subjects=1,
            sequences_per_subject=2, num_frames=120, num_cameras=2,
            noise_px=0.0, seed=5)


def _config(data_dir, **overrides):
  config = ml_collections.ConfigDict(dict(
      name='synthetic', builder_config=None, data_dir=str(data_dir),
      train_split='train', test_split='test', num_frames=T, train_stride=3,
      test_stride=T, input_2d='detected', flip_augment=False, batch_size=8,
      eval_batch_size=6, num_threads=2, prefetch_batches=2,
      synthetic=dict(TINY)))
  config.update(overrides)
  return config


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp('tfds')
  input_pipeline.get_datasets(_config(directory), seed=0, process_index=0,
                              process_count=1)
  return directory


def _datasets(data_dir, process_index=0, process_count=1, seed=0,
              **overrides):
  return input_pipeline.get_datasets(
      _config(data_dir, **overrides), seed=seed, process_index=process_index,
      process_count=process_count)


def _rows(array):
  return [row.tobytes() for row in array]


def test_strided_windows_follow_the_h36m_protocol():
  bounds = np.array([[0, 500], [500, 743], [743, 843], [843, 1573]])
  clips = input_pipeline.strided_clips(bounds, 243, 81)
  assert np.bincount(clips.video).tolist() == [4, 1, 1, 7]
  test = input_pipeline.strided_clips(bounds, 243, 243)
  assert np.bincount(test.video).tolist() == [2, 1, 1, 3]  # tails dropped
  index = test.frame_indices(np.arange(len(test)), 243)
  np.testing.assert_array_equal(index[1], np.arange(243, 486))
  np.testing.assert_array_equal(index[-1], np.arange(843 + 486, 843 + 729))
  # The 100-frame video is stretched to 243 frames (floor linspace).
  np.testing.assert_array_equal(
      index[3], 743 + transforms.resample_indices(100, 243))


def test_3dhp_windows_stretch_tails_and_centre_on_valid_frames():
  bounds = np.array([[0, 30], [30, 35]])
  clips = input_pipeline.stretched_clips(bounds, 9, 9)
  assert np.bincount(clips.video).tolist() == [4, 1]
  index = clips.frame_indices(np.arange(len(clips)), 9)
  np.testing.assert_array_equal(index[3], [27, 27, 27, 28, 28, 28, 29, 29, 29])
  np.testing.assert_array_equal(index[4], 30 + transforms.resample_indices(5,
                                                                            9))
  valid = np.zeros(35, bool)
  valid[[0, 10, 29, 33]] = True
  centred = input_pipeline.centred_clips(bounds, valid, 9)
  assert len(centred) == 4 and centred.centre_only.all()
  index = centred.frame_indices(np.arange(4), 9)
  np.testing.assert_array_equal(index[:, 4], [0, 10, 29, 33])
  np.testing.assert_array_equal(index[0], [0, 0, 0, 0, 0, 1, 2, 3, 4])
  np.testing.assert_array_equal(index[2], [25, 26, 27, 28, 29, 29, 29, 29, 29])
  np.testing.assert_array_equal(index[3], [30, 30, 31, 32, 33, 34, 34, 34,
                                           34])


def test_batch_contract_and_normalisation(data_dir):
  datasets = _datasets(data_dir)
  info = datasets.info
  videos = 2 * 2  # sequences x cameras per split
  assert info.skeleton == 'h36m' and info.root_joint == 0
  assert info.num_train_clips == videos * ((120 - T) // 3 + 1)
  assert info.num_test_clips == videos * (120 // T)
  assert info.num_test_frames == videos * 120
  assert info.steps_per_epoch == -(-info.num_train_clips // 8)
  assert info.action_names == ('walking', 'turning')
  batch = next(datasets.train_iter)
  assert set(batch) == {'inputs', 'targets'}
  assert batch['inputs'].shape == (8, T, 17, 3)
  assert batch['inputs'].dtype == np.float32
  assert batch['targets'].shape == (8, T, 17, 3)
  np.testing.assert_array_equal(batch['targets'][:, :, 0], 0)
  assert np.abs(batch['inputs'][..., 0]).max() <= 1
  np.testing.assert_array_equal(batch['inputs'][..., 2], 1)

  eval_batch = next(datasets.make_eval_iter())
  expected = {'inputs': ((6, T, 17, 3), np.float32),
              'targets': ((6, T, 17, 3), np.float32),
              'mask': ((6,), np.bool_),
              'targets_mm': ((6, T, 17, 3), np.float32),
              'scale_to_mm': ((6, T), np.float32),
              'zero_depth_scale': ((6, T, 2), np.float32),
              'valid': ((6, T), np.bool_),
              'frame_id': ((6, T), np.int64),
              'action_id': ((6,), np.int32)}
  assert {k: (v.shape, v.dtype) for k, v in eval_batch.items()} == expected
  # Camera-space data: scale_to_mm = w / 2 and targets * scale = mm.
  np.testing.assert_array_equal(eval_batch['scale_to_mm'], 500)
  np.testing.assert_allclose(
      eval_batch['targets'] * eval_batch['scale_to_mm'][..., None, None],
      eval_batch['targets_mm'], atol=1e-3)
  np.testing.assert_array_equal(eval_batch['targets_mm'][:, :, 0], 0)
  # A 1.7 m person: head 600-1000 mm above the pelvis (root-relative mm).
  head = -eval_batch['targets_mm'][..., 10, 1]
  assert 500 < np.median(head) < 1000


def test_gt_2d_equals_exact_detections(data_dir):
  detected = next(_datasets(data_dir).make_eval_iter())
  gt = next(_datasets(data_dir, input_2d='gt').make_eval_iter())
  np.testing.assert_allclose(gt['inputs'], detected['inputs'], atol=1e-4)


def test_train_shards_partition_the_global_batches(data_dir):
  single = _datasets(data_dir, batch_size=6)
  reference = [next(single.train_iter) for _ in range(12)]
  for count in (2, 3):
    shards = [_datasets(data_dir, process_index=p, process_count=count,
                        batch_size=6) for p in range(count)]
    assert shards[0].info.per_process_batch_size == 6 // count
    for step in range(12):
      parts = [next(s.train_iter) for s in shards]
      for key in ('inputs', 'targets'):
        combined = np.concatenate([part[key] for part in parts])
        assert sorted(_rows(combined)) == sorted(
            _rows(reference[step][key]))


def test_each_epoch_is_a_new_permutation_of_all_clips(data_dir):
  datasets = _datasets(data_dir)
  clips = datasets.info.num_train_clips
  assert clips % 8 == 0
  steps = clips // 8
  epochs = []
  for _ in range(2):
    rows = np.concatenate([next(datasets.train_iter)['inputs']
                           for _ in range(steps)])
    epochs.append(_rows(rows))
  assert len(set(epochs[0])) == clips  # every clip exactly once
  assert sorted(epochs[0]) == sorted(epochs[1])
  assert epochs[0] != epochs[1]  # reshuffled
  other_seed = _datasets(data_dir, seed=1)
  assert _rows(next(other_seed.train_iter)['inputs']) != epochs[0][:8]


def test_restored_iterator_continues_identically(data_dir):
  datasets = _datasets(data_dir, flip_augment=True)
  for _ in range(15):
    next(datasets.train_iter)
  state = datasets.train_iter.get_state()
  expected = [next(datasets.train_iter) for _ in range(10)]  # crosses epoch
  resumed = _datasets(data_dir, flip_augment=True)
  resumed.train_iter.set_state(state)
  for want in expected:
    got = next(resumed.train_iter)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])


def test_flip_augmentation_flips_about_half(data_dir):
  plain = _datasets(data_dir)
  flipped = _datasets(data_dir, flip_augment=True)
  count = total = 0
  for _ in range(10):
    a, b = next(plain.train_iter), next(flipped.train_iter)
    for key in ('inputs', 'targets'):
      mirrored = transforms.flip(a[key], skeleton.H36M)
      same = np.all(np.isclose(a[key], b[key]), axis=(1, 2, 3))
      mirror = np.all(np.isclose(mirrored, b[key]), axis=(1, 2, 3))
      assert np.all(same | mirror)
    count += int(np.sum(mirror))
    total += len(mirror)
  assert 0.25 < count / total < 0.75


@pytest.mark.parametrize('count', [1, 2, 3])
def test_eval_shards_partition_test_clips_with_padding(data_dir, count):
  info, seen = None, []
  covered = np.zeros(0)
  for p in range(count):
    datasets = _datasets(data_dir, process_index=p, process_count=count,
                         batch_size=6, eval_batch_size=6)
    info = datasets.info
    batches = list(datasets.make_eval_iter())
    assert len(batches) == info.num_eval_batches
    for batch in batches:
      assert batch['mask'].shape == (6 // count,)
      pad = ~batch['mask']
      assert not batch['valid'][pad].any()
      assert np.all(batch['frame_id'][pad] == -1)
      assert np.all(batch['action_id'][pad] == -1)
      assert np.all(batch['action_id'][~pad] >= 0)
      seen += _rows(batch['frame_id'][~pad])
      covered = np.concatenate(
          [covered, batch['frame_id'][batch['valid']]])
  assert len(seen) == len(set(seen)) == info.num_test_clips
  # Non-overlapping test windows: each frame of a full window counts once.
  frames, counts = np.unique(covered, return_counts=True)
  assert np.all(counts == 1)
  assert len(frames) == info.num_test_clips * T


def test_config_errors(data_dir, tmp_path):
  with pytest.raises(ValueError, match='multiple of the process count 3'):
    _datasets(data_dir, process_index=0, process_count=3, batch_size=8)
  with pytest.raises(ValueError, match='input_2d'):
    _datasets(data_dir, input_2d='noisy')
  with pytest.raises(FileNotFoundError, match='python -m l2a_jax.data.prepare'):
    input_pipeline.get_datasets(
        _config(tmp_path, name='h36m', builder_config='motionbert'), seed=0,
        process_index=0, process_count=1)
  with pytest.raises(ValueError, match='leave data.builder_config None'):
    _datasets(data_dir, builder_config='motionbert')


def test_default_synthetic_dataset_builds_on_first_use(tmp_path):
  config = _config(tmp_path)
  config.synthetic = dict(num_train_subjects=4, num_test_subjects=2,
                          sequences_per_subject=6, num_frames=600,
                          num_cameras=4, noise_px=0.0, seed=0)
  config.num_frames, config.train_stride, config.test_stride = 27, 9, 27
  datasets = input_pipeline.get_datasets(config, seed=0, process_index=0,
                                         process_count=1)
  assert datasets.info.builder_config == 'default'
  assert datasets.info.num_test_frames == 2 * 6 * 4 * 600
  assert len(datasets.info.action_names) == 6
