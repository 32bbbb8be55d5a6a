"""Diversity layer at scale: 10 million synthetic observations over CONUS on the paper grid.

Measured side by side in one run:

1. end to end from an iNaturalist-style CSV to the five diversity bands, each approach in its own
   child process so that its peak RSS is its own:
   - prom3e-geo: streaming pyarrow reader + sparse sort-based counting + normalised smoothing;
   - baseline: `pandas.read_csv` of the whole file, then `groupby` per (cell, species);
2. the counting core alone on in-memory arrays (same process): ours vs the pandas groupby.

    python benchmarks/diversity.py [--rows 10000000] [--species 5000]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from prom3e_geo.grid import build_grid
from prom3e_geo.layers.diversity import compute_diversity, smooth_within
from prom3e_geo.observations import ObservationChunk, ObservationReader


def synthetic_csv(path: Path, rows: int, species: int, seed: int = 0) -> None:
    """iNaturalist-style CSV: points over the CONUS bbox, Zipf-like species frequencies."""
    rng = np.random.default_rng(seed)
    block = 1_000_000
    names = pa.array([f"Species number{i}" for i in range(species)])
    weights = 1.0 / np.arange(1, species + 1)
    weights /= weights.sum()
    with pacsv.CSVWriter(
        path,
        pa.schema(
            [
                ("id", pa.int64()),
                ("observed_on", pa.string()),
                ("latitude", pa.float64()),
                ("longitude", pa.float64()),
                ("scientific_name", pa.string()),
                ("quality_grade", pa.string()),
            ]
        ),
    ) as writer:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            table = pa.table(
                {
                    "id": np.arange(start, start + n),
                    "observed_on": pa.array(["2023-06-01"] * n),
                    "latitude": rng.uniform(24.5, 49.4, n).round(5),
                    "longitude": rng.uniform(-124.8, -66.9, n).round(5),
                    "scientific_name": names.take(rng.choice(species, n, p=weights)),
                    "quality_grade": pa.array(["research"] * n),
                }
            )
            writer.write_table(table)


def run_ours(path: Path) -> dict:
    grid = build_grid()
    reader = ObservationReader(path)
    layers = compute_diversity(reader, grid, sigma=2.0)
    return {
        "cells_with_data": layers.cells_with_data,
        "checksum": float(np.nansum(layers.shannon_raw)),
    }


def pandas_indices(cell: np.ndarray, species: np.ndarray, n_cells: int):
    """The straightforward way: groupby (cell, species) sizes, then per-cell aggregates."""
    counts = pd.DataFrame({"cell": cell, "species": species}).groupby(["cell", "species"]).size()
    frame = counts.rename("n").reset_index()
    frame["total"] = frame.groupby("cell")["n"].transform("sum")
    p = frame["n"] / frame["total"]
    frame["h"] = -p * np.log(p)
    per_cell = frame.groupby("cell").agg(
        shannon=("h", "sum"), richness=("n", "size"), n_obs=("n", "sum")
    )
    out = {k: np.zeros(n_cells) for k in ("shannon", "richness", "n_obs")}
    for k in out:
        out[k][per_cell.index.to_numpy()] = per_cell[k].to_numpy()
    return out


def run_pandas(path: Path) -> dict:
    grid = build_grid()
    frame = pd.read_csv(path)
    frame = frame.dropna(subset=["latitude", "longitude", "scientific_name"])
    cell = grid.cell_index_lonlat(frame["longitude"].to_numpy(), frame["latitude"].to_numpy())
    inside = cell >= 0
    inside[inside] = grid.mask.ravel()[cell[inside]]
    codes, _ = pd.factorize(frame["scientific_name"].to_numpy()[inside])
    out = pandas_indices(cell[inside], codes, grid.height * grid.width)
    shannon = out["shannon"].reshape(grid.shape)
    smooth_within(shannon, grid.mask, 2.0)
    smooth_within(out["richness"].reshape(grid.shape), grid.mask, 2.0)
    return {
        "cells_with_data": int((out["n_obs"].reshape(grid.shape)[grid.mask] > 0).sum()),
        "checksum": float(shannon[grid.mask].sum()),
    }


def child(mode: str, path: Path) -> dict:
    """Run one approach in a fresh interpreter; return its wall time and peak RSS."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--csv", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def core_comparison(rows: int, species: int) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    grid = build_grid()
    lon = rng.uniform(-124.8, -66.9, rows)
    lat = rng.uniform(24.5, 49.4, rows)
    sp = rng.integers(0, species, rows).astype(np.int32)
    chunks = [
        ObservationChunk(lon[i : i + 1_000_000], lat[i : i + 1_000_000], sp[i : i + 1_000_000])
        for i in range(0, rows, 1_000_000)
    ]
    t = time.perf_counter()
    compute_diversity(chunks, grid, sigma=0)
    ours = time.perf_counter() - t
    t = time.perf_counter()
    cell = grid.cell_index_lonlat(lon, lat)
    inside = cell >= 0
    inside[inside] = grid.mask.ravel()[cell[inside]]
    pandas_indices(cell[inside], sp[inside], grid.height * grid.width)
    theirs = time.perf_counter() - t
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--species", type=int, default=5_000)
    parser.add_argument("--child", choices=["ours", "pandas"])
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args()
    if args.child:
        result = run_ours(args.csv) if args.child == "ours" else run_pandas(args.csv)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "observations.csv"
        t = time.perf_counter()
        synthetic_csv(path, args.rows, args.species)
        size_mb = path.stat().st_size / 1e6
        print(
            f"generated {args.rows:,} rows ({size_mb:,.0f} MB) in {time.perf_counter() - t:.1f} s"
        )
        ours = child("ours", path)
        base = child("pandas", path)
    assert ours["cells_with_data"] == base["cells_with_data"]
    assert abs(ours["checksum"] - base["checksum"]) < 1e-6 * max(1.0, abs(base["checksum"]))
    print("end to end (CSV -> 5 bands, paper grid, sigma 2), each in its own process:")
    for name, r in (("prom3e-geo", ours), ("pandas groupby", base)):
        print(f"  {name:15s} {r['wall_s']:7.1f} s   peak RSS {r['peak_rss_mib']:7.0f} MiB")
    print(
        f"  ratio (pandas / prom3e-geo): time {base['wall_s'] / ours['wall_s']:.2f}x, "
        f"peak RSS {base['peak_rss_mib'] / ours['peak_rss_mib']:.2f}x"
    )
    ours_core, pandas_core = core_comparison(args.rows, args.species)
    print(
        f"counting core on in-memory arrays: prom3e-geo {ours_core:.2f} s, pandas groupby "
        f"{pandas_core:.2f} s, ratio {pandas_core / ours_core:.2f}x"
    )


if __name__ == "__main__":
    main()
