import sys, time, json, collections
from l2a_jax.benchmark import cli as bcli, common, profiling
cfgspec = sys.argv[1]
config = bcli.load_config(cfgspec)
config.model.depth = 4; config.model.dim = 64
for kv in [a for a in sys.argv[2:] if "=" in a]:
  k, v = kv.split('=')
  node = config
  *path, last = k.split('.')
  for p in path: node = node[p]
  node[last] = type(node[last])(v) if not isinstance(node[last], bool) else v == 'True'
spec = {'model': config.model.to_dict(), 'loss': {n: float(config.loss[n]) for n in bcli.LOSS_TERMS},
        'optim': config.optim.to_dict(), 'batch': 4, 'seed': 0, 'dtype': 'float32'}
inputs_np, targets_np = common.synthetic_batch(spec)
import jax, jax.numpy as jnp
from flax import nnx
from l2a_jax import models
from l2a_jax.benchmark import jax_side
jax_side.set_matmul_precision('highest')
model = models.create_model(jax_side.model_config_for(spec), nnx.Rngs(0))
graphdef, params, rest = nnx.split(model, nnx.Param, ...)
params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
x = jnp.asarray(inputs_np); y = jnp.asarray(targets_np)
w = spec['loss']
grad = jax.jit(jax.grad(lambda p, r, a, b: jax_side.training_loss(graphdef, p, r, a, b, w)))
for _ in range(3): jax.block_until_ready(grad(params, rest, x, y))
ts = []
txt = grad.lower(params, rest, x, y).compile().as_text()
import re
dots = [l for l in txt.splitlines() if re.match(r'\s*%dot[.0-9]* = ', l) and 'lhs_batch_dims' not in l]
shape = lambda l: re.search(r'= (f32\[[0-9,]*\])', l).group(1)
for l in dots:
  ops = re.search(r'dot\((%[^,]*), (%[^)]*)\)', l).groups()
  kinds = [re.sub(r'\.[0-9]+$', '', o[1:]) for o in ops]
  print(shape(l), re.search(r'lhs_contracting_dims=\{[0-9,]*\}, rhs_contracting_dims=\{[0-9,]*\}', l).group(0), 'operands from', kinds)

