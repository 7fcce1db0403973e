"""The Linear-layer matrix products of a model, timed one by one.

`python -m l2a_jax.benchmark --linear_products ...` times, instead of whole
steps, every distinct Linear-layer product shape of the model's forward
pass (`macs.linear_products`: `x [rows, in] @ kernel [in, out]`) in the
three forms a training step runs it:

- `forward`: `x @ kernel` -> [rows, out];
- `input_grad`: `dy @ kernel^T` -> [rows, in] (the backward pass to the
  layer's input; the kernel [in, out] contracted over its last axis);
- `weight_grad`: `x^T @ dy` -> [in, out] (the kernel's gradient; the
  contraction runs over the rows, the operands' major axis).

Each product is timed on its own in each framework (inputs standard normal,
float32 accumulation): one timed call runs the product `PRODUCTS_PER_CALL`
times back to back (JAX: inside one compiled loop; PyTorch: a Python loop of
`mm` calls), and a form's time is the median over `--steps` calls after
`--warmup`, divided by `PRODUCTS_PER_CALL`, so that JAX's per-call
dispatch (tens of microseconds, absent inside a compiled step) does not
count. A training-step gap between frameworks can be split into "the matrix
products are slower" and "everything else". `step_ms` of a row is the sum
over the model's products of count x (forward + input_grad + weight_grad):
the matrix-product time one training step would spend if every product ran
alone at the measured speed.

The per-framework measurement is `jax_side.measure_linear_products` /
`torch_side.measure_linear_products`; this module holds what both share.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable, Sequence

# The three products of one Linear layer in a training step.
FORMS = ('forward', 'input_grad', 'weight_grad')
# Products per timed call (see the module docstring).
PRODUCTS_PER_CALL = 10


# form -> (contracted axis of the left operand, of the right operand), as
# in `lax.dot_general`; the operands are stored as `operand_shapes` says.
CONTRACTED_AXES = {
    'forward': (1, 0),  # x [rows, in] @ kernel [in, out]
    'input_grad': (1, 1),  # dy [rows, out] @ kernel [in, out]^T
    'weight_grad': (0, 0),  # x [rows, in]^T @ dy [rows, out]
}


def operand_shapes(rows: int, in_features: int, out_features: int
                   ) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
  """form -> (left operand shape, right operand shape) as stored.

  The tensors a training step holds: activations [rows, features] and the
  kernel [in, out]; `CONTRACTED_AXES` says which axes each form contracts.
  """
  return {
      'forward': ((rows, in_features), (in_features, out_features)),
      'input_grad': ((rows, out_features), (in_features, out_features)),
      'weight_grad': ((rows, in_features), (rows, out_features)),
  }


def measure(products: Sequence[dict[str, Any]],
            time_form: Callable[[str, tuple[int, int], tuple[int, int]],
                                list[float]]) -> dict[str, Any]:
  """Times every form of every product with a framework's `time_form`.

  Args:
    products: the spec's products (`macs.LinearProduct` as dicts).
    time_form: `time_form(form, left_shape, right_shape)` -> ms of each
      timed call, one call running the form `PRODUCTS_PER_CALL` times on
      fresh operands of `operand_shapes`.

  Returns:
    products (each with `<form>_ms`, the median per product) and step_ms
    (`step_total_ms` of them).
  """
  measured = []
  for entry in products:
    row = dict(entry)
    shapes = operand_shapes(entry['rows'], entry['in_features'],
                            entry['out_features'])
    for form in FORMS:
      call_ms = time_form(form, *shapes[form])
      row[f'{form}_ms'] = statistics.median(call_ms) / PRODUCTS_PER_CALL
    measured.append(row)
  return {'products': measured, 'step_ms': step_total_ms(measured)}


def step_total_ms(products: Sequence[dict[str, Any]]) -> float:
  """sum of count x (forward + input_grad + weight_grad) medians, ms."""
  return sum(p['count'] * sum(p[f'{form}_ms'] for form in FORMS)
             for p in products)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
  """One line per (model, dtype, product shape): each framework's three
  medians, then the per-step totals."""
  frameworks = sorted({r['framework'] for r in rows},
                      key=lambda f: (f != 'jax', f))
  by_key = {}
  for row in rows:
    by_key.setdefault((row['model_label'], row['dtype']), {})[
        row['framework']] = row
  header = ['model', 'dtype', 'rows x in x out', 'count'] + [
      f'{f} {form} ms' for f in frameworks for form in FORMS]
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '---|' * len(header)]
  for (label, dtype), per_framework in by_key.items():
    failed = [f'{f}: {r["error"][:60]}' for f, r in per_framework.items()
              if r.get('error')]
    if failed:
      lines.append(f'| {label} | {dtype} | {"; ".join(failed)} |')
      continue
    first = per_framework[frameworks[0]]
    for index, product in enumerate(first['products']):
      cells = [label, dtype,
               f"{product['rows']} x {product['in_features']} x "
               f"{product['out_features']}", str(product['count'])]
      for framework in frameworks:
        other = per_framework[framework]['products'][index]
        cells += [f"{other[f'{form}_ms']:.3f}" for form in FORMS]
      lines.append('| ' + ' | '.join(cells) + ' |')
    totals = ', '.join(f"{f} {per_framework[f]['step_ms']:.1f} ms"
                       for f in frameworks)
    lines.append(f'| {label} | {dtype} | per training step | | {totals} |')
  return '\n'.join(lines)
