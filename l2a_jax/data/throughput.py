r"""CLI: clips per second of the input pipeline (host only, no model).

  python -m l2a_jax.data.throughput --config configs/l2a_h36m.py \
      --config.data.name=synthetic --config.data.builder_config= \
      --config.data.batch_size=64 --config.data.data_dir=/tmp/l2a_tfds

Builds `input_pipeline.get_datasets(config.data)` (preparing the synthetic
dataset if needed), pulls `--warmup` training batches, then times
`--num_batches` more and reports clips/s; the same for one pass over the
evaluation batches. Prints one JSON line.
"""

import json
import os
import platform
import time

from absl import flags
from ml_collections import config_flags

from l2a_jax import cli
from l2a_jax import console

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Run config file (configs/*.py).', lock_config=True)
_NUM_BATCHES = flags.DEFINE_integer('num_batches', 200,
                                    'Timed training batches.')
_WARMUP = flags.DEFINE_integer('warmup', 10, 'Untimed training batches.')


def measure(data_config, *, seed: int, num_batches: int,
            warmup: int) -> dict:
  """Times the training and evaluation iterators of `data_config`.

  Returns:
    A dict with setup seconds, train and eval clips per second, and sizes.
  """
  from l2a_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  datasets = input_pipeline.get_datasets(data_config, seed=seed,
                                         process_index=0, process_count=1)
  setup = time.perf_counter() - start
  iterator = datasets.train_iter
  for _ in range(warmup):
    next(iterator)
  start = time.perf_counter()
  for _ in range(num_batches):
    batch = next(iterator)
  train_seconds = time.perf_counter() - start
  rows = batch['inputs'].shape[0]
  start = time.perf_counter()
  eval_clips = 0
  for eval_batch in datasets.make_eval_iter():
    eval_clips += int(eval_batch['mask'].sum())
  eval_seconds = time.perf_counter() - start
  return {
      'dataset': f'{datasets.info.name}/{datasets.info.builder_config}',
      'frames': datasets.info.num_frames,
      'batch': rows,
      'num_threads': int(data_config.num_threads),
      'prefetch_batches': int(data_config.prefetch_batches),
      'setup_s': round(setup, 2),
      'train_clips_per_s': round(num_batches * rows / train_seconds, 1),
      'train_ms_per_batch': round(1000 * train_seconds / num_batches, 2),
      'eval_clips_per_s': round(eval_clips / eval_seconds, 1),
      'cpus': os.cpu_count(),
      'python': platform.python_version(),
  }


def main(argv):
  if len(argv) > 1:
    cli.fail('throughput', f'unexpected arguments {argv[1:]}')
  console.configure()
  config = _CONFIG.value
  result = measure(config.data, seed=config.seed,
                   num_batches=_NUM_BATCHES.value, warmup=_WARMUP.value)
  print(json.dumps(result))


if __name__ == '__main__':
  cli.run(main, program='throughput', doc=__doc__,
          required=('config',))
