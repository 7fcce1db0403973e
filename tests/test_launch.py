"""The launch scripts: --dry_run commands (exit 0, nothing run), usage errors."""

import pathlib
import subprocess

_LAUNCH = pathlib.Path(__file__).resolve().parent.parent / 'launch'


def _run(script, *args, env=None):
  return subprocess.run(['bash', str(_LAUNCH / script), *args],
                        capture_output=True, text=True, timeout=60,
                        check=False, env=env)


def test_local_dry_run_prints_one_command_per_process(tmp_path):
  result = _run('local.sh', '--dry_run', '3', 'configs/tiny.py',
                str(tmp_path / 'run'), '--config.train.num_train_steps=5')
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 3
  for index, line in enumerate(lines):
    assert 'python -m l2a_jax.main --config=configs/tiny.py' in line
    assert f'L2A_JAX_PROCESS_ID={index} ' in line
    assert 'L2A_JAX_NUM_PROCESSES=3 ' in line
    assert 'L2A_JAX_COORDINATOR_ADDRESS=127.0.0.1:' in line
    assert '--config.train.num_train_steps=5' in line
    assert line.endswith(f'{tmp_path}/run/logs/process{index}.log 2>&1')
  assert not (tmp_path / 'run').exists()  # Nothing was started.


def test_slurm_dry_run_prints_the_srun_command():
  result = _run('slurm.sbatch', '--dry_run', 'configs/large_batch.py:batch=1024',
                '/shared/runs/b1024', '--config.data.data_dir=/shared/tfds')
  assert result.returncode == 0, result.stderr
  line = result.stdout.strip()
  assert line.startswith('srun ') and '--gpus-per-task=1' in line
  assert ('python -m l2a_jax.main --config=configs/large_batch.py:batch=1024 '
          '--workdir=/shared/runs/b1024 --config.data.data_dir=/shared/tfds'
          in line)


def test_tpu_vm_dry_run_prints_create_or_reuse_and_the_worker_command():
  result = _run('tpu_vm.sh', '--dry_run', 'l2a-pod', 'us-west4-a',
                'v5litepod-32', 'configs/large_batch.py', 'gs://bucket/run',
                '--config.data.data_dir=gs://bucket/tfds')
  assert result.returncode == 0, result.stderr
  out = result.stdout
  assert ('gcloud compute tpus tpu-vm describe l2a-pod --zone us-west4-a'
          in out)
  assert '--accelerator-type v5litepod-32' in out
  assert '--worker=all' in out
  assert ('python -m l2a_jax.main --config=configs/large_batch.py '
          '--workdir=gs://bucket/run --config.data.data_dir=gs://bucket/tfds'
          in out)


def test_bad_usage_exits_2():
  assert _run('local.sh', 'two', 'configs/tiny.py', '/tmp/x').returncode == 2
  assert _run('slurm.sbatch', '--dry_run', 'configs/tiny.py').returncode == 2
  local_workdir = _run('tpu_vm.sh', '--dry_run', 'n', 'z', 'v4-8',
                       'configs/tiny.py', '/tmp/run')
  assert local_workdir.returncode == 2
  assert 'must be a gs:// path' in local_workdir.stderr


def test_real_motion_needs_both_cmu_clips(tmp_path):
  (tmp_path / '01_01.bvh').write_text('HIERARCHY\n')
  result = _run('real_motion.sh', str(tmp_path), str(tmp_path / 'run'),
                str(tmp_path / 'data'))
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      f'launch/real_motion.sh: {tmp_path}/131_01.bvh: no such file']
  assert not (tmp_path / 'data').exists()


def test_batch_scaling_rejects_a_non_numeric_epoch_count(tmp_path):
  result = _run('batch_scaling.sh', str(tmp_path / 'runs'), 'ten')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      'launch/batch_scaling.sh: EPOCHS and LARGE_BATCH must be positive '
      "integers, got 'ten' and '512'"]
  assert not (tmp_path / 'runs').exists()
