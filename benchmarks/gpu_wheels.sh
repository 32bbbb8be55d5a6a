#!/usr/bin/env bash
# Wheels for the GPU machine's Python 3.12 of what its image lacks (it has torch, numpy, scipy,
# pandas, pyarrow, xarray, matplotlib, transformers, safetensors, tqdm, click, pyyaml...), into
# .whl/ (git-ignored), to carry with `benchmarks/gpu.sh`. Needs the package registry.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    rasterio==1.4.4 affine click-plugins cligj pyproj shapely zarr==3.1.6 numcodecs donfig \
    rioxarray
du -sh .whl  # with the working tree, at most 64 MiB travel
