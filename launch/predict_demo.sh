#!/usr/bin/env bash
# BVH mocap -> one virtual camera's COCO-17 pixel keypoints -> predict with
# the quickstart checkpoint -> GIF, and the frame shown in README.md
# (docs/images/predict_frame.png). Run from the repository root:
#
#   bash launch/predict_demo.sh [WORKDIR] [OUTDIR]
#
# WORKDIR (default /tmp/qs) holds the quickstart run; it is trained first
# (a few minutes on CPU) when it has no checkpoint yet.
set -euo pipefail
WORKDIR="${1:-/tmp/qs}"
OUT="${2:-/tmp/predict_demo}"
# The CMU clip (data_and_metrics.md section 10.1); any BVH with CMU naming.
BVH="${BVH:-../shared/realdata/131_01.bvh}"
mkdir -p "$OUT" docs/images
if [ ! -d "$WORKDIR/checkpoints" ]; then
  python -m l2a_jax.main --config configs/quickstart.py --workdir "$WORKDIR"
fi
# 1. CMU 131_01 (walk, 8.3 s) as Human3.6M joints at 50 fps, 4 virtual
#    cameras; camera 0's pixel keypoints as a COCO-17 annotation file.
python -m l2a_jax.data.bvh --input "$BVH" \
    --output "$OUT/131_01.npz" --coco_json "$OUT/131_01_coco.json" --camera 0
# 2. Lift to 3D (px for this checkpoint: it was trained on 2.5D image-space
#    targets, data.target_space) and render the animation.
python -m l2a_jax.predict --config configs/quickstart.py --workdir "$WORKDIR" \
    --input "$OUT/131_01_coco.json" --output "$OUT/131_01_3d.json" --fps 50 \
    --render "$OUT/131_01.gif"
# 3. One frame of the GIF for the README.
python - "$OUT/131_01.gif" docs/images/predict_frame.png <<'PY'
import sys
import imageio.v3 as iio
iio.imwrite(sys.argv[2], iio.imread(sys.argv[1], index=200))
PY
echo "wrote $OUT/131_01.gif, $OUT/131_01_3d.json, docs/images/predict_frame.png"
