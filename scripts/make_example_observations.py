"""Regenerate examples/observations.csv: a small, clearly synthetic iNaturalist-style export.

Observers cluster around large US cities (observer bias); each species has a Gaussian range in
lon/lat around a plausible centre; an observation picks an observer location, then a species in
proportion to how suitable that location is for it. Names are real North American species, the
ranges are rough caricatures, and every record is invented.

    python scripts/make_example_observations.py [--rows 20000] [--seed 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from prom3e_geo.grid import conus_boundary

# (scientific name, range centre lon, lat, range sd in degrees lon, lat)
SPECIES = [
    ("Cardinalis cardinalis", -86, 36, 9, 5),
    ("Ovis canadensis", -112, 40, 5, 5),
    ("Sequoiadendron giganteum", -119, 36.5, 0.8, 0.8),
    ("Hylocichla mustelina", -83, 38, 7, 4),
    ("Larus argentatus", -75, 41, 6, 5),
    ("Alligator mississippiensis", -85, 30, 6, 2),
    ("Campylorhynchus brunneicapillus", -111, 32.5, 4, 2),
    ("Geococcyx californianus", -107, 32, 6, 3),
    ("Zonotrichia leucophrys", -115, 40, 8, 6),
    ("Ursus americanus", -100, 42, 18, 6),
    ("Bison bison", -104, 44, 4, 3),
    ("Eschscholzia californica", -120, 37, 2, 3),
    ("Taxodium distichum", -88, 32, 6, 3),
    ("Carnegiea gigantea", -112, 32.8, 1.5, 1.0),
    ("Quercus alba", -84, 38, 8, 5),
    ("Odocoileus virginianus", -90, 38, 14, 7),
    ("Turdus migratorius", -96, 40, 20, 8),
    ("Haliaeetus leucocephalus", -95, 42, 16, 6),
    ("Sciurus carolinensis", -82, 38, 7, 5),
    ("Cyanocitta cristata", -84, 39, 8, 5),
    ("Aphelocoma californica", -120, 38, 3, 5),
    ("Pinus ponderosa", -112, 40, 7, 6),
    ("Sabal palmetto", -82, 28.5, 3, 2),
    ("Larrea tridentata", -110, 33, 5, 2),
    ("Acer saccharum", -80, 43, 6, 3),
    ("Picea engelmannii", -110, 42, 5, 5),
    ("Danaus plexippus", -95, 37, 15, 7),
    ("Canis latrans", -100, 39, 16, 7),
    ("Pandion haliaetus", -85, 36, 14, 8),
    ("Opuntia engelmannii", -106, 31.5, 5, 2),
]
CITIES = [  # lon, lat, weight (rough metro population, millions)
    (-74.0, 40.7, 20),
    (-118.2, 34.1, 13),
    (-87.6, 41.9, 9.5),
    (-96.8, 32.8, 7.6),
    (-95.4, 29.8, 7.1),
    (-77.0, 38.9, 6.3),
    (-80.2, 25.8, 6.1),
    (-75.2, 40.0, 6.2),
    (-84.4, 33.7, 6.1),
    (-112.1, 33.4, 4.9),
    (-71.1, 42.4, 4.9),
    (-122.4, 37.8, 4.7),
    (-117.4, 34.1, 4.6),
    (-83.0, 42.3, 4.4),
    (-122.3, 47.6, 4.0),
    (-93.3, 45.0, 3.7),
    (-117.2, 32.7, 3.3),
    (-82.5, 27.9, 3.2),
    (-105.0, 39.7, 3.0),
    (-90.2, 38.6, 2.8),
    (-76.6, 39.3, 2.8),
    (-80.8, 35.2, 2.7),
    (-81.4, 28.5, 2.7),
    (-98.5, 29.4, 2.6),
    (-122.7, 45.5, 2.5),
    (-121.5, 38.6, 2.4),
    (-111.9, 40.8, 1.3),
    (-106.6, 35.1, 0.9),
    (-110.9, 32.2, 1.0),
    (-97.5, 35.5, 1.4),
    (-90.1, 30.0, 1.3),
    (-86.8, 36.2, 2.0),
]


def generate(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    conus = conus_boundary()
    city = np.array(CITIES, dtype=float)
    weights = city[:, 2] / city[:, 2].sum()
    lon_parts, lat_parts = [], []
    need = rows
    while need > 0:  # observer locations: around cities, some spread wider, inside CONUS only
        n = 2 * need
        pick = rng.choice(len(city), size=n, p=weights)
        spread = np.where(rng.random(n) < 0.7, 0.6, 3.0)
        lon = city[pick, 0] + rng.normal(0, 1, n) * spread * 1.3
        lat = city[pick, 1] + rng.normal(0, 1, n) * spread
        inside = shapely.contains_xy(conus, lon, lat)
        lon_parts.append(lon[inside][:need])
        lat_parts.append(lat[inside][:need])
        need -= len(lon_parts[-1])
    lon, lat = np.concatenate(lon_parts), np.concatenate(lat_parts)
    sp = np.array([s[1:] for s in SPECIES], dtype=float)
    z = ((lon[:, None] - sp[:, 0]) / sp[:, 2]) ** 2 + ((lat[:, None] - sp[:, 1]) / sp[:, 3]) ** 2
    suit = np.exp(-0.5 * z) + 1e-9
    prob = suit / suit.sum(axis=1, keepdims=True)
    species = (prob.cumsum(axis=1) > rng.random(rows)[:, None]).argmax(axis=1)
    start = dt.date(2021, 1, 1).toordinal()
    dates = [
        dt.date.fromordinal(start + int(d)).isoformat() for d in rng.integers(0, 3 * 365, rows)
    ]
    return pd.DataFrame(
        {
            "id": np.arange(1, rows + 1),
            "observed_on": dates,
            "latitude": lat.round(5),
            "longitude": lon.round(5),
            "scientific_name": [SPECIES[i][0] for i in species],
            "quality_grade": np.where(rng.random(rows) < 0.8, "research", "needs_id"),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("examples/observations.csv"))
    args = parser.parse_args()
    frame = generate(args.rows, args.seed)
    frame.to_csv(args.out, index=False)
    print(f"wrote {args.out}: {len(frame):,} synthetic observations of {len(SPECIES)} species")


if __name__ == "__main__":
    main()
