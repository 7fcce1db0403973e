#!/bin/bash
# T = 243 memory rows re-measured on 2026-12-05 (Linear on rows, residuals
# counted per buffer): files rows_20261205_<model>_<dtype>_b16_<variant>.json.
set -eu
cd "$(dirname "$0")/../../.."
. /work/venv/bin/activate
OUT=docs/benchmarks/t243_memory
for dtype in float32 bfloat16; do
  for variant in none recattn block; do
    case $variant in
      # Explicit since the config's remat became 'auto' (2026-12-06), which
      # is 'block' on a CPU; these rows were measured with 'none'.
      none) extra=(--config.model.remat=none) ;;
      recattn) extra=(--config.model.recompute_attention=True) ;;
      block) extra=(--config.model.remat=block) ;;
    esac
    python -m l2a_jax.benchmark --config configs/tcpformer_h36m.py \
        --frameworks jax --steps 0 --depths 16 --depth_variants scan \
        --dtype $dtype --batch_size 16 "${extra[@]}" \
        --json $OUT/rows_20261205_tcpformer_${dtype}_b16_${variant}.json > /dev/null
  done
  python -m l2a_jax.benchmark --config configs/l2a_h36m.py \
      --frameworks jax --steps 0 --depths 16 --depth_variants scan \
      --dtype $dtype --batch_size 16 \
      --json $OUT/rows_20261205_l2a_${dtype}_b16_none.json > /dev/null
done
# bfloat16 with jax.nn.dot_product_attention's 'xla' implementation, the
# 'auto' choice off GPUs before e1cdd42 (now 'lean', which recomputes the
# bf16 cast of the probabilities instead of keeping it).
python -m l2a_jax.benchmark --config configs/tcpformer_h36m.py \
    --frameworks jax --steps 0 --depths 16 --depth_variants scan \
    --dtype bfloat16 --batch_size 16 --config.model.attention_impl=xla \
    --json $OUT/rows_20261205_tcpformer_bfloat16_b16_xla.json > /dev/null
