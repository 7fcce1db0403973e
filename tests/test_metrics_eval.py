"""Tests of the evaluation helpers: flip TTA, protocol choice, outputs."""

import json
import types

import numpy as np
import pytest

from l2a_jax import evaluate
from l2a_jax import visualize
from l2a_jax.data import skeleton as skeleton_lib
from l2a_jax.data import transforms


@pytest.mark.parametrize('name', ['h36m', 'mpi'])
def test_flip_poses_matches_the_data_flip(name):
  skeleton = skeleton_lib.get(name)
  poses = np.random.default_rng(0).normal(size=(2, 3, 17, 3)).astype(
      np.float32)
  np.testing.assert_allclose(
      evaluate.flip_poses(poses, skeleton), transforms.flip(poses, skeleton))
  np.testing.assert_allclose(
      evaluate.flip_poses(evaluate.flip_poses(poses, skeleton), skeleton),
      poses)


def test_flip_test_averages_with_the_unflipped_flip_prediction():
  skeleton = skeleton_lib.H36M
  x = np.random.default_rng(1).normal(size=(2, 4, 17, 3)).astype(np.float32)
  # A model that is not flip-equivariant: adds a constant x offset.
  offset = np.zeros(3, np.float32)
  offset[0] = 1.0

  def shifted(inputs):
    return inputs + offset

  pred = np.asarray(evaluate.predict(shifted, x, skeleton, flip_test=True))
  # flip(flip(x) + offset) = x - offset, averaged with x + offset: x.
  np.testing.assert_allclose(pred, x, atol=1e-6)
  no_tta = np.asarray(evaluate.predict(shifted, x, skeleton, flip_test=False))
  np.testing.assert_allclose(no_tta, x + offset, atol=1e-6)


def test_protocol_follows_the_data():
  info = types.SimpleNamespace(skeleton='h36m', action_names=('Walking',))
  assert evaluate.choose_protocol('h36m', info) == 'action_mean'
  assert evaluate.choose_protocol('synthetic', info) == 'frame_mean'
  info = types.SimpleNamespace(skeleton='mpi', action_names=('TS1',))
  assert evaluate.choose_protocol('mpi_inf_3dhp', info) == 'frame_mean'


def test_eval_metrics_json_is_strict_and_replaced(tmp_path):
  path = evaluate.write_eval_metrics(
      str(tmp_path), {'mpjpe_mm': 1.5, 'mpjve_mm': float('nan'),
                      'per_action': {'a': {'mpjpe_mm': float('inf')}}})
  text = (tmp_path / 'eval_metrics.json').read_text()
  assert json.loads(text) == {'mpjpe_mm': 1.5, 'mpjve_mm': None,
                              'per_action': {'a': {'mpjpe_mm': None}}}
  evaluate.write_eval_metrics(str(tmp_path), {'mpjpe_mm': 2.0})
  assert json.loads((tmp_path / 'eval_metrics.json').read_text()) == {
      'mpjpe_mm': 2.0}
  assert path.endswith('eval_metrics.json')
  assert sorted(p.name for p in tmp_path.iterdir()) == ['eval_metrics.json']


def test_clip_picture_and_training_curves_are_pngs(tmp_path):
  rng = np.random.default_rng(3)
  target = rng.normal(size=(5, 17, 3)) * 300
  inputs = rng.uniform(-0.5, 0.5, size=(5, 17, 3))
  visualize.plot_clip(inputs, target + 20, target, skeleton_lib.H36M,
                      tmp_path / 'clip.png', title='clip')
  visualize.plot_training_curves(
      {'loss': [(10, 1.0), (20, 0.5)], 'eval_mpjpe': [(20, 90.0)]},
      tmp_path / 'curves.png', baselines={'linear': 60.0})
  for name in ('clip.png', 'curves.png'):
    data = (tmp_path / name).read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 5_000
  with pytest.raises(ValueError, match='one shape'):
    visualize.plot_clip(inputs[:4], target, target, skeleton_lib.H36M,
                        tmp_path / 'bad.png')
  assert sorted(p.name for p in tmp_path.iterdir()) == ['clip.png',
                                                        'curves.png']
