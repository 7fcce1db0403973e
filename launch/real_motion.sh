#!/usr/bin/env bash
# configs/real_motion.py end to end: a BVH corpus from a folder of CMU-named
# clips (01_01 trains, 131_01 is held out), then training on it plus the
# synthetic set, evaluated on the held-out clip. Run from the repository
# root:
#
#   bash launch/real_motion.sh [BVH_DIR] [WORKDIR] [DATA_DIR]
#
# BVH_DIR (default ../shared/realdata) must hold 01_01.bvh and 131_01.bvh;
# other *.bvh files there train too. Extra arguments after the third go to
# l2a_jax.main (e.g. --config.train.num_train_steps=300).
set -euo pipefail
BVH_DIR="${1:-../shared/realdata}"
WORKDIR="${2:-/tmp/real_motion}"
DATA_DIR="${3:-/tmp/real_motion_data}"
shift $(( $# < 3 ? $# : 3 ))
CORPUS="$DATA_DIR/corpus_cmu"
for clip in 01_01 131_01; do
  if [ ! -f "$BVH_DIR/$clip.bvh" ]; then
    echo "launch/real_motion.sh: $BVH_DIR/$clip.bvh: no such file" >&2
    exit 2
  fi
done
mkdir -p "$CORPUS"
cp "$BVH_DIR"/*.bvh "$CORPUS/"
echo "131_01.bvh" > "$CORPUS/test_files.txt"
python -m l2a_jax.data.prepare --dataset bvh_motion --name cmu \
    --manual_dir "$CORPUS" --data_dir "$DATA_DIR"
python -m l2a_jax.main --config configs/real_motion.py --workdir "$WORKDIR" \
    --config.data.data_dir="$DATA_DIR" "$@"
