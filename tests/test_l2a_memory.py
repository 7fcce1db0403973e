"""L2A train-step memory: linear in depth with the custom history VJP,
superlinear with plain autodiff through the scan (l2a_design.md 5.2-5.3).

XLA's compiled temporary memory (`memory_analysis().temp_size_in_bytes`) of
`jit(grad(loss))` on a tiny model at depths 4, 16, 32; nothing is run.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from l2a_jax.models import l2a
import l2a_testing


# Three depths (three optimised compiles per path): two slopes to compare.
DEPTHS = (4, 16, 32)


def temp_bytes(depth: int, path: str) -> int:
  cfg = l2a_testing.model_config(depth=depth)
  model = nnx.eval_shape(lambda: l2a.L2A(cfg, rngs=nnx.Rngs(0)))
  graphdef, params = nnx.split(model)
  x = jax.ShapeDtypeStruct((2, cfg.num_frames, 17, 3), jnp.float32)

  def loss(params, x):
    return jnp.sum(l2a_testing.apply(graphdef, params, x, path) ** 2)

  compiled = jax.jit(jax.grad(loss)).lower(params, x).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_custom_vjp_memory_is_linear_autodiff_superlinear():
  custom = np.array([temp_bytes(d, 'scan_custom') for d in DEPTHS], float)
  autodiff = np.array([temp_bytes(d, 'scan_autodiff') for d in DEPTHS],
                      float)
  depths = np.array(DEPTHS, float)
  # Bytes added per layer between consecutive depths.
  custom_slope = np.diff(custom) / np.diff(depths)
  autodiff_slope = np.diff(autodiff) / np.diff(depths)
  # Linear: a constant cost per layer (final buffer slot, its cotangent,
  # the layer's parameter gradient), whatever the depth.
  assert np.all(custom_slope > 0), custom
  assert custom_slope.max() < 1.25 * custom_slope.min(), custom
  # Superlinear: each extra layer also keeps a copy of the whole buffer, so
  # the cost per layer grows with depth.
  assert autodiff_slope[-1] > 1.4 * autodiff_slope[0], autodiff
  # From depth 4 to 32, autodiff's memory grows over twice as fast.
  assert autodiff[-1] / autodiff[0] > 2.0 * custom[-1] / custom[0]
  assert autodiff[-1] > 10 * custom[-1], (custom, autodiff)
