r"""The large-batch convergence check of docs/scaling.md (issue 16).

One config, two recipes, so that the two runs differ only in what is being
compared: the quickstart's model and synthetic data (quickstart.py), trained
for the same number of epochs with

- `recipe=lineage`: the papers' recipe as configs/l2a_h36m.py has it (AdamW,
  learning rate 5e-4, x0.99 per epoch, no warm-up, no clipping), at the
  papers' batch 16;
- `recipe=large_batch`: the scale-out recipe of configs/large_batch.py (LAMB,
  6.4e-2 at any batch, 1 warm-up epoch, cosine to 0, clipping at 1.0,
  accumulation from at most 32 rows per device), at a large batch.

  export XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu
  python -m l2a_jax.main --config configs/batch_scaling.py:batch=16,recipe=lineage \
      --workdir /tmp/scaling_b16
  python -m l2a_jax.main --config configs/batch_scaling.py:batch=512,recipe=large_batch \
      --workdir /tmp/scaling_b512

`launch/batch_scaling.sh` runs both and prints the comparison.

Arguments: `batch=N` (global batch, default 16), `recipe=lineage|large_batch`
(default lineage), `epochs=E` (default 20). Everything else is quickstart.py
(model, data, the final evaluation with flip test-time augmentation and the
baselines), which documents its fields, as l2a_h36m.py documents the rest.
"""

import ml_collections

from l2a_jax import config_files

RECIPES = ('lineage', 'large_batch')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """Returns the config; `arg` as in the module docstring."""
  options = dict(kv.split('=', 1) for kv in arg.split(',') if kv)
  batch = int(options.pop('batch', 16))
  recipe = options.pop('recipe', 'lineage')
  epochs = int(options.pop('epochs', 20))
  if options:
    raise ValueError(f'batch_scaling.py: unknown arguments {sorted(options)}; '
                     'expected batch, recipe, epochs')
  if recipe not in RECIPES:
    raise ValueError(f'batch_scaling.py: recipe must be one of {RECIPES}, '
                     f'got {recipe!r}')
  if batch <= 0 or epochs <= 0:
    raise ValueError(f'batch_scaling.py: batch and epochs must be > 0, got '
                     f'batch={batch}, epochs={epochs}')

  config = config_files.load_sibling(__file__, 'quickstart').get_config()
  if recipe == 'lineage':
    source = config_files.load_sibling(__file__, 'l2a_h36m').get_config(
        'frames=27')
  else:
    source = config_files.load_sibling(__file__, 'large_batch').get_config(
        f'batch={batch},data=synthetic,frames=27')
  # The whole optimizer section of the recipe, replacing the quickstart's.
  config.optim = source.optim
  config.data.batch_size = batch
  # The quickstart's 64, as the measurement in docs/scaling.md was taken
  # (the metrics do not depend on it).
  config.data.eval_batch_size = 64

  # Length in epochs, so both batches see the same clips.
  config.train.num_epochs = epochs
  config.train.num_train_steps = -1
  # Log about 20 times a run whatever the batch (an epoch is ~67 steps at
  # batch 16 and ~2 at batch 512); evaluate and checkpoint at the end only.
  config.train.log_every_steps = max(1, epochs * 6144 // (batch * 20))
  config.train.eval_every_steps = 10**9
  config.train.checkpoint_every_steps = 10**9
  return config
