"""TCPFormer numerics: drop path, bfloat16 compute, frame-order quirk.

On the randomised tiny model of `tcpformer_testing`.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2a_jax import models
from l2a_jax.models import tcpformer

import tcpformer_testing as tt  # pylint: disable=g-bad-import-order

# Many small programs, each run once: compile them cheaply.
pytestmark = pytest.mark.usefixtures('unoptimised_compiles')

# bfloat16 compute vs float32 on the randomised tiny model: measured max
# |difference| / max |float32 output| of 1.0-1.4 % over seeds 0-4
# (docs/models.md, TCPFormer section); the bound leaves about 2x headroom.
BF16_RELATIVE_TOLERANCE = 0.03


@pytest.fixture(scope='module')
def reference():
  """(model, x, float32 output) of the randomised tiny model."""
  model = tt.tiny_model(seed=0)
  x, _ = tt.inputs(seed=3)
  return model, x, tt.forward(model, x)


def test_drop_path(reference):
  model, x, out = reference
  # Same seed: the same parameters as `reference`, with drop path 0.5.
  dropping = tt.tiny_model(seed=0, drop_path=0.5)
  key, other_key = jax.random.key(7), jax.random.key(8)
  out_scan = tt.forward(dropping, x, key)
  out_other = tt.forward(dropping, x, other_key)
  dropping.scan_layers = False
  out_loop = tt.forward(dropping, x, key)
  # The same key drops the same branches in both stack implementations.
  np.testing.assert_allclose(out_loop, out_scan, rtol=1e-5, atol=1e-5)
  # A key changes the output; a different key changes it differently.
  assert np.abs(out_scan - out).max() > 1e-2
  assert np.abs(out_other - out_scan).max() > 1e-2
  # No key: deterministic, equal to the model without drop path.
  dropping.scan_layers = True
  np.testing.assert_allclose(tt.forward(dropping, x), out,
                             rtol=1e-5, atol=1e-5)


def test_bfloat16_close_to_float32(reference):
  model, x, out32 = reference
  bf16 = models.create_model(tt.tiny_config(dtype='bfloat16'),
                             nnx.Rngs(1))
  # Same float32 parameters and constants, bfloat16 compute.
  nnx.update(bf16, nnx.state(model, (nnx.Param, tcpformer.FrozenLayerScale)))
  out16 = tt.forward(bf16, x)
  assert out16.dtype == jnp.float32
  assert bf16.layers.att_spatial.mixer.qkv.kernel[...].dtype == jnp.float32
  assert np.all(np.isfinite(out16))
  error = float(jnp.max(jnp.abs(out16 - out32)) / jnp.max(jnp.abs(out32)))
  # bfloat16 must really be used (not silently float32) and stay close.
  assert 1e-4 < error < BF16_RELATIVE_TOLERANCE, error


def test_frame_order_only_enters_through_chunks(reference):
  """No temporal positional embedding: shuffling frames inside each chunk
  shuffles the output the same way; moving a frame to another chunk does
  not (the local branch attends within chunks; its scales are random)."""
  model, x, out = reference
  rng = np.random.default_rng(0)
  within = np.concatenate([
      start + rng.permutation(stop - start)
      for start, stop in tcpformer.torch_chunk_bounds(tt.FRAMES, 3)])
  assert not np.array_equal(within, np.arange(tt.FRAMES))
  np.testing.assert_allclose(tt.forward(model, x[:, within]),
                             out[:, within], rtol=1e-4, atol=1e-5)
  across = np.array([3, 1, 2, 0, 4, 5, 6, 7, 8])  # Frames 0 and 3 swap.
  moved = tt.forward(model, x[:, across])
  assert np.abs(moved - out[:, across]).max() > 1e-3
