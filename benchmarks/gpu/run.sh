#!/usr/bin/env bash
# On a lent GPU machine, in a copy of the working tree with .gpu-kit/ carried (kit.sh): unpack
# the kit and run benchmarks/bench_gpu.py once; its JSON, its log and nvidia-smi's view land in
# $OUT. Extra arguments go to bench_gpu.py (e.g. --sections fixed layouts).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/bench_gpu_out}
mkdir -p "$OUT" /tmp/gpu-kit
KIT=${KIT:-.gpu-kit}
tar -C /tmp/gpu-kit -xJf "$KIT/site.tar.xz" || exit 2
export PYTHONPATH="/tmp/gpu-kit/site:$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export TILEPIPE_COMMIT="$(cat "$KIT/commit" 2>/dev/null)"
PY=${PY:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
  > "$OUT/nvidia-smi.csv" 2>&1
"$PY" -c "import torch, rasterio; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'gdal', rasterio.__gdal_version__)" || exit 2
"$PY" benchmarks/bench_gpu.py --out "$OUT" "$@" 2>&1 | tee "$OUT/bench_gpu.log"
