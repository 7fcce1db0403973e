"""The CLI stops with a one-line error: bad config values, a diverged run."""

import os
import pathlib
import subprocess
import sys

_REPO = pathlib.Path(__file__).resolve().parent.parent


def _main(tmp_path, data_dir, *overrides):
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             JAX_DISABLE_MOST_OPTIMIZATIONS='true')
  env.pop('XLA_FLAGS', None)
  return subprocess.run(
      [sys.executable, '-m', 'l2a_jax.main', '--config=configs/tiny.py',
       f'--workdir={tmp_path / "run"}',
       f'--config.data.data_dir={data_dir}',
       # The session's compilation cache (tests/conftest.py).
       '--config.train.compilation_cache_dir='
       + os.environ['JAX_COMPILATION_CACHE_DIR'], *overrides],
      env=env, cwd=_REPO, capture_output=True, text=True, timeout=600,
      check=False)


def _error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith('error:')]


def test_inconsistent_config_is_a_one_line_error(tmp_path, tiny_data_dir):
  result = _main(tmp_path, tiny_data_dir, '--config.data.num_frames=27')
  assert result.returncode == 1
  assert _error_lines(result.stderr) == [
      'error: config.data.num_frames=27 must equal config.model.num_frames=9']
  assert 'Traceback' not in result.stderr


def test_non_finite_loss_stops_before_saving(tmp_path, tiny_data_dir):
  result = _main(tmp_path, tiny_data_dir, '--config.loss.mpjpe=inf')
  assert result.returncode == 1
  assert _error_lines(result.stderr) == [
      'error: step 1: loss is inf (non-finite); stopped without saving this '
      'state']
  assert 'Traceback' not in result.stderr
  checkpoints = tmp_path / 'run' / 'checkpoints'
  assert not checkpoints.exists() or not any(checkpoints.iterdir())
  assert not (tmp_path / 'run' / 'eval_metrics.json').exists()
