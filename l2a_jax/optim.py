"""The optax optimiser and learning-rate schedule built from `config.optim`.

Lineage default (MotionBERT / MotionAGFormer / TCPFormer): AdamW, peak
learning rate 5e-4, weight decay 0.01 on every parameter, the learning rate
multiplied by 0.99 after every epoch, no warm-up, no clipping
(`l2a_design.md` section 7). Warm-up, cosine decay, global-norm clipping and
a weight-decay mask are options that default to off.

Large batches (`configs/large_batch.py`, `docs/scaling.md`): the peak
learning rate follows the global batch B by `optim.lr_scaling`,

  lr = learning_rate * (B / lr_base_batch) ** p,  p = 0 ('none'),
       1/2 ('sqrt': the rule for Adam-family and LAMB optimisers), 1 ('linear':
       the Goyal et al. rule for SGD-momentum / LARS),

with a linear warm-up of `warmup_steps` + `warmup_epochs` x steps per epoch
updates, and the layer-wise adaptive optimisers 'lamb' and 'lars' (optax) as
options beside 'adamw' and 'adam'.

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


_LR_SCALING_POWER = {'none': 0.0, 'sqrt': 0.5, 'linear': 1.0}


def scaled_learning_rate(optim_config: ml_collections.ConfigDict,
                         global_batch: int | None) -> float:
  """`learning_rate` scaled to the global batch by `optim.lr_scaling`.

  Args:
    optim_config: `config.optim` (`learning_rate`, `lr_scaling`,
      `lr_base_batch`; the last two optional, default 'none').
    global_batch: `config.data.batch_size` (None: no scaling allowed).

  Returns:
    The peak learning rate.
  """
  peak = float(optim_config.learning_rate)
  rule = optim_config.get('lr_scaling', 'none')
  if rule not in _LR_SCALING_POWER:
    raise ValueError(
        f"config.optim.lr_scaling: expected one of {sorted(_LR_SCALING_POWER)}"
        f', got {rule!r}')
  if rule == 'none':
    return peak
  base = int(optim_config.get('lr_base_batch', 0))
  if base < 1 or not global_batch:
    raise ValueError(
        f'config.optim.lr_scaling={rule!r} needs config.optim.lr_base_batch '
        f'>= 1 (got {base}) and the global batch (got {global_batch})')
  return peak * (global_batch / base) ** _LR_SCALING_POWER[rule]


def warmup_steps(optim_config: ml_collections.ConfigDict,
                 steps_per_epoch: int) -> int:
  """`warmup_steps` + round(`warmup_epochs` x steps per epoch)."""
  steps = int(optim_config.warmup_steps)
  epochs = float(optim_config.get('warmup_epochs', 0.0))
  if steps < 0 or epochs < 0:
    raise ValueError(
        f'config.optim.warmup_steps / warmup_epochs must be >= 0, got '
        f'{steps} / {epochs}')
  return steps + int(round(epochs * steps_per_epoch))


def create_learning_rate_schedule(
    optim_config: ml_collections.ConfigDict,
    steps_per_epoch: int,
    total_steps: int,
    global_batch: int | None = None,
) -> Schedule:
  """The learning rate as a function of the number of updates done.

  lr(s) = peak * warmup(s) * decay(s), peak = `scaled_learning_rate`,
  warmup_steps = `warmup_steps(...)`, where warmup(s) =
  min(1, (s + 1) / warmup_steps) (1 when off; the first update already moves)
  and decay is
  - 'epoch_decay': lr_decay ** floor(s / steps_per_epoch) (staircase);
  - 'cosine': 0.5 (1 + cos(pi p)), p the fraction of the post-warm-up steps
    done, reaching 0 at `total_steps`.

  Args:
    optim_config: `config.optim`.
    steps_per_epoch: optimizer updates per epoch (> 0).
    total_steps: updates in the whole run (> 0).
    global_batch: the global batch (for `optim.lr_scaling`).

  Returns:
    `schedule(step) -> lr` (jit-friendly).
  """
  peak = scaled_learning_rate(optim_config, global_batch)
  kind = optim_config.schedule
  if steps_per_epoch <= 0 or total_steps <= 0:
    raise ValueError(
        f'steps_per_epoch and total_steps must be > 0, got {steps_per_epoch}'
        f' and {total_steps}'
    )
  warmup = warmup_steps(optim_config, steps_per_epoch)
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
    global_batch: int | None = None,
) -> tuple[optax.GradientTransformation, Schedule]:
  """Builds the optax chain.

  Args:
    optim_config: `config.optim`.
    steps_per_epoch: optimizer updates per epoch.
    total_steps: updates in the whole run.
    global_batch: the global batch (`optim.lr_scaling`; None = no scaling).

  Returns:
    `(tx, schedule)`: the transformation (takes `params` in `update`, for the
    weight decay) and the learning-rate schedule (for logging).
  """
  schedule = create_learning_rate_schedule(
      optim_config, steps_per_epoch, total_steps, global_batch
  )
  name = optim_config.optimizer
  mode = optim_config.weight_decay_mask
  # Validate eagerly; optax calls the mask lazily on the first update.
  weight_decay_mask({'kernel': 0}, mode)
  decay_mask = lambda params: weight_decay_mask(params, mode)
  if name == 'adamw':
    core = optax.adamw(
        schedule,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=float(optim_config.weight_decay),
        mask=decay_mask,
    )
  elif name == 'lamb':
    # Adam moments, weight decay added to the update, then every
    # parameter tensor's step scaled by ||w|| / ||update|| (You et al.).
    core = optax.lamb(schedule, b1=0.9, b2=0.999, eps=1e-6,
                      weight_decay=float(optim_config.weight_decay),
                      mask=decay_mask)
  elif name == 'lars':
    # SGD with momentum 0.9 and the layer-wise trust ratio (trust
    # coefficient 1e-3, You et al. 2017); the trust ratio and decay skip
    # the same tensors as the decay mask.
    core = optax.lars(schedule, weight_decay=float(optim_config.weight_decay),
                      weight_decay_mask=decay_mask,
                      trust_ratio_mask=decay_mask, momentum=0.9)
  elif name == 'adam':
    # The lineage's 3DHP recipe: Adam (optionally AMSGrad), no weight decay.
    make = optax.amsgrad if optim_config.amsgrad else optax.adam
    core = make(schedule, b1=0.9, b2=0.999, eps=1e-8)
  else:
    raise ValueError(
        "config.optim.optimizer: expected 'adamw', 'adam', 'lamb' or "
        f"'lars', got {name!r}"
    )
  clip = float(optim_config.grad_clip_norm)
  if clip < 0:
    raise ValueError(f'config.optim.grad_clip_norm must be >= 0, got {clip}')
  if clip > 0:
    return optax.chain(optax.clip_by_global_norm(clip), core), schedule
  return core, schedule
