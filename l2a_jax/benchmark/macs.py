"""Multiply-accumulate (MAC) counts of a JAX function, read from its jaxpr.

Two numbers, matching the two conventions of the lineage (tcpformer_spec.md
section 7, l2a_design.md section 6):

- `linear`: MACs of every `dot_general` with one operand derived from a model
  parameter (a Linear layer, x @ W). TCPFormer, MotionAGFormer and MotionBERT
  publish this count (TCPFormer T = 243: 108.6 G per clip).
- `full`: MACs of every `dot_general` (and convolution): the linear layers
  plus the activation-by-activation products (q k^T, attention-weighted values,
  TCPFormer PAM's two products through the proxy, the HPA depth attention). Elementwise
  work (softmax, norms, GELU, residual adds, layer-scale products) is not
  counted, so `full` is slightly below a torchprofile "full" count, which adds
  elementwise multiplications (TCPFormer T = 243: 140.1 G here vs 141.37 G).

A `dot_general` with operands `lhs` and `rhs` costs prod(lhs.shape) x the
product of rhs's free (neither contracted nor batch) dimensions.

The count is static: nothing is executed, so a full-size model is counted in
a second from abstract shapes (`jax.ShapeDtypeStruct`). Loops are scaled by
their trip count (`scan` length); for `cond` the most expensive branch counts;
a `while` loop has no static trip count and counts once (`unknown_loops`).
Parameters are followed through dtype casts, reshapes, slices (e.g. one
layer's slice of stacked scan parameters) and nested jaxprs, so a Linear
inside a scanned layer stack is still recognised.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
from jax.extend import core as jex_core

# Primitives whose output is the operand rearranged, cast or sliced: a
# parameter stays a parameter through them (a kernel cast to bfloat16, one
# layer's kernel sliced out of a stacked [depth, in, out] array).
_PARAM_PRESERVING = frozenset({
    'convert_element_type', 'reshape', 'transpose', 'squeeze',
    'expand_dims', 'broadcast_in_dim', 'copy', 'copy_p', 'slice',
    'dynamic_slice', 'gather', 'reduce_precision', 'sharding_constraint',
    'optimization_barrier', 'device_put', 'stop_gradient', 'real', 'imag',
})


@dataclasses.dataclass
class MacCount:
  """MAC totals of one function call.

  Attributes:
    linear: MACs of products with a parameter operand (Linear layers).
    full: MACs of all matrix products (linear + activation x activation).
    unknown_loops: number of `while` loops counted once for want of a trip
      count (0 for the models of this package).
  """
  linear: int = 0
  full: int = 0
  unknown_loops: int = 0

  def add(self, other: 'MacCount', times: int = 1) -> None:
    self.linear += other.linear * times
    self.full += other.full * times
    self.unknown_loops += other.unknown_loops


def dot_general_macs(lhs_shape: Sequence[int], rhs_shape: Sequence[int],
                     dimension_numbers: Any) -> int:
  """MACs of one `lax.dot_general`.

  Args:
    lhs_shape: shape of the left operand.
    rhs_shape: shape of the right operand.
    dimension_numbers: `((lhs_contract, rhs_contract), (lhs_batch,
      rhs_batch))` as in the jaxpr.

  Returns:
    prod(lhs_shape) * prod(rhs free dims): every output element of the
    product takes one MAC per contracted index.
  """
  (_, rhs_contract), (_, rhs_batch) = dimension_numbers
  bound = set(rhs_contract) | set(rhs_batch)
  rhs_free = [d for i, d in enumerate(rhs_shape) if i not in bound]
  return math.prod(lhs_shape) * math.prod(rhs_free)


def _conv_macs(eqn) -> int:
  """MACs of `conv_general_dilated`: output elements x kernel fan-in."""
  out_shape = eqn.outvars[0].aval.shape
  rhs = eqn.invars[1].aval.shape
  spec = eqn.params['dimension_numbers']
  out_feature_dim = spec.rhs_spec[0]
  fan_in = math.prod(rhs) // rhs[out_feature_dim]
  return math.prod(out_shape) * fan_in


def _is_var(v) -> bool:
  return isinstance(v, jex_core.Var)


def _inner_jaxpr(j):
  """The `Jaxpr` of a `Jaxpr` or `ClosedJaxpr` parameter."""
  return j.jaxpr if isinstance(j, jex_core.ClosedJaxpr) else j


# record(lhs_shape, rhs_shape, dimension_numbers, times): called for every
# `dot_general` with a parameter operand; `times` = executions per call.
ProductRecorder = Callable[[tuple[int, ...], tuple[int, ...], Any, int], None]


def _count_jaxpr(jaxpr, param_mask: Sequence[bool],
                 record: ProductRecorder | None = None, times: int = 1):
  """Counts the MACs of one evaluation of `jaxpr`.

  Args:
    jaxpr: a `Jaxpr`.
    param_mask: per input variable, whether it is (derived from) a parameter.
    record: called for every product with a parameter operand (see
      `ProductRecorder`), or None.
    times: how often one evaluation runs per call of the outer function
      (enclosing scan lengths; passed to `record`).

  Returns:
    (MacCount, per output variable whether it is parameter-derived).
  """
  derived = {v for v, is_param in zip(jaxpr.invars, param_mask) if is_param}
  total = MacCount()

  def is_derived(v):
    return _is_var(v) and v in derived

  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    in_mask = [is_derived(v) for v in eqn.invars]
    if name == 'dot_general':
      macs = dot_general_macs(eqn.invars[0].aval.shape,
                              eqn.invars[1].aval.shape,
                              eqn.params['dimension_numbers'])
      total.full += macs
      if any(in_mask):
        total.linear += macs
        if record is not None:
          record(tuple(eqn.invars[0].aval.shape),
                 tuple(eqn.invars[1].aval.shape),
                 eqn.params['dimension_numbers'], times)
      continue
    if name == 'conv_general_dilated':
      macs = _conv_macs(eqn)
      total.full += macs
      if in_mask[1]:
        total.linear += macs
      continue
    if name in _PARAM_PRESERVING:
      if in_mask and in_mask[0]:
        derived.update(eqn.outvars)
      continue
    if name == 'scan':
      body = _inner_jaxpr(eqn.params['jaxpr'])
      length = int(eqn.params['length'])
      count, _ = _count_jaxpr(body, in_mask, record, times * length)
      total.add(count, times=length)
      continue
    if name == 'cond':
      # Operand 0 is the branch index; the costliest branch is counted.
      best = MacCount()
      for branch in eqn.params['branches']:
        count, _ = _count_jaxpr(_inner_jaxpr(branch), in_mask[1:])
        if count.full > best.full:
          best, best_branch = count, branch
      if record is not None and best.full:
        _count_jaxpr(_inner_jaxpr(best_branch), in_mask[1:], record, times)
      total.add(best)
      continue
    if name == 'while':
      n_cond = eqn.params['cond_nconsts']
      body = _inner_jaxpr(eqn.params['body_jaxpr'])
      count, _ = _count_jaxpr(body, in_mask[n_cond:], record, times)
      total.add(count)
      total.unknown_loops += 1
      continue
    # Call-like primitives (jit/pjit, checkpoint/remat, custom_jvp_call,
    # custom_vjp_call, closed_call, shard_map): the nested jaxpr takes the
    # equation's operands in order. Only the primal function is counted (a
    # custom rule's forward/backward is not part of the forward pass).
    nested = [_inner_jaxpr(p) for key, p in eqn.params.items()
              if key in ('jaxpr', 'call_jaxpr', 'fun_jaxpr')
              and isinstance(p, (jex_core.Jaxpr, jex_core.ClosedJaxpr))]
    for sub in nested[:1]:
      mask = (in_mask if len(sub.invars) == len(in_mask)
              else [False] * len(sub.invars))
      count, out_mask = _count_jaxpr(sub, mask, record, times)
      total.add(count)
      if len(out_mask) == len(eqn.outvars):
        derived.update(v for v, m in zip(eqn.outvars, out_mask) if m)
  out_mask = [is_derived(v) for v in jaxpr.outvars]
  return total, out_mask


def count_macs(fn: Callable[..., Any], params: Any, *args: Any,
               record: ProductRecorder | None = None) -> MacCount:
  """Counts the MACs of `fn(params, *args)` without running it.

  Args:
    fn: a JAX-traceable function.
    params: pytree of the model parameters (arrays or `jax.ShapeDtypeStruct`);
      products with one of these (or a cast / slice of one) count as linear.
    *args: the other arguments (arrays or `jax.ShapeDtypeStruct`), e.g. the
      input `[batch, frames, joints, dim_in]`.
    record: called for every product with a parameter operand (see
      `ProductRecorder`), or None.

  Returns:
    The MACs of one call. Divide by the batch size for a per-sample count.
  """
  closed = jax.make_jaxpr(fn)(params, *args)
  n_params = len(jax.tree.leaves(params))
  n_other = len(closed.jaxpr.invars) - n_params
  mask = [True] * n_params + [False] * n_other
  count, _ = _count_jaxpr(closed.jaxpr, mask, record)
  return count


def count_model_macs(model_config, batch: int = 1,
                     record: ProductRecorder | None = None) -> MacCount:
  """Forward-pass MACs of the model a `config.model` section describes.

  The model is built abstractly (`models.abstract_model`, no weights
  allocated), so full-size configs cost only the tracing time.

  Args:
    model_config: the `config.model` section (`l2a_jax.models.create_model`).
    batch: clips per call; the count is for the whole batch.
    record: called for every product with a parameter operand (see
      `ProductRecorder`), or None.

  Returns:
    MACs of one deterministic forward pass on `[batch, num_frames,
    num_joints, dim_in]`.
  """
  # Imported here: the counting helpers above are also used without a
  # model.
  from flax import nnx  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from l2a_jax import models  # pylint: disable=g-import-not-at-top

  graphdef, params, rest = nnx.split(
      models.abstract_model(model_config), nnx.Param, ...)
  x = jax.ShapeDtypeStruct(
      (batch, model_config.num_frames, model_config.num_joints,
       model_config.dim_in), jnp.float32)

  def forward(p, r, inputs):
    return nnx.merge(graphdef, p, r)(inputs)

  return count_macs(forward, params, rest, x, record=record)


@dataclasses.dataclass(frozen=True)
class LinearProduct:
  """One Linear-layer product shape of a model's forward pass.

  Attributes:
    rows: rows of the input, i.e. its size without the last axis (tokens).
    in_features: the contracted axis (the kernel's first axis).
    out_features: the kernel's second axis.
    count: how many such products one forward pass runs.
  """
  rows: int
  in_features: int
  out_features: int
  count: int


def linear_products(model_config, batch: int = 1
                    ) -> tuple[list[LinearProduct], int]:
  """The Linear-layer products `x [..., in] @ kernel [in, out]` of a model.

  Read from the same traced forward pass as `count_model_macs`.

  Args:
    model_config: the `config.model` section.
    batch: clips per forward pass.

  Returns:
    (products, other_macs): the distinct (rows, in, out) shapes with their
    number of executions per forward pass, largest MACs first; and the MACs
    of the parameter products of any other form (e.g. L2A's HPA logits,
    a product with a learned query vector), which are not listed.
  """
  counts: dict[tuple[int, int, int], int] = {}
  other = [0]

  def record(lhs, rhs, dims, times):
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dims
    if (len(rhs) == 2 and tuple(rhs_contract) == (0,)
        and tuple(lhs_contract) == (len(lhs) - 1,)
        and not lhs_batch and not rhs_batch):
      key = (math.prod(lhs[:-1]), rhs[0], rhs[1])
      counts[key] = counts.get(key, 0) + times
    else:
      other[0] += dot_general_macs(lhs, rhs, dims) * times

  count_model_macs(model_config, batch, record=record)
  products = [LinearProduct(rows, k, n, c)
              for (rows, k, n), c in counts.items()]
  products.sort(key=lambda p: -p.rows * p.in_features * p.out_features
                * p.count)
  return products, other[0]
