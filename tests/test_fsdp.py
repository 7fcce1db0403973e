"""FSDP parameter placement: which dimension of a parameter is split.

The FSDP training runs (FSDP on 8 fake devices matches data parallelism, its
checkpoint resumes on 1 device) are in tests/test_train_e2e.py, next to the
data-parallel runs they are compared with.
"""

import jax

from l2a_jax import sharding


def test_fsdp_spec_splits_the_largest_divisible_dimension():
  assert sharding.fsdp_spec((16, 64), 4) == jax.sharding.PartitionSpec(
      None, 'fsdp')
  assert sharding.fsdp_spec((2, 12, 3), 4) == jax.sharding.PartitionSpec(
      None, 'fsdp', None)
  assert sharding.fsdp_spec((3, 5), 4) == jax.sharding.PartitionSpec()
  assert sharding.fsdp_spec((), 4) == jax.sharding.PartitionSpec()
  assert sharding.fsdp_spec((64,), 1) == jax.sharding.PartitionSpec()
