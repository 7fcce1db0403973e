"""Copies in the compiled TCPFormer gradient's entry computation, per remat.

python saved_stack_copies.py: the gradient of the trainer's loss for
TCPFormer at the CPU table's config (depth 4 / dim 64 / T = 27 / batch 4,
float32; compiled by ../cpu_20261205_rows/weight_gradient_hlo.py's
`compiled_gradient_hlo`) with model.remat 'none' and 'block'; counts in the
optimised HLO's ENTRY computation the `copy` instructions, those whose
operand is a broadcast (zero-filled buffers the scan then fills), and
their bytes.
"""
import pathlib
import re
import sys

import jax

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / 'cpu_20261205_rows'))
import weight_gradient_hlo  # pylint: disable=g-import-not-at-top,wrong-import-position

_BYTES = {'f32': 4, 'bf16': 2, 's32': 4, 'u32': 4, 'pred': 1}


def shape_bytes(text: str) -> int:
  """Bytes of an HLO array type such as f32[4,27,17,64]{3,2,1,0}."""
  dtype, dims = re.match(r'(\w+)\[([\d,]*)\]', text).groups()
  count = 1
  for d in filter(None, dims.split(',')):
    count *= int(d)
  return count * _BYTES[dtype]


def entry_copies(remat: str) -> dict[str, float]:
  hlo = weight_gradient_hlo.compiled_gradient_hlo(
      'configs/tcpformer_h36m.py:frames=27', remat=remat)
  entry = hlo[hlo.index('\nENTRY '):]
  entry = entry[:entry.index('\n}')]
  copies = re.findall(r'= (\S+) copy\((%[^)\s]+)\)', entry)
  from_broadcast = [(t, o) for t, o in copies if 'broadcast' in o]
  return {'copies': len(copies),
          'copy_MiB': sum(shape_bytes(t) for t, _ in copies) / 2**20,
          'copies_of_broadcasts': len(from_broadcast),
          'broadcast_copy_MiB': sum(shape_bytes(t)
                                    for t, _ in from_broadcast) / 2**20}


if __name__ == '__main__':
  print(f'jax {jax.__version__}, backend {jax.default_backend()}')
  for name in ('none', 'block'):
    print(name, {k: round(v, 1) for k, v in entry_copies(name).items()})
