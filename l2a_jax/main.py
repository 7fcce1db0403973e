r"""Entry point: train and evaluate (or only evaluate) one config.

  python -m l2a_jax.main --config configs/quickstart.py --workdir /tmp/qs
  python -m l2a_jax.main --config configs/l2a_h36m.py:frames=81 \
      --workdir /tmp/l2a81 --config.data.batch_size=32
  python -m l2a_jax.main --mode=eval --config configs/tcpformer_h36m.py \
      --workdir /tmp/tcpformer_converted

A relative `--config` path is resolved against the current directory first,
then against the repository root, so the commands work from anywhere in a
source checkout. Rerunning with the same `--workdir` resumes from its latest
checkpoint.

Multi-process runs (TPU pods, several GPU hosts, `launch/local.sh`): run the
same command in every process. `l2a_jax/distributed.py` decides about
`jax.distributed.initialize()`: explicit `--coordinator_address`,
`--num_processes`, `--process_id` (or `L2A_JAX_COORDINATOR_ADDRESS`, ...),
else `--[no]distributed` / `L2A_JAX_DISTRIBUTED=1|0`, else auto-detection of
a multi-task SLURM step or a Cloud TPU VM.

Output: a progress bar (steps, then evaluation batches; on a non-terminal a
line every `--progress_seconds`), evaluation results and warnings; every log
message, the parameter table and the hyper-parameters in
`WORKDIR/log.txt` (`log.process<N>.txt` on other processes). `--verbosity=1`
shows everything on the terminal too. A bad command line (unknown
`--config.FIELD`, wrong type, missing or broken config file, missing flag)
is one line and exit status 2, before JAX starts or the workdir is touched.
"""

import logging as std_logging
import os
import sys
import traceback

from absl import flags
from absl import logging
from ml_collections import config_flags

from l2a_jax import cli
from l2a_jax import console
from l2a_jax import distributed

_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory for checkpoints, summaries and results.')
_MODE = flags.DEFINE_enum(
    'mode', 'train', ['train', 'eval'],
    'train: train (resuming) and evaluate; eval: evaluate the latest '
    'checkpoint of --workdir on the full test set.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', None,
    'Force jax.distributed.initialize() on or off (default: '
    'L2A_JAX_DISTRIBUTED, else auto-detection; l2a_jax/distributed.py).')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'host:port of process 0, when not found automatically.')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Number of processes (with --coordinator_address).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'This process (with --coordinator_address).')
_PROGRESS_SECONDS = flags.DEFINE_float(
    'progress_seconds', 30.0,
    'Seconds between progress lines when the output is not a terminal.')


_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file (configs/*.py), optionally :ARG.',
    lock_config=True)


def _log_to_workdir(workdir: str, process_index: int) -> None:
  """Every log message also goes to WORKDIR/log.txt (local workdirs)."""
  if '://' in workdir:
    return  # A bucket: the log stays with the job's own log collection.
  if _MODE.value == 'eval' and not os.path.isdir(workdir):
    return  # Nothing to evaluate; do not create the folder for a log.
  name = ('log.txt' if process_index == 0 else
          f'log.process{process_index}.txt')
  console.log_to_file(os.path.join(os.path.abspath(workdir), name))


def _from_storage_libraries(error: BaseException) -> bool:
  """Whether an exception was raised inside Orbax or TensorStore."""
  frames = traceback.extract_tb(error.__traceback__)
  return any(f'{os.sep}{name}{os.sep}' in frame.filename
             for frame in frames for name in ('orbax', 'tensorstore'))


def _stop(message: str) -> None:
  """One line and exit status 1; the traceback only with --verbosity=1."""
  logging.debug('Stopped by:', exc_info=True)
  sys.exit(f"error: {' '.join(message.split())}")


def _quiet_closed_loop_callbacks() -> None:
  """Keeps TensorStore's late callbacks after a failed save off stderr.

  When an async save fails (e.g. the disk is full), TensorStore futures that
  are still running call back into the asyncio loop Orbax has closed; Python
  prints each 'Event loop is closed' as an unraisable-exception traceback.
  The failure itself is reported as one `error:` line; everything else that
  is unraisable is printed as usual.
  """
  previous = sys.unraisablehook

  def hook(unraisable):
    if (isinstance(unraisable.exc_value, RuntimeError)
        and str(unraisable.exc_value) == 'Event loop is closed'):
      logging.debug('After a failed save: %s', unraisable.exc_value)
      return
    previous(unraisable)

  sys.unraisablehook = hook


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail('main', f'unexpected arguments {argv[1:]}')
  console.configure()
  # Imported after the command line is checked: a bad flag costs no JAX
  # start-up.
  import flax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from l2a_jax import evaluate  # pylint: disable=g-import-not-at-top
  from l2a_jax import progress  # pylint: disable=g-import-not-at-top
  from l2a_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from l2a_jax import train  # pylint: disable=g-import-not-at-top
  from l2a_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  progress.set_default_interval(_PROGRESS_SECONDS.value)
  try:
    decision = distributed.decide(
        distributed=_DISTRIBUTED.value,
        coordinator_address=_COORDINATOR.value,
        num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  except ValueError as error:
    cli.fail('main', str(error))
  distributed.initialize(decision)
  _quiet_closed_loop_callbacks()
  # A log file on a full disk must not print a traceback per record; the
  # failure that matters is reported as the `error:` line.
  std_logging.raiseExceptions = False
  try:
    # Before anything is written there: parent chain, checkpoints/ a
    # directory, writable.
    workdir = workdir_lib.prepare(_WORKDIR.value, _MODE.value)
  except (FileNotFoundError, workdir_lib.WorkdirError) as error:
    _stop(str(error))
  _log_to_workdir(workdir, jax.process_index())
  logging.info('JAX %s, Flax %s; distributed: %s; %s', jax.__version__,
               flax.__version__, decision.reason, distributed.describe())
  try:
    # One run per workdir (per job in multi-process runs).
    with workdir_lib.locked(workdir):
      if _MODE.value == 'eval':
        results = evaluate.evaluate_checkpoint(_CONFIG.value, workdir)
      else:
        results = train.train_and_evaluate(_CONFIG.value, workdir)
  except (FloatingPointError, ValueError, OSError) as error:
    # Bad input, a diverged run, an unusable workdir or checkpoint, a failed
    # save (OSError covers disk full and permissions): one line.
    _stop(str(error))
  except Exception as error:  # pylint: disable=broad-exception-caught
    if not _from_storage_libraries(error):
      raise  # A bug: keep the traceback.
    _stop(checkpointing.one_line_cause(error))
  if jax.process_index() == 0:
    print(f'Final: {evaluate.summary_line(results)}')
    directory = _WORKDIR.value
    if _MODE.value == 'eval':
      directory = f'{directory}/{evaluate.eval_folder_name(_CONFIG.value.data)}'
    print(f'Metrics written to {directory}/{evaluate.EVAL_METRICS_FILE}')


if __name__ == '__main__':
  cli.run(main, program='main', doc=__doc__,
          required=('config', 'workdir'))
