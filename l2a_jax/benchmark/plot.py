r"""Plots of `l2a_jax.benchmark` results (matplotlib, PNG).

  python -m l2a_jax.benchmark.plot --json docs/benchmarks/cpu.json \
      --output docs/benchmarks/cpu.png

Panels: throughput (samples/s at the median step time, error bars from the
step-time quartiles) per model, mode and dtype with one bar per framework; memory per measurement (the device peak where the device reports
one; on CPU the proxies, labelled: XLA temporary bytes for JAX, autograd
saved-activation bytes for eager PyTorch); and, when the results hold a
depth sweep, training memory against depth per layer-stack variant.
"""

from __future__ import annotations

import collections
import json
import sys
from typing import Any, Sequence

from absl import flags
import matplotlib

from l2a_jax import cli

matplotlib.use('Agg')  # Files only; no display needed.
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

_COLOURS = {'jax': '#4285f4', 'torch': '#ee4c2c', 'torch_compile': '#f5a623'}
_MIB = 2.0**20


def memory_of(row: dict[str, Any]) -> tuple[float | None, str]:
  """(bytes, what they are) for the memory panel of one result row."""
  if row.get('peak_memory_bytes') is not None:
    return row['peak_memory_bytes'], 'device peak'
  memory = row.get('memory') or {}
  # Without a device peak (CPU), the activations kept for the backward pass
  # are the pair that compares across frameworks (JAX's traced residuals,
  # torch's autograd saved tensors); XLA's temp also holds gradients and
  # workspaces, and is the fallback (inference, older JSON).
  if memory.get('saved_residual_bytes') is not None:
    return memory['saved_residual_bytes'], 'kept for backward'
  if memory.get('xla_temp_bytes') is not None:
    return memory['xla_temp_bytes'], 'XLA temp (proxy)'
  if memory.get('autograd_saved_bytes') is not None:
    return memory['autograd_saved_bytes'], 'autograd saved (proxy)'
  return None, ''


def _grouped_bars(ax, groups: dict[str, dict[str, Any]],
                  ylabel: str) -> None:
  """One cluster of bars per group, one bar per framework.

  A value is a number or (value, low, high), drawn with an error bar.
  """
  frameworks = [f for f in _COLOURS
                if any(f in values for values in groups.values())]
  width = 0.8 / max(len(frameworks), 1)
  for i, framework in enumerate(frameworks):
    xs, ys, spans = [], [], []
    for g, values in enumerate(groups.values()):
      if framework in values:
        value = values[framework]
        value, low, high = (value if isinstance(value, tuple)
                            else (value, value, value))
        xs.append(g + (i - (len(frameworks) - 1) / 2) * width)
        ys.append(value)
        spans.append((value - low, high - value))
    errors = (list(zip(*spans)) if any(any(span) for span in spans)
              else None)
    ax.bar(xs, ys, width, label=framework, color=_COLOURS[framework],
           yerr=errors, capsize=2, error_kw={'elinewidth': 0.8})
  ax.set_xticks(range(len(groups)))
  ax.set_xticklabels(list(groups), fontsize=8)
  ax.set_ylabel(ylabel, fontsize=8)
  ax.legend(fontsize=7)
  ax.grid(axis='y', alpha=0.3)


def plot(documents: Sequence[dict[str, Any]], out_path: str) -> None:
  """Draws the results of one or more benchmark JSON documents.

  One row of panels per model (throughput, memory) and, when there is a
  depth sweep, one more panel per swept model.

  Args:
    documents: parsed `--json` outputs of `l2a_jax.benchmark`.
    out_path: PNG file to write.
  """
  rows = [r for d in documents for r in d.get('results', [])
          if not r.get('error')]
  depth_rows = [r for d in documents for r in d.get('memory_vs_depth', [])
                if not r.get('error')]
  models = list(dict.fromkeys(r['model_label'] for r in rows))
  swept = list(dict.fromkeys(r['model_label'] for r in depth_rows))
  panels = [('speed', m) for m in models] + [('memory', m) for m in models]
  panels += [('depth', m) for m in swept]
  if not panels:
    raise ValueError('nothing to plot: no successful results')
  columns = 2 if models else min(len(swept), 2)
  layout_rows = len(models) + (len(swept) + columns - 1) // columns
  fig = plt.figure(figsize=(6.5 * columns, 4.2 * layout_rows))
  device = ', '.join(sorted({d['device']['name'] for d in documents}))

  for index, model in enumerate(models):
    model_rows = [r for r in rows if r['model_label'] == model]
    speed = collections.OrderedDict()
    memory = collections.OrderedDict()
    kinds = collections.OrderedDict()
    for row in model_rows:
      group = f"{row['mode']}\n{row['dtype']}"
      # Error bar: samples/s at the first and third quartile of step time.
      batch = row['batch']
      speed.setdefault(group, {})[row['framework']] = (
          row['samples_per_s'],
          batch / (row.get('step_ms_q3', row['step_ms_median']) / 1e3),
          batch / (row.get('step_ms_q1', row['step_ms_median']) / 1e3))
      value, what = memory_of(row)
      if value is not None:
        memory.setdefault(group, {})[row['framework']] = value / _MIB
        kinds.setdefault(row['framework'], set()).add(what)
    ax = fig.add_subplot(layout_rows, columns, 2 * index + 1)
    _grouped_bars(ax, speed, 'samples / s, median (log scale); bars: '
                  'quartiles')
    # Training and inference differ by an order of magnitude or more.
    ax.set_yscale('log')
    ax.set_title(f"{model}: throughput, batch {model_rows[0]['batch']}",
                 fontsize=9)
    ax = fig.add_subplot(layout_rows, columns, 2 * index + 2)
    if memory:
      _grouped_bars(ax, memory, 'MiB (lower is better)')
    what = '; '.join(f"{f}: {', '.join(sorted(k))}" for f, k in kinds.items())
    ax.set_title(f'{model}: memory per step\n({what})', fontsize=8)

  for index, model in enumerate(swept):
    ax = fig.add_subplot(layout_rows, columns,
                         2 * len(models) + index + 1)
    series = collections.defaultdict(list)
    for row in depth_rows:
      if row['model_label'] != model:
        continue
      if row['framework'] == 'jax':
        value, what = row.get('xla_temp_bytes'), 'XLA temp'
      elif row.get('cuda_step_peak_bytes') is not None:
        value, what = row['cuda_step_peak_bytes'], 'CUDA step peak'
      else:
        value, what = row.get('autograd_saved_bytes'), 'autograd saved'
      if value is not None:
        name = (row['framework'] if row['variant'] == row['framework']
                else f"{row['framework']} {row['variant']}")
        series[f'{name} ({what})'].append(
            (row['depth'], value / _MIB))
    for key, points in sorted(series.items()):
      points.sort()
      ax.plot([p[0] for p in points], [p[1] for p in points], marker='o',
              label=key)
    ax.set_xlabel('depth (layers)', fontsize=8)
    ax.set_ylabel('MiB', fontsize=8)
    batch = next(r['batch'] for r in depth_rows if r['model_label'] == model)
    ax.set_title(f'{model}: training memory vs depth, batch {batch}',
                 fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)

  fig.suptitle(f'l2a_jax benchmark: {device}', fontsize=10)
  fig.tight_layout()
  fig.savefig(out_path, dpi=110)
  plt.close(fig)


FLAGS = flags.FLAGS


def _define_flags() -> None:
  # Defined only when run as a program: `benchmark/cli.py` imports this module
  # and has a `--json` flag of its own.
  flags.DEFINE_multi_string('json', [], 'Benchmark result file(s).')
  flags.DEFINE_string('output', None, 'PNG file to write.')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    cli.fail('benchmark.plot', f'unexpected arguments {argv[1:]}')
  if not FLAGS.json:
    cli.fail('benchmark.plot', '--json is required')
  documents = []
  for path in FLAGS.json:
    try:
      with open(path, encoding='utf-8') as f:
        documents.append(json.load(f))
    except (OSError, json.JSONDecodeError) as e:
      sys.exit(f'benchmark.plot: error: {path}: {e}')
  try:
    plot(documents, FLAGS.output)
  except ValueError as e:
    sys.exit(f'benchmark.plot: error: {e}')


if __name__ == '__main__':
  _define_flags()
  cli.run(main, program='benchmark.plot', doc=__doc__,
          required=('output',), config=False)
