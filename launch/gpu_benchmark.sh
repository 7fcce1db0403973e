#!/usr/bin/env bash
# The GPU benchmark protocol of docs/benchmarks.md, one phase per call.
#
#   launch/gpu_benchmark.sh PHASE OUT_DIR
#
# PHASE (each sized to finish well within 10 minutes on one H100/H200):
#   check      nvidia-smi, versions, and the CLI on tiny L2A and TCPFormer
#              models for jax, torch and torch.compile (train and infer,
#              fp32): does everything run on CUDA? (Runs on a CPU too.)
#   tcpformer  TCPFormer T=243 full size, training, batch 4, fp32 and bf16.
#   l2a        L2A default T=243, training, batch 16, fp32 and bf16.
#   batch16    TCPFormer T=243 batch 16: bf16 with recompute_attention, and
#              fp32/bf16 with remat=block (torch has no remat: expect OOM rows).
#   tf32       both models, fp32 training with TF32 matmuls on both sides.
#   infer      both models, inference, batch 16, fp32 and bf16.
#   depth      L2A memory against depth (4, 8, 16, 32) at full width.
#
# Every phase writes OUT_DIR/<phase>.json (the benchmark's JSON, with the
# top operations of a profile in every timed row), OUT_DIR/<phase>.log
# (everything it printed) and the traces under OUT_DIR/profiles/. Needs CUDA
# builds of jax and torch plus flax, optax, ml-collections and absl-py; the
# repository does not have to be installed (PYTHONPATH is set to its root).
set -euo pipefail
phases='check|tcpformer|l2a|batch16|tf32|infer|depth'
if [[ $# -ne 2 ]]; then
  echo "usage: $0 $phases OUT_DIR" >&2
  exit 2
fi
phase=$1
out=$2
if [[ "|$phases|" != *"|$phase|"* ]]; then
  echo "$0: unknown phase '$phase' (expected $phases)" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# Allocate on demand so that jax's peak_bytes_in_use and nvidia-smi show what
# the step uses (the benchmark runs each measurement in its own process, so
# preallocation would not starve torch either way).
export XLA_PYTHON_CLIENT_PREALLOCATE=false

# bench NAME ARGS...: one benchmark run writing OUT_DIR/NAME.json. Every
# timed measurement is also profiled (2 more steps): the top operations land
# in the JSON rows, the traces under OUT_DIR/profiles/.
bench() {
  local name=$1
  shift
  python -m l2a_jax.benchmark --timeout 300 --json "$out/$name.json" \
    --profile_dir "$out/profiles" --profile_steps 2 "$@"
}

case "$phase" in
  check)
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit \
        --format=csv
    else
      echo "nvidia-smi not found: no NVIDIA driver here (the CLI will use the CPU)"
    fi
    python - <<'EOF'
import importlib.metadata as md
for name in ('jax', 'jaxlib', 'flax', 'optax', 'ml-collections', 'torch',
             'numpy'):
  try:
    print(name, md.version(name))
  except md.PackageNotFoundError:
    print(name, 'MISSING')
import jax
print('jax devices:', jax.devices())
EOF
    bench "$phase" --config configs/tiny.py \
      --config configs/tcpformer_h36m.py:frames=27 --config.model.depth=2 \
      --config.model.dim=32 --frameworks jax,torch,torch_compile \
      --mode train,infer --dtype float32 --batch_size 8 --steps 5
    ;;
  tcpformer)
    bench "$phase" --config configs/tcpformer_h36m.py \
      --frameworks jax,torch,torch_compile --mode train \
      --dtype float32,bfloat16 --batch_size 4 --steps 20 --warmup 5
    ;;
  l2a)
    bench "$phase" --config configs/l2a_h36m.py \
      --frameworks jax,torch,torch_compile --mode train \
      --dtype float32,bfloat16 --batch_size 16 --steps 20 --warmup 5
    ;;
  batch16)
    bench batch16_recompute_attention \
      --config configs/tcpformer_h36m.py --config.model.recompute_attention=True \
      --frameworks jax,torch --mode train --dtype bfloat16 --batch_size 16 \
      --steps 10 --warmup 3
    bench "$phase" --config configs/tcpformer_h36m.py --config.model.remat=block \
      --frameworks jax,torch --mode train --dtype float32,bfloat16 \
      --batch_size 16 --steps 10 --warmup 3
    ;;
  tf32)
    bench "$phase" --config configs/tcpformer_h36m.py \
      --config configs/l2a_h36m.py \
      --frameworks jax,torch --mode train --dtype float32 \
      --fp32_matmul tf32 --batch_size 4 --steps 20
    ;;
  infer)
    bench "$phase" --config configs/tcpformer_h36m.py \
      --config configs/l2a_h36m.py \
      --frameworks jax,torch,torch_compile --mode infer \
      --dtype float32,bfloat16 --batch_size 16 --steps 20
    ;;
  depth)
    bench "$phase" --config configs/l2a_h36m.py --frameworks jax,torch \
      --steps 0 --depths 4,8,16,32 --batch_size 4
    ;;
esac 2>&1 | tee "$out/$phase.log"
