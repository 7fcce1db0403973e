#!/bin/bash
# The measurement of docs/benchmarks.md, "2026-12-05: Linear on rows":
# 6 rounds of the CPU table's float32 training command on this commit
# (framework order alternated), each followed by the same command, JAX only,
# on the parent commit 45d85fa (a clone in $OLD); then 4 rounds of the
# TCPFormer row with model.remat='block'. Usage: run_rounds.sh OLD_CLONE
set -u
OLD=$1
NEW=$(cd "$(dirname "$0")/../../.." && pwd)
RAW=$NEW/docs/benchmarks/cpu_20261205_rows
. /work/venv/bin/activate
common=(--config.model.depth=4 --config.model.dim=64 --mode train --dtype float32 --batch_size 4 --steps 30 --warmup 3)
both=(--config configs/l2a_h36m.py:frames=27 --config configs/tcpformer_h36m.py:frames=27)
for r in 1 2 3 4 5 6; do
  if [ $((r % 2)) = 1 ]; then fw=jax,torch; else fw=torch,jax; fi
  echo "round $r: $(uptime)"
  (cd "$NEW" && python -m l2a_jax.benchmark "${both[@]}" "${common[@]}" --frameworks $fw --json $RAW/train_fp32_round$r.json) | grep -E "^\| .* train "
  (cd "$OLD" && python -m l2a_jax.benchmark "${both[@]}" "${common[@]}" --frameworks jax --json $RAW/parent_jax_round$r.json) | grep -E "^\| .* train "
done
for r in 1 2 3 4; do
  if [ $((r % 2)) = 1 ]; then fw=jax,torch; else fw=torch,jax; fi
  echo "remat round $r: $(uptime)"
  (cd "$NEW" && python -m l2a_jax.benchmark --config configs/tcpformer_h36m.py:frames=27 --config.model.remat=block "${common[@]}" --frameworks $fw --json $RAW/tcpformer_remat_block_round$r.json) | grep -E "^\| .* train "
done
echo "end: $(uptime)"
