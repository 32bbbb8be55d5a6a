"""Row checks on record batches: which rows are dropped and why, counted by reason."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prom3e_geo.observations import arrow_numpy
from prom3e_geo.observations.columns import Columns

# Reasons a row is dropped, in the order they are checked (a row counts once, for the first).
DROP_REASONS = {
    "malformed_row": "malformed rows (wrong number of fields)",
    "missing_coordinates": "missing coordinates",
    "non_numeric_coordinates": "non-numeric coordinates",
    "latitude_out_of_range": "latitude outside [-90, 90]",
    "longitude_out_of_range": "longitude outside [-180, 180]",
    "empty_species": "empty species",
    "not_research_grade": "not research grade",
    "invalid_date": "missing or unparseable date",
    "outside_date_range": "outside the date range",
}
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
DateRange = tuple[dt.date | None, dt.date | None]


@dataclass
class ReadReport:
    """What a read kept and dropped."""

    rows_read: int = 0
    rows_kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    swapped: int = 0  # rows whose latitude is out of range but would be a valid longitude
    columns: tuple[str, str] | None = None  # (latitude, longitude) column names

    def summary(self) -> str:
        parts = [f"read {self.rows_read:,} rows, kept {self.rows_kept:,}"]
        drops = [f"{DROP_REASONS.get(k, k)}: {v:,}" for k, v in self.dropped.items() if v]
        if drops:
            parts.append("dropped " + "; ".join(drops))
        return ", ".join(parts)

    def swap_hint(self, off_grid_swapped: int = 0) -> str:
        """A hint when most rows look as if latitude and longitude were swapped: their
        latitude is beyond +-90 but a valid longitude (`swapped`), or they fall off the grid
        but on it once swapped (`off_grid_swapped`, counted by the caller who has the grid)."""
        looks = self.swapped + off_grid_swapped
        if self.columns is None or looks * 2 <= self.rows_read:
            return ""
        lat, lon = self.columns
        return (
            f"the latitude and longitude values look swapped ({looks:,} of {self.rows_read:,} "
            f"rows make sense only the other way round); if so, pass --lat-col {lon} "
            f"--lon-col {lat}"
        )

    def malformed(self, n: int) -> None:
        """Count `n` rows the parser skipped (wrong number of fields)."""
        if n:
            self.dropped["malformed_row"] += n
            self.rows_read += n


@dataclass
class Checked:
    """A batch after the checks: coordinates, trimmed species names and the rows kept."""

    lon: np.ndarray
    lat: np.ndarray
    species: pa.DictionaryArray
    keep: np.ndarray  # bool per row


def check_batch(
    batch: pa.RecordBatch,
    cols: Columns,
    crs: object,
    date_range: DateRange | None,
    report: ReadReport,
) -> Checked:
    """Apply every check to `batch`, in `DROP_REASONS` order, counting drops in `report`."""
    n = batch.num_rows
    report.rows_read += n
    keep = np.ones(n, dtype=bool)

    def drop(reason: str, bad: np.ndarray) -> None:
        newly = keep & bad
        if newly.any():
            report.dropped[reason] += int(newly.sum())
            keep[newly] = False

    if cols.geometry:
        lon, lat, missing = points_from_geometry(batch.column(cols.geometry), crs)
        drop("missing_coordinates", missing)
    else:
        assert cols.lat is not None and cols.lon is not None  # no geometry: both columns
        lat, lat_missing, lat_bad = numbers(batch.column(cols.lat))
        lon, lon_missing, lon_bad = numbers(batch.column(cols.lon))
        drop("missing_coordinates", lat_missing | lon_missing)
        drop("non_numeric_coordinates", lat_bad | lon_bad)
        with np.errstate(invalid="ignore"):
            swapped = (np.abs(lat) > 90) & (np.abs(lat) <= 180) & (np.abs(lon) <= 90)
        report.swapped += int(swapped.sum())
    with np.errstate(invalid="ignore"):
        drop("latitude_out_of_range", ~((lat >= -90) & (lat <= 90)))
        drop("longitude_out_of_range", ~((lon >= -180) & (lon <= 180)))

    species = trimmed_names(batch.column(cols.species))
    entry = arrow_numpy.numbers(species.indices, -1)
    blank = is_blank(species.dictionary)
    drop("empty_species", (entry < 0) | blank[entry.clip(0)] if blank.size else entry < 0)
    if cols.quality:
        grade = pc.cast(batch.column(cols.quality), pa.string())
        research = pc.match_substring_regex(grade, "^research$", ignore_case=True)
        drop("not_research_grade", ~to_bool(research))
    if cols.date and date_range:
        for reason, bad in _date_checks(batch.column(cols.date), date_range):
            drop(reason, bad)
    return Checked(lon, lat, species, keep)


def _date_checks(column: pa.Array, date_range: DateRange) -> list[tuple[str, np.ndarray]]:
    """(reason, rows) for dates that cannot be parsed and dates outside `date_range`."""
    text = pc.utf8_slice_codeunits(pc.cast(column, pa.string()), 0, 10)
    parsed = pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True)
    days = arrow_numpy.numbers(pc.cast(pc.cast(parsed, pa.int64()), pa.float64()), np.nan) // 86400
    start, end = date_range
    outside = np.zeros(len(text), dtype=bool)
    epoch = dt.date(1970, 1, 1)
    with np.errstate(invalid="ignore"):
        if start:
            outside |= days < (start - epoch).days
        if end:
            outside |= days > (end - epoch).days
    return [("invalid_date", to_bool(pc.is_null(parsed))), ("outside_date_range", outside)]


def says_synthetic(column: pa.Array) -> bool:
    """Whether any value of a `synthetic` column is true (`true`, `1` or `yes`)."""
    flags = pc.utf8_lower(pc.cast(column, pa.string()))
    return bool(arrow_numpy.flags(pc.match_substring_regex(flags, "^(true|1|yes)$")).any())


def numbers(column: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 values plus (missing, non-numeric) masks from a string or numeric column.

    Clean text (every value a number or empty) takes one cast; a column with anything else
    (words, padded numbers, hex...) is checked value by value against `_NUMBER`."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        values = arrow_numpy.numbers(pc.cast(column, pa.float64()), np.nan)
        missing = np.isnan(values)
        return values, missing, np.zeros_like(missing)
    text = pc.cast(column, pa.string())
    try:
        values = arrow_numpy.numbers(pc.cast(text, pa.float64()), np.nan)
    except pa.ArrowInvalid:
        pass
    else:
        missing = to_bool(pc.is_null(text))
        with np.errstate(invalid="ignore"):
            odd = ~missing & ~np.isfinite(values)  # nan, inf: not numbers the regex accepts
        if not odd.any():
            return values, missing, odd
    trimmed = pc.utf8_trim_whitespace(text)
    numeric = pc.match_substring_regex(text, _NUMBER)
    clean = pc.if_else(numeric, trimmed, pa.nulls(len(text), pa.string()))
    values = arrow_numpy.numbers(pc.cast(clean, pa.float64()), np.nan)
    missing = is_blank(trimmed)
    return values, missing, ~missing & ~to_bool(numeric)


def points_from_geometry(
    column: pa.Array, crs: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lon/lat of WKB points, reprojected from the GeoParquet CRS when it is not lon/lat."""
    import shapely

    geoms = shapely.from_wkb(np.asarray(column.to_pylist(), dtype=object), on_invalid="ignore")
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    x = np.full(len(geoms), np.nan)
    y = np.full(len(geoms), np.nan)
    ok = ~missing
    x[ok], y[ok] = shapely.get_x(geoms[ok]), shapely.get_y(geoms[ok])
    if crs is not None:
        import pyproj

        src = pyproj.CRS.from_user_input(json.dumps(crs) if isinstance(crs, dict) else crs)
        if not (src.is_geographic and src.equals("OGC:CRS84", ignore_axis_order=True)):
            x, y = pyproj.Transformer.from_crs(src, "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(x), np.asarray(y), np.asarray(missing)


def trimmed_names(column: pa.Array) -> pa.DictionaryArray:
    """Species names, dictionary-encoded, without surrounding blanks: the distinct names are
    trimmed, not every row (two names that differ only by blanks may stay two entries of the
    dictionary; `SpeciesCodes` gives them one code)."""
    if not pa.types.is_dictionary(column.type):
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        column = pc.dictionary_encode(pc.cast(column, pa.string()))
    names = pc.utf8_trim_whitespace(pc.cast(column.dictionary, pa.string()))
    return pa.DictionaryArray.from_arrays(column.indices, names)


def is_blank(text: pa.Array) -> np.ndarray:
    """True where a text value is null or empty."""
    lengths: np.ndarray = arrow_numpy.numbers(pc.binary_length(text), 0)
    blank: np.ndarray = lengths == 0
    return blank


def to_bool(mask: pa.Array) -> np.ndarray:
    """Arrow boolean (nulls count as False) to numpy."""
    return arrow_numpy.flags(mask)
