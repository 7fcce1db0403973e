"""Progress of a loop: a tqdm bar on a terminal, a log line otherwise.

`Progress(total, unit=..., description=...)` counts `update(n)` calls and
shows `done / total`, the rate and a postfix (the loss). On a terminal it
is a tqdm bar on stderr; when stderr is not a terminal (a log file, a batch
job) it logs one line every `interval_seconds` (default
`set_default_interval`, 30 s; `--progress_seconds` of `l2a_jax.main`) and
one at `close()`, so a job's output shows it is alive without a line per
step. Disabled instances (other processes than 0) show nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from absl import logging
import tqdm

_DEFAULT_INTERVAL = [30.0]


def set_default_interval(seconds: float) -> None:
  """Seconds between progress lines on a non-terminal (new instances)."""
  _DEFAULT_INTERVAL[0] = max(float(seconds), 0.0)


class Progress:
  """`done / total` of a loop, on a terminal or as periodic log lines."""

  def __init__(self, total: int, *, unit: str, description: str,
               initial: int = 0, enabled: bool = True,
               interval_seconds: float | None = None,
               terminal: bool | None = None):
    """Starts showing progress.

    Args:
      total: the count at the end (steps, batches).
      unit: what is counted ('step', 'batch').
      description: shown first ('train', 'eval').
      initial: the count already done (a resumed run).
      enabled: False shows nothing (non-zero processes).
      interval_seconds: between lines on a non-terminal (default:
        `set_default_interval`).
      terminal: force the terminal (tqdm) or line mode; None: whether
        stderr is a terminal.
    """
    self.total, self.done = int(total), int(initial)
    self.unit, self.description = unit, description
    self.enabled = enabled
    self.interval = (_DEFAULT_INTERVAL[0] if interval_seconds is None
                     else float(interval_seconds))
    self.postfix: dict[str, Any] = {}
    self._start = self._last_line = time.monotonic()
    self._start_count = self._logged = self.done
    self.units = unit + ('es' if unit.endswith(('s', 'ch', 'sh', 'x')) else 's')
    if terminal is None:
      terminal = sys.stderr.isatty()
    self._bar = None
    if enabled and terminal:
      self._bar = tqdm.tqdm(total=self.total, initial=self.done, unit=unit,
                            desc=description, dynamic_ncols=True,
                            leave=False)

  def update(self, n: int = 1) -> None:
    """Counts `n` more units."""
    self.done += n
    if self._bar is not None:
      self._bar.update(n)
    elif self.enabled:
      now = time.monotonic()
      if now - self._last_line >= self.interval:
        self._last_line = now
        self._log_line()

  def set_postfix(self, **values: Any) -> None:
    """Values shown after the count, e.g. `loss='0.123'`."""
    self.postfix.update(values)
    if self._bar is not None:
      self._bar.set_postfix(self.postfix)

  def line(self) -> str:
    """The text of a progress line, e.g. 'train 40/100 steps (2 steps/s)'."""
    elapsed = max(time.monotonic() - self._start, 1e-9)
    rate = (self.done - self._start_count) / elapsed
    text = (f'{self.description} {self.done}/{self.total} {self.units} '
            f'({rate:.3g} {self.units}/s)')
    if self.postfix:
      text += ' ' + ', '.join(f'{k}={v}' for k, v in self.postfix.items())
    return text

  def _log_line(self) -> None:
    self._logged = self.done
    logging.info('%s', self.line())

  def close(self) -> None:
    """Ends the bar (or logs the final line); idempotent."""
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    elif self.done != self._logged:
      self._log_line()
    self.enabled = False
