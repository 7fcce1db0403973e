"""Readers of the published pose files, with validation and a safe unpickler.

Formats (details in docs/data.md and data_and_metrics.md):

- MotionBERT `h36m_sh_conf_cam_source_final.pkl`: a pickled dict
  {'train', 'test'} -> per-frame arrays.
- VideoPose3D `data_3d_h36m.npz` (`positions_3d`: subject -> action ->
  [N, 32, 3] world metres) and `data_2d_h36m_cpn_ft_h36m_dbb.npz`
  (`positions_2d`: subject -> action -> 4 x [N, 17, 2] pixels).
- P-STMO `data_train_3dhp.npz` / `data_test_3dhp.npz` (`data`).

All three hold Python objects (dicts) that only `pickle` can read. They are
read only when the caller opts in (`allow_pickle=True`, the `--allow_pickle`
flag of `python -m l2a_jax.data.prepare`), and even then through
`RestrictedUnpickler`, which refuses every global except NumPy's array and
scalar reconstruction, so a crafted file cannot run code.
"""

import io
import pathlib
import pickle
import zipfile

import numpy as np


class DataError(ValueError):
  """Invalid input data; the message names the file, key and problem."""


class PickleNotAllowedError(DataError):
  """A file needs pickle but the caller did not opt in."""


# The globals a pickle of NumPy arrays, dicts, lists and strings needs.
_ALLOWED_GLOBALS = {
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', 'scalar'),
    ('numpy.core.numeric', '_frombuffer'),
    ('numpy._core.numeric', '_frombuffer'),
    ('collections', 'OrderedDict'),
    ('_codecs', 'encode'),
}


class RestrictedUnpickler(pickle.Unpickler):
  """An unpickler that only rebuilds NumPy arrays and plain containers."""

  def find_class(self, module, name):
    if (module, name) in _ALLOWED_GLOBALS or (
        module in ('numpy.dtypes',) and name.endswith('DType')):
      return super().find_class(module, name)
    raise pickle.UnpicklingError(
        f'refusing to load global {module}.{name} (only NumPy arrays and '
        'plain containers are allowed)')


def _require_pickle_opt_in(path, allow_pickle):
  if not allow_pickle:
    raise PickleNotAllowedError(
        f'{path}: this file format stores Python objects and is read with '
        'pickle; pass --allow_pickle (allow_pickle=True) if you trust it')


def load_pickle(path, *, allow_pickle: bool):
  """Loads a pickle of NumPy arrays and containers (opt-in, restricted).

  Raises:
    PickleNotAllowedError: without `allow_pickle`.
    DataError: unreadable file or a forbidden global.
  """
  _require_pickle_opt_in(path, allow_pickle)
  try:
    with open(path, 'rb') as f:
      return RestrictedUnpickler(f).load()
  except FileNotFoundError:
    raise DataError(f'{path}: file not found') from None
  except (pickle.UnpicklingError, EOFError, AttributeError, ImportError,
          TypeError, ValueError) as error:
    raise DataError(f'{path}: cannot unpickle ({error})') from None


def load_npz_object(path, key: str, *, allow_pickle: bool):
  """Reads one object array of an npz file (opt-in, restricted unpickler).

  `np.savez` stores a dict as a 0-d object array whose .npy body is a
  pickle; this reads the header with NumPy and the body with
  `RestrictedUnpickler` instead of `np.load(allow_pickle=True)`.

  Returns:
    The stored object (a 0-d array is unwrapped with `.item()`).

  Raises:
    PickleNotAllowedError: without `allow_pickle`.
    DataError: missing file or key, or an unreadable body.
  """
  _require_pickle_opt_in(path, allow_pickle)
  try:
    archive = zipfile.ZipFile(path)
  except FileNotFoundError:
    raise DataError(f'{path}: file not found') from None
  except zipfile.BadZipFile:
    raise DataError(f'{path}: not an npz (zip) file') from None
  with archive:
    member = f'{key}.npy'
    if member not in archive.namelist():
      keys = [n[:-4] for n in archive.namelist() if n.endswith('.npy')]
      raise DataError(f'{path}: missing key {key!r} (has {keys})')
    data = archive.read(member)
  stream = io.BytesIO(data)
  try:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
      _, _, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
      _, _, dtype = np.lib.format.read_array_header_2_0(stream)
    if not dtype.hasobject:
      stream.seek(0)
      array = np.lib.format.read_array(stream, allow_pickle=False)
    else:
      array = RestrictedUnpickler(stream).load()
  except (ValueError, pickle.UnpicklingError, EOFError, AttributeError,
          ImportError, TypeError) as error:
    raise DataError(f'{path}: key {key!r}: cannot read ({error})') from None
  if isinstance(array, np.ndarray) and array.shape == ():
    return array.item()
  return array


def check_array(array, shape, where: str, *, dtype_kind='f') -> np.ndarray:
  """Validates an array's shape (None = any size) and finiteness.

  Args:
    array: the value to check (converted with np.asarray).
    shape: expected shape, e.g. (None, 17, 2); `None` matches any size.
    where: 'file: key' for messages.
    dtype_kind: 'f' for numbers that must be finite, '' to skip checks.

  Returns:
    The array (float32 for numeric checks).

  Raises:
    DataError: naming `where`, the expected and the actual shape, or the
      first NaN.
  """
  array = np.asarray(array)
  pattern = '(' + ', '.join('N' if s is None else str(s) for s in shape) + ')'
  if array.ndim != len(shape) or any(
      s is not None and s != a for s, a in zip(shape, array.shape)):
    raise DataError(f'{where}: expected shape {pattern}, got '
                    f'{tuple(array.shape)}')
  if dtype_kind == 'f':
    try:
      array = array.astype(np.float32)
    except (TypeError, ValueError):
      raise DataError(f'{where}: expected numbers, got dtype '
                      f'{array.dtype}') from None
    if not np.all(np.isfinite(array)):
      bad = np.argwhere(~np.isfinite(array))[0]
      raise DataError(f'{where}: NaN or infinite value at index '
                      f'{tuple(int(i) for i in bad)}')
  return array


def require_key(mapping, key, where: str):
  """mapping[key] or a DataError naming the missing key."""
  if not isinstance(mapping, dict):
    raise DataError(f'{where}: expected a dict, got {type(mapping).__name__}')
  if key not in mapping:
    raise DataError(f'{where}: missing key {key!r} (has '
                    f'{sorted(map(str, mapping))})')
  return mapping[key]


def manual_file(directory, name: str) -> pathlib.Path:
  """`directory/name`, checked to exist (`directory` is --manual_dir)."""
  if directory is None:
    raise DataError(f'this dataset needs --manual_dir (the folder with '
                    f'{name})')
  path = pathlib.Path(directory) / name
  if not path.is_file():
    raise DataError(f'{path}: file not found (expected in --manual_dir)')
  return path
