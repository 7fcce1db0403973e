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
for _ in range(15):
  t = time.perf_counter(); jax.block_until_ready(grad(params, rest, x, y)); ts.append(time.perf_counter() - t)
ts.sort(); print('grad median ms', ts[7] * 1e3)
if '--noprof' in sys.argv: sys.exit()
prof = profiling.profile_jax(lambda: grad(params, rest, x, y), jax.block_until_ready, '/tmp/dec/prof', 5)
for r in prof['top_op_kinds'][:12]: print('%-45s %7.2f ms %6.1f calls %5.1f%%' % (r['name'], r['ms_per_step'], r['calls_per_step'], 100 * r['share']))
print()
for r in prof['top_ops'][:25]: print('%-45s %7.2f ms %6.1f calls %5.1f%%' % (r['name'], r['ms_per_step'], r['calls_per_step'], 100 * r['share']))
