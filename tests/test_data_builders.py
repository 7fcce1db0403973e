"""Tiny files in each real format, written here, through every TFDS builder.

Each test writes a few videos in the published layout (MotionBERT pickle,
VideoPose3D npz, P-STMO npz; BVH folders: test_data_bvh_builder.py),
prepares the dataset with `python -m l2a_jax.data.prepare`'s code path, reads it back with TFDS and
checks shapes, values and the normalisation of the input pipeline.
"""

import pickle
import re

import ml_collections
import numpy as np
import pytest

from l2a_jax.data import builders
from l2a_jax.data import cameras
from l2a_jax.data import formats_3dhp
from l2a_jax.data import formats_h36m
from l2a_jax.data import input_pipeline
from l2a_jax.data import prepare
from l2a_jax.data import skeleton
from l2a_jax.data import synthetic_builder
from l2a_jax.data import transforms

# --------------------------------------------------------------------------
# Writers of the real formats
# --------------------------------------------------------------------------

_MB_TRAIN = (('s_01_act_02_subact_01_ca_01', '54138969', 12),
             ('s_05_act_14_subact_02_ca_02', '55011271', 10))
_MB_TEST = (('s_09_act_05_subact_02_ca_03', '58860488', 11, 'Greeting 2'),
            ('s_11_act_02_subact_01_ca_04', '60457274', 9, 'Directions'),
            ('s_09_act_14_subact_01_ca_01', '54138969', 12, 'Walking'))


def _motionbert_part(videos, rng, test):
  part = {k: [] for k in ('joint_2d', 'confidence', 'joint3d_image',
                          'camera_name', 'source', 'joints_2.5d_image',
                          '2.5d_factor', 'action')}
  for video in videos:
    source, camera, frames = video[:3]
    part['joint_2d'].append(rng.uniform(100, 900, (frames, 17, 2)))
    part['confidence'].append(rng.uniform(0.2, 1, (frames, 17)))
    label = np.concatenate([rng.uniform(100, 900, (frames, 17, 2)),
                            rng.uniform(-150, 150, (frames, 17, 1))], -1)
    part['joint3d_image'].append(label)
    factor = rng.uniform(3.5, 5.5, frames)
    part['2.5d_factor'].append(factor)
    part['joints_2.5d_image'].append(label * factor[:, None, None])
    part['camera_name'] += [camera] * frames
    part['source'] += [source] * frames
    if test:
      part['action'] += [video[3]] * frames
  out = {k: (np.concatenate(v) if k not in ('camera_name', 'source', 'action')
             else np.array(v)) for k, v in part.items() if len(v)}
  if not test:
    # The train part has only the first five fields in MotionBERT's file.
    for key in ('joints_2.5d_image', '2.5d_factor'):
      del out[key]
  else:
    out['confidence'] = out['confidence'][..., None]
  return out


def write_motionbert(directory, mutate=None):
  rng = np.random.default_rng(0)
  data = {'train': _motionbert_part(_MB_TRAIN, rng, False),
          'test': _motionbert_part(_MB_TEST, rng, True)}
  if mutate:
    mutate(data)
  with open(directory / formats_h36m.MOTIONBERT_FILE, 'wb') as f:
    pickle.dump(data, f, protocol=4)
  return data


_VP3D_SUBJECTS = ('S1', 'S5', 'S6', 'S7', 'S8', 'S9', 'S11')


def _world_motion(rng, frames):
  """[frames, 32, 3] metres, a person-sized cloud near the origin (Z up)."""
  base = rng.uniform([-0.3, -0.3, 0.05], [0.3, 0.3, 1.75], (1, 32, 3))
  drift = np.linspace(0, 0.2, frames)[:, None, None] * [1, 0, 0]
  return (base + drift + rng.normal(0, 0.01, (frames, 32, 3))).astype(
      np.float32)


def write_videopose3d(directory, short_2d=False):
  rng = np.random.default_rng(1)
  positions, detections = {}, {}
  for subject in _VP3D_SUBJECTS:
    actions = {'Walking 1': 6}
    if subject == 'S1':
      actions['TakingPhoto'] = 5
    positions[subject], detections[subject] = {}, {}
    for action, frames in actions.items():
      positions[subject][action] = _world_motion(rng, frames)
      extra = -1 if short_2d else 2  # detections can run longer
      detections[subject][action] = [
          rng.uniform(0, 1000, (frames + extra, 17, 2)).astype(np.float32)
          for _ in range(4)]
  np.savez(directory / formats_h36m.VIDEOPOSE3D_3D_FILE, positions_3d=positions)
  np.savez(directory / formats_h36m.VIDEOPOSE3D_CPN_FILE, positions_2d=detections,
           metadata={'num_joints': 17,
                     'keypoints_symmetry': [[4, 5, 6, 11, 12, 13],
                                            [1, 2, 3, 14, 15, 16]]})
  return positions, detections


def write_pstmo(directory):
  rng = np.random.default_rng(2)

  def anim(frames):
    data_3d = rng.uniform([-500, -900, 3000], [500, 900, 6000],
                          (frames, 17, 3)).astype(np.float32)
    return {'data_2d': rng.uniform(0, 2048, (frames, 17, 2)).astype(
        np.float32), 'data_3d': data_3d}

  train = {'S1 Seq1': [{'0': anim(25), '2': anim(25)}, 25],
           'S2 Seq2': [{'1': anim(13)}, 50]}
  test = {}
  for sequence, frames in (('TS1', 20), ('TS5', 14)):
    entry = anim(frames)
    valid = np.ones(frames)
    valid[[1, 5]] = 0
    entry['valid'] = valid
    test[sequence] = entry
  np.savez(directory / formats_3dhp.PSTMO_TRAIN_FILE, data=train)
  np.savez(directory / formats_3dhp.PSTMO_TEST_FILE, data=test)
  return train, test


def _prepare(name, config, manual_dir, data_dir, allow_pickle=True):
  builder = builders.get_builder(name, config, str(data_dir),
                                 allow_pickle=allow_pickle)
  builders.prepare(builder, manual_dir=manual_dir and str(manual_dir))
  return builder


def _records(builder, split):
  source = builder.as_data_source(split)
  return [source[i] for i in range(len(source))]


def _data_config(data_dir, name, builder_config, **overrides):
  config = ml_collections.ConfigDict(dict(
      name=name, builder_config=builder_config, data_dir=str(data_dir),
      train_split='train', test_split='test', num_frames=4, train_stride=2,
      test_stride=4, input_2d='detected', flip_augment=False, batch_size=2,
      eval_batch_size=4, num_threads=1, prefetch_batches=1))
  config.update(overrides)
  return config


def _all_eval(datasets):
  batches = list(datasets.make_eval_iter())
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


# --------------------------------------------------------------------------
# MotionBERT
# --------------------------------------------------------------------------


def test_motionbert_records_round_trip(tmp_path):
  data = write_motionbert(tmp_path)
  builder = _prepare('h36m', 'motionbert', tmp_path, tmp_path / 'tfds')
  train = _records(builder, 'train')
  test = _records(builder, 'test')
  assert len(train) == 2 and len(test) == 3
  start = 0
  for record, (source, camera, frames) in zip(train, _MB_TRAIN):
    assert record['source'].decode() == source
    assert record['camera'].decode() == camera
    assert record['keypoints_2d'].shape == (frames, 17, 3)
    part = data['train']
    np.testing.assert_allclose(record['keypoints_2d'][..., :2],
                               part['joint_2d'][start:start + frames],
                               rtol=1e-6)
    np.testing.assert_allclose(record['keypoints_2d'][..., 2],
                               part['confidence'][start:start + frames],
                               rtol=1e-6)
    np.testing.assert_allclose(record['joints_3d'],
                               part['joint3d_image'][start:start + frames],
                               rtol=1e-6)
    assert record['joints_3d_mm'].shape == (0, 17, 3)
    assert record['label_space'].decode() == 'image_pixels'
    start += frames
  assert [r['subject'].decode() for r in train] == ['S1', 'S5']
  assert [r['action'].decode() for r in train] == ['Directions', 'Walking']
  assert [r['action'].decode() for r in test] == ['Greeting', 'Directions',
                                                  'Walking']
  assert test[0]['image_size'].tolist() == [1000, 1000]
  assert test[1]['image_size'].tolist() == [1000, 1002]
  np.testing.assert_allclose(test[2]['factor_2_5d'],
                             data['test']['2.5d_factor'][-12:], rtol=1e-6)
  np.testing.assert_allclose(test[2]['joints_3d_mm'],
                             data['test']['joints_2.5d_image'][-12:],
                             rtol=1e-6)


def test_motionbert_pipeline_normalisation_and_blocklist(tmp_path):
  data = write_motionbert(tmp_path)
  _prepare('h36m', 'motionbert', tmp_path, tmp_path / 'tfds')
  datasets = input_pipeline.get_datasets(
      _data_config(tmp_path / 'tfds', 'h36m', 'motionbert'), seed=0,
      process_index=0, process_count=1)
  info = datasets.info
  assert info.action_names == ('Directions', 'Greeting', 'Walking')
  assert info.num_test_frames == 11 + 9 + 12
  assert info.num_test_clips == 2 + 2 + 3  # stride 4, tails dropped
  batch = _all_eval(datasets)
  mask = batch['mask']
  # Clip 3 is the first of the S11 video (frames 11..14 of the split).
  clip = np.flatnonzero(mask & (batch['frame_id'][:, 0] == 11))[0]
  frames = np.arange(11, 15)
  label = data['test']['joint3d_image'][frames]
  norm = transforms.normalize_screen(label, 1000, 1002)
  np.testing.assert_allclose(batch['targets'][clip], norm - norm[:, :1],
                             atol=1e-5)
  inputs = transforms.normalize_screen(data['test']['joint_2d'][frames], 1000,
                                       1002)
  np.testing.assert_allclose(batch['inputs'][clip, ..., :2], inputs,
                             atol=1e-5)
  factor = data['test']['2.5d_factor'][frames]
  np.testing.assert_allclose(batch['scale_to_mm'][clip], 500 * factor,
                             rtol=1e-5)
  gt = data['test']['joints_2.5d_image'][frames]
  np.testing.assert_allclose(batch['targets_mm'][clip], gt - gt[:, :1],
                             rtol=1e-4, atol=1e-2)
  # Prediction = target in normalised units -> mm via scale_to_mm.
  np.testing.assert_allclose(
      batch['targets'][clip] * batch['scale_to_mm'][clip][:, None, None],
      batch['targets_mm'][clip], rtol=1e-4, atol=1e-2)
  assert batch['action_id'][clip] == info.action_names.index('Directions')
  # The blocklisted S9 Greeting-2 video (frames 0..10) never counts.
  blocked = mask & (batch['frame_id'][:, 0] < 11)
  assert blocked.sum() == 2 and not batch['valid'][blocked].any()
  assert batch['valid'][mask & ~blocked].all()
  # GT-2D setting: x, y of the normalised label, confidence 1.
  gt_2d = _all_eval(input_pipeline.get_datasets(
      _data_config(tmp_path / 'tfds', 'h36m', 'motionbert', input_2d='gt'),
      seed=0, process_index=0, process_count=1))
  np.testing.assert_allclose(gt_2d['inputs'][clip, ..., :2], norm[..., :2],
                             atol=1e-5)
  np.testing.assert_array_equal(gt_2d['inputs'][..., 2], 1)


@pytest.mark.parametrize('mutate,message', [
    (lambda d: d['train'].pop('source'), "missing key 'source'"),
    (lambda d: d['train'].update(joint_2d=d['train']['joint_2d'][:, :16]),
     r'joint_2d: expected shape \(N, 17, 2\), got \(22, 16, 2\)'),
    (lambda d: d['test']['joint3d_image'].__setitem__((3, 2, 1), np.nan),
     'NaN'),
    (lambda d: d['train']['camera_name'].__setitem__(slice(0, 12), '1234'),
     "unknown camera_name '1234'"),
    (lambda d: d['train']['camera_name'].__setitem__(3, '55011271'),
     'camera_name changes within a video'),
])
def test_motionbert_bad_input_is_a_one_line_error(tmp_path, capsys, mutate,
                                                  message):
  write_motionbert(tmp_path, mutate)
  data_dir = tmp_path / 'tfds'
  code = prepare.main(['--dataset', 'h36m/motionbert', '--manual_dir',
                       str(tmp_path), '--data_dir', str(data_dir),
                       '--allow_pickle'])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 1
  assert err[-1].startswith('error: ')
  assert re.search(message, err[-1])
  assert not builders.get_builder('h36m', 'motionbert',
                                  str(data_dir)).is_prepared()
  assert not (data_dir / 'h36m' / 'motionbert').exists()


def test_pickle_needs_opt_in_and_stays_restricted(tmp_path, capsys):
  write_motionbert(tmp_path)
  args = ['--dataset', 'h36m', '--builder_config', 'motionbert',
          '--manual_dir', str(tmp_path), '--data_dir', str(tmp_path / 'd')]
  assert prepare.main(args) == 1
  assert '--allow_pickle' in capsys.readouterr().err

  class Exploit:

    def __reduce__(self):
      return (print, ('owned',))

  with open(tmp_path / formats_h36m.MOTIONBERT_FILE, 'wb') as f:
    pickle.dump({'train': Exploit()}, f)
  assert prepare.main(args + ['--allow_pickle']) == 1
  out = capsys.readouterr()
  assert 'owned' not in out.out
  assert 'refusing to load global builtins.print' in out.err


def test_prepare_cli_success_and_usage(tmp_path, capsys):
  write_motionbert(tmp_path)
  code = prepare.main(['--dataset', 'h36m', '--builder_config', 'motionbert',
                       '--manual_dir', str(tmp_path), '--data_dir',
                       str(tmp_path / 'd'), '--allow_pickle'])
  assert code == 0
  assert 'train 2 videos, test 3 videos' in capsys.readouterr().out
  assert prepare.main(['--dataset', 'h36m', '--data_dir', str(tmp_path)]) == 1
  assert '--manual_dir' in capsys.readouterr().err
  assert prepare.main(['--dataset', 'nope', '--data_dir', str(tmp_path)]) == 1
  assert "unknown dataset 'nope'" in capsys.readouterr().err


# --------------------------------------------------------------------------
# VideoPose3D
# --------------------------------------------------------------------------


def test_videopose3d_cpn_records(tmp_path):
  positions, detections = write_videopose3d(tmp_path)
  builder = _prepare('h36m', 'videopose3d_cpn', tmp_path, tmp_path / 'tfds')
  train = _records(builder, 'train')
  test = _records(builder, 'test')
  assert len(train) == (2 + 4) * 4 and len(test) == 2 * 4
  kept = list(formats_h36m.VIDEOPOSE3D_KEPT_JOINTS)
  for record in train + test:
    subject = record['subject'].decode()
    source = record['source'].decode()
    action_key = source[len(subject) + 1:-len('_54138969')]
    camera_index = cameras.H36M_CAMERA_IDS.index(record['camera'].decode())
    world = positions[subject][action_key][:, kept] * 1000.0
    frames = len(world)
    assert record['keypoints_2d'].shape == (frames, 17, 3)
    np.testing.assert_allclose(
        record['keypoints_2d'][..., :2],
        detections[subject][action_key][camera_index][:frames], rtol=1e-6)
    np.testing.assert_array_equal(record['keypoints_2d'][..., 2], 1)
    # The stored extrinsics map the camera-space mm back to the world.
    back = (record['joints_3d'] @ record['camera_rotation']
            + record['camera_position'])
    np.testing.assert_allclose(back, world, atol=0.05)
    assert np.all(record['joints_3d'][..., 2] > 2000)
    assert record['label_space'].decode() == 'camera_mm'
  assert {r['action'].decode() for r in train} == {'Walking', 'Photo'}


def test_videopose3d_gt_projects_through_the_cameras(tmp_path):
  write_videopose3d(tmp_path)
  builder = _prepare('h36m', 'videopose3d_gt', tmp_path, tmp_path / 'tfds')
  for record in _records(builder, 'test'):
    intrinsics = record['intrinsics'].astype(np.float64)
    fx, fy, cx, cy = intrinsics[:4]
    points = record['joints_3d'].astype(np.float64)
    pinhole = points[..., :2] / points[..., 2:] * [fx, fy] + [cx, cy]
    # Lens distortion moves points by a few pixels near the image centre.
    error = np.linalg.norm(record['keypoints_2d'][..., :2] - pinhole, axis=-1)
    assert 0 < error.max() < 25
  datasets = input_pipeline.get_datasets(
      _data_config(tmp_path / 'tfds', 'h36m', 'videopose3d_gt',
                   num_frames=3, test_stride=3),
      seed=0, process_index=0, process_count=1)
  batch = _all_eval(datasets)
  assert datasets.info.action_names == ('Walking',)
  np.testing.assert_array_equal(batch['scale_to_mm'], 500)
  np.testing.assert_allclose(
      batch['targets'] * 500, batch['targets_mm'], rtol=1e-5, atol=1e-3)


def test_videopose3d_short_2d_is_an_error(tmp_path, capsys):
  write_videopose3d(tmp_path, short_2d=True)
  code = prepare.main(['--dataset', 'h36m/videopose3d_cpn', '--manual_dir',
                       str(tmp_path), '--data_dir', str(tmp_path / 'd'),
                       '--allow_pickle'])
  assert code == 1
  assert 'frames of 2D but' in capsys.readouterr().err


# --------------------------------------------------------------------------
# MPI-INF-3DHP
# --------------------------------------------------------------------------


def test_pstmo_3dhp_records_and_protocol(tmp_path):
  train, test = write_pstmo(tmp_path)
  builder = _prepare('mpi_inf_3dhp', None, tmp_path, tmp_path / 'tfds')
  train_records = _records(builder, 'train')
  test_records = _records(builder, 'test')
  assert [r['source'].decode() for r in train_records] == [
      'S1 Seq1 cam 0', 'S1 Seq1 cam 2', 'S2 Seq2 cam 1']
  np.testing.assert_allclose(train_records[1]['joints_3d'],
                             train['S1 Seq1'][0]['2']['data_3d'])
  assert train_records[2]['fps'] == 50
  assert [r['image_size'].tolist() for r in test_records] == [
      [2048, 2048], [1920, 1080]]
  assert test_records[1]['valid'].tolist() == (test['TS5']['valid']
                                               > 0).tolist()
  assert all(r['skeleton'].decode() == 'mpi' for r in train_records)

  datasets = input_pipeline.get_datasets(
      _data_config(tmp_path / 'tfds', 'mpi_inf_3dhp', None, num_frames=9,
                   train_stride=9), seed=0, process_index=0,
      process_count=1)
  info = datasets.info
  assert info.skeleton == 'mpi' and info.root_joint == 14
  assert info.num_train_clips == 3 + 3 + 2  # starts 0, 9, 18 | 0, 9
  assert info.num_test_clips == 18 + 12  # one per valid frame
  assert info.action_names == ('TS1', 'TS5')
  batch = _all_eval(datasets)
  mask = batch['mask']
  assert np.all(batch['valid'][mask].sum(1) == 1)
  assert np.all(batch['valid'][mask][:, 4])
  np.testing.assert_array_equal(batch['targets'][mask][:, :, 14], 0)
  ts5 = mask & (batch['action_id'] == 1)
  np.testing.assert_array_equal(batch['scale_to_mm'][ts5], 960)
  centre = batch['frame_id'][ts5][:, 4] - 20
  data_3d = test['TS5']['data_3d'][centre]
  np.testing.assert_allclose(batch['targets_mm'][ts5][:, 4],
                             data_3d - data_3d[:, 14:15], rtol=1e-5,
                             atol=1e-2)
  inputs = transforms.normalize_screen(test['TS5']['data_2d'][centre], 1920,
                                       1080)
  np.testing.assert_allclose(batch['inputs'][ts5][:, 4, :, :2], inputs,
                             atol=1e-5)
  train_batch = next(datasets.train_iter)
  np.testing.assert_array_equal(train_batch['targets'][:, :, 14], 0)


# --------------------------------------------------------------------------
# Synthetic (BVH folders: test_data_bvh_builder.py)
# --------------------------------------------------------------------------


def test_synthetic_builder_is_deterministic(tmp_path):
  config = synthetic_builder.synthetic_config(
      num_train_subjects=1, num_test_subjects=1, sequences_per_subject=1,
      num_frames=40, num_cameras=2, seed=7)
  assert config.name == 'train1_test1_seq1_frames40_cams2_noise0_seed7'
  first = _records(_prepare('synthetic', config, None, tmp_path / 'a'),
                   'test')
  second = _records(_prepare('synthetic', config, None, tmp_path / 'b'),
                    'test')
  assert len(first) == 2
  for a, b in zip(first, second):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  assert synthetic_builder.synthetic_config().name == 'default'
  with pytest.raises(ValueError, match='unknown synthetic parameters'):
    synthetic_builder.synthetic_config(frames=3)
