"""How fast the browser explorer maps a new photo: `prom3e-geo serve` on a cached store.

Starts `prom3e-geo serve` (default: the demo store of the paper grid, built and cached as
`prom3e-geo sdm --query examples/cardinal.jpg --out map.tif` builds it; run that once first)
on 127.0.0.1, then times over HTTP what the page does for a dropped photo: the upload and its
map (photo tower + a dot product per cell, `POST /api/query`), then the coloured web image
(`GET .../image.png`). Each photo is a new one (a pixel changed), so nothing is reused. Then
the same with `--clients` users uploading at once (wall time of the round, per map), and side
by side the same map made by a fresh `prom3e-geo sdm --embeddings STORE` process (what the
explorer saves: loading the model and towers, reading the store).

    python benchmarks/explorer.py [--repeats 10] [--clients 2] [-- SERVE OPTIONS ...]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).with_name("prom3e-geo")


def new_photo(i: int) -> bytes:
    """examples/cardinal.jpg with pixel (0, 0) changed: a photo the server has not seen."""
    img = Image.open(ROOT / "examples" / "cardinal.jpg").convert("RGB")
    img.putpixel((0, 0), (i % 256, (i * 7) % 256, 0))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=95)
    return out.getvalue()


def map_photo(url: str, data: bytes) -> tuple[float, float]:
    """(seconds to the layer, seconds to the layer and its web image) for one upload."""
    t = time.perf_counter()
    r = requests.post(f"{url}api/query?filename=photo.jpg", data=data, timeout=120)
    r.raise_for_status()
    layer = time.perf_counter() - t
    requests.get(f"{url}api/layers/{r.json()['id']}/image.png", timeout=120).raise_for_status()
    return layer, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("serve", nargs="*", help="options for prom3e-geo serve")
    args = parser.parse_args()
    t = time.perf_counter()
    proc = subprocess.Popen(
        [EXE, "serve", "--port", "0", *args.serve], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        url = line.split(" on ")[1].split()[0]
        print(f"server ready in {time.perf_counter() - t:.1f} s: {line.strip()}")
        map_photo(url, new_photo(0))  # warm-up
        single = np.array([map_photo(url, new_photo(i + 1)) for i in range(args.repeats)])
        print(
            f"one user, {args.repeats} new photos: layer median {np.median(single[:, 0]):.3f} s "
            f"(max {single[:, 0].max():.3f}); layer + web image median "
            f"{np.median(single[:, 1]):.3f} s (max {single[:, 1].max():.3f})"
        )
        photos = [new_photo(1000 + i) for i in range(args.clients * args.repeats)]
        with ThreadPoolExecutor(args.clients) as pool:
            t = time.perf_counter()
            together = np.array(list(pool.map(lambda p: map_photo(url, p), photos)))
            wall = time.perf_counter() - t
        print(
            f"{args.clients} users at once, {len(photos)} photos: each user's layer + web image "
            f"median {np.median(together[:, 1]):.3f} s (max {together[:, 1].max():.3f}); "
            f"{wall / len(photos):.3f} s of wall time per map"
        )
    finally:
        proc.terminate()
        proc.wait(30)
    store = line.split(" on ")[0].removeprefix("serving ")
    with tempfile.TemporaryDirectory() as folder:
        cli = []
        for i in range(3):
            photo = Path(folder) / f"photo{i}.jpg"
            photo.write_bytes(new_photo(2000 + i))
            t = time.perf_counter()
            subprocess.run([EXE, "sdm", "--query", photo, "--embeddings", store, "--out",
                            Path(folder) / f"map{i}.tif"], check=True, capture_output=True)  # fmt: skip
            cli.append(time.perf_counter() - t)
    print(
        f"prom3e-geo sdm --embeddings STORE, a fresh process per photo: median "
        f"{np.median(cli):.2f} s, {np.median(cli) / np.median(single[:, 1]):.0f}x the explorer's"
    )


if __name__ == "__main__":
    main()
