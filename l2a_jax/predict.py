r"""Lifts 2D keypoints (pixels, any detector, any length) to 3D.

  python -m l2a_jax.predict --config CONFIG --workdir WORKDIR \
      --input KEYPOINTS --output OUT.npz|OUT.json \
      [--keypoint_format h36m|coco|halpe26|openpose25|mpi] [--image_size W,H] \
      [--render OUT.gif|OUT.mp4|OUT.png] [--video VIDEO.mp4] [--person N] \
      [--raw] [--stride S] [--step N] [--batch_size B] [--render_every K]

Input (docs/predict.md): an `.npz` or `.json` with `keypoints_2d` in pixels,
`[F, J, 2|3]` or `[N, F, J, 2|3]` (x, y[, confidence]) and `image_size`
[W, H] (or `--image_size`); COCO / AlphaPose result lists; an OpenPose
output folder. One person per run (`--person N`, default the
highest-scoring track). Keypoints are converted to the model's 17 joints,
gaps interpolated, screen-normalised the way the checkpoint's dataset was
(x / W * 2 - 1, y / W * 2 - H / W), lifted in sliding windows of the model's
T frames with centre-weighted blending (shorter sequences edge-padded),
flip test-time augmentation when `config.eval.flip_test`, root set to 0.

Output: `poses_3d` float32 [F, 17, 3] root-relative with `units` ('mm' or
'px', see docs/predict.md), `joint_names`, `fps` when known,
`filled_frames`, the 2D input used and more (`inference.outputs`).

`--raw`: the input array `[N, F, J, C]` / `[F, J, C]` is fed to the model
as it is (already normalised, model joint order), and `poses_3d` is the
model output untouched (no flip averaging, no root zeroing, no
denormalisation; windows as above when F != T).

The checkpoint may be of a scanned or unrolled model; its saved model
config must agree with `--config` except for execution-only fields. Every
error is one line `predict: error: ...` with exit status 1, and nothing
is written.
"""

from __future__ import annotations

from collections.abc import Sequence
import pathlib
import sys

from absl import flags
from ml_collections import config_flags
import numpy as np

from l2a_jax import cli
from l2a_jax import console
from l2a_jax.inference import errors
from l2a_jax.inference import keypoint_formats
from l2a_jax.inference import lifter as lifter_lib
from l2a_jax.inference import model_loading
from l2a_jax.inference import outputs
from l2a_jax.inference import readers
from l2a_jax.inference import rendering

InputError = errors.InputError
skeleton_for = lifter_lib.skeleton_for
load_model = model_loading.load_model


def _define_flags() -> None:
  """Defines the command-line flags (only when run as a program)."""
  config_flags.DEFINE_config_file(
      'config', None, 'Run config file; fields can be overridden with '
      '--config.KEY=VALUE.', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Run directory with checkpoints/.')
  flags.DEFINE_string('input', None, 'Keypoints: .npz / .json file or an '
                      'OpenPose folder (pixels).')
  flags.DEFINE_string('output', None, '.npz or .json to write.')
  flags.DEFINE_enum('keypoint_format', None, list(keypoint_formats.FORMATS),
                    'Input joint layout (default: from the file, else by '
                    'joint count: 17 = h36m for arrays, coco for results).')
  flags.DEFINE_string('image_size', None, 'W,H of the images in pixels '
                      '(when the input does not say).')
  flags.DEFINE_string('render', None, 'Also write a picture: .gif, .mp4 or '
                      '.png (contact sheet).')
  flags.DEFINE_string('video', None, 'Video whose frames are the 2D '
                      "background of --render (needs imageio-ffmpeg).")
  flags.DEFINE_integer('person', None, 'Track to lift (default: the '
                       'highest-scoring).')
  flags.DEFINE_bool('raw', False, 'Normalised input to the model as is, its '
                    'output untouched.')
  flags.DEFINE_integer('stride', None, 'Frames between window starts '
                       '(default T // 2).')
  flags.DEFINE_float('fps', None, 'Frame rate when the input does not say.')
  flags.DEFINE_integer('render_every', 1, 'Draw every k-th frame.')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
  flags.DEFINE_integer('batch_size', 16, 'Windows per model call.')


def _predict_raw(lifter: lifter_lib.Lifter, args) -> np.ndarray:
  """The `--raw` path: every sequence of the input array, model output."""
  if args.render or args.video:
    raise InputError('--render/--video: not available with --raw (the '
                     'output is in model units)')
  data = readers.read_keypoints(args.input)
  if data.keypoint_format is not None and data.keypoint_format != (
      lifter.skeleton.name):
    raise InputError(f'{data.source}: keypoint_format: --raw takes the '
                     f'model\'s joint order {lifter.skeleton.name}, the file '
                     f'says {data.keypoint_format}')
  raw = readers.raw_array(args.input)
  poses = np.stack([lifter.lift_raw(sequence, where=data.source)
                    for sequence in raw.reshape((-1,) + raw.shape[-3:])])
  poses = poses.reshape(raw.shape[:-1] + (3,))
  outputs.write_fields(args.output, outputs.raw_fields(
      poses, lifter.joint_names, data.fps or args.fps))
  return poses


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    cli.fail('predict', f'unexpected arguments {argv[1:]}')
  console.configure()
  args = flags.FLAGS
  try:
    outputs.check_output_path(args.output)
    if args.render:
      rendering.check_render_path(args.render)
    lifter = lifter_lib.Lifter(
        model_loading.jitted_forward(
            load_model(args.config.model, args.workdir, args.step)[0]),
        args.config, stride=args.stride, batch_size=args.batch_size)
    if args.raw:
      poses = _predict_raw(lifter, args)
      print(f'wrote {args.output}: poses_3d {poses.shape} (raw model '
            'output)')
      return
    result = lifter.lift_file(
        args.input, keypoint_format=args.keypoint_format,
        image_size=args.image_size, person=args.person, fps=args.fps)
    if args.render:
      renderer = rendering.FrameRenderer(
          result.keypoints_2d, result.poses_3d, lifter.skeleton,
          result.image_size, result.units, result.filled_joints,
          title=f'{pathlib.Path(args.input).name}, person {result.person}')
      try:
        rendering.render(args.render, renderer, fps=result.fps,
                         video=args.video, every=args.render_every)
      finally:
        renderer.close()
    outputs.write_fields(args.output, outputs.result_fields(result))
  except (InputError, OSError, ValueError) as e:
    message = ' '.join(str(e).split())
    sys.stderr.write(f'predict: error: {message}\n')
    sys.exit(1)
  frames = result.poses_3d.shape[0]
  print(f'wrote {args.output}: poses_3d [{frames}, 17, 3] in {result.units}, '
        f'person {result.person} of {result.num_people}, '
        f'{len(result.filled_frames)} frames with interpolated joints'
        + (f'; {args.render}' if args.render else ''))


if __name__ == '__main__':
  _define_flags()
  cli.run(main, program='predict', doc=__doc__,
          required=('config', 'workdir', 'input', 'output'))
