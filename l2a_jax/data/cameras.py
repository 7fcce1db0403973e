"""Cameras: the Human3.6M calibration, virtual cameras and projection.

Conventions: world points and camera centres in millimetres; a camera's
`rotation` maps world axes to camera axes (x right, y down, z forward), so
`X_cam = rotation @ (X_world - position)`. Pixels: u = fx * x / z + cx,
v = fy * y / z + cy (plus the Human3.6M lens distortion when asked for).

Intrinsics are stored as 9 numbers in the VideoPose3D layout:
`(fx, fy, cx, cy, k1, k2, k3, p1, p2)` in pixels (radial k, tangential p).
"""

import dataclasses

import numpy as np

# The four Human3.6M cameras (ids, pixel focal lengths and centres, lens
# distortion, image size), as calibrated by the dataset and listed in
# VideoPose3D's common/h36m_dataset.py. Camera order is the dataset's.
H36M_CAMERA_IDS = ('54138969', '55011271', '58860488', '60457274')
H36M_INTRINSICS = {
    '54138969': (1145.0494384765625, 1143.7811279296875, 512.54150390625,
                 515.4514770507812, -0.20709891617298126, 0.24777518212795258,
                 -0.0030751503072679043, -0.0009756988729350269,
                 -0.00142447161488235),
    '55011271': (1149.6756591796875, 1147.5916748046875, 508.8486328125,
                 508.0649108886719, -0.1942136287689209, 0.2404085397720337,
                 0.006819975562393665, -0.0016190266469493508,
                 -0.0027408944442868233),
    '58860488': (1149.1407470703125, 1148.7989501953125, 519.8158569335938,
                 501.40264892578125, -0.2083381861448288, 0.25548800826072693,
                 -0.0024604974314570427, 0.0014843869721516967,
                 -0.0007599993259645998),
    '60457274': (1145.5113525390625, 1144.77392578125, 514.9682006835938,
                 501.88201904296875, -0.198384091258049, 0.21832367777824402,
                 -0.008947807364165783, -0.0005872055771760643,
                 -0.0018133620033040643),
}
H36M_IMAGE_SIZE = {  # (width, height)
    '54138969': (1000, 1002),
    '55011271': (1000, 1000),
    '58860488': (1000, 1000),
    '60457274': (1000, 1002),
}
# Extrinsics per subject and camera: orientation quaternion (w, x, y, z)
# rotating camera axes into world axes, and camera position in world mm.
H36M_EXTRINSICS = {
    'S1': (
        ((0.1407056450843811, -0.1500701755285263, -0.755240797996521,
          0.6223280429840088),
         (1841.1070556640625, 4955.28466796875, 1563.4454345703125)),
        ((0.6157187819480896, -0.764836311340332, -0.14833825826644897,
          0.11794740706682205),
         (1761.278564453125, -5078.0068359375, 1606.2650146484375)),
        ((0.14651472866535187, -0.14647851884365082, 0.7653023600578308,
          -0.6094175577163696),
         (-1846.7777099609375, 5215.04638671875, 1491.972412109375)),
        ((0.5834008455276489, -0.7853162288665771, 0.14548823237419128,
          -0.14749594032764435),
         (-1794.7896728515625, -3722.698974609375, 1574.8927001953125)),
    ),
    'S5': (
        ((0.1467377245426178, -0.162370964884758, -0.7551892995834351,
          0.6178938746452332),
         (2097.3916015625, 4880.94482421875, 1605.732421875)),
        ((0.6159758567810059, -0.7626792192459106, -0.15728192031383514,
          0.1189815029501915),
         (2031.7008056640625, -5167.93310546875, 1612.923095703125)),
        ((0.14291371405124664, -0.12907841801643372, 0.7678384780883789,
          -0.6110143065452576),
         (-1620.5948486328125, 5171.65869140625, 1496.43701171875)),
        ((0.5920479893684387, -0.7814217805862427, 0.1274748593568802,
          -0.15036417543888092),
         (-1637.1737060546875, -3867.3173828125, 1547.033203125)),
    ),
    'S6': (
        ((0.1337897777557373, -0.15692396461963654, -0.7571090459823608,
          0.6198879480361938),
         (1935.4517822265625, 4950.24560546875, 1618.0838623046875)),
        ((0.6147197484970093, -0.7628812789916992, -0.16174767911434174,
          0.11819244921207428),
         (1969.803955078125, -5128.73876953125, 1632.77880859375)),
        ((0.1529948115348816, -0.13529130816459656, 0.7646096348762512,
          -0.6112781167030334),
         (-1769.596435546875, 5185.361328125, 1476.993408203125)),
        ((0.5916101336479187, -0.7804774045944214, 0.12832270562648773,
          -0.1561593860387802),
         (-1721.668701171875, -3884.13134765625, 1540.4879150390625)),
    ),
    'S7': (
        ((0.1435241848230362, -0.1631336808204651, -0.7548328638076782,
          0.6188824772834778),
         (1974.512939453125, 4926.3544921875, 1597.8326416015625)),
        ((0.6141672730445862, -0.7638262510299683, -0.1596645563840866,
          0.1177929937839508),
         (1937.0584716796875, -5119.7900390625, 1631.5665283203125)),
        ((0.14550060033798218, -0.12874816358089447, 0.7660516500473022,
          -0.6127139329910278),
         (-1741.8111572265625, 5208.24951171875, 1464.8245849609375)),
        ((0.5912848114967346, -0.7821764349937439, 0.12445473670959473,
          -0.15196487307548523),
         (-1734.7105712890625, -3832.42138671875, 1548.5830078125)),
    ),
    'S8': (
        ((0.14110587537288666, -0.15589867532253265, -0.7561917304992676,
          0.619644045829773),
         (2150.65185546875, 4896.1611328125, 1611.9046630859375)),
        ((0.6169601678848267, -0.7647668123245239, -0.14846350252628326,
          0.11158157885074615),
         (2219.965576171875, -5148.453125, 1613.0440673828125)),
        ((0.1471444070339203, -0.13377119600772858, 0.7670128345489502,
          -0.6100369691848755),
         (-1571.2215576171875, 5137.0185546875, 1498.1761474609375)),
        ((0.5927824378013611, -0.7825870513916016, 0.12147816270589828,
          -0.14631995558738708),
         (-1476.913330078125, -3896.7412109375, 1547.97216796875)),
    ),
    'S9': (
        ((0.15540587902069092, -0.15548215806484222, -0.7532095313072205,
          0.6199594736099243),
         (2044.45849609375, 4935.1171875, 1481.2275390625)),
        ((0.618784487247467, -0.7634735107421875, -0.14132238924503326,
          0.11933968216180801),
         (1990.959716796875, -5123.810546875, 1568.8048095703125)),
        ((0.13357827067375183, -0.1367100477218628, 0.7689454555511475,
          -0.6100738644599915),
         (-1670.9921875, 5211.98583984375, 1528.387939453125)),
        ((0.5879399180412292, -0.7823407053947449, 0.1427614390850067,
          -0.14794869720935822),
         (-1696.04345703125, -3827.099853515625, 1591.4127197265625)),
    ),
    'S11': (
        ((0.15232472121715546, -0.15442320704460144, -0.7547563314437866,
          0.6191070079803467),
         (2098.440185546875, 4926.5546875, 1500.278564453125)),
        ((0.6189449429512024, -0.7600917220115662, -0.15300633013248444,
          0.1255258321762085),
         (2083.182373046875, -4912.1728515625, 1561.07861328125)),
        ((0.14943228662014008, -0.15650227665901184, 0.7681233882904053,
          -0.6026304364204407),
         (-1609.8153076171875, 5177.3359375, 1537.896728515625)),
        ((0.5894251465797424, -0.7818877100944519, 0.13991211354732513,
          -0.14715361595153809),
         (-1590.738037109375, -3854.1689453125, 1578.017578125)),
    ),
}


@dataclasses.dataclass(frozen=True)
class Camera:
  """A pinhole camera with optional Human3.6M-style lens distortion.

  Attributes:
    name: camera id (a Human3.6M id or 'virtual_k').
    intrinsics: float64 [9] `(fx, fy, cx, cy, k1, k2, k3, p1, p2)`, pixels.
    width: image width in pixels.
    height: image height in pixels.
    rotation: float64 [3, 3], world axes -> camera axes.
    position: float64 [3], camera centre in world millimetres.
  """

  name: str
  intrinsics: np.ndarray
  width: int
  height: int
  rotation: np.ndarray
  position: np.ndarray

  @property
  def matrix(self) -> np.ndarray:
    """float64 [3, 3] pinhole matrix K (distortion not included)."""
    fx, fy, cx, cy = self.intrinsics[:4]
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)


def quaternion_to_matrix(quaternion) -> np.ndarray:
  """Unit quaternion (w, x, y, z) -> float64 [3, 3] rotation matrix."""
  w, x, y, z = np.asarray(quaternion, np.float64) / np.linalg.norm(quaternion)
  return np.array([
      [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
  ])


def h36m_camera(subject: str, camera_index: int) -> Camera:
  """The calibrated Human3.6M camera `camera_index` (0..3) of `subject`."""
  if subject not in H36M_EXTRINSICS:
    raise ValueError(f'no Human3.6M calibration for subject {subject!r}; '
                     f'known: {sorted(H36M_EXTRINSICS)}')
  camera_id = H36M_CAMERA_IDS[camera_index]
  quaternion, position = H36M_EXTRINSICS[subject][camera_index]
  width, height = H36M_IMAGE_SIZE[camera_id]
  return Camera(
      name=camera_id,
      intrinsics=np.array(H36M_INTRINSICS[camera_id], np.float64),
      width=width,
      height=height,
      # The quaternion rotates camera axes into the world: invert it.
      rotation=quaternion_to_matrix(quaternion).T,
      position=np.array(position, np.float64),
  )


def world_to_camera(points: np.ndarray, camera: Camera) -> np.ndarray:
  """World mm -> camera mm.

  Args:
    points: `[..., 3]` world coordinates in mm.
    camera: the camera.

  Returns:
    float64 `[..., 3]` camera coordinates (z forward) in mm.
  """
  return (np.asarray(points, np.float64) - camera.position) @ camera.rotation.T


def project(points_cam: np.ndarray, camera: Camera,
            distort: bool = False) -> np.ndarray:
  """Camera-space points -> pixels.

  With `distort`, applies the Human3.6M (VideoPose3D) lens model: normalised
  coordinates clipped to [-1, 1], radial k1..k3 and tangential p1, p2.

  Args:
    points_cam: `[..., 3]` camera coordinates, z > 0.
    camera: gives the intrinsics.
    distort: apply the lens distortion of `camera.intrinsics`.

  Returns:
    float64 `[..., 2]` pixel coordinates (u right, v down).
  """
  points_cam = np.asarray(points_cam, np.float64)
  xy = points_cam[..., :2] / points_cam[..., 2:3]
  fx, fy, cx, cy, k1, k2, k3, p1, p2 = camera.intrinsics
  if distort:
    xy = np.clip(xy, -1, 1)
    r2 = np.sum(xy ** 2, axis=-1, keepdims=True)
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    tangential = p1 * xy[..., 0:1] + p2 * xy[..., 1:2]
    xy = xy * (radial + tangential) + np.array([p1, p2]) * r2
  return xy * np.array([fx, fy]) + np.array([cx, cy])


def look_at(position, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
  """World -> camera rotation of a camera at `position` looking at `target`.

  Camera axes: z = towards the target, x = right in the image, y = down.

  Args:
    position: [3] camera centre.
    target: [3] point on the optical axis.
    up: [3] world up direction (Y for BVH, Z for Human3.6M world).

  Returns:
    float64 [3, 3] rotation with rows x_c, y_c, z_c (determinant +1).
  """
  z_axis = np.asarray(target, np.float64) - np.asarray(position, np.float64)
  z_axis /= np.linalg.norm(z_axis)
  x_axis = np.cross(-np.asarray(up, np.float64), z_axis)
  norm = np.linalg.norm(x_axis)
  if norm < 1e-6:
    raise ValueError('camera looks straight along the up axis')
  x_axis /= norm
  y_axis = np.cross(z_axis, x_axis)
  return np.stack([x_axis, y_axis, z_axis])


def place_virtual_cameras(
    poses_world: np.ndarray,
    num_cameras: int,
    rng: np.random.Generator,
    *,
    up_axis: int = 1,
    radius_mm: tuple[float, float] = (4500.0, 5500.0),
    height_mm: tuple[float, float] = (1200.0, 1800.0),
    margin_px: float = 10.0,
    max_tries: int = 12,
) -> list[Camera]:
  """Human3.6M-like cameras around a motion clip, all seeing every joint.

  Cameras stand on a circle around the clip's mean root position at roughly
  evenly spread azimuths (random offset and jitter), lens height above the
  floor drawn from `height_mm`, looking at the mean root. Intrinsics (focal
  length, principal point, image size) cycle through the four Human3.6M
  cameras, without lens distortion. A camera that sees any joint behind it or
  outside the image (with `margin_px`) steps back 15% and tries again.

  Args:
    poses_world: `[frames, joints, 3]` world mm; joint 0 is the root.
    num_cameras: K >= 1.
    rng: random generator (placement is a function of its state).
    up_axis: index of the world up axis (1 = Y up, as in BVH).
    radius_mm: range of the horizontal camera distance to the mean root.
    height_mm: range of the lens height above the lowest joint of the clip.
    margin_px: joints must lie this far inside the image.
    max_tries: steps back before giving up.

  Returns:
    K cameras.

  Raises:
    ValueError: if a camera cannot see the whole clip after `max_tries`.
  """
  if num_cameras < 1:
    raise ValueError(f'num_cameras must be >= 1, got {num_cameras}')
  poses_world = np.asarray(poses_world, np.float64)
  up = np.zeros(3)
  up[up_axis] = 1.0
  horizontal = [a for a in range(3) if a != up_axis]
  target = poses_world[:, 0].mean(axis=0)
  floor = poses_world[..., up_axis].min()
  offset = rng.uniform(0, 2 * np.pi)
  cameras = []
  for k in range(num_cameras):
    azimuth = offset + 2 * np.pi * k / num_cameras + rng.normal(0, 0.15)
    radius = rng.uniform(*radius_mm)
    height = floor + rng.uniform(*height_mm)
    camera_id = H36M_CAMERA_IDS[k % len(H36M_CAMERA_IDS)]
    intrinsics = np.array(H36M_INTRINSICS[camera_id], np.float64)
    intrinsics[4:] = 0.0
    width, height_px = H36M_IMAGE_SIZE[camera_id]
    for _ in range(max_tries):
      position = target.copy()
      position[horizontal[0]] += radius * np.cos(azimuth)
      position[horizontal[1]] += radius * np.sin(azimuth)
      position[up_axis] = height
      camera = Camera(
          name=f'virtual_{k}', intrinsics=intrinsics, width=width,
          height=height_px, rotation=look_at(position, target, up),
          position=position)
      points = world_to_camera(poses_world, camera)
      if np.all(points[..., 2] > 100.0):
        pixels = project(points, camera)
        inside = ((pixels[..., 0] >= margin_px)
                  & (pixels[..., 0] <= width - margin_px)
                  & (pixels[..., 1] >= margin_px)
                  & (pixels[..., 1] <= height_px - margin_px))
        if np.all(inside):
          break
      radius *= 1.15
    else:
      raise ValueError(
          f'virtual camera {k}: the clip does not fit in the image even at '
          f'{radius / 1000:.1f} m (root travel too large?)')
    cameras.append(camera)
  return cameras


def segments_in_reach(
    poses_world: np.ndarray,
    *,
    up_axis: int = 1,
    radius_mm: float = 1500.0,
    min_frames: int = 100,
) -> list[tuple[int, int]]:
  """Cuts a clip into segments whose root stays near one place.

  Each segment runs from its first frame while the horizontal bounding box
  of its root positions has a half-diagonal of at most `radius_mm` (every
  root within `radius_mm` of the box centre), but at least `min_frames`
  long; a shorter tail joins the segment before it. Cameras placed per
  segment (`place_virtual_cameras`) then stay at Human3.6M-like distances
  from the subject however far a clip travels.

  Args:
    poses_world: `[frames, joints, 3]` world mm; joint 0 is the root.
    up_axis: index of the world up axis.
    radius_mm: largest root distance from a segment's centre.
    min_frames: shortest segment (a subject faster than 2 radius_mm per
      min_frames leaves the radius within it).

  Returns:
    (start, end) frame ranges covering the clip in order.
  """
  horizontal = [a for a in range(3) if a != up_axis]
  root = np.asarray(poses_world, np.float64)[:, 0, horizontal]
  frames = len(root)
  segments, start = [], 0
  while start < frames:
    low = high = root[start]
    end = start + 1
    while end < frames:
      new_low = np.minimum(low, root[end])
      new_high = np.maximum(high, root[end])
      if (end - start >= min_frames
          and np.linalg.norm(new_high - new_low) / 2 > radius_mm):
        break
      low, high, end = new_low, new_high, end + 1
    segments.append((start, end))
    start = end
  if len(segments) > 1 and segments[-1][1] - segments[-1][0] < min_frames:
    last = segments.pop()
    segments[-1] = (segments[-1][0], last[1])
  return segments


def detector_noise(
    keypoints_px: np.ndarray,
    rng: np.random.Generator,
    *,
    sigma_px: float,
    outlier_prob: float = 0.01,
    outlier_px: float = 40.0,
) -> np.ndarray:
  """Detector-like 2D keypoints: jitter, occasional outliers, confidence.

  Each joint moves by Gaussian noise of `sigma_px`; with probability
  `outlier_prob` it jumps by a further Gaussian of `outlier_px` (a wrong
  detection). The confidence falls with the displacement,
  `exp(-d^2 / (2 (3 sigma)^2))` plus a little noise, clipped to [0.05, 1], so
  large errors get low confidence as a detector's heatmap peak would.
  `sigma_px == 0` returns the exact keypoints with confidence 1.

  Args:
    keypoints_px: `[..., joints, 2]` exact pixels.
    rng: random generator.
    sigma_px: jitter standard deviation in pixels (>= 0).
    outlier_prob: per-joint probability of an outlier.
    outlier_px: outlier displacement standard deviation in pixels.

  Returns:
    float32 `[..., joints, 3]`: noisy x, y and confidence.
  """
  keypoints_px = np.asarray(keypoints_px, np.float64)
  if not np.isfinite(sigma_px) or sigma_px < 0:
    raise ValueError(f'sigma_px must be a finite number >= 0, got '
                     f'{sigma_px}')
  if sigma_px == 0:
    confidence = np.ones(keypoints_px.shape[:-1] + (1,))
    return np.concatenate([keypoints_px, confidence], -1).astype(np.float32)
  shift = rng.normal(0, sigma_px, keypoints_px.shape)
  outlier = rng.random(keypoints_px.shape[:-1] + (1,)) < outlier_prob
  shift += outlier * rng.normal(0, outlier_px, keypoints_px.shape)
  distance2 = np.sum(shift ** 2, axis=-1, keepdims=True)
  confidence = np.exp(-distance2 / (2 * (3 * sigma_px) ** 2))
  confidence += rng.normal(0, 0.03, confidence.shape)
  confidence = np.clip(confidence, 0.05, 1.0)
  return np.concatenate([keypoints_px + shift, confidence],
                        -1).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class View:
  """One virtual camera's view of a motion clip.

  Attributes:
    camera: the camera.
    keypoints_2d: float32 [frames, joints, 3]: pixels (u, v) + confidence.
    poses_camera: float32 [frames, joints, 3]: camera-space mm.
  """

  camera: Camera
  keypoints_2d: np.ndarray
  poses_camera: np.ndarray


def render_views(
    poses_world: np.ndarray,
    num_cameras: int,
    rng: np.random.Generator,
    *,
    noise_px: float = 0.0,
    up_axis: int = 1,
) -> list[View]:
  """Places K virtual cameras around a clip and projects it into each.

  Args:
    poses_world: `[frames, joints, 3]` world mm, joint 0 the root.
    num_cameras: K.
    rng: random generator for placement and noise.
    noise_px: detector-like noise sigma in pixels (0 = exact 2D, conf 1).
    up_axis: world up axis (1 = Y).

  Returns:
    K views.
  """
  views = []
  for camera in place_virtual_cameras(poses_world, num_cameras, rng,
                                      up_axis=up_axis):
    points = world_to_camera(poses_world, camera)
    keypoints = detector_noise(project(points, camera), rng,
                               sigma_px=noise_px)
    views.append(View(camera=camera, keypoints_2d=keypoints,
                      poses_camera=points.astype(np.float32)))
  return views
