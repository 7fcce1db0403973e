"""l2a_jax.inference without a trained model: formats, sequences, people,
normalisation refusals, outputs and renders (stand-in forward functions)."""

import json
import pathlib

import ml_collections
import numpy as np
import pytest

from l2a_jax.data import bvh
from l2a_jax.data import skeleton as skeleton_lib
from l2a_jax.inference import errors
from l2a_jax.inference import keypoint_formats
from l2a_jax.inference import lifter as lifter_lib
from l2a_jax.inference import outputs
from l2a_jax.inference import readers
from l2a_jax.inference import rendering
from l2a_jax.inference import sequence
from l2a_jax.inference import tracking

H36M = skeleton_lib.H36M.joint_names


def _config(frames=9, data='synthetic', flip_test=False):
  return ml_collections.ConfigDict({
      'model': {'num_frames': frames, 'dim_in': 3, 'num_joints': 17},
      'data': {'name': data, 'builder_config': None},
      'eval': {'flip_test': flip_test}})


def _lift_xy(clips):
  """Identity-like model: each frame's (x, y) lifted to (x, y, 0)."""
  out = np.array(clips[..., :3], np.float32)
  out[..., 2] = 0.0
  return out


def _hand_pose(joint_names, rng):
  """Distinct random pixel positions per joint, confidence 1."""
  xy = rng.uniform(100, 900, (len(joint_names), 2))
  return np.concatenate([xy, np.ones((len(joint_names), 1))], -1)


# -- formats ----------------------------------------------------------------


def test_coco_to_h36m_derived_joints():
  pose = _hand_pose(keypoint_formats.COCO_JOINTS, np.random.default_rng(0))
  c = {n: pose[i, :2] for i, n in enumerate(keypoint_formats.COCO_JOINTS)}
  got = keypoint_formats.to_h36m(pose, keypoint_formats.get('coco'))
  j = {n: got[i, :2] for i, n in enumerate(H36M)}
  pelvis = (c['l_hip'] + c['r_hip']) / 2
  thorax = (c['l_shoulder'] + c['r_shoulder']) / 2
  np.testing.assert_allclose(j['pelvis'], pelvis, rtol=1e-6)
  np.testing.assert_allclose(j['thorax'], thorax, rtol=1e-6)
  np.testing.assert_allclose(j['spine'], (pelvis + thorax) / 2, rtol=1e-6)
  np.testing.assert_allclose(j['neck'], c['nose'], rtol=1e-6)
  np.testing.assert_allclose(j['head'], (c['l_eye'] + c['r_eye']) / 2,
                             rtol=1e-6)
  for name in ('r_hip', 'l_knee', 'r_ankle', 'l_shoulder', 'r_elbow',
               'l_wrist'):
    np.testing.assert_allclose(j[name], c[name], rtol=1e-6)
  assert np.all(got[:, 2] == 1.0)


def test_halpe_and_openpose_use_their_own_centre_joints():
  rng = np.random.default_rng(1)
  halpe = _hand_pose(keypoint_formats.HALPE26_JOINTS, rng)
  h = {n: halpe[i, :2] for i, n in enumerate(keypoint_formats.HALPE26_JOINTS)}
  got = keypoint_formats.to_h36m(halpe, keypoint_formats.get('halpe26'))
  np.testing.assert_allclose(got[0, :2], h['hip'], rtol=1e-6)
  np.testing.assert_allclose(got[8, :2], h['neck'], rtol=1e-6)
  np.testing.assert_allclose(got[7, :2], (h['hip'] + h['neck']) / 2,
                             rtol=1e-6)
  np.testing.assert_allclose(got[10, :2], h['head'], rtol=1e-6)
  np.testing.assert_allclose(got[3, :2], h['r_ankle'], rtol=1e-6)
  body25 = _hand_pose(keypoint_formats.OPENPOSE25_JOINTS, rng)
  o = {n: body25[i, :2]
       for i, n in enumerate(keypoint_formats.OPENPOSE25_JOINTS)}
  got = keypoint_formats.to_h36m(body25, keypoint_formats.get('openpose25'))
  np.testing.assert_allclose(got[0, :2], o['mid_hip'], rtol=1e-6)
  np.testing.assert_allclose(got[8, :2], o['neck'], rtol=1e-6)
  np.testing.assert_allclose(got[10, :2], (o['l_eye'] + o['r_eye']) / 2,
                             rtol=1e-6)
  np.testing.assert_allclose(got[13, :2], o['l_wrist'], rtol=1e-6)
  np.testing.assert_allclose(got[14, :2], o['r_shoulder'], rtol=1e-6)


def test_derived_joint_is_missing_when_a_source_is():
  pose = _hand_pose(keypoint_formats.COCO_JOINTS, np.random.default_rng(2))
  pose[keypoint_formats.COCO_JOINTS.index('l_eye'), 2] = 0.0
  pose[keypoint_formats.COCO_JOINTS.index('r_hip')] = np.nan
  got = keypoint_formats.to_h36m(pose, keypoint_formats.get('coco'))
  missing = {H36M[i] for i in np.flatnonzero(got[:, 2] == 0)}
  assert missing == {'head', 'pelvis', 'spine', 'r_hip'}


def test_wrong_joint_count_is_one_line():
  with pytest.raises(errors.InputError,
                     match='openpose25 keypoints have 25 joints, got 17'):
    keypoint_formats.to_h36m(np.zeros((4, 17, 3)),
                             keypoint_formats.get('openpose25'))


# -- sequences --------------------------------------------------------------


@pytest.mark.parametrize('frames', [1, 5, 9, 10, 23, 40])
def test_windows_exact_for_identity_like_model(frames):
  inputs = np.random.default_rng(frames).normal(size=(frames, 17, 3))
  got = sequence.lift_sequence(_lift_xy, inputs.astype(np.float32), 9, 4)
  assert got.shape == (frames, 17, 3)
  np.testing.assert_allclose(got, _lift_xy(inputs), rtol=0, atol=1e-6)


def test_blending_weights_favour_window_centres():
  # A model that outputs each frame's position inside its window: the blend
  # is the centre-weighted mean of those positions.
  def position(clips):
    out = np.zeros(clips.shape[:-1] + (3,), np.float32)
    out[...] = np.arange(clips.shape[1])[None, :, None, None]
    return out

  window, stride, frames = 9, 4, 21
  got = sequence.lift_sequence(position, np.zeros((frames, 17, 3)), window,
                               stride)
  starts = sequence.window_starts(frames, window, stride)
  assert starts == [0, 4, 8, 12]
  weights = sequence.centre_weights(window)
  assert weights.argmax() == 4 and weights.min() > 0
  for t in range(frames):
    pos = [t - s for s in starts if s <= t < s + window]
    expected = sum(weights[p] * p for p in pos) / sum(weights[p] for p in pos)
    np.testing.assert_allclose(got[t, 0, 0], expected, rtol=1e-6)


def test_short_sequence_is_edge_padded():
  seen = []

  def record(clips):
    seen.append(clips.copy())
    return _lift_xy(clips)

  inputs = np.arange(3 * 17 * 3, dtype=np.float32).reshape(3, 17, 3)
  sequence.lift_sequence(record, inputs, 9, 4)
  clip = seen[0][0]
  assert clip.shape == (9, 17, 3)
  np.testing.assert_array_equal(clip[:3], np.repeat(inputs[:1], 3, 0))
  np.testing.assert_array_equal(clip[3:6], inputs)
  np.testing.assert_array_equal(clip[6:], np.repeat(inputs[2:], 3, 0))


def test_gaps_are_interpolated_and_reported():
  frames = np.zeros((6, 2, 3), np.float32)
  frames[:, 0] = [[10 * t, 100, 1] for t in range(6)]
  frames[:, 1] = [[5, 5, 1]] * 6
  frames[2:4, 0] = 0.0      # joint 0 missing in frames 2, 3
  frames[5, 1, 2] = 0.0     # joint 1 missing at the end: held
  filled, missing = sequence.fill_gaps(frames, ('a', 'b'))
  np.testing.assert_allclose(filled[:, 0, 0], [0, 10, 20, 30, 40, 50])
  np.testing.assert_allclose(filled[:, 0, 2], 1.0)
  np.testing.assert_allclose(filled[5, 1], [5, 5, 1])
  assert np.flatnonzero(missing.any(-1)).tolist() == [2, 3, 5]
  frames[:, 1, 2] = 0.0
  with pytest.raises(errors.InputError, match=r'joint\(s\) b have '
                     'confidence 0 in all 6 frames'):
    sequence.fill_gaps(frames, ('a', 'b'))


# -- people -----------------------------------------------------------------


def _person(x0, score=1.0):
  pose = np.zeros((17, 3), np.float32)
  pose[:, 0] = np.linspace(x0, x0 + 50, 17)
  pose[:, 1] = np.linspace(100, 300, 17)
  pose[:, 2] = 1.0
  return tracking.Detection(pose, score)


def test_tracks_follow_box_overlap_and_rank_by_score():
  # Two people crossing nothing: A near x=100 (3 frames, low score), B
  # near x=600 (4 frames, listed first in some frames), A missing at t=2.
  frames = [[_person(100, 0.5), _person(600, 0.9)],
            [_person(605, 0.9), _person(104, 0.5)],
            [_person(610, 0.9)],
            [_person(108, 0.5), _person(615, 0.9)]]
  tracks, scores = tracking.link_tracks(frames, 17)
  assert tracks.shape == (2, 4, 17, 3)
  np.testing.assert_allclose(scores, [3.6, 1.5])
  assert np.all(tracks[0, :, 0, 0] == [600, 605, 610, 615])
  assert tracks[1, :, 0, 0].tolist() == [100, 104, 0, 108]
  assert tracks[1, 2, :, 2].max() == 0  # no detection: confidence 0
  assert tracking.select_person(tracks, scores, None, 'f') == 0
  assert tracking.select_person(tracks, scores, 1, 'f') == 1
  with pytest.raises(errors.InputError, match=r'--person: expected 0..1 '
                     r'\(2 people in f\), got 2'):
    tracking.select_person(tracks, scores, 2, 'f')


def test_records_reader_orders_frames_by_file_number(tmp_path):
  records = []
  for t in (3, 1, 2, 5):  # frame 4 has no detection
    for x0, score in ((100 + t, 0.4), (600 + t, 0.8)):
      pose = _person(x0, score).keypoints
      records.append({'image_id': f'video_{t:04d}.jpg', 'score': score,
                      'category_id': 1,
                      'keypoints': pose.reshape(-1).tolist()})
  path = tmp_path / 'results.json'
  path.write_text(json.dumps(records))
  data = readers.read_keypoints(path)
  assert data.tracks.shape == (2, 5, 17, 3)
  assert data.assumed_format == 'coco' and data.image_size is None
  assert data.tracks[0, :, 0, 0].tolist() == [601, 602, 603, 0, 605]
  assert data.tracks[1, 3, :, 2].max() == 0


def test_openpose_folder(tmp_path):
  for t in range(3):
    body = np.zeros((25, 3))
    body[:, 0] = np.linspace(200, 260, 25) + t
    body[:, 1] = np.linspace(100, 400, 25)
    body[:, 2] = 0.9
    people = [{'pose_keypoints_2d': body.reshape(-1).tolist()}] if t != 1 else []
    (tmp_path / f'clip_{t:012d}_keypoints.json').write_text(
        json.dumps({'version': 1.3, 'people': people}))
  data = readers.read_keypoints(tmp_path)
  assert data.keypoint_format == 'openpose25'
  assert data.tracks.shape == (1, 3, 25, 3)
  assert data.tracks[0, 1, :, 2].max() == 0


@pytest.mark.parametrize('content,message', [
    ('{"poses": []}', "missing field 'keypoints_2d'"),
    ('{"keypoints_2d": [[1, 2]]}', r'expected shape \[F, J, 2\|3\]'),
    ('[{"image_id": 0}]', "record 0: missing field 'keypoints'"),
    ('[{"image_id": 0, "keypoints": [1, 2]}]', 'expected 3 numbers per joint'),
    ('{"keypoints_2d": %s, "image_size": [0, 5]}' % [[[1, 2]] * 17],
     'image_size: expected two positive integers'),
    ('not json', 'not valid JSON'),
])
def test_reader_errors_are_one_line(tmp_path, content, message):
  path = tmp_path / 'in.json'
  path.write_text(content)
  with pytest.raises(errors.InputError, match=message) as error:
    readers.read_keypoints(path)
  assert str(path) in str(error.value) and '\n' not in str(error.value)


# -- the Lifter with a stand-in model -----------------------------------------


def _h36m_pixels(frames, rng):
  """A plausible standing H36M pose in a 1000x1002 image, moving right."""
  pose = np.array(
      [[500, 500], [470, 500], [470, 700], [470, 900], [530, 500], [530, 700],
       [530, 900], [500, 400], [500, 300], [500, 250], [500, 200], [560, 310],
       [590, 400], [600, 480], [440, 310], [410, 400], [400, 480]],
      np.float32)
  motion = np.arange(frames, dtype=np.float32)[:, None, None] * [3.0, 0.0]
  xy = pose[None] + motion + rng.normal(0, 1, (frames, 17, 2))
  return np.concatenate([xy, np.ones((frames, 17, 1), np.float32)], -1)


def test_lift_normalises_scales_and_zeroes_the_root():
  lifter = lifter_lib.Lifter(_lift_xy, _config(frames=9))
  keypoints = _h36m_pixels(30, np.random.default_rng(0))
  result = lifter.lift(keypoints, keypoint_format='h36m',
                       image_size=(1000, 1002), fps=50)
  assert result.units == 'mm' and result.fps == 50
  assert result.poses_3d.shape == (30, 17, 3)
  assert np.all(result.poses_3d[:, 0] == 0)
  # Identity-like model: output = root-relative pixels (W / 2 per unit).
  expected = keypoints[..., :2] - keypoints[:, :1, :2]
  np.testing.assert_allclose(result.poses_3d[..., :2], expected, atol=1e-3)
  assert lifter_lib.Lifter(_lift_xy, _config(data='h36m')).units == 'px'


def test_flip_test_averages_the_mirrored_prediction():
  left = list(skeleton_lib.H36M.left)
  right = list(skeleton_lib.H36M.right)

  def lopsided(clips):  # not mirror-symmetric: left joints' x + 1
    out = _lift_xy(clips)
    out[..., left, 0] += 1.0
    return out

  keypoints = _h36m_pixels(9, np.random.default_rng(1))
  base = keypoints[..., :2] - keypoints[:, :1, :2]
  plain = lifter_lib.Lifter(lopsided, _config()).lift(
      keypoints, image_size=(1000, 1002)).poses_3d
  averaged = lifter_lib.Lifter(lopsided, _config(flip_test=True)).lift(
      keypoints, image_size=(1000, 1002)).poses_3d
  # One normalised unit is W / 2 = 500 output units.
  shift = np.zeros_like(base)
  shift[:, left, 0] = 500.0
  np.testing.assert_allclose(plain[..., :2], base + shift, atol=1e-2)
  shift[:, left, 0] = 250.0  # mean of +1 and 0
  shift[:, right, 0] = -250.0  # mean of 0 and the mirrored -1
  np.testing.assert_allclose(averaged[..., :2], base + shift, atol=1e-2)


def test_normalisation_refusals():
  lifter = lifter_lib.Lifter(_lift_xy, _config())
  keypoints = _h36m_pixels(12, np.random.default_rng(2))
  normalised = keypoints.copy()
  normalised[..., :2] = normalised[..., :2] / 500 - 1
  with pytest.raises(errors.InputError, match='look normalised already'):
    lifter.lift(normalised, image_size=(1000, 1002))
  with pytest.raises(errors.InputError, match='wrong image_size or not '
                     'pixels'):
    lifter.lift(keypoints, image_size=(192, 108))
  # The raw path feeds normalised input as it is.
  raw = lifter.lift_raw(normalised)
  np.testing.assert_allclose(raw[..., :2], normalised[..., :2], atol=1e-6)


def test_lift_file_checks_size_and_format(tmp_path):
  lifter = lifter_lib.Lifter(_lift_xy, _config())
  path = tmp_path / 'in.npz'
  np.savez(path, keypoints_2d=_h36m_pixels(5, np.random.default_rng(3)),
           image_size=np.array([1000, 1002]), keypoint_format='h36m')
  assert lifter.lift_file(path).poses_3d.shape == (5, 17, 3)
  with pytest.raises(errors.InputError, match='the file says 1000x1002, '
                     '--image_size says 640x480'):
    lifter.lift_file(path, image_size='640,480')
  with pytest.raises(errors.InputError, match='the file says h36m, '
                     '--keypoint_format says coco'):
    lifter.lift_file(path, keypoint_format='coco')
  np.savez(path, keypoints_2d=_h36m_pixels(5, np.random.default_rng(3)))
  with pytest.raises(errors.InputError, match='pass --image_size W,H'):
    lifter.lift_file(path)


# -- outputs and renders --------------------------------------------------------


def _result(frames=6):
  lifter = lifter_lib.Lifter(_lift_xy, _config(frames=9))
  keypoints = _h36m_pixels(frames, np.random.default_rng(4))
  keypoints[2, 5, 2] = 0.0
  return lifter, lifter.lift(keypoints, image_size=(1000, 1002), fps=50)


@pytest.mark.parametrize('suffix', ['.json', '.npz'])
def test_output_round_trip(tmp_path, suffix):
  _, result = _result()
  assert result.filled_frames == [2]
  path = tmp_path / f'out{suffix}'
  outputs.write_fields(path, outputs.result_fields(result))
  back = outputs.read_fields(path)
  np.testing.assert_array_equal(back['poses_3d'], result.poses_3d)
  np.testing.assert_array_equal(back['keypoints_2d'], result.keypoints_2d)
  assert back['poses_3d'].dtype == np.float32
  assert back['filled_frames'].tolist() == [2]
  assert back['units'] == 'mm' and back['fps'] == 50.0
  assert list(back['joint_names']) == list(H36M)
  assert [p.name for p in tmp_path.iterdir()] == [path.name]
  with pytest.raises(errors.InputError, match='expected a file ending in'):
    outputs.write_fields(tmp_path / 'out.txt', {})


def _skeleton_pixels(frames):
  """Per frame, the set of non-white pixels of the 3D panel."""
  panel = frames[:, :, rendering.WIDTH_PX // 2:]
  return np.any(panel < 200, axis=-1)


@pytest.mark.parametrize('suffix', ['.gif', '.mp4'])
def test_animation_has_every_frame_and_moves(tmp_path, suffix):
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  lifter, result = _result(frames=5)
  renderer = rendering.FrameRenderer(
      result.keypoints_2d, result.poses_3d, lifter.skeleton,
      result.image_size, result.units, result.filled_joints)
  path = tmp_path / f'demo{suffix}'
  try:
    rendering.render(path, renderer, fps=result.fps)
  finally:
    renderer.close()
  frames = iio.imread(path, index=None)
  assert frames.shape[0] == 5
  assert frames.shape[1:3] == (rendering.HEIGHT_PX, rendering.WIDTH_PX)
  drawn = _skeleton_pixels(frames)
  assert drawn[0].sum() > 200  # a skeleton is there
  # The person moves (3 px / frame, noise): the 2D panel changes.
  left = np.any(frames[:, :, :rendering.WIDTH_PX // 2] < 200, axis=-1)
  assert np.sum(left[0] != left[4]) > 50
  assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_contact_sheet(tmp_path):
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  lifter, result = _result(frames=20)
  renderer = rendering.FrameRenderer(
      result.keypoints_2d, result.poses_3d, lifter.skeleton,
      result.image_size, result.units)
  try:
    chosen = rendering.render(tmp_path / 'sheet.png', renderer, fps=50)
  finally:
    renderer.close()
  assert len(chosen) == 8 and chosen[0] == 0 and chosen[-1] == 19
  sheet = iio.imread(tmp_path / 'sheet.png')
  assert sheet.shape[:2] == (4 * rendering.HEIGHT_PX, 2 * rendering.WIDTH_PX)
  first = sheet[:rendering.HEIGHT_PX, :rendering.WIDTH_PX]
  last = sheet[3 * rendering.HEIGHT_PX:, rendering.WIDTH_PX:]
  assert np.sum(np.any(first < 200, -1) != np.any(last < 200, -1)) > 50
  with pytest.raises(errors.InputError, match=r"expected a file ending in "
                     r"\.gif, \.mp4, \.png, got '\.jpg'"):
    rendering.render(tmp_path / 'x.jpg', renderer, fps=50)


# -- BVH -> COCO export --------------------------------------------------------


def test_coco_export_round_trips_through_the_conversion():
  rng = np.random.default_rng(5)
  poses = rng.normal(0, 300, (4, 17, 3)) + [0, 0, 5000]
  coco = bvh.coco_keypoints(poses)
  back = keypoint_formats.to_h36m(
      np.concatenate([coco[..., :2], np.ones((4, 17, 1))], -1),
      keypoint_formats.get('coco'))
  # Limbs, nose and head come back exactly (x, y of camera space here).
  for j in (1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16):
    np.testing.assert_allclose(back[:, j, :2], poses[:, j, :2], atol=1e-3)


def test_bvh_cli_writes_one_camera_as_coco_json(tmp_path):
  # A trimmed CMU clip kept in the repository (tests/testdata/cmu).
  source = sorted(pathlib.Path(__file__).resolve().parent.joinpath(
      'testdata', 'cmu').glob('131_01*.bvh'))[0]
  output, coco = tmp_path / 'clip.npz', tmp_path / 'clip_coco.json'
  assert bvh.main(['--input', str(source), '--output', str(output),
                   '--num_cameras', '2', '--coco_json', str(coco),
                   '--camera', '1']) == 0
  data = readers.read_keypoints(coco)
  views = np.load(output)
  assert data.image_size == tuple(views['image_size'][1])
  assert data.assumed_format == 'coco'
  assert data.tracks.shape == (1,) + views['keypoints_2d'].shape[1:]
  back = keypoint_formats.to_h36m(data.tracks[0],
                                  keypoint_formats.get('coco'))
  limbs = list(skeleton_lib.H36M_LIMB_JOINTS)
  np.testing.assert_allclose(back[:, limbs, :2],
                             views['keypoints_2d'][1][:, limbs, :2],
                             atol=0.01)
  assert bvh.main(['--input', str(source), '--output', str(output),
                   '--coco_json', str(coco), '--camera', '4']) == 1


def test_render_over_video_frames(tmp_path):
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  lifter, result = _result(frames=4)
  # A stand-in video: saturated green frames of the keypoints' image size.
  video = np.zeros((4, 1002 - 2, 1000, 3), np.uint8)
  video[..., 1] = 255
  iio.imwrite(tmp_path / 'in.mp4', video, plugin='FFMPEG', fps=25,
              macro_block_size=1)
  renderer = rendering.FrameRenderer(
      result.keypoints_2d, result.poses_3d, lifter.skeleton,
      result.image_size, result.units)
  try:
    with pytest.raises(errors.InputError, match=r'frames are 1000x1000, '
                       r'the keypoints are for a 1000x1002 image'):
      rendering.render(tmp_path / 'out.gif', renderer, fps=25,
                       video=tmp_path / 'in.mp4')
    video = np.zeros((3, 1002, 1000, 3), np.uint8)
    video[..., 1] = 255
    iio.imwrite(tmp_path / 'in.mp4', video, plugin='FFMPEG', fps=25,
                macro_block_size=1)
    with pytest.raises(errors.InputError, match='has 3 frames, the keypoints '
                       'have 4'):
      rendering.render(tmp_path / 'out.gif', renderer, fps=25,
                       video=tmp_path / 'in.mp4')
    video = np.zeros((4, 1002, 1000, 3), np.uint8)
    video[..., 1] = 255
    iio.imwrite(tmp_path / 'in.mp4', video, plugin='FFMPEG', fps=25,
                macro_block_size=1)
    rendering.render(tmp_path / 'out.gif', renderer, fps=25,
                     video=tmp_path / 'in.mp4')
  finally:
    renderer.close()
  frames = iio.imread(tmp_path / 'out.gif', index=None)
  assert frames.shape[0] == 4
  panel = frames[:, 60:340, 40:360].astype(int)
  green = (panel[..., 1] > 200) & (panel[..., 0] < 80) & (panel[..., 2] < 80)
  assert green.mean() > 0.5  # the video is behind the 2D skeleton
  assert sorted(p.name for p in tmp_path.iterdir()) == ['in.mp4', 'out.gif']


def test_bvh_npz_views_are_people_with_their_own_image_size(tmp_path):
  lifter = lifter_lib.Lifter(_lift_xy, _config())
  views = np.stack([_h36m_pixels(6, np.random.default_rng(k))
                    for k in range(2)])
  views[1, ..., 1] -= 150  # fits the 1000x700 image of view 1
  path = tmp_path / 'views.npz'
  np.savez(path, keypoints_2d=views,
           image_size=np.array([[1000, 1002], [1000, 700]], np.int32))
  result = lifter.lift_file(path, person=1)
  assert result.image_size == (1000, 700) and result.num_people == 2
  np.testing.assert_allclose(result.keypoints_2d, views[1], atol=1e-4)
  np.savez(path, keypoints_2d=views, image_size=np.ones((3, 2)))
  with pytest.raises(errors.InputError, match=r'expected \[W, H\] or '
                     r'\[2, 2\] \(one per person\), got shape \(3, 2\)'):
    lifter.lift_file(path)
