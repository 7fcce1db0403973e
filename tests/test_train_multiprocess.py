"""Two local processes (`launch/local.sh`, 127.0.0.1) run the same training.

Process p feeds rows p, p + 2, ... of the shuffled clip stream, so the
global batch of a step holds the same clips as in a single-process run (in
another row order), flipped or not by the same draws (flips are drawn per
stream position): the loss and the parameters after 2 steps must match the
single-process run of the same config, flip augmentation included, and so
must the final evaluation's MPJPE (relative 1e-4). Then each checkpoint
resumes under the other process count (2 processes -> 1, 1 -> 2) for a
third step, and the two continuations agree.
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

from l2a_jax import checkpointing

_REPO = pathlib.Path(__file__).resolve().parent.parent
_TINY = _REPO / 'configs' / 'tiny.py'
_LOCAL = _REPO / 'launch' / 'local.sh'


def _flags(data_dir):
  return [f'--config.data.data_dir={data_dir}',
          '--config.eval.flip_test=False', '--config.data.flip_augment=True',
          # The session's compilation cache (tests/conftest.py).
          '--config.train.compilation_cache_dir='
          + os.environ['JAX_COMPILATION_CACHE_DIR']]


def _command(workdir, data_dir, *flags):
  return [sys.executable, '-m', 'l2a_jax.main', f'--config={_TINY}',
          f'--workdir={workdir}', *_flags(data_dir), *flags]


def _mpjpe(workdir):
  return json.loads((workdir / 'eval_metrics.json').read_text())['mpjpe_mm']


def _env(devices):
  return dict(os.environ, JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
              JAX_DISABLE_MOST_OPTIMIZATIONS='true')


def _losses(log_file):
  """The train_loss values of a workdir log file (WORKDIR/log*.txt)."""
  return [float(v) for v in
          re.findall(r'\] .*?\btrain_loss=([^,\s]+)', log_file.read_text())]


def test_two_processes_match_one_process(tmp_path, tiny_data_dir):
  # The synthetic data is prepared already, so the two processes only read
  # it (tests/conftest.py).
  data_dir = tiny_data_dir

  # The launcher: 2 processes of 2 fake CPU devices each, process 0's
  # output on its stdout, every process's in WORKDIR/logs/.
  two_dir = tmp_path / 'two'
  launched = subprocess.run(
      ['bash', str(_LOCAL), '2', str(_TINY), str(two_dir), *_flags(data_dir)],
      env=dict(_env(1), LOCAL_DEVICES='2', PYTHON=sys.executable),
      cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
  assert launched.returncode == 0, (
      launched.stdout[-3000:] + launched.stderr[-1000:]
      + (two_dir / 'logs' / 'process1.log').read_text()[-3000:])
  for index in range(2):
    log = (two_dir / 'logs' / f'process{index}.log').read_text()
    assert f'process {index} of 2; 2 local / 4 global devices' in log
    assert "Mesh {'data': 4} over 4 devices (2 processes)" in log
    assert 'explicit coordinator' in log
  # Metrics are global: both processes log the same losses.
  two_losses = _losses(two_dir / 'log.txt')
  assert len(two_losses) == 2
  assert two_losses == _losses(two_dir / 'log.process1.txt')
  # Process 0 on the terminal; only process 0 prints the result.
  assert 'Final: MPJPE' in launched.stdout
  assert 'Final: MPJPE' not in (two_dir / 'logs' / 'process1.log').read_text()

  single = subprocess.run(
      _command(tmp_path / 'one', data_dir), env=_env(1), cwd=_REPO,
      capture_output=True, text=True, timeout=600, check=False)
  assert single.returncode == 0, single.stderr[-4000:]
  np.testing.assert_allclose(two_losses, _losses(tmp_path / 'one' / 'log.txt'),
                             rtol=1e-5)

  np.testing.assert_allclose(_mpjpe(two_dir), _mpjpe(tmp_path / 'one'),
                             rtol=1e-4)

  two, _ = checkpointing.restore_params(tmp_path / 'two', step=2)
  one, _ = checkpointing.restore_params(tmp_path / 'one', step=2)
  for a, b in zip(jax.tree.leaves(two), jax.tree.leaves(one)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  assert (tmp_path / 'two' / 'eval_metrics.json').exists()
  assert (tmp_path / 'two' / 'checkpoints' / '2' / 'data_iter').exists()

  # Cross-count restores: the 2-process checkpoint continues in 1 process,
  # the 1-process checkpoint in 2 processes; both start from the same
  # step-2 state (checked above), so step 3 must agree.
  shutil.copytree(two_dir, tmp_path / 'two_then_one')
  shutil.copytree(tmp_path / 'one', tmp_path / 'one_then_two')
  resumed_one = subprocess.run(
      _command(tmp_path / 'two_then_one', data_dir,
               '--config.train.num_train_steps=3'),
      env=_env(1), cwd=_REPO, capture_output=True, text=True, timeout=600,
      check=False)
  assert resumed_one.returncode == 0, resumed_one.stderr[-4000:]
  assert 'Restored checkpoint step 2 (full)' in resumed_one.stderr
  resumed_two = subprocess.run(
      ['bash', str(_LOCAL), '2', str(_TINY), str(tmp_path / 'one_then_two'),
       *_flags(data_dir), '--config.train.num_train_steps=3'],
      env=dict(_env(1), LOCAL_DEVICES='2', PYTHON=sys.executable),
      cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
  assert resumed_two.returncode == 0, (
      resumed_two.stdout[-3000:] + (tmp_path / 'one_then_two' / 'logs' /
                                    'process1.log').read_text()[-3000:])
  assert 'Restored checkpoint step 2 (full)' in resumed_two.stdout
  step3 = [_losses(tmp_path / name / 'log.txt')[-1]
           for name in ('two_then_one', 'one_then_two')]
  np.testing.assert_allclose(step3[0], step3[1], rtol=1e-5)
  a, _ = checkpointing.restore_params(tmp_path / 'two_then_one', step=3)
  b, _ = checkpointing.restore_params(tmp_path / 'one_then_two', step=3)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
