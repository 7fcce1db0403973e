"""The run directory: checked before a run starts, used by one run at a time.

`prepare(workdir, mode)` checks a local workdir before anything is trained:
its parent chain holds no regular file, it can be created, `checkpoints` in
it is a directory if it exists, and files can be written in both (a probe
file, removed again). Every problem is one `WorkdirError` line naming the
path and the cause. URLs (gs://bucket/run) are left to the storage library.

`locked(workdir)` holds `WORKDIR/.l2a_jax.lock` for the run: one file with
the holder's host, pid, start time and command, locked with `flock` (the
kernel drops the lock when the process dies, however it dies). A second run
on the same workdir is refused with one line naming the holder. A lock file
whose lock is free but which still names a holder was left by a run that
did not end cleanly (SIGKILL, power loss): it is taken over with a warning.
In a multi-process run only process 0 takes the lock, for the whole job; the
others learn the outcome from it, so a refused job stops on every process.
The file is emptied, not deleted, at the end (deleting it would let a
later run lock a different file than a concurrent one).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from typing import Iterator

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from l2a_jax import checkpointing

LOCK_FILE = '.l2a_jax.lock'
_PROBE = '.l2a_jax_write_probe'


class WorkdirError(OSError):
  """The workdir cannot be used; the message is one line."""


class WorkdirBusyError(WorkdirError):
  """Another run holds the workdir."""


def _is_url(workdir: str) -> bool:
  return '://' in workdir


def _probe_writable(directory: str) -> None:
  """Writes and removes a small file; raises WorkdirError on failure."""
  probe = os.path.join(directory, f'{_PROBE}.{os.getpid()}')
  try:
    with open(probe, 'wb') as f:
      f.write(b'l2a_jax write probe\n')
      f.flush()
      os.fsync(f.fileno())
  except OSError as e:
    raise WorkdirError(
        f'{directory} is not writable ({e.strerror or e})') from e
  finally:
    with contextlib.suppress(OSError):
      os.unlink(probe)


def prepare(workdir: str, mode: str = 'train') -> str:
  """Checks (and for training creates) the workdir; returns it absolute.

  Args:
    workdir: the --workdir value (local path or URL).
    mode: 'train' (create it if missing) or 'eval' (it must exist).

  Returns:
    The absolute path (a URL unchanged).

  Raises:
    WorkdirError: a parent is a file, it cannot be created, `checkpoints` is
      not a directory, or it is not writable.
    FileNotFoundError: mode 'eval' and no such directory.
  """
  if _is_url(workdir):
    return workdir
  path = os.path.abspath(workdir)
  existing = path
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    what = 'is' if existing == path else f'has a parent {existing} that is'
    raise WorkdirError(f'--workdir {path} {what} a file, not a directory')
  if not os.path.isdir(path):
    if mode == 'eval':
      raise FileNotFoundError(
          f'--workdir {path}: no such directory (nothing to evaluate)')
    try:
      os.makedirs(path, exist_ok=True)
    except OSError as e:
      raise WorkdirError(
          f'--workdir {path}: cannot create it ({e.strerror or e})') from e
  checkpoints = os.path.join(path, checkpointing.CHECKPOINT_SUBDIR)
  if os.path.lexists(checkpoints) and not os.path.isdir(checkpoints):
    raise WorkdirError(
        f'{checkpoints} is a file, not a directory: no checkpoint can be '
        'written there (move it away)')
  _probe_writable(path)
  if os.path.isdir(checkpoints):
    _probe_writable(checkpoints)
  return path


def _holder(text: str) -> str:
  """'pid P on host H since T (command)' from a lock file's content."""
  try:
    info = json.loads(text)
    return (f"pid {info['pid']} on host {info['host']} since "
            f"{info['started']}")
  except (ValueError, KeyError, TypeError):
    return f'unknown holder ({text.strip()[:80]!r})'


def _read(fd: int) -> str:
  os.lseek(fd, 0, os.SEEK_SET)
  return os.read(fd, 4096).decode('utf-8', 'replace')


class _Lock:
  """A held workdir lock (process 0)."""

  def __init__(self, path: str, fd: int):
    self.path = path
    self._fd = fd

  def release(self) -> None:
    with contextlib.suppress(OSError):
      os.ftruncate(self._fd, 0)
    with contextlib.suppress(OSError):
      fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)


def acquire(workdir: str) -> _Lock | None:
  """Locks an existing local workdir for this process.

  Returns:
    The lock, or None when the file system does not support locking (a
    warning says the run goes on unlocked).

  Raises:
    WorkdirBusyError: another live process holds it.
    WorkdirError: the lock file cannot be opened or written.
  """
  path = os.path.join(workdir, LOCK_FILE)
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise WorkdirError(f'{path}: cannot open the workdir lock '
                       f'({e.strerror or e})') from e
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = _holder(_read(fd))
    os.close(fd)
    raise WorkdirBusyError(
        f'{workdir} is in use by another run ({holder}; lock file {path}): '
        'wait for it to end or use another --workdir') from None
  except OSError as e:
    os.close(fd)
    if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
      logging.warning('Cannot lock %s (%s): running without a workdir lock.',
                      path, e.strerror)
      return None
    raise WorkdirError(f'{path}: cannot lock ({e.strerror or e})') from e
  previous = _read(fd)
  if previous.strip():
    logging.warning('Took over the stale workdir lock %s of %s, which is no '
                    'longer running.', path, _holder(previous))
  info = {
      'host': socket.gethostname(),
      'pid': os.getpid(),
      'started': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'command': ' '.join(sys.argv)[:500],
  }
  try:
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + '\n').encode(), 0)
    os.fsync(fd)
  except OSError as e:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    raise WorkdirError(f'{path}: cannot write the workdir lock '
                       f'({e.strerror or e})') from e
  return _Lock(path, fd)


@contextlib.contextmanager
def locked(workdir: str) -> Iterator[None]:
  """Holds the workdir lock for the whole job (see the module docstring).

  Every process of a multi-process run must enter it (process 0 locks, the
  outcome is broadcast). URLs are not locked.

  Raises:
    WorkdirBusyError / WorkdirError: on every process when process 0 could
      not take the lock.
  """
  if _is_url(workdir):
    yield
    return
  lock, error = None, None
  if jax.process_index() == 0:
    try:
      lock = acquire(workdir)
    except WorkdirError as e:
      error = e
  if jax.process_count() > 1:
    ok = int(multihost_utils.broadcast_one_to_all(
        np.int32(error is None)))
    if not ok and error is None:
      error = WorkdirBusyError(
          f'{workdir}: process 0 could not lock it (see its log)')
  if error is not None:
    raise error
  try:
    yield
  finally:
    if lock is not None:
      lock.release()
