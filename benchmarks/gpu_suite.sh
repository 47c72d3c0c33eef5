#!/usr/bin/env bash
# Every GPU measurement that benchmarks/RESULTS.md reports, one part at a time, logs and JSON into OUTDIR.
#
#   bash benchmarks/gpu_suite.sh OUTDIR [PART ...]
#
# Parts (default: all, in this order; about 12 minutes on one H100, most of it the e2e part):
#   kernels benchmarks/kernel_check.py: each Triton kernel compiled and checked against its eager op
#   smoke  benchmarks/cuda_smoke.py: a two-epoch fold with every CUDA default (about 1 min with warm-up)
#   ops    benchmarks/augment_ops.py --device cuda --lists b3,unet --batch 16 (about 2 min)
#   e2e    benchmarks/throughput.py --device cuda --workloads b3,resnet34 (about 5 min)
#   unet   benchmarks/throughput.py --device cuda --workloads unet
# After the parts, benchmarks/suite_summary.py writes benchmarks/results/throughput-<device>-<date>.json (and a
# copy in OUTDIR): per workload medals / seed, medals % of ceiling, the raw images/s, device and commit.
# DEVICE=cpu rehearses the suite on the CPU (--quick sizes, no smoke part) and writes the same JSON shape.
# A GPU machine without the project's dependencies can take them as wheels: with WHEELS=DIR set (made by
# benchmarks/offline_wheels.sh), they are installed into a private folder on PYTHONPATH first.
set -euo pipefail
out=${1:?usage: gpu_suite.sh OUTDIR [kernels|smoke|ops|e2e|unet ...]}
shift
parts=("$@")
device=${DEVICE:-cuda}
quick=()
if [ "$device" = cpu ]; then
  quick=(--quick)
  [ ${#parts[@]} -eq 0 ] && parts=(ops e2e unet)
fi
[ ${#parts[@]} -eq 0 ] && parts=(kernels smoke ops e2e unet)
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1
if [ -n "${WHEELS:-}" ]; then
  site=$(mktemp -d)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$WHEELS"/*.whl
  export PYTHONPATH="$site:$here${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.csv" 2>&1 || true
for part in "${parts[@]}"; do
  echo "== $part $(date -u +%FT%TZ)"
  case $part in
    kernels) cmd=(python3 "$here/benchmarks/kernel_check.py" --device "$device") ;;
    smoke) cmd=(python3 "$here/benchmarks/cuda_smoke.py") ;;
    ops) cmd=(python3 "$here/benchmarks/augment_ops.py" --device "$device" "${quick[@]}" --lists b3,unet --batch 16 --json "$out/ops.json") ;;
    e2e) cmd=(python3 "$here/benchmarks/throughput.py" --device "$device" "${quick[@]}" --workloads b3,resnet34 --json "$out/e2e.json") ;;
    unet) cmd=(python3 "$here/benchmarks/throughput.py" --device "$device" "${quick[@]}" --workloads unet --json "$out/unet.json") ;;
    *) echo "unknown part '$part': choose from kernels, smoke, ops, e2e, unet" >&2; exit 2 ;;
  esac
  "${cmd[@]}" 2>&1 | tee "$out/$part.log"
done
summary=$(python3 "$here/benchmarks/suite_summary.py" "$out" | tee "$out/summary.log" | sed -n 's/^wrote //p')
cp "$summary" "$out/"
