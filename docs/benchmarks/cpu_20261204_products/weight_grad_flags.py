import time, statistics, numpy as np, jax, jax.numpy as jnp
from jax import lax
jax.config.update('jax_default_matmul_precision', 'highest')
def med(f, n=300):
  for _ in range(20): f()
  ts = []
  for _ in range(n):
    t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
  return statistics.median(ts) * 1e3
for N, K, M in [(1836, 64, 256), (1836, 256, 64), (1836, 64, 64)]:
  x = jnp.asarray(np.random.randn(N, K).astype('f4')); dy = jnp.asarray(np.random.randn(N, M).astype('f4'))
  xt = jnp.asarray(np.random.randn(K, N).astype('f4'))
  g1 = jax.jit(lambda x, dy: x.T @ dy); g2 = jax.jit(lambda xt, dy: xt @ dy)
  print(N, K, M, 'transA %.3f' % med(lambda: g1(x, dy).block_until_ready()), 'std %.3f' % med(lambda: g2(xt, dy).block_until_ready()))
