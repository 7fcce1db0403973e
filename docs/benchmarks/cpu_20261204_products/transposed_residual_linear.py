import time, statistics, functools, numpy as np, jax, jax.numpy as jnp
from jax import lax
jax.config.update('jax_default_matmul_precision', 'highest')
def med(f, n=200):
  for _ in range(20): f()
  ts = []
  for _ in range(n):
    t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
  return statistics.median(ts) * 1e3

def lin_plain(x, w, b):
  return jnp.dot(x, w, preferred_element_type=jnp.float32) + b

@jax.custom_vjp
def lin_t(x, w, b):
  return lin_plain(x, w, b)
def lin_t_fwd(x, w, b):
  x2 = x.reshape(-1, x.shape[-1])
  xt = lax.optimization_barrier(x2.T)
  return lin_plain(x, w, b), (xt, w)
def lin_t_bwd(res, g):
  xt, w = res
  g2 = g.reshape(-1, g.shape[-1])
  dw = jnp.dot(xt, g2, preferred_element_type=jnp.float32)
  dx = jnp.dot(g, w.T, preferred_element_type=jnp.float32)
  return dx, dw, jnp.sum(g2, 0)
lin_t.defvjp(lin_t_fwd, lin_t_bwd)

def net(lin, p, x):
  for i in range(4):
    h = jax.nn.gelu(lin(x, p['w1'][i], p['b1'][i]), approximate=False)
    x = x + lin(h, p['w2'][i], p['b2'][i])
    q = lin(x, p['w3'][i], p['b3'][i])
    x = x + q[..., :64] * q[..., 64:128] + q[..., 128:]
  return jnp.sum(x ** 2)
rng = np.random.default_rng(0)
p = {'w1': rng.standard_normal((4, 64, 256)) * .05, 'b1': np.zeros((4, 256)), 'w2': rng.standard_normal((4, 256, 64)) * .05, 'b2': np.zeros((4, 64)),
     'w3': rng.standard_normal((4, 64, 192)) * .05, 'b3': np.zeros((4, 192))}
p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), p)
x = jnp.asarray(rng.standard_normal((4, 27, 17, 64)), jnp.float32)
for name, lin in [('plain', lin_plain), ('xT', lin_t), ('plain', lin_plain), ('xT', lin_t)]:
  g = jax.jit(jax.grad(functools.partial(net, lin)))
  print(name, '%.3f ms' % med(lambda: jax.block_until_ready(g(p, x))))
ga = jax.grad(functools.partial(net, lin_plain))(p, x); gb = jax.grad(functools.partial(net, lin_t))(p, x)
print(max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb))))
