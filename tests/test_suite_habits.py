"""The test suite's own rules: XLA optimisations on unless a module opts
out for itself, no skipped tests, no global flag changes at import."""

import ast
import pathlib

import jax
import pytest

_TESTS = pathlib.Path(__file__).resolve().parent


def test_optimisations_are_on_outside_opted_in_modules():
  # This module does not opt in; an opted-in module that ran earlier in
  # this process must have restored the flag.
  assert jax.config.read('jax_disable_most_optimizations') is False


def _module_level_calls(tree: ast.Module):
  for node in tree.body:
    for sub in ast.walk(node):
      if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        break
      if isinstance(sub, ast.Call):
        yield sub


@pytest.mark.parametrize('path', sorted(_TESTS.glob('*.py')),
                         ids=lambda p: p.name)
def test_no_global_jax_or_xla_settings_at_import(path):
  tree = ast.parse(path.read_text(), filename=str(path))
  for call in _module_level_calls(tree):
    source = ast.unparse(call.func)
    assert source != 'jax.config.update', (
        f'{path.name}:{call.lineno}: module-level jax.config.update; use '
        'a fixture that restores the setting')
  text = path.read_text()
  assert "os.environ['XLA_FLAGS'] " + "=" not in text, path.name
  if path.name != 'conftest.py':
    # Opting out of optimisations is the conftest fixture's job: it
    # restores the flag and clears the compile caches.
    forbidden = "config.update('jax_disable_" + "most_optimizations'"
    assert forbidden not in text, (
        f'{path.name}: use the unoptimised_compiles fixture')


def test_skips_fail_the_suite(pytester):
  pytester.makeconftest((_TESTS / 'conftest.py').read_text())
  pytester.makepyfile(test_skipping='''
import pytest

def test_skipped():
  pytest.skip('data file missing')
''')
  result = pytester.runpytest_inprocess('-p', 'no:xdist')
  result.assert_outcomes(failed=1)
  assert 'allows no skipped tests' in result.stdout.str()
