"""Training and evaluation loop: `train_and_evaluate(config, workdir)`.

Data parallelism is `jax.jit` over a one-axis device mesh (`sharding.py`):
the parameters are created already replicated on every device (shapes from
`models.abstract_model`, the init run under `jax.jit` with `out_shardings`,
`run_setup`), the global batch is split over the 'data' axis, the
parameter and optimizer state are donated to the step, and the dropout key
is `fold_in(dropout_key(seed), step)`, a stream of its own. The model is used functionally: `nnx.split` once,
`nnx.merge(graphdef, params, rest)` inside the jitted step (the NNX
performance guide's recipe; `nnx.jit` would walk the object graph on every
call).

Config checks, mesh, model, parameters and datasets come from `run_setup`
(shared with `evaluate`). Sections: durations; the jitted train step; the
loop (logging, NaN/Inf guard, evaluation, checkpoints); the final
evaluation.
"""

import dataclasses
import math
import os
import time
from typing import Any, Callable, Iterator, Mapping

from absl import logging
from clu import parameter_overview
from etils import epath
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from l2a_jax import checkpointing
from l2a_jax import console
from l2a_jax import evaluate
from l2a_jax import losses
from l2a_jax import metric_writers
from l2a_jax import optim
from l2a_jax import progress as progress_lib
from l2a_jax import run_setup
from l2a_jax import sharding
from l2a_jax import throughput
from l2a_jax import visualize
from l2a_jax.data import skeleton as skeleton_lib

# Batch fields the train step reads.
TRAIN_KEYS = ('inputs', 'targets')


# Loss and evaluation MPJPE over steps, for readers without TensorBoard.
CURVES_FILE = 'training_curves.png'


class NonFiniteError(FloatingPointError):
  """A training metric became NaN or Inf; raised before anything is saved."""


# ---------------------------------------------------------------------------
# Durations.
# ---------------------------------------------------------------------------


# Folded into `key(seed)` to start the dropout / drop-path key stream. The
# parameter initialisation draws `fold_in(key(seed), n)` for n = 0, 1, ...
# (`nnx.Rngs(seed)`), so the step-th dropout key must not be
# `fold_in(key(seed), step)`; one extra fold_in with this constant gives an
# independent stream.
DROPOUT_STREAM = 0x64726F70  # 'drop'


def dropout_key(seed: int) -> jax.Array:
  """The root of the drop-path keys; step s uses `fold_in(root, s)`."""
  return jax.random.fold_in(jax.random.key(seed), DROPOUT_STREAM)


def total_train_steps(config: ml_collections.ConfigDict,
                      steps_per_epoch: int) -> int:
  """`train.num_train_steps` if > 0, else `num_epochs * steps_per_epoch`."""
  if config.train.num_train_steps > 0:
    return int(config.train.num_train_steps)
  total = int(round(config.train.num_epochs * steps_per_epoch))
  if total <= 0:
    raise ValueError(
        f'config.train.num_epochs={config.train.num_epochs} x '
        f'{steps_per_epoch} steps per epoch gives no training step'
    )
  return total


def cadence(every: int, steps_per_epoch: int) -> int:
  """A period in steps; -1 means once per epoch."""
  return steps_per_epoch if every == -1 else max(int(every), 1)


def is_time(step: int, every: int, total: int) -> bool:
  """Whether a periodic action fires after `step` updates (last included)."""
  return step % every == 0 or step == total


# ---------------------------------------------------------------------------
# The train step.
# ---------------------------------------------------------------------------


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    schedule: optim.Schedule,
    config: ml_collections.ConfigDict,
    parents: tuple[int, ...],
    mesh: jax.sharding.Mesh,
    state_shardings: tuple[Any, Any] | None = None,
) -> Callable[..., tuple[Any, Any, dict[str, jax.Array]]]:
  """Builds the jitted, state-donating training step.

  Args:
    graphdef: the model's graph definition.
    tx: the optax transformation.
    schedule: learning-rate schedule (logged).
    config: run config (`loss`, `optim.accumulation_steps`,
      `model.drop_path`).
    parents: joint parents (limb loss terms).
    mesh: the data mesh.
    state_shardings: `(params, opt_state)` trees of shardings
      (`sharding.state_shardings`; FSDP); None = replicated.

  Returns:
    `step_fn(params, opt_state, batch, rest, key, step) -> (params,
    opt_state, metrics)`; `batch` has `inputs` `[B, T, J, C_in]` and
    `targets` `[B, T, J, 3]` sharded over 'data'; `params` and `opt_state`
    are donated; `metrics` are replicated scalars.
  """
  weights = {name: float(config.loss[name]) for name in losses.TERMS}
  accumulation = run_setup.batch_split(
      int(config.data.batch_size), mesh.devices.size,
      int(config.optim.accumulation_steps),
      int(config.optim.get('max_per_device_batch', 0)))
  stochastic = float(config.model.drop_path) > 0.0

  def loss_fn(params, rest, inputs, targets, rng):
    model = nnx.merge(graphdef, params, rest)
    pred = model(inputs, dropout_rng=rng)
    return losses.total_loss(pred, targets, weights, parents)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def train_step(params, opt_state, batch, rest, key, step):
    rng = jax.random.fold_in(key, step) if stochastic else None
    if accumulation == 1:
      (loss, terms), grads = grad_fn(
          params, rest, batch['inputs'], batch['targets'], rng
      )
    else:
      # Micro-batch i takes rows i, i + k, i + 2k, ...: each micro-batch
      # stays spread over all devices.
      def split(x):
        x = x.reshape(x.shape[0] // accumulation, accumulation, *x.shape[1:])
        x = jnp.swapaxes(x, 0, 1)
        return jax.lax.with_sharding_constraint(
            x, jax.sharding.NamedSharding(
                mesh, jax.sharding.PartitionSpec(
                    None, sharding.batch_axes(mesh))))

      micro = {k: split(batch[k]) for k in TRAIN_KEYS}

      def accumulate(grad_sum, xs):
        micro_batch, index = xs
        micro_rng = None if rng is None else jax.random.fold_in(rng, index)
        (loss, terms), grads = grad_fn(
            params, rest, micro_batch['inputs'], micro_batch['targets'],
            micro_rng,
        )
        return jax.tree.map(jnp.add, grad_sum, grads), (loss, terms)

      zeros = jax.tree.map(jnp.zeros_like, params)
      grad_sum, (loss, terms) = jax.lax.scan(
          accumulate, zeros, (micro, jnp.arange(accumulation))
      )
      grads = jax.tree.map(lambda g: g / accumulation, grad_sum)
      loss = jnp.mean(loss)
      terms = jax.tree.map(jnp.mean, terms)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = {
        'loss': loss,
        **{f'loss_{name}': value for name, value in terms.items()},
        'grad_norm': optax.tree.norm(grads),
        # The norm of the *new* parameters: the guard checks what is saved.
        'param_norm': optax.tree.norm(params),
        'learning_rate': schedule(step),
    }
    return params, opt_state, metrics

  replicated = sharding.replicated(mesh)
  params_sharding, opt_sharding = state_shardings or (replicated, replicated)
  return jax.jit(
      train_step,
      in_shardings=(params_sharding, opt_sharding,
                    sharding.batch_sharding(mesh), replicated, replicated,
                    replicated),
      out_shardings=(params_sharding, opt_sharding, replicated),
      donate_argnums=(0, 1),
  )


# ---------------------------------------------------------------------------
# The loop.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class _PendingMetrics:
  """Per-step metrics kept on the devices until the next flush."""

  steps: list[int] = dataclasses.field(default_factory=list)
  values: list[dict[str, jax.Array]] = dataclasses.field(default_factory=list)

  def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
    self.steps.append(step)
    self.values.append(metrics)

  def flush(self) -> dict[str, float]:
    """Fetches, checks for NaN/Inf (raising), returns the means."""
    if not self.steps:
      return {}
    host = jax.device_get(self.values)
    for step, values in zip(self.steps, host):
      # The loss first: a non-finite loss also spoils the gradient norm.
      for name in sorted(values, key=lambda n: (not n.startswith('loss'), n)):
        if not np.isfinite(values[name]):
          raise NonFiniteError(
              f'step {step}: {name} is {float(values[name])} (non-finite); '
              f'stopped without saving this state'
          )
    means = {name: float(np.mean([v[name] for v in host]))
             for name in host[0]}
    self.steps, self.values = [], []
    return means


def _log_compiled_memory(compiled: Any) -> None:
  try:
    analysis = compiled.memory_analysis()
  except (NotImplementedError, RuntimeError):  # Not on every backend.
    analysis = None
  if analysis is None:
    return
  fields = ('argument_size_in_bytes', 'output_size_in_bytes',
            'temp_size_in_bytes', 'generated_code_size_in_bytes')
  sizes = {f: getattr(analysis, f, None) for f in fields}
  logging.info(
      'Train step memory (per device): %s',
      ', '.join(f'{k[:-9]}={v / 2**20:.1f} MiB' for k, v in sizes.items()
                if v is not None),
  )


def _absolute(path: str) -> epath.Path:
  """Local paths made absolute; URLs such as gs://bucket/run kept."""
  if '://' in str(path):
    return epath.Path(path)
  return epath.Path(os.path.abspath(path))


def _meta(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return {'model': config.model.to_dict(), 'data': config.data.name}


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, Any]:
  """Trains (resuming from `workdir` when it has checkpoints), evaluates.

  Args:
    config: the run config (`configs/l2a_h36m.py` documents every field).
    workdir: where checkpoints, TensorBoard events, `eval_metrics.json` and
      the skeleton picture go.

  Returns:
    The final evaluation metrics (also in `WORKDIR/eval_metrics.json`).
  """
  wall = throughput.WallClock()
  workdir = str(_absolute(workdir))
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  run_setup.enable_compilation_cache(config, workdir)
  is_main = jax.process_index() == 0
  writer = metric_writers.MetricWriter(workdir, just_logging=not is_main)
  mesh = run_setup.create_mesh(config)
  logging.info('Mesh %s over %d devices (%d processes), %d per process.',
               dict(mesh.shape), mesh.devices.size, jax.process_count(),
               jax.local_device_count())

  datasets = run_setup.load_datasets(config)
  info = datasets.info
  skeleton = skeleton_lib.get(info.skeleton)
  steps_per_epoch = int(info.steps_per_epoch)
  total_steps = total_train_steps(config, steps_per_epoch)
  log_every = max(int(config.train.log_every_steps), 1)
  eval_every = cadence(config.train.eval_every_steps, steps_per_epoch)
  ckpt_every = cadence(config.train.checkpoint_every_steps, steps_per_epoch)
  logging.info(
      'Training %d steps (%d per epoch, global batch %d, %d per process).',
      total_steps, steps_per_epoch, config.data.batch_size,
      config.data.batch_size // jax.process_count(),
  )

  graphdef, abstract_params, rest = run_setup.abstract_model_state(
      config, mesh)
  tx, schedule = optim.create_optimizer(
      config.optim, steps_per_epoch, total_steps,
      global_batch=int(config.data.batch_size))
  abstract_opt_state = jax.eval_shape(tx.init, abstract_params)
  # Replicated, or split over 'fsdp' like the parameters (sharding.py).
  opt_sharding = sharding.state_shardings(abstract_opt_state, mesh)
  init_opt_state = jax.jit(tx.init, out_shardings=opt_sharding)
  abstract_opt_state = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      abstract_opt_state, opt_sharding,
  )

  manager = checkpointing.CheckpointManager(
      workdir, keep=int(config.train.keep_checkpoints))
  start_step = 0
  if manager.latest_step() is not None:
    # Verified (finite, checksums, same model config); falls back over
    # unusable checkpoints with a warning each.
    restored = manager.restore(
        None, abstract_params=abstract_params,
        abstract_opt_state=abstract_opt_state, data_iter=datasets.train_iter,
        model_config=config.model,
    )
    params = restored.params
    if restored.opt_state is None:
      # A converted (params-only) checkpoint: fine-tune from it.
      opt_state = init_opt_state(params)
      start_step = 0
    else:
      opt_state = restored.opt_state
      start_step = restored.step
    logging.info('Restored checkpoint step %d (%s).', restored.step,
                 'full' if restored.opt_state is not None else
                 'parameters only, fresh optimizer')
  else:
    params = run_setup.init_params(config, mesh)
    opt_state = init_opt_state(params)

  if is_main:
    # The table goes to WORKDIR/log.txt, not the terminal.
    logging.info('Parameters:\n%s',
                 parameter_overview.get_parameter_overview(params),
                 extra=console.FILE_ONLY)
  num_params = parameter_overview.count_parameters(params)
  logging.info('Parameters: %d (%.2f M); train state %.3f MiB per device.',
               num_params, num_params / 1e6,
               sharding.bytes_per_device((params, opt_state)) / 2**20)
  writer.write_hparams(
      {**metric_writers.flatten_config(config.to_dict()),
       'num_params': num_params})

  train_step = make_train_step(
      graphdef, tx, schedule, config, skeleton.parents, mesh,
      state_shardings=(jax.tree.map(lambda x: x.sharding, abstract_params),
                       opt_sharding))
  eval_step = evaluate.make_eval_step(graphdef, skeleton,
                                      config.eval.flip_test, mesh)
  protocol = evaluate.choose_protocol(config.data.name, info)
  key = dropout_key(config.seed)
  pending = _PendingMetrics()
  eval_results = None
  # Closed-form baselines on the training split, saved so that `--mode=eval`
  # on other data scores them against the data the model was trained on.
  baseline_params, fitted_on = evaluate.fit_baselines(datasets)
  evaluate.write_baselines(workdir, baseline_params, fitted_on)

  def run_eval(max_batches: int):
    with wall.timed('evaluation'):
      return _run_eval(max_batches)

  def _run_eval(max_batches: int):
    start = time.perf_counter()
    results, sample = evaluate.run_evaluation(
        eval_step, params, rest, datasets.make_eval_iter(), mesh, info,
        protocol=protocol, max_batches=max_batches,
        baseline_params=baseline_params, show_progress=is_main)
    results['eval_seconds'] = time.perf_counter() - start
    results['baselines_fitted_on'] = fitted_on
    return results, sample

  # (step, value) pairs of this process's run for training_curves.png (a
  # resumed run draws the steps since the restart).
  curves = {'loss': [], 'eval_mpjpe': []}
  step = start_step
  train_iter: Iterator[Mapping[str, np.ndarray]] = datasets.train_iter
  progress = progress_lib.Progress(total_steps, initial=step, unit='step',
                                  description='train', enabled=is_main)
  try:
    compiled_step = None
    last_log_time, last_log_step = time.perf_counter(), step
    peak_flops = throughput.device_peak_flops(str(config.model.dtype))
    step_flops = None
    while step < total_steps:
      with wall.timed('input'):
        batch = sharding.global_batch(next(train_iter), mesh, TRAIN_KEYS)
      step_array = np.asarray(step, np.int32)
      if compiled_step is None:
        start = time.perf_counter()
        with wall.timed('compilation'):
          compiled_step = train_step.lower(
              params, opt_state, batch, rest, key, step_array).compile()
        logging.info('Compiled the train step in %.1f s.',
                     time.perf_counter() - start)
        _log_compiled_memory(compiled_step)
        step_flops = throughput.step_flops_per_device(compiled_step)
        last_log_time = time.perf_counter()
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        params, opt_state, metrics = compiled_step(
            params, opt_state, batch, rest, key, step_array)
      step += 1
      pending.add(step, metrics)
      progress.update(1)

      do_eval = is_time(step, eval_every, total_steps)
      do_ckpt = is_time(step, ckpt_every, total_steps)
      if is_time(step, log_every, total_steps) or do_eval or do_ckpt:
        means = pending.flush()  # Raises on NaN/Inf before any save.
        now = time.perf_counter()
        means['steps_per_second'] = (step - last_log_step) / max(
            now - last_log_time, 1e-9)
        means.update(throughput.rate_scalars(
            step - last_log_step, now - last_log_time,
            int(config.data.batch_size), mesh.devices.size, step_flops,
            peak_flops))
        means['epoch'] = step / steps_per_epoch
        # Per-step scalars: log file and TensorBoard; the bar shows the loss.
        writer.write_scalars(
            step, {f'train_{k}': v for k, v in means.items()}, terminal=False)
        progress.set_postfix(loss=f"{means['loss']:.4g}")
        last_log_time, last_log_step = now, step
        manager.check_for_errors()  # A failed background save stops here.
        curves['loss'].append((step, means['loss']))

      eval_results = None
      if do_eval and step < total_steps:
        eval_results, _ = run_eval(int(config.train.eval_max_batches))
        writer.write_scalars(step, {
            f'eval_{k}': v for k, v in eval_results.items()
            if isinstance(v, (int, float))})
        last_log_time = time.perf_counter()  # Do not count eval time.
        curves['eval_mpjpe'].append((step, eval_results['mpjpe_mm']))
      if do_ckpt and step < total_steps:
        with wall.timed('checkpointing'):
          manager.save(step, params=params, opt_state=opt_state,
                       data_iter=train_iter, meta=_meta(config),
                       metrics=_best_metrics(eval_results))
        last_log_time = time.perf_counter()  # Do not count the save.
    progress.close()

    # Final evaluation on the whole test set, then the last checkpoint.
    final, sample = run_eval(-1)
    final['step'] = step
    curves['eval_mpjpe'].append((step, final['mpjpe_mm']))
    writer.write_scalars(step, {
        f'eval_{k}': v for k, v in final.items()
        if isinstance(v, (int, float))})
    if step not in manager.all_steps():
      with wall.timed('checkpointing'):
        manager.save(step, params=params, opt_state=opt_state,
                     data_iter=train_iter, meta=_meta(config),
                     metrics=_best_metrics(final))
    # The metrics file marks a finished run: only once the final checkpoint
    # is complete on disk.
    with wall.timed('checkpointing'):
      manager.wait_until_finished()
    evaluate.write_eval_metrics(workdir, final)
    if config.eval.write_picture:
      picture = evaluate.write_picture(workdir, sample, info.skeleton)
      if picture:
        logging.info('Wrote %s.', picture)
      if is_main and curves['loss']:
        visualize.plot_training_curves(
            curves, epath.Path(workdir) / CURVES_FILE,
            baselines={name: table['mpjpe_mm']
                       for name, table in final['baselines'].items()})
    logging.info('Final evaluation at step %d: %s', step,
                 evaluate.summary_line(final))
  except BaseException:
    progress.close()
    try:  # Waits for pending async saves; must not hide the first error.
      manager.close()
    except checkpointing.CheckpointSaveError as error:
      logging.error('%s', error)
    try:
      writer.close()
    except OSError as error:  # E.g. the same full disk.
      logging.error('Closing the event files in %s: %s', workdir, error)
    raise
  else:
    progress.close()
    with wall.timed('checkpointing'):
      manager.close()  # Waits for pending async saves.
    # How the run's wall time went (log file and TensorBoard).
    logging.info('%s.', wall.summary())
    totals = wall.totals()
    writer.write_scalars(step, {f'wall_seconds_{k}': v for k, v in
                                totals.items()}, terminal=False)
    throughput.write_run_summary(workdir, totals, step - start_step,
                                 config.data.batch_size)
    writer.close()
  return final


def _best_metrics(results: Mapping[str, Any] | None) -> dict[str, float] | None:
  """The scalar the best-checkpoint policy ranks by (lower is better)."""
  if results is None or not math.isfinite(results.get('mpjpe_mm', math.nan)):
    return None
  return {'mpjpe_mm': float(results['mpjpe_mm'])}
