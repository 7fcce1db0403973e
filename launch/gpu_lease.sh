#!/usr/bin/env bash
# Every GPU measurement of docs/benchmarks.md in one call, most important
# first, under a deadline: for a borrowed GPU with minutes of time on it.
#
#   launch/gpu_lease.sh [--dry_run] [--tiny] [--copy_to DIR] OUT_DIR [BUDGET_S]
#
# BUDGET_S (default 540) is the wall time the script may use; a group of
# measurements that cannot start with at least 60 s left is skipped (and
# says so), and a running group is stopped at the deadline. After every
# group the results so far are packed into OUT_DIR/gpu_results.tar.gz
# (benchmark JSON and log per group, env.txt, summary.txt), so a call cut
# short still returns what finished. OUT_DIR/summary.txt is also left
# beside the archive. --copy_to DIR: also copy both there after every
# group (for a tool that returns only a few files from one folder).
#
# Groups, in order (T = 243, the full-size configs):
#   tcpformer_train  TCPFormer batch 4, training, jax/torch, fp32/bf16
#   l2a_train        L2A batch 16, training, jax/torch, fp32/bf16
#   tcpformer_b16    TCPFormer batch 16, training, bf16, jax/torch (memory)
#   tcpformer_compile, l2a_compile
#                    torch.compile rows of the first two groups (bf16 first)
#   tcpformer_attention_xla, l2a_attention_xla
#                    jax bf16 training with model.attention_impl=xla
#                    (against 'auto' = cuDNN above)
#   infer            inference, batch 16, bf16, jax/torch, both models
#
# Packages the GPU image lacks travel as wheels in .whl/ (docs/benchmarks.md,
# "GPU runs"): installed with --no-deps into /tmp/l2a_site. flax, optax and
# orbax-checkpoint wheels go to a second folder that is tried first (the
# versions the test suite runs); if a smoke test fails with them, the
# image's own versions are used. The smoke test also runs cuDNN attention;
# if that fails, every group runs with model.attention_impl=xla.
#
# --dry_run: print each group's benchmark command (one line,
# "NAME (at most CAP s): python3 -m l2a_jax.benchmark ...") and exit 0;
# nothing is installed, run or written.
#
# --tiny: the same groups at toy size (T = 27, depth 2, width
# 32, 3 steps), to check the script end to end on a CPU.
set -uo pipefail
usage="usage: $0 [--dry_run] [--tiny] [--copy_to DIR] OUT_DIR [BUDGET_S]"
dry_run=0 tiny=0 copy_to=
while [[ $# -gt 0 && "$1" == --* ]]; do
  case "$1" in
    --dry_run) dry_run=1 ;;
    --tiny) tiny=1 ;;
    --copy_to) copy_to=${2:?$usage}; shift ;;
    *) echo "$0: unknown option '$1'; $usage" >&2; exit 2 ;;
  esac
  shift
done
if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "$usage" >&2
  exit 2
fi
if [[ -n "${2:-}" && ! "$2" =~ ^[0-9]+$ ]]; then
  echo "$0: BUDGET_S: expected a number of seconds, got '$2'" >&2
  exit 2
fi
out=$1
budget=${2:-540}
start=$(date +%s)
deadline=$((start + budget))
cd "$(dirname "$0")/.."
results="$out/results"
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false
summary="$results/summary.txt"

note() {
  echo "[$(($(date +%s) - start)) s] $*" | tee -a "$summary"
}

pack() {
  cp "$summary" "$out/summary.txt"
  tar czf "$out/gpu_results.tar.gz.tmp" -C "$results" . &&
    mv "$out/gpu_results.tar.gz.tmp" "$out/gpu_results.tar.gz"
  if [[ -n "$copy_to" ]]; then
    cp "$out/gpu_results.tar.gz" "$out/summary.txt" "$copy_to/"
  fi
}

# --- smoke test -----------------------------------------------------------
# Tiny models of both kinds: a training gradient in float32 with 'auto'
# attention and in bfloat16 with cuDNN attention where the backend is a GPU.
smoke() {
  python3 - <<'EOF'
import jax, jax.numpy as jnp
from flax import nnx
from l2a_jax import cli
from l2a_jax.models import create_model
gpu = jax.default_backend() == 'gpu'
print('backend', jax.default_backend(), jax.devices(), flush=True)
for index, name in enumerate(('l2a', 'tcpformer')):
  for dtype, impl in (('float32', 'auto'),
                      ('bfloat16', 'cudnn' if gpu else 'auto')):
    config = cli.load_config_file(f'configs/{name}_h36m.py:frames=27',
                                  f'smoke_{index}_{dtype}')
    # Width 128, 8 heads: head size 16 as at full size (cuDNN needs a
    # multiple of 8).
    config.model.update(depth=2, dim=128, dtype=dtype, attention_impl=impl)
    model = create_model(config.model, nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 27, 17, 3))
    loss = lambda m: jnp.mean(m(x).astype(jnp.float32) ** 2)
    value, _ = nnx.jit(nnx.value_and_grad(loss))(model)
    print('smoke', name, dtype, impl, float(value), flush=True)
EOF
}

# prepare: the packages (wheels, then the PYTHONPATH that works), env.txt,
# the smoke test and its fallbacks; sets `extra` when cuDNN must be avoided.
prepare() {
  mkdir -p "$results"
  : >"$summary"

  # --- packages -------------------------------------------------------------
  local site=/tmp/l2a_site pinned=/tmp/l2a_site_pinned base_path wheel
  local general=() pins=()
  if compgen -G ".whl/*.whl" >/dev/null; then
    mkdir -p "$site" "$pinned"
    for wheel in .whl/*.whl; do
      case "$(basename "$wheel")" in
        flax-*|optax-*|orbax_checkpoint-*) pins+=("$wheel") ;;
        *) general+=("$wheel") ;;
      esac
    done
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target "$site" "${general[@]}" || note "wheel install failed"
    if ((${#pins[@]})); then
      python3 -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target "$pinned" "${pins[@]}" ||
        note "pinned wheel install failed"
    fi
  fi
  base_path="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONPATH="$pinned:$base_path"

  {
    date -u
    command -v nvidia-smi >/dev/null &&
      nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit \
        --format=csv
    python3 - <<'EOF'
import importlib.metadata as md
import sys
print('python', sys.version.split()[0])
for name in ('jax', 'jaxlib', 'jax-cuda13-plugin', 'jax-cuda12-plugin',
             'flax', 'optax', 'orbax-checkpoint', 'ml-collections', 'torch',
             'triton', 'numpy', 'nvidia-cudnn-cu13'):
  try:
    print(name, md.version(name))
  except md.PackageNotFoundError:
    print(name, '-')
EOF
  } >"$results/env.txt" 2>&1

  if smoke >"$results/smoke.log" 2>&1; then
    note "smoke test passed with the carried flax/optax/orbax"
  else
    export PYTHONPATH="$base_path"
    if smoke >"$results/smoke_image_packages.log" 2>&1; then
      note "smoke test failed with the carried flax/optax/orbax" \
        "(smoke.log), passed with the image's own"
    else
      note "smoke test failed with both package sets: see smoke*.log"
      extra=(--config.model.attention_impl=xla)
    fi
  fi
  python3 -c 'import flax, optax, orbax.checkpoint as o; print("using flax", flax.__version__, flax.__file__, "optax", optax.__version__)' \
    >>"$results/env.txt" 2>&1
  pack
}

extra=()
if [[ "$dry_run" != 1 ]]; then
  prepare
fi

# --- measurements ---------------------------------------------------------
if [[ "$tiny" == 1 ]]; then
  tcp=(--config configs/tcpformer_h36m.py:frames=27 --config.model.depth=2
       --config.model.dim=32)
  l2a=(--config configs/l2a_h36m.py:frames=27 --config.model.depth=2
       --config.model.dim=32)
  steps=(--steps 3 --warmup 1)
else
  tcp=(--config configs/tcpformer_h36m.py)
  l2a=(--config configs/l2a_h36m.py)
  steps=(--steps 20 --warmup 5)
fi

# group NAME CAP_S ARGS...: one benchmark command writing results/NAME.json
# and results/NAME.log, given at most CAP_S seconds and never past the
# deadline (20 s are kept for packing).
group() {
  local name=$1 cap=$2
  shift 2
  local command=(python3 -m l2a_jax.benchmark --json "$results/$name.json"
                 --profile_dir /tmp/l2a_profiles --profile_steps 2
                 "${steps[@]}" "$@" "${extra[@]}")
  if [[ "$dry_run" == 1 ]]; then
    echo "$name (at most $cap s): ${command[*]}"
    return
  fi
  local left=$((deadline - $(date +%s) - 20))
  if ((left < 60)); then
    note "skipped $name: ${left} s left"
    return
  fi
  local limit=$((cap < left ? cap : left))
  local t0
  t0=$(date +%s)
  timeout -k 5 "$limit" "${command[@]}" --timeout "$limit" \
    >"$results/$name.log" 2>&1
  local rc=$?
  note "$name: rc $rc in $(($(date +%s) - t0)) s (limit $limit s)"
  grep -E ' (train|infer) (float32|bfloat16) ' "$results/$name.log" |
    tee -a "$summary"
  pack
}

group tcpformer_train 260 "${tcp[@]}" --frameworks jax,torch --mode train \
  --dtype bfloat16,float32 --batch_size 4
group l2a_train 200 "${l2a[@]}" --frameworks jax,torch --mode train \
  --dtype bfloat16,float32 --batch_size 16
group tcpformer_b16 100 "${tcp[@]}" --frameworks jax,torch --mode train \
  --dtype bfloat16 --batch_size 16
group tcpformer_compile 150 "${tcp[@]}" --frameworks torch_compile \
  --mode train --dtype bfloat16,float32 --batch_size 4
group l2a_compile 150 "${l2a[@]}" --frameworks torch_compile --mode train \
  --dtype bfloat16,float32 --batch_size 16
group tcpformer_attention_xla 90 "${tcp[@]}" --frameworks jax --mode train \
  --dtype bfloat16 --batch_size 4 --config.model.attention_impl=xla
group l2a_attention_xla 90 "${l2a[@]}" --frameworks jax --mode train \
  --dtype bfloat16 --batch_size 16 --config.model.attention_impl=xla
group infer 120 "${tcp[@]}" "${l2a[@]}" --frameworks jax,torch --mode infer \
  --dtype bfloat16 --batch_size 16
if [[ "$dry_run" != 1 ]]; then
  note "done"
  pack
fi
