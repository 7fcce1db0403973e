"""Copies in the compiled TCPFormer gradient's entry computation, per remat.

python saved_stack_copies.py: builds TCPFormer at the CPU table's config
(depth 4 / dim 64 / T = 27 / batch 4, float32), compiles the gradient of the
trainer's loss (`benchmark.jax_side.training_loss`) with model.remat 'none'
and 'block', and counts in the optimised HLO's ENTRY computation the `copy`
instructions, those whose operand is a broadcast (zero-filled buffers the
scan then fills), and their bytes.
"""
import re

from flax import nnx
import jax
import jax.numpy as jnp

from l2a_jax import models
from l2a_jax.benchmark import cli
from l2a_jax.benchmark import common
from l2a_jax.benchmark import jax_side

_BYTES = {'f32': 4, 'bf16': 2, 's32': 4, 'u32': 4, 'pred': 1}


def shape_bytes(text: str) -> int:
  """Bytes of an HLO array type such as f32[4,27,17,64]{3,2,1,0}."""
  dtype, dims = re.match(r'(\w+)\[([\d,]*)\]', text).groups()
  count = 1
  for d in filter(None, dims.split(',')):
    count *= int(d)
  return count * _BYTES[dtype]


def entry_copies(remat: str) -> dict[str, float]:
  config = cli.load_config('configs/tcpformer_h36m.py:frames=27')
  config.model.update(depth=4, dim=64, remat=remat)
  spec = {'model': config.model.to_dict(),
          'loss': {n: float(config.loss[n]) for n in cli.LOSS_TERMS},
          'optim': config.optim.to_dict(), 'batch': 4, 'seed': 0,
          'dtype': 'float32'}
  inputs, targets = map(jnp.asarray, common.synthetic_batch(spec))
  model = models.create_model(jax_side.model_config_for(spec), nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  grad = jax.jit(jax.grad(lambda p, r, a, b: jax_side.training_loss(
      graphdef, p, r, a, b, spec['loss'])))
  hlo = grad.lower(params, rest, inputs, targets).compile().as_text()
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
