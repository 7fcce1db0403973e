"""Tests of the write-once history stack (l2a_jax.models.history_stack).

A small stand-in layer (masked depth-softmax read of every earlier slot,
a tanh projection, two buffers of different widths, a random mask drawn from
a per-layer key) exercises what the L2A layer relies on: forward equal to a
Python loop, custom VJP equal to autodiff (parameters, shared parameters,
slot 0), random masks replayed in the backward pass, and temporary memory
linear in depth for the custom VJP versus superlinear for autodiff.
"""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from l2a_jax.models import history_stack
import l2a_testing

# Many small programs, each run once: compile them cheaply.
pytestmark = pytest.mark.usefixtures('unoptimised_compiles')

BATCH, TOKENS, WIDTH, KEY_WIDTH = 2, 32, 16, 8


def assert_close(got, want, rtol=1e-5):
  """Elementwise |got - want| <= rtol * (|want| + max |want|).

  The absolute part scales with the array: float32 sums of many terms lose
  relative precision on entries that nearly cancel.
  """
  want = np.asarray(want)
  np.testing.assert_allclose(got, want, rtol=rtol,
                             atol=rtol * float(np.abs(want).max()))


def toy_layer(params, shared, layer_key, index, history, previous):
  """Reads slots < index of 'records' and 'keys'; writes both at index."""
  view = history_stack.StackedSlots(
      history, jnp.arange(history['records'].shape[0]) < index)
  return toy_layer_on_view(params, shared, layer_key, previous['records'],
                           view)


def toy_layer_keys_only(params, shared, layer_key, index, history, previous):
  """L2A's default reads: every earlier key, the records at index - 1 only.

  The mix is of the (narrow) keys, projected back to the record width.
  """
  view = history_stack.StackedSlots(
      history, jnp.arange(history['keys'].shape[0]) < index)
  return toy_layer_on_view(params, shared, layer_key, previous['records'],
                           view, values='keys')


def toy_layer_on_view(params, shared, layer_key, hidden, view,
                      values='records'):
  logits = view.map(lambda k: k @ params['query'], 'keys')  # [S, B, N]
  mask = view.mask.reshape(-1, 1, 1)
  weights = jax.nn.softmax(jnp.where(mask, logits, -1e30), axis=0)
  weights = jnp.where(mask, weights, 0.0)
  mixed = view.weighted_sum(weights[..., None], values)
  if values == 'keys':
    mixed = mixed @ params['key_proj'].T
  update = jnp.tanh((hidden + mixed) @ params['kernel'] + shared['bias'])
  if layer_key is not None:
    keep = jax.random.bernoulli(layer_key, 0.7, update.shape)
    update = jnp.where(keep, update / 0.7, 0.0)
  record = hidden + update
  return {'records': record, 'keys': record @ params['key_proj']}


def make_problem(depth, seed=0):
  keys = jax.random.split(jax.random.key(seed), 6)
  params = {
      'query': jax.random.normal(keys[0], (depth, KEY_WIDTH)),
      'kernel': jax.random.normal(keys[1], (depth, WIDTH, WIDTH)) * 0.4,
      'key_proj': jax.random.normal(keys[2], (depth, WIDTH, KEY_WIDTH)),
  }
  shared = {'bias': jax.random.normal(keys[3], (WIDTH,))}
  first = jax.random.normal(keys[4], (BATCH, TOKENS, WIDTH))
  layer_keys = jax.random.split(keys[5], depth)
  return params, shared, first, layer_keys


def initial_buffers(first, proj0, depth):
  buffers = {
      'records': jnp.zeros((depth + 1,) + first.shape),
      'keys': jnp.zeros((depth + 1, BATCH, TOKENS, KEY_WIDTH)),
  }
  return history_stack.write_slots(
      buffers, 0, {'records': first, 'keys': first @ proj0})


# How the toy layers read: (layer_fn, history_reads, values of the mix).
READS = {
    'all': (toy_layer, None, 'records'),
    'keys_only': (toy_layer_keys_only, ('keys',), 'keys'),
}


def run_stack(params, shared, first, layer_keys, proj0, gradient, remat=None,
              reads='all'):
  depth = params['query'].shape[0]
  layer_fn, history_reads, _ = READS[reads]
  kwargs = {} if remat is None else {'remat': remat}
  final = history_stack.scan_write_once(
      layer_fn, params, shared, layer_keys,
      initial_buffers(first, proj0, depth), gradient=gradient,
      history_reads=history_reads, **kwargs)
  return final


def run_python_loop(params, shared, first, layer_keys, proj0, reads='all'):
  """Reference: the history as Python lists, one slot appended per layer."""
  depth = params['query'].shape[0]
  values = READS[reads][2]
  slots = {'records': [first], 'keys': [first @ proj0]}
  for i in range(depth):
    view = history_stack.ListSlots(slots, jnp.ones(i + 1, bool))
    layer_params = jax.tree.map(lambda a, i=i: a[i], params)
    key = None if layer_keys is None else layer_keys[i]
    new = toy_layer_on_view(layer_params, shared, key, slots['records'][-1],
                            view, values=values)
    slots = {name: slots[name] + [new[name]] for name in slots}
  return {name: jnp.stack(entries) for name, entries in slots.items()}


def scalar_loss(final, weights):
  return sum(jnp.sum(final[name] * weights[name]) for name in final)


@pytest.fixture(name='problem')
def fixture_problem():
  depth = 4
  params, shared, first, layer_keys = make_problem(depth)
  proj0 = jax.random.normal(jax.random.key(7), (WIDTH, KEY_WIDTH))
  final_shape = {'records': (depth + 1, BATCH, TOKENS, WIDTH),
                 'keys': (depth + 1, BATCH, TOKENS, KEY_WIDTH)}
  weights = {name: jax.random.normal(jax.random.key(8 + j), shape)
             for j, (name, shape) in enumerate(final_shape.items())}
  return params, shared, first, layer_keys, proj0, weights


@pytest.mark.parametrize('reads', sorted(READS))
@pytest.mark.parametrize('gradient', ['custom', 'autodiff'])
def test_forward_equals_python_loop(problem, gradient, reads):
  params, shared, first, layer_keys, proj0, _ = problem
  final = jax.jit(run_stack, static_argnums=(5, 6, 7))(
      params, shared, first, layer_keys, proj0, gradient, None, reads)
  expected = run_python_loop(params, shared, first, layer_keys, proj0, reads)
  for name in expected:
    assert_close(final[name], expected[name])
  # Every slot was written (no slot left at its zero initial value).
  assert np.all(np.abs(np.asarray(final['records'])).sum(axis=(1, 2, 3)) > 0)


@pytest.mark.parametrize('reads', sorted(READS))
@pytest.mark.parametrize('with_keys', [True, False])
def test_custom_gradient_equals_autodiff(problem, with_keys, reads):
  params, shared, first, layer_keys, proj0, weights = problem
  layer_keys = layer_keys if with_keys else None

  def loss(params, shared, first, proj0, gradient):
    final = run_stack(params, shared, first, layer_keys, proj0, gradient,
                      reads=reads)
    return scalar_loss(final, weights)

  grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)), static_argnums=4)
  custom = grad(params, shared, first, proj0, 'custom')
  autodiff = grad(params, shared, first, proj0, 'autodiff')
  for got, want in zip(jax.tree.leaves(custom), jax.tree.leaves(autodiff)):
    assert np.abs(np.asarray(want)).max() > 0  # a live gradient everywhere
    assert_close(got, want)


@pytest.mark.parametrize('reads', sorted(READS))
def test_custom_gradient_equals_python_loop_gradient(problem, reads):
  """The design's reference: jax.grad of the unrolled loop."""
  params, shared, first, layer_keys, proj0, weights = problem

  def loss_stack(params, shared, first):
    return scalar_loss(
        run_stack(params, shared, first, layer_keys, proj0, 'custom',
                  reads=reads), weights)

  def loss_loop(params, shared, first):
    return scalar_loss(
        run_python_loop(params, shared, first, layer_keys, proj0, reads),
        weights)

  got = jax.jit(jax.grad(loss_stack, argnums=(0, 1, 2)))(params, shared,
                                                          first)
  want = jax.jit(jax.grad(loss_loop, argnums=(0, 1, 2)))(params, shared,
                                                          first)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert_close(g, w)


def test_custom_gradient_with_remat_policy(problem):
  params, shared, first, layer_keys, proj0, weights = problem
  remat = lambda fn: jax.checkpoint(  # pylint: disable=g-long-lambda
      fn, policy=jax.checkpoint_policies.dots_saveable, prevent_cse=False)

  def loss(params, remat):
    final = run_stack(params, shared, first, layer_keys, proj0, 'custom',
                      remat)
    return scalar_loss(final, weights)

  plain = jax.jit(jax.grad(lambda p: loss(p, None)))(params)
  rematted = jax.jit(jax.grad(lambda p: loss(p, remat)))(params)
  for g, w in zip(jax.tree.leaves(rematted), jax.tree.leaves(plain)):
    assert_close(g, w)


def test_check_grads_in_float64():
  """Numerical differentiation agrees with the custom VJP (float64)."""
  with jax.enable_x64(True):
    params, shared, first, _ = make_problem(3, seed=1)
    to64 = lambda tree: jax.tree.map(lambda a: a.astype(jnp.float64), tree)
    params, shared, first = to64(params), to64(shared), to64(first)
    proj0 = jnp.ones((WIDTH, KEY_WIDTH), jnp.float64) * 0.3
    weights = {'records': jnp.linspace(-1, 1, 4 * BATCH * TOKENS * WIDTH,
                                       dtype=jnp.float64).reshape(
                                           4, BATCH, TOKENS, WIDTH),
               'keys': jnp.ones((4, BATCH, TOKENS, KEY_WIDTH), jnp.float64)}

    def loss(params, shared, first):
      final = run_stack(params, shared, first, None, proj0, 'custom')
      return scalar_loss(final, weights)

    # eps 1e-6: float64 central differences with a truncation error far
    # below check_grads' tolerance (its default eps is too coarse here).
    jax.test_util.check_grads(loss, (params, shared, first), order=1,
                              modes=['rev'], eps=1e-6)


def _temp_bytes(depth, gradient):
  params, shared, first, _ = make_problem(depth)
  proj0 = jnp.ones((WIDTH, KEY_WIDTH))

  def loss(params, shared, first):
    final = run_stack(params, shared, first, None, proj0, gradient)
    return jnp.sum(final['records'] ** 2) + jnp.sum(final['keys'])

  compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(
      params, shared, first).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_memory_linear_in_depth_with_custom_vjp():
  """Temp memory: custom ~ L (buffer + its cotangent), autodiff ~ L^2."""
  depths = np.array([4, 8, 16, 32])
  custom = np.array([_temp_bytes(d, 'custom') for d in depths], float)
  autodiff = np.array([_temp_bytes(d, 'autodiff') for d in depths], float)
  # Bytes of one slot of both buffers (records + keys).
  slot = BATCH * TOKENS * (WIDTH + KEY_WIDTH) * 4
  custom_slope = np.diff(custom) / np.diff(depths)
  autodiff_slope = np.diff(autodiff) / np.diff(depths)
  # Linear: the same few slot copies per layer (final buffer, cotangent,
  # parameter gradient) whatever the depth.
  assert custom_slope.max() < 1.25 * custom_slope.min(), custom
  assert custom_slope.max() < 6 * slot, (custom_slope, slot)
  # Quadratic: autodiff keeps the whole buffer once per layer, so each
  # extra layer costs more than the previous one.
  assert autodiff_slope[-1] > 1.4 * autodiff_slope[0], autodiff
  assert autodiff[-1] > 4 * custom[-1], (custom, autodiff)


def test_rejects_too_few_slots():
  params, shared, first, _ = make_problem(3)
  buffers = initial_buffers(first, jnp.ones((WIDTH, KEY_WIDTH)), 2)
  with pytest.raises(ValueError, match='slots'):
    history_stack.scan_write_once(toy_layer, params, shared, None, buffers)


def test_rejects_unknown_gradient_and_missing_buffers():
  params, shared, first, _ = make_problem(2)
  buffers = initial_buffers(first, jnp.ones((WIDTH, KEY_WIDTH)), 2)
  with pytest.raises(ValueError, match='gradient'):
    history_stack.scan_write_once(toy_layer, params, shared, None, buffers,
                                  gradient='reverse')

  def writes_one_buffer(*args):
    return {'records': toy_layer(*args)['records']}

  with pytest.raises(ValueError, match='wrote slots'):
    history_stack.scan_write_once(writes_one_buffer, params, shared, None,
                                  buffers)


def test_views_agree():
  """StackedSlots (buffer + mask) and ListSlots give the same reads."""
  entries = [jax.random.normal(jax.random.key(i), (BATCH, TOKENS, WIDTH))
             for i in range(3)]
  buffer = jnp.stack(entries + [jnp.zeros_like(entries[0])] * 2)
  stacked = history_stack.StackedSlots(
      {'records': buffer}, jnp.array([True, False, True, False, False]))
  listed = history_stack.ListSlots({'records': entries},
                                   jnp.array([True, False, True]))
  weights = jnp.array([0.25, 0.5, 0.75, 9.0, 9.0]).reshape(-1, 1, 1, 1)
  stacked_sum = stacked.weighted_sum(weights, 'records')
  assert_close(stacked_sum,
               0.25 * entries[0] + 0.5 * entries[1] + 0.75 * entries[2])
  assert_close(listed.weighted_sum(weights[:3], 'records'), stacked_sum)
  norms = lambda v: jnp.sum(v, axis=(-1,))
  assert_close(stacked.map(norms, 'records')[:3], listed.map(norms, 'records'))
  np.testing.assert_array_equal(stacked.slot('records', 2), entries[2])
  assert stacked.num_slots == 5 and listed.num_slots == 3
  # Views cross jax.checkpoint / jit as pytrees.
  got = jax.jit(lambda v: v.weighted_sum(weights, 'records'))(stacked)
  assert_close(got, stacked_sum)


@pytest.mark.parametrize('weights_shape', [
    (5, BATCH, TOKENS, 1),  # One weight per (slot, token): L2A's 'token'.
    (5, 1, 1, 1),  # One weight per slot: 'static'.
    (5, BATCH, 1, 1),  # One weight per (slot, sample): 'sample'.
])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_weighted_slot_sum_matches_the_reduction(weights_shape, dtype):
  """Value and both gradients equal autodiff of jnp.sum(w * b, axis=0)."""
  keys = jax.random.split(jax.random.key(7), 3)
  weights = jax.random.normal(keys[0], weights_shape)
  buffer = jax.random.normal(keys[1], (5, BATCH, TOKENS, WIDTH)).astype(dtype)
  cotangent = jax.random.normal(keys[2], (BATCH, TOKENS, WIDTH))

  def reference(w, b):
    return jnp.sum(w * b.astype(jnp.float32), axis=0)

  got, got_vjp = jax.vjp(history_stack.weighted_slot_sum, weights, buffer)
  want, want_vjp = jax.vjp(reference, weights, buffer)
  assert got.dtype == jnp.float32 and got.shape == want.shape
  assert_close(got, want)
  for g, w in zip(got_vjp(cotangent), want_vjp(cotangent)):
    assert g.dtype == w.dtype and g.shape == w.shape
    assert_close(g.astype(jnp.float32), w.astype(jnp.float32),
                 rtol=1e-5 if dtype == jnp.float32 else 1e-2)


def test_weighted_slot_sum_keeps_float64():
  """A float64 buffer is summed in float64 (not rounded to float32)."""
  with jax.enable_x64(True):
    weights = jnp.full((3, 1), 1.0, jnp.float64)
    buffer = jnp.array([[1.0], [1e-12], [0.0]], jnp.float64)
    total = history_stack.weighted_slot_sum(weights, buffer)
    assert total.dtype == jnp.float64
    assert float(total[0]) - 1.0 == pytest.approx(1e-12, rel=1e-3)


def test_weighted_slot_sum_compiles_without_a_reduction():
  """The forward pass is elementwise: no reduce over the slot axis.

  XLA CPU ran `jnp.sum(weights * buffer, axis=0)` as a library reduction
  about 14x slower than the unrolled elementwise sum (docs/benchmarks.md).
  """
  weights = jnp.ones((5, BATCH, TOKENS, 1))
  buffer = jnp.ones((5, BATCH, TOKENS, WIDTH))
  hlo = jax.jit(history_stack.weighted_slot_sum).lower(
      weights, buffer).compile().as_text()
  assert ' reduce(' not in hlo, hlo


def test_custom_gradient_accumulates_buffer_cotangents_in_float32():
  # Every layer l writes slot l = p * slot 0, p = 2^-10, in bfloat16. The
  # cotangent of slot 0 is 1 (its own) + 16 * 2^-10 = 1.015625, exactly
  # representable in bf16; summed in bf16, each 1 + 2^-10 rounds back to 1
  # (half an ulp of 1 is 2^-8) and the layers' share would be lost.
  depth = 16
  buffers = {'a': jnp.zeros((depth + 1, 3), jnp.bfloat16).at[0].set(1.0)}
  stacked = {'p': jnp.full((depth,), 2.0**-10, jnp.bfloat16)}

  def layer_fn(params, shared, inputs, index, history, previous):
    del shared, inputs, index, previous
    return {'a': params['p'] * history['a'][0]}

  def loss(buffers):
    final = history_stack.scan_write_once(layer_fn, stacked, None, None,
                                          buffers, gradient='custom')
    return jnp.sum(final['a'].astype(jnp.float32))

  grad = jax.grad(loss)(buffers)['a']
  assert grad.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(grad[0], np.float32),
                                np.full(3, 1.015625, np.float32))


def _reverse_scan_ops_on(shape, jaxpr):
  """Primitives in reverse scans' bodies whose output has `shape`.

  Calls (`jit`) are not counted themselves; their bodies are walked.
  """
  found = []

  def walk(jaxpr, in_reverse_scan):
    for eqn in jaxpr.eqns:
      if in_reverse_scan and eqn.primitive.name != 'jit' and any(
          tuple(getattr(v.aval, 'shape', ())) == shape for v in eqn.outvars):
        found.append(eqn.primitive.name)
      for param in eqn.params.values():
        inner = getattr(param, 'jaxpr', param)
        if isinstance(inner, jax.extend.core.Jaxpr):
          walk(inner, in_reverse_scan or (
              eqn.primitive.name == 'scan' and eqn.params['reverse']))

  walk(jaxpr.jaxpr, False)
  return found


@pytest.mark.parametrize('reads', sorted(READS))
def test_backward_touches_only_the_slots_a_layer_reads(problem, reads):
  """A buffer read only at slot l - 1 is never masked, added or copied
  whole in the backward pass: the reverse scan updates it one slot at a
  time (dynamic_update_slice in place). Read as history, it is."""
  params, shared, first, layer_keys, proj0, weights = problem

  def loss(params, first):
    return scalar_loss(run_stack(params, shared, first, layer_keys, proj0,
                                 'custom', reads=reads), weights)

  jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(params, first)
  records_shape = weights['records'].shape
  ops = set(_reverse_scan_ops_on(records_shape, jaxpr))
  whole_buffer_math = ops - {'dynamic_update_slice'}
  if reads == 'keys_only':
    assert ops == {'dynamic_update_slice'}, ops
  else:
    # The full read: slots_below's mask and the cotangent sum are whole.
    assert {'select_n', 'add'} <= whole_buffer_math, ops
  # The keys are history in both: masked whole, as the layer reads them.
  keys_ops = set(_reverse_scan_ops_on(weights['keys'].shape, jaxpr))
  assert 'select_n' in keys_ops, keys_ops


def test_rejects_history_reads_of_unknown_buffers(problem):
  params, shared, first, layer_keys, proj0, _ = problem
  buffers = initial_buffers(first, proj0, 4)
  with pytest.raises(ValueError, match=r"history_reads names buffers \['poses'\]"):
    history_stack.scan_write_once(toy_layer, params, shared, layer_keys,
                                  buffers, history_reads=('keys', 'poses'))
