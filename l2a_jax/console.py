"""Quiet terminal, complete log file: the logging of every entry point.

- `configure()`: a filter on absl's terminal handler. The terminal shows
  this package's messages and warnings, not third-party INFO (Orbax lists
  every file it writes, TFDS every preparation step) nor the known harmless
  warnings in `KNOWN_NOISE` (JAX probing for a TPU, Orbax opening a
  checkpoint read-only on purpose or saving one without metrics, TFDS custom
  configs). Records logged with `extra=FILE_ONLY` (the parameter table,
  hyper-parameters, per-step training scalars) skip the terminal too.
- `log_to_file(path)`: every message of this package and every warning,
  file-only records included, also goes to `path` (WORKDIR/log.txt).
- `printed_output_to_log()`: what a library prints (TFDS's 'Downloading and
  preparing dataset Unknown size') goes to the log file instead.

With `--verbosity=1` nothing is filtered anywhere.
"""

from __future__ import annotations

import contextlib
import io
import logging as std_logging
import os
import pathlib
import re
import traceback
from typing import Iterator

from absl import logging

# (path fragment of the emitting module, message pattern) of records that are
# expected and harmless; they go to the log file only.
KNOWN_NOISE = (
    # JAX probing for a TPU on a machine without one.
    (f'{os.sep}jax{os.sep}', r'Unable to initialize backend'),
    # Orbax: restore_params opens the checkpoints read-only on purpose (a
    # folder that really is read-only is still reported, `_is_noise`).
    (f'{os.sep}orbax{os.sep}',
     r'Given directory is read only|read_only=True, setting save_interval'),
    # Orbax: checkpoints between evaluations carry no metric (BestN keeps
    # them only among the latest N, as intended).
    (f'{os.sep}orbax{os.sep}', r'Requested `tracked_metric`'),
    # TFDS: our builders use custom configs and prepare on first use.
    (f'{os.sep}tensorflow_datasets{os.sep}',
     r'Using custom data configuration|has no dataset_info\.json'),
)


def verbose() -> bool:
  """Whether `--verbosity` >= 1 (show everything on the terminal)."""
  return logging.get_verbosity() >= logging.DEBUG


def _is_noise(record: std_logging.LogRecord) -> bool:
  if getattr(record, 'l2a_file_only', False):
    return True
  pathname = record.pathname or ''
  if record.levelno < std_logging.WARNING:
    # Third-party INFO: Orbax logs every file it writes, TFDS every step.
    return f'{os.sep}l2a_jax{os.sep}' not in pathname
  if (f'{os.sep}orbax{os.sep}' in pathname
      and record.levelno >= std_logging.ERROR):
    # A failed save or restore: the program reports it as one `error:` line
    # (checkpointing.CheckpointSaveError); Orbax's own error records and
    # thread tracebacks go to the log file only.
    return True
  if (record.name == 'asyncio' and record.levelno >= std_logging.ERROR
      and _is_checkpoint_io_error(_record_text(record))):
    # The same failed save or restore seen by asyncio: an Orbax task or a
    # TensorStore read/write future whose exception the program already
    # reported (the save as an `error:` line, the restore as an 'is
    # unusable' warning), logged again when the orphaned task is collected
    # ('Task exception was never retrieved' with its traceback). When the
    # failure is a TensorStore read awaited directly, the traceback has only
    # asyncio frames; the error text still carries its `tensorstore_spec`.
    return True
  message = record.getMessage()
  read_only = re.match(r'Given directory is read only=(.*)$', message)
  if read_only and not _writable(read_only.group(1)):
    return False
  return any(fragment in pathname and re.search(pattern, message)
             for fragment, pattern in KNOWN_NOISE)


def _is_checkpoint_io_error(text: str) -> bool:
  """Whether a record's text is an Orbax or TensorStore failure."""
  return (f'{os.sep}orbax{os.sep}' in text
          or f'{os.sep}tensorstore{os.sep}' in text
          or 'tensorstore_spec=' in text)


def _record_text(record: std_logging.LogRecord) -> str:
  """A record's message with its exception text, if any."""
  text = record.getMessage()
  if record.exc_info:
    text += ''.join(traceback.format_exception(*record.exc_info))
  return text


def _writable(path: str) -> bool:
  """Whether `path` (or its closest existing parent) is writable."""
  candidate = pathlib.Path(path)
  while not candidate.exists() and candidate != candidate.parent:
    candidate = candidate.parent
  return os.access(candidate, os.W_OK)


class _QuietTerminal(std_logging.Filter):
  """Drops known noise and file-only records unless --verbosity >= 1."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return verbose() or not _is_noise(record)


class _QuietFile(std_logging.Filter):
  """The log file: everything except third-party INFO (Orbax lists every
  file it writes) unless --verbosity >= 1."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if verbose() or record.levelno >= std_logging.WARNING:
      return True
    return (getattr(record, 'l2a_file_only', False) or
            f'{os.sep}l2a_jax{os.sep}' in (record.pathname or ''))


# `extra=FILE_ONLY` on a log call keeps the record out of the terminal (it
# still goes to the log file).
FILE_ONLY = {'l2a_file_only': True}


def configure() -> None:
  """Installs the quiet-terminal filter on absl's handler (idempotent)."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _QuietTerminal) for f in handler.filters):
    handler.addFilter(_QuietTerminal())


def log_to_file(path: str | os.PathLike[str]) -> std_logging.Handler:
  """Appends every log message (absl format) to `path` from now on.

  Returns:
    The handler (remove it from the root logger to stop).
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  handler = std_logging.FileHandler(path, encoding='utf-8')
  handler.setFormatter(logging.PythonFormatter())
  handler.addFilter(_QuietFile())
  std_logging.getLogger().addHandler(handler)
  return handler


@contextlib.contextmanager
def printed_output_to_log() -> Iterator[None]:
  """Sends what a library prints to stdout to the log (INFO, file only).

  TFDS prints 'Downloading and preparing dataset Unknown size ...' with
  `print`; with --verbosity=1 it is shown.
  """
  if verbose():
    yield
    return
  buffer = io.StringIO()
  try:
    with contextlib.redirect_stdout(buffer):
      yield
  finally:
    for line in buffer.getvalue().splitlines():
      if line.strip():
        logging.info('%s', line, extra=FILE_ONLY)
