"""bfloat16 compute policy: float32 residual stream and scan carry.

- TCPFormer at the official init (layer scales 1e-5), same weights and
  input in JAX and the PyTorch reference: JAX's bfloat16 error against its
  float32 output is no larger than torch CPU autocast (bfloat16)'s error
  against torch float32. Both round the same products once to bf16 and keep
  the residual stream in float32, so the two errors agree to float32
  accumulation-order noise (measured: 5.8245e-3 vs 5.8245e-3);
- under model.dtype='bfloat16' every scan carry of TCPFormer (x, proxy) and
  L2A's history records are float32.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2a_testing
import tcpformer_testing as tt
from l2a_jax import models

from test_tcpformer_torch_parity import _load_into_jax  # pylint: disable=g-bad-import-order

torch = pytest.importorskip('torch')
torch_reference = pytest.importorskip('l2a_jax.torch_reference')

# Float32 accumulation-order noise between the two frameworks' bf16 runs
# (the errors are equal to about 1e-7 relative; see the module docstring).
SAME_ROUNDING = 1.0 + 1e-4


def _relative_errors(got, want):
  diff = np.abs(got - want)
  return (float(diff.max() / np.abs(want).max()),
          float(diff.mean() / np.abs(want).mean()))


def test_jax_bfloat16_error_no_larger_than_torch_autocast():
  cfg = tt.tiny_config()
  torch.manual_seed(0)
  torch_model = torch_reference.create_model(cfg).eval()  # Official init.
  jax32 = models.create_model(cfg, nnx.Rngs(1))
  _load_into_jax(torch_model, jax32, cfg.depth)
  jax16 = models.create_model(tt.tiny_config(dtype='bfloat16'), nnx.Rngs(1))
  nnx.update(jax16, nnx.state(jax32))
  x = np.random.default_rng(0).standard_normal(
      (4, tt.FRAMES, 17, 3)).astype(np.float32)
  with torch.no_grad():
    torch32 = torch_model(torch.from_numpy(x)).numpy()
    with torch.autocast('cpu', dtype=torch.bfloat16):
      torch16 = torch_model(torch.from_numpy(x)).float().numpy()
  out32 = np.asarray(jax32(jnp.asarray(x)))
  out16 = np.asarray(jax16(jnp.asarray(x)))
  np.testing.assert_allclose(out32, torch32, rtol=1e-5, atol=2e-6)
  jax_max, jax_mean = _relative_errors(out16, out32)
  torch_max, torch_mean = _relative_errors(torch16, torch32)
  assert torch_max > 1e-3  # bf16 rounding is visible at all.
  assert jax_max <= torch_max * SAME_ROUNDING, (jax_max, torch_max)
  assert jax_mean <= torch_mean * SAME_ROUNDING, (jax_mean, torch_mean)


def _scan_carries(fn, *args):
  """Avals of every lax.scan carry in fn's program (nested ones too)."""
  carries = []

  def visit(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == 'scan':
        carries.extend(v.aval for v in
                       eqn.outvars[:eqn.params['num_carry']])
      for value in eqn.params.values():
        for sub in value if isinstance(value, (list, tuple)) else [value]:
          inner = getattr(sub, 'jaxpr', sub)
          if hasattr(inner, 'eqns'):
            visit(inner)

  visit(jax.make_jaxpr(fn)(*args).jaxpr)
  return carries


def test_tcpformer_scan_carry_is_float32_under_bfloat16():
  model = models.create_model(tt.tiny_config(dtype='bfloat16'), nnx.Rngs(0))
  x = jnp.zeros((2, tt.FRAMES, 17, 3))
  carries = _scan_carries(lambda x: model(x), x)
  streams = [a for a in carries if a.shape in ((2, tt.FRAMES, 17, 32),
                                               (2, tt.FRAMES // 3, 17, 32))]
  assert len(streams) == 2
  assert {a.dtype for a in streams} == {jnp.dtype(jnp.float32)}


def test_l2a_history_records_are_float32_under_bfloat16():
  cfg = l2a_testing.model_config({'dtype': 'bfloat16', 'lpa.dim': 8})
  model = models.create_model(cfg, nnx.Rngs(0))
  x = jnp.zeros((2, cfg.num_frames, 17, 3))
  carries = _scan_carries(lambda x: model(x), x)
  records = [a for a in carries if a.shape[-1] == cfg.dim and a.ndim == 5]
  keys = [a for a in carries if a.shape[-1] == 8 and a.ndim == 5]
  assert records and {a.dtype for a in records} == {jnp.dtype(jnp.float32)}
  # The LPA keys are matmul inputs: they stay in the compute dtype.
  assert keys and {a.dtype for a in keys} == {jnp.dtype(jnp.bfloat16)}
