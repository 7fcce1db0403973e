"""Reliability (issue 15): damaged checkpoints, busy or broken workdirs, bad
files. Every case ends in recovery or one `error:` line with a non-zero exit,
and nothing that was good is lost. docs/reliability.md lists the cases.

In-process tests cover the checkpoint and lock logic case by case (fast);
subprocess tests run the real `l2a_jax.main` on a tiny model for the cases
that need the whole program (resume over a damaged checkpoint, a second run,
workdir problems, a failing save).
"""

import json
import os
import pathlib
import re
import resource
import shutil
import subprocess
import sys

from absl import logging
from flax import nnx
import jax
import numpy as np
import optax
import pytest
import torch

from l2a_jax import checkpointing
from l2a_jax import convert_torch
from l2a_jax import workdir as workdir_lib
from l2a_jax.data import prepare
import test_data_builders

_REPO = pathlib.Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------


def _params(seed: int) -> dict:
  model = nnx.Linear(3, 4, rngs=nnx.Rngs(seed))
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def _two_checkpoints(workdir) -> dict[int, dict]:
  """Params-only checkpoints at steps 1 and 2 (different values)."""
  saved = {}
  for step in (1, 2):
    saved[step] = _params(step)
    checkpointing.save_params(workdir, saved[step],
                              {'step': step, 'model': {'num_heads': 2}})
  return saved


def _largest_file(directory: pathlib.Path) -> pathlib.Path:
  return max((p for p in directory.rglob('*') if p.is_file()),
             key=lambda p: p.stat().st_size)


def _flip_bytes(path: pathlib.Path) -> None:
  data = bytearray(path.read_bytes())
  middle = len(data) // 2
  for i in range(middle, middle + 8):
    data[i] ^= 0xFF
  path.write_bytes(bytes(data))


def _truncate(path: pathlib.Path) -> None:
  path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def _params_data(step_dir: pathlib.Path) -> list[pathlib.Path]:
  """The OCDBT data files of `params` (arrays and b-tree nodes)."""
  return sorted(p for p in (step_dir / 'params').rglob('*')
                if p.is_file() and p.parent.name == 'd')


def _damage(kind: str, step_dir: pathlib.Path) -> None:
  if kind == 'flipped bytes in params':
    for path in _params_data(step_dir):
      _flip_bytes(path)
  elif kind == 'truncated params':
    for path in _params_data(step_dir):
      _truncate(path)
  elif kind == 'params deleted':
    shutil.rmtree(step_dir / 'params')
  elif kind == 'params _METADATA deleted':
    (step_dir / 'params' / '_METADATA').unlink()
  elif kind == 'garbage meta':
    (step_dir / 'meta' / 'metadata').write_bytes(b'\xff\xfe garbage \x00')
  elif kind == 'empty step folder':
    shutil.rmtree(step_dir)
    step_dir.mkdir()
  else:
    raise AssertionError(kind)


_DAMAGE = ('flipped bytes in params', 'truncated params', 'params deleted',
           'params _METADATA deleted', 'garbage meta', 'empty step folder')


def _assert_equal_trees(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------------------
# Verified restore and fallback (in process).
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('kind', _DAMAGE)
def test_damaged_latest_checkpoint_falls_back_with_one_warning(
    tmp_path, kind, caplog):
  saved = _two_checkpoints(tmp_path)
  _damage(kind, tmp_path / 'checkpoints' / '2')
  with caplog.at_level(logging.WARNING):
    params, meta = checkpointing.restore_params(tmp_path)
  assert meta['step'] == 1
  _assert_equal_trees(params, saved[1])
  warnings = [r.getMessage() for r in caplog.records
              if 'is unusable' in r.getMessage()]
  assert len(warnings) == 1
  assert str(tmp_path / 'checkpoints' / '2') in warnings[0]
  assert '\n' not in warnings[0]

  # The damaged step itself, asked for by number, is refused in one line.
  with pytest.raises(checkpointing.UnusableCheckpointError) as error:
    checkpointing.restore_params(tmp_path, step=2)
  assert str(tmp_path / 'checkpoints' / '2') in str(error.value)
  assert '\n' not in str(error.value)


def test_flipped_bytes_are_caught_by_the_checksum(tmp_path):
  _two_checkpoints(tmp_path)
  for path in _params_data(tmp_path / 'checkpoints' / '2'):
    _flip_bytes(path)
  with pytest.raises(checkpointing.UnusableCheckpointError,
                     match='checksum mismatch|NaN or Inf|cannot be read|'
                     'unreadable metadata'):
    checkpointing.restore_params(tmp_path, step=2)


def test_checksum_detects_a_changed_value_that_stays_finite(tmp_path):
  """Rewrite the meta's recorded checksum: a finite but different array."""
  saved = _two_checkpoints(tmp_path)
  meta_path = tmp_path / 'checkpoints' / '2' / 'meta' / 'metadata'
  meta = json.loads(meta_path.read_text())
  other, _ = checkpointing.array_summaries(saved[1])
  meta['checksums']['params']['kernel'] = other['kernel']
  meta_path.write_text(json.dumps(meta))
  with pytest.raises(checkpointing.UnusableCheckpointError,
                     match=r'params: checksum mismatch in 1 arrays \(kernel\)'):
    checkpointing.restore_params(tmp_path, step=2)


def test_fingerprint_changes_with_any_one_element():
  base = np.arange(12, dtype=np.float32).reshape(3, 4)
  reference = checkpointing.array_summaries({'x': base})[0]['x']
  seen = {reference}
  for index in range(base.size):
    changed = base.copy().reshape(-1)
    changed[index] = np.nextafter(changed[index], np.float32(100))
    seen.add(checkpointing.array_summaries(
        {'x': changed.reshape(3, 4)})[0]['x'])
  swapped = base.copy()
  swapped[0, [0, 1]] = swapped[0, [1, 0]]
  seen.add(checkpointing.array_summaries({'x': swapped})[0]['x'])
  assert len(seen) == base.size + 2


def test_nan_params_are_neither_saved_nor_restored(tmp_path):
  params = _params(0)
  params['kernel'] = np.asarray(params['kernel']).copy()
  params['kernel'][0, 0] = np.nan
  with pytest.raises(ValueError, match=r'NaN or Inf in 1 parameter arrays'):
    checkpointing.save_params(tmp_path, params, {'step': 0})
  assert not (tmp_path / 'checkpoints' / '0').exists()


def test_no_usable_checkpoint_is_one_line_listing_each(tmp_path):
  _two_checkpoints(tmp_path)
  _damage('garbage meta', tmp_path / 'checkpoints' / '1')
  _damage('params deleted', tmp_path / 'checkpoints' / '2')
  with pytest.raises(checkpointing.UnusableCheckpointError) as error:
    checkpointing.restore_params(tmp_path)
  message = str(error.value)
  assert '\n' not in message
  assert message.startswith(
      f'no usable checkpoint under {tmp_path / "checkpoints"}: ')
  assert 'checkpoints/2/params: missing' in message
  assert 'checkpoints/1/meta/metadata: unreadable meta data' in message


def test_other_model_config_is_refused_naming_the_fields(tmp_path):
  _two_checkpoints(tmp_path)
  with pytest.raises(checkpointing.ModelConfigMismatchError) as error:
    checkpointing.restore_params(
        tmp_path, model_config={'num_heads': 4, 'dtype': 'bfloat16'})
  assert str(error.value).startswith(
      f'{tmp_path / "checkpoints" / "2"} was made with another model config: '
      'num_heads: 2 (checkpoint) vs 4 (config)')
  # Execution-only fields may differ.
  _, meta = checkpointing.restore_params(
      tmp_path, model_config={'num_heads': 2, 'dtype': 'bfloat16'})
  assert meta['step'] == 2


def test_trainer_restore_moves_newer_unusable_checkpoints_aside(tmp_path):
  params = _params(0)
  opt = optax.adam(1e-3)
  with checkpointing.CheckpointManager(tmp_path, keep=3,
                                       best_metric=None) as manager:
    for step in (1, 2, 3):
      params = jax.tree.map(lambda x: x + 1.0, params)
      manager.save(step, params=params, opt_state=opt.init(params),
                   data_iter=None, meta={'model': {}})
  _damage('truncated params', tmp_path / 'checkpoints' / '3')
  (tmp_path / 'checkpoints' / '2' / 'opt_state').rename(
      tmp_path / 'lost_opt_state')  # Listed in meta, so not "params only".
  with checkpointing.CheckpointManager(tmp_path, keep=3,
                                       best_metric=None) as manager:
    restored = manager.restore(None, abstract_params=params,
                               abstract_opt_state=opt.init(params),
                               data_iter=None)
    assert restored.step == 1
    assert restored.opt_state is not None
    assert restored.unusable_steps == [3, 2]
    assert manager.all_steps() == [1]
    # The trainer can write those steps again.
    assert manager.save(2, params=restored.params,
                        opt_state=restored.opt_state, data_iter=None,
                        meta={'model': {}})
  assert sorted(os.listdir(tmp_path / 'unusable_checkpoints')) == ['2', '3']


def test_old_checkpoints_are_removed_only_after_a_newer_one_is_complete(
    tmp_path):
  params = _params(0)
  opt_state = optax.sgd(0.1).init(params)
  manager = checkpointing.CheckpointManager(tmp_path, keep=1,
                                            best_metric=None)
  manager.save(1, params=params, opt_state=opt_state, data_iter=None,
               meta={})
  manager.save(2, params=params, opt_state=opt_state, data_iter=None,
               meta={})
  # Step 1 is removed only once step 2 is complete (at the next save or
  # wait), never while step 2 is in flight.
  assert (tmp_path / 'checkpoints' / '1').is_dir()
  manager.wait_until_finished()
  assert manager.all_steps() == [2]
  manager.close()


# ---------------------------------------------------------------------------
# Workdir lock and checks (in process).
# ---------------------------------------------------------------------------


def test_lock_refuses_a_second_holder_and_takes_over_a_stale_one(
    tmp_path, caplog):
  first = workdir_lib.acquire(str(tmp_path))
  content = json.loads((tmp_path / workdir_lib.LOCK_FILE).read_text())
  assert content['pid'] == os.getpid() and content['host']
  with pytest.raises(workdir_lib.WorkdirBusyError) as error:
    workdir_lib.acquire(str(tmp_path))
  assert f'pid {os.getpid()} on host' in str(error.value)
  first.release()
  assert (tmp_path / workdir_lib.LOCK_FILE).read_text() == ''

  # A run killed with SIGKILL leaves its content but no lock.
  (tmp_path / workdir_lib.LOCK_FILE).write_text(json.dumps(
      {'host': 'elsewhere', 'pid': 999999, 'started': 'then'}))
  with caplog.at_level(logging.WARNING):
    second = workdir_lib.acquire(str(tmp_path))
  assert any('Took over the stale workdir lock' in r.getMessage()
             and 'pid 999999 on host elsewhere' in r.getMessage()
             for r in caplog.records)
  second.release()


@pytest.mark.parametrize('layout,message', [
    ('checkpoints_file', 'checkpoints is a file, not a directory'),
    ('parent_file', 'has a parent {parent} that is a file'),
    ('workdir_file', 'is a file, not a directory'),
])
def test_workdir_checks(tmp_path, layout, message):
  workdir = tmp_path / 'run'
  if layout == 'checkpoints_file':
    workdir.mkdir()
    (workdir / 'checkpoints').write_text('not a directory')
  elif layout == 'parent_file':
    (tmp_path / 'parent').write_text('a file')
    workdir = tmp_path / 'parent' / 'run'
  else:
    workdir.write_text('a file')
  with pytest.raises(workdir_lib.WorkdirError,
                     match=message.format(parent=tmp_path / 'parent')):
    workdir_lib.prepare(str(workdir))


def test_read_only_workdir_is_one_line(tmp_path):
  read_only = tmp_path / 'ro'
  read_only.mkdir()
  if os.geteuid() == 0:  # Root ignores permissions: a read-only mount.
    mounted = subprocess.run(
        ['mount', '-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs',
         str(read_only)], capture_output=True, check=False)
    if mounted.returncode:
      pytest.skip('root without mount rights: cannot make a read-only dir')
  else:
    read_only.chmod(0o555)
  try:
    with pytest.raises(workdir_lib.WorkdirError,
                       match=f'^{read_only} is not writable \\('):
      workdir_lib.prepare(str(read_only))
    with pytest.raises(workdir_lib.WorkdirError,
                       match=f'^--workdir {read_only / "run"}: cannot create '
                       'it \\('):
      workdir_lib.prepare(str(read_only / 'run'))
  finally:
    if os.geteuid() == 0:
      subprocess.run(['umount', str(read_only)], check=True)
    else:
      read_only.chmod(0o755)


# ---------------------------------------------------------------------------
# convert_torch and data.prepare inputs (in process).
# ---------------------------------------------------------------------------


def test_convert_refuses_nan_weights(tmp_path):
  torch.save({'w': torch.tensor([1.0, float('nan')]), 'b': torch.ones(2)},
             tmp_path / 'nan.pt')
  with pytest.raises(convert_torch.ConversionError,
                     match=r'nan.pt: NaN or Inf in 1 tensors \(w\): '
                     'refusing to convert'):
    convert_torch.read_torch_checkpoint(tmp_path / 'nan.pt')


@pytest.mark.parametrize('kind,message', [
    ('empty', r'not a valid PyTorch checkpoint \(empty file\)'),
    ('truncated', r'not a valid PyTorch checkpoint \(truncated or corrupted '
                  r'zip archive'),
    ('json', r'not a valid PyTorch checkpoint: torch.load\(weights_only=True'
             r'\) refused it'),
])
def test_convert_names_files_that_are_not_checkpoints(tmp_path, kind,
                                                      message):
  torch.save({'w': torch.ones(100)}, tmp_path / 'good.pt')
  path = tmp_path / f'{kind}.pt'
  if kind == 'empty':
    path.write_bytes(b'')
  elif kind == 'truncated':
    path.write_bytes((tmp_path / 'good.pt').read_bytes()[:300])
  else:
    path.write_text('{"w": [1, 2]}')
  with pytest.raises(convert_torch.ConversionError) as error:
    convert_torch.read_torch_checkpoint(path)
  assert str(error.value).startswith(str(path))
  assert '\n' not in str(error.value)
  assert re.search(message, str(error.value))


def test_prepare_empty_manual_dir_is_one_line(tmp_path, capsys):
  (tmp_path / 'empty').mkdir()
  code = prepare.main(['--dataset', 'h36m/motionbert', '--manual_dir',
                       str(tmp_path / 'empty'), '--data_dir',
                       str(tmp_path / 'tfds'), '--allow_pickle'])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 1
  assert err == [f'error: --manual_dir {tmp_path / "empty"} is empty: put '
                 'the source files there (see --help)']


def test_prepare_again_from_other_files_is_detected(tmp_path, capsys):
  for name in ('a', 'b'):
    (tmp_path / name).mkdir()
  test_data_builders.write_motionbert(tmp_path / 'a')
  test_data_builders.write_motionbert(
      tmp_path / 'b', lambda d: d['train'].update(
          joint_2d=d['train']['joint_2d'] * 1.0001))
  args = ['--dataset', 'h36m/motionbert', '--data_dir',
          str(tmp_path / 'tfds'), '--allow_pickle', '--manual_dir']
  assert prepare.main(args + [str(tmp_path / 'a')]) == 0
  assert '(prepared)' in capsys.readouterr().out
  assert prepare.main(args + [str(tmp_path / 'a')]) == 0
  assert '(already prepared, reused)' in capsys.readouterr().out
  # Other files of the same size: detected through the modification time.
  os.utime(tmp_path / 'b' / 'h36m_sh_conf_cam_source_final.pkl', ns=(1, 1))
  assert prepare.main(args + [str(tmp_path / 'b')]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1
  assert f'prepared from {tmp_path / "a"}, whose files differ' in err[0]
  assert '--overwrite' in err[0]
  assert prepare.main(args + [str(tmp_path / 'b'), '--overwrite']) == 0
  assert '(prepared)' in capsys.readouterr().out


# ---------------------------------------------------------------------------
# The whole program (subprocesses on the tiny config).
# ---------------------------------------------------------------------------


def _main(workdir, data_dir, *overrides, limit_file_bytes=None):
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             JAX_DISABLE_MOST_OPTIMIZATIONS='true')
  env.pop('XLA_FLAGS', None)

  def limit():
    if limit_file_bytes is not None:
      # Writes past this size fail with EFBIG (Python ignores SIGXFSZ):
      # a disk that fills up during a save, without root.
      resource.setrlimit(resource.RLIMIT_FSIZE,
                         (limit_file_bytes, limit_file_bytes))

  return subprocess.run(
      [sys.executable, '-m', 'l2a_jax.main', '--config=configs/tiny.py',
       f'--workdir={workdir}', f'--config.data.data_dir={data_dir}',
       # The session's compilation cache (tests/conftest.py).
       '--config.train.compilation_cache_dir='
       + os.environ['JAX_COMPILATION_CACHE_DIR'], *overrides],
      env=env, cwd=_REPO, capture_output=True, text=True, timeout=300,
      check=False, preexec_fn=limit)


def _error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith('error:')]


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tiny_data_dir):
  """A 4-step tiny run (checkpoints 2 and 4); its data is tiny_data_dir."""
  root = tmp_path_factory.mktemp('reliability')
  result = _main(root / 'run', tiny_data_dir,
                 '--config.train.num_train_steps=4')
  assert result.returncode == 0, result.stderr[-3000:]
  return root


def _copy(trained, tmp_path):
  shutil.copytree(trained / 'run', tmp_path / 'run')
  return tmp_path / 'run'


def test_resume_over_a_damaged_checkpoint_falls_back(trained, tmp_path,
                                                     tiny_data_dir):
  run = _copy(trained, tmp_path)
  for path in _params_data(run / 'checkpoints' / '4'):
    _flip_bytes(path)
  result = _main(run, tiny_data_dir, '--config.train.num_train_steps=6')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  warned = [line for line in result.stderr.splitlines()
            if 'is unusable' in line]
  assert len(warned) == 1 and str(run / 'checkpoints' / '4') in warned[0]
  assert (run / 'unusable_checkpoints' / '4').is_dir()
  metrics = json.loads((run / 'eval_metrics.json').read_text())
  assert metrics['step'] == 6 and np.isfinite(metrics['mpjpe_mm'])
  assert sorted(int(p.name) for p in (run / 'checkpoints').iterdir()
                if p.name.isdigit())[-1] == 6


def test_other_model_config_and_busy_workdir_are_refused(trained, tmp_path,
                                                         tiny_data_dir):
  run = _copy(trained, tmp_path)
  result = _main(run, tiny_data_dir, '--config.model.num_heads=4',
                 '--config.train.num_train_steps=6')
  assert result.returncode == 1
  assert _error_lines(result.stderr) == [
      f'error: {run / "checkpoints" / "4"} was made with another model '
      'config: num_heads: 2 (checkpoint) vs 4 (config) (use the config it '
      'was made with, or another --workdir)']
  assert 'Traceback' not in result.stderr

  lock = workdir_lib.acquire(str(run))  # Another run holds the workdir.
  try:
    result = _main(run, tiny_data_dir, '--mode=eval')
  finally:
    lock.release()
  assert result.returncode == 1
  (line,) = _error_lines(result.stderr)
  assert line.startswith(f'error: {run} is in use by another run (pid '
                         f'{os.getpid()} on host ')
  assert 'Traceback' not in result.stderr


def test_unusable_workdirs_are_one_line_before_training(trained, tmp_path,
                                                        tiny_data_dir):
  (tmp_path / 'file').write_text('a file')
  (tmp_path / 'ckpt_file').mkdir()
  (tmp_path / 'ckpt_file' / 'checkpoints').write_text('a file')
  cases = {
      tmp_path / 'file' / 'run':
          f'error: --workdir {tmp_path / "file" / "run"} has a parent '
          f'{tmp_path / "file"} that is a file, not a directory',
      tmp_path / 'ckpt_file':
          f'error: {tmp_path / "ckpt_file" / "checkpoints"} is a file, not a '
          'directory: no checkpoint can be written there (move it away)',
  }
  for workdir, expected in cases.items():
    result = _main(workdir, tiny_data_dir)
    assert result.returncode == 1
    assert _error_lines(result.stderr) == [expected]
    assert 'Traceback' not in result.stderr
  assert (tmp_path / 'ckpt_file' / 'checkpoints').read_text() == 'a file'


def test_failing_save_is_one_line_and_keeps_earlier_checkpoints(
    trained, tmp_path, tiny_data_dir):
  run = _copy(trained, tmp_path)
  before = {p.relative_to(run): p.read_bytes()
            for p in (run / 'checkpoints').rglob('*') if p.is_file()}
  # The limit must be below a file every save writes at a fixed size: the
  # tree metadata (the same tree at every step). The data files are no
  # reference: OCDBT splits them into a timing-dependent number of files.
  metadata = run / 'checkpoints' / '4' / 'opt_state' / '_METADATA'
  result = _main(run, tiny_data_dir, '--config.train.num_train_steps=6',
                 limit_file_bytes=metadata.stat().st_size // 2)
  assert result.returncode == 1
  (line,) = _error_lines(result.stderr)
  assert line.startswith(
      f'error: saving checkpoint {run / "checkpoints" / "6"} failed: ')
  assert 'File too large' in line
  assert 'Traceback' not in result.stderr
  assert not (run / 'checkpoints' / '6').exists()
  after = {p.relative_to(run): p.read_bytes()
           for p in (run / 'checkpoints' / '4').rglob('*') if p.is_file()}
  assert after == {k: v for k, v in before.items()
                   if k.parts[1] == '4'}
  # The metrics file of the earlier run is untouched, not the failed one's.
  metrics = json.loads((run / 'eval_metrics.json').read_text())
  assert metrics['step'] == 4
  _, meta = checkpointing.restore_params(run)
  assert meta['step'] == 4


def test_predict_never_returns_non_finite_poses():
  from l2a_jax.inference import errors  # pylint: disable=g-import-not-at-top
  from l2a_jax.inference import lifter  # pylint: disable=g-import-not-at-top
  poses = np.zeros((2, 17, 3), np.float32)
  np.testing.assert_array_equal(lifter._finite_output(poses, 'x'), poses)
  poses[1, 3, 0] = np.inf
  with pytest.raises(errors.InputError,
                     match='clip.npz: the model output is NaN or Inf'):
    lifter._finite_output(poses, 'clip.npz')
