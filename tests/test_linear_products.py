"""Tests of `python -m l2a_jax.benchmark --linear_products`: which products
are listed, that each timed loop runs its product every iteration, the CLI.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2a_jax.benchmark import cli as benchmark
from l2a_jax.benchmark import jax_side
from l2a_jax.benchmark import linear_products
from l2a_jax.benchmark import macs

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'configs'


def _model_config(name, frames, **changes):
  config = benchmark.load_config(f'{CONFIGS / name}.py:frames={frames}').model
  config.update(changes)
  return config


def _macs_of(products):
  return sum(p.rows * p.in_features * p.out_features * p.count
             for p in products)


@pytest.mark.parametrize('name', ['l2a_h36m', 'tcpformer_h36m'])
def test_listed_products_hold_every_linear_mac(name):
  config = _model_config(name, 27, depth=2, dim=32)
  products, other = macs.linear_products(config, batch=3)
  assert _macs_of(products) + other == macs.count_model_macs(
      config, batch=3).linear
  # Every row count is a number of tokens of the batch (3 clips).
  assert all(p.rows % 3 == 0 for p in products)
  # Largest MACs first, each shape once.
  sizes = [p.rows * p.in_features * p.out_features * p.count
           for p in products]
  assert sizes == sorted(sizes, reverse=True)
  assert len({(p.rows, p.in_features, p.out_features)
              for p in products}) == len(products)
  if name == 'l2a_h36m':
    # L2A's HPA logits multiply by a learned query vector: not a Linear
    # layer, so not listed, but accounted for.
    assert other > 0
  else:
    assert other == 0


def test_scanned_layers_count_once_per_layer():
  shallow, _ = macs.linear_products(_model_config('tcpformer_h36m', 27,
                                                  depth=2, dim=32))
  deep, _ = macs.linear_products(_model_config('tcpformer_h36m', 27,
                                               depth=4, dim=32))
  shallow = {(p.rows, p.in_features, p.out_features): p.count
             for p in shallow}
  deep = {(p.rows, p.in_features, p.out_features): p.count for p in deep}
  assert shallow.keys() == deep.keys()
  # The embedding and head run once; every shape inside the layers doubles.
  grown = {key: deep[key] - shallow[key] for key in deep}
  assert all(grown[key] in (0, shallow[key]) for key in deep)
  assert sum(grown.values()) > 0


@pytest.mark.parametrize('form', linear_products.FORMS)
def test_repeated_product_computes_the_form_every_iteration(form):
  rows, k, n = 12, 5, 7
  left_shape, right_shape = linear_products.operand_shapes(rows, k, n)[form]
  rng = np.random.default_rng(0)
  left = rng.standard_normal(left_shape).astype(np.float32)
  right = rng.standard_normal(right_shape).astype(np.float32)
  axes = linear_products.CONTRACTED_AXES[form]
  fn = jax_side.repeated_product((((axes[0],), (axes[1],)), ((), ())), 4)
  expected = {'forward': lambda: left @ right,
              'input_grad': lambda: left @ right.T,
              'weight_grad': lambda: left.T @ right}[form]()
  result = fn(jnp.asarray(left), jnp.asarray(right))
  assert result.shape == {'forward': (rows, n), 'input_grad': (rows, k),
                          'weight_grad': (k, n)}[form]
  np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-5,
                             atol=1e-5)
  # The product sits inside the compiled loop's body, not hoisted before
  # it: a timed call runs it `repeats` times.
  hlo = fn.lower(jnp.asarray(left), jnp.asarray(right)).compile().as_text()
  computations = {}
  for block in re.split(r'\n\s*\n', hlo):
    header = re.match(r'(?:ENTRY )?%([\w.\-]+) ', block.strip())
    if header:
      computations['ENTRY' if block.strip().startswith('ENTRY')
                   else header.group(1)] = block
  runs_product = lambda text: bool(re.search(r' dot\(|ynn_fusion', text))
  bodies = re.findall(r'while\(.*?body=%([\w.\-]+)', hlo)
  assert bodies, hlo
  assert any(runs_product(computations[b]) for b in bodies), hlo
  assert not runs_product(computations['ENTRY']), hlo


def test_step_total_sums_three_forms_per_execution():
  products = [
      {'count': 2, 'forward_ms': 1.0, 'input_grad_ms': 2.0,
       'weight_grad_ms': 3.0},
      {'count': 1, 'forward_ms': 0.5, 'input_grad_ms': 0.5,
       'weight_grad_ms': 0.5},
  ]
  assert linear_products.step_total_ms(products) == 2 * 6.0 + 1.5


def _run_cli(*args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  return subprocess.run(
      [sys.executable, '-m', 'l2a_jax.benchmark', *args], cwd=REPO, env=env,
      capture_output=True, text=True, timeout=600, check=False)


def test_cli_times_the_products_in_both_frameworks(tmp_path):
  pytest.importorskip('torch')
  out = tmp_path / 'products.json'
  proc = _run_cli('--config', f'{CONFIGS}/tiny.py', '--config.model.depth=1',
                  '--linear_products', '--frameworks', 'jax,torch',
                  '--batch_size', '2', '--steps', '2', '--warmup', '0',
                  '--json', str(out))
  assert proc.returncode == 0, proc.stderr[-3000:]
  document = json.loads(out.read_text())
  assert document['results'] == [] and document['config']['linear_products']
  rows = document['linear_products']
  assert [r['framework'] for r in rows] == ['jax', 'torch']
  expected, other = macs.linear_products(_tiny_depth_one(), batch=2)
  for row in rows:
    assert row['other_parameter_product_macs'] == other
    assert [(p['rows'], p['in_features'], p['out_features'], p['count'])
            for p in row['products']] == [
                (p.rows, p.in_features, p.out_features, p.count)
                for p in expected]
    for product in row['products']:
      assert all(product[f'{form}_ms'] > 0 for form in linear_products.FORMS)
    assert row['step_ms'] == pytest.approx(
        linear_products.step_total_ms(row['products']))
  assert 'per training step' in proc.stdout
  assert 'jax weight_grad ms' in proc.stdout


def _tiny_depth_one():
  config = benchmark.load_config(f'{CONFIGS}/tiny.py').model
  config.depth = 1
  return config


@pytest.mark.parametrize('args, message', [
    (('--frameworks', 'jax,torch_compile'),
     '--linear_products: expected --frameworks jax and/or torch, got '
     'torch_compile'),
    (('--depths', '2'), '--linear_products: --depths, --profile_dir and '
     '--plot measure whole steps'),
    (('--steps', '0'), '--steps: expected a positive integer with '
     '--linear_products, got 0'),
])
def test_bad_combinations_are_one_line_errors(tmp_path, args, message):
  out = tmp_path / 'out.json'
  proc = _run_cli('--config', f'{CONFIGS}/tiny.py', '--linear_products',
                  *args, '--json', str(out))
  assert proc.returncode == 2
  assert proc.stderr.strip().count('\n') == 0, proc.stderr
  assert message in proc.stderr
  assert not out.exists()
