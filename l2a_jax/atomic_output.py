"""Atomic writes of local output files: a hidden sibling, then a rename.

Every CLI that writes a local file (predictions, converted checkpoints,
benchmark results, BVH imports, cost reports) writes through
`atomic_output`, so an interrupted or failed write never leaves a
half-written file under the final name and never replaces a good one.
Files in a training workdir, which may live on remote storage (gs://...),
go through `replace_file`: the same write-a-sibling-then-rename with
`etils.epath`, which has no exclusive-create mode.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
from typing import IO, Iterator

from etils import epath


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str],
                  mode: str = 'wb') -> Iterator[IO]:
  """Yields a file to write; on success it becomes `path`, else vanishes.

  The temporary file is a hidden sibling of `path` (same file system, so the
  rename is atomic), created exclusively with the default permissions.

  Args:
    path: the output file; its directory must exist.
    mode: 'wb' (binary) or 'w' (text, UTF-8).

  Yields:
    The open temporary file.
  """
  if mode not in ('w', 'wb'):
    raise ValueError(f"mode: expected 'w' | 'wb', got {mode!r}")
  path = pathlib.Path(path)
  temporary = path.with_name(
      f'.{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp')
  try:
    with open(temporary, mode.replace('w', 'x'),
              encoding='utf-8' if mode == 'w' else None) as f:
      yield f
    os.replace(temporary, path)
  except BaseException:
    temporary.unlink(missing_ok=True)
    raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[pathlib.Path]:
  """Yields a temporary path for a library that writes by file name.

  The same contract as `atomic_output` for writers that need a path with
  the final suffix (imageio picks its format by the extension): the
  temporary file `.NAME.<pid>.<random>.tmp.SUFFIX` becomes `path` on
  success and is removed on failure.

  Args:
    path: the output file; its directory must exist.

  Yields:
    The temporary path (not yet created).
  """
  path = pathlib.Path(path)
  temporary = path.with_name(
      f'.{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}')
  try:
    yield temporary
    os.replace(temporary, path)
  except BaseException:
    temporary.unlink(missing_ok=True)
    raise


def replace_file(path: str | os.PathLike[str] | epath.Path,
                 data: str | bytes) -> epath.Path:
  """Writes `data` to `path` (local or a URL such as gs://bucket/run/x)
  through the sibling `NAME.tmp` and a rename, so readers see the old file
  or the new one, never a part; a failed write removes the sibling.

  Args:
    path: the output file; its directory must exist.
    data: text (UTF-8) or bytes.

  Returns:
    `path` as an `epath.Path`.
  """
  path = epath.Path(path)
  temporary = path.with_name(f'{path.name}.tmp')
  try:
    if isinstance(data, bytes):
      temporary.write_bytes(data)
    else:
      temporary.write_text(data)
    temporary.replace(path)
  except BaseException:
    try:
      if temporary.exists():
        temporary.unlink()
    except OSError:
      pass  # The write's own error is the one to report.
    raise
  return path
