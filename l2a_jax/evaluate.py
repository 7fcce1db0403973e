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
from typing import Any, Callable, Iterable, Mapping

from absl import logging
from etils import epath
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

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
  """
  pred = model(inputs)
  if flip_test:
    pred_flipped = model(flip_poses(inputs, skeleton))
    pred = 0.5 * (pred + flip_poses(pred_flipped, skeleton))
  return pred


def make_eval_step(
    graphdef: nnx.GraphDef,
    skeleton: skeleton_lib.Skeleton,
    flip_test: bool,
    mesh: jax.sharding.Mesh,
) -> Callable[..., dict[str, jax.Array]]:
  """The jitted evaluation step.

  Args:
    graphdef: the model's graph definition (`nnx.split`).
    skeleton: joint order of the data.
    flip_test: flip test-time augmentation.
    mesh: the data mesh.

  Returns:
    `step(params, rest, batch) -> outputs`: `params` and `rest` are the
    model's parameter and other state (pure dicts, replicated); `batch` holds
    the `_device_batch` fields as global arrays. Outputs: the errors of
    `metrics.eval_errors` (mm), `pred_mm` `[b, T, J, 3]`, and
    `targets_mm`, `scale_to_mm`, `frame_id`, `valid`, `action_id` passed
    through so that all processes see every row in the same order.
  """
  root = skeleton.root

  def eval_step(params, rest, batch):
    model = nnx.merge(graphdef, params, rest)
    pred = predict(model, batch['inputs'], skeleton, flip_test)
    pred = pred - pred[:, :, root:root + 1]
    pred_mm = pred * batch['scale_to_mm'][:, :, None, None]
    errors = metrics.eval_errors(pred_mm, batch['targets_mm'])
    errors['pred_mm'] = pred_mm
    for key in ('targets_mm', 'scale_to_mm', 'frame_id', 'valid',
                'action_id'):
      errors[key] = batch[key]
    return errors

  replicated = sharding.replicated(mesh)
  return jax.jit(
      eval_step,
      in_shardings=(replicated, replicated, sharding.batch_sharding(mesh)),
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


def mean_training_pose(train_dataset: Any, num_batches: int = 20
                       ) -> np.ndarray:
  """Mean root-relative target pose over the first training batches.

  Reads a fresh iterator, so the training stream is not disturbed.

  Args:
    train_dataset: the `grain.IterDataset` of training batches.
    num_batches: how many batches to average.

  Returns:
    float32 `[joints, 3]` in normalised units.
  """
  total, count = 0.0, 0
  for index, batch in enumerate(iter(train_dataset)):
    if index >= num_batches:
      break
    targets = np.asarray(batch['targets'], np.float64)
    total = total + targets.sum(axis=(0, 1))
    count += targets.shape[0] * targets.shape[1]
  return (total / max(count, 1)).astype(np.float32)


def run_evaluation(
    eval_step: Callable[..., dict[str, jax.Array]],
    params: Any,
    rest: Any,
    batches: Iterable[Mapping[str, np.ndarray]],
    mesh: jax.sharding.Mesh,
    info: Any,
    *,
    protocol: str,
    max_batches: int = -1,
    baseline_pose: np.ndarray | None = None,
    show_progress: bool = False,
) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
  """Evaluates on (a prefix of) the test set.

  Args:
    eval_step: from `make_eval_step`.
    params: replicated parameters (pure dict).
    rest: the model's non-parameter state (pure dict).
    batches: this process's padded evaluation batches (batch contract).
    mesh: the data mesh.
    info: the dataset info (`num_test_frames`, `action_names`, `skeleton`).
    protocol: 'action_mean' | 'frame_mean' (see `metrics.FrameAccumulator`).
    max_batches: stop after this many batches (-1: all).
    baseline_pose: optional `[joints, 3]` pose (normalised units, e.g.
      `mean_training_pose`) predicted for every frame; its MPJPE under the
      same protocol is added as `mean_pose_baseline_mpjpe_mm`.
    show_progress: show `batches done / total` (`l2a_jax.progress`).

  Returns:
    `(results, sample)`: the metrics dict of `FrameAccumulator.results`, and
    the first clip with a valid frame (`pred_mm`, `targets_mm` `[T, J, 3]`,
    `valid` `[T]`) for pictures, or None.
  """
  accumulator = baseline = None
  sample = None
  total = int(info.num_eval_batches)
  if max_batches >= 0:
    total = min(total, max_batches)
  progress = progress_lib.Progress(total, unit='batch', description='eval',
                                   enabled=show_progress)
  try:
    for index, batch in enumerate(batches):
      if 0 <= max_batches <= index:
        break
      out = eval_step(params, rest,
                      sharding.global_batch(_device_batch(batch), mesh))
      # Poses stay on the devices except for the one clip that is drawn (and
      # the ground truth when a baseline is scored).
      wanted = [k for k in out if k not in ('pred_mm', 'targets_mm')]
      if baseline_pose is not None:
        wanted.append('targets_mm')
      host = sharding.to_host({k: out[k] for k in wanted})
      if accumulator is None:
        accumulator = metrics.FrameAccumulator(
            info.num_test_frames, host['joint'].shape[-1], info.action_names
        )
        baseline = metrics.FrameAccumulator(
            info.num_test_frames, host['joint'].shape[-1], info.action_names
        )
      accumulator.add(host, host['frame_id'], host['valid'], host['action_id'])
      if baseline_pose is not None:
        guess = baseline_pose[None, None] * host['scale_to_mm'][..., None, None]
        baseline.add(
            {'joint': np.linalg.norm(guess - host['targets_mm'], axis=-1)},
            host['frame_id'], host['valid'], host['action_id'])
      if sample is None:
        rows = np.flatnonzero(host['valid'].any(axis=1))
        if rows.size:
          poses = sharding.to_host({k: out[k] for k in ('pred_mm',
                                                        'targets_mm')})
          sample = {k: v[rows[0]] for k, v in poses.items()}
          sample['valid'] = host['valid'][rows[0]]
      progress.update(1)
  finally:
    progress.close()
  if accumulator is None:
    raise ValueError('the evaluation split yielded no batch')
  results = accumulator.results(protocol, info.skeleton)
  bad = [k for k in REQUIRED_FINITE if not np.isfinite(results[k])]
  if bad:
    raise NonFiniteMetricError(
        f'evaluation gave non-finite {", ".join(bad)} '
        f'({results[bad[0]]}) over {results["num_frames"]} frames: the model '
        'predicts NaN or Inf poses')
  if baseline_pose is not None:
    results['mean_pose_baseline_mpjpe_mm'] = baseline.results(
        protocol, info.skeleton)['mpjpe_mm']
  return results, sample


def write_eval_metrics(workdir: str, results: Mapping[str, Any]) -> str:
  """Writes `WORKDIR/eval_metrics.json` atomically (process 0 only).

  Args:
    workdir: run directory (local or a URL such as gs://bucket/run).
    results: the metrics; non-finite floats are written as null.

  Returns:
    The file path.
  """
  path = epath.Path(workdir) / EVAL_METRICS_FILE

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
    temporary = path.with_name(f'{path.name}.tmp')
    temporary.write_text(text)
    temporary.replace(path)
  return str(path)


def write_picture(
    workdir: str, sample: Mapping[str, np.ndarray] | None, skeleton_name: str
) -> str | None:
  """Draws 3 frames of the sample clip (process 0 only); returns the path."""
  if sample is None or jax.process_index() != 0:
    return None
  frames = np.flatnonzero(sample['valid'])
  chosen = frames[np.linspace(0, len(frames) - 1, min(3, len(frames)))
                  .round().astype(int)]
  pred, target = sample['pred_mm'][chosen], sample['targets_mm'][chosen]
  error = float(np.mean(np.linalg.norm(pred - target, axis=-1)))
  return visualize.plot_skeletons(
      pred, target, skeleton_lib.get(skeleton_name),
      epath.Path(workdir) / PICTURE_FILE,
      frame_labels=[f'frame {i}' for i in chosen],
      title=f'prediction vs ground truth (MPJPE of these frames: '
            f'{error:.1f} mm)',
  )


def summary_line(results: Mapping[str, Any]) -> str:
  """One line with the headline numbers."""
  parts = [f"MPJPE {results['mpjpe_mm']:.2f} mm"]
  if 'mean_pose_baseline_mpjpe_mm' in results:
    parts[0] += (f" (mean-pose baseline "
                 f"{results['mean_pose_baseline_mpjpe_mm']:.2f} mm)")
  parts.append(f"P-MPJPE {results['p_mpjpe_mm']:.2f} mm")
  if results.get('protocol') == 'frame_mean':
    parts += [f"PCK@150mm {results['pck_150mm']:.1f}%",
              f"AUC {results['auc']:.1f}%"]
  parts.append(f"{results['num_frames']} frames ({results['protocol']})")
  return ', '.join(parts)


def evaluate_checkpoint(
    config: ml_collections.ConfigDict, workdir: str, step: int | None = None
) -> dict[str, Any]:
  """Evaluates a checkpoint of `workdir` on the full test set.

  Works for training checkpoints and converted (params-only) ones. Writes
  `eval_metrics.json` and the skeleton picture to the workdir.

  Args:
    config: the run config (model and data sections are used).
    workdir: directory with `checkpoints/`.
    step: which checkpoint (None: the latest).

  Returns:
    The metrics dict.
  """
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
  eval_step = make_eval_step(graphdef, skeleton_lib.get(datasets.info.skeleton),
                             config.eval.flip_test, mesh)
  results, sample = run_evaluation(
      eval_step, params, rest, datasets.make_eval_iter(), mesh, datasets.info,
      protocol=choose_protocol(config.data.name, datasets.info),
      baseline_pose=(mean_training_pose(datasets.train_dataset)
                     if datasets.info.num_train_clips else None),
      show_progress=jax.process_index() == 0,
  )
  results['step'] = int(meta.get('step', 0))
  write_eval_metrics(workdir, results)
  if config.eval.write_picture:
    write_picture(workdir, sample, datasets.info.skeleton)
  logging.info('Final evaluation: %s', summary_line(results))
  return results
