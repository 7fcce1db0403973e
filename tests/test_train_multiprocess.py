"""Two local processes with jax.distributed (127.0.0.1) run the same training.

Process p feeds rows p, p + 2, ... of the shuffled clip stream, so the
global batch of a step holds the same clips as in a single-process run (in
another row order), flipped or not by the same draws (flips are drawn per
stream position): the loss and the parameters after 2 steps must match the
single-process run of the same config, flip augmentation included.
"""

import os
import pathlib
import re
import socket
import subprocess
import sys

import jax
import numpy as np

from l2a_jax import checkpointing
from l2a_jax import config_files
from l2a_jax.data import builders
from l2a_jax.data import synthetic_builder

_REPO = pathlib.Path(__file__).resolve().parent.parent
_TINY = _REPO / 'configs' / 'tiny.py'


def _command(workdir, data_dir, *flags):
  return [sys.executable, '-m', 'l2a_jax.main', f'--config={_TINY}',
          f'--workdir={workdir}', f'--config.data.data_dir={data_dir}',
          '--config.eval.flip_test=False',
          '--config.data.flip_augment=True', *flags]


def _env(devices):
  return dict(os.environ, JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
              JAX_DISABLE_MOST_OPTIMIZATIONS='true')


def _losses(log_file):
  """The train_loss values of a workdir log file (WORKDIR/log*.txt)."""
  return [float(v) for v in
          re.findall(r'\] .*?\btrain_loss=([^,\s]+)', log_file.read_text())]


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
  data_dir = tmp_path / 'tfds'
  # Prepare the synthetic data once, so the two processes only read it.
  config = config_files.load_sibling(str(_TINY), 'tiny').get_config()
  builders.prepare(builders.get_builder(
      'synthetic', synthetic_builder.synthetic_config(**config.data.synthetic),
      str(data_dir)))

  port = _free_port()
  workers = [
      subprocess.Popen(
          _command(tmp_path / 'two', data_dir, '--distributed',
                   f'--coordinator_address=127.0.0.1:{port}',
                   '--num_processes=2', f'--process_id={index}'),
          env=_env(2), cwd=_REPO, stdout=subprocess.PIPE,
          stderr=subprocess.PIPE, text=True)
      for index in range(2)
  ]
  outputs = [worker.communicate(timeout=600) for worker in workers]
  for worker, (_, stderr) in zip(workers, outputs):
    assert worker.returncode == 0, stderr[-4000:]
  for index, (_, stderr) in enumerate(outputs):
    assert f'process {index} of 2; 2 local / 4 global devices' in stderr
    assert "Mesh {'data': 4} over 4 devices (2 processes)" in stderr
  # Metrics are global: both processes log the same losses.
  two_losses = _losses(tmp_path / 'two' / 'log.txt')
  assert len(two_losses) == 2
  assert two_losses == _losses(tmp_path / 'two' / 'log.process1.txt')
  assert 'Final: MPJPE' in outputs[0][0] and 'Final' not in outputs[1][0]

  single = subprocess.run(
      _command(tmp_path / 'one', data_dir), env=_env(1), cwd=_REPO,
      capture_output=True, text=True, timeout=600, check=False)
  assert single.returncode == 0, single.stderr[-4000:]
  np.testing.assert_allclose(two_losses, _losses(tmp_path / 'one' / 'log.txt'),
                             rtol=1e-5)

  two, _ = checkpointing.restore_params(tmp_path / 'two', step=2)
  one, _ = checkpointing.restore_params(tmp_path / 'one', step=2)
  for a, b in zip(jax.tree.leaves(two), jax.tree.leaves(one)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  assert (tmp_path / 'two' / 'eval_metrics.json').exists()
  assert (tmp_path / 'two' / 'checkpoints' / '2' / 'data_iter').exists()
