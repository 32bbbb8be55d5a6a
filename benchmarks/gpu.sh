#!/usr/bin/env bash
# The prepared GPU run: one call on a lent device machine, under 8 minutes on one data-centre GPU.
#
#   bash benchmarks/gpu_wheels.sh        # here, once: wheels of what the GPU image lacks -> .whl/
#   (device tool) run: bash benchmarks/gpu.sh      carry: [".whl"]     timeout_s: 540
#
# It prints one section per measurement and leaves the full log in $OUT/gpu.log:
#   1. ProM3E alone (benchmarks/model.py): official formulation, full path, readout-only, bf16;
#   2. the full-size stack (ViT-B/16 satellite tower + GeoCLIP's architecture + 27.3 M ProM3E,
#      random weights): bf16 on the GPU against float32 on the CPU (agreement), then from
#      rendered patches and from a patch cache: end-to-end cells/s, encode+model cells/s, their
#      ratio, peak GPU memory and the projected CONUS times at the paper grid and at 1 km.
# Written and run on a CPU (`--device cpu`, small sizes) only: no GPU was lent when it was made.
# Record the numbers with date and device in benchmarks/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if [ -d .whl ]; then  # the image has torch, numpy, xarray...; the geo stack comes as wheels
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null  # entry points
export PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch; print('torch', torch.__version__)"
    echo "== 1. ProM3E alone, bf16 =="
    python3 benchmarks/model.py --device cuda --precision bf16 --batch 16384 --repeats 10
    echo "== 2. full-size stack =="
    python3 benchmarks/inference.py --device cuda --precision bf16 --parts full,full-cache \
        --full-cells 16384 --full-batch 1024,2048 --prefetch 2
} 2>&1 | tee "$OUT/gpu.log"
