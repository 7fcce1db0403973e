"""Scalar summaries to the log and to TensorBoard, without TensorFlow.

`clu.metric_writers` (the usual choice) imports TensorFlow when the package
is imported, even for its logging writer, and tensorboardX imports PyTorch
when it is installed. This module gives the same small interface on top of
`tensorboard_events` (event files written directly): every process logs,
only process 0 writes event files.
"""

import os
from typing import Any, Mapping

from absl import logging
import numpy as np

from l2a_jax import console
from l2a_jax import tensorboard_events


class MetricWriter:
  """Writes scalars to the log (and TensorBoard event files on process 0)."""

  def __init__(self, logdir: str | os.PathLike[str] | None,
               just_logging: bool = False):
    """Creates the writer.

    Args:
      logdir: TensorBoard directory; None writes no event files.
      just_logging: only log (non-zero processes).
    """
    self._tensorboard = None
    if logdir is not None and not just_logging:
      self._tensorboard = tensorboard_events.EventWriter(logdir)

  def write_scalars(self, step: int, scalars: Mapping[str, Any], *,
                    terminal: bool = True) -> None:
    """Logs `name = value` pairs of one step (values are scalars).

    Args:
      step: the training step.
      scalars: name -> scalar.
      terminal: False logs them to the log file only (`console.FILE_ONLY`).
    """
    values = {k: float(np.asarray(v)) for k, v in scalars.items()}
    logging.info(
        '[%d] %s', step,
        ', '.join(f'{k}={v:.6g}' for k, v in sorted(values.items())),
        extra=None if terminal else console.FILE_ONLY,
    )
    if self._tensorboard is not None:
      self._tensorboard.add_scalars(values, step)

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """Logs the flattened config once (log file only; text summary in
    TensorBoard)."""
    lines = [f'{k}: {v}' for k, v in sorted(hparams.items())]
    logging.info('Hyperparameters:\n  %s', '\n  '.join(lines),
                 extra=console.FILE_ONLY)
    if self._tensorboard is not None:
      self._tensorboard.add_text('hparams', '  \n'.join(lines), 0)

  def flush(self) -> None:
    if self._tensorboard is not None:
      self._tensorboard.flush()

  def close(self) -> None:
    if self._tensorboard is not None:
      self._tensorboard.close()
      self._tensorboard = None


def flatten_config(config: Mapping[str, Any], prefix: str = '') -> dict:
  """`{'model': {'depth': 16}}` -> `{'model.depth': 16}`."""
  flat = {}
  for key, value in config.items():
    name = f'{prefix}{key}'
    if isinstance(value, Mapping):
      flat.update(flatten_config(value, f'{name}.'))
    else:
      flat[name] = value
  return flat
