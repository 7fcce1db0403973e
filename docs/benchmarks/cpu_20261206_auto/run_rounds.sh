#!/bin/bash
# The CPU table's configs as shipped after model.remat='auto' (2026-12-06):
# depth 4 / dim 64 / T = 27 / batch 4, float32 training. Per round, one
# invocation each of: TCPFormer JAX with the config's remat ('auto' =
# 'block' on a CPU), TCPFormer JAX with remat='none', TCPFormer torch eager,
# L2A JAX, L2A torch eager; the order rotated every round.
# Usage: run_rounds.sh [ROUNDS]
set -u
ROUNDS=${1:-6}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
RAW=$ROOT/docs/benchmarks/cpu_20261206_auto
. /work/venv/bin/activate
cd "$ROOT"
sizes=(--config.model.depth=4 --config.model.dim=64 --mode train --dtype float32 --batch_size 4 --steps 30 --warmup 3)
tcp=(--config configs/tcpformer_h36m.py:frames=27)
l2a=(--config configs/l2a_h36m.py:frames=27)
variants=(tcpformer_auto tcpformer_none tcpformer_torch l2a_jax l2a_torch)
n=${#variants[@]}
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r: $(uptime)"
  for i in $(seq 0 $((n - 1))); do
    v=${variants[$(( (i + r - 1) % n ))]}
    case $v in
      tcpformer_auto) args=("${tcp[@]}" --frameworks jax) ;;
      tcpformer_none) args=("${tcp[@]}" --config.model.remat=none --frameworks jax) ;;
      tcpformer_torch) args=("${tcp[@]}" --frameworks torch) ;;
      l2a_jax) args=("${l2a[@]}" --frameworks jax) ;;
      l2a_torch) args=("${l2a[@]}" --frameworks torch) ;;
    esac
    python -m l2a_jax.benchmark "${args[@]}" "${sizes[@]}" \
        --json "$RAW/${v}_round$r.json" | grep -E "^\| .* train " | sed "s/^/$v /"
  done
done
echo "end: $(uptime)"
