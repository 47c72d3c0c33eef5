#!/usr/bin/env bash
# Wheels of the project's dependencies that a GPU machine with torch, torchvision and timm but no
# package index lacks, for its Python version (default 3.12), x86-64 Linux.
#
#   bash benchmarks/offline_wheels.sh DIR [PYTHON_VERSION]
#   WHEELS=DIR bash benchmarks/gpu_suite.sh OUTDIR   # on the GPU machine
set -euo pipefail
dir=${1:?usage: offline_wheels.sh DIR [PYTHON_VERSION]}
py=${2:-3.12}
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
# albumentations' and smp's own needs beyond torch/timm/numpy, one version each
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
  "${platforms[@]}" -d "$dir" \
  albumentations==2.0.8 albucore==0.0.24 segmentation_models_pytorch==0.6.0 \
  pydantic==2.14.3 pydantic_core==2.50.4 annotated_types==0.8.0 typing_inspection==0.4.5 \
  simsimd==6.5.16 stringzilla==5.3.2 iterative_stratification==0.1.9 ImageHash==4.3.2 \
  pydicom==3.0.2 pywavelets==1.9.0
ls "$dir"
