"""FSDP on 8 fake CPU devices matches data parallelism; 8 -> 1 device restore.

Subprocess runs of `python -m l2a_jax.main` on the tiny config (the fake
device count is fixed before JAX starts): data parallel over 8 devices, and
FSDP (`config.mesh.fsdp=4`: mesh data 2 x fsdp 4, parameters and optimizer
state split 4 ways) over the same 8 devices, 2 steps each. The losses agree
within 1e-5, the FSDP step's per-device arguments (the train state) are
smaller, and then both runs continue to step 3: the FSDP run's checkpoint
restored on 1 device, the data-parallel one on 8; their step 3 agrees.
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
import pytest

from l2a_jax import checkpointing
from l2a_jax import sharding

_REPO = pathlib.Path(__file__).resolve().parent.parent
_TINY = _REPO / 'configs' / 'tiny.py'


def _run(workdir, data_dir, devices, *overrides):
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_DISABLE_MOST_OPTIMIZATIONS='true')
  command = [sys.executable, '-m', 'l2a_jax.main', f'--config={_TINY}',
             f'--workdir={workdir}', f'--config.data.data_dir={data_dir}',
             '--config.eval.flip_test=False',
             # The session's compilation cache (tests/conftest.py).
             '--config.train.compilation_cache_dir='
             + os.environ['JAX_COMPILATION_CACHE_DIR'], *overrides]
  result = subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=600, cwd=_REPO, check=False)
  assert result.returncode == 0, result.stderr[-4000:]
  return result.stderr


def _losses(workdir):
  return {int(step): float(loss) for step, loss in re.findall(
      r'\[(\d+)\] .*?\btrain_loss=([^,\s]+)', (workdir / 'log.txt').read_text())}


def _state_mib(log):
  return float(re.search(r'train state ([\d.]+) MiB per device', log).group(1))


@pytest.fixture(scope='module')
def runs(tmp_path_factory, tiny_data_dir):
  root = tmp_path_factory.mktemp('fsdp')
  data_dir = tiny_data_dir
  logs = {'dp': _run(root / 'dp', data_dir, 8),
          'fsdp': _run(root / 'fsdp', data_dir, 8, '--config.mesh.fsdp=4')}
  return root, data_dir, logs


def test_fsdp_matches_data_parallel(runs):
  root, _, logs = runs
  assert "Mesh {'data': 8} over 8 devices" in logs['dp']
  assert "Mesh {'data': 2, 'fsdp': 4} over 8 devices" in logs['fsdp']
  dp, fsdp = _losses(root / 'dp'), _losses(root / 'fsdp')
  assert sorted(fsdp) == [1, 2]
  # Throughput on every log line and the wall-time split at the end.
  log = (root / 'fsdp' / 'log.txt').read_text()
  for name in ('train_step_time_s=', 'train_clips_per_second=',
               'train_clips_per_second_per_device='):
    assert name in log
  assert re.search(r'Wall time [\d.]+ s: compilation [\d.]+ s \(\d+%\), '
                   r'input .*checkpointing .*evaluation .*training', log)
  np.testing.assert_allclose([fsdp[s] for s in (1, 2)],
                             [dp[s] for s in (1, 2)], rtol=0, atol=1e-5)
  mpjpe = [json.loads((root / r / 'eval_metrics.json').read_text())
           ['mpjpe_mm'] for r in ('dp', 'fsdp')]
  np.testing.assert_allclose(mpjpe[1], mpjpe[0], rtol=1e-4)
  # The train state is split: each device holds a fraction of it.
  assert _state_mib(logs['fsdp']) < 0.5 * _state_mib(logs['dp'])
  a, _ = checkpointing.restore_params(root / 'dp', step=2)
  b, _ = checkpointing.restore_params(root / 'fsdp', step=2)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_fsdp_checkpoint_from_8_devices_resumes_on_1(runs):
  root, data_dir, _ = runs
  # Continue each run to step 3: FSDP-on-8 restored on 1 device, the
  # data-parallel run on its 8 devices; both resume the same step-2 state.
  for name in ('dp', 'fsdp'):
    shutil.copytree(root / name, root / f'{name}3')
  one = _run(root / 'fsdp3', data_dir, 1, '--config.train.num_train_steps=3')
  assert 'Restored checkpoint step 2 (full)' in one
  assert "Mesh {'data': 1} over 1 devices" in one
  _run(root / 'dp3', data_dir, 8, '--config.train.num_train_steps=3')
  np.testing.assert_allclose(_losses(root / 'fsdp3')[3],
                             _losses(root / 'dp3')[3], rtol=1e-5)
  a, _ = checkpointing.restore_params(root / 'dp3', step=3)
  b, _ = checkpointing.restore_params(root / 'fsdp3', step=3)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_fsdp_spec_splits_the_largest_divisible_dimension():
  assert sharding.fsdp_spec((16, 64), 4) == jax.sharding.PartitionSpec(
      None, 'fsdp')
  assert sharding.fsdp_spec((2, 12, 3), 4) == jax.sharding.PartitionSpec(
      None, 'fsdp', None)
  assert sharding.fsdp_spec((3, 5), 4) == jax.sharding.PartitionSpec()
  assert sharding.fsdp_spec((), 4) == jax.sharding.PartitionSpec()
  assert sharding.fsdp_spec((64,), 1) == jax.sharding.PartitionSpec()
