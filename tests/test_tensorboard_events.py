"""TensorBoard event files: framing, checksums and protocol buffers.

The files written by `l2a_jax.tensorboard_events` are parsed back with an
independent reader: tensorboardX's compiled protocol-buffer classes (the
same messages TensorBoard reads) and its CRC-32C.
"""

import os
import pathlib
import struct
import subprocess
import sys

import numpy as np
from tensorboardX import crc32c
from tensorboardX.proto import event_pb2

from l2a_jax import metric_writers
from l2a_jax import tensorboard_events

_REPO = pathlib.Path(__file__).resolve().parent.parent


def _records(path):
  """The data of every TFRecord in a file, checksums verified."""
  def masked(data):
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

  data = path.read_bytes()
  records, offset = [], 0
  while offset < len(data):
    length_bytes = data[offset:offset + 8]
    (length,) = struct.unpack('<Q', length_bytes)
    (length_crc,) = struct.unpack('<I', data[offset + 8:offset + 12])
    assert length_crc == masked(length_bytes)
    payload = data[offset + 12:offset + 12 + length]
    (payload_crc,) = struct.unpack(
        '<I', data[offset + 12 + length:offset + 16 + length])
    assert payload_crc == masked(payload)
    records.append(payload)
    offset += 16 + length
  assert offset == len(data)
  return records


def test_crc32c_check_value():
  assert tensorboard_events.crc32c(b'123456789') == 0xE3069283
  assert tensorboard_events.crc32c(b'') == 0


def test_events_parse_as_tensorboard_reads_them(tmp_path):
  writer = tensorboard_events.EventWriter(tmp_path / 'logs')
  writer.add_scalars({'train_loss': 0.1, 'eval_mpjpe_mm': 52.25}, step=3)
  writer.add_scalars({'train_loss': -2.5e-8}, step=2**40)
  writer.add_text('hparams', 'model.depth: 16  \nmodel.dim: 256', 0)
  writer.close()
  writer.close()  # A second close does nothing.
  (path,) = (tmp_path / 'logs').iterdir()
  assert path.name.startswith('events.out.tfevents.')
  events = [event_pb2.Event.FromString(r) for r in _records(path)]
  assert len(events) == 4
  assert events[0].file_version == 'brain.Event:2'
  assert events[1].step == 3 and events[2].step == 2**40
  assert events[1].wall_time > 1.6e9
  values = {v.tag: v.simple_value for v in events[1].summary.value}
  assert values == {'train_loss': np.float32(0.1),
                    'eval_mpjpe_mm': np.float32(52.25)}
  assert events[2].summary.value[0].simple_value == np.float32(-2.5e-8)
  (text,) = events[3].summary.value
  assert text.tag == 'hparams'
  assert text.metadata.plugin_data.plugin_name == 'text'
  assert text.tensor.dtype == 7  # DT_STRING
  assert list(text.tensor.string_val) == [
      b'model.depth: 16  \nmodel.dim: 256']


def test_two_writers_never_share_a_file(tmp_path):
  first = tensorboard_events.EventWriter(tmp_path)
  second = tensorboard_events.EventWriter(tmp_path)
  assert first.path != second.path
  first.close()
  second.close()


def test_metric_writer_does_not_import_torch(tmp_path):
  # The JAX core never loads PyTorch, TensorBoard summaries included.
  script = (
      'import sys\n'
      'from l2a_jax import metric_writers\n'
      f'w = metric_writers.MetricWriter({str(tmp_path)!r})\n'
      "w.write_scalars(1, {'loss': 1.0})\n"
      "w.write_hparams({'model.depth': 2})\n"
      'w.close()\n'
      "assert 'torch' not in sys.modules, 'torch was imported'\n"
      "assert 'tensorboardX' not in sys.modules\n")
  result = subprocess.run([sys.executable, '-c', script], cwd=_REPO,
                          env=dict(os.environ, JAX_PLATFORMS='cpu'),
                          capture_output=True, text=True, timeout=120,
                          check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert len(list(tmp_path.glob('events.out.tfevents.*'))) == 1


def test_metric_writer_writes_scalars_and_hparams(tmp_path):
  writer = metric_writers.MetricWriter(tmp_path)
  writer.write_scalars(5, {'loss': np.float32(0.5), 'lr': 1e-3})
  writer.write_hparams({'optim.learning_rate': 5e-4})
  writer.close()
  (path,) = tmp_path.glob('events.out.tfevents.*')
  events = [event_pb2.Event.FromString(r) for r in _records(path)]
  assert events[1].step == 5
  assert {v.tag for v in events[1].summary.value} == {'loss', 'lr'}
  (text,) = events[2].summary.value[0].tensor.string_val
  assert b'optim.learning_rate: 0.0005' in text
  # Other processes only log.
  metric_writers.MetricWriter(tmp_path / 'other', just_logging=True).close()
  assert not (tmp_path / 'other').exists()
