"""TensorBoard event files written directly: no TensorFlow, no PyTorch.

An event file is a sequence of TFRecord records, each one serialized
`tensorflow.Event` protocol buffer:

  record = uint64 length | uint32 masked_crc32c(length) | data
           | uint32 masked_crc32c(data)          (little-endian)

The first event carries `file_version = "brain.Event:2"`; every later one a
`Summary` of tagged values. Only the two kinds of summary this project
writes are encoded (by hand, field numbers from TensorFlow's event.proto and
summary.proto): scalars (`simple_value`) and text (a string tensor for the
"text" plugin). tensorboardX would do the same, but importing it imports
PyTorch whenever PyTorch is installed (seconds per training process, and the
JAX core must not load it).
"""

import itertools
import os
import socket
import struct
import time
from typing import Mapping

from etils import epath

_CRC32C_POLYNOMIAL = 0x82F63B78  # Castagnoli, bit-reversed.


def _crc32c_table() -> tuple[int, ...]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (_CRC32C_POLYNOMIAL if crc & 1 else 0)
    table.append(crc)
  return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli) of `data`; crc32c(b'123456789') == 0xE3069283."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """The TFRecord checksum: CRC-32C rotated right by 15 plus a constant."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
  """One TFRecord record framing `data`."""
  length = struct.pack('<Q', len(data))
  return (length + struct.pack('<I', masked_crc32c(length)) + data
          + struct.pack('<I', masked_crc32c(data)))


# Protocol-buffer wire format: a key is (field number << 3) | wire type.
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
  if value < 0:
    value += 1 << 64  # int64 fields: two's complement in 10 bytes.
  out = bytearray()
  while True:
    low = value & 0x7F
    value >>= 7
    if value:
      out.append(low | 0x80)
    else:
      out.append(low)
      return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
  return _varint((field << 3) | wire_type)


def _bytes_field(field: int, payload: bytes) -> bytes:
  return _key(field, _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _event(step: int, summary_values: bytes = b'',
           file_version: str | None = None) -> bytes:
  """A serialized Event: wall_time (1), step (2), file_version (3) or
  summary (5) holding the already serialized `Summary.value` entries."""
  event = _key(1, _FIXED64) + struct.pack('<d', time.time())
  event += _key(2, _VARINT) + _varint(int(step))
  if file_version is not None:
    event += _bytes_field(3, file_version.encode())
  else:
    event += _bytes_field(5, summary_values)
  return event


def scalar_value(tag: str, value: float) -> bytes:
  """A serialized `Summary.value` entry: tag (1), simple_value (2, float)."""
  entry = _bytes_field(1, tag.encode())
  entry += _key(2, _FIXED32) + struct.pack('<f', float(value))
  return _bytes_field(1, entry)


def text_value(tag: str, text: str) -> bytes:
  """A serialized `Summary.value` entry for TensorBoard's text plugin.

  tag (1), metadata (9) = SummaryMetadata{plugin_data (1) =
  PluginData{plugin_name (1) = "text"}}, tensor (8) = TensorProto{dtype (1)
  = DT_STRING (7), tensor_shape (2) = scalar, string_val (8) = the text}.
  """
  metadata = _bytes_field(1, _bytes_field(1, b'text'))
  tensor = (_key(1, _VARINT) + _varint(7) + _bytes_field(2, b'')
            + _bytes_field(8, text.encode()))
  entry = (_bytes_field(1, tag.encode()) + _bytes_field(9, metadata)
           + _bytes_field(8, tensor))
  return _bytes_field(1, entry)


_WRITER_NUMBERS = itertools.count()


class EventWriter:
  """Writes events to `LOGDIR/events.out.tfevents.<time>.<host>.<pid>.<n>`."""

  def __init__(self, logdir: str | os.PathLike[str]):
    """Creates `logdir` (a local or cloud path, etils epath) if needed and
    opens a new event file in it."""
    directory = epath.Path(logdir)
    directory.mkdir(parents=True, exist_ok=True)
    # Unique per writer: two writers of one process in the same second, or
    # two runs sharing a logdir, must not write into one file.
    name = (f'events.out.tfevents.{int(time.time())}.{socket.gethostname()}'
            f'.{os.getpid()}.{next(_WRITER_NUMBERS)}')
    self.path = directory / name
    # A new file per writer (its name has the start time), written as one
    # stream: cloud file systems cannot append.
    self._file = self.path.open('wb')  # pylint: disable=consider-using-with
    self._file.write(tfrecord(_event(0, file_version='brain.Event:2')))

  def add_scalars(self, values: Mapping[str, float], step: int) -> None:
    """Writes the scalars of one step (tag -> value) as one event."""
    summary = b''.join(scalar_value(tag, v) for tag, v in values.items())
    self._file.write(tfrecord(_event(step, summary)))

  def add_text(self, tag: str, text: str, step: int) -> None:
    """Writes one text summary (Markdown) at `step`."""
    self._file.write(tfrecord(_event(step, text_value(tag, text))))

  def flush(self) -> None:
    """Pushes the written events to the operating system."""
    self._file.flush()

  def close(self) -> None:
    """Flushes and closes the file; later calls do nothing."""
    if not self._file.closed:
      self._file.close()
