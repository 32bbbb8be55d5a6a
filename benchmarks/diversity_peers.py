"""Diversity through the CLI against the plain polars and DuckDB scripts an analyst writes.

Two 10 M-row CSV files: one shaped like an iNaturalist export (7 columns: id, observed_on,
latitude, longitude, scientific_name, quality_grade and a quoted free-text `description` with
commas; observers clustered around 300 cities; 8,000 species with Zipf frequencies; ~880 MB),
and the uniform file of `benchmarks/diversity.py`. On each, in turn `--repeats` times (so that
drift on a shared machine hits every approach alike), three whole processes:

- `prom3e-geo diversity --observations F --out F.tif` (reading, validation with drop counts,
  counting, smoothing, five COG bands written), the file's SHA-256 for the provenance tags
  already known from an earlier run (`hashing.KnownDigests`), and again as a `first read`
  (an empty cache folder: the file is hashed beside the counting);
- polars: lazy `scan_csv` -> bin to the paper grid -> `group_by` (cell, species) -> Shannon and
  richness per cell, streaming engine; no smoothing, nothing written;
- DuckDB: the same in SQL over `read_csv`.

Each is timed as a process (wall clock) with its peak RSS from `/usr/bin/time -v`; ratios are
taken run by run (pair by pair) and reported as medians. A 1,000-row file measures the CLI's
fixed cost. The peers' per-cell values are checked against the CLI's raw bands.

`--cli` runs another installation's `prom3e-geo`, such as a user's plain `pip install .` in a
venv of its own: this checkout's development venv also holds boto3 (brought by moto, a test
dependency), which rasterio imports when it can (0.2 s of every run). Every process runs with
`PYTHONDONTWRITEBYTECODE` unset, so that an editable install's modules are compiled once, as
pip compiles an installed package's.

    python benchmarks/diversity_peers.py [--rows 10000000] [--repeats 5] [--keep DIR] [--cli EXE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from diversity import synthetic_csv  # noqa: E402

PHRASES = [
    "near the trail, oaks",
    "calling, two of them",
    "on a fence, morning",
    "roadside, photographed",
    "flowering, 40 cm",
    'juvenile, "probably"',
    "at the feeder",
    "several, moving north",
]


def inat_csv(path: Path, rows: int, species: int = 8_000, cities: int = 300, seed: int = 0) -> None:
    """An iNaturalist-like export: points scattered around `cities` centres over CONUS (city
    sizes Zipf-like, a few kilometres to tens of kilometres of spread), Zipf species, quoted
    descriptions with commas, a few casual-grade rows."""
    rng = np.random.default_rng(seed)
    centre_lon = rng.uniform(-123.0, -70.0, cities)
    centre_lat = rng.uniform(26.0, 48.5, cities)
    city_weight = 1.0 / np.arange(1, cities + 1) ** 0.8
    city_weight /= city_weight.sum()
    spread = rng.uniform(0.05, 0.6, cities)
    species_weight = 1.0 / np.arange(1, species + 1)
    species_weight /= species_weight.sum()
    names = pa.array([f"Genus{i // 9} epithet{i}" for i in range(species)])
    phrases = pa.array(PHRASES)
    dates = pa.array([f"2023-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29)])
    schema = pa.schema(
        [("id", pa.int64()), ("observed_on", pa.string()), ("latitude", pa.float64()),
         ("longitude", pa.float64()), ("scientific_name", pa.string()),
         ("quality_grade", pa.string()), ("description", pa.string())]
    )  # fmt: skip
    block = 1_000_000
    options = pacsv.WriteOptions(quoting_style="needed")  # as exports are: quotes where needed
    with pacsv.CSVWriter(path, schema, write_options=options) as writer:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            city = rng.choice(cities, n, p=city_weight)
            lat = centre_lat[city] + rng.normal(0, 1, n) * spread[city]
            lon = centre_lon[city] + rng.normal(0, 1, n) * spread[city] * 1.3
            grade = np.where(rng.random(n) < 0.9, "research", "needs_id")
            table = pa.table(
                {
                    "id": np.arange(start, start + n) + 100_000_000,
                    "observed_on": dates.take(rng.integers(0, len(dates), n)),
                    "latitude": lat.round(5),
                    "longitude": lon.round(5),
                    "scientific_name": names.take(rng.choice(species, n, p=species_weight)),
                    "quality_grade": pa.array(grade),
                    "description": phrases.take(rng.integers(0, len(phrases), n)),
                },
                schema=schema,
            )
            writer.write_table(table)


POLARS = """
import sys, polars as pl
x0, rx, y0, ry, h, w = (float(v) for v in sys.argv[2:8])
h, w = int(h), int(w)
col = ((pl.col("longitude") - x0) / rx).floor().cast(pl.Int64)
row = ((y0 - pl.col("latitude")) / ry).floor().cast(pl.Int64)
cells = (
    pl.scan_csv(sys.argv[1])
    .select("latitude", "longitude", "scientific_name")
    .drop_nulls()
    .with_columns(col=col, row=row)
    .filter((pl.col("col") >= 0) & (pl.col("col") < w) & (pl.col("row") >= 0) & (pl.col("row") < h))
    .group_by(cell=pl.col("row") * w + pl.col("col"), species=pl.col("scientific_name"))
    .agg(n=pl.len())
    .with_columns(p=pl.col("n") / pl.col("n").sum().over("cell"))
    .group_by("cell")
    .agg(shannon=(-pl.col("p") * pl.col("p").log()).sum(), richness=pl.len(), n_obs=pl.col("n").sum())
    .collect(engine="streaming")
)
cells.write_parquet(sys.argv[8])
"""

DUCKDB = """
import sys, duckdb
x0, rx, y0, ry, h, w = sys.argv[2:8]
duckdb.sql(f'''
    COPY (
    WITH points AS (
        SELECT CAST(floor((longitude - {x0}) / {rx}) AS BIGINT) AS col,
               CAST(floor(({y0} - latitude) / {ry}) AS BIGINT) AS row, scientific_name
        FROM read_csv('{sys.argv[1]}')
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
    ) TO '{sys.argv[8]}' (FORMAT parquet)
''')
"""


def timed(command: list[str], cache: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a whole process, from `/usr/bin/time -v`; `cache`
    is its `PROM3E_GEO_CACHE`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if cache is not None:
        env["PROM3E_GEO_CACHE"] = str(cache)
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {proc.stderr[-2000:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    assert peak is not None
    return wall, int(peak.group(1)) / 1024


def paired_ratio(ours: list[tuple[float, float]], theirs: list[tuple[float, float]]) -> float:
    """The median of the wall-time ratios of runs made side by side."""
    return float(np.median([o[0] / t[0] for o, t in zip(ours, theirs, strict=True)]))


def grid_args() -> list[str]:
    """The paper grid's transform and shape, for the peer scripts."""
    from prom3e_geo.grid import build_grid

    grid = build_grid()
    t = grid.transform
    return [repr(v) for v in (t.c, t.a, t.f, -t.e)] + [str(grid.height), str(grid.width)]


def commands(csv: Path, tmp: Path, cli: str) -> dict[str, list[str]]:
    geo = grid_args()
    return {
        "prom3e-geo": [cli, "diversity", "--observations", str(csv), "--overwrite",
                       "--out", str(tmp / "div.tif")],
        "polars": [sys.executable, "-c", POLARS, str(csv), *geo, str(tmp / "polars.parquet")],
        "duckdb": [sys.executable, "-c", DUCKDB, str(csv), *geo, str(tmp / "duckdb.parquet")],
    }  # fmt: skip


def agree(tmp: Path) -> str:
    """Per-cell richness and Shannon of the peers against the CLI's raw bands."""
    import pyarrow.parquet as pq
    import rasterio

    with rasterio.open(tmp / "div.tif") as ds:
        bands = dict(zip(ds.descriptions, ds.read(), strict=True))
    notes = []
    for peer in ("polars", "duckdb"):
        table = pq.read_table(tmp / f"{peer}.parquet")
        cell = table["cell"].to_numpy()
        richness = bands["richness_raw"].ravel()[cell]
        shannon = bands["shannon_raw"].ravel()[cell]
        inside = np.isfinite(richness)
        same = np.array_equal(richness[inside], table["richness"].to_numpy()[inside])
        err = np.abs(shannon[inside] - table["shannon"].to_numpy()[inside]).max()
        notes.append(f"{peer}: richness equal {same}, Shannon max diff {err:.1e}")
    return "; ".join(notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the generated files here")
    parser.add_argument(
        "--cli",
        default=str(Path(sys.executable).with_name("prom3e-geo")),
        help="the prom3e-geo executable to time (default: this venv's)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        folder = args.keep or tmp
        folder.mkdir(parents=True, exist_ok=True)
        files = {"iNaturalist-like": folder / f"inat_{args.rows}.csv",
                 "uniform": folder / f"uniform_{args.rows}.csv"}  # fmt: skip
        for label, path in files.items():
            if not path.exists():
                t = time.perf_counter()
                if label == "uniform":
                    synthetic_csv(path, args.rows, 5_000)  # benchmarks/diversity.py's defaults
                else:
                    inat_csv(path, args.rows)
                print(f"generated {label} {path.stat().st_size / 1e6:,.0f} MB "
                      f"in {time.perf_counter() - t:.0f} s", flush=True)  # fmt: skip
        small = tmp / "small.csv"
        inat_csv(small, 1_000)
        for label, path in {**files, "1,000 rows": small}.items():
            runs: dict[str, list[tuple[float, float]]] = {}
            cli = commands(path, tmp, args.cli)["prom3e-geo"]
            timed(cli, tmp / "cache")  # the file's digest is known from here on
            for k in range(args.repeats):
                for name, command in commands(path, tmp, args.cli).items():
                    runs.setdefault(name, []).append(timed(command, tmp / "cache"))
                runs.setdefault("first read", []).append(timed(cli, tmp / f"cache-{k}"))
            print(f"\n{label} ({path.stat().st_size / 1e6:,.1f} MB), median of {args.repeats}; "
                  f"{agree(tmp)}")  # fmt: skip
            for name, result in runs.items():
                wall = np.median([r[0] for r in result])
                rss = np.median([r[1] for r in result])
                ratios = ""
                if name in ("prom3e-geo", "first read"):
                    ratios = "  ".join(
                        f"/{peer} {paired_ratio(result, runs[peer]):.2f}x"
                        for peer in ("polars", "duckdb")
                    )
                print(f"  {name:11s} {wall:6.2f} s  peak {rss:6.0f} MiB  {ratios:26s} "
                      f"runs {json.dumps([round(r[0], 2) for r in result])}")  # fmt: skip


if __name__ == "__main__":
    main()
