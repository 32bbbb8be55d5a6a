"""Species observations from iNaturalist, GBIF and GeoParquet files, streamed in bounded memory.

Supported inputs (auto-detected; column names can always be given explicitly):

* iNaturalist CSV export: `latitude`, `longitude`, `scientific_name` (or `taxon_id`), optional
  `quality_grade`, `observed_on`. Comma-separated, quoted, newlines allowed inside quotes.
* GBIF simple download (`.csv`, tab-separated, unquoted) or a Darwin Core Archive (`.zip`, or its
  `occurrence.txt`): `decimalLatitude`, `decimalLongitude`, `species` (or `speciesKey`),
  optional `eventDate`.
* GeoParquet (point geometry, any CRS) or plain Parquet with latitude/longitude columns.
* `.gz` compression of the text formats.

Files are read in record batches with pyarrow (8 MB of text, or 250,000 Parquet rows, at a
time), validated with vectorised compute kernels on a thread of their own one batch ahead of
the consumer, and handed out as `ObservationChunk`s of (lon, lat, species code). Parquet species
names stay dictionary-encoded as stored. Rows that cannot be used are dropped and counted by
reason in `ReadReport`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from prom3e_geo.errors import InputError
from prom3e_geo.observation_files import DAMAGED, TextLayout, damaged, open_member, text_layout

LAT_NAMES = ("latitude", "decimalLatitude", "lat")
LON_NAMES = ("longitude", "decimalLongitude", "lon", "lng")
SPECIES_NAMES = ("scientific_name", "species", "taxon_id", "speciesKey", "scientificName")
QUALITY_NAMES = ("quality_grade",)
DATE_NAMES = ("observed_on", "eventDate")
SYNTHETIC_NAMES = ("synthetic",)  # true on rows made up (the demo world's observations)

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
TEXT_BLOCK_BYTES = 1 << 20  # pyarrow reads about 37 blocks ahead: its memory is ~37 x this
TEXT_BATCH_ROWS = 250_000  # parsed blocks are joined into batches of this many rows
PARQUET_BATCH_ROWS = 250_000

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class ObservationChunk:
    """Valid observations: lon/lat in degrees (float64) and species codes (index into names)."""

    lon: np.ndarray
    lat: np.ndarray
    species: np.ndarray


@dataclass
class ReadReport:
    """What a read kept and dropped."""

    rows_read: int = 0
    rows_kept: int = 0
    dropped: Counter = field(default_factory=Counter)
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


class ObservationReader:
    """Iterate over the valid observations of a file, chunk by chunk.

    >>> reader = ObservationReader("inat.csv", research_grade=True)
    >>> for chunk in reader: ...
    >>> reader.species_names, reader.report.summary()
    """

    def __init__(
        self,
        path: str | Path,
        *,
        lat_col: str | None = None,
        lon_col: str | None = None,
        species_col: str | None = None,
        research_grade: bool = False,
        date_range: tuple[dt.date | None, dt.date | None] | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(
                f"observations {self.path} is a folder; give the file (CSV, zip, Parquet)"
            )
        if not self.path.is_file():
            raise InputError(f"observations file {self.path} does not exist")
        self.research_grade = research_grade
        self.date_range = date_range if date_range and any(date_range) else None
        self.progress = progress
        self.species_names: list[str] = []
        self.synthetic = False  # some row says it is made up (a `synthetic` column)
        self._species_ids: dict[str, int] = {}
        self.report = ReadReport()
        self.format = _detect_format(self.path)
        available, self._crs = self._schema()
        self.columns = self._resolve_columns(available, lat_col, lon_col, species_col)
        if self.columns.lat and self.columns.lon:
            self.report.columns = (self.columns.lat, self.columns.lon)

    # -- schema and columns ---------------------------------------------------------------------
    def _schema(self) -> tuple[list[str], object]:
        if self.format == "parquet":
            try:
                schema = pq.read_schema(self.path)
            except (pa.ArrowInvalid, OSError) as exc:
                raise InputError(
                    f"observations file {self.path} is not valid Parquet: {exc}"
                ) from None
            self._parquet_schema = schema  # kept: the reader chooses column encodings from it
            return list(schema.names), _geoparquet_crs(schema)
        self.layout = text_layout(self.path)
        if self.layout.names is not None:  # a Darwin Core Archive: columns from meta.xml
            return list(self.layout.names), None
        archive, raw = open_member(self.path, self.layout.member)
        with raw:
            first = raw.read(1 << 20).split(b"\n", 1)[0]
        if archive is not None:
            archive.close()
        header = first.decode(self.layout.encoding).lstrip("\ufeff").rstrip("\r\n")
        if not header.strip():
            raise InputError(f"observations file {self.path} is empty (no header line)")
        return [c.strip().strip('"') for c in header.split(self.layout.delimiter)], None

    def _resolve_columns(
        self, available: list[str], lat: str | None, lon: str | None, species: str | None
    ) -> Columns:
        geometry = None
        lat = _pick(available, lat, LAT_NAMES, "latitude", self.path, required=False)
        lon = _pick(available, lon, LON_NAMES, "longitude", self.path, required=False)
        if lat is None or lon is None:
            if self.format == "parquet" and self._crs is not None:
                geometry = self._crs[0]
                lat = lon = None
            else:
                missing = "latitude" if lat is None else "longitude"
                names = LAT_NAMES if lat is None else LON_NAMES
                raise InputError(
                    f"observations file {self.path} has no {missing} column (looked for "
                    f"{', '.join(names)}; found {', '.join(available[:12])}); "
                    f"name it with --{missing[:3]}-col"
                )
        species = _pick(available, species, SPECIES_NAMES, "species", self.path, required=True)
        quality = date = None
        if self.research_grade:
            quality = _pick(available, None, QUALITY_NAMES, "quality", self.path, required=False)
            if quality is None:
                raise InputError(
                    f"--research-grade needs a quality_grade column (iNaturalist exports); "
                    f"{self.path} has none"
                )
        if self.date_range:
            date = _pick(available, None, DATE_NAMES, "date", self.path, required=False)
            if date is None:
                raise InputError(
                    f"a date filter needs an observed_on or eventDate column; {self.path} has none"
                )
        synthetic = _pick(available, None, SYNTHETIC_NAMES, "synthetic", self.path, required=False)
        return Columns(lat, lon, species, geometry, quality, date, synthetic)

    # -- reading --------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[ObservationChunk]:
        """Valid chunks, in a pipeline of threads (parsing and the compute kernels release the
        GIL): batches are read on one, validated on another, and counted by the consumer, each
        stage a batch ahead of the next."""
        batches = self._parquet_batches() if self.format == "parquet" else self._text_batches()
        return read_ahead(self._chunks(read_ahead(batches)))

    def _chunks(self, batches: Iterator[pa.RecordBatch]) -> Iterator[ObservationChunk]:
        try:
            for batch in batches:
                chunk = self._validate(batch)
                if chunk is not None:
                    yield chunk
        finally:
            batches.close()  # stops the reading thread when the consumer stops early

    def _open_text(self):
        return _TextSource(self.path, self.layout)

    def _text_batches(self) -> Iterator[pa.RecordBatch]:
        layout = self.layout
        malformed = 0

        def on_invalid(_row) -> str:
            nonlocal malformed
            malformed += 1
            return "skip"

        parse = pacsv.ParseOptions(
            delimiter=layout.delimiter,
            quote_char=layout.quote or False,  # GBIF/DwC-A tab files are mostly unquoted
            newlines_in_values=layout.quote is not None,  # quoted descriptions may span lines
            invalid_row_handler=on_invalid,
        )
        names = self.columns.names()
        convert = pacsv.ConvertOptions(
            include_columns=names,
            column_types={n: pa.string() for n in names},
            strings_can_be_null=True,
        )
        with self._open_text() as (source, size):
            # no read-ahead thread: one left reading a closed stream after a parse error
            # aborted the process at exit (exit 134), and on 2 cores it was slower anyway
            read = pacsv.ReadOptions(
                block_size=TEXT_BLOCK_BYTES,
                encoding=layout.encoding,
                use_threads=False,
                column_names=list(layout.names) if layout.names else None,
                skip_rows=layout.header_lines if layout.names else 0,
            )
            reader = None
            try:
                reader = pacsv.open_csv(source.stream, read, parse, convert)
                for batch in _joined(reader, TEXT_BATCH_ROWS):
                    self._count_malformed(malformed)
                    malformed = 0
                    yield batch
                    if self.progress:
                        self.progress(min(source.position(), size), size)
            except pa.ArrowInvalid as exc:
                hint = " (not UTF-8: save it as UTF-8)" if "UTF8" in str(exc) else ""
                raise InputError(
                    f"observations file {self.path} cannot be parsed{hint}: {exc}"
                ) from None
            except DAMAGED as exc:  # a zip member read through Python
                raise damaged(self.path, exc) from None
            except OSError as exc:  # Arrow's gzip stream: no errno; a failing disk has one
                if exc.errno is not None or not self._compressed():
                    raise
                raise damaged(self.path, exc) from None
            finally:
                if reader is not None:
                    reader.close()
        self._count_malformed(malformed)

    def _compressed(self) -> bool:
        return self.layout.member is not None or self.path.suffix.lower() == ".gz"

    def _count_malformed(self, n: int) -> None:
        if n:
            self.report.dropped["malformed_row"] += n
            self.report.rows_read += n

    def _parquet_batches(self) -> Iterator[pa.RecordBatch]:
        try:
            # species names stay dictionary-encoded as Parquet stores them (a fraction of the
            # memory and time of decoding every name), and columns are read as needed
            species = self._parquet_schema.field(self.columns.species).type
            text = (
                [self.columns.species]
                if pa.types.is_string(species) or pa.types.is_large_string(species)
                else []
            )
            pfile = pq.ParquetFile(self.path, read_dictionary=text, pre_buffer=False)
            total = pfile.metadata.num_rows
            done = 0
            for batch in pfile.iter_batches(PARQUET_BATCH_ROWS, columns=self.columns.names()):
                yield batch
                done += batch.num_rows
                if self.progress:
                    self.progress(done, total)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"observations file {self.path} cannot be read: {exc}") from None

    # -- validation -----------------------------------------------------------------------------
    def _validate(self, batch: pa.RecordBatch) -> ObservationChunk | None:
        cols = self.columns
        n = batch.num_rows
        self.report.rows_read += n
        if n == 0:
            return None
        keep = np.ones(n, dtype=bool)

        def drop(reason: str, bad: np.ndarray) -> None:
            newly = keep & bad
            if newly.any():
                self.report.dropped[reason] += int(newly.sum())
                keep[newly] = False

        if cols.geometry:
            lon, lat, missing = _points_from_geometry(batch.column(cols.geometry), self._crs[1])
            drop("missing_coordinates", missing)
        else:
            lat, lat_missing, lat_bad = _numbers(batch.column(cols.lat))
            lon, lon_missing, lon_bad = _numbers(batch.column(cols.lon))
            drop("missing_coordinates", lat_missing | lon_missing)
            drop("non_numeric_coordinates", lat_bad | lon_bad)
            with np.errstate(invalid="ignore"):
                swapped = (np.abs(lat) > 90) & (np.abs(lat) <= 180) & (np.abs(lon) <= 90)
            self.report.swapped += int(swapped.sum())
        with np.errstate(invalid="ignore"):
            drop("latitude_out_of_range", ~((lat >= -90) & (lat <= 90)))
            drop("longitude_out_of_range", ~((lon >= -180) & (lon <= 180)))

        species = _trimmed_names(batch.column(cols.species))
        if pa.types.is_dictionary(species.type):
            entry = pc.fill_null(species.indices, -1).to_numpy(zero_copy_only=False)
            blank = _to_bool(
                pc.or_kleene(pc.is_null(species.dictionary), pc.equal(species.dictionary, ""))
            )
            drop("empty_species", (entry < 0) | blank[entry.clip(0)] if blank.size else entry < 0)
        else:
            drop(
                "empty_species", _to_bool(pc.or_kleene(pc.is_null(species), pc.equal(species, "")))
            )
        if cols.quality:
            grade = pc.utf8_lower(pc.cast(batch.column(cols.quality), pa.string()))
            drop("not_research_grade", ~_to_bool(pc.equal(grade, "research")))
        if cols.date:
            self._filter_dates(batch.column(cols.date), drop)
        if cols.synthetic and not self.synthetic:
            flags = pc.utf8_lower(pc.cast(batch.column(cols.synthetic), pa.string()))
            self.synthetic = bool(pc.any(pc.is_in(flags, pa.array(["true", "1", "yes"]))).as_py())

        kept = int(keep.sum())
        self.report.rows_kept += kept
        if kept == 0:
            return None
        if kept == n:  # the usual case: no copies
            return ObservationChunk(lon, lat, self._species_codes(species))
        return ObservationChunk(lon[keep], lat[keep], self._species_codes(species, keep))

    def _filter_dates(self, column: pa.Array, drop: Callable[[str, np.ndarray], None]) -> None:
        text = pc.utf8_slice_codeunits(pc.cast(column, pa.string()), 0, 10)
        parsed = pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True)
        drop("invalid_date", _to_bool(pc.is_null(parsed)))
        days = parsed.cast(pa.int64()).to_numpy(zero_copy_only=False) // 86400
        start, end = self.date_range
        outside = np.zeros(len(text), dtype=bool)
        epoch = dt.date(1970, 1, 1)
        with np.errstate(invalid="ignore"):
            if start:
                outside |= days < (start - epoch).days
            if end:
                outside |= days > (end - epoch).days
        drop("outside_date_range", outside)

    def _species_codes(self, species: pa.Array, keep: np.ndarray | None = None) -> np.ndarray:
        """Global species codes of the kept rows; names enter `species_names` in the order
        they first appear among kept rows."""
        if isinstance(species, pa.ChunkedArray):
            species = species.combine_chunks()
        encoded = species if pa.types.is_dictionary(species.type) else pc.dictionary_encode(species)
        local = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)
        if keep is not None:
            local = local[keep]
        names = encoded.dictionary.to_pylist()
        present = np.bincount(local, minlength=len(names)) > 0
        local_to_global = np.zeros(len(names), dtype=np.int32)
        for i in np.flatnonzero(present):
            code = self._species_ids.get(names[i])
            if code is None:
                code = self._species_ids[names[i]] = len(self.species_names)
                self.species_names.append(names[i])
            local_to_global[i] = code
        return local_to_global[local]


# -- helpers ------------------------------------------------------------------------------------
class _TextSource:
    """Context manager giving an Arrow input stream over the rows of a text file, a `.gz`, or a
    zip member, plus the total size for progress (compressed bytes, or the member's size)."""

    def __init__(self, path: Path, layout: TextLayout) -> None:
        self.path, self.layout = path, layout
        self._closers: list = []

    def __enter__(self):
        if self.layout.member is not None:
            archive, raw = open_member(self.path, self.layout.member)
            self._closers += [archive, raw]
            stream = pa.PythonFile(raw, mode="r")
            size = archive.getinfo(self.layout.member).file_size
            return _Positioned(stream, raw.tell), size
        raw = pa.OSFile(str(self.path), "rb")
        self._closers.append(raw)
        size = self.path.stat().st_size
        if self.path.suffix.lower() == ".gz":
            stream = pa.CompressedInputStream(raw, "gzip")
            self._closers.append(stream)
            return _Positioned(stream, raw.tell), size
        return _Positioned(raw, raw.tell), size

    def __exit__(self, *exc) -> None:
        for closer in reversed(self._closers):
            closer.close()


class _Positioned:
    """An Arrow stream plus a function telling how far the underlying file has been read."""

    def __init__(self, stream, position: Callable[[], int]) -> None:
        self.stream, self.position = stream, position


def _detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".parquet", ".geoparquet", ".pq"):
        return "parquet"
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1":
        return "parquet"
    return "text"  # plain, .gz, or a zip (a Darwin Core Archive or one zipped CSV)


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


def _geoparquet_crs(schema: pa.Schema) -> tuple[str, object] | None:
    """(geometry column, CRS or None for lon/lat) from GeoParquet metadata, if any."""
    meta = (schema.metadata or {}).get(b"geo")
    if not meta:
        return None
    info = json.loads(meta)
    column = info.get("primary_column", "geometry")
    crs = info.get("columns", {}).get(column, {}).get("crs")
    return column, crs


def _numbers(column: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 values plus (missing, non-numeric) masks from a string or numeric column.

    Clean text (every value a number or empty) takes one cast; a column with anything else
    (words, padded numbers, hex...) is checked value by value against `_NUMBER`."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        missing = np.isnan(values)
        return values, missing, np.zeros_like(missing)
    text = pc.cast(column, pa.string())
    try:
        values = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        pass
    else:
        missing = _to_bool(pc.is_null(text))
        with np.errstate(invalid="ignore"):
            odd = ~missing & ~np.isfinite(values)  # nan, inf: not numbers the regex accepts
        if not odd.any():
            return values, missing, odd
    missing = pc.or_kleene(pc.is_null(text), pc.equal(pc.utf8_trim_whitespace(text), ""))
    numeric = pc.match_substring_regex(text, _NUMBER)
    clean = pc.if_else(numeric, pc.utf8_trim_whitespace(text), None)
    values = pc.cast(clean, pa.float64()).to_numpy(zero_copy_only=False)
    missing_np = _to_bool(missing)
    return values, missing_np, ~missing_np & ~_to_bool(numeric)


def _points_from_geometry(
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
    return np.asarray(x), np.asarray(y), missing


_DONE = object()


def read_ahead(items: Iterator, depth: int = 2) -> Iterator:
    """Iterate over `items` produced on a thread of their own, `depth` items ahead.

    The producer runs the whole generator, its clean-up included, so a file it reads is closed
    by the thread reading it. An exception in the producer is raised in the consumer; a consumer
    that stops early (an error, a break) stops the producer and waits for it."""
    import contextlib
    import queue
    import threading

    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            slots.put((_DONE, exc))
            return
        finally:
            if stop.is_set() and hasattr(items, "close"):
                items.close()
        slots.put((_DONE, None))

    thread = threading.Thread(target=produce, name="observations-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # free a producer blocked on a full queue
            with contextlib.suppress(queue.Empty):
                slots.get(timeout=0.1)
        thread.join()


def _joined(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Small record batches joined into batches of at least `rows` rows (the last may be
    shorter): few large batches keep the per-batch work of validation and counting small."""
    group: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        group.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield _join(group)
            group, count = [], 0
    if group:
        yield _join(group)


def _join(group: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(group) == 1:
        return group[0]
    joined = pa.Table.from_batches(group).combine_chunks().to_batches()
    return joined[0] if joined else group[0]


def _trimmed_names(column: pa.Array) -> pa.Array:
    """Species names as text without surrounding blanks; a dictionary column stays one (its
    dictionary is trimmed, its indices kept)."""
    if pa.types.is_dictionary(column.type):
        names = pc.utf8_trim_whitespace(pc.cast(column.dictionary, pa.string()))
        return pa.DictionaryArray.from_arrays(column.indices, names)
    return pc.utf8_trim_whitespace(pc.cast(column, pa.string()))


def _to_bool(mask: pa.Array) -> np.ndarray:
    """Arrow boolean (nulls count as False) to numpy."""
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool)


def parse_date(text: str | None) -> dt.date | None:
    """YYYY-MM-DD (or None/empty) to a date, with a one-line error."""
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"date {text!r} is not YYYY-MM-DD") from None
