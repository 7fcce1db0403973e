#!/usr/bin/env bash
# The large-batch convergence check of docs/scaling.md: the same model and
# synthetic data (configs/batch_scaling.py) trained for the same number of
# epochs at batch 16 with the lineage recipe and at a large batch with the
# scale-out recipe, then one comparison table. Run from the repository root:
#
#   bash launch/batch_scaling.sh [WORKDIR] [EPOCHS] [LARGE_BATCH]
#
# WORKDIR (default /tmp/batch_scaling) gets b16/, bN/ and comparison.json;
# EPOCHS defaults to 10, LARGE_BATCH to 512. Extra arguments go to both runs
# (e.g. --config.data.data_dir=/tmp/data). The devices are whatever JAX
# sees: the updates do not depend on the device count (accumulation follows
# optim.max_per_device_batch), so 1 CPU, 8 fake CPU devices
# (XLA_FLAGS=--xla_force_host_platform_device_count=8) or a GPU give the same
# training curve up to float rounding.
set -euo pipefail
WORKDIR="${1:-/tmp/batch_scaling}"
EPOCHS="${2:-10}"
LARGE="${3:-512}"
shift $(( $# < 3 ? $# : 3 ))
case "$EPOCHS$LARGE" in
  *[!0-9]*|'') echo "launch/batch_scaling.sh: EPOCHS and LARGE_BATCH must be" \
      "positive integers, got '$EPOCHS' and '$LARGE'" >&2; exit 2 ;;
esac
mkdir -p "$WORKDIR"
python -m l2a_jax.main \
    --config "configs/batch_scaling.py:batch=16,recipe=lineage,epochs=$EPOCHS" \
    --workdir "$WORKDIR/b16" "$@"
python -m l2a_jax.main \
    --config "configs/batch_scaling.py:batch=$LARGE,recipe=large_batch,epochs=$EPOCHS" \
    --workdir "$WORKDIR/b$LARGE" "$@"
# One row per run: the final test metrics (eval_metrics.json) and the
# training rates (run_summary.json), also written to comparison.json.
python - "$WORKDIR" b16 "b$LARGE" <<'PY'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
rows = []
for name in sys.argv[2:]:
  metrics = json.loads((root / name / 'eval_metrics.json').read_text())
  run = json.loads((root / name / 'run_summary.json').read_text())
  rows.append(dict(run=name, global_batch=run['global_batch'],
                   steps=run['steps'], mpjpe_mm=metrics['mpjpe_mm'],
                   p_mpjpe_mm=metrics['p_mpjpe_mm'],
                   depth_mm=metrics['error_depth_mm'],
                   steps_per_s=run['train_steps_per_second'],
                   clips_per_s=run['train_clips_per_second'],
                   wall_s=run['wall_seconds']['total']))
(root / 'comparison.json').write_text(json.dumps(rows, indent=2) + '\n')
print('| run | batch | steps | MPJPE mm | P-MPJPE mm | depth mm | steps/s | clips/s | wall s |')
print('|---|---|---|---|---|---|---|---|---|')
for r in rows:
  print(f"| {r['run']} | {r['global_batch']} | {r['steps']} | {r['mpjpe_mm']:.1f} "
        f"| {r['p_mpjpe_mm']:.1f} | {r['depth_mm']:.1f} | {r['steps_per_s']:.3f} "
        f"| {r['clips_per_s']:.1f} | {r['wall_s']:.0f} |")
PY
