#!/usr/bin/env bash
# Wheels of the packages the benchmark needs that a bare CUDA image (jax,
# torch, numpy, absl-py, etils, chex, tensorstore, ... but no
# ml-collections, grain or tensorflow-datasets) lacks, for a machine with no
# package index: launch/gpu_lease.sh installs whatever lies in .whl/.
#
#   launch/gpu_wheels.sh [DIR] [PYTHON_VERSION]
#
# DIR defaults to .whl (git-ignore it: `echo /.whl/ >> .git/info/exclude`),
# PYTHON_VERSION (of the target machine) to 3.12. Versions are the ones the
# test suite runs with. flax, optax and orbax-checkpoint are included so the
# lease can use the tested versions (it falls back to the image's own if
# they fail its smoke test). About 13 MB.
set -euo pipefail
dir=${1:-.whl}
python_version=${2:-3.12}
if [[ ! "$python_version" =~ ^3\.[0-9]+$ ]]; then
  echo "$0: PYTHON_VERSION: expected 3.N, got '$python_version'" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
mkdir -p "$dir"
tag=cp${python_version/./}
packages=(ml-collections==1.1.0 clu==0.0.12 grain==0.2.18
          tensorflow-datasets==4.9.10 tensorflow-metadata==1.21.0
          array-record==0.8.6 immutabledict==4.3.1 portpicker==1.6.0
          simplejson==4.3.0 toml==0.10.2 dm-tree==0.1.10
          flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8)
platforms=()
for platform in manylinux_2_28_x86_64 manylinux_2_27_x86_64 \
    manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
    manylinux1_x86_64; do
  platforms+=(--platform "$platform")
done
python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version "$python_version" --implementation cp --abi "$tag" \
  --abi abi3 --abi none "${platforms[@]}" -d "$dir" "${packages[@]}"
# promise (imported by tensorflow-datasets) has no wheel on PyPI: build one
# (pure Python).
python3 -m pip wheel -q --no-deps -w "$dir" promise==2.3
ls -1 "$dir"
