#!/bin/bash
# The CPU table's configs as shipped after model.remat='auto' (2026-12-06),
# depth 4 / dim 64 / T = 27 / batch 4, 30 timed steps after 3 unless noted:
#
#   run.sh train DTYPE [ROUNDS]  training rounds (ROUNDS default 6); per
#       round one invocation each of TCPFormer JAX as configured ('auto' =
#       'block' on a CPU), TCPFormer JAX with remat='none', TCPFormer torch
#       eager, L2A JAX, L2A torch eager, the order rotated every round.
#       Files <variant>_round<r>.json (float32), <variant>_bf16_round<r>.json.
#   run.sh infer [ROUNDS]  inference, float32 and bfloat16, JAX and torch in
#       one invocation per model, the framework order alternated per round
#       (ROUNDS default 2). Files infer_<model>_round<r>.json.
#   run.sh profile  TCPFormer JAX training as configured, float32 and
#       bfloat16, 10 steps, then 5 under the profiler (the JSON's `profile`:
#       op kinds per step). Files profile_tcpformer_auto_<dtype>.json.
#
# Pooled by ../cpu_20261205_remat/pool.py (output pool.txt).
set -u
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
RAW=$ROOT/docs/benchmarks/cpu_20261206_auto
. /work/venv/bin/activate
cd "$ROOT"
sizes=(--config.model.depth=4 --config.model.dim=64 --batch_size 4 --warmup 3)
tcp=(--config configs/tcpformer_h36m.py:frames=27)
l2a=(--config configs/l2a_h36m.py:frames=27)

train_rounds() {
  local dtype=$1 rounds=$2 suffix=
  [ "$dtype" = bfloat16 ] && suffix=_bf16
  local variants=(tcpformer_auto tcpformer_none tcpformer_torch l2a_jax l2a_torch)
  local n=${#variants[@]} r i v args
  for r in $(seq 1 "$rounds"); do
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
      python -m l2a_jax.benchmark "${args[@]}" "${sizes[@]}" --mode train \
          --dtype "$dtype" --steps 30 --json "$RAW/${v}${suffix}_round$r.json" \
          | grep -E "^\| .* train " | sed "s/^/$v /"
    done
  done
  echo "end: $(uptime)"
}

infer_rounds() {
  local r model order
  for r in $(seq 1 "$1"); do
    echo "round $r: $(uptime)"
    order=$([ $((r % 2)) = 1 ] && echo jax,torch || echo torch,jax)
    for model in tcpformer l2a; do
      python -m l2a_jax.benchmark --config configs/${model}_h36m.py:frames=27 \
          "${sizes[@]}" --mode infer --dtype float32,bfloat16 \
          --frameworks $order --steps 30 \
          --json "$RAW/infer_${model}_round$r.json" | grep -E "^\| .* infer "
    done
  done
  echo "end: $(uptime)"
}

profiles() {
  local dtype
  for dtype in float32 bfloat16; do
    python -m l2a_jax.benchmark "${tcp[@]}" --frameworks jax "${sizes[@]}" \
        --mode train --dtype $dtype --steps 10 --profile_dir /tmp/prof_$dtype \
        --profile_steps 5 --json "$RAW/profile_tcpformer_auto_$dtype.json" \
        | grep -E "^\| .* train "
  done
}

case "${1:-}" in
  train) train_rounds "${2:?usage: run.sh train DTYPE [ROUNDS]}" "${3:-6}" ;;
  infer) infer_rounds "${2:-2}" ;;
  profile) profiles ;;
  *) echo "usage: $0 train DTYPE [ROUNDS] | infer [ROUNDS] | profile" >&2
     exit 2 ;;
esac
