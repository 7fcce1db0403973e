"""JAX side of the benchmark: a real training step and an inference step.

The training step is the trainer's own: `train.make_train_step` built
from the benchmarked config's `loss` and `optim` sections (every loss term,
the optax chain with its learning-rate schedule, the data-mesh shardings,
parameters and optimizer state donated; accumulation off, see
`trainer_config`). Inference is the deterministic forward pass. Both are compiled
ahead of time (`jit(...).lower(...).compile()`), so the compile time is
measured on its own and the compiled memory analysis is available before
anything runs.

Called by `l2a_jax.benchmark.worker` in a process of its own.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable

from flax import nnx
import jax
import jax.extend
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from l2a_jax import losses
from l2a_jax import models
from l2a_jax import optim
from l2a_jax import sharding
from l2a_jax import train
from l2a_jax.data import skeleton as skeleton_lib
from l2a_jax.models import layers
from l2a_jax.benchmark import common
from l2a_jax.benchmark import linear_products
from l2a_jax.benchmark import profiling

# Layer-stack variants of the memory-vs-depth sweep: (scan_layers,
# history_vjp). `history_vjp` exists only in the L2A config.
DEPTH_VARIANTS = {
    'scan': (True, 'custom'),
    'scan_autodiff': (True, 'autodiff'),
    'unrolled': (False, 'custom'),
}


def set_matmul_precision(fp32_matmul: str) -> None:
  """float32 matmuls: 'highest' (IEEE fp32) or 'tf32' (TF32 tensor cores).

  JAX's own default lets XLA pick TF32 on GPUs while PyTorch's default is
  IEEE float32, so the benchmark sets both sides explicitly.
  """
  precision = {'highest': 'highest', 'tf32': 'tensorfloat32'}[fp32_matmul]
  jax.config.update('jax_default_matmul_precision', precision)


def model_config_for(spec: dict[str, Any], **changes: Any
                     ) -> ml_collections.ConfigDict:
  """The spec's `config.model` with the run's dtype and `changes` applied."""
  model = copy.deepcopy(spec['model'])
  model['dtype'] = spec['dtype']
  model.update(changes)
  return ml_collections.ConfigDict(model)


# The learning-rate schedule needs an epoch length; the value only sets
# which learning rate the timed steps use, not their cost.
SCHEDULE_STEPS_PER_EPOCH = 1000
SCHEDULE_TOTAL_STEPS = 100 * SCHEDULE_STEPS_PER_EPOCH


def trainer_config(spec: dict[str, Any]) -> ml_collections.ConfigDict:
  """The run config the trainer's step is built from, out of a spec.

  `model` (with the run's dtype), `loss` (every term of `losses.TERMS`) and
  `optim` (the config's whole `optim` section: optimizer, schedule, weight
  decay mask, gradient clipping) as in the benchmarked config, except
  `optim.accumulation_steps = 1`: one timed step is one optimizer update on
  `spec['batch']` clips, as on the PyTorch side (`data.batch_size` is that
  batch: the step checks its split over the devices as in training).
  """
  loss = {name: float(spec['loss'].get(name, 0.0)) for name in losses.TERMS}
  return ml_collections.ConfigDict({
      'model': model_config_for(spec).to_dict(),
      'loss': loss,
      'optim': {**spec['optim'], 'accumulation_steps': 1},
      'data': {'batch_size': int(spec['batch'])},
  })


def make_steps(graphdef: nnx.GraphDef, spec: dict[str, Any],
               mesh: jax.sharding.Mesh | None = None
               ) -> tuple[Callable[..., Any], Callable[..., Any],
                          optax.GradientTransformation]:
  """The trainer's jitted training step and the inference step of one model.

  The training step *is* `train.make_train_step` (same loss terms, optax
  chain, learning-rate schedule, shardings and donation), built from
  `trainer_config(spec)`.

  Args:
    graphdef: the model's graph definition (`nnx.split`).
    spec: the measurement spec (model, loss weights, optim section).
    mesh: the data mesh (default: all devices, `config.mesh.data = -1`).

  Returns:
    (train_step, infer_step, optimizer):
    `train_step(params, opt_state, batch, rest, key, step) -> (params,
    opt_state, metrics)` exactly as the trainer calls it (params and
    opt_state donated, `batch` = {'inputs', 'targets'});
    `infer_step(params, rest, inputs) -> [batch, frames, joints, 3]`.
  """
  config = trainer_config(spec)
  if mesh is None:
    mesh = sharding.create_mesh(ml_collections.ConfigDict({'data': -1}))
  tx, schedule = optim.create_optimizer(
      config.optim, SCHEDULE_STEPS_PER_EPOCH, SCHEDULE_TOTAL_STEPS)
  parents = skeleton_lib.get('h36m').parents
  train_step = train.make_train_step(graphdef, tx, schedule, config, parents,
                                     mesh)

  def infer_step(params, rest, inputs):
    return nnx.merge(graphdef, params, rest)(inputs)

  return train_step, jax.jit(infer_step), tx


def training_loss(graphdef: nnx.GraphDef, params: Any, rest: Any,
                  inputs: jax.Array, targets: jax.Array,
                  weights: dict[str, float]) -> jax.Array:
  """The trainer's loss (`losses.total_loss`) of the model on one batch."""
  weights = {name: float(weights.get(name, 0.0)) for name in losses.TERMS}
  loss, _ = losses.total_loss(nnx.merge(graphdef, params, rest)(inputs),
                              targets, weights,
                              skeleton_lib.get('h36m').parents)
  return loss


def memory_analysis(compiled: Any) -> dict[str, int | None]:
  """XLA's static buffer assignment of a compiled step, in bytes.

  `temp` is the scratch memory of the step (activations kept for the
  backward pass, gradients, workspaces): the number that grows with depth.
  `argument` / `output` are the inputs and results (parameters, optimizer
  state, batch); `alias` counts outputs that reuse donated inputs; `total`
  = argument + output + temp - alias, the static estimate of the step's
  device memory.
  """
  stats = compiled.memory_analysis()
  if stats is None:
    return {}
  names = ('temp', 'argument', 'output', 'alias', 'generated_code')
  result = {f'xla_{n}_bytes': int(getattr(stats, f'{n}_size_in_bytes'))
            for n in names}
  # Everything live while the step runs; donated inputs that become outputs
  # (alias) are counted once.
  result['xla_total_bytes'] = (
      result['xla_argument_bytes'] + result['xla_output_bytes'] +
      result['xla_temp_bytes'] - result['xla_alias_bytes'])
  return result


# Primitives whose output is a view of their input's buffer once compiled
# (row-major reshapes are bitcasts in XLA): a residual that is such a view
# of another residual (or of an argument) holds no memory of its own.
_VIEW_PRIMITIVES = frozenset({'reshape', 'squeeze', 'expand_dims'})


def residual_bytes(fn: Callable[..., Any], *args: Any) -> int:
  """Bytes of the distinct buffers `jax.vjp(fn, *args)` keeps for backward.

  The residuals are read from the traced program (`jax.make_jaxpr` of the
  vjp: the outputs after the primal ones are what the backward closure
  holds), before XLA sees it, so the count is the same on every backend.
  Left out: residuals that are `fn`'s own arguments (memory the caller
  holds anyway) and residuals that are only a reshape of another residual
  or of an argument (`_VIEW_PRIMITIVES`: one buffer, counted once; autodiff
  keeps `x` and `x.reshape(rows, features)` as two residuals when both an
  elementwise op and a matrix product on the flattened rows need it).
  `jax.ad_checkpoint.print_saved_residuals` lists the same residuals
  without that merge. Residuals stacked by a scan are counted as the scan
  outputs they are. Arguments may be arrays or `jax.ShapeDtypeStruct`s.
  """
  closed, shapes = jax.make_jaxpr(lambda *a: jax.vjp(fn, *a),
                                  return_shape=True)(*args)
  jaxpr = closed.jaxpr
  num_residuals = len(jax.tree.leaves(shapes[1]))
  residuals = jaxpr.outvars[len(jaxpr.outvars) - num_residuals:]
  producer = {var: eqn for eqn in jaxpr.eqns for var in eqn.outvars}
  arguments = set(jaxpr.invars)

  def buffer_of(var):
    """The variable whose buffer `var` views (None: a constant literal)."""
    while not isinstance(var, jax.extend.core.Literal):
      eqn = producer.get(var)
      if eqn is None or eqn.primitive.name not in _VIEW_PRIMITIVES:
        return var
      var = eqn.invars[0]
    return None

  counted = set()
  total = 0
  for var in residuals:
    buffer = buffer_of(var)
    if buffer is None or buffer in arguments:
      continue
    if buffer not in counted:
      counted.add(buffer)
      total += var.aval.size * var.aval.dtype.itemsize
  return total


def saved_residual_bytes(graphdef: nnx.GraphDef, params: Any, rest: Any,
                         inputs: Any, targets: Any,
                         weights: dict[str, float]) -> int:
  """Bytes the training loss keeps for its backward pass, per JAX's tracing.

  `residual_bytes` of the training loss: activations and the parameter
  slices they are computed with, not the parameters and inputs themselves
  (memory the step holds anyway, as PyTorch's count leaves out parameters).
  The same on every backend and every dtype policy, and the JAX
  counterpart of PyTorch's `autograd_saved_bytes`. XLA's `temp` adds
  gradients and workspaces on top, and on CPU also the float32 copies of
  bfloat16 values (XLA CPU computes bf16 in float32), so this is the number
  that predicts the bf16 activation memory on a GPU.
  """
  return residual_bytes(
      lambda *args: training_loss(graphdef, *args, weights), params, rest,
      inputs, targets)


def device_description() -> dict[str, Any]:
  """The JAX backend and its first device."""
  device = jax.devices()[0]
  return {
      'platform': device.platform,
      'device_kind': device.device_kind,
      'device_count': jax.device_count(),
      'platform_version': getattr(device.client, 'platform_version', None),
  }


def measure_steps(spec: dict[str, Any]) -> dict[str, Any]:
  """Compiles and times the train or inference step of the spec's model.

  Returns:
    compile_s (lower + XLA compile), lower_s, first_step_s, step_ms and
    their summary, peak_memory_bytes (device allocator high-water mark when
    the backend reports one, else None), memory (the XLA analysis) and
    device.
  """
  set_matmul_precision(spec['fp32_matmul'])
  model_config = model_config_for(spec)
  model = models.create_model(model_config, nnx.Rngs(spec['seed']))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  # Pure dicts, as the trainer holds them.
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  del model
  mesh = sharding.create_mesh(ml_collections.ConfigDict({'data': -1}))
  train_step, infer_step, optimizer = make_steps(graphdef, spec, mesh)
  inputs_np, targets_np = common.synthetic_batch(spec)
  inputs, targets = jax.device_put(inputs_np), jax.device_put(targets_np)

  if spec['mode'] == 'train':
    opt_state = jax.jit(optimizer.init)(params)
    batch = sharding.global_batch({'inputs': inputs_np,
                                   'targets': targets_np}, mesh,
                                  train.TRAIN_KEYS)
    key = jax.random.key(spec['seed'])
    step_number = np.asarray(0, np.int32)
    args = (params, opt_state, batch, rest, key, step_number)
    jitted = train_step
  else:
    args = (params, rest, inputs)
    jitted = infer_step
  start = time.perf_counter()
  lowered = jitted.lower(*args)
  lower_s = time.perf_counter() - start
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start

  if spec['mode'] == 'train':
    state = {'params': params, 'opt_state': opt_state}
    del params, opt_state, args  # Donated to the first step.

    def step():
      state['params'], state['opt_state'], metrics = compiled(
          state['params'], state['opt_state'], batch, rest, key, step_number)
      return metrics['loss']
  else:
    def step():
      return compiled(params, rest, inputs)

  memory = memory_analysis(compiled)
  if spec['mode'] == 'train':
    memory['saved_residual_bytes'] = saved_residual_bytes(
        graphdef, state['params'], rest, inputs, targets, spec['loss'])
  try:
    timing = common.time_steps(
        step, jax.block_until_ready, spec['warmup'], spec['steps'])
  except Exception as e:  # pylint: disable=broad-except
    if not common.is_out_of_memory(e):
      raise
    # "Does not fit" is a result; XLA's analysis says how much it wanted.
    return {'error': f'{type(e).__name__}: {e}'.splitlines()[0][:500],
            'out_of_memory': True, 'compile_s': compile_s,
            'memory': memory, 'device': device_description()}
  memory['host_peak_rss_bytes'] = common.host_peak_rss_bytes()
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get('peak_bytes_in_use')
  extra = {}
  if spec.get('profile_dir'):
    extra['profile'] = profiling.profile_jax(
        step, jax.block_until_ready, spec['profile_dir'],
        spec['profile_steps'])
  return {
      **common.summarise_times(timing, spec['batch']),
      'compile_s': compile_s,
      'lower_s': lower_s,
      # What `model.remat` meant on this backend ('auto' resolved).
      'remat': layers.resolve_remat(model_config.remat),
      'peak_memory_bytes': int(peak) if peak is not None else None,
      'peak_memory_source': ('jax memory_stats peak_bytes_in_use'
                             if peak is not None else None),
      'memory': memory,
      'device': device_description(),
      **extra,
  }


def measure_memory_vs_depth(spec: dict[str, Any]) -> dict[str, Any]:
  """Compiled training-step memory of the layer stack at several depths.

  Nothing is allocated or run: the step is lowered from abstract shapes and
  compiled, and XLA's buffer assignment gives the memory. For every depth
  and every variant ('scan' = scanned layers with the model's default VJP,
  'scan_autodiff' = scanned with plain autodiff through the L2A history
  buffer, 'unrolled' = a Python loop of layers) the entry holds the
  `memory_analysis` numbers and the compile time.

  Returns:
    {'rows': [{'variant', 'depth', 'compile_s', xla_*_bytes...}, ...],
     'device': ...}
  """
  set_matmul_precision(spec['fp32_matmul'])
  rows = []
  for depth in spec['depths']:
    for variant in spec['variants']:
      scan_layers, history_vjp = DEPTH_VARIANTS[variant]
      changes = {'depth': depth, 'scan_layers': scan_layers}
      if 'history_vjp' in spec['model']:
        changes['history_vjp'] = history_vjp
      model_config = model_config_for(spec, **changes)
      graphdef, params, rest = nnx.split(
          models.abstract_model(model_config), nnx.Param, ...)
      params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
      train_step, _, optimizer = make_steps(graphdef, spec)
      opt_state = jax.eval_shape(optimizer.init, params)
      model = spec['model']
      batch = (spec['batch'], model['num_frames'], model['num_joints'])
      inputs = jax.ShapeDtypeStruct(batch + (model['dim_in'],), jnp.float32)
      targets = jax.ShapeDtypeStruct(batch + (model['dim_out'],),
                                     jnp.float32)
      start = time.perf_counter()
      compiled = train_step.lower(
          params, opt_state, {'inputs': inputs, 'targets': targets}, rest,
          jax.random.key(0), np.asarray(0, np.int32)).compile()
      rows.append({
          'variant': variant,
          'depth': depth,
          'compile_s': time.perf_counter() - start,
          **memory_analysis(compiled),
          'saved_residual_bytes': saved_residual_bytes(
              graphdef, params, rest, inputs, targets, spec['loss']),
      })
      print(f'memory_vs_depth jax {variant} depth={depth}: temp '
            f"{rows[-1].get('xla_temp_bytes', 0) / 2**20:.1f} MiB", flush=True)
  return {'rows': rows, 'device': device_description()}


def repeated_product(dims: Any, repeats: int) -> Callable[..., jax.Array]:
  """A jitted `fori_loop` computing `lax.dot_general(left, right, dims)`
  `repeats` times; returns the (last) product, accumulated in float32.

  The operands pass through an optimization barrier in every iteration, so
  XLA cannot hoist the loop-invariant product out of the loop: each
  iteration runs the product once (tested on the compiled program).
  """
  def product(left, right):
    return jax.lax.dot_general(left, right, dims,
                               preferred_element_type=jnp.float32)

  def run(left, right):
    def body(_, carry):
      left, right, _ = carry
      left, right = jax.lax.optimization_barrier((left, right))
      return left, right, product(left, right)

    out = jax.eval_shape(product, left, right)
    init = (left, right, jnp.zeros(out.shape, out.dtype))
    return jax.lax.fori_loop(0, repeats, body, init)[2]

  return jax.jit(run)


def measure_linear_products(spec: dict[str, Any]) -> dict[str, Any]:
  """Times the forward, input-gradient and weight-gradient products of every
  Linear-layer shape in `spec['products']` (`linear_products` module).

  Each form is a `lax.dot_general` on standard normal inputs in the spec's
  dtype, accumulated in float32 (as `layers.linear_map`); one timed call is
  one `repeated_product` loop of `linear_products.PRODUCTS_PER_CALL`
  products, so the per-product time is what the kernel costs inside a
  compiled program, without Python dispatch.

  Returns:
    products (the spec's, each with `<form>_ms` medians per product),
    step_ms (their per-training-step total) and device.
  """
  set_matmul_precision(spec['fp32_matmul'])
  dtype = jnp.dtype(spec['dtype'])
  repeats = linear_products.PRODUCTS_PER_CALL
  products = {form: repeated_product((((left,), (right,)), ((), ())), repeats)
              for form, (left, right)
              in linear_products.CONTRACTED_AXES.items()}
  rng = np.random.default_rng(spec['seed'])

  def time_form(form, left_shape, right_shape):
    left, right = (jnp.asarray(rng.standard_normal(s, np.float32), dtype)
                   for s in (left_shape, right_shape))
    return common.time_steps(lambda: products[form](left, right),
                             jax.block_until_ready, spec['warmup'],
                             spec['steps'])['step_ms']

  return {**linear_products.measure(spec['products'], time_form),
          'device': device_description()}
