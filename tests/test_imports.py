"""Import rules of docs/architecture.md, read from the source (ast).

- no import cycle inside `l2a_jax`, counting imports inside functions too
  (a lazy import still ties two modules together);
- `l2a_jax.models` imports nothing of the package outside `l2a_jax.models`
  (no benchmark, tools, training or data code);
- nothing outside `l2a_jax.benchmark` imports it, and the JAX core never
  imports `l2a_jax.torch_reference` except `convert_torch` (lazily);
- the entry points are imported by no library module.
"""

import ast
import pathlib

_PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'l2a_jax'


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(_PACKAGE.parent).with_suffix('').parts
  if parts[-1] == '__init__':
    parts = parts[:-1]
  return '.'.join(parts)


def _modules() -> dict[str, pathlib.Path]:
  return {_module_name(p): p for p in _PACKAGE.rglob('*.py')}


def _imports(path: pathlib.Path, known: set[str]) -> set[str]:
  """The `l2a_jax` modules `path` imports (anywhere in the file)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      # `from a.b import c`: the module a.b.c if it is one, else a.b.
      names = [f'{node.module}.{alias.name}'
               if f'{node.module}.{alias.name}' in known else node.module
               for alias in node.names]
    else:
      continue
    found.update(n for n in names if n in known)
  return found


def import_graph() -> dict[str, set[str]]:
  modules = _modules()
  known = set(modules)
  return {name: _imports(path, known) - {name}
          for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on_stack, cycles = {}, {}, [], set(), []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for other in sorted(graph[node]):
      if other not in index:
        visit(other)
        low[node] = min(low[node], low[other])
      elif other in on_stack:
        low[node] = min(low[node], index[other])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        cycles.append(sorted(component))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return cycles


def test_the_scan_sees_the_package():
  graph = import_graph()
  assert {'l2a_jax.train', 'l2a_jax.models.l2a',
          'l2a_jax.benchmark.worker'} <= set(graph)
  assert 'l2a_jax.run_setup' in graph['l2a_jax.train']
  # Lazy (function-level) imports count.
  assert 'l2a_jax.benchmark.jax_side' in graph['l2a_jax.benchmark.worker']


def test_cycle_finder_reports_a_cycle():
  assert find_cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [
      ['a', 'b', 'c']]


def test_no_import_cycles():
  assert find_cycles(import_graph()) == []


def test_models_import_only_models():
  graph = import_graph()
  outside = {(name, other) for name, others in graph.items()
             if name.startswith('l2a_jax.models') for other in others
             if not other.startswith('l2a_jax.models')}
  assert not outside


def test_benchmark_is_imported_only_by_itself():
  graph = import_graph()
  users = {(name, other) for name, others in graph.items()
           if not name.startswith('l2a_jax.benchmark') for other in others
           if other.startswith('l2a_jax.benchmark')}
  assert not users


def test_entry_points_are_not_imported():
  graph = import_graph()

  def importers(module):
    return {name for name, others in graph.items() if module in others}

  for entry in ('l2a_jax.main', 'l2a_jax.predict', 'l2a_jax.data.prepare',
                'l2a_jax.data.throughput'):
    assert not importers(entry), entry
  assert importers('l2a_jax.convert_torch') <= {'l2a_jax.predict'}


def test_torch_reference_users():
  graph = import_graph()
  users = {name for name, others in graph.items()
           if not name.startswith('l2a_jax.torch_reference')
           and any(o.startswith('l2a_jax.torch_reference') for o in others)}
  assert users == {'l2a_jax.convert_torch', 'l2a_jax.benchmark.torch_side'}
