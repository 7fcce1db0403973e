"""Throughput arithmetic and the wall-time split (no timing assertions)."""

import json

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


def test_run_summary_rates_exclude_the_non_training_time(tmp_path):
  totals = {'total': 10.0, 'compilation': 3.0, 'input': 0.5,
            'checkpointing': 0.5, 'evaluation': 2.0, 'training': 4.0}
  path = throughput.write_run_summary(str(tmp_path), totals, 20, 16)
  assert path == str(tmp_path / 'run_summary.json')
  summary = json.loads((tmp_path / 'run_summary.json').read_text())
  assert summary['wall_seconds'] == totals
  assert (summary['steps'], summary['global_batch']) == (20, 16)
  # 20 steps in the 4 training seconds, not in the 10 of the whole run.
  assert summary['train_steps_per_second'] == pytest.approx(5.0)
  assert summary['train_clips_per_second'] == pytest.approx(80.0)
  assert [p.name for p in tmp_path.iterdir()] == ['run_summary.json']
