"""The scanned write-once layer-history stack with an O(L)-memory gradient.

L2A's layer l reads the outputs of *all* earlier layers, so its scan carry is
a history buffer of fixed size `[num_slots, ...]` (slot 0 = the embedding,
slot l = what layer l wrote), read under a mask of the filled slots.

Plain reverse-mode differentiation of such a scan saves every step's input,
i.e. one copy of the whole buffer per layer: O(L^2) memory. But every slot
is written exactly once and layer l only reads slots < l, so **the buffer
that layer l saw equals the final buffer with slots >= l zeroed**. The
custom VJP of `scan_write_once` saves only the final buffer and runs the
backward pass as a reverse scan against it, recomputing one layer at a time
(l2a_design.md section 5.3): O(L) activation memory, for the cost of one
extra forward pass per layer (as with per-layer rematerialisation).

The backward pass touches only the slots a layer reads. A layer gets two
things: `history`, the buffers it reads at any earlier slot (the caller
names them, `history_reads`), and `previous`, slot l - 1 of every buffer.
L2A's default reads only the compact LPA keys as history and the wide
records at slot l - 1 alone, so per layer the backward masks and adds
key-sized buffers plus one record slot, not a copy of the whole record
buffer (which made the backward's memory traffic O(L^2) in the records).
Buffer cotangents accumulate in float32 whatever the buffers' dtype.

Contents:
- `scan_write_once`: the write-once stack, gradient 'custom' | 'autodiff'.
- `scan_carry`: a plain scan with an arbitrary carry (for histories that are
  rewritten, e.g. L2A's block summaries), differentiated by autodiff.
- `StackedSlots` / `ListSlots`: two views of "the history so far" with one
  interface, so a layer's code is the same in the scanned path (fixed-size
  buffer + mask) and in the unrolled reference path (a Python list that
  grows by one entry per layer, O(L) memory without buffer copies).

Nothing here knows about L2A; the functions take pure functions over
pytrees (nnx.State included).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Buffers = dict[str, jax.Array]
# layer_fn(layer_params, shared_params, layer_inputs, index, history, previous)
#   -> {buffer name: value written to slot `index`}.
LayerFn = Callable[[Any, Any, Any, jax.Array, Buffers, Buffers],
                   Mapping[str, jax.Array]]
Wrapper = Callable[[Callable[..., Any]], Callable[..., Any]]


def _identity_wrapper(fn):
  return fn


def slots_below(buffers: Mapping[str, jax.Array],
                index: jax.Array) -> Buffers:
  """Zeroes every slot >= index.

  Args:
    buffers: name -> [num_slots, ...].
    index: int32 scalar.

  Returns:
    The buffers with slots index, index + 1, ... set to zero.
  """
  masked = {}
  for name, buffer in buffers.items():
    keep = jnp.arange(buffer.shape[0]) < index
    keep = keep.reshape((-1,) + (1,) * (buffer.ndim - 1))
    masked[name] = jnp.where(keep, buffer, jnp.zeros_like(buffer))
  return masked


def write_slots(buffers: Mapping[str, jax.Array], index: jax.Array,
                values: Mapping[str, jax.Array]) -> Buffers:
  """Writes values[name] into slot `index` of buffers[name].

  Args:
    buffers: name -> [num_slots, *slot_shape].
    index: int32 scalar slot index.
    values: name -> [*slot_shape]; exactly the names of `buffers`.

  Returns:
    The updated buffers (in place under jit when the input is donated or a
    scan carry).
  """
  if set(values) != set(buffers):
    raise ValueError(f'layer wrote slots {sorted(values)}, the history has '
                     f'buffers {sorted(buffers)}')
  return {
      name: jax.lax.dynamic_update_index_in_dim(
          buffer, values[name].astype(buffer.dtype), index, 0)
      for name, buffer in buffers.items()
  }


def read_slots(buffers: Mapping[str, jax.Array], index: jax.Array) -> Buffers:
  """name -> buffers[name][index] (dynamic index)."""
  return {name: jax.lax.dynamic_index_in_dim(buffer, index, 0, keepdims=False)
          for name, buffer in buffers.items()}


def _num_layers(stacked: Any) -> int:
  leaves = jax.tree.leaves(stacked)
  if not leaves:
    raise ValueError('the stacked layer parameters have no leaves')
  return leaves[0].shape[0]


def scan_write_once(layer_fn: LayerFn, stacked: Any, shared: Any, xs: Any,
                    buffers: Mapping[str, jax.Array], *,
                    gradient: str = 'custom',
                    remat: Wrapper = _identity_wrapper,
                    history_reads: Collection[str] | None = None) -> Buffers:
  """Runs L layers over a write-once history; layer l writes slot l.

  Contract of `layer_fn(layer_params, shared, layer_inputs, index, history,
  previous)`: it is pure and returns one value per buffer for slot `index`.
  `history` maps every name in `history_reads` to its whole buffer, of which
  the layer reads only slots < index (slots >= index are zero in the forward
  pass); `previous` maps every buffer name to its slot index - 1. A buffer
  outside `history_reads` must be read through `previous` only: the custom
  backward pass then differentiates one slot of it per layer instead of the
  whole buffer. Slots 1..L of the initial buffers must be zero: then the
  buffers seen by layer l are the final buffers masked to slots < l, which
  is what the custom gradient relies on.

  Args:
    layer_fn: one layer, see above.
    stacked: pytree of per-layer parameters, every leaf [L, ...].
    shared: pytree of parameters used by every layer (gradients summed), or
      None.
    xs: pytree of non-differentiable per-layer inputs, every leaf [L, ...]
      (e.g. drop-path keys and rates), or None. Their cotangent is zero.
    buffers: name -> [num_slots, ...] with num_slots >= L + 1, slot 0 filled.
    gradient: 'custom' (reverse scan against the final buffers, O(L)
      activation memory) | 'autodiff' (reverse-mode through `lax.scan`,
      O(L^2): one buffer copy per layer; the reference).
    remat: wrapper applied to `layer_fn` (e.g. `jax.checkpoint` with a
      policy). With 'custom' it bounds the memory of the one layer being
      recomputed in the backward pass; with 'autodiff' it is per-step remat.
    history_reads: the buffers `layer_fn` reads at arbitrary earlier slots
      (default: all of them).

  Returns:
    The final buffers (same names, shapes and dtypes).
  """
  num_layers = _num_layers(stacked)
  num_slots = min(buffer.shape[0] for buffer in buffers.values())
  if num_slots < num_layers + 1:
    raise ValueError(f'history has {num_slots} slots, {num_layers} layers '
                     f'need {num_layers + 1}')
  read_names = (tuple(sorted(buffers)) if history_reads is None else
                tuple(sorted(history_reads)))
  unknown = sorted(set(read_names) - set(buffers))
  if unknown:
    raise ValueError(f'history_reads names buffers {unknown}, the history '
                     f'has {sorted(buffers)}')
  # NumPy, not jnp: a constant, so the custom VJP closes over no tracer.
  indices = np.arange(1, num_layers + 1, dtype=np.int32)
  step_fn = remat(layer_fn)

  def history_of(bufs):
    return {name: bufs[name] for name in read_names}

  def forward(stacked, shared, xs, buffers):
    def step(bufs, per_layer):
      layer_params, layer_inputs, index = per_layer
      values = step_fn(layer_params, shared, layer_inputs, index,
                       history_of(bufs), read_slots(bufs, index - 1))
      return write_slots(bufs, index, values), None

    final, _ = jax.lax.scan(step, dict(buffers), (stacked, xs, indices))
    return final

  if gradient == 'autodiff':
    return forward(stacked, shared, xs, buffers)
  if gradient != 'custom':
    raise ValueError(f"history gradient: expected 'custom' | 'autodiff', got "
                     f'{gradient!r}')

  @jax.custom_vjp
  def stack(stacked, shared, xs, buffers):
    return forward(stacked, shared, xs, buffers)

  def stack_fwd(stacked, shared, xs, buffers):
    final = forward(stacked, shared, xs, buffers)
    # The only residuals: parameters, per-layer inputs and the final buffers.
    return final, (stacked, shared, xs, final)

  def stack_bwd(residuals, final_cotangent):
    stacked, shared, xs, final = residuals

    def reverse_step(carry, per_layer):
      cotangent, shared_cotangent = carry
      layer_params, layer_inputs, index = per_layer
      # Exactly what layer `index` saw in the forward pass: the history
      # buffers below `index` and slot index - 1 of every buffer.
      seen = slots_below(history_of(final), index)
      previous = read_slots(final, index - 1)
      _, layer_vjp = jax.vjp(
          lambda p, s, h, v: step_fn(p, s, layer_inputs, index, h, v),
          layer_params, shared, seen, previous)
      slot_cotangent = {name: g.astype(final[name].dtype) for name, g in
                        read_slots(cotangent, index).items()}
      params_grad, shared_grad, seen_grad, previous_grad = layer_vjp(
          slot_cotangent)
      # The history read reaches slots < index only.
      seen_grad = slots_below(seen_grad, index)
      new_cotangent = {}
      for name, g in cotangent.items():
        # Slot `index` was overwritten by this layer: before it, its
        # cotangent is zero. One slot, updated in place.
        g = jax.lax.dynamic_update_index_in_dim(
            g, jnp.zeros(g.shape[1:], g.dtype), index, 0)
        if name in seen_grad:
          g = g + seen_grad[name].astype(jnp.float32)
        below = jax.lax.dynamic_index_in_dim(g, index - 1, 0, keepdims=False)
        new_cotangent[name] = jax.lax.dynamic_update_index_in_dim(
            g, below + previous_grad[name].astype(jnp.float32), index - 1, 0)
      shared_cotangent = jax.tree.map(jnp.add, shared_cotangent, shared_grad)
      return (new_cotangent, shared_cotangent), params_grad

    # The buffer cotangent accumulates in float32 whatever the buffers'
    # dtype: an early slot sums the contributions of every later layer.
    init = ({name: g.astype(jnp.float32) for name, g in
             final_cotangent.items()},
            jax.tree.map(jnp.zeros_like, shared))
    (buffers_grad, shared_grad), stacked_grad = jax.lax.scan(
        reverse_step, init, (stacked, xs, indices), reverse=True)
    buffers_grad = {name: g.astype(final[name].dtype)
                    for name, g in buffers_grad.items()}
    # None: xs (keys, rates) get no cotangent.
    return stacked_grad, shared_grad, None, buffers_grad

  stack.defvjp(stack_fwd, stack_bwd)
  return stack(stacked, shared, xs, dict(buffers))


def scan_carry(step_fn: Callable[[Any, Any, Any, jax.Array, Any], Any],
               stacked: Any, shared: Any, xs: Any, carry: Any, *,
               remat: Wrapper = _identity_wrapper) -> Any:
  """A plain scan over stacked layers with any carry (autodiff gradient).

  Args:
    step_fn: `step_fn(layer_params, shared, layer_inputs, index, carry) ->
      carry`, index the 1-based int32 layer index.
    stacked: pytree of per-layer parameters, every leaf [L, ...].
    shared: parameters used by every layer, or None.
    xs: per-layer inputs, every leaf [L, ...], or None.
    carry: the initial carry.
    remat: wrapper applied to `step_fn` (per-step rematerialisation).

  Returns:
    The final carry.
  """
  indices = np.arange(1, _num_layers(stacked) + 1, dtype=np.int32)
  wrapped = remat(step_fn)

  def step(carry, per_layer):
    layer_params, layer_inputs, index = per_layer
    return wrapped(layer_params, shared, layer_inputs, index, carry), None

  final, _ = jax.lax.scan(step, carry, (stacked, xs, indices))
  return final


def _sum_to_shape(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Sums x over the axes that broadcasting `shape` to x.shape expanded."""
  lead = x.ndim - len(shape)
  axes = tuple(range(lead)) + tuple(
      lead + i for i, size in enumerate(shape)
      if size == 1 and x.shape[lead + i] != 1)
  return jnp.sum(x, axis=axes, keepdims=True).reshape(shape)


@jax.custom_vjp
def weighted_slot_sum(weights: jax.Array, buffer: jax.Array) -> jax.Array:
  """sum_s weights[s] * buffer[s], in float32 (float64 for float64 input).

  The forward pass is an unrolled sum of per-slot products: one elementwise
  fusion. `jnp.sum(weights * buffer, axis=0)` computes the same, but XLA CPU
  lowers that reduction over the outermost axis to a library (YNNPACK)
  fusion that took 8 ms per call in the L2A CPU training step, 11 % of the
  step (docs/benchmarks.md, tuning log). The backward pass is written out
  in autodiff's broadcast form of the reduction: the unrolled sum's own
  transpose would pad every slot's cotangent to the whole buffer, which made
  the history stack's temporary memory superlinear in depth.

  Args:
    weights: [num_slots, ...], broadcastable against `buffer`.
    buffer: [num_slots, ...], any float dtype.

  Returns:
    One slot's broadcast shape, dtype promote(buffer.dtype, float32).
  """
  dtype = jnp.promote_types(buffer.dtype, jnp.float32)
  total = weights[0] * buffer[0].astype(dtype)
  for slot in range(1, buffer.shape[0]):
    total = total + weights[slot] * buffer[slot].astype(dtype)
  return total


def _weighted_slot_sum_fwd(weights, buffer):
  return weighted_slot_sum(weights, buffer), (weights, buffer)


def _weighted_slot_sum_bwd(residuals, cotangent):
  weights, buffer = residuals
  wide = buffer.astype(cotangent.dtype)
  weights_grad = _sum_to_shape(cotangent[None] * wide, weights.shape)
  buffer_grad = _sum_to_shape(weights * cotangent[None], buffer.shape)
  return (weights_grad.astype(weights.dtype),
          buffer_grad.astype(buffer.dtype))


weighted_slot_sum.defvjp(_weighted_slot_sum_fwd, _weighted_slot_sum_bwd)


@jax.tree_util.register_pytree_node_class
class StackedSlots:
  """The history as fixed-size buffers plus a mask of readable slots.

  Used inside the scan: every buffer has all `num_slots` slots, unfilled ones
  are zero, `mask` says which slots the current layer reads. A pytree (so it
  can cross `jax.checkpoint`).
  """

  def __init__(self, buffers: Mapping[str, jax.Array], mask: jax.Array):
    """Args: buffers name -> [num_slots, ...]; mask [num_slots] bool."""
    self.buffers = buffers
    self.mask = mask

  @property
  def num_slots(self) -> int:
    return self.mask.shape[0]

  @property
  def slot_ids(self) -> np.ndarray:
    return np.arange(self.num_slots)

  def tree_flatten(self):
    return (self.buffers, self.mask), None

  @classmethod
  def tree_unflatten(cls, aux, children):
    # No validation: JAX may unflatten with placeholder leaves.
    del aux
    view = object.__new__(cls)
    view.buffers, view.mask = children
    return view

  def map(self, fn: Callable[[jax.Array], jax.Array],
          name: str) -> jax.Array:
    """[num_slots, *fn(slot).shape]: fn applied to every slot of `name`."""
    return jax.vmap(fn)(self.buffers[name])

  def weighted_sum(self, weights: jax.Array, name: str) -> jax.Array:
    """sum_s weights[s] * slot_s, in float32.

    Args:
      weights: [num_slots, ...] float32, broadcastable against one slot.
      name: buffer name.

    Returns:
      float32 array of one slot's (broadcast) shape.
    """
    return weighted_slot_sum(weights, self.buffers[name])

  def slot(self, name: str, index: jax.Array | int) -> jax.Array:
    """buffers[name][index] (index may be traced)."""
    return jax.lax.dynamic_index_in_dim(self.buffers[name], index, 0,
                                        keepdims=False)


@jax.tree_util.register_pytree_node_class
class ListSlots:
  """The history as Python lists of slots (the unrolled reference path).

  Nothing is stacked: `map` stacks only fn's (small) results and
  `weighted_sum` is a Python sum, so autodiff keeps every history entry once
  instead of once per reading layer. A pytree, like `StackedSlots`.
  """

  def __init__(self, slots: Mapping[str, Sequence[jax.Array]],
               mask: jax.Array):
    """Args: slots name -> list of arrays; mask [len(list)] bool."""
    lengths = {len(entries) for entries in slots.values()}
    if lengths != {mask.shape[0]}:
      raise ValueError(f'history lists of lengths {sorted(lengths)} do not '
                       f'match the mask of {mask.shape[0]} slots')
    self.slots = slots
    self.mask = mask

  @property
  def num_slots(self) -> int:
    return self.mask.shape[0]

  @property
  def slot_ids(self) -> np.ndarray:
    return np.arange(self.num_slots)

  def tree_flatten(self):
    return (self.slots, self.mask), None

  @classmethod
  def tree_unflatten(cls, aux, children):
    # No validation: JAX may unflatten with placeholder leaves.
    del aux
    view = object.__new__(cls)
    view.slots, view.mask = children
    return view

  def map(self, fn: Callable[[jax.Array], jax.Array],
          name: str) -> jax.Array:
    """[num_slots, *fn(slot).shape]: fn applied to every slot of `name`."""
    return jnp.stack([fn(entry) for entry in self.slots[name]])

  def weighted_sum(self, weights: jax.Array, name: str) -> jax.Array:
    """sum_s weights[s] * slot_s, in float32 (see StackedSlots)."""
    total = None
    for s, entry in enumerate(self.slots[name]):
      term = weights[s] * entry.astype(jnp.float32)
      total = term if total is None else total + term
    return total

  def slot(self, name: str, index: int) -> jax.Array:
    """slots[name][index] (a Python int)."""
    return self.slots[name][index]


# Either view of the history; layer code is written against this interface.
HistoryView = StackedSlots | ListSlots
