"""The predict entry point with a converted TCPFormer: --raw equals the
PyTorch forward, flip TTA and root, checkpoint checks, CLI end to end."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from l2a_jax import checkpointing
from l2a_jax import config_files
from l2a_jax import convert_torch
from l2a_jax import predict
from l2a_jax.inference import lifter as lifter_lib
from l2a_jax.inference import model_loading
from l2a_jax.inference import outputs
from l2a_jax.data import skeleton as skeleton_lib
from l2a_jax.data import transforms

torch = pytest.importorskip('torch')

# pylint: disable=g-import-not-at-top,wrong-import-position
from l2a_jax.torch_reference import tcpformer as torch_tcpformer
# pylint: enable=g-import-not-at-top,wrong-import-position

_REPO = pathlib.Path(__file__).resolve().parents[1]
_CONFIG_FILE = _REPO / 'configs' / 'tcpformer_h36m.py'
_CONFIGS = config_files.load_sibling(str(_CONFIG_FILE), 'tcpformer_h36m')
# The tiny model as command-line overrides of the full-size config file.
_TINY = {'depth': 2, 'dim': 16, 'num_heads': 2, 'dim_rep': 24,
         'layer_scale_init': 0.2}
_FRAMES = 9


# Small programs compiled once each: compile them cheaply.
pytestmark = pytest.mark.usefixtures('one_torch_thread',
                                     'unoptimised_compiles')


def tiny_config():
  config = _CONFIGS.get_config(f'frames={_FRAMES}')
  for key, value in _TINY.items():
    config.model[key] = value
  return config


def cli_args(*extra):
  return [f'--config={_CONFIG_FILE}:frames={_FRAMES}'] + [
      f'--config.model.{k}={v}' for k, v in _TINY.items()] + list(extra)


def run_cli(module, *args):
  # Like this module's in-process programs (unoptimised_compiles): each is
  # compiled and run once, so it is compiled cheaply.
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS='true')
  return subprocess.run([sys.executable, '-m', module, *args],
                        capture_output=True, text=True, cwd=_REPO, env=env,
                        timeout=300, check=False)


def error_line(result):
  """The last stderr line (absl / Orbax log lines come before it)."""
  return result.stderr.strip().splitlines()[-1]


@pytest.fixture(name='official_checkpoint')
def fixture_official_checkpoint(tmp_path):
  """A tiny TCPFormer saved in the official training-checkpoint format."""
  torch.manual_seed(0)
  model = torch_tcpformer.TCPFormer.from_config(tiny_config().model).eval()
  with torch.no_grad():  # informative values instead of constant inits
    for name, p in model.named_parameters():
      if 'layer_scale' in name:
        p.uniform_(0.05, 0.3)
      elif 'pos_embed' in name or 'fusion.weight' in name:
        p.normal_(0.0, 0.2)
  path = tmp_path / 'official.pth.tr'
  torch.save({
      'epoch': 7, 'lr': 4e-4, 'optimizer': {'state': {}},
      'model': {'module.' + k: v for k, v in model.state_dict().items()},
      'min_mpjpe': np.float64(45.0), 'wandb_id': 'abc'}, path)
  return model, path


def keypoints(n=3, seed=0):
  return np.random.RandomState(seed).randn(n, _FRAMES, 17, 3).astype(
      np.float32)


def test_cli_convert_then_raw_predict_equals_torch(official_checkpoint,
                                                   tmp_path):
  model, path = official_checkpoint
  x = keypoints()
  np.savez(tmp_path / 'in.npz', keypoints_2d=x)
  result = run_cli('l2a_jax.convert_torch', *cli_args(
      f'--checkpoint={path}', f'--workdir={tmp_path / "work"}'))
  assert result.returncode == 0, result.stderr[-2000:]
  # batch_size 2 for 3 clips: the padded last batch is exercised too.
  result = run_cli('l2a_jax.predict', *cli_args(
      f'--workdir={tmp_path / "work"}', f'--input={tmp_path / "in.npz"}',
      f'--output={tmp_path / "out.npz"}', '--raw', '--batch_size=2'))
  assert result.returncode == 0, result.stderr[-2000:]
  with torch.no_grad():
    expected = model(torch.from_numpy(x)).numpy()
  out = outputs.read_fields(tmp_path / 'out.npz')
  assert out['units'] == 'normalised'
  got = out['poses_3d']
  assert got.dtype == np.float32 and got.shape == (3, _FRAMES, 17, 3)
  assert np.abs(expected[:, :, 0]).max() > 1e-2  # raw: root not zeroed
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      'in.npz', 'official.pth.tr', 'out.npz', 'work']


def _coco_walk(frames, seed=0):
  """A COCO-17 person in a 1000x1002 image walking right, a few gaps."""
  rng = np.random.default_rng(seed)
  h36m = np.array(
      [[500, 500], [470, 500], [470, 700], [470, 900], [530, 500], [530, 700],
       [530, 900], [500, 400], [500, 300], [500, 250], [500, 200], [560, 310],
       [590, 400], [600, 480], [440, 310], [410, 400], [400, 480]], float)
  coco = np.zeros((17, 2))
  coco[0] = h36m[9]
  coco[1], coco[2] = h36m[10] + [20, 0], h36m[10] - [20, 0]
  coco[3], coco[4] = h36m[10] + [40, 20], h36m[10] - [40, -20]
  for c, h in {5: 11, 6: 14, 7: 12, 8: 15, 9: 13, 10: 16, 11: 4, 12: 1,
               13: 5, 14: 2, 15: 6, 16: 3}.items():
    coco[c] = h36m[h]
  records = []
  for t in range(frames):
    if t == 7:
      continue  # no detection: filled
    xy = coco + [4.0 * t, 0] + rng.normal(0, 2, (17, 2))
    points = np.concatenate([xy, np.full((17, 1), 0.9)], -1)
    records.append({'image_id': t, 'category_id': 1, 'score': 0.9,
                    'keypoints': points.reshape(-1).tolist()})
  return records


def test_cli_coco_results_to_3d_and_gif(official_checkpoint, tmp_path):
  _, path = official_checkpoint
  convert_torch.convert_to_jax(tiny_config().model, path, tmp_path / 'work')
  (tmp_path / 'det.json').write_text(json.dumps(_coco_walk(22)))
  result = run_cli('l2a_jax.predict', *cli_args(
      f'--workdir={tmp_path / "work"}', f'--input={tmp_path / "det.json"}',
      f'--output={tmp_path / "out.json"}', '--image_size=1000,1002',
      f'--render={tmp_path / "out.gif"}', '--fps=25'))
  assert result.returncode == 0, result.stderr[-2000:]
  out = outputs.read_fields(tmp_path / 'out.json')
  assert out['poses_3d'].shape == (22, 17, 3)
  assert np.all(out['poses_3d'][:, 0] == 0)
  assert np.abs(out['poses_3d']).max() > 1.0
  assert out['units'] == 'px'  # a MotionBERT-format Human3.6M config
  assert out['filled_frames'].tolist() == [7]
  assert out['keypoint_format'] == 'coco' and out['fps'] == 25.0
  assert list(out['joint_names']) == list(skeleton_lib.H36M.joint_names)
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  frames = iio.imread(tmp_path / 'out.gif', index=None)
  assert frames.shape[0] == 22
  drawn = np.any(frames < 200, axis=-1)
  assert np.sum(drawn[0] != drawn[-1]) > 50


def test_cli_errors_are_one_line_and_write_nothing(official_checkpoint,
                                                   tmp_path):
  _, path = official_checkpoint
  convert_torch.convert_to_jax(tiny_config().model, path, tmp_path / 'work')
  records = _coco_walk(10)
  for record in records:  # normalised coordinates passed as pixels
    values = np.asarray(record['keypoints']).reshape(17, 3)
    values[:, :2] = values[:, :2] / 500 - 1
    record['keypoints'] = values.reshape(-1).tolist()
  (tmp_path / 'det.json').write_text(json.dumps(records))
  common = (f'--workdir={tmp_path / "work"}', f'--input={tmp_path / "det.json"}',
            f'--output={tmp_path / "out.json"}',
            f'--render={tmp_path / "out.gif"}')
  for extra, message in (
      (['--image_size=1000,1002'], 'look normalised already'),
      ([], 'pass --image_size W,H'),
      (['--image_size=1000,1002', '--person=3'],
       r'--person: expected 0..0'),
      (['--image_size=1000,1002', '--keypoint_format=openpose25'],
       'openpose25 keypoints have 25 joints, got 17')):
    result = run_cli('l2a_jax.predict', *cli_args(*common, *extra))
    assert result.returncode == 1, result.stderr[-2000:]
    line = error_line(result)
    assert line.startswith('predict: error: ') and message in line, line
    assert str(tmp_path / 'det.json') in line or '--person' in line
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'det.json', 'official.pth.tr', 'work']


def test_cli_convert_error_is_one_line(official_checkpoint, tmp_path):
  _, path = official_checkpoint
  result = run_cli('l2a_jax.convert_torch', *cli_args(
      f'--checkpoint={path}', f'--workdir={tmp_path / "work"}',
      '--config.model.dim_rep=32'))
  assert result.returncode != 0
  line = error_line(result)
  assert line.startswith('convert_torch: error: ')
  assert 'rep_logit.fc.weight (24, 16) vs (32, 16)' in line
  assert not (tmp_path / 'work' / 'checkpoints').exists() or not any(
      (tmp_path / 'work' / 'checkpoints').iterdir())


def test_flip_test_and_root_zeroing(official_checkpoint, tmp_path):
  model, path = official_checkpoint
  config = tiny_config()
  convert_torch.convert_to_jax(config.model, path, tmp_path / 'work')
  jax_model, meta = predict.load_model(config.model, tmp_path / 'work')
  assert meta['converted_from']['epoch'] == 7
  x = keypoints(1, seed=1)
  skeleton = skeleton_lib.H36M
  forward = model_loading.jitted_forward(jax_model)
  got = lifter_lib.Lifter(forward, config, flip_test=True).lift_normalized(
      x[0])
  with torch.no_grad():
    plain = model(torch.from_numpy(x)).numpy()
    mirrored = model(torch.from_numpy(transforms.flip(x, skeleton))).numpy()
  expected = 0.5 * (plain + transforms.flip(mirrored, skeleton))
  expected = expected - expected[:, :, :1]
  np.testing.assert_allclose(got, expected[0], rtol=0, atol=1e-5)
  assert np.all(got[:, 0] == 0.0)
  # Without flip test: the plain output, root-relative.
  got = lifter_lib.Lifter(forward, config, flip_test=False).lift_normalized(
      x[0])
  np.testing.assert_allclose(got, (plain - plain[:, :, :1])[0], rtol=0,
                             atol=1e-5)


def test_model_config_must_match_the_checkpoint(official_checkpoint,
                                                tmp_path):
  _, path = official_checkpoint
  config = tiny_config()
  convert_torch.convert_to_jax(config.model, path, tmp_path / 'work')
  config.model.mlp_ratio = 2.0
  with pytest.raises(predict.InputError,
                     match=r'mlp_ratio: 4\.0 \(checkpoint\) vs 2\.0'):
    predict.load_model(config.model, tmp_path / 'work')
  # Execution-only fields may differ: a scanned checkpoint loads unrolled,
  # with the same outputs.
  config.model.mlp_ratio = 4.0
  scanned, _ = predict.load_model(config.model, tmp_path / 'work')
  config.model.scan_layers = False
  config.model.remat = 'block'
  model, _ = predict.load_model(config.model, tmp_path / 'work')
  assert not model.scan_layers
  x = keypoints(2, seed=3)
  np.testing.assert_allclose(model_loading.jitted_forward(model)(x),
                             model_loading.jitted_forward(scanned)(x),
                             rtol=0, atol=1e-5)


def test_checkpoint_of_another_size_is_one_line(official_checkpoint,
                                                tmp_path):
  _, path = official_checkpoint
  config = tiny_config()
  convert_torch.convert_to_jax(config.model, path, tmp_path / 'work')
  params, _ = checkpointing.restore_params(tmp_path / 'work')
  del params['rep_logit']
  checkpointing.save_params(tmp_path / 'other', params, {'step': 0})
  with pytest.raises(predict.InputError,
                     match=r'parameters do not match the model of --config: '
                     r'missing 2: rep_logit/fc/bias') as error:
    predict.load_model(config.model, tmp_path / 'other')
  assert '\n' not in str(error.value)
