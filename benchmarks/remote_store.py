"""Bytes read from an S3 embedding store: a whole-CONUS map against one state's window.

Starts moto's S3 server on 127.0.0.1 (tests/s3_server.py), writes a CONUS store to it with
`prom3e-geo embed --out s3://...` (demo model, location context, a coarse grid so that it runs
on a laptop CPU), then counts the bytes the server sends for:

1. `prom3e-geo sdm --embeddings s3://...` (a CONUS map);
2. `prom3e-geo sdm --embeddings s3://... --aoi COLORADO` (one state's window of the store;
   Colorado is a lat/lon rectangle: -109.06..-102.04 E, 36.99..41.00 N);
3. the same map a second time (the query path with the towers warm in the OS file cache).

Run: `.venv/bin/python benchmarks/remote_store.py [--resolution 0.5] [--chunk 16]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.s3_server import moto_s3  # noqa: E402

EXE = Path(sys.executable).with_name("prom3e-geo")
COLORADO = (-109.06, 36.99, -102.04, 41.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", default="0.5")
    parser.add_argument("--chunk", default="16")
    args = parser.parse_args()
    url = "s3://maps/conus.zarr"
    with moto_s3() as (env, log), tempfile.TemporaryDirectory() as tmp:
        os.environ.update(env, PROM3E_GEO_CACHE=str(Path(tmp) / "cache"))
        grid = ["--resolution", args.resolution, "--chunk", args.chunk, "--context", "loc"]
        started = time.perf_counter()
        subprocess.run([EXE, "embed", *grid, "--out", url], check=True, capture_output=True)
        print(f"embed CONUS to S3: {time.perf_counter() - started:.1f} s")

        import fsspec

        fs = fsspec.filesystem("s3", use_listings_cache=False)
        size = sum(fs.du("maps/conus.zarr", total=False).values())
        objects = len(fs.find("maps/conus.zarr"))
        print(f"store: {size / 1e6:.2f} MB in {objects} objects")

        log.reset()
        started = time.perf_counter()
        out = Path(tmp) / "map.tif"
        query = ROOT / "examples" / "cardinal.jpg"
        subprocess.run([EXE, "sdm", "--query", query, "--embeddings", url, "--out", out],
                       check=True, capture_output=True)  # fmt: skip
        seconds = time.perf_counter() - started
        print(f"sdm CONUS map: {log.bytes_out / 1e6:.2f} MB read "
              f"({100 * log.bytes_out / size:.0f}% of the store), {log.requests['GET']} GETs, {seconds:.1f} s")  # fmt: skip

        colorado = ",".join(str(v) for v in COLORADO)
        for run in ("first", "again"):
            log.reset()
            started = time.perf_counter()
            subprocess.run([EXE, "sdm", "--query", query, "--embeddings", url, "--aoi", colorado,
                            "--out", out, "--overwrite"], check=True, capture_output=True)  # fmt: skip
            seconds = time.perf_counter() - started
            print(f"sdm Colorado ({run}): {log.bytes_out / 1e6:.2f} MB read "
                  f"({100 * log.bytes_out / size:.1f}% of the store), {log.requests['GET']} GETs, {seconds:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
