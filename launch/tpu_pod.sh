#!/usr/bin/env bash
# Train on a Cloud TPU VM or pod slice: the same command on every worker.
#
#   launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.KEY=VALUE ...]
#
# WORKDIR must be visible to all workers (a gs://bucket/path); so must the
# prepared TFDS data (--config.data.data_dir=gs://bucket/tensorflow_datasets).
# The first run creates ~/l2a_jax_venv on every worker and installs the
# repository (REPO_URL, default: this checkout's origin) with jax[tpu].
# Every worker runs `python -m l2a_jax.main` with L2A_JAX_DISTRIBUTED=1;
# jax.distributed.initialize() finds the coordinator from the TPU metadata.
set -euo pipefail
if [[ $# -lt 4 ]]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2
  exit 2
fi
tpu_name=$1
zone=$2
config=$3
workdir=$4
shift 4
repo_url=${REPO_URL:-$(git -C "$(dirname "$0")/.." remote get-url origin)}
repo_ref=${REPO_REF:-$(git -C "$(dirname "$0")/.." rev-parse HEAD)}
overrides=''
if [[ $# -gt 0 ]]; then overrides=$(printf ' %q' "$@"); fi
q_url=$(printf '%q' "$repo_url")
q_ref=$(printf '%q' "$repo_ref")

remote_command="set -euo pipefail
if [[ ! -d ~/l2a_jax ]]; then git clone $q_url ~/l2a_jax; fi
cd ~/l2a_jax && git fetch -q origin && git checkout -q $q_ref
if [[ ! -d ~/l2a_jax_venv ]]; then
  python3 -m venv ~/l2a_jax_venv
  ~/l2a_jax_venv/bin/pip install -q -U pip 'jax[tpu]'
  ~/l2a_jax_venv/bin/pip install -q -e .
fi
L2A_JAX_DISTRIBUTED=1 ~/l2a_jax_venv/bin/python -m l2a_jax.main \
  --config=$(printf '%q' "$config") \
  --workdir=$(printf '%q' "$workdir")$overrides"

exec gcloud compute tpus tpu-vm ssh "$tpu_name" --zone "$zone" --worker=all \
  --command "$remote_command"
