"""Command-line plumbing shared by the entry points.

`main`, `predict`, `convert_torch` and `data.throughput` take
`--config PATH[:ARG]`; `ml_collections` resolves PATH against the current
directory only, so `resolve_config_path` also looks in the repository root
(the commands then work from anywhere in a checkout). `quiet_library_logs`
keeps Orbax's per-file INFO lines out of the console.
"""

import logging as std_logging
import os
import pathlib

from absl import logging

_REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def _resolve(value: str) -> str:
  """`PATH[:ARG]` with a relative PATH made absolute if found in the repo."""
  path, sep, variant = value.partition(':')
  if not os.path.isabs(path) and not os.path.exists(path):
    candidate = _REPO_ROOT / path
    if candidate.exists():
      return f'{candidate}{sep}{variant}'
  return value


def resolve_config_path(argv: list[str]) -> list[str]:
  """argv with the --config path looked up in cwd, then the repo root.

  Handles `--config=PATH[:ARG]` and the two-token `--config PATH[:ARG]`.
  """
  resolved = list(argv)
  for i, arg in enumerate(resolved):
    for prefix in ('--config=', '-config='):
      if arg.startswith(prefix):
        resolved[i] = prefix + _resolve(arg[len(prefix):])
    if arg in ('--config', '-config') and i + 1 < len(resolved):
      resolved[i + 1] = _resolve(resolved[i + 1])
  return resolved


class _QuietLibraries(std_logging.Filter):
  """Drops INFO/DEBUG records of Orbax, which logs every file it writes."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return (record.levelno >= std_logging.WARNING
            or f'{os.sep}orbax{os.sep}' not in record.pathname)


def quiet_library_logs() -> None:
  """Installs the Orbax INFO filter on absl's handler (idempotent)."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
    handler.addFilter(_QuietLibraries())
