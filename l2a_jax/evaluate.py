"""Test-set evaluation: padded batches, flip TTA, protocol aggregation.

The jitted evaluation step predicts a globally sharded batch (optionally
averaging `model(x)` with `flip(model(flip(x)))`), zeroes the predicted root,
scales to mm with the batch's `scale_to_mm`, and returns per-frame errors.
The host scatters them onto the test frames (`metrics.FrameAccumulator`) and
averages with the dataset's protocol:

- Human3.6M ('h36m' data with its 15 actions): the MotionBERT protocol,
  action-wise mean of per-frame errors (the 2.5D factor, camera mm for
  VideoPose3D-format data and the three blocked sequences are already in the
  batches' `scale_to_mm`, `targets_mm` and `valid`);
- everything else (MPI-INF-3DHP, synthetic, BVH): the mean over all valid
  frames, with PCK@150mm and AUC on the 14-joint subset.

`evaluate_checkpoint` evaluates a saved (or converted) checkpoint without
training: `python -m l2a_jax.main --mode=eval --config ... --workdir ...`.
"""

import json
import time
from typing import Any, Callable, Iterable, Mapping

from absl import logging
from etils import epath
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from l2a_jax import atomic_output
from l2a_jax import baselines
from l2a_jax import checkpointing
from l2a_jax import metrics
from l2a_jax import progress as progress_lib
from l2a_jax import run_setup
from l2a_jax import sharding
from l2a_jax import visualize
from l2a_jax.data import skeleton as skeleton_lib

EVAL_METRICS_FILE = 'eval_metrics.json'
PICTURE_FILE = 'skeletons.png'
# Metrics defined whenever there is a valid frame: NaN or Inf there means
# the model produced non-finite poses (MPJVE / acceleration may be
# undefined, e.g. with one frame, and are written as null).
REQUIRED_FINITE = ('mpjpe_mm', 'p_mpjpe_mm', 'n_mpjpe_mm')


class NonFiniteMetricError(FloatingPointError):
  """An evaluation metric is NaN or Inf; nothing is written."""


def flip_poses(poses: jax.Array, skeleton: skeleton_lib.Skeleton) -> jax.Array:
  """Left-right mirror in normalised coordinates (jnp, jit-friendly).

  Args:
    poses: `[..., joints, channels]` with x in channel 0 (inputs with a
      confidence channel or 3D outputs).
    skeleton: gives the left/right swap.

  Returns:
    Same shape: x negated, left and right joints swapped.
  """
  flipped = poses[..., skeleton.flip_permutation, :]
  sign = jnp.ones((poses.shape[-1],), poses.dtype).at[0].set(-1)
  return flipped * sign


def predict(
    model: nnx.Module,
    inputs: jax.Array,
    skeleton: skeleton_lib.Skeleton,
    flip_test: bool,
) -> jax.Array:
  """Model output, optionally with flip test-time augmentation.

  Args:
    model: the lifting model.
    inputs: `[batch, frames, joints, dim_in]`.
    skeleton: the joint order of the data (for the flip).
    flip_test: average with the un-flipped prediction of the flipped input.

  Returns:
    `[batch, frames, joints, 3]` in normalised units, root not yet zeroed.

  With `flip_test` the clips and their mirrors run as one batch of 2 x
  batch (one model call: one set of weight reads and larger matmuls).
  Clip i and its mirror sit in rows 2i and 2i + 1, so a batch sharded over
  the data axis stays local to its devices.
  """
  if not flip_test:
    return model(inputs)
  both = jnp.stack([inputs, flip_poses(inputs, skeleton)], axis=1)
  pred = model(both.reshape(-1, *inputs.shape[1:]))
  pred = pred.reshape(inputs.shape[0], 2, *pred.shape[1:])
  return 0.5 * (pred[:, 0] + flip_poses(pred[:, 1], skeleton))


def make_eval_step(
    graphdef: nnx.GraphDef,
    skeleton: skeleton_lib.Skeleton,
    flip_test: bool,
    mesh: jax.sharding.Mesh,
) -> Callable[..., dict[str, jax.Array]]:
  """The jitted evaluation step.

  The predicted root is set to 0 and every other joint is left as predicted
  (the MotionBERT / TCPFormer protocol, data_and_metrics.md section 6 step
  1; the predicted root is *not* subtracted from the other joints).

  Args:
    graphdef: the model's graph definition (`nnx.split`).
    skeleton: joint order of the data.
    flip_test: flip test-time augmentation.
    mesh: the data mesh.

  Returns:
    `step(params, rest, batch, baseline_params) -> outputs`: `params` and
    `rest` are the model's parameter and other state (pure dicts,
    replicated); `batch` holds the `_device_batch` fields as global arrays;
    `baseline_params` the fitted `baselines.fit` arrays (replicated), or
    None (no baselines).
    Outputs: the errors of `metrics.eval_errors` (mm), the same for every
    baseline under `baseline/<name>/<error>`, `pred_mm` `[b, T, J, 3]`,
    and `inputs`, `targets_mm`, `scale_to_mm`, `frame_id`, `valid`,
    `action_id` passed through so that all processes see every row in the
    same order.
  """
  root = skeleton.root

  def eval_step(params, rest, batch, baseline_params):
    model = nnx.merge(graphdef, params, rest)
    pred = predict(model, batch['inputs'], skeleton, flip_test)
    pred = pred.at[:, :, root].set(0.0)
    scale = batch['scale_to_mm'][:, :, None, None]
    pred_mm = pred * scale
    errors = metrics.eval_errors(pred_mm, batch['targets_mm'])
    guesses = {} if baseline_params is None else baselines.predict(
        baseline_params, batch['inputs'], batch['zero_depth_scale'], root)
    for name, guess in guesses.items():
      for key, value in metrics.eval_errors(guess * scale,
                                            batch['targets_mm']).items():
        errors[f'baseline/{name}/{key}'] = value
    errors['pred_mm'] = pred_mm
    for key in ('inputs', 'targets_mm', 'scale_to_mm', 'frame_id', 'valid',
                'action_id'):
      errors[key] = batch[key]
    return errors

  replicated = sharding.replicated(mesh)
  return jax.jit(
      eval_step,
      # Parameters as they come (replicated, or split over 'fsdp').
      in_shardings=(None, replicated, sharding.batch_sharding(mesh),
                    replicated),
      out_shardings=sharding.batch_sharding(mesh),
  )


def _device_batch(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The evaluation fields, with padding rows marked invalid."""
  valid = np.asarray(batch['valid'], bool) & np.asarray(batch['mask'],
                                                        bool)[:, None]
  return {
      'inputs': np.asarray(batch['inputs'], np.float32),
      'targets_mm': np.asarray(batch['targets_mm'], np.float32),
      'scale_to_mm': np.asarray(batch['scale_to_mm'], np.float32),
      'zero_depth_scale': np.asarray(batch['zero_depth_scale'], np.float32),
      'valid': valid,
      # int32 on the devices (JAX default); test-frame counts fit easily.
      'frame_id': np.asarray(batch['frame_id'], np.int32),
      'action_id': np.asarray(batch['action_id'], np.int32),
  }


def choose_protocol(data_name: str, info: Any) -> str:
  """'action_mean' for Human3.6M with its actions, else 'frame_mean'."""
  if (data_name == 'h36m' and info.skeleton == 'h36m'
      and len(info.action_names) > 0):
    return 'action_mean'
  return 'frame_mean'


def fit_baselines(datasets: Any) -> tuple[dict[str, np.ndarray], str]:
  """Fits `baselines.fit` on the training split of `datasets`.

  Returns:
    `(params, fitted_on)`: the baseline arrays and a label naming the data
    (`dataset/config:train`, `+ other/config:train` for each
    `data.extra_train` dataset).
  """
  arrays = datasets.train_arrays
  params = baselines.fit(arrays.inputs, arrays.targets, arrays.skeleton.root)
  info = datasets.info
  name = info.name + (f'/{info.builder_config}' if info.builder_config
                      else '')
  extras = ''.join(f' + {extra}:train' for extra in info.extra_train)
  return params, f'{name}:train{extras}'


def run_evaluation(
    eval_step: Callable[..., dict[str, jax.Array]],
    params: Any,
    rest: Any,
    batches: Iterable[Mapping[str, np.ndarray]],
    mesh: jax.sharding.Mesh,
    info: Any,
    *,
    protocol: str,
    baseline_params: Mapping[str, np.ndarray] | None,
    max_batches: int = -1,
    show_progress: bool = False,
) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
  """Evaluates on (a prefix of) the test set, with the baselines beside.

  Args:
    eval_step: from `make_eval_step`.
    params: replicated parameters (pure dict).
    rest: the model's non-parameter state (pure dict).
    batches: this process's padded evaluation batches (batch contract).
    mesh: the data mesh.
    info: the dataset info (`num_test_frames`, `action_names`, `skeleton`).
    protocol: 'action_mean' | 'frame_mean' (see `metrics.FrameAccumulator`).
    baseline_params: `baselines.fit` arrays, fitted on the data the model
      was trained on; None: no baselines (`baselines` is then empty).
    max_batches: stop after this many batches (-1: all).
    show_progress: show `batches done / total` (`l2a_jax.progress`).

  Returns:
    `(results, sample)`: the metrics dict of `FrameAccumulator.results`
    plus `baselines: {name: metrics}` (the same protocol; `zero_depth` only
    where every evaluated frame has a known camera) and
    `mean_pose_baseline_mpjpe_mm`; and the clip drawn in the picture (the
    test clip whose ground truth moves most among the evaluated ones:
    `inputs`, `pred_mm`, `targets_mm` `[T, J, 3]`, `valid` `[T]`), or None.
  """
  accumulators = {}
  sample, sample_motion = None, -1.0
  zero_depth_known = True
  total = int(info.num_eval_batches)
  if max_batches >= 0:
    total = min(total, max_batches)
  progress = progress_lib.Progress(total, unit='batch', description='eval',
                                   enabled=show_progress)
  replicated = sharding.replicated(mesh)
  if baseline_params is not None:
    baseline_params = jax.device_put(
        {k: np.asarray(v, np.float32) for k, v in baseline_params.items()},
        replicated)
  try:
    for index, batch in enumerate(batches):
      if 0 <= max_batches <= index:
        break
      device_batch = _device_batch(batch)
      valid_rows = device_batch['valid']
      zero_depth_known &= bool(np.all(
          device_batch['zero_depth_scale'][valid_rows] > 0))
      out = eval_step(params, rest, sharding.global_batch(device_batch, mesh),
                      baseline_params)
      # Poses stay on the devices except for the clip that is drawn.
      wanted = [k for k in out
                if k not in ('pred_mm', 'targets_mm', 'inputs')]
      host = sharding.to_host({k: out[k] for k in wanted})
      groups = {'model': {k: v for k, v in host.items()
                          if not k.startswith('baseline/')}}
      for key, value in host.items():
        if key.startswith('baseline/'):
          _, name, metric = key.split('/')
          groups.setdefault(name, {})[metric] = value
      for name, errors in groups.items():
        if name not in accumulators:
          accumulators[name] = metrics.FrameAccumulator(
              info.num_test_frames, host['joint'].shape[-1],
              info.action_names)
        accumulators[name].add(errors, host['frame_id'], host['valid'],
                               host['action_id'])
      # The picture shows the clip with the most ground-truth motion.
      if host['valid'].any():
        poses = sharding.to_host({'targets_mm': out['targets_mm']})
        speed = np.linalg.norm(np.diff(poses['targets_mm'], axis=1),
                               axis=-1).mean(axis=(1, 2))
        speed = np.where(host['valid'].all(axis=1), speed, -1.0)
        row = int(np.argmax(speed))
        if speed[row] > sample_motion:
          sample_motion = float(speed[row])
          clip = sharding.to_host({k: out[k] for k in
                                   ('pred_mm', 'targets_mm', 'inputs')})
          sample = {k: v[row] for k, v in clip.items()}
          sample['valid'] = host['valid'][row]
      progress.update(1)
  finally:
    progress.close()
  if not accumulators:
    raise ValueError('the evaluation split yielded no batch')
  results = accumulators.pop('model').results(protocol, info.skeleton)
  bad = [k for k in REQUIRED_FINITE if not np.isfinite(results[k])]
  if bad:
    raise NonFiniteMetricError(
        f'evaluation gave non-finite {", ".join(bad)} '
        f'({results[bad[0]]}) over {results["num_frames"]} frames: the model '
        'predicts NaN or Inf poses')
  results['baselines'] = {}
  for name, accumulator in accumulators.items():
    if name == 'zero_depth' and not zero_depth_known:
      continue
    table = accumulator.results(protocol, info.skeleton)
    table.pop('per_action')
    results['baselines'][name] = table
  if 'mean_pose' in results['baselines']:
    results['mean_pose_baseline_mpjpe_mm'] = (
        results['baselines']['mean_pose']['mpjpe_mm'])
  return results, sample


def write_eval_metrics(directory: str, results: Mapping[str, Any]) -> str:
  """Writes `DIRECTORY/eval_metrics.json` atomically (process 0 only).

  Args:
    directory: run directory or an evaluation's own folder (local or a URL
      such as gs://bucket/run); created if missing.
    results: the metrics; non-finite floats are written as null.

  Returns:
    The file path.
  """
  path = epath.Path(directory) / EVAL_METRICS_FILE

  def strict_json(value):
    # NaN is not JSON: a metric without frames (e.g. MPJVE at T = 1) -> null.
    if isinstance(value, Mapping):
      return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
      return None
    return value

  text = json.dumps(strict_json(results), indent=2, sort_keys=True,
                    allow_nan=False) + '\n'
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_output.replace_file(path, text)
  return str(path)


def write_picture(
    directory: str, sample: Mapping[str, np.ndarray] | None,
    skeleton_name: str, num_frames: int = 5
) -> str | None:
  """Draws frames of the sample clip (process 0 only); returns the path.

  Args:
    directory: where `skeletons.png` goes.
    sample: from `run_evaluation` (`inputs`, `pred_mm`, `targets_mm`,
      `valid`), or None.
    skeleton_name: joint order.
    num_frames: frames drawn, evenly spread over the clip's valid frames.
  """
  if sample is None or jax.process_index() != 0:
    return None
  frames = np.flatnonzero(sample['valid'])
  chosen = np.unique(frames[np.linspace(
      0, len(frames) - 1, min(num_frames, len(frames))).round().astype(int)])
  clip_error = float(np.mean(np.linalg.norm(
      sample['pred_mm'][frames] - sample['targets_mm'][frames], axis=-1)))
  return visualize.plot_clip(
      sample['inputs'][chosen], sample['pred_mm'][chosen],
      sample['targets_mm'][chosen], skeleton_lib.get(skeleton_name),
      epath.Path(directory) / PICTURE_FILE,
      frame_labels=[f'frame {i}' for i in chosen],
      title=(f'one test clip ({len(frames)} frames): MPJPE {clip_error:.1f} '
             f'mm; 2D input, prediction (orange) and ground truth (blue)'),
  )


def summary_line(results: Mapping[str, Any]) -> str:
  """One line with the headline numbers, the model's and the baselines'."""

  def numbers(table):
    return (f"MPJPE {table['mpjpe_mm']:.1f} / P-MPJPE "
            f"{table['p_mpjpe_mm']:.1f} mm (x {table['error_x_mm']:.1f}, y "
            f"{table['error_y_mm']:.1f}, depth {table['error_depth_mm']:.1f})")

  parts = [numbers(results)]
  for name, label in (('linear', 'linear lifter'), ('mean_pose', 'mean pose'),
                      ('zero_depth', 'zero-depth back-projection')):
    if name in results.get('baselines', {}):
      parts.append(f"{label} {numbers(results['baselines'][name])}")
  if results.get('protocol') == 'frame_mean':
    parts.append(f"PCK@150mm {results['pck_150mm']:.1f}%, "
                 f"AUC {results['auc']:.1f}%")
  parts.append(f"{results['num_frames']} frames ({results['protocol']})")
  return '; '.join(parts)


def eval_folder_name(data_config: ml_collections.ConfigDict) -> str:
  """`eval_<dataset>[_<config>]_<split>` for `--mode=eval` outputs."""
  parts = [str(data_config.name)]
  if data_config.get('builder_config'):
    parts.append(str(data_config.builder_config))
  parts.append(str(data_config.test_split))
  name = '_'.join(parts)
  return 'eval_' + ''.join(c if c.isalnum() or c in '-._' else '-'
                           for c in name)


def evaluate_checkpoint(
    config: ml_collections.ConfigDict, workdir: str, step: int | None = None
) -> dict[str, Any]:
  """Evaluates a checkpoint of `workdir` on the full test set of `config.data`.

  Works for training checkpoints and converted (params-only) ones, on the
  training data or on another dataset (`--config.data.*` overrides). The
  results go to their own folder `WORKDIR/eval_<dataset>_<split>/`
  (`eval_metrics.json`, `skeletons.png`), never over the training run's
  files. The baselines are the ones fitted on the data the model was
  trained on (`WORKDIR/baselines.json`, written by training); a workdir
  without that file (a converted checkpoint) fits them on `config.data`'s
  training split and says so in `baselines_fitted_on`.

  Args:
    config: the run config (model and data sections are used).
    workdir: directory with `checkpoints/`.
    step: which checkpoint (None: the latest).

  Returns:
    The metrics dict.
  """
  start = time.perf_counter()
  run_setup.enable_compilation_cache(config, workdir)
  mesh = run_setup.create_mesh(config)
  datasets = run_setup.load_datasets(config)
  graphdef, abstract_params, rest = run_setup.abstract_model_state(
      config, mesh)
  # The same verified restore as predict: finite, checksums, same model
  # config; the latest usable checkpoint when `step` is None.
  params, meta = checkpointing.restore_params(
      workdir, abstract_params, step, model_config=config.model)
  logging.info('Evaluating checkpoint step %s of %s.', meta.get('step'),
               workdir)
  baseline_params, fitted_on = read_baselines(workdir)
  if baseline_params is None and datasets.info.num_train_clips:
    baseline_params, fitted_on = fit_baselines(datasets)
    logging.warning('%s has no %s: baselines fitted on %s instead.', workdir,
                    BASELINES_FILE, fitted_on)
  elif baseline_params is None:
    logging.warning('%s has no %s and the data has no training split: no '
                    'baselines.', workdir, BASELINES_FILE)
  eval_step = make_eval_step(graphdef, skeleton_lib.get(datasets.info.skeleton),
                             config.eval.flip_test, mesh)
  results, sample = run_evaluation(
      eval_step, params, rest, datasets.make_eval_iter(), mesh, datasets.info,
      protocol=choose_protocol(config.data.name, datasets.info),
      baseline_params=baseline_params,
      show_progress=jax.process_index() == 0,
  )
  results['step'] = int(meta.get('step', 0))
  results['baselines_fitted_on'] = fitted_on
  results['eval_seconds'] = time.perf_counter() - start
  directory = str(epath.Path(workdir) / eval_folder_name(config.data))
  write_eval_metrics(directory, results)
  if config.eval.write_picture:
    write_picture(directory, sample, datasets.info.skeleton)
  logging.info('Evaluation (%s): %s', directory, summary_line(results))
  return results


BASELINES_FILE = 'baselines.json'


def write_baselines(workdir: str, params: Mapping[str, np.ndarray],
                    fitted_on: str) -> None:
  """Saves fitted baselines as `WORKDIR/baselines.json` (process 0 only)."""
  if jax.process_index() != 0:
    return
  path = epath.Path(workdir) / BASELINES_FILE
  text = json.dumps(baselines.to_json(dict(params), fitted_on))
  if path.exists() and path.read_text() == text:
    return  # A resumed run: the same data gave the same fit.
  try:
    atomic_output.replace_file(path, text)
  except OSError as error:
    raise OSError(f'cannot write {path}: {error.strerror or error}') from error


def read_baselines(workdir: str
                   ) -> tuple[dict[str, np.ndarray] | None, str | None]:
  """`(params, fitted_on)` from `WORKDIR/baselines.json`, or (None, None)."""
  path = epath.Path(workdir) / BASELINES_FILE
  if not path.exists():
    return None, None
  try:
    record = json.loads(path.read_text())
  except json.JSONDecodeError as error:
    raise ValueError(f'{path}: not valid JSON ({error})') from None
  try:
    return baselines.from_json(record)
  except ValueError as error:
    raise ValueError(f'{path}: {error}') from None
