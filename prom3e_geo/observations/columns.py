"""Which columns of an observation file hold coordinates, species, quality grade and date."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from prom3e_geo.errors import InputError

LAT_NAMES = ("latitude", "decimalLatitude", "lat")
LON_NAMES = ("longitude", "decimalLongitude", "lon", "lng")
SPECIES_NAMES = ("scientific_name", "species", "taxon_id", "speciesKey", "scientificName")
QUALITY_NAMES = ("quality_grade",)
DATE_NAMES = ("observed_on", "eventDate")
SYNTHETIC_NAMES = ("synthetic",)  # true on rows made up (the demo world's observations)


@dataclass(frozen=True)
class GeoColumn:
    """A GeoParquet geometry column and its CRS (None: longitude/latitude)."""

    name: str
    crs: object


@dataclass(frozen=True)
class Columns:
    """The columns a read uses; quality and date only when their filter is on."""

    lat: str | None
    lon: str | None
    species: str
    geometry: str | None = None
    quality: str | None = None
    date: str | None = None
    synthetic: str | None = None

    def names(self) -> list[str]:
        wanted = (self.lat, self.lon, self.geometry, self.species, self.quality, self.date)
        return [c for c in (*wanted, self.synthetic) if c]


def detect_format(path: Path) -> str:
    """`parquet` (by suffix or magic bytes) or `text` (plain, `.gz`, or a zip)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".parquet", ".geoparquet", ".pq"):
        return "parquet"
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1":
        return "parquet"
    return "text"


def resolve_columns(
    path: Path,
    available: list[str],
    geo: GeoColumn | None,
    explicit: tuple[str | None, str | None, str | None],
    research_grade: bool,
    dated: bool,
) -> Columns:
    """The columns to read: `explicit` (latitude, longitude, species) names where given, else
    the usual names of iNaturalist, GBIF and Darwin Core; the GeoParquet geometry when there
    are no coordinate columns; quality and date columns when their filter is on."""
    lat = _pick(available, explicit[0], LAT_NAMES, "latitude", path, required=False)
    lon = _pick(available, explicit[1], LON_NAMES, "longitude", path, required=False)
    geometry = None
    if lat is None or lon is None:
        if geo is None:
            missing = "latitude" if lat is None else "longitude"
            names = LAT_NAMES if lat is None else LON_NAMES
            raise InputError(
                f"observations file {path} has no {missing} column (looked for "
                f"{', '.join(names)}; found {', '.join(available[:12])}); "
                f"name it with --{missing[:3]}-col"
            )
        geometry, lat, lon = geo.name, None, None
    species = _pick(available, explicit[2], SPECIES_NAMES, "species", path, required=True)
    assert species is not None  # required: _pick raised otherwise
    quality = date = None
    if research_grade:
        quality = _pick(available, None, QUALITY_NAMES, "quality", path, required=False)
        if quality is None:
            raise InputError(
                f"--research-grade needs a quality_grade column (iNaturalist exports); "
                f"{path} has none"
            )
    if dated:
        date = _pick(available, None, DATE_NAMES, "date", path, required=False)
        if date is None:
            raise InputError(
                f"a date filter needs an observed_on or eventDate column; {path} has none"
            )
    synthetic = _pick(available, None, SYNTHETIC_NAMES, "synthetic", path, required=False)
    return Columns(lat, lon, species, geometry, quality, date, synthetic)


def _pick(
    available: list[str],
    explicit: str | None,
    candidates: tuple[str, ...],
    what: str,
    path: Path,
    required: bool,
) -> str | None:
    if explicit:
        if explicit not in available:
            raise InputError(
                f"observations file {path} has no column {explicit!r} "
                f"(found {', '.join(available[:12])})"
            )
        return explicit
    lower = {c.lower(): c for c in available}
    for name in candidates:
        if name.lower() in lower:
            return lower[name.lower()]
    if required:
        raise InputError(
            f"observations file {path} has no {what} column (looked for {', '.join(candidates)}; "
            f"found {', '.join(available[:12])}); name it with --{what}-col"
        )
    return None


def geoparquet_column(metadata: dict[bytes, bytes] | None) -> GeoColumn | None:
    """The primary geometry column and its CRS from GeoParquet schema metadata, if any."""
    meta = (metadata or {}).get(b"geo")
    if not meta:
        return None
    info = json.loads(meta)
    column = info.get("primary_column", "geometry")
    return GeoColumn(column, info.get("columns", {}).get(column, {}).get("crs"))
