r"""L2A on Human3.6M with a large global batch (>= 1024): the scale-out recipe.

  python -m l2a_jax.main --config configs/large_batch.py:batch=1024 \
      --workdir gs://bucket/l2a_b1024
  # On the synthetic data (no download), e.g. for docs/scaling.md:
  python -m l2a_jax.main --config configs/large_batch.py:batch=512,data=synthetic \
      --workdir /tmp/b512

Argument: `batch=N` (global batch, default 1024), `frames=T` (as
l2a_h36m.py, default 243), `data=h36m|synthetic`. Everything not set here
is `l2a_h36m.py` (which documents every field). The recipe
(`docs/scaling.md`):

- LAMB (layer-wise trust ratio on Adam moments), weight decay 0.01 on the
  linear kernels only (norms, biases, embeddings excluded);
- peak learning rate 6.4e-2 at every global batch >= 512 (no scaling rule:
  `optim.lr_scaling = 'none'`): the best of a sweep at 512 (docs/scaling.md:
  1.6e-2, 3.2e-2, 6.4e-2, 1.28e-1; the last diverged), and at 1024 better
  than the square-root rule's 9.05e-2 (35.7 against 45.7 mm, 20 epochs);
- linear warm-up over the first epoch, then cosine decay to 0 (a per-epoch
  x0.99 staircase is too slow when an epoch has few steps);
- global-norm clipping at 1.0;
- accumulation chosen from at most 32 rows per device and micro-batch, so the
  same global batch (and the same updates) run on 1, 8, 64, ... devices.

Measured (docs/scaling.md): at 10 epochs on the synthetic data, batch 512
with this recipe reaches 39.4 mm MPJPE, below the linear lifter (45.3 mm)
but not batch 16 with the lineage recipe (24.8 mm; 32x more updates); at
20 epochs batch 512 reaches 31.7 mm and batch 1024 35.7 mm, against 21.5 mm
for batch 16 (at 10 epochs batch 1024 has 60 updates and ends at 60.2 mm,
worse than the linear lifter: give a 64x batch enough epochs). The rate was tuned on runs of 120-240 updates; twice it
diverged at 512, and 1.4x it (the square-root rule at 1024) stalled the
loss after the warm-up. Batches above 1024 and long runs are not measured
here: `optim.lr_scaling = 'sqrt'` (the LAMB paper's rule) is the switch to
try there, and lower `optim.learning_rate` first if the loss rises after
the warm-up.
"""

import ml_collections

from l2a_jax import config_files


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """Returns the large-batch config; `arg` as in the module docstring."""
  options = dict(kv.split('=') for kv in arg.split(',') if kv)
  batch = int(options.pop('batch', 1024))
  data = options.pop('data', 'h36m')
  base_arg = ','.join(f'{k}={v}' for k, v in options.items())
  base = config_files.load_sibling(__file__, 'l2a_h36m')
  config = base.get_config(base_arg)
  if data == 'synthetic':
    config.data.name = 'synthetic'
    config.data.builder_config = None
    config.data.input_2d = 'gt'
  elif data != 'h36m':
    raise ValueError(f"large_batch.py: data must be 'h36m' or 'synthetic', "
                     f'got {data!r}')

  config.data.batch_size = batch
  config.data.eval_batch_size = 256

  config.optim.optimizer = 'lamb'
  config.optim.weight_decay = 0.01
  config.optim.weight_decay_mask = 'no_norm_bias'
  # Peak rate, the same at every batch: the square-root rule from 512
  # (lr_scaling='sqrt', optim.scaled_learning_rate) measured worse at 1024.
  # lr_base_batch is where a rule, when switched on, starts from.
  config.optim.learning_rate = 6.4e-2
  config.optim.lr_scaling = 'none'
  config.optim.lr_base_batch = 512
  config.optim.schedule = 'cosine'
  config.optim.warmup_epochs = 1.0
  config.optim.grad_clip_norm = 1.0
  config.optim.accumulation_steps = -1
  config.optim.max_per_device_batch = 32
  return config
