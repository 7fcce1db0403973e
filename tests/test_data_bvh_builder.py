"""The `bvh_motion` builder: folders of BVH files through `data.prepare`.

Folders mix the CMU MotionBuilder naming (built in) with another exporter's
skeleton (6 channels per joint, zero-offset head End Site, its own
mapping.json in a sub-folder; `bvh_testing`), plus broken files; the real
CMU clips (tests/testdata/cmu) join where available.
"""

import json
import pathlib
import shutil

import ml_collections
import numpy as np
import pytest

import bvh_testing
from bvh_testing import MB_TREE, STUDIO_TREE
from l2a_jax.data import builders
from l2a_jax.data import bvh
from l2a_jax.data import bvh_builder
from l2a_jax.data import cameras
from l2a_jax.data import input_pipeline
from l2a_jax.data import prepare
from l2a_jax.data import skeleton

REAL_DATA = pathlib.Path(__file__).resolve().parent / 'testdata' / 'cmu'


def _mb(path, frames, seed, **kwargs):
  return bvh_testing.write_clip(path, MB_TREE, frames,
                                np.random.default_rng(seed),
                                newline='\r\n', **kwargs)


def _studio(folder, name, frames, seed, **kwargs):
  folder.mkdir(parents=True, exist_ok=True)
  (folder / bvh_builder.BVH_MAPPING_FILE).write_text(
      json.dumps(bvh_testing.STUDIO_MAPPING))
  return bvh_testing.write_clip(
      folder / name, STUDIO_TREE, frames, np.random.default_rng(seed),
      fps=30.0, height=0, position_channels='absolute', **kwargs)


def _prepare_cli(capsys, manual, data_dir, *extra):
  code = prepare.main(['--dataset', 'bvh_motion', '--manual_dir',
                       str(manual), '--data_dir', str(data_dir), *extra])
  captured = capsys.readouterr()
  return code, captured.out.strip(), captured.err.strip().splitlines()


def _records(builder, split):
  source = builder.as_data_source(split)
  return [source[i] for i in range(len(source))]


def _bone_lengths(points):
  return np.stack([np.linalg.norm(points[:, c] - points[:, p], axis=-1)
                   for p, c in skeleton.H36M.bones], -1)


def test_bvh_motion_folder(tmp_path):
  manual = tmp_path / 'bvh'
  _mb(manual / 'a.bvh', 130, 1)
  _mb(manual / 'sub' / 'b.bvh', 100, 2)
  _mb(manual / 'c.bvh', 90, 3)
  (manual / bvh_builder.BVH_TEST_LIST_FILE).write_text('sub/b.bvh\n')
  builder = builders.get_builder('bvh_motion', 'default',
                                 str(tmp_path / 'tfds'))
  builders.prepare(builder, manual_dir=str(manual))
  train = _records(builder, 'train')
  test = _records(builder, 'test')
  assert len(train) == 2 * 4 and len(test) == 4
  assert {r['subject'].decode() for r in test} == {'b'}
  assert [r['source'].decode() for r in test] == [
      f'sub/b_seg0_cam{k}' for k in range(4)]
  clip = bvh.read_bvh(manual / 'sub' / 'b.bvh')
  expected = bvh.resample(bvh.to_h36m(clip, bvh.detect_mapping(clip)), 120,
                          50)
  for record in test:
    assert record['keypoints_2d'].shape == (len(expected), 17, 3)
    points = record['joints_3d'].astype(np.float64)
    np.testing.assert_allclose(_bone_lengths(points),
                               _bone_lengths(expected), rtol=1e-4)
    fx, fy, cx, cy = record['intrinsics'][:4]
    np.testing.assert_allclose(
        record['keypoints_2d'][..., :2],
        points[..., :2] / points[..., 2:] * [fx, fy] + [cx, cy], atol=0.05)
  noisy = builders.get_builder('bvh_motion', 'noisy', str(tmp_path / 'tfds'))
  builders.prepare(noisy, manual_dir=str(manual))
  confidence = _records(noisy, 'test')[0]['keypoints_2d'][..., 2]
  assert confidence.mean() < 0.99


def test_rejected_files_are_skipped_with_a_warning(tmp_path, capsys):
  manual = tmp_path / 'bvh'
  _mb(manual / 'good1.bvh', 60, 1)
  _mb(manual / 'good2.bvh', 60, 2)
  truncated = _mb(manual / 'truncated.bvh', 60, 3)
  truncated.write_text(truncated.read_text()[:-200])
  unknown = bvh_testing.write_clip(manual / 'unknown.bvh', STUDIO_TREE, 30,
                                   np.random.default_rng(4), height=0)
  huge = manual / 'huge.bvh'
  huge.write_text((manual / 'good1.bvh').read_text().replace(
      'Frame Time: 0.0083333', 'Frame Time: 10'))
  (manual / bvh_builder.BVH_TEST_LIST_FILE).write_text('good2.bvh\n')
  code, out, err = _prepare_cli(capsys, manual, tmp_path / 'tfds')
  assert code == 0
  assert out.endswith('train 4 videos, test 4 videos, 3 files skipped')
  assert len(err) == 3
  assert err[0].startswith(f'warning: skipped {huge} line ') and (
      'Frame Time' in err[0])
  assert err[1].startswith(f'warning: skipped {truncated} line ')
  assert err[2].startswith(f'warning: skipped {unknown}: unknown skeleton '
                           'naming')
  # --strict: the first rejected file is the error, nothing is prepared.
  code, _, err = _prepare_cli(capsys, manual, tmp_path / 'strict',
                              '--strict')
  assert code == 1 and len(err) == 1
  assert err[0].startswith(f'error: {huge} line ')
  assert not (tmp_path / 'strict' / 'bvh_motion' / 'default').exists()
  # Nothing usable: one error line with the reasons.
  for path in manual.glob('good*.bvh'):
    path.unlink()
  (manual / bvh_builder.BVH_TEST_LIST_FILE).unlink()
  code, _, err = _prepare_cli(capsys, manual, tmp_path / 'none')
  assert code == 1
  assert err[-1].startswith(f'error: {manual}: no usable .bvh file (3 '
                            'rejected: ')


def _pipeline_config(tmp_path, corpus):
  return ml_collections.ConfigDict(dict(
      name='bvh_motion', builder_config=corpus,
      data_dir=str(tmp_path / 'tfds'), train_split='train',
      test_split='test', num_frames=8, train_stride=4, test_stride=8,
      input_2d='detected', flip_augment=False, batch_size=2,
      eval_batch_size=4, num_threads=0, prefetch_batches=1))


def test_test_only_and_train_only_corpora(tmp_path, capsys):
  manual = tmp_path / 'bvh'
  for k in range(3):
    _mb(manual / f'clip{k}.bvh', 60, k)
  (manual / bvh_builder.BVH_TEST_LIST_FILE).write_text('# all of them\n*\n')
  code, out, _ = _prepare_cli(capsys, manual, tmp_path / 'tfds', '--name',
                              'new_motion')
  assert code == 0, out
  assert out.endswith('train 0 videos, test 12 videos')
  test_only = builders.get_builder('bvh_motion', 'new_motion',
                                   str(tmp_path / 'tfds'))
  assert list(test_only.info.splits) == ['test']
  assert len(_records(test_only, 'test')) == 12
  # The pipeline evaluates it; its training stream says why it is empty.
  datasets = input_pipeline.get_datasets(
      _pipeline_config(tmp_path, 'new_motion'), seed=0, process_index=0,
      process_count=1)
  assert datasets.info.num_train_clips == 0
  assert datasets.info.num_test_clips == 12 * 3  # 25 frames at 50 fps
  batches = list(datasets.make_eval_iter())
  assert sum(int(b['mask'].sum()) for b in batches) == 12 * 3
  with pytest.raises(ValueError, match="has no 'train' split \\(a test-only "
                     'corpus\\)'):
    next(datasets.train_iter)
  (manual / bvh_builder.BVH_TEST_LIST_FILE).write_text('# none\n')
  code, out, _ = _prepare_cli(capsys, manual, tmp_path / 'tfds', '--name',
                              'train_only')
  assert code == 0, out
  assert out.endswith('train 12 videos, test 0 videos')
  with pytest.raises(ValueError, match="has no 'test' split \\(a train-only "
                     'corpus\\?\\); its splits: \\[\'train\'\\]'):
    input_pipeline.get_datasets(_pipeline_config(tmp_path, 'train_only'),
                                seed=0, process_index=0, process_count=1)
  # A pattern that matches nothing is an error naming the list.
  (manual / bvh_builder.BVH_TEST_LIST_FILE).write_text('walks/*\n')
  code, _, err = _prepare_cli(capsys, manual, tmp_path / 'tfds', '--name',
                              'bad')
  assert code == 1
  assert err[-1] == (f"error: {manual / bvh_builder.BVH_TEST_LIST_FILE}: "
                     f"'walks/*' matches no .bvh file in {manual}")


def _mixed_folder(tmp_path):
  """CMU MotionBuilder clips, a studio sub-folder with its mapping.json and
  the real CMU clips of both namings when available."""
  manual = tmp_path / 'mixed'
  _mb(manual / 'cmu' / 'mb_a.bvh', 80, 1)
  _mb(manual / 'cmu' / 'mb_b.bvh', 70, 2)
  _studio(manual / 'studio', 'take1.bvh', 40, 3)
  _studio(manual / 'studio', 'take2.bvh', 45, 4)
  real = sorted(REAL_DATA.glob('*.bvh'))
  for path in real:
    shutil.copy(path, manual / 'cmu' / path.name)
  (manual / bvh_builder.BVH_TEST_LIST_FILE).write_text(
      'studio/take2.bvh\ncmu/mb_b.bvh\n')
  return manual, len(real)


def test_mixed_skeletons_in_one_corpus(tmp_path, capsys):
  manual, num_real = _mixed_folder(tmp_path)
  code, out, err = _prepare_cli(capsys, manual, tmp_path / 'tfds', '--name',
                                'mixed')
  assert code == 0, err
  # The zero-offset studio head: one warning line for both files.
  assert err == [
      f'warning: {manual}/studio/take1.bvh: zero-offset End Site Head.end '
      '(H36M head) placed 112 mm from Head along thorax -> Head (Human3.6M '
      'rest-pose proportions) (and 1 more files)']
  builder = builders.get_builder('bvh_motion', 'mixed',
                                 str(tmp_path / 'tfds'))
  assert builder.data_dir.endswith('bvh_motion/mixed/2.0.0')
  train = _records(builder, 'train')
  test = _records(builder, 'test')
  subjects = {r['subject'].decode() for r in train}
  assert subjects == {'mb_a', 'take1'} | {p.stem for p in
                                          REAL_DATA.glob('*.bvh')}
  assert {r['subject'].decode() for r in test} == {'mb_b', 'take2'}
  assert len(test) == 2 * 4 and len(train) >= (2 + num_real) * 4
  for record in train + test:
    points = record['joints_3d'].astype(np.float64)
    # Human3.6M's pelvis: between the hips, for every skeleton.
    np.testing.assert_allclose(points[:, 0], (points[:, 1] + points[:, 4]) / 2,
                               atol=0.05)
  studio = [r for r in test if r['subject'] == b'take2'][0]
  lengths = np.median(_bone_lengths(studio['joints_3d'].astype(np.float64)),
                      0)
  # Not doubled: the studio thigh (joint 2's bone) is 43 cm, the estimated
  # head top 112 mm above the nose.
  np.testing.assert_allclose(lengths[1], 430, rtol=1e-3)
  np.testing.assert_allclose(lengths[9], 112, atol=1)


def test_folder_mapping_falls_back_to_builtin_detection(tmp_path, capsys):
  # One mapping.json for the studio files, CMU files next to them: the CMU
  # files lack its nodes and use the built-in mapping.
  manual = tmp_path / 'flat'
  _studio(manual, 'take1.bvh', 40, 1)
  _mb(manual / 'cmu1.bvh', 60, 2)
  _mb(manual / 'sub' / 'cmu2.bvh', 60, 3)
  code, out, err = _prepare_cli(capsys, manual, tmp_path / 'tfds')
  assert code == 0, err
  assert out.endswith('train 8 videos, test 4 videos')
  builder = builders.get_builder('bvh_motion', 'default',
                                 str(tmp_path / 'tfds'))
  records = _records(builder, 'train') + _records(builder, 'test')
  assert {r['subject'].decode() for r in records} == {'take1', 'cmu1',
                                                      'cmu2'}
  # A file matching neither names both in its reason.
  (manual / 'odd.bvh').write_text(bvh_testing.bvh_text(
      ('Root', (0, 0, 0), [('Leg', (0, -40, 0), (0, -40, 0))]),
      np.zeros((3, 3)), np.zeros((3, 2, 3))))
  code, out, err = _prepare_cli(capsys, manual, tmp_path / 'tfds2')
  assert code == 0
  assert err[0].startswith(f'warning: skipped {manual}/odd.bvh: lacks nodes ')
  assert f'of {manual}/mapping.json and matches no built-in naming' in err[0]


def test_corpora_share_a_data_dir(tmp_path, capsys):
  first = tmp_path / 'first'
  _mb(first / 'a.bvh', 60, 1)
  _mb(first / 'b.bvh', 60, 2)
  second = tmp_path / 'second'
  _studio(second, 'a.bvh', 40, 3)
  _studio(second, 'b.bvh', 40, 4)
  data_dir = tmp_path / 'tfds'
  assert _prepare_cli(capsys, first, data_dir, '--name', 'cmu')[0] == 0
  assert _prepare_cli(capsys, second, data_dir, '--name', 'studio',
                      '--builder_config', 'noisy')[0] == 0
  cmu = builders.get_builder('bvh_motion', 'cmu', str(data_dir))
  studio = builders.get_builder('bvh_motion', 'studio_noisy', str(data_dir))
  assert cmu.is_prepared() and studio.is_prepared()
  assert _records(cmu, 'test')[0]['keypoints_2d'][..., 2].min() == 1.0
  assert _records(studio, 'test')[0]['keypoints_2d'][..., 2].mean() < 0.99
  assert {r['subject'].decode() for r in _records(cmu, 'train')} == {'a'}
  code, _, err = _prepare_cli(capsys, first, data_dir, '--name', 'a/b')
  assert code == 1 and "corpus name 'a/b'" in err[-1]
  code, _, err = prepare.main(['--dataset', 'synthetic', '--name', 'x',
                               '--data_dir', str(data_dir)]), None, None
  assert code == 1


def test_cameras_follow_the_subject(tmp_path):
  # A 24 m walk at 1.2 m/s: cut into segments, each with its own cameras,
  # so every root depth stays where Human3.6M's cameras see a subject
  # within 2 m of the middle of their capture area.
  manual = tmp_path / 'walk'
  speed_units = 1200 / bvh.CMU_UNITS_TO_MM
  _mb(manual / 'walk.bvh', 2400, 1, speed_units=speed_units)
  _mb(manual / 'short.bvh', 60, 2)
  builder = builders.get_builder('bvh_motion', 'default',
                                 str(tmp_path / 'tfds'))
  builders.prepare(builder, manual_dir=str(manual))
  walk = [r for r in _records(builder, 'train') + _records(builder, 'test')
          if r['subject'] == b'walk']
  segments = sorted({r['source'].decode().rsplit('_cam', 1)[0]
                     for r in walk})
  assert len(segments) >= 5
  depths = np.concatenate([r['joints_3d'][:, 0, 2] for r in walk])
  h36m_low, h36m_high = _h36m_root_depth_range()
  assert h36m_low < depths.min() and depths.max() < h36m_high
  # Every frame of the clip is in exactly one segment.
  frames = sum(len(r['joints_3d']) for r in walk) // 4
  assert frames == int(np.floor(2399 / 120 * 50 + 1e-9)) + 1
  # One set of cameras for the whole walk does not fit it in the image; for
  # its first 12 m it puts the root far outside Human3.6M's depths.
  clip = bvh.read_bvh(manual / 'walk.bvh')
  poses = bvh.resample(bvh.to_h36m(clip, bvh.detect_mapping(clip)), 120, 50)
  with pytest.raises(ValueError, match='does not fit in the image'):
    cameras.render_views(poses, 4, np.random.default_rng(0))
  whole = cameras.render_views(poses[:len(poses) // 2], 4,
                               np.random.default_rng(0))
  assert max(v.poses_camera[:, 0, 2].max() for v in whole) > h36m_high


def _h36m_root_depth_range():
  """Root depths of a subject within 2 m of the Human3.6M capture centre
  (pelvis 0.9 m up), seen by the calibrated cameras of every subject."""
  radius, angle = np.meshgrid(np.linspace(0, 2000, 21),
                              np.linspace(0, 2 * np.pi, 73))
  points = np.stack([radius * np.cos(angle), radius * np.sin(angle),
                     np.full_like(radius, 900)], -1).reshape(-1, 3)
  depths = np.concatenate([
      cameras.world_to_camera(points, cameras.h36m_camera(s, k))[:, 2]
      for s in cameras.H36M_EXTRINSICS for k in range(4)])
  return depths.min(), depths.max()


def test_segments_in_reach():
  poses = np.zeros((500, 17, 3))
  poses[:, 0, 0] = np.linspace(0, 10000, 500)  # 10 m along x
  segments = cameras.segments_in_reach(poses, radius_mm=1500,
                                       min_frames=50)
  assert segments[0][0] == 0 and segments[-1][1] == 500
  assert all(a[1] == b[0] for a, b in zip(segments[:-1], segments[1:]))
  for start, end in segments:
    x = poses[start:end, 0, 0]
    assert (x.max() - x.min()) / 2 <= 1500 and end - start >= 50
  # Fast motion: segments keep their minimum length.
  fast = cameras.segments_in_reach(poses, radius_mm=100, min_frames=50)
  assert all(end - start >= 50 for start, end in fast)
  assert cameras.segments_in_reach(poses[:10], min_frames=50) == [(0, 10)]
