"""Fixtures shared by the test modules."""

import os

import jax
import pytest

# `pytester` runs small pytest sessions (tests/test_suite_habits.py).
pytest_plugins = ['pytester']


def _session_root(tmp_path_factory):
  """A folder shared by every pytest-xdist worker of this session."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent  # <base>/popen-gwN: the workers' common parent.
  return root


_CACHE_VARIABLES = ('JAX_COMPILATION_CACHE_DIR',
                    'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS')


@pytest.fixture(scope='session', autouse=True)
def subprocess_compilation_cache(tmp_path_factory):
  """One persistent XLA compilation cache for the session's subprocesses.

  The subprocess tests (`l2a_jax.main` on the tiny config, `predict`, ...)
  compile the same small programs again and again in fresh processes; with
  this cache a program is compiled once per session and then loaded. The
  folder is new for every session (nothing carries over between runs, so a
  run on a fresh CI machine behaves like a local one) and shared by the
  xdist workers. Only subprocesses see it: JAX read its environment when
  this process imported it, so in-process tests compile as before (the
  memory and compile-count tests included). The trainer sets its cache
  from `config.train.compilation_cache_dir` ('auto' = ~/.cache), so the
  subprocess helpers pass `--config.train.compilation_cache_dir=` this
  folder (`os.environ['JAX_COMPILATION_CACHE_DIR']`); tests about the cache
  itself remove the variables from their subprocess environment.
  """
  path = _session_root(tmp_path_factory) / 'jax_compilation_cache'
  path.mkdir(exist_ok=True)
  saved = {name: os.environ.get(name) for name in _CACHE_VARIABLES}
  os.environ['JAX_COMPILATION_CACHE_DIR'] = str(path)
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  yield path
  for name, value in saved.items():
    if value is None:
      os.environ.pop(name, None)
    else:
      os.environ[name] = value


@pytest.fixture(scope='session')
def tiny_data_dir(tmp_path_factory):
  """A TFDS folder with configs/tiny.py's synthetic dataset, prepared once.

  For the subprocess runs of the tiny config that are not about preparing
  data (one folder per xdist worker: never two writers). The run that
  checks the quiet terminal while data is prepared (test_train_e2e.py)
  keeps its own empty folder.
  """
  # pylint: disable=g-import-not-at-top
  from l2a_jax import config_files
  from l2a_jax.data import builders
  from l2a_jax.data import synthetic_builder
  # pylint: enable=g-import-not-at-top
  tiny = os.path.join(os.path.dirname(__file__), '..', 'configs', 'tiny.py')
  config = config_files.load_sibling(tiny, 'tiny').get_config()
  data_dir = tmp_path_factory.mktemp('tiny_tfds')
  builders.prepare(builders.get_builder(
      'synthetic', synthetic_builder.synthetic_config(**config.data.synthetic),
      str(data_dir)))
  return data_dir


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


# Test modules by their running time (seconds on a 2-core CPU machine,
# slowest first). They are collected in this order, ahead of all other
# modules, so that with `--dist loadscope` (pytest.ini) the long ones start
# early and the two xdist workers finish together, instead of one worker
# ending with a long module while the other idles. Only the order changes.
_SLOW_MODULES_FIRST = (
    'test_train_e2e.py', 'test_predict.py',
    'test_train_multiprocess.py', 'test_benchmark.py',
    'test_tcpformer_scan.py', 'test_reliability.py', 'test_l2a_memory.py',
    'test_l2a_variants_add.py', 'test_attention_impl.py',
    'test_l2a_variants_replace.py', 'test_l2a_gradients.py',
    'test_compile_cache_and_flip.py', 'test_history_stack.py',
    'test_layers_memory.py', 'test_convert_l2a.py', 'test_train.py',
    'test_l2a_variants.py', 'test_bf16_policy.py',
    'test_tcpformer_numerics.py', 'test_convert_torch.py',
)


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(_SLOW_MODULES_FIRST)}
  # A stable sort: the order inside each module is kept.
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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
