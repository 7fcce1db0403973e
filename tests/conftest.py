"""Fixtures shared by the test modules."""

import pytest


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
