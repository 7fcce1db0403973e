"""JAX TCPFormer == PyTorch reference TCPFormer on the same weights.

The PyTorch model (l2a_jax.torch_reference, the official module tree) is
randomised, its state_dict goes through the generic `stacking` helpers into
the JAX model, and both run the same input. This checks the architecture
(stream order, quirks, head layouts) and the naming rule at once.
"""

from flax import nnx
import jax
import numpy as np
import pytest

from l2a_jax import models
from l2a_jax.models import stacking
from l2a_jax.models import tcpformer

import tcpformer_testing as tt  # pylint: disable=g-bad-import-order

# Many small programs, each run once: compile them cheaply.
pytestmark = pytest.mark.usefixtures('unoptimised_compiles')

torch = pytest.importorskip('torch')
torch_reference = pytest.importorskip('l2a_jax.torch_reference')

STACKED = tcpformer.TCPFormer.STACKED_MODULES


def _randomised_torch_model(cfg, seed):
  """The reference model with degenerate-at-init tensors set to U(-1, 1)."""
  torch.manual_seed(seed)
  model = torch_reference.create_model(cfg).eval()
  with torch.no_grad():
    for name, param in model.named_parameters():
      leaf = name.rsplit('.', 1)[-1]
      if (leaf.startswith('layer_scale_') or leaf in (
          'att_weight', 'pos_embed', 'center_pos_embed') or '.fusion.' in name):
        param.uniform_(-1.0, 1.0)
    for block in model.temporal_layers:
      block.local_layer_scales.uniform_(-1.0, 1.0)
  return model


def _load_into_jax(torch_model, jax_model, depth):
  """Copies the torch weights and local constants into the JAX model."""
  flat_torch = {k: v.detach().numpy()
                for k, v in torch_model.state_dict().items()}
  flat_jax = stacking.stack_layers(stacking.from_torch_names(flat_torch),
                                   STACKED, depth)
  params = nnx.state(jax_model, nnx.Param)
  expected = set(stacking.flatten_params(params))
  assert set(flat_jax) == expected
  nnx.replace_by_pure_dict(params, stacking.unflatten_params(flat_jax))
  nnx.update(jax_model, params)
  jax_model.temporal_layers.local_layer_scales[...] = np.stack(
      [b.local_layer_scales.numpy() for b in torch_model.temporal_layers])


@pytest.fixture(scope='module')
def pair():
  cfg = tt.tiny_config()
  torch_model = _randomised_torch_model(cfg, seed=0)
  jax_model = models.create_model(cfg, nnx.Rngs(1))
  _load_into_jax(torch_model, jax_model, cfg.depth)
  return torch_model, jax_model


def test_state_dict_keys_match_torch(pair):
  torch_model, jax_model = pair
  flat = stacking.flatten_params(nnx.state(jax_model, nnx.Param))
  torch_like = stacking.to_torch_names(
      stacking.unstack_layers(flat, STACKED, tt.DEPTH))
  state_dict = torch_model.state_dict()
  assert set(torch_like) == set(state_dict)
  for key, value in torch_like.items():
    np.testing.assert_array_equal(np.asarray(value),
                                  state_dict[key].numpy(), err_msg=key)


def test_outputs_match_torch(pair):
  torch_model, jax_model = pair
  x, _ = tt.inputs(seed=5)
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(np.array(x))).numpy()
  out = np.asarray(tt.forward(jax_model, x))
  # Not a trivially small output: the randomised layers shape it.
  assert expected.std() > 0.1
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=2e-6)


def test_torch_strict_load_of_jax_weights(pair):
  """JAX -> torch names loads strictly into a fresh reference model."""
  _, jax_model = pair
  flat = stacking.flatten_params(nnx.state(jax_model, nnx.Param))
  torch_like = stacking.to_torch_names(
      stacking.unstack_layers(flat, STACKED, tt.DEPTH))
  fresh = torch_reference.create_model(tt.tiny_config())
  fresh.load_state_dict(
      {k: torch.from_numpy(np.array(jax.device_get(v)))
       for k, v in torch_like.items()}, strict=True)
  np.testing.assert_array_equal(
      fresh.layers[1].graph_spatial.mixer.qkv.weight.detach().numpy(),
      np.asarray(jax_model.layers.graph_spatial.mixer.qkv.kernel[...][1]).T)
