"""Fixtures shared by the test modules."""

import jax
import pytest

# `pytester` runs small pytest sessions (tests/test_suite_habits.py).
pytest_plugins = ['pytester']


@pytest.fixture
def one_torch_thread():
  """Runs a test with PyTorch on one CPU thread.

  The test machine's cores are shared (pytest-xdist workers): one thread
  avoids oversubscription, which makes torch's CPU kernels many times
  slower. Modules opt in with `pytestmark =
  pytest.mark.usefixtures('one_torch_thread')`; torch is imported only
  then.
  """
  import torch  # pylint: disable=g-import-not-at-top
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def unoptimised_compiles():
  """Runs a test module with XLA's optimisation passes mostly off.

  For modules that compile many small programs and run each once (parity
  and gradient checks), where optimising costs more than it saves. The
  suite otherwise runs with XLA's normal optimisations, memory tests
  included: the flag is restored after the module, and the compile caches
  are cleared both ways (the flag is not part of JAX's cache keys), so no
  program compiled one way is reused the other way.
  Modules opt in with
  `pytestmark = pytest.mark.usefixtures('unoptimised_compiles')`.
  """
  before = jax.config.read('jax_disable_most_optimizations')
  jax.clear_caches()
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', before)
  jax.clear_caches()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  """Turns a skipped test into a failure: a fresh clone runs every test.

  Everything a test needs is in the repository (real motion capture under
  tests/testdata/) or in the `[test]` extra, so a skip can only mean a
  missing install or a file the suite should carry.
  """
  outcome = yield
  report = outcome.get_result()
  if report.skipped and not hasattr(report, 'wasxfail'):
    report.outcome = 'failed'
    report.longrepr = (f'{item.nodeid} skipped ({report.longrepr}); this '
                       'suite allows no skipped tests')
