"""Regenerate prom3e_geo/data/conus.geojson, the bundled contiguous-US boundary.

Source: US Census Bureau cartographic boundary file cb_2016_us_state_500k (1:500,000, public
domain), as shipped by the `plotly-geo` wheel (`pip install plotly-geo==1.0.0`). The shapefile has
no .prj; it is NAD83 geographic (EPSG:4269). Steps: keep the 48 contiguous states and DC, union,
reproject to EPSG:4326, simplify with a 0.01 degree tolerance, drop islets under 1e-4 square degrees
(about 1 km2), write 4-decimal GeoJSON.

    python scripts/build_conus_boundary.py [--out prom3e_geo/data/conus.geojson]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import geopandas as gpd
import shapely

NON_CONUS_STATEFP = {"02", "15", "60", "66", "69", "72", "78"}  # AK, HI, AS, GU, MP, PR, VI
TOLERANCE_DEG = 0.01
MIN_PART_AREA_DEG2 = 1e-4


def census_states_path() -> Path:
    spec = importlib.util.find_spec("_plotly_geo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("plotly-geo is not installed: pip install plotly-geo==1.0.0")
    root = Path(spec.submodule_search_locations[0])
    return root / "package_data" / "cb_2016_us_state_500k.shp"


def build() -> shapely.MultiPolygon:
    states = gpd.read_file(census_states_path()).set_crs("EPSG:4269", allow_override=True)
    conus = states[~states["STATEFP"].isin(NON_CONUS_STATEFP)]
    assert len(conus) == 49, f"expected 48 states + DC, got {len(conus)}"
    union = gpd.GeoSeries([shapely.union_all(conus.geometry.values)], crs=states.crs)
    union = union.to_crs("EPSG:4326").iloc[0]
    simple = shapely.simplify(union, TOLERANCE_DEG, preserve_topology=True)
    parts = [p for p in getattr(simple, "geoms", [simple]) if p.area > MIN_PART_AREA_DEG2]
    return shapely.MultiPolygon(parts)


def to_geojson(geometry: shapely.MultiPolygon) -> str:
    rounded = shapely.set_precision(geometry, 1e-4)
    feature = {
        "type": "Feature",
        "properties": {
            "name": "contiguous United States (48 states + DC)",
            "source": "US Census Bureau cb_2016_us_state_500k (public domain)",
            "simplify_tolerance_deg": TOLERANCE_DEG,
        },
        "geometry": json.loads(shapely.to_geojson(rounded)),
    }
    return json.dumps({"type": "FeatureCollection", "features": [feature]}, separators=(",", ":"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="prom3e_geo/data/conus.geojson", type=Path)
    args = parser.parse_args()
    geometry = build()
    args.out.write_text(to_geojson(geometry) + "\n")
    n_vertices = shapely.get_num_coordinates(geometry)
    print(
        f"wrote {args.out}: {len(geometry.geoms)} parts, {n_vertices} vertices, "
        f"bounds {tuple(round(b, 4) for b in geometry.bounds)}"
    )


if __name__ == "__main__":
    main()
