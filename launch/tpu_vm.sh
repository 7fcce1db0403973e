#!/usr/bin/env bash
# Train on a Cloud TPU VM slice (single host or pod): the same command on
# every worker.
#
#   launch/tpu_vm.sh [--dry_run] TPU_NAME ZONE ACCELERATOR CONFIG WORKDIR \
#       [--config.KEY=VALUE ...]
#
#   e.g. launch/tpu_vm.sh l2a-v5e-32 us-west4-a v5litepod-32 \
#       configs/large_batch.py:batch=1024 gs://my-bucket/runs/l2a_b1024 \
#       --config.data.data_dir=gs://my-bucket/tensorflow_datasets
#
# 1. Reuses the TPU VM TPU_NAME if it exists, else creates it
#    (ACCELERATOR, e.g. v4-32 or v5litepod-16; runtime TPU_RUNTIME, default
#    v2-alpha-tpuv5-lite; SPOT=1 adds --spot).
# 2. On every worker (--worker=all): clones REPO_URL (default: this
#    checkout's origin) at REPO_REF (default: this checkout's HEAD) into
#    ~/l2a_jax, and on the first run creates ~/l2a_jax_venv with jax[tpu] and
#    the repository installed.
# 3. Runs `python -m l2a_jax.main --config=CONFIG --workdir=WORKDIR ...` on
#    every worker at once; l2a_jax/distributed.py detects the TPU VM and
#    jax.distributed.initialize() finds the coordinator from the metadata.
#
# WORKDIR must be a bucket path (gs://...) visible to all workers, and so
# must the prepared TFDS data (--config.data.data_dir=gs://...). Only
# process 0 writes summaries, metrics and pictures; all processes write
# their shards of the Orbax checkpoints. --dry_run prints the gcloud
# commands instead of running them and exits 0.
set -euo pipefail
dry_run=0
if [[ "${1:-}" == --dry_run ]]; then dry_run=1; shift; fi
if [[ $# -lt 5 ]]; then
  echo "usage: $0 [--dry_run] TPU_NAME ZONE ACCELERATOR CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2
  exit 2
fi
tpu_name=$1
zone=$2
accelerator=$3
config=$4
workdir=$5
shift 5
if [[ "$workdir" != gs://* ]]; then
  echo "$0: WORKDIR must be a gs:// path shared by all workers, got '$workdir'" >&2
  exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
repo_url=${REPO_URL:-$(git -C "$repo" remote get-url origin 2>/dev/null || echo REPO_URL)}
repo_ref=${REPO_REF:-$(git -C "$repo" rev-parse HEAD)}
runtime=${TPU_RUNTIME:-v2-alpha-tpuv5-lite}
overrides=''
if [[ $# -gt 0 ]]; then overrides=$(printf ' %q' "$@"); fi

remote_command="set -euo pipefail
if [[ ! -d ~/l2a_jax ]]; then git clone $(printf %q "$repo_url") ~/l2a_jax; fi
cd ~/l2a_jax && git fetch -q origin && git checkout -q $(printf %q "$repo_ref")
if [[ ! -d ~/l2a_jax_venv ]]; then
  python3 -m venv ~/l2a_jax_venv
  ~/l2a_jax_venv/bin/pip install -q -U pip 'jax[tpu]'
  ~/l2a_jax_venv/bin/pip install -q -e .
fi
~/l2a_jax_venv/bin/python -m l2a_jax.main --config=$(printf %q "$config") --workdir=$(printf %q "$workdir")$overrides"

describe=(gcloud compute tpus tpu-vm describe "$tpu_name" --zone "$zone")
create=(gcloud compute tpus tpu-vm create "$tpu_name" --zone "$zone"
        --accelerator-type "$accelerator" --version "$runtime")
if [[ "${SPOT:-0}" == 1 ]]; then create+=(--spot); fi
run=(gcloud compute tpus tpu-vm ssh "$tpu_name" --zone "$zone" --worker=all
     --command "$remote_command")

if [[ $dry_run == 1 ]]; then
  printf '%q ' "${describe[@]}"; printf '>/dev/null 2>&1 || '
  printf '%q ' "${create[@]}"; echo
  printf '%q ' "${run[@]}"; echo
  echo "# remote command on every worker:"
  echo "$remote_command"
  exit 0
fi
if ! "${describe[@]}" >/dev/null 2>&1; then
  echo "Creating TPU VM $tpu_name ($accelerator) in $zone." >&2
  "${create[@]}"
fi
exec "${run[@]}"
