"""Every entry point: --help exits 0; bad command lines are one line, exit 2.

Also the pieces behind them: config overrides (`l2a_jax.cli`), the quiet
terminal / complete log file (`l2a_jax.console`) and progress lines
(`l2a_jax.progress`).
"""

import asyncio
import gc
import logging as std_logging
import os
import pathlib
import subprocess
import sys

from absl import logging
import pytest

from l2a_jax import cli
from l2a_jax import console
from l2a_jax import progress

_REPO = pathlib.Path(__file__).resolve().parent.parent

ENTRY_POINTS = ('l2a_jax.main', 'l2a_jax.predict', 'l2a_jax.convert_torch',
                'l2a_jax.benchmark', 'l2a_jax.benchmark.plot',
                'l2a_jax.benchmark.l2a_costs', 'l2a_jax.data.prepare',
                'l2a_jax.data.bvh', 'l2a_jax.data.throughput')


def _env():
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(_REPO))
  env.pop('XLA_FLAGS', None)
  return env


def _start(args, cwd=_REPO):
  return subprocess.Popen([sys.executable, *args], cwd=cwd, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _finish(proc, timeout=300):
  stdout, stderr = proc.communicate(timeout=timeout)
  return proc.returncode, stdout, stderr


def test_help_exits_zero_for_every_entry_point():
  # Started together: most of the time is Python start-up and imports.
  procs = {m: _start(['-m', m, '--help']) for m in ENTRY_POINTS}
  for module, proc in procs.items():
    status, stdout, stderr = _finish(proc)
    assert status == 0, (module, stderr[-2000:])
    assert 'python -m' in stdout, module  # The usage text is printed.


def _bad_main_calls(tmp_path):
  broken = tmp_path / 'broken.py'
  broken.write_text('def get_config():\n  raise RuntimeError("no model")\n')
  syntax = tmp_path / 'syntax.py'
  syntax.write_text('def get_config(:\n')
  tiny = ['--config', 'configs/tiny.py']
  return [
      (tiny + ['--config.model.depht=3'],
       "main: error: --config.model.depht: model has no field 'depht' (did "
       "you mean 'depth'?)"),
      (tiny + ['--config.modle.depth=3'],
       "main: error: --config.modle.depth: config has no section 'modle' "
       "(did you mean 'model'?)"),
      (tiny + ['--config.model.depth=deep'],
       "main: error: --config.model.depth=deep: expected int, got 'deep'"),
      (tiny + ['--config.model.scan_layers=maybe'],
       'main: error: --config.model.scan_layers=maybe: expected a bool '
       "(true / false), got 'maybe'"),
      (['--config', str(tmp_path / 'missing.py')],
       f"main: error: --config: config file '{tmp_path / 'missing.py'}' not "
       'found'),
      (['--config', str(broken)],
       f"main: error: --config: config file '{broken}' is broken: "
       'RuntimeError: no model'),
      (['--config', str(syntax)],
       f"main: error: --config: config file '{syntax}' is broken: "
       'SyntaxError: invalid syntax (syntax.py, line 1)'),
  ]


def test_bad_config_arguments_are_one_line_and_exit_2(tmp_path):
  # The JAX import is recorded at exit: a bad command line must not start
  # JAX, nor create the workdir.
  probe = ('import atexit, runpy, sys\n'
           'atexit.register(lambda: sys.stderr.write(\n'
           '    "jax imported" if "jax" in sys.modules else ""))\n'
           'runpy.run_module("l2a_jax.main", run_name="__main__")\n')
  calls = _bad_main_calls(tmp_path)
  procs = []
  for index, (args, _) in enumerate(calls):
    workdir = tmp_path / f'run{index}'
    procs.append((workdir, _start(
        ['-c', probe, *args, f'--workdir={workdir}'])))
  for (workdir, proc), (_, expected) in zip(procs, calls):
    status, stdout, stderr = _finish(proc)
    assert (status, stderr) == (2, expected + '\n'), stdout
    assert not workdir.exists()


def test_other_entry_points_reject_bad_overrides_with_exit_2(tmp_path):
  calls = {
      'predict': (['-m', 'l2a_jax.predict', '--config', 'configs/tiny.py',
                   '--workdir', str(tmp_path), '--input', 'x.npz',
                   '--output', str(tmp_path / 'y.npz'),
                   '--config.eval.flip_tset=false'],
                  "predict: error: --config.eval.flip_tset: eval has no "
                  "field 'flip_tset' (did you mean 'flip_test'?)"),
      'convert_torch': (['-m', 'l2a_jax.convert_torch', '--config',
                         str(tmp_path / 'none.py'), '--workdir',
                         str(tmp_path / 'w'), '--checkpoint', 'x.pt'],
                        "convert_torch: error: --config: config file "
                        f"'{tmp_path / 'none.py'}' not found"),
      'throughput': (['-m', 'l2a_jax.data.throughput', '--config',
                      'configs/tiny.py', '--config.data.batch_size=1.5'],
                     'throughput: error: --config.data.batch_size=1.5: '
                     "expected int, got '1.5'"),
      'main without --workdir': (['-m', 'l2a_jax.main', '--config',
                                  'configs/tiny.py'],
                                 'main: error: --workdir is required'),
      # The argparse commands: the error line alone, no usage block.
      'prepare': (['-m', 'l2a_jax.data.prepare', '--data_dir',
                   str(tmp_path / 'd')],
                  'prepare: error: the following arguments are required: '
                  '--dataset'),
      'bvh': (['-m', 'l2a_jax.data.bvh', '--input', 'a.bvh', '--output',
               str(tmp_path / 'y.npz'), '--num_cameras', 'two'],
              "bvh: error: argument --num_cameras: invalid int value: 'two'"),
  }
  procs = {name: _start(args) for name, (args, _) in calls.items()}
  for name, proc in procs.items():
    status, _, stderr = _finish(proc)
    assert (status, stderr) == (2, calls[name][1] + '\n'), name
  assert not (tmp_path / 'y.npz').exists()
  assert not (tmp_path / 'w').exists()
  assert not (tmp_path / 'd').exists()


# ----------------------------------------------------------------------------
# In-process: overrides, logging filters, progress.
# ----------------------------------------------------------------------------


def test_overrides_are_split_out_of_argv():
  rest, overrides = cli.split_config_overrides(
      ['main', '--config=c.py', '--config.model.depth=3', '--config.data.name',
       'synthetic', '--noconfig.eval.flip_test', '--config.model.scan_layers',
       '--workdir', 'w'])
  assert rest == ['main', '--config=c.py', '--workdir', 'w']
  assert overrides == [('model.depth', '3'), ('data.name', 'synthetic'),
                       ('eval.flip_test', 'false'),
                       ('model.scan_layers', 'true')]
  assert cli.config_specs(['m', '--config', 'a.py:x=1', '--config=b.py']) == [
      'a.py:x=1', 'b.py']


def test_overrides_take_the_type_of_the_field():
  config = cli.load_config_file(str(_REPO / 'configs/tiny.py'))
  cli.apply_override(config, 'model.depth', '5')
  cli.apply_override(config, 'optim.learning_rate', '1')
  cli.apply_override(config, 'model.scan_layers', 'False')
  cli.apply_override(config, 'data.name', 'h36m')
  assert (config.model.depth, config.model.scan_layers) == (5, False)
  assert (config.optim.learning_rate, config.data.name) == (1.0, 'h36m')
  assert isinstance(config.optim.learning_rate, float)
  with pytest.raises(cli.UsageError, match="expected float, got 'fast'"):
    cli.apply_override(config, 'optim.learning_rate', 'fast')
  with pytest.raises(cli.UsageError, match="optim has no field 'lr'"):
    cli.apply_override(config, 'optim.lr', '1')


def _record(pathname, level, message, **extra):
  record = std_logging.LogRecord('x', level, pathname, 1, message, (), None)
  for key, value in extra.items():
    setattr(record, key, value)
  return record


@pytest.fixture
def default_verbosity():
  old = logging.get_verbosity()
  logging.set_verbosity(logging.INFO)
  yield
  logging.set_verbosity(old)


def test_terminal_hides_known_noise_and_file_only_records(default_verbosity):
  del default_verbosity
  sep = os.sep
  ours = f'{sep}repo{sep}l2a_jax{sep}train.py'
  orbax = f'{sep}site{sep}orbax{sep}checkpoint_manager.py'
  jax_path = f'{sep}site{sep}jax{sep}_src{sep}xla_bridge.py'
  tfds = f'{sep}site{sep}tensorflow_datasets{sep}core{sep}file_utils.py'
  terminal = console._QuietTerminal()  # pylint: disable=protected-access
  log_file = console._QuietFile()  # pylint: disable=protected-access
  shown = _record(ours, std_logging.INFO, 'Compiled the train step')
  table = _record(ours, std_logging.INFO, 'Parameters: ...',
                  **console.FILE_ONLY)
  noise = [
      _record(jax_path, std_logging.INFO,
              "Unable to initialize backend 'tpu': INTERNAL"),
      _record(orbax, std_logging.WARNING,
              'Given directory is read only=/tmp/run/checkpoints'),
      _record(orbax, std_logging.WARNING,
              'CheckpointManagerOptions.read_only=True, setting '
              'save_interval_steps=0.'),
      _record(orbax, std_logging.WARNING,
              'Requested `tracked_metric`; did not provide metrics.'),
      _record(tfds, std_logging.WARNING,
              'Variant folder /x has no dataset_info.json'),
      _record(orbax, std_logging.INFO, 'Saved item /tmp/run/1/params'),
  ]
  real_warning = _record(orbax, std_logging.WARNING, 'disk is full')
  assert terminal.filter(shown) and terminal.filter(real_warning)
  if os.geteuid() != 0:  # root may write anywhere.
    assert terminal.filter(_record(orbax, std_logging.WARNING,
                                   'Given directory is read only=/proc/1'))
  assert not terminal.filter(table)
  assert not any(terminal.filter(r) for r in noise)
  # The log file has this package's records (the table included) and every
  # warning, but not third-party INFO.
  assert log_file.filter(shown) and log_file.filter(table)
  assert log_file.filter(noise[1]) and not log_file.filter(noise[-1])
  logging.set_verbosity(logging.DEBUG)  # --verbosity=1: everything.
  assert all(terminal.filter(r) for r in noise + [table])


class _FailingRead:
  """An awaitable that fails like a TensorStore read of a damaged file."""

  def __init__(self, message):
    self._message = message

  def __await__(self):
    raise ValueError(self._message)
    yield  # pylint: disable=unreachable


def _orphan_a_failed_read(message):
  """Lets a task over a failing `_FailingRead` be collected unretrieved:
  asyncio logs 'Task exception was never retrieved' with its traceback."""
  loop = asyncio.new_event_loop()
  try:
    task = asyncio.ensure_future(_FailingRead(message), loop=loop)
    loop.run_until_complete(asyncio.wait([task]))
    del task
    gc.collect()
  finally:
    loop.close()


def test_orphaned_tensorstore_read_errors_stay_off_the_terminal(
    default_verbosity, caplog):
  """A damaged checkpoint's read error, re-logged by asyncio when the task
  holding it is collected, is not a second traceback on the terminal (the
  restore reported it as one 'is unusable' warning); it stays in the log
  file, and other never-retrieved task errors are still shown."""
  del default_verbosity
  with caplog.at_level(std_logging.ERROR, logger='asyncio'):
    _orphan_a_failed_read(
        'DATA_LOSS: Error reading "head.kernel/.zarray": CRC-32C checksum '
        "verification failed [tensorstore_spec='{\"driver\":\"zarr\"}']")
    _orphan_a_failed_read('something else broke')
  orphaned = [r for r in caplog.records if r.name == 'asyncio'
              and 'never retrieved' in r.getMessage()]
  damaged = [r for r in orphaned if 'DATA_LOSS' in r.getMessage()]
  other = [r for r in orphaned if 'something else' in r.getMessage()]
  assert len(damaged) == 1 and len(other) == 1
  # Only asyncio frames and this file: no Orbax path in the traceback.
  text = console._record_text(damaged[0])  # pylint: disable=protected-access
  assert 'Traceback' in text and f'{os.sep}orbax{os.sep}' not in text
  terminal = console._QuietTerminal()  # pylint: disable=protected-access
  log_file = console._QuietFile()  # pylint: disable=protected-access
  assert not terminal.filter(damaged[0]) and log_file.filter(damaged[0])
  assert terminal.filter(other[0])


def test_log_file_gets_file_only_records(tmp_path, default_verbosity):
  del default_verbosity
  handler = console.log_to_file(tmp_path / 'run' / 'log.txt')
  try:
    logging.info('hyper-parameters: %s', 'depth=2', extra=console.FILE_ONLY)
  finally:
    std_logging.getLogger().removeHandler(handler)
    handler.close()
  assert 'hyper-parameters: depth=2' in (tmp_path / 'run' /
                                          'log.txt').read_text()


def test_progress_lines_when_not_a_terminal(monkeypatch):
  lines = []
  monkeypatch.setattr(progress.logging, 'info',
                      lambda fmt, *args, **kw: lines.append(fmt % args))
  bar = progress.Progress(3, unit='batch', description='eval',
                          interval_seconds=0.0, terminal=False)
  bar.update(1)
  bar.set_postfix(loss='0.5')
  bar.update(2)
  bar.close()
  bar.close()
  assert [line.split(' (')[0] for line in lines] == [
      'eval 1/3 batches', 'eval 3/3 batches']
  assert lines[-1].endswith('loss=0.5')
  quiet = progress.Progress(3, unit='step', description='train',
                            interval_seconds=3600.0, terminal=False)
  quiet.update(3)
  quiet.close()  # Nothing logged for 3600 s: the final line at close.
  assert lines[-1].startswith('train 3/3 steps (')
  hidden = progress.Progress(3, unit='step', description='train',
                             enabled=False, terminal=False)
  hidden.update(3)
  hidden.close()
  assert len(lines) == 3
