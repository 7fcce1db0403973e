"""l2a_jax.atomic_output: all or nothing, never a stray temporary file."""

import os
import re
import stat

import pytest

from l2a_jax import atomic_output as atomic_output_lib
from l2a_jax.atomic_output import atomic_output


def test_writes_text_and_binary_with_default_permissions(tmp_path):
  with atomic_output(tmp_path / 'a.json', 'w') as f:
    f.write('{"é": 1}\n')
  with atomic_output(tmp_path / 'b.bin') as f:
    f.write(b'\x00\x01')
  assert (tmp_path / 'a.json').read_text(encoding='utf-8') == '{"é": 1}\n'
  assert (tmp_path / 'b.bin').read_bytes() == b'\x00\x01'
  umask = os.umask(0)
  os.umask(umask)
  mode = stat.S_IMODE((tmp_path / 'a.json').stat().st_mode)
  assert mode == 0o666 & ~umask
  assert sorted(p.name for p in tmp_path.iterdir()) == ['a.json', 'b.bin']


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
  target = tmp_path / 'out.npz'
  target.write_bytes(b'good')
  with pytest.raises(RuntimeError, match='disk full'):
    with atomic_output(target) as f:
      f.write(b'half')
      raise RuntimeError('disk full')
  assert target.read_bytes() == b'good'
  assert [p.name for p in tmp_path.iterdir()] == ['out.npz']


def test_bad_mode_and_missing_directory(tmp_path):
  with pytest.raises(ValueError,
                     match=re.escape("mode: expected 'w' | 'wb', got 'a'")):
    with atomic_output(tmp_path / 'x', 'a'):
      pass
  with pytest.raises(FileNotFoundError):
    with atomic_output(tmp_path / 'missing' / 'x'):
      pass


def test_replace_file_writes_text_and_bytes_and_replaces(tmp_path):
  path = tmp_path / 'metrics.json'
  written = atomic_output_lib.replace_file(path, '{"step": 1}\n')
  assert str(written) == str(path)
  assert path.read_text() == '{"step": 1}\n'
  atomic_output_lib.replace_file(str(path), b'\x00\x01')
  assert path.read_bytes() == b'\x00\x01'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['metrics.json']


def test_replace_file_failure_keeps_nothing_half_written(tmp_path):
  # The final name is a non-empty folder: the rename fails after the
  # sibling was written; the sibling is removed and the folder kept.
  target = tmp_path / 'picture.png'
  target.mkdir()
  (target / 'keep').write_text('data')
  with pytest.raises(OSError):
    atomic_output_lib.replace_file(target, b'png bytes')
  assert sorted(p.name for p in tmp_path.iterdir()) == ['picture.png']
  assert (target / 'keep').read_text() == 'data'
