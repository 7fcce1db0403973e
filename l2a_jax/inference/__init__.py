"""Lifting anyone's 2D keypoints to 3D: formats, sequences, API, renders.

The modules, in pipeline order (docs/predict.md describes formats, units
and the API):

- `readers`: keypoint arrays (.npz / .json), COCO / AlphaPose results,
  OpenPose folders -> tracks `[N, F, J, 3]` (pixels + confidence);
- `tracking`: bounding-box-overlap tracks and the choice of one person;
- `keypoint_formats`: COCO-17, Halpe-26, OpenPose BODY_25, MPI -> H36M-17;
- `sequence`: gap filling, sliding windows with centre-weighted blending;
- `normalization`: pixel checks, screen normalisation, output units;
- `model_loading`: a workdir checkpoint in the model of a config;
- `lifter`: `Lifter`, the Python API (model loaded once);
- `outputs`: prediction files (.npz / .json);
- `rendering`: GIF / MP4 / PNG contact sheet of 2D input beside 3D.

`python -m l2a_jax.predict` is the command line on top of `Lifter`.
"""

from l2a_jax.inference.errors import InputError
from l2a_jax.inference.lifter import Lifter
from l2a_jax.inference.lifter import LiftResult
