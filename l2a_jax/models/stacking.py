"""Stacked (scanned) <-> per-layer parameter trees, and PyTorch key names.

Model-agnostic helpers over *flat* parameter dicts: `{'a/b/kernel': array}`,
the path elements of a nested parameter tree joined by '/'. The scanned
models keep every layer of a stack on a leading axis of one leaf
(`layers/mixer/qkv/kernel` `[depth, in, out]`); PyTorch checkpoints have one
key per layer (`layers.3.mixer.qkv.weight` `(out, in)`). The conversion is
three independent steps (docs/architecture.md, "Parameter naming"):

  flat = flatten_params(nnx.state(model, nnx.Param))
  per_layer = unstack_layers(flat, type(model).STACKED_MODULES, depth)
  torch_like = to_torch_names(per_layer)

and back with `from_torch_names`, `stack_layers`, `unflatten_params` (whose
nested dict `nnx.replace_by_pure_dict` accepts). Values keep their array type
(NumPy in, NumPy out; jax.Array in, jax.Array out); nothing here imports
torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import re
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

Array = Any  # np.ndarray | jax.Array (or jax.ShapeDtypeStruct for shapes).
FlatParams = dict[str, Array]

SEPARATOR = '/'


def flatten_params(tree: Any) -> FlatParams:
  """Flattens a nested parameter tree into `{'a/b/leaf': array}`.

  Args:
    tree: a nested mapping (e.g. `nnx.to_pure_dict(state)`) or an
      `nnx.State`. Integer keys (the indices of `nnx.List` children) become
      path elements '0', '1', ...

  Returns:
    A dict from '/'-joined paths to the leaves, in sorted key order.
  """
  if isinstance(tree, nnx.State):
    tree = nnx.to_pure_dict(tree)
  flat = {}

  def visit(node, prefix):
    if isinstance(node, Mapping):
      for key, child in node.items():
        name = str(key)
        if not name or SEPARATOR in name:
          raise ValueError(f'parameter path {prefix!r}: key {name!r} is empty '
                           f'or contains {SEPARATOR!r}')
        visit(child, f'{prefix}{SEPARATOR}{name}' if prefix else name)
    else:
      flat[prefix] = node

  visit(tree, '')
  return dict(sorted(flat.items()))


def unflatten_params(flat: Mapping[str, Array]) -> dict[str, Any]:
  """Inverse of `flatten_params`: `{'a/0/b': x}` -> `{'a': {0: {'b': x}}}`.

  Path elements made of digits become int keys, as `nnx.List` children are
  in `nnx.to_pure_dict(state)`; `nnx.replace_by_pure_dict(state, tree)`
  loads the result into a state.
  """
  tree: dict[Any, Any] = {}
  for path, value in flat.items():
    parts = [int(p) if p.isdigit() else p for p in path.split(SEPARATOR)]
    node = tree
    for part in parts[:-1]:
      child = node.setdefault(part, {})
      if not isinstance(child, dict):
        raise ValueError(f'parameter {path!r}: {part!r} is both a leaf and a '
                         'module')
      node = child
    if parts[-1] in node:
      raise ValueError(f'parameter {path!r}: duplicate or both a leaf and a '
                       'module')
    node[parts[-1]] = value
  return tree


def _stacked_prefix(key: str, stacked_prefixes: Iterable[str]) -> str | None:
  """The stacked module a flat key lives under, or None."""
  for prefix in stacked_prefixes:
    if key.startswith(prefix + SEPARATOR):
      return prefix
  return None


def _check_prefixes(stacked_prefixes: Iterable[str]) -> tuple[str, ...]:
  prefixes = tuple(stacked_prefixes)
  if isinstance(stacked_prefixes, str):
    raise TypeError('stacked_prefixes: expected a sequence of module names, '
                    f'got the string {stacked_prefixes!r}')
  for prefix in prefixes:
    if not prefix or prefix.endswith(SEPARATOR):
      raise ValueError(f'stacked prefix {prefix!r} is empty or ends with '
                       f'{SEPARATOR!r}')
  return prefixes


def _shape(value: Array) -> tuple[int, ...]:
  """Shape of an array or a `jax.ShapeDtypeStruct`."""
  return tuple(value.shape) if hasattr(value, 'shape') else np.shape(value)


def _slice_leading(value: Array, index: int) -> Array:
  if isinstance(value, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(value.shape[1:], value.dtype)
  return value[index]


def unstack_layers(flat_params: Mapping[str, Array],
                   stacked_prefixes: Iterable[str],
                   depth: int) -> FlatParams:
  """Splits stacked layer leaves into one leaf per layer.

  `prefix/rest` with shape `[depth, ...]` becomes `prefix/{i}/rest` with
  shape `[...]` for i < depth; keys outside the stacked modules are copied.

  Args:
    flat_params: flat parameters (see `flatten_params`); arrays or
      `jax.ShapeDtypeStruct`s.
    stacked_prefixes: names of the stacked modules (top-level path prefixes,
      e.g. `TCPFormer.STACKED_MODULES`).
    depth: the size of the leading layer axis.

  Returns:
    A new flat dict with per-layer keys, sorted.

  Raises:
    ValueError: a stacked leaf whose leading axis is not `depth`.
  """
  prefixes = _check_prefixes(stacked_prefixes)
  out = {}
  for key, value in flat_params.items():
    prefix = _stacked_prefix(key, prefixes)
    if prefix is None:
      out[key] = value
      continue
    shape = _shape(value)
    if not shape or shape[0] != depth:
      raise ValueError(f'stacked parameter {key!r}: expected leading axis '
                       f'{depth}, got shape {shape}')
    rest = key[len(prefix) + 1:]
    for i in range(depth):
      out[f'{prefix}{SEPARATOR}{i}{SEPARATOR}{rest}'] = _slice_leading(value, i)
  return dict(sorted(out.items()))


def stack_layers(flat_params: Mapping[str, Array],
                 stacked_prefixes: Iterable[str],
                 depth: int) -> FlatParams:
  """Inverse of `unstack_layers`: `prefix/{i}/rest` -> `prefix/rest`.

  Args:
    flat_params: flat parameters with per-layer keys under the stacked
      modules.
    stacked_prefixes: names of the stacked modules.
    depth: number of layers; every layer 0..depth-1 must have the same keys
      and shapes.

  Returns:
    A new flat dict whose stacked leaves have a leading axis of size
    `depth`, sorted.

  Raises:
    ValueError: a missing or extra layer index, a non-integer layer element,
      a key present in some layers only, or mismatched shapes.
  """
  prefixes = _check_prefixes(stacked_prefixes)
  out = {}
  per_layer: dict[str, dict[int, Array]] = {}
  for key, value in flat_params.items():
    prefix = _stacked_prefix(key, prefixes)
    if prefix is None:
      out[key] = value
      continue
    index, sep, rest = key[len(prefix) + 1:].partition(SEPARATOR)
    if not sep or not index.isdigit():
      raise ValueError(f'parameter {key!r}: expected {prefix}/<layer index>/'
                       '<name> under a stacked module')
    layer = int(index)
    if layer >= depth:
      raise ValueError(f'parameter {key!r}: layer {layer} out of range for '
                       f'depth {depth}')
    per_layer.setdefault(f'{prefix}{SEPARATOR}{rest}', {})[layer] = value
  for key, layers_of_key in per_layer.items():
    missing = sorted(set(range(depth)) - set(layers_of_key))
    if missing:
      prefix = _stacked_prefix(key, prefixes)
      rest = key[len(prefix) + 1:]
      raise ValueError(f'parameter {prefix}/{missing[0]}/{rest}: missing '
                       f'(layers present: {len(layers_of_key)} of {depth})')
    values = [layers_of_key[i] for i in range(depth)]
    shapes = {_shape(v) for v in values}
    if len(shapes) != 1:
      raise ValueError(f'parameter {key!r}: layers have different shapes '
                       f'{sorted(shapes)}')
    if all(isinstance(v, jax.ShapeDtypeStruct) for v in values):
      out[key] = jax.ShapeDtypeStruct((depth,) + _shape(values[0]),
                                      values[0].dtype)
    elif any(isinstance(v, jax.Array) for v in values):
      out[key] = jnp.stack(values)
    else:
      out[key] = np.stack(values)
  return dict(sorted(out.items()))


def _transpose_last_two(value: Array) -> Array:
  if isinstance(value, jax.ShapeDtypeStruct):
    shape = value.shape
    return jax.ShapeDtypeStruct(shape[:-2] + (shape[-1], shape[-2]),
                                value.dtype)
  return value.swapaxes(-1, -2)


def to_torch_names(flat_jax: Mapping[str, Array]) -> FlatParams:
  """Maps JAX flat names and layouts onto PyTorch state_dict keys.

  The naming rule of docs/architecture.md: path separators become '.';
  a leaf `kernel` [in, out] becomes `weight` (out, in) (transposed; Linear);
  a leaf `scale` becomes `weight` (LayerNorm / RMSNorm); everything else
  (`bias`, plain parameters) keeps its name and value.

  Args:
    flat_jax: flat JAX parameters, per layer (run `unstack_layers` first).

  Returns:
    `{torch_key: array}` in sorted key order.

  Raises:
    ValueError: a kernel that is not 2-D, a JAX leaf already named `weight`
      (ambiguous in reverse), or two keys mapping onto the same torch key.
  """
  out = {}
  for key, value in flat_jax.items():
    *parents, leaf = key.split(SEPARATOR)
    if leaf == 'weight':
      raise ValueError(f'parameter {key!r}: a JAX leaf named "weight" is '
                       'ambiguous under the naming rule (use kernel or scale)')
    if leaf == 'kernel':
      if len(_shape(value)) != 2:
        raise ValueError(f'parameter {key!r}: expected a 2-D Linear kernel, '
                         f'got shape {_shape(value)} (unstack layers first)')
      leaf, value = 'weight', _transpose_last_two(value)
    elif leaf == 'scale':
      leaf = 'weight'
    torch_key = '.'.join(parents + [leaf])
    if torch_key in out:
      raise ValueError(f'parameter {key!r}: torch key {torch_key!r} produced '
                       'twice')
    out[torch_key] = value
  return dict(sorted(out.items()))


_TORCH_KEY = re.compile(r'^[^./]+(\.[^./]+)*$')


def from_torch_names(flat_torch: Mapping[str, Array]) -> FlatParams:
  """Inverse of `to_torch_names`.

  A torch `weight` is a Linear weight when 2-D (-> `kernel`, transposed to
  [in, out]) and a norm weight when 1-D (-> `scale`); no module of ours has a
  `weight` of another rank.

  Args:
    flat_torch: `{torch_key: array}` (NumPy arrays from `tensor.numpy()`),
      without the `module.` prefix of nn.DataParallel checkpoints.

  Returns:
    Flat JAX parameters (per layer; run `stack_layers` next), sorted.

  Raises:
    ValueError: a malformed key or a `weight` that is neither 1-D nor 2-D.
  """
  out = {}
  for key, value in flat_torch.items():
    if not _TORCH_KEY.match(key):
      raise ValueError(f'torch key {key!r}: expected dot-separated names '
                       'without "/" or empty parts')
    *parents, leaf = key.split('.')
    if leaf == 'weight':
      ndim = len(_shape(value))
      if ndim == 2:
        leaf, value = 'kernel', _transpose_last_two(value)
      elif ndim == 1:
        leaf = 'scale'
      else:
        raise ValueError(f'torch key {key!r}: expected a 1-D (norm) or 2-D '
                         f'(Linear) weight, got shape {_shape(value)}')
    out[SEPARATOR.join(parents + [leaf])] = value
  return dict(sorted(out.items()))
