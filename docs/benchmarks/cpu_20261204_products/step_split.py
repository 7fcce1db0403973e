"""Split a training step's time: forward, forward+backward, full step (JAX, torch)."""
import sys, time, json, statistics
fw = sys.argv[1]; cfgspec = sys.argv[2]; steps = int(sys.argv[3]) if len(sys.argv) > 3 else 20
from l2a_jax.benchmark import cli as bcli, common
config = bcli.load_config(cfgspec)
config.model.depth = 4; config.model.dim = 64
spec = {'model': config.model.to_dict(),
        'loss': {n: float(config.loss[n]) for n in bcli.LOSS_TERMS},
        'optim': config.optim.to_dict(), 'batch': 4, 'steps': steps, 'warmup': 3,
        'seed': 0, 'fp32_matmul': 'highest', 'torch_threads': 0, 'dtype': 'float32',
        'framework': fw, 'mode': 'train'}
inputs_np, targets_np = common.synthetic_batch(spec)
def timeit(f, n=steps, w=3):
  for _ in range(w): f()
  ts = []
  for _ in range(n):
    t = time.perf_counter(); f(); ts.append((time.perf_counter() - t) * 1e3)
  return statistics.median(ts)
out = {}
if fw == 'jax':
  import jax, jax.numpy as jnp, ml_collections
  from flax import nnx
  from l2a_jax import models, sharding, losses
  from l2a_jax.benchmark import jax_side
  jax_side.set_matmul_precision('highest')
  model = models.create_model(jax_side.model_config_for(spec), nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  train_step, infer_step, tx = jax_side.make_steps(graphdef, spec)
  x = jnp.asarray(inputs_np); y = jnp.asarray(targets_np)
  w = spec['loss']
  loss = jax.jit(lambda p, r, a, b: jax_side.training_loss(graphdef, p, r, a, b, w))
  grad = jax.jit(jax.grad(lambda p, r, a, b: jax_side.training_loss(graphdef, p, r, a, b, w)))
  out['infer'] = timeit(lambda: jax.block_until_ready(infer_step(params, rest, x)))
  out['loss_fwd'] = timeit(lambda: jax.block_until_ready(loss(params, rest, x, y)))
  out['grad'] = timeit(lambda: jax.block_until_ready(grad(params, rest, x, y)))
  g = grad(params, rest, x, y)
  opt_state = tx.init(params)
  import optax
  upd = jax.jit(lambda g, s, p: optax.apply_updates(p, tx.update(g, s, p)[0]))
  out['opt_only'] = timeit(lambda: jax.block_until_ready(upd(g, opt_state, params)))
  state = [jax.tree.map(jnp.copy, params), tx.init(params)]
  key = jax.random.key(0)
  batch = {'inputs': x, 'targets': y}
  def full():
    p, s, m = train_step(state[0], state[1], batch, rest, key, jnp.int32(0))
    jax.block_until_ready(m); state[0], state[1] = p, s
  out['full_step'] = timeit(full)
else:
  import torch
  from l2a_jax.benchmark import torch_side
  torch_side.configure(spec)
  model = torch_side.build_model(spec, torch.device('cpu'))
  x = torch.from_numpy(inputs_np); y = torch.from_numpy(targets_np)
  model.eval()
  def inf():
    with torch.inference_mode(): model(x)
  out['infer'] = timeit(inf)
  model.train()
  def lf():
    with torch.no_grad(): torch_side.torch_loss(model(x), y, spec['loss'])
  out['loss_fwd'] = timeit(lf)
  def gr():
    model.zero_grad(set_to_none=True); torch_side.torch_loss(model(x), y, spec['loss']).backward()
  out['grad'] = timeit(gr)
  opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
  gr()
  out['opt_only'] = timeit(lambda: opt.step())
  def full():
    opt.zero_grad(set_to_none=True); torch_side.torch_loss(model(x), y, spec['loss']).backward(); opt.step()
  out['full_step'] = timeit(full)
print(json.dumps({'fw': fw, 'cfg': cfgspec, **{k: round(v, 2) for k, v in out.items()}}))
