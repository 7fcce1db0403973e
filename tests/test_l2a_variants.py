"""Every L2A config switch builds and traces; two variants compared in full.

Each single switch of l2a_design.md section 4 is built and traced at full
size with `jax.eval_shape` (cheap). Numerics of the variants are compared
(scanned custom-VJP stack vs the unrolled reference, outputs and parameter
gradients) in a few combinations that together switch on every alternative:
here and in test_l2a_variants_add.py / test_l2a_variants_replace.py.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import pytest

from l2a_jax import models
import l2a_testing

# Many small programs, each run once: compile them cheaply.
pytestmark = pytest.mark.usefixtures('unoptimised_compiles')

SINGLE_SWITCHES = [
    {'hpa.mode': 'replace'},
    {'hpa.mode': 'none'},
    {'hpa.weights': 'sample'},
    {'hpa.weights': 'static'},
    {'hpa.weights': 'static', 'hpa.static_normalise': False},
    {'hpa.history': 'last_k'},
    {'hpa.history': 'blocks'},
    {'hpa.value': 'raw'},
    {'hpa.temperature': 'sqrt_dim'},
    {'hpa.gain_init': 0.0},
    {'hpa.include_embedding': False},
    {'lpa.mode': 'pool', 'lpa.pool': 'joint'},
    {'lpa.mode': 'pool', 'lpa.pool': 'frame'},
    {'lpa.mode': 'pool', 'lpa.pool': 'part'},
    {'lpa.mode': 'bottleneck', 'lpa.dim': 64},
    {'lpa.mode': 'rmsnorm'},
    {'lpa.mode': 'identity'},
    {'lpa.dim': 64},
    {'lpa.shared': True},
    {'fusion': 'channel_softmax'},
    {'fusion': 'mean'},
    {'fusion': 'channel_split'},
    {'shared_mlp': True},
    {'backbone': 'sequential'},
    {'pos_embed': 'spatial'},
    {'pos_embed': 'none'},
    {'init': 'trunc_normal'},
    {'remat': 'block'},
    {'history_vjp': 'autodiff'},
    {'scan_layers': False},
    {'dtype': 'bfloat16'},
]


@pytest.mark.parametrize('overrides', SINGLE_SWITCHES, ids=str)
def test_every_switch_builds_and_traces_at_full_size(overrides):
  cfg = l2a_testing.full_model_config(81)
  for key, value in overrides.items():
    node = cfg
    *parents, leaf = key.split('.')
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  model = nnx.eval_shape(lambda: models.create_model(cfg, nnx.Rngs(0)))
  x = jax.ShapeDtypeStruct((1, 81, 17, 3), jnp.float32)
  out = jax.eval_shape(lambda m, x: m(x), model, x)
  assert out.shape == (1, 81, 17, 3) and out.dtype == jnp.float32


def test_plain_backbone_scan_equals_unrolled():
  """hpa.mode='none': the history holds only the layer outputs."""
  l2a_testing.assert_paths_agree({'hpa.mode': 'none'})


def test_identity_lpa_last_two_scan_equals_unrolled():
  """Keys are the raw records; layer 3 of 3 does not read the embedding."""
  l2a_testing.assert_paths_agree({'lpa.mode': 'identity',
                                  'hpa.history': 'last_k',
                                  'hpa.last_k': 2})
