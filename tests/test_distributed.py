"""`distributed.decide`: explicit settings, forcing, SLURM / TPU detection."""

import pytest

from l2a_jax import distributed


def test_explicit_coordinator_from_environment():
  decision = distributed.decide(environ={
      'L2A_JAX_COORDINATOR_ADDRESS': '127.0.0.1:1234',
      'L2A_JAX_NUM_PROCESSES': '4', 'L2A_JAX_PROCESS_ID': '3'},
      on_cloud_tpu_vm=False)
  assert decision == distributed.Decision(
      True, 'explicit coordinator', '127.0.0.1:1234', 4, 3)


def test_flags_override_environment():
  decision = distributed.decide(
      coordinator_address='10.0.0.1:99', num_processes=2, process_id=0,
      environ={'L2A_JAX_COORDINATOR_ADDRESS': '127.0.0.1:1',
               'L2A_JAX_NUM_PROCESSES': '8', 'L2A_JAX_PROCESS_ID': '7'})
  assert (decision.coordinator_address, decision.num_processes,
          decision.process_id) == ('10.0.0.1:99', 2, 0)


@pytest.mark.parametrize('kwargs, message', [
    (dict(coordinator_address='h:1', num_processes=2), 'without'),
    (dict(coordinator_address='h:1', num_processes=2, process_id=2),
     r'process_id=2: expected 0\.\.1'),
    (dict(num_processes=2, process_id=0), 'without a coordinator'),
])
def test_incomplete_explicit_settings_are_one_line_errors(kwargs, message):
  with pytest.raises(ValueError, match=message):
    distributed.decide(environ={}, on_cloud_tpu_vm=False, **kwargs)


def test_slurm_multi_task_step_is_detected_single_task_is_not():
  slurm = {'SLURM_JOB_ID': '77', 'SLURM_NTASKS': '16'}
  decision = distributed.decide(environ=slurm, on_cloud_tpu_vm=False)
  assert decision.initialize and 'SLURM job 77 with 16 tasks' in decision.reason
  assert decision.coordinator_address is None  # JAX reads SLURM itself.
  single = distributed.decide(environ={'SLURM_JOB_ID': '77', 'SLURM_NTASKS': '1'},
                              on_cloud_tpu_vm=False)
  assert not single.initialize


def test_tpu_vm_detection_and_forcing():
  assert distributed.decide(environ={}, on_cloud_tpu_vm=True).initialize
  assert not distributed.decide(environ={}, on_cloud_tpu_vm=False).initialize
  # L2A_JAX_DISTRIBUTED=0 and --nodistributed switch detection off.
  assert not distributed.decide(environ={'L2A_JAX_DISTRIBUTED': '0'},
                                on_cloud_tpu_vm=True).initialize
  assert not distributed.decide(distributed=False, environ={},
                                on_cloud_tpu_vm=True).initialize
  forced = distributed.decide(environ={'L2A_JAX_DISTRIBUTED': '1'},
                              on_cloud_tpu_vm=False)
  assert forced.initialize and forced.coordinator_address is None
