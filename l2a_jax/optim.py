"""The optax optimiser and learning-rate schedule built from `config.optim`.

Lineage default (MotionBERT / MotionAGFormer / TCPFormer): AdamW, peak
learning rate 5e-4, weight decay 0.01 on every parameter, the learning rate
multiplied by 0.99 after every epoch, no warm-up, no clipping
(`l2a_design.md` section 7). Warm-up, cosine decay, global-norm clipping and
a weight-decay mask are options that default to off.

Gradient accumulation is not an optax wrapper here: the training step splits
its batch into `optim.accumulation_steps` micro-batches and averages their
gradients (see `train.py`), so one optimizer update is one training step and
the schedule counts updates.
"""

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

Schedule = Callable[[jax.Array | int], jax.Array]


def create_learning_rate_schedule(
    optim_config: ml_collections.ConfigDict,
    steps_per_epoch: int,
    total_steps: int,
) -> Schedule:
  """The learning rate as a function of the number of updates done.

  lr(s) = learning_rate * warmup(s) * decay(s), where warmup(s) =
  min(1, (s + 1) / warmup_steps) (1 when off; the first update already moves)
  and decay is
  - 'epoch_decay': lr_decay ** floor(s / steps_per_epoch) (staircase);
  - 'cosine': 0.5 (1 + cos(pi p)), p the fraction of the post-warm-up steps
    done, reaching 0 at `total_steps`.

  Args:
    optim_config: `config.optim`.
    steps_per_epoch: optimizer updates per epoch (> 0).
    total_steps: updates in the whole run (> 0).

  Returns:
    `schedule(step) -> lr` (jit-friendly).
  """
  peak = float(optim_config.learning_rate)
  warmup = int(optim_config.warmup_steps)
  kind = optim_config.schedule
  if steps_per_epoch <= 0 or total_steps <= 0:
    raise ValueError(
        f'steps_per_epoch and total_steps must be > 0, got {steps_per_epoch}'
        f' and {total_steps}'
    )
  if warmup < 0:
    raise ValueError(f'config.optim.warmup_steps must be >= 0, got {warmup}')
  if kind not in ('epoch_decay', 'cosine'):
    raise ValueError(
        f"config.optim.schedule: expected 'epoch_decay' or 'cosine', "
        f'got {kind!r}'
    )
  decay_rate = float(optim_config.lr_decay)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    factor = jnp.ones((), jnp.float32)
    if warmup > 0:
      factor = jnp.minimum(1.0, (step + 1.0) / warmup)
    if kind == 'epoch_decay':
      epoch = jnp.floor(step / steps_per_epoch)
      factor = factor * jnp.power(decay_rate, epoch)
    else:
      span = max(total_steps - warmup, 1)
      progress = jnp.clip((step - warmup) / span, 0.0, 1.0)
      factor = factor * 0.5 * (1.0 + jnp.cos(math.pi * progress))
    return peak * factor

  return schedule


def weight_decay_mask(params: Any, mode: str) -> Any:
  """Which parameters get weight decay.

  Args:
    params: pure nested dict of parameters.
    mode: 'all' (the lineage) | 'no_norm_bias': only the weight matrices of
      linear layers (leaves named `kernel`, stacked or not) decay; norms'
      scales, biases, positional embeddings, pose proxies, layer scales and
      HPA gains do not.

  Returns:
    A tree of bools with the structure of `params`.
  """
  if mode == 'all':
    return jax.tree.map(lambda _: True, params)
  if mode != 'no_norm_bias':
    raise ValueError(
        f"config.optim.weight_decay_mask: expected 'all' or 'no_norm_bias', "
        f'got {mode!r}'
    )

  def is_kernel(path, _):
    last = path[-1]
    name = getattr(last, 'key', getattr(last, 'name', None))
    return name == 'kernel'

  return jax.tree_util.tree_map_with_path(is_kernel, params)


def create_optimizer(
    optim_config: ml_collections.ConfigDict,
    steps_per_epoch: int,
    total_steps: int,
) -> tuple[optax.GradientTransformation, Schedule]:
  """Builds the optax chain.

  Args:
    optim_config: `config.optim`.
    steps_per_epoch: optimizer updates per epoch.
    total_steps: updates in the whole run.

  Returns:
    `(tx, schedule)`: the transformation (takes `params` in `update`, for the
    weight decay) and the learning-rate schedule (for logging).
  """
  schedule = create_learning_rate_schedule(
      optim_config, steps_per_epoch, total_steps
  )
  name = optim_config.optimizer
  if name == 'adamw':
    mode = optim_config.weight_decay_mask
    # Validate eagerly; optax calls the mask lazily on the first update.
    weight_decay_mask({'kernel': 0}, mode)
    core = optax.adamw(
        schedule,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=float(optim_config.weight_decay),
        mask=lambda params: weight_decay_mask(params, mode),
    )
  elif name == 'adam':
    # The lineage's 3DHP recipe: Adam (optionally AMSGrad), no weight decay.
    make = optax.amsgrad if optim_config.amsgrad else optax.adam
    core = make(schedule, b1=0.9, b2=0.999, eps=1e-8)
  else:
    raise ValueError(
        f"config.optim.optimizer: expected 'adamw' or 'adam', got {name!r}"
    )
  clip = float(optim_config.grad_clip_norm)
  if clip < 0:
    raise ValueError(f'config.optim.grad_clip_norm must be >= 0, got {clip}')
  if clip > 0:
    return optax.chain(optax.clip_by_global_norm(clip), core), schedule
  return core, schedule
