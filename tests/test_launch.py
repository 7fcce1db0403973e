"""The launch scripts: --dry_run commands (exit 0, nothing run), usage errors."""

import pathlib
import shlex
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


def _lease_commands(out_dir, *options):
  """{group: benchmark argv} from `gpu_lease.sh --dry_run`, in run order."""
  result = _run('gpu_lease.sh', '--dry_run', *options, str(out_dir))
  assert result.returncode == 0, result.stderr
  commands = {}
  for line in result.stdout.strip().splitlines():
    name, _, command = line.partition(': ')
    words = shlex.split(command)
    assert words[:3] == ['python3', '-m', 'l2a_jax.benchmark'], line
    commands[name.split(' (at most ')[0]] = words[3:]
  return commands


def test_gpu_lease_dry_run_lists_valid_benchmark_commands(tmp_path):
  from l2a_jax.benchmark import cli as benchmark  # pylint: disable=g-import-not-at-top
  commands = _lease_commands(tmp_path)
  assert list(commands) == [
      'tcpformer_train', 'l2a_train', 'tcpformer_b16', 'tcpformer_compile',
      'l2a_compile', 'tcpformer_attention_xla', 'l2a_attention_xla', 'infer']
  assert not tmp_path.joinpath('results').exists()  # Nothing was run.
  tmp_path.joinpath('results').mkdir()  # parse_flags checks --json's folder.
  measured = {}
  for name, args in commands.items():
    argv = benchmark.take_config_overrides(['benchmark', *args])
    try:
      benchmark.FLAGS(argv)
      options = benchmark.parse_flags()  # Configs load, overrides apply.
      measured[name] = (
          [(c.model.name, c.model.num_frames, c.model.attention_impl)
           for _, c in options['configs']],
          list(benchmark.FLAGS.frameworks), list(benchmark.FLAGS.dtype),
          benchmark.FLAGS.batch_size, benchmark.FLAGS.json)
    finally:
      benchmark.FLAGS.unparse_flags()
      benchmark.take_config_overrides(['benchmark'])
  # The GPU rows: full-size T = 243 models, both dtypes, torch eager
  # and torch.compile, batch 16 at T = 243, cuDNN ('auto') against XLA.
  assert measured['tcpformer_train'][:4] == (
      [('tcpformer', 243, 'auto')], ['jax', 'torch'],
      ['bfloat16', 'float32'], 4)
  assert measured['l2a_train'][:4] == (
      [('l2a', 243, 'auto')], ['jax', 'torch'], ['bfloat16', 'float32'], 16)
  assert measured['tcpformer_b16'][0] == [('tcpformer', 243, 'auto')]
  assert measured['tcpformer_b16'][3] == 16
  assert measured['tcpformer_compile'][1] == ['torch_compile']
  assert measured['l2a_attention_xla'][0] == [('l2a', 243, 'xla')]
  assert measured['infer'][0] == [('tcpformer', 243, 'auto'),
                                  ('l2a', 243, 'auto')]
  assert all(m[4] == str(tmp_path / 'results' / f'{name}.json')
             for name, m in measured.items())


def test_gpu_lease_tiny_shrinks_every_group_and_bad_usage_exits_2(tmp_path):
  commands = _lease_commands(tmp_path, '--tiny')
  for args in commands.values():
    assert '--config.model.depth=2' in args and '--steps' in args
    assert args[args.index('--steps') + 1] == '3'
    assert all(a.endswith(':frames=27') for i, a in enumerate(args)
               if i and args[i - 1] == '--config')
  bad_budget = _run('gpu_lease.sh', str(tmp_path), 'soon')
  assert bad_budget.returncode == 2
  assert "BUDGET_S: expected a number of seconds, got 'soon'" in (
      bad_budget.stderr)
  assert _run('gpu_lease.sh', '--fast', str(tmp_path)).returncode == 2
  assert not tmp_path.joinpath('results').exists()
