"""Profiles of benchmark steps: a trace on disk and a top-ops summary.

`python -m l2a_jax.benchmark ... --profile_dir DIR` runs `--profile_steps`
more steps of every timed measurement under the framework's profiler, after
the timed steps (so the timings are not disturbed), and stores:

- the trace in `DIR/<measurement>/`: JAX writes TensorBoard's
  `plugins/profile/<run>/*.xplane.pb` (open with TensorBoard's profile
  plugin or xprof); PyTorch writes `trace.json` (chrome://tracing,
  Perfetto);
- in the result row, `profile.top_ops`: the operations that took the most
  self time per step, read back from the trace, so the JSON alone says
  where a step's time goes; for JAX also `profile.top_op_kinds`, the same
  summed over instructions of one kind ('loop_fusion.12' and
  'loop_fusion.40' are both 'loop_fusion').

What an "operation" is depends on the backend. On a GPU: JAX's HLO ops
(the device plane's 'XLA Ops' line; a fusion is one op) and PyTorch's
operators by self device time. On a CPU: the XLA CPU runtime's events
(fusions, dots, thread-pool waits) and PyTorch's operators by self CPU
time; CPU events of parallel threads overlap, so their sum can exceed the
step time.

Called inside the benchmark worker; imports torch only for torch profiles.
"""

from __future__ import annotations

import collections
import functools
import pathlib
import re
from typing import Any, Callable

TOP_OPS = 15
# XLA CPU runtime bookkeeping on the host plane (executor scheduling, waits
# for completion, thread-pool markers): not operations of the step.
_CPU_RUNTIME_EVENTS = ('ThunkExecutor', 'ThreadpoolListener', 'end: ')


def measurement_dir(root: str, label: str) -> str:
  """A folder under `root` named after the measurement (safe characters)."""
  return str(pathlib.Path(root) / re.sub(r'[^A-Za-z0-9_.=-]+', '_', label))


def _top(totals: dict[str, float], counts: dict[str, int], steps: int
         ) -> list[dict[str, Any]]:
  """The TOP_OPS largest totals as rows with per-step time and share."""
  grand = sum(totals.values()) or 1.0
  rows = []
  for name, total_ms in sorted(totals.items(), key=lambda kv: -kv[1]):
    rows.append({'name': name[:200],
                 'ms_per_step': total_ms / steps,
                 'calls_per_step': counts[name] / steps,
                 'share': total_ms / grand})
    if len(rows) == TOP_OPS:
      break
  return rows


def op_kind(name: str) -> str:
  """An HLO instruction name without its number: 'loop_fusion.12' ->
  'loop_fusion', so the many instructions of one kind add up."""
  return re.sub(r'\.\d+$', '', name)


def self_times(events) -> list[tuple[str, float]]:
  """(name, self time) of the events of one trace line.

  Events on a line nest (a runtime's `Execute` encloses the ops it runs);
  an event's self time is its duration minus that of the events directly
  inside it, so enclosing events do not count their children twice.

  Args:
    events: (name, start_ns, duration_ns) tuples, in any order.

  Returns:
    (name, self_ns) per event with a positive duration.
  """
  events = sorted((e for e in events if e[2] > 0),
                  key=lambda e: (e[1], -e[2]))
  self_ns = [duration for _, _, duration in events]
  stack = []  # Indices of the open (enclosing) events.
  for index, (_, start, duration) in enumerate(events):
    while stack and (events[stack[-1]][1] + events[stack[-1]][2]) <= start:
      stack.pop()
    if stack:
      self_ns[stack[-1]] -= duration
    stack.append(index)
  return [(name, max(t, 0.0)) for (name, _, _), t in zip(events, self_ns)]


def summarise_xplane(path: str | pathlib.Path, steps: int
                     ) -> dict[str, Any]:
  """Top operations of a JAX trace file (`*.xplane.pb`).

  Args:
    path: the trace `jax.profiler` wrote.
    steps: how many steps the trace holds (for per-step numbers).

  Returns:
    {'source': which plane and lines were read, 'top_ops': [...]}.
  """
  from jax import profiler  # pylint: disable=g-import-not-at-top
  data = profiler.ProfileData.from_file(str(path))
  planes = list(data.planes)
  devices = [p for p in planes if p.name.startswith('/device:')
             and any(True for line in p.lines for _ in line.events)]
  if devices:
    plane = devices[0]
    lines = [line for line in plane.lines if line.name == 'XLA Ops']
    if not lines:
      lines = [line for line in plane.lines
               if line.name not in ('XLA Modules', 'Steps')]
  else:
    plane = next((p for p in planes if p.name == '/host:CPU'), None)
    if plane is None:
      return {'error': 'no device or /host:CPU plane in the trace: '
                       f'{sorted(p.name for p in planes)}'}
    # The XLA CPU client's threads; the 'python' line is the host side.
    lines = [line for line in plane.lines if 'XLA' in line.name]
  totals = collections.defaultdict(float)
  counts = collections.Counter()
  for line in lines:
    for name, self_ns in self_times(
        (e.name, e.start_ns, e.duration_ns) for e in line.events):
      if name.startswith(_CPU_RUNTIME_EVENTS):
        continue
      totals[name] += self_ns / 1e6
      counts[name] += 1
  kinds = collections.defaultdict(float)
  kind_counts = collections.Counter()
  for name, total in totals.items():
    kind = op_kind(name)
    kinds[kind] += total
    kind_counts[kind] += counts[name]
  return {'source': f"{plane.name}: {', '.join(sorted({l.name for l in lines}))}",
          'top_ops': _top(totals, counts, steps),
          'top_op_kinds': _top(kinds, kind_counts, steps)}


def _failure_recorded(run_profile: Callable[..., dict[str, Any]]
                      ) -> Callable[..., dict[str, Any]]:
  """Makes a profiling function return {'error': ...} instead of raising.

  A profiler can be unavailable where the step itself runs fine (CUPTI
  refused in a sandbox, a missing plugin); the measurement's timings must
  survive that, so the failure is recorded in the row instead.
  """

  @functools.wraps(run_profile)
  def wrapped(*args, **kwargs):
    try:
      return run_profile(*args, **kwargs)
    except Exception as e:  # pylint: disable=broad-except
      return {'error': f'{type(e).__name__}: {e}'.splitlines()[0][:500]}

  return wrapped


@_failure_recorded
def profile_jax(step: Callable[[], Any], wait: Callable[[Any], None],
                out_dir: str, steps: int) -> dict[str, Any]:
  """Runs `steps` steps under `jax.profiler.trace` and summarises them."""
  import jax  # pylint: disable=g-import-not-at-top
  with jax.profiler.trace(out_dir):
    for _ in range(steps):
      wait(step())
  traces = sorted(pathlib.Path(out_dir).rglob('*.xplane.pb'),
                  key=lambda p: p.stat().st_mtime)
  if not traces:
    return {'dir': out_dir, 'steps': steps, 'error': 'no trace written'}
  return {'dir': out_dir, 'steps': steps, 'trace': str(traces[-1]),
          **summarise_xplane(traces[-1], steps)}


@_failure_recorded
def profile_torch(step: Callable[[], Any], wait: Callable[[Any], None],
                  out_dir: str, steps: int, cuda: bool) -> dict[str, Any]:
  """Runs `steps` steps under `torch.profiler` and summarises them."""
  from torch import profiler  # pylint: disable=g-import-not-at-top
  activities = [profiler.ProfilerActivity.CPU]
  if cuda:
    activities.append(profiler.ProfilerActivity.CUDA)
  with profiler.profile(activities=activities) as prof:
    for _ in range(steps):
      wait(step())
  pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)
  trace = str(pathlib.Path(out_dir) / 'trace.json')
  prof.export_chrome_trace(trace)
  key = 'self_device_time_total' if cuda else 'self_cpu_time_total'
  totals = collections.defaultdict(float)
  counts = collections.Counter()
  for event in prof.key_averages():
    micros = getattr(event, key, 0) or 0
    if micros > 0:
      totals[event.key] += micros / 1e3
      counts[event.key] += event.count
  return {'dir': out_dir, 'steps': steps, 'trace': trace,
          'source': f'torch.profiler key_averages, {key}',
          'top_ops': _top(totals, counts, steps)}


def format_top_ops(profile: dict[str, Any], count: int = 5) -> str:
  """A few lines naming the largest operations (JAX: kinds of HLO
  instruction), for the console."""
  if profile.get('error'):
    return f"    profile failed: {profile['error']}"
  rows = profile.get('top_op_kinds') or profile.get('top_ops') or []
  return '\n'.join(f"    {r['ms_per_step']:9.2f} ms/step {100 * r['share']:5.1f}%"
                   f"  {r['name'][:90]}" for r in rows[:count])
