"""Diversity layer at scale: 10 million synthetic observations over CONUS on the paper grid.

Measured side by side in one run:

1. end to end from an iNaturalist-style CSV to the five diversity bands, each approach in its own
   child process so that its peak RSS is its own, `--repeats` times in turn (pairwise):
   - prom3e-geo: streaming pyarrow reader + validation with drop counts + sparse sort-based
     counting + smoothing over the observed cells;
   - pandas: `read_csv` of the whole file, then `groupby` per (cell, species);
   - polars (optional, `pip install polars`): lazy `scan_csv` + `group_by`, streaming engine;
   - DuckDB (optional, `pip install duckdb`): `read_csv` + `GROUP BY`;
   every one ends with the same smoothing, and all must agree on the cells and the checksum;
2. the counting core alone on in-memory arrays (same process): ours vs the pandas groupby;
3. with `--parquet-rows N`, ours on an N-row GeoParquet file in the layout of GBIF's cloud
   snapshot (lower-case Darwin Core columns, plus a WKB point `geometry` with GeoParquet
   metadata), in its own process: wall time and peak RSS.

    python benchmarks/diversity.py [--rows 10000000] [--species 5000] [--repeats 3]
                                   [--parquet-rows 100000000]
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
import pyarrow.parquet as pq

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


def gbif_parquet(path: Path, rows: int, species: int, seed: int = 0) -> None:
    """GBIF-snapshot-style GeoParquet: 1 M-row row groups, Zipf-like species, points over the
    CONUS bbox, a few empty species (GBIF rows identified above species rank)."""
    rng = np.random.default_rng(seed)
    block = 1_000_000
    names = pa.array([f"Genus{i // 7} epithet{i}" for i in range(species)] + [None])
    weights = 1.0 / np.arange(1, species + 2)
    weights /= weights.sum()
    geo = {"version": "1.0.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"]}}}  # fmt: skip
    schema = pa.schema(
        [("gbifid", pa.int64()), ("species", pa.string()), ("countrycode", pa.string()),
         ("decimallatitude", pa.float64()), ("decimallongitude", pa.float64()),
         ("eventdate", pa.string()), ("basisofrecord", pa.string()), ("geometry", pa.binary())],
        metadata={b"geo": json.dumps(geo).encode()},
    )  # fmt: skip
    wkb = np.dtype([("order", "u1"), ("kind", "<u4"), ("x", "<f8"), ("y", "<f8")])
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            lat, lon = rng.uniform(24.5, 49.4, n).round(5), rng.uniform(-124.8, -66.9, n).round(5)
            points = np.empty(n, wkb)
            points["order"], points["kind"], points["x"], points["y"] = 1, 1, lon, lat
            geometry = pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(21), n, [None, pa.py_buffer(points.tobytes())]
            ).cast(pa.binary())
            table = pa.table(
                {
                    "gbifid": np.arange(start, start + n),
                    "species": names.take(rng.choice(species + 1, n, p=weights)),
                    "countrycode": pa.array(["US"] * n),
                    "decimallatitude": lat,
                    "decimallongitude": lon,
                    "eventdate": pa.array(["2023-06-01T00:00:00"] * n),
                    "basisofrecord": pa.array(["HUMAN_OBSERVATION"] * n),
                    "geometry": geometry,
                },
                schema=schema,
            )
            writer.write_table(table)


def run_ours(path: Path) -> dict:
    grid = build_grid()
    reader = ObservationReader(path)
    layers = compute_diversity(reader, grid, sigma=2.0)
    return {"cells_with_data": layers.cells_with_data, "checksum": float(np.nansum(layers.shannon))}


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


def finish(grid, shannon: np.ndarray, richness: np.ndarray, n_obs: np.ndarray) -> dict:
    """The layer's smoothing (observed cells of the cells touching the AOI) and the checksums
    every approach must agree on."""
    observed = grid.counted & (n_obs > 0)
    smoothed = smooth_within(shannon, grid.mask, 2.0, observed, support=grid.counted)
    smooth_within(richness, grid.mask, 2.0, observed, support=grid.counted)
    return {
        "cells_with_data": int((n_obs[grid.mask] > 0).sum()),
        "checksum": float(np.nansum(smoothed)),
    }


def run_pandas(path: Path) -> dict:
    grid = build_grid()
    frame = pd.read_csv(path)
    frame = frame.dropna(subset=["latitude", "longitude", "scientific_name"])
    cell = grid.cell_index_lonlat(frame["longitude"].to_numpy(), frame["latitude"].to_numpy())
    inside = cell >= 0
    inside[inside] = grid.counted.ravel()[cell[inside]]
    codes, _ = pd.factorize(frame["scientific_name"].to_numpy()[inside])
    out = pandas_indices(cell[inside], codes, grid.height * grid.width)
    return finish(grid, *(out[k].reshape(grid.shape) for k in ("shannon", "richness", "n_obs")))


def _cell_expressions(grid):
    """Row and column of a lon/lat point on the paper grid (EPSG:4326, north-up)."""
    t = grid.transform
    return t.c, t.a, t.f, -t.e, grid.height, grid.width


def _scatter(grid, cells: np.ndarray, values: dict) -> tuple[np.ndarray, ...]:
    """Per-cell results of an engine onto the grid, counted cells only (as ours)."""
    n = grid.height * grid.width
    keep = grid.counted.ravel()[cells]
    out = []
    for name in ("shannon", "richness", "n_obs"):
        band = np.zeros(n)
        band[cells[keep]] = values[name][keep]
        out.append(band.reshape(grid.shape))
    return tuple(out)


def run_polars(path: Path) -> dict:
    import polars as pl

    grid = build_grid()
    x0, rx, y0, ry, h, w = _cell_expressions(grid)
    col = ((pl.col("longitude") - x0) / rx).floor().cast(pl.Int64)
    row = ((y0 - pl.col("latitude")) / ry).floor().cast(pl.Int64)
    counts = (
        pl.scan_csv(path)
        .select("latitude", "longitude", "scientific_name")
        .drop_nulls()
        .with_columns(col=col, row=row)
        .filter(
            (pl.col("col") >= 0) & (pl.col("col") < w) & (pl.col("row") >= 0) & (pl.col("row") < h)
        )
        .with_columns(cell=pl.col("row") * w + pl.col("col"))
        .group_by("cell", "scientific_name")
        .agg(n=pl.len())
        .with_columns(p=pl.col("n") / pl.col("n").sum().over("cell"))
        .group_by("cell")
        .agg(
            shannon=(-pl.col("p") * pl.col("p").log()).sum(),
            richness=pl.len(),
            n_obs=pl.col("n").sum(),
        )
        .collect(engine="streaming")
    )
    values = {k: counts[k].to_numpy().astype(float) for k in ("shannon", "richness", "n_obs")}
    return finish(grid, *_scatter(grid, counts["cell"].to_numpy(), values))


def run_duckdb(path: Path) -> dict:
    import duckdb

    grid = build_grid()
    x0, rx, y0, ry, h, w = _cell_expressions(grid)
    query = f"""
        WITH points AS (
            SELECT CAST(floor((longitude - {x0!r}) / {rx!r}) AS BIGINT) AS col,
                   CAST(floor(({y0!r} - latitude) / {ry!r}) AS BIGINT) AS row, scientific_name
            FROM read_csv('{path}')
            WHERE latitude IS NOT NULL AND longitude IS NOT NULL AND scientific_name IS NOT NULL
        ),
        counts AS (
            SELECT row * {w} + col AS cell, scientific_name, count(*) AS n FROM points
            WHERE col >= 0 AND col < {w} AND row >= 0 AND row < {h}
            GROUP BY ALL
        ),
        shares AS (SELECT cell, n, n / sum(n) OVER (PARTITION BY cell) AS p FROM counts)
        SELECT cell, sum(-p * ln(p)) AS shannon, count(*) AS richness, sum(n) AS n_obs
        FROM shares GROUP BY cell
    """
    frame = duckdb.connect().execute(query).fetchnumpy()
    values = {k: np.asarray(frame[k], dtype=float) for k in ("shannon", "richness", "n_obs")}
    return finish(grid, *_scatter(grid, np.asarray(frame["cell"], dtype=np.int64), values))


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


APPROACHES = {"ours": run_ours, "pandas": run_pandas, "polars": run_polars, "duckdb": run_duckdb}
LABELS = {"ours": "prom3e-geo", "pandas": "pandas groupby", "polars": "polars lazy",
          "duckdb": "DuckDB"}  # fmt: skip


def available(name: str) -> bool:
    import importlib.util

    return name in ("ours", "pandas") or importlib.util.find_spec(name) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--species", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=list(APPROACHES))
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--parquet-rows", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        result = APPROACHES[args.child](args.csv)  # a CSV, or the GeoParquet for "ours"
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}")
    names = [n for n in APPROACHES if available(n)]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "observations.csv"
        t = time.perf_counter()
        synthetic_csv(path, args.rows, args.species)
        size_mb = path.stat().st_size / 1e6
        print(
            f"generated {args.rows:,} rows ({size_mb:,.0f} MB) in {time.perf_counter() - t:.1f} s"
        )
        for _ in range(args.repeats):  # in turn, so that machine drift hits every approach
            for name in names:
                runs[name].append(child(name, path))
    ref = runs["ours"][0]
    for name in names:
        r = runs[name][0]
        assert r["cells_with_data"] == ref["cells_with_data"], (name, r, ref)
        assert abs(r["checksum"] - ref["checksum"]) < 1e-6 * max(1.0, abs(ref["checksum"])), name
    print(f"end to end (CSV -> 5 bands, paper grid, sigma 2), each in its own process, median of "
          f"{args.repeats}; identical cells and checksums:")  # fmt: skip
    ours_wall = np.median([r["wall_s"] for r in runs["ours"]])
    ours_rss = np.median([r["peak_rss_mib"] for r in runs["ours"]])
    for name in names:
        wall = np.median([r["wall_s"] for r in runs[name]])
        rss = np.median([r["peak_rss_mib"] for r in runs[name]])
        pairwise = np.median(
            [r["wall_s"] / o["wall_s"] for r, o in zip(runs[name], runs["ours"], strict=True)]
        )
        print(f"  {LABELS[name]:15s} {wall:7.2f} s  peak RSS {rss:6.0f} MiB  time/ours "
              f"{pairwise:.2f}x (pairwise)  RSS/ours {rss / ours_rss:.2f}x")  # fmt: skip
    ours_core, pandas_core = core_comparison(args.rows, args.species)
    print(
        f"counting core on in-memory arrays: prom3e-geo {ours_core:.2f} s, pandas groupby "
        f"{pandas_core:.2f} s, ratio {pandas_core / ours_core:.2f}x; ours end to end "
        f"{ours_wall:.2f} s"
    )
    if args.parquet_rows:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "occurrence.parquet"
            t = time.perf_counter()
            gbif_parquet(path, args.parquet_rows, args.species)
            size_gb = path.stat().st_size / 1e9
            print(f"generated {args.parquet_rows:,} GBIF-layout GeoParquet rows ({size_gb:.1f} GB) "
                  f"in {time.perf_counter() - t:.0f} s")  # fmt: skip
            r = child("ours", path)
            print(f"  prom3e-geo {r['wall_s']:7.1f} s  peak RSS {r['peak_rss_mib']:6.0f} MiB  "
                  f"{args.parquet_rows / r['wall_s'] / 1e6:.1f} M rows/s, "
                  f"{r['cells_with_data']:,} cells with data")  # fmt: skip


if __name__ == "__main__":
    main()
