"""End to end: `python -m l2a_jax.main` on the tiny config, 8 fake CPU devices.

Each run is a subprocess, because the fake-device count must be set before
JAX starts. Checks: 2 steps give finite losses, metrics and a checkpoint and
move every parameter tensor away from its initial value; a rerun resumes at
the right step, and 2 steps + 1 resumed step equal 3 uninterrupted steps
(parameters, optimizer state, data-iterator state); the 8-device result
equals the 1-device result for the same global batch.

FSDP (`config.mesh.fsdp=4`: mesh data 2 x fsdp 4 over the same 8 devices,
parameters and optimizer state split 4 ways) matches the data-parallel run
within 1e-5, holds a smaller train state per device, and its checkpoint
continues on 1 device to the same step 3 as the uninterrupted run. The FSDP
checks live here so that they compare against the same data-parallel runs
instead of training their own.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from l2a_jax import checkpointing
from l2a_jax import config_files
from l2a_jax import run_setup

_REPO = pathlib.Path(__file__).resolve().parent.parent
_TINY = _REPO / 'configs' / 'tiny.py'


def _run(workdir, data_dir, cache_dir, devices, *overrides):
  env = dict(
      os.environ,
      XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
      JAX_PLATFORMS='cpu',
      JAX_DISABLE_MOST_OPTIMIZATIONS='true',
  )
  # Reruns of the same program (the resume) load it instead of compiling:
  # the session's compilation cache (tests/conftest.py).
  command = [sys.executable, '-m', 'l2a_jax.main', f'--config={_TINY}',
             f'--workdir={workdir}', f'--config.data.data_dir={data_dir}',
             f'--config.train.compilation_cache_dir={cache_dir}',
             *overrides]
  result = subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=600, cwd=_REPO, check=False)
  if result.returncode != 0:
    raise AssertionError(f'{command} failed:\n{result.stderr[-4000:]}')
  return result


def _logged_losses(log):
  """{step: train_loss} from the metric writer's lines in WORKDIR/log.txt."""
  return {int(step): float(loss) for step, loss in
          re.findall(r'\[(\d+)\] .*?\btrain_loss=([^,\s]+)', log)}


def _log(workdir):
  return (workdir / 'log.txt').read_text()


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('e2e')
  # Its own data folder: the first run prepares the data (and must stay
  # quiet about it, test_two_steps_on_eight_devices).
  data_dir = root / 'tfds'
  cache_dir = os.environ['JAX_COMPILATION_CACHE_DIR']
  eight = _run(root / 'eight', data_dir, cache_dir, 8)
  one = _run(root / 'one', data_dir, cache_dir, 1)
  fsdp = _run(root / 'fsdp', data_dir, cache_dir, 8, '--config.mesh.fsdp=4')
  # The uninterrupted 3-step run that the resumed runs are compared with.
  straight = _run(root / 'eight_three_steps', data_dir, cache_dir, 8,
                  '--config.train.num_train_steps=3')
  return {'root': root, 'data_dir': data_dir, 'cache_dir': cache_dir,
          'eight': eight, 'one': one, 'fsdp': fsdp, 'straight': straight}


def test_two_steps_on_eight_devices(runs):
  workdir = runs['root'] / 'eight'
  stderr = runs['eight'].stderr
  assert "Mesh {'data': 8} over 8 devices" in stderr
  losses = _logged_losses(_log(workdir))
  assert sorted(losses)[:2] == [1, 2]
  # Quiet terminal: per-step scalars, the parameter table and the
  # hyper-parameters are in the log file only; no library noise.
  for text in ('train_loss=', 'head/kernel', 'Hyperparameters',
               'Unable to initialize backend', 'Downloading and preparing',
               'tracked_metric'):
    assert text not in stderr, text
  for text in ('head/kernel', 'Hyperparameters:', 'model.depth: 2'):
    assert text in _log(workdir), text
  assert all(np.isfinite(v) and v > 0 for v in losses.values())

  results = json.loads((workdir / 'eval_metrics.json').read_text())
  for key in ('mpjpe_mm', 'p_mpjpe_mm', 'n_mpjpe_mm', 'mpjve_mm',
              'accel_error_mm', 'pck_150mm', 'auc',
              'mean_pose_baseline_mpjpe_mm'):
    assert np.isfinite(results[key]) and results[key] >= 0, key
  assert results['step'] == 2
  assert results['num_frames'] > 0
  assert results['per_action'] and all(
      'mpjpe_mm' in table for table in results['per_action'].values())
  assert 'Final: MPJPE' in runs['eight'].stdout
  summary = json.loads((workdir / 'run_summary.json').read_text())
  assert summary['steps'] == 2 and summary['train_clips_per_second'] > 0
  assert summary['global_batch'] == 8  # configs/tiny.py data.batch_size

  step_dir = workdir / 'checkpoints' / '2'
  for item in ('params', 'opt_state', 'data_iter', 'meta'):
    assert (step_dir / item).exists(), item
  _, meta = checkpointing.restore_params(workdir, step=2)
  assert meta['step'] == 2 and meta['model']['name'] == 'l2a'
  assert any(p.name.startswith('events.out.tfevents') for p in
             workdir.iterdir())


def test_eight_devices_equal_one_device(runs):
  assert "Mesh {'data': 1} over 1 devices" in runs['one'].stderr
  eight_losses = _logged_losses(_log(runs['root'] / 'eight'))
  one_losses = _logged_losses(_log(runs['root'] / 'one'))
  np.testing.assert_allclose([eight_losses[s] for s in (1, 2)],
                             [one_losses[s] for s in (1, 2)], rtol=1e-5)
  eight, _ = checkpointing.restore_params(runs['root'] / 'eight', step=2)
  one, _ = checkpointing.restore_params(runs['root'] / 'one', step=2)
  for a, b in zip(jax.tree.leaves(eight), jax.tree.leaves(one)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _tiny_initial_params():
  """The tiny config's initial parameters (pure dict of NumPy arrays)."""
  config = config_files.load_sibling(str(_TINY), 'tiny').get_config()
  mesh = run_setup.create_mesh(config)
  return jax.tree.map(np.asarray, run_setup.init_params(config, mesh))


def test_training_moves_every_parameter_tensor(runs):
  initial = _tiny_initial_params()
  trained, _ = checkpointing.restore_params(runs['root'] / 'one', step=2)
  initial_flat = dict(jax.tree_util.tree_leaves_with_path(initial))
  trained_flat = dict(jax.tree_util.tree_leaves_with_path(trained))
  assert initial_flat.keys() == trained_flat.keys()
  unchanged = [jax.tree_util.keystr(path) for path, value in
               initial_flat.items()
               if np.array_equal(value, trained_flat[path])]
  # Every tensor gets a gradient after 2 AdamW steps (none is frozen).
  assert not unchanged, unchanged


def _raw_item(step_dir, item):
  """A checkpoint item as saved, as a tree of NumPy arrays.

  The target is read from the item's own metadata (shapes, dtypes) and
  placed on this process's first device: the item was written on 8 fake
  devices, this process has one.
  """
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with ocp.StandardCheckpointer() as checkpointer:
    metadata = checkpointer.metadata(step_dir / item)
    tree = getattr(metadata, 'item_metadata', metadata)
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        tree)
    return jax.tree.map(np.asarray,
                        checkpointer.restore(step_dir / item, target))


def test_resumed_run_equals_uninterrupted_run(runs):
  # A copy: the fixture's runs stay as trained for the other tests.
  resumed_dir = runs['root'] / 'eight_resumed'
  shutil.copytree(runs['root'] / 'eight', resumed_dir)
  before = len(_log(resumed_dir))  # The rerun appends to the log.
  rerun = _run(resumed_dir, runs['data_dir'], runs['cache_dir'], 8,
               '--config.train.num_train_steps=3')
  assert 'Restored checkpoint step 2 (full)' in rerun.stderr
  # Only step 3 is trained after the resume.
  resumed_losses = _logged_losses(_log(resumed_dir)[before:])
  assert sorted(resumed_losses) == [3]
  results = json.loads((resumed_dir / 'eval_metrics.json').read_text())
  assert results['step'] == 3

  straight_dir = runs['root'] / 'eight_three_steps'
  assert 'Restored checkpoint' not in runs['straight'].stderr
  straight_losses = _logged_losses(_log(straight_dir))
  assert sorted(straight_losses) == [1, 2, 3]
  np.testing.assert_array_equal(resumed_losses[3], straight_losses[3])
  resumed = resumed_dir / 'checkpoints' / '3'
  uninterrupted = straight_dir / 'checkpoints' / '3'
  for item in ('params', 'opt_state'):
    a, b = _raw_item(resumed, item), _raw_item(uninterrupted, item)
    assert jax.tree.structure(a) == jax.tree.structure(b), item
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_array_equal(x, y, err_msg=item)
  # The data iterator's saved state (one JSON file per process; grain's
  # commit marker holds the folder's own path and is left out).
  resumed_iter = sorted(p for p in (resumed / 'data_iter').iterdir()
                        if p.name != 'commit_success.txt')
  assert resumed_iter
  assert [p.name for p in resumed_iter] == sorted(
      p.name for p in (uninterrupted / 'data_iter').iterdir()
      if p.name != 'commit_success.txt')
  for path in resumed_iter:
    assert path.read_bytes() == (uninterrupted / 'data_iter' /
                                 path.name).read_bytes(), path.name


def test_eval_mode_reproduces_the_final_evaluation(runs):
  workdir = runs['root'] / 'one'
  trained_text = (workdir / 'eval_metrics.json').read_text()
  trained = json.loads(trained_text)
  result = _run(workdir, runs['data_dir'], runs['cache_dir'], 1,
                '--mode=eval')
  assert 'Evaluating checkpoint step 2' in result.stderr
  # Its own folder, named after the dataset; the run's file is untouched.
  assert (workdir / 'eval_metrics.json').read_text() == trained_text
  folder = [p for p in workdir.iterdir()
            if p.is_dir() and p.name.startswith('eval_')]
  assert [p.name for p in folder] == ['eval_synthetic_test'], folder
  evaluated = json.loads((folder[0] / 'eval_metrics.json').read_text())
  assert evaluated['step'] == 2
  assert set(evaluated) == set(trained)  # eval_seconds included.
  assert evaluated['baselines_fitted_on'] == trained['baselines_fitted_on']
  for key in ('mpjpe_mm', 'p_mpjpe_mm', 'mpjve_mm', 'num_frames',
              'mean_pose_baseline_mpjpe_mm', 'error_depth_mm'):
    np.testing.assert_allclose(evaluated[key], trained[key], rtol=1e-6)
  for name in ('linear', 'mean_pose', 'zero_depth'):
    np.testing.assert_allclose(evaluated['baselines'][name]['mpjpe_mm'],
                               trained['baselines'][name]['mpjpe_mm'],
                               rtol=1e-6)


def _state_mib(stderr):
  return float(re.search(r'train state ([\d.]+) MiB per device',
                         stderr).group(1))


def test_fsdp_matches_data_parallel(runs):
  root = runs['root']
  assert "Mesh {'data': 2, 'fsdp': 4} over 8 devices" in runs['fsdp'].stderr
  dp, fsdp = _logged_losses(_log(root / 'eight')), _logged_losses(
      _log(root / 'fsdp'))
  assert sorted(fsdp) == [1, 2]
  # Throughput on every log line and the wall-time split at the end.
  log = _log(root / 'fsdp')
  for name in ('train_step_time_s=', 'train_clips_per_second=',
               'train_clips_per_second_per_device='):
    assert name in log
  assert re.search(r'Wall time [\d.]+ s: compilation [\d.]+ s \(\d+%\), '
                   r'input .*checkpointing .*evaluation .*training', log)
  np.testing.assert_allclose([fsdp[s] for s in (1, 2)],
                             [dp[s] for s in (1, 2)], rtol=0, atol=1e-5)
  mpjpe = [json.loads((root / r / 'eval_metrics.json').read_text())
           ['mpjpe_mm'] for r in ('eight', 'fsdp')]
  np.testing.assert_allclose(mpjpe[1], mpjpe[0], rtol=1e-4)
  # The train state is split: each device holds a fraction of it.
  assert (_state_mib(runs['fsdp'].stderr)
          < 0.5 * _state_mib(runs['eight'].stderr))
  a, _ = checkpointing.restore_params(root / 'eight', step=2)
  b, _ = checkpointing.restore_params(root / 'fsdp', step=2)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_fsdp_checkpoint_from_8_devices_resumes_on_1(runs):
  # The FSDP-on-8 checkpoint of step 2 continues to step 3 on 1 device and
  # reaches the uninterrupted data-parallel run's step 3.
  root = runs['root']
  shutil.copytree(root / 'fsdp', root / 'fsdp3')
  one = _run(root / 'fsdp3', runs['data_dir'], runs['cache_dir'], 1,
             '--config.train.num_train_steps=3').stderr
  assert 'Restored checkpoint step 2 (full)' in one
  assert "Mesh {'data': 1} over 1 devices" in one
  straight = _logged_losses(_log(root / 'eight_three_steps'))
  np.testing.assert_allclose(_logged_losses(_log(root / 'fsdp3'))[3],
                             straight[3], rtol=1e-5)
  a, _ = checkpointing.restore_params(root / 'eight_three_steps', step=3)
  b, _ = checkpointing.restore_params(root / 'fsdp3', step=3)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
