#!/bin/bash
# Inference at the CPU table's config (depth 4 / dim 64 / T = 27 / batch 4),
# float32 and bfloat16, JAX and torch eager in one invocation per model,
# the framework order alternated per round. Usage: run_infer.sh [ROUNDS]
set -u
ROUNDS=${1:-2}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
RAW=$ROOT/docs/benchmarks/cpu_20261206_auto
. /work/venv/bin/activate
cd "$ROOT"
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r: $(uptime)"
  order=$([ $((r % 2)) = 1 ] && echo jax,torch || echo torch,jax)
  for model in tcpformer l2a; do
    python -m l2a_jax.benchmark --config configs/${model}_h36m.py:frames=27 \
        --config.model.depth=4 --config.model.dim=64 --mode infer \
        --dtype float32,bfloat16 --frameworks $order --batch_size 4 \
        --steps 30 --warmup 3 --json "$RAW/infer_${model}_round$r.json" \
        | grep -E "^\| .* infer "
  done
done
echo "end: $(uptime)"
