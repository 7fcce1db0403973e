#!/bin/bash
# TCPFormer at the CPU table's config (depth 4 / dim 64 / T=27 / batch 4,
# float32 training): model.remat 'none' / 'block' /
# 'dots_with_no_batch_dims_saveable' (JAX) and torch eager, one invocation
# each, the order rotated every round. Usage: run_rounds.sh [ROUNDS]
set -u
ROUNDS=${1:-6}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
RAW=$ROOT/docs/benchmarks/cpu_20261205_remat
. /work/venv/bin/activate
cd "$ROOT"
common=(--config configs/tcpformer_h36m.py:frames=27 --config.model.depth=4 --config.model.dim=64 --mode train --dtype float32 --batch_size 4 --steps 30 --warmup 3)
variants=(none block dots_with_no_batch_dims_saveable torch)
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r: $(uptime)"
  for i in 0 1 2 3; do
    v=${variants[$(( (i + r - 1) % 4 ))]}
    if [ "$v" = torch ]; then
      python -m l2a_jax.benchmark "${common[@]}" --frameworks torch --json "$RAW/torch_round$r.json" | grep -E "^\| .* train "
    else
      python -m l2a_jax.benchmark "${common[@]}" --config.model.remat=$v --frameworks jax --json "$RAW/remat_${v}_round$r.json" | grep -E "^\| .* train " | sed "s/^/$v /"
    fi
  done
done
echo "end: $(uptime)"
