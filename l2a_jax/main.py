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

Multi-process runs (TPU pods, several GPU hosts): run the same command on
every host with `L2A_JAX_DISTRIBUTED=1` (or `--distributed`); on TPU VMs and
SLURM `jax.distributed.initialize()` finds the coordinator itself, otherwise
pass `--coordinator_address`, `--num_processes` and `--process_id`.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
import flax
import jax
from ml_collections import config_flags

from l2a_jax import cli
from l2a_jax import evaluate
from l2a_jax import train

_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory for checkpoints, summaries and results.')
_MODE = flags.DEFINE_enum(
    'mode', 'train', ['train', 'eval'],
    'train: train (resuming) and evaluate; eval: evaluate the latest '
    'checkpoint of --workdir on the full test set.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', os.environ.get('L2A_JAX_DISTRIBUTED', '') == '1',
    'Call jax.distributed.initialize() (default from L2A_JAX_DISTRIBUTED=1).')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'host:port of process 0, when not found automatically.')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Number of processes (with --coordinator_address).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'This process (with --coordinator_address).')


_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file (configs/*.py), optionally :ARG.',
    lock_config=True)


def maybe_initialize_distributed() -> None:
  """The one place that decides about `jax.distributed.initialize()`."""
  if not _DISTRIBUTED.value:
    return
  kwargs = {}
  if _COORDINATOR.value:
    kwargs = dict(coordinator_address=_COORDINATOR.value,
                  num_processes=_NUM_PROCESSES.value,
                  process_id=_PROCESS_ID.value)
  jax.distributed.initialize(**kwargs)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _CONFIG.value is None or _WORKDIR.value is None:
    raise app.UsageError('--config and --workdir are required.')
  cli.quiet_library_logs()
  maybe_initialize_distributed()
  logging.info('JAX %s, Flax %s; process %d of %d; %d local / %d global '
               'devices: %s', jax.__version__, flax.__version__,
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count(),
               jax.local_devices())
  try:
    if _MODE.value == 'eval':
      results = evaluate.evaluate_checkpoint(_CONFIG.value, _WORKDIR.value)
    else:
      results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (train.NonFiniteError, ValueError, FileNotFoundError,
          FileExistsError) as error:
    # Bad input or a diverged run: one line and a non-zero exit; the
    # traceback only with --verbosity=1.
    logging.debug('Stopped by:', exc_info=True)
    sys.exit(f'error: {error}')
  if jax.process_index() == 0:
    print(f'Final: {evaluate.summary_line(results)}')
    print(f'Metrics written to {_WORKDIR.value}/{evaluate.EVAL_METRICS_FILE}')


if __name__ == '__main__':
  app.run(main, argv=cli.resolve_config_path(sys.argv))
