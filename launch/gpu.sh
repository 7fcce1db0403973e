#!/usr/bin/env bash
# Train on the GPUs of one machine, or on several machines under SLURM.
#
#   launch/gpu.sh CONFIG WORKDIR [--config.KEY=VALUE ...]
#
# One machine: all visible GPUs form the data-parallel mesh
# (CUDA_VISIBLE_DEVICES selects them). Several machines: run this same
# command on every node (e.g. `srun --ntasks-per-node=1 launch/gpu.sh ...`,
# one process per node); with SLURM_NTASKS > 1 distributed initialisation is
# switched on and jax.distributed.initialize() reads the SLURM environment.
# Without SLURM, set L2A_JAX_DISTRIBUTED=1 and pass --coordinator_address,
# --num_processes and --process_id (different on each node) as extra flags.
#
# For multi-node jobs with one process per GPU use launch/slurm.sbatch.
#
# Prerequisite (once): pip install -U "jax[cuda12]" && pip install -e .
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2
  exit 2
fi
config=$1
workdir=$2
shift 2
cd "$(dirname "$0")/.."
if [[ "${SLURM_NTASKS:-1}" -gt 1 ]]; then
  export L2A_JAX_DISTRIBUTED=1
fi
# Let XLA take GPU memory as it needs it instead of 75 % up front, so the
# memory report and nvidia-smi show the real use.
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
exec python -m l2a_jax.main --config="$config" --workdir="$workdir" "$@"
