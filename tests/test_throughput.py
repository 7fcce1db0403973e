"""Throughput arithmetic and the wall-time split (no timing assertions)."""

import pytest

from l2a_jax import throughput


def test_rate_scalars_global_per_device_and_mfu():
  scalars = throughput.rate_scalars(10, 5.0, 64, 8, 2e12, 1e15)
  assert scalars['step_time_s'] == pytest.approx(0.5)
  assert scalars['clips_per_second'] == pytest.approx(128.0)
  assert scalars['clips_per_second_per_device'] == pytest.approx(16.0)
  # 2 TFLOP per device per 0.5 s step on a 1 PFLOP/s device: 0.4 %.
  assert scalars['mfu'] == pytest.approx(0.004)
  assert 'mfu' not in throughput.rate_scalars(10, 5.0, 64, 8, 2e12, None)
  assert 'mfu' not in throughput.rate_scalars(10, 5.0, 64, 8, None, 1e15)


def test_no_peak_on_cpu():
  assert throughput.device_peak_flops('float32') is None


def test_wall_clock_parts_add_up_to_the_total():
  wall = throughput.WallClock()
  with wall.timed('compilation'):
    sum(range(10000))
  with wall.timed('evaluation'):
    pass
  totals = wall.totals()
  assert set(totals) == {'total', 'compilation', 'input', 'checkpointing',
                         'evaluation', 'training'}
  parts = sum(v for k, v in totals.items() if k != 'total')
  assert parts == pytest.approx(totals['total'], rel=1e-3, abs=1e-3)
  assert totals['compilation'] > 0 and totals['input'] == 0
  summary = wall.summary()
  assert summary.startswith('Wall time ') and 'compilation ' in summary
  with pytest.raises(ValueError, match="unknown wall-time category 'io'"):
    with wall.timed('io'):
      pass
