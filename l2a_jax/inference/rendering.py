"""Pictures of a prediction: 2D input beside the 3D skeleton, per frame.

Each frame (`FrameRenderer`) has two panels: the 2D keypoints the model
saw, drawn over the video frame when one is given, else on a white canvas
of the image size (interpolated joints hollow), and the 3D skeleton from a
fixed viewpoint (elevation 12 deg, azimuth -70 deg) with fixed axes in the
output units over the whole sequence, so motion is visible as motion.
Poses are in camera orientation (x right, y down, z away from the camera);
the 3D panel shows x to the right, depth into the picture, up as up.
Left-side bones are blue, right-side orange, the torso grey.

`render` writes a GIF (Pillow, through imageio), an MP4 (imageio's ffmpeg
plugin: `pip install imageio-ffmpeg`, or the `[video]` extra) or a PNG
contact sheet of up to `CONTACT_SHEET_FRAMES` evenly spaced frames; every
output is written to a temporary name and renamed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import os
import pathlib

import matplotlib

matplotlib.use('Agg')
# pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib import pyplot as plt
import numpy as np

from l2a_jax import atomic_output
from l2a_jax.data import skeleton as skeleton_lib
from l2a_jax.inference import errors
# pylint: enable=g-import-not-at-top,wrong-import-position

SUFFIXES = ('.gif', '.mp4', '.png')
CONTACT_SHEET_FRAMES = 8
CONTACT_SHEET_COLUMNS = 2
# Figure size in pixels: multiples of 16, as video encoders want.
WIDTH_PX, HEIGHT_PX, DPI = 800, 400, 80
DEFAULT_FPS = 25.0
_LEFT, _RIGHT, _CENTRE = '#2b6cb0', '#dd6b20', '#4a5568'
_FILLED = '#a0aec0'


def _bone_colours(skeleton: skeleton_lib.Skeleton) -> list[str]:
  colours = []
  for _, child in skeleton.bones:
    colours.append(_LEFT if child in skeleton.left else
                   _RIGHT if child in skeleton.right else _CENTRE)
  return colours


def _to_plot_axes(poses: np.ndarray) -> np.ndarray:
  """(x right, y down, z forward) -> plot (x, depth, up)."""
  return np.stack([poses[..., 0], poses[..., 2], -poses[..., 1]], axis=-1)


class FrameRenderer:
  """Draws frames of one prediction into RGB arrays (one figure, reused)."""

  def __init__(self, keypoints_2d: np.ndarray, poses_3d: np.ndarray,
               skeleton: skeleton_lib.Skeleton, image_size: tuple[int, int],
               units: str, filled_joints: np.ndarray | None = None,
               title: str = ''):
    """Sets up the figure.

    Args:
      keypoints_2d: `[F, J, 3]` pixels (x, y, confidence).
      poses_3d: `[F, J, 3]` root-relative, in `units`.
      skeleton: joint order (bones, sides).
      image_size: (W, H) of the 2D panel.
      units: axis label unit of the 3D panel.
      filled_joints: bool `[F, J]`, interpolated joints (drawn hollow).
      title: figure title.
    """
    self.keypoints = np.asarray(keypoints_2d, np.float64)
    self.poses = _to_plot_axes(np.asarray(poses_3d, np.float64))
    self.filled = (np.zeros(self.keypoints.shape[:2], bool)
                   if filled_joints is None else np.asarray(filled_joints))
    self.skeleton = skeleton
    self.image_size = tuple(image_size)
    width, height = image_size
    self.fig = plt.figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    if title:
      self.fig.suptitle(title, fontsize=10)
    self.ax2d = self.fig.add_axes((0.02, 0.06, 0.46, 0.84))
    self.image = self.ax2d.imshow(
        np.full((8, 8, 3), 255, np.uint8), extent=(0, width, height, 0),
        interpolation='bilinear')
    self.ax2d.set_xlim(0, width)
    self.ax2d.set_ylim(height, 0)
    self.ax2d.set_aspect('equal')
    self.ax2d.set_xticks([])
    self.ax2d.set_yticks([])
    self.caption = self.ax2d.set_title('', fontsize=9)
    colours = _bone_colours(skeleton)
    self.lines2d = [self.ax2d.plot([], [], color=c, linewidth=2.5)[0]
                    for c in colours]
    self.dots = self.ax2d.scatter(np.zeros(skeleton.num_joints),
                                  np.zeros(skeleton.num_joints), s=14,
                                  zorder=3)
    self.ax3d = self.fig.add_axes((0.52, 0.04, 0.46, 0.88),
                                  projection='3d')
    radius = 1.05 * float(np.max(np.abs(self.poses))) or 1.0
    self.ax3d.set_xlim(-radius, radius)
    self.ax3d.set_ylim(-radius, radius)
    self.ax3d.set_zlim(-radius, radius)
    self.ax3d.set_box_aspect((1, 1, 1))
    self.ax3d.view_init(elev=12.0, azim=-70.0)
    self.ax3d.set_xlabel(f'x ({units})', fontsize=8, labelpad=-4)
    self.ax3d.set_ylabel(f'depth ({units})', fontsize=8, labelpad=-4)
    self.ax3d.set_zlabel(f'up ({units})', fontsize=8, labelpad=-4)
    self.ax3d.tick_params(labelsize=6, pad=-2)
    self.lines3d = [self.ax3d.plot([], [], [], color=c, linewidth=2.5)[0]
                    for c in colours]

  @property
  def num_frames(self) -> int:
    return self.keypoints.shape[0]

  def draw(self, t: int, background: np.ndarray | None = None) -> np.ndarray:
    """uint8 `[HEIGHT_PX, WIDTH_PX, 3]` picture of frame `t`."""
    if background is not None:
      self.image.set_data(background)
    points, pose = self.keypoints[t], self.poses[t]
    for line2d, line3d, (parent, child) in zip(self.lines2d, self.lines3d,
                                               self.skeleton.bones):
      line2d.set_data(points[[parent, child], 0], points[[parent, child], 1])
      line3d.set_data_3d(pose[[parent, child], 0], pose[[parent, child], 1],
                         pose[[parent, child], 2])
    self.dots.set_offsets(points[:, :2])
    self.dots.set_facecolors(
        ['none' if f else 'black' for f in self.filled[t]])
    self.dots.set_edgecolors(
        [_FILLED if f else 'black' for f in self.filled[t]])
    filled = int(self.filled[t].sum())
    self.caption.set_text(f'frame {t}' + (f' ({filled} joints interpolated)'
                                          if filled else ''))
    self.fig.canvas.draw()
    return np.asarray(self.fig.canvas.buffer_rgba())[..., :3].copy()

  def close(self) -> None:
    plt.close(self.fig)


def _imageio():
  try:
    import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise errors.InputError(
        '--render: needs imageio (pip install imageio)') from None
  return iio


def _check_ffmpeg(what: str) -> None:
  try:
    import imageio_ffmpeg  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise errors.InputError(
        f'{what}: MP4 needs the imageio ffmpeg plugin: pip install '
        "imageio-ffmpeg (or pip install 'l2a_jax[video]')") from None


def video_frames(path: str | os.PathLike[str], image_size: tuple[int, int],
                 num_frames: int) -> Iterator[np.ndarray]:
  """The first `num_frames` RGB frames of a video, checked against the size.

  Raises:
    InputError: unreadable video, other frame size, too few frames.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise errors.InputError(f'--video {path}: no such file')
  iio = _imageio()
  _check_ffmpeg(f'--video {path}')
  count = 0
  try:
    for frame in iio.imiter(path, plugin='FFMPEG'):
      if count == num_frames:
        return
      height, width = frame.shape[:2]
      if (width, height) != tuple(image_size):
        raise errors.InputError(
            f'--video {path}: frames are {width}x{height}, the keypoints are '
            f'for a {image_size[0]}x{image_size[1]} image')
      count += 1
      yield frame[..., :3]
  except errors.InputError:
    raise
  except Exception as e:  # pylint: disable=broad-exception-caught
    # imageio raises OSError, RuntimeError, ... by backend and cause.
    raise errors.InputError(f'--video {path}: cannot read it ({e})') from e
  if count < num_frames:
    raise errors.InputError(f'--video {path}: has {count} frames, the '
                            f'keypoints have {num_frames}')


def check_render_path(path: str | os.PathLike[str]) -> pathlib.Path:
  """Raises InputError for an unknown suffix or a missing folder."""
  path = pathlib.Path(path)
  if path.suffix not in SUFFIXES:
    raise errors.InputError(f'--render {path}: expected a file ending in '
                            f'{", ".join(SUFFIXES)}, got {path.suffix!r}')
  if not path.parent.is_dir():
    raise errors.InputError(f'--render {path}: output directory '
                            f'{path.parent} does not exist')
  if path.suffix == '.mp4':
    _check_ffmpeg(f'--render {path}')
  return path


def contact_sheet_frames(num_frames: int,
                         count: int = CONTACT_SHEET_FRAMES) -> list[int]:
  """Up to `count` evenly spaced frame indices, first and last included."""
  count = min(count, num_frames)
  return sorted({int(round(i)) for i in np.linspace(0, num_frames - 1,
                                                    count)})


def render(path: str | os.PathLike[str], renderer: FrameRenderer, *,
           fps: float | None, video: str | os.PathLike[str] | None = None,
           every: int = 1) -> list[int]:
  """Writes the GIF / MP4 / PNG contact sheet of a prediction.

  Args:
    path: output file, by suffix `.gif`, `.mp4` or `.png`.
    renderer: the prediction's frames.
    fps: frame rate of the prediction (None: `DEFAULT_FPS`).
    video: optional video whose frames become the 2D panel's background.
    every: draw every n-th frame (animations play at fps / every).

  Returns:
    The frame indices drawn.

  Raises:
    InputError: unknown suffix, missing folder or plugin, bad video.
  """
  path = check_render_path(path)
  if every < 1:
    raise errors.InputError(f'--render_every: expected >= 1, got {every}')
  iio = _imageio()
  num_frames = renderer.num_frames
  if path.suffix == '.png':
    chosen = contact_sheet_frames(num_frames)
  else:
    chosen = list(range(0, num_frames, every))
  wanted = set(chosen)
  backgrounds = (video_frames(video, renderer.image_size, num_frames)
                 if video is not None else None)
  pictures = []
  for t in range(num_frames if backgrounds is not None else 0):
    background = next(backgrounds)
    if t in wanted:
      pictures.append(renderer.draw(t, background))
  if backgrounds is None:
    pictures = [renderer.draw(t) for t in chosen]
  rate = (fps or DEFAULT_FPS) / every
  with atomic_output.atomic_path(path) as temporary:
    if path.suffix == '.gif':
      iio.imwrite(temporary, np.stack(pictures), extension='.gif',
                  duration=1000.0 / rate, loop=0)
    elif path.suffix == '.mp4':
      iio.imwrite(temporary, np.stack(pictures), plugin='FFMPEG', fps=rate,
                  codec='libx264', macro_block_size=16)
    else:
      iio.imwrite(temporary, _sheet(pictures), extension='.png')
  return chosen


def _sheet(pictures: Sequence[np.ndarray]) -> np.ndarray:
  """Tiles pictures row-major, CONTACT_SHEET_COLUMNS wide, white padding."""
  columns = min(CONTACT_SHEET_COLUMNS, len(pictures))
  rows = -(-len(pictures) // columns)
  height, width = pictures[0].shape[:2]
  sheet = np.full((rows * height, columns * width, 3), 255, np.uint8)
  for k, picture in enumerate(pictures):
    r, c = divmod(k, columns)
    sheet[r * height:(r + 1) * height, c * width:(c + 1) * width] = picture
  return sheet
