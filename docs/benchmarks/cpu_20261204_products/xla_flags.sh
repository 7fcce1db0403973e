#!/bin/bash
# XLA CPU flags against the L2A gradient and the weight-gradient products.
cd /work/main && . /work/venv/bin/activate
D=docs/benchmarks/cpu_20261204_products
uptime
for fl in "" "--xla_cpu_use_onednn=true" "--xla_cpu_experimental_onednn_fusion_type=dot" "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot" "--xla_cpu_experimental_ynn_fusion_type=-dot --xla_cpu_experimental_onednn_fusion_type=dot" "--xla_cpu_prefer_vector_width=512" "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY" "--xla_cpu_multi_thread_eigen=false" ""; do
  echo "== XLA_FLAGS='$fl'"
  XLA_FLAGS="$fl" python $D/profile_gradient.py configs/l2a_h36m.py:frames=27 --noprof 2>&1 | grep median
  XLA_FLAGS="$fl" python $D/weight_grad_flags.py 2>&1 | grep -v -i warn
done
for opt in "model.remat=block" "model.remat=dots_saveable" "model.remat=none"; do
  echo "== L2A $opt"
  python $D/profile_gradient.py configs/l2a_h36m.py:frames=27 $opt --noprof 2>&1 | grep median
done
