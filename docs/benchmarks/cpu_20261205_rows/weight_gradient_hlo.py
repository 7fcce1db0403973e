"""The 2-D dots (no batch dims) of the compiled loss gradient of CONFIG at
the CPU benchmark size (depth 4, dim 64, batch 4, float32): per dot its
shape, dimension numbers and the instructions producing its operands.

python weight_gradient_hlo.py configs/l2a_h36m.py:frames=27

`compiled_gradient_hlo` is also used by cpu_20261206_auto/saved_stack_copies.py.
"""
import re
import sys

from flax import nnx
import jax

from l2a_jax import models
from l2a_jax.benchmark import cli, jax_side


def compiled_gradient_hlo(config_spec: str, **model_changes) -> str:
  """Optimised HLO text of the jitted loss gradient of `config_spec` at the
  CPU benchmark size, `model_changes` applied to `config.model` last."""
  config = cli.load_config(config_spec)
  config.model.update(depth=4, dim=64, dtype='float32', **model_changes)
  graphdef, params, rest = nnx.split(models.abstract_model(config.model),
                                     nnx.Param, ...)
  clips = jax.ShapeDtypeStruct(
      (4, config.model.num_frames, config.model.num_joints, 3), 'float32')
  weights = {name: float(config.loss[name]) for name in cli.LOSS_TERMS}
  jax_side.set_matmul_precision('highest')
  grad = jax.jit(jax.grad(lambda p, r, a, b: jax_side.training_loss(
      graphdef, p, r, a, b, weights)))
  return grad.lower(params, rest, clips, clips).compile().as_text()


if __name__ == '__main__':
  hlo = compiled_gradient_hlo(sys.argv[1])
  for line in hlo.splitlines():
    if not re.match(r'\s*%dot[.0-9]* = ', line) or 'lhs_batch_dims' in line:
      continue
    shape = re.search(r'= (f32\[[0-9,]*\])', line).group(1)
    dims = re.search(r'lhs_contracting_dims=\{[0-9,]*\}, '
                     r'rhs_contracting_dims=\{[0-9,]*\}', line).group(0)
    operands = re.search(r'dot\((%[^,]*), (%[^)]*)\)', line).groups()
    producers = [re.sub(r'\.[0-9]+$', '', name[1:]) for name in operands]
    print(shape, dims, 'operands from', producers)
