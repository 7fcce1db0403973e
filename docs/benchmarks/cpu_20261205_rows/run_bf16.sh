#!/bin/bash
# bfloat16 training rows of the CPU table on this commit: 2 rounds,
# framework order alternated (docs/benchmarks.md, 2026-12-05).
set -u
NEW=$(cd "$(dirname "$0")/../../.." && pwd)
RAW=$NEW/docs/benchmarks/cpu_20261205_rows
. /work/venv/bin/activate
cd "$NEW"
for r in ${ROUNDS:-1 2}; do
  if [ $r = 1 ]; then fw=jax,torch; else fw=torch,jax; fi
  echo "round $r: $(uptime)"
  python -m l2a_jax.benchmark --config configs/l2a_h36m.py:frames=27 --config configs/tcpformer_h36m.py:frames=27 --config.model.depth=4 --config.model.dim=64 --mode train --dtype bfloat16 --batch_size 4 --steps 30 --warmup 3 --frameworks $fw --json $RAW/${PREFIX:-train_bf16}_round$r.json | grep -E "^\| .* train "
done
