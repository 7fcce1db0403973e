"""Loading one config file from another.

`ml_collections.config_flags` imports a config file by path, so the files in
`configs/` are not a package and cannot `import` each other. A variant config
calls `load_sibling(__file__, 'l2a_h36m')` to get the module of the base
config that lies next to it, wherever the repository is checked out.
"""

import importlib.util
import pathlib
import types


def load_sibling(this_file: str, name: str) -> types.ModuleType:
  """Imports `<dir of this_file>/<name>.py` and returns the module."""
  path = pathlib.Path(this_file).resolve().with_name(f'{name}.py')
  if not path.is_file():
    raise FileNotFoundError(f'config file {path} not found')
  spec = importlib.util.spec_from_file_location(f'l2a_configs.{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
