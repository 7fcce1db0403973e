"""L2A stack paths: scanned (custom VJP and autodiff) == unrolled, in
outputs and parameter gradients, with informative (non-initial) parameters;
drop path replayed by the custom VJP; rematerialisation keeps gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2a_testing

# Many small programs, each run once: compile them cheaply.
pytestmark = pytest.mark.usefixtures('unoptimised_compiles')


def test_default_scan_equals_unrolled_and_custom_vjp_equals_autodiff():
  cfg = l2a_testing.model_config()
  graphdef, params = l2a_testing.build(cfg)
  x, cot = l2a_testing.inputs(cfg)
  results = l2a_testing.outputs_and_grads(
      graphdef, params, x, cot, ('scan_custom', 'scan_autodiff', 'unrolled'))
  out, grads = results['unrolled']
  assert float(jnp.abs(out).max()) > 0.1
  for path in ('scan_custom', 'scan_autodiff'):
    l2a_testing.assert_trees_close(results[path][0], out)
    l2a_testing.assert_trees_close(results[path][1], grads)
  # The HPA parameters get a live gradient, except the pseudo-query of
  # layer 1, which reads one slot (a softmax over one entry is constant).
  query_grad = np.asarray(grads['layers']['hpa_query'][...])
  assert np.all(query_grad[0] == 0) and np.abs(query_grad[1:]).min() > 0
  assert float(jnp.abs(grads['lpa_embed']['proj']['kernel'][...]).max()) > 0


def test_drop_path_replays_the_same_masks():
  cfg = l2a_testing.model_config({'drop_path': 0.5})
  graphdef, params = l2a_testing.build(cfg)
  x, cot = l2a_testing.inputs(cfg)
  key = jax.random.key(3)
  results = l2a_testing.outputs_and_grads(
      graphdef, params, x, cot, ('scan_custom', 'unrolled'), dropout_rng=key)
  l2a_testing.assert_trees_close(results['scan_custom'][0],
                                 results['unrolled'][0])
  l2a_testing.assert_trees_close(results['scan_custom'][1],
                                 results['unrolled'][1])
  deterministic = jax.jit(lambda p: l2a_testing.apply(graphdef, p, x))(params)
  assert float(jnp.abs(results['unrolled'][0] - deterministic).max()) > 1e-3


def test_remat_options_keep_gradients():
  cfg = l2a_testing.model_config()
  graphdef, params = l2a_testing.build(cfg)
  x, cot = l2a_testing.inputs(cfg)

  def grads(params, remat):
    _, vjp = jax.vjp(
        lambda p: l2a_testing.apply(graphdef, p, x, remat=remat), params)
    return vjp(cot)[0]

  grads = jax.jit(grads, static_argnums=1)
  plain = grads(params, 'none')
  l2a_testing.assert_trees_close(
      grads(params, 'dots_with_no_batch_dims_saveable'), plain)
