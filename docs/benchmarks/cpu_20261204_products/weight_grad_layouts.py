import time, statistics, numpy as np, jax, jax.numpy as jnp
from jax import lax
jax.config.update('jax_default_matmul_precision', 'highest')
def med(f, n=300):
  for _ in range(20): f()
  ts = []
  for _ in range(n):
    t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
  return statistics.median(ts) * 1e3
N, K, M = 1836, 64, 256
x = jnp.asarray(np.random.randn(N, K).astype('f4')); dy = jnp.asarray(np.random.randn(N, M).astype('f4'))
variants = {
 'x.T@dy [K,M]': lambda x, dy: x.T @ dy,
 'dg(x,dy) [K,M]': lambda x, dy: lax.dot_general(x, dy, (((0,), (0,)), ((), ()))),
 'dg(dy,x).T [K,M]': lambda x, dy: lax.dot_general(dy, x, (((0,), (0,)), ((), ()))).T,
 'dg(dy,x) [M,K]': lambda x, dy: lax.dot_general(dy, x, (((0,), (0,)), ((), ()))),
 'chunked 4 [K,M]': lambda x, dy: jnp.einsum('cnk,cnm->km', x.reshape(4, -1, K), dy.reshape(4, -1, M)),
}
for name, f in variants.items():
  g = jax.jit(f)
  print('%-20s %.3f ms' % (name, med(lambda: g(x, dy).block_until_ready())))
  if name.startswith('x.T'):
    print(g.lower(x, dy).compile().as_text()[:1500])
print('---')
more = {
 'barrier(x.T)@dy': lambda x, dy: lax.optimization_barrier(x.T) @ dy,
 'barrier(dy.T) then dW^T': lambda x, dy: (lax.optimization_barrier(dy.T) @ x).T,
 'dgrad dy@W.T': None,
}
for name, f in more.items():
  if f is None: continue
  g = jax.jit(f)
  print('%-25s %.3f ms' % (name, med(lambda: g(x, dy).block_until_ready())))
  txt = g.lower(x, dy).compile().as_text()
  print([l.strip()[:160] for l in txt.splitlines() if ' = ' in l and 'parameter' not in l])
W = jnp.asarray(np.random.randn(K, M).astype('f4'))
g = jax.jit(lambda dy, W: dy @ W.T)
print('dgrad dy@W.T %.3f ms' % med(lambda: g(dy, W).block_until_ready()))
g = jax.jit(lambda x, W: x @ W)
print('fwd x@W %.3f ms' % med(lambda: g(x, W).block_until_ready()))
