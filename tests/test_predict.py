"""The predict entry point: input checks, flip TTA and root, CLI end to end."""

import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from l2a_jax import config_files
from l2a_jax import convert_torch
from l2a_jax import predict
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
  return subprocess.run([sys.executable, '-m', module, *args],
                        capture_output=True, text=True, cwd=_REPO,
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
  with np.load(tmp_path / 'out.npz') as out:
    assert out.files == ['poses_3d']
    got = out['poses_3d']
  assert got.dtype == np.float32 and got.shape == (3, _FRAMES, 17, 3)
  assert np.abs(expected[:, :, 0]).max() > 1e-2  # raw: root not zeroed
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      'in.npz', 'official.pth.tr', 'out.npz', 'work']


def test_cli_bad_input_fails_with_one_line_and_writes_nothing(tmp_path):
  np.savez(tmp_path / 'in.npz', keypoints_2d=keypoints()[:, :5])
  result = run_cli('l2a_jax.predict', *cli_args(
      f'--workdir={tmp_path / "work"}', f'--input={tmp_path / "in.npz"}',
      f'--output={tmp_path / "out.npz"}'))
  assert result.returncode != 0
  assert error_line(result).startswith('predict: error: ')
  assert 'has 5 frames per clip' in error_line(result)
  assert not (tmp_path / 'out.npz').exists()
  assert [p.name for p in tmp_path.iterdir()] == ['in.npz']


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
  x = keypoints(2, seed=1)
  skeleton = skeleton_lib.H36M
  got = predict.predict_poses(jax_model, x, raw=False, flip_test=True,
                              skeleton=skeleton, batch_size=4)
  with torch.no_grad():
    plain = model(torch.from_numpy(x)).numpy()
    mirrored = model(torch.from_numpy(transforms.flip(x, skeleton))).numpy()
  expected = 0.5 * (plain + transforms.flip(mirrored, skeleton))
  expected[:, :, 0] = 0.0
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
  assert np.all(got[:, :, 0] == 0.0)
  # Without flip test: the plain output with the root set to 0.
  got = predict.predict_poses(jax_model, x, raw=False, flip_test=False,
                              skeleton=skeleton, batch_size=4)
  plain[:, :, 0] = 0.0
  np.testing.assert_allclose(got, plain, rtol=0, atol=1e-5)


def test_model_config_must_match_the_checkpoint(official_checkpoint,
                                                tmp_path):
  _, path = official_checkpoint
  config = tiny_config()
  convert_torch.convert_to_jax(config.model, path, tmp_path / 'work')
  config.model.mlp_ratio = 2.0
  with pytest.raises(predict.InputError,
                     match=r'mlp_ratio: 4\.0 \(checkpoint\) vs 2\.0'):
    predict.load_model(config.model, tmp_path / 'work')
  # Execution-only fields may differ.
  config.model.mlp_ratio = 4.0
  config.model.scan_layers = False
  config.model.remat = 'block'
  model, _ = predict.load_model(config.model, tmp_path / 'work')
  assert not model.scan_layers


def _save(tmp_path, **arrays):
  np.savez(tmp_path / 'in.npz', **arrays)
  return tmp_path / 'in.npz'


@pytest.mark.parametrize('arrays,message', [
    ({'poses': keypoints()}, "missing key 'keypoints_2d'"),
    ({'keypoints_2d': keypoints()[0]}, 'expected rank 4'),
    ({'keypoints_2d': keypoints()[:, :, :16]}, 'has 16 joints'),
    ({'keypoints_2d': keypoints()[..., :2]}, 'has 2 channels'),
    ({'keypoints_2d': keypoints()[:, :6]}, 'has 6 frames per clip'),
    ({'keypoints_2d': keypoints()[:0]}, 'holds no clips'),
    ({'keypoints_2d': np.ones((1, _FRAMES, 17, 3), np.int32)},
     'dtype int32'),
    ({'keypoints_2d': np.full((1, _FRAMES, 17, 3), np.nan, np.float32)},
     'NaN or Inf'),
])
def test_input_validation(tmp_path, arrays, message):
  path = _save(tmp_path, **arrays)
  with pytest.raises(predict.InputError, match=message) as error:
    predict.load_keypoints(path, tiny_config().model)
  assert '\n' not in str(error.value)
  assert str(path) in str(error.value)


def test_input_files_that_are_not_npz(tmp_path):
  model_config = tiny_config().model
  with pytest.raises(predict.InputError, match='no such input file'):
    predict.load_keypoints(tmp_path / 'absent.npz', model_config)
  np.save(tmp_path / 'single.npy', keypoints())
  with pytest.raises(predict.InputError, match='a single array'):
    predict.load_keypoints(tmp_path / 'single.npy', model_config)
  (tmp_path / 'text.npz').write_text('not an archive')
  with pytest.raises(predict.InputError, match='not a readable .npz'):
    predict.load_keypoints(tmp_path / 'text.npz', model_config)
  # float64 is accepted and converted.
  got = predict.load_keypoints(
      _save(tmp_path, keypoints_2d=keypoints().astype(np.float64)),
      model_config)
  assert got.dtype == np.float32


def test_write_outputs_is_atomic(tmp_path):
  poses = keypoints(2)
  predict.write_outputs(tmp_path / 'out.npz', poses)
  assert [p.name for p in tmp_path.iterdir()] == ['out.npz']
  with np.load(tmp_path / 'out.npz') as out:
    np.testing.assert_array_equal(out['poses_3d'], poses)
  with pytest.raises(predict.InputError, match='does not exist'):
    predict.write_outputs(tmp_path / 'missing_dir' / 'out.npz', poses)
