#!/usr/bin/env bash
# N JAX processes on this machine (CPU): the multi-process code path of a pod.
#
#   launch/local.sh NUM_PROCESSES CONFIG WORKDIR [--config.KEY=VALUE ...]
#
# Starts NUM_PROCESSES copies of `python -m l2a_jax.main`, each with
# LOCAL_DEVICES fake CPU devices (default 1), process 0 the coordinator on
# 127.0.0.1 at a free port (L2A_JAX_COORDINATOR_ADDRESS, _NUM_PROCESSES,
# _PROCESS_ID, read by l2a_jax/distributed.py). Output of process 0 goes to
# the terminal; every process's output to WORKDIR/logs/process<I>.log. If a
# process fails the others are stopped; the exit status is the first
# failure's (0 when all succeed). --dry_run (first argument) prints the
# commands and exits 0. PYTHON selects the interpreter (default: python).
set -euo pipefail
dry_run=0
if [[ "${1:-}" == --dry_run ]]; then dry_run=1; shift; fi
if [[ $# -lt 3 ]] || ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [--dry_run] NUM_PROCESSES CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2
  exit 2
fi
num_processes=$1
config=$2
workdir=$3
shift 3
python=${PYTHON:-python}
local_devices=${LOCAL_DEVICES:-1}
# Relative CONFIG and WORKDIR keep meaning the current directory.
repo=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
if [[ $dry_run == 1 ]]; then
  port=PORT
else
  port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
logs="$workdir/logs"

xla_flags="${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$local_devices"
command_of() {  # the command of process $1 (then the extra flags), quoted
  local index=$1
  shift
  printf 'env JAX_PLATFORMS=cpu XLA_FLAGS=%q L2A_JAX_COORDINATOR_ADDRESS=127.0.0.1:%s L2A_JAX_NUM_PROCESSES=%s L2A_JAX_PROCESS_ID=%s %q -m l2a_jax.main' \
    "$xla_flags" "$port" "$num_processes" "$index" "$python"
  printf ' %q' "--config=$config" "--workdir=$workdir" "$@"
}

if [[ $dry_run == 1 ]]; then
  for ((i = 0; i < num_processes; i++)); do
    echo "$(command_of "$i" "$@") > $(printf %q "$logs/process$i.log") 2>&1"
  done
  exit 0
fi

mkdir -p "$logs"
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 130' INT TERM
for ((i = 0; i < num_processes; i++)); do
  if [[ $i == 0 ]]; then
    # Process 0 to the terminal and its log file.
    eval "exec $(command_of 0 "$@")" > >(tee "$logs/process0.log") 2>&1 &
  else
    eval "exec $(command_of "$i" "$@")" > "$logs/process$i.log" 2>&1 &
  fi
  pids+=($!)
done
status=0
for ((i = 0; i < num_processes; i++)); do
  code=0
  wait "${pids[$i]}" || code=$?
  if [[ $code != 0 ]]; then
    if [[ $status == 0 ]]; then
      status=$code
      echo "$0: process $i failed (exit $code); see $logs/process$i.log" >&2
      stop_all
    fi
  fi
done
wait  # the tee of process 0
exit $status
