"""The observation reader: valid (lon, lat, species code) chunks of a file, with drop counts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from prom3e_geo.errors import InputError
from prom3e_geo.observations.batches import (
    ProgressCallback,
    parquet_batches,
    read_header,
    text_batches,
)
from prom3e_geo.observations.columns import GeoColumn, detect_format, geoparquet_column
from prom3e_geo.observations.columns import resolve_columns as _resolve
from prom3e_geo.observations.files import text_layout
from prom3e_geo.observations.pipeline import read_ahead
from prom3e_geo.observations.species import SpeciesCodes
from prom3e_geo.observations.validation import DateRange, ReadReport, check_batch, says_synthetic


@dataclass(frozen=True)
class ObservationChunk:
    """Valid observations: lon/lat in degrees (float64) and species codes (index into names)."""

    lon: np.ndarray
    lat: np.ndarray
    species: np.ndarray


class ObservationReader:
    """Iterate over the valid observations of a file, chunk by chunk.

    Inputs (auto-detected; column names can always be given explicitly): an iNaturalist CSV
    export (`latitude`, `longitude`, `scientific_name` or `taxon_id`, optional `quality_grade`,
    `observed_on`; quoted, newlines allowed inside quotes); a GBIF simple download (tab-separated)
    or Darwin Core Archive (`decimalLatitude`, `decimalLongitude`, `species` or `speciesKey`,
    optional `eventDate`); GeoParquet (point geometry, any CRS) or Parquet with latitude and
    longitude columns; `.gz` of the text formats. Batches are read with pyarrow, validated with
    vectorised kernels, and rows that cannot be used are dropped and counted by reason in
    `report`.

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
        date_range: DateRange | None = None,
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
        self.synthetic = False  # some row says it is made up (a `synthetic` column)
        self._codes = SpeciesCodes()
        self.report = ReadReport()
        self.format = detect_format(self.path)
        self._geo: GeoColumn | None = None
        if self.format == "parquet":
            import pyarrow.parquet as pq  # here: 5 ms of imports a text file does not need

            try:
                self._parquet_schema = pq.read_schema(self.path)
            except (pa.ArrowInvalid, OSError) as exc:
                raise InputError(
                    f"observations file {self.path} is not valid Parquet: {exc}"
                ) from None
            available = list(self._parquet_schema.names)
            self._geo = geoparquet_column(self._parquet_schema.metadata)
        else:
            self.layout = text_layout(self.path)
            available = read_header(self.path, self.layout)
        explicit = (lat_col, lon_col, species_col)
        dated = self.date_range is not None
        self.columns = _resolve(self.path, available, self._geo, explicit, research_grade, dated)
        if self.columns.lat and self.columns.lon:
            self.report.columns = (self.columns.lat, self.columns.lon)

    @property
    def species_names(self) -> list[str]:
        """Species names by code, in the order they were first kept."""
        return self._codes.names

    def __iter__(self) -> Iterator[ObservationChunk]:
        """Valid chunks, in a pipeline of threads (parsing and the compute kernels release the
        GIL): batches are read on one, validated on another, and counted by the consumer, each
        stage a batch ahead of the next."""
        return read_ahead(self._chunks(read_ahead(self._batches())))

    def _batches(self) -> Iterator[pa.RecordBatch]:
        names = self.columns.names()
        if self.format == "parquet":
            species = self.columns.species
            return parquet_batches(self.path, self._parquet_schema, names, species, self.progress)
        malformed = self.report.malformed
        return text_batches(self.path, self.layout, names, malformed, self.progress)

    def _chunks(self, batches: Iterator[pa.RecordBatch]) -> Iterator[ObservationChunk]:
        try:
            for batch in batches:
                chunk = self._validate(batch)
                if chunk is not None:
                    yield chunk
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # stops the reading thread when the consumer stops early

    def _validate(self, batch: pa.RecordBatch) -> ObservationChunk | None:
        if batch.num_rows == 0:
            return None
        crs = self._geo.crs if self._geo else None
        checked = check_batch(batch, self.columns, crs, self.date_range, self.report)
        if self.columns.synthetic and not self.synthetic:
            self.synthetic = says_synthetic(batch.column(self.columns.synthetic))
        keep = checked.keep
        kept = int(keep.sum())
        self.report.rows_kept += kept
        if kept == 0:
            return None
        if kept == batch.num_rows:  # the usual case: no copies
            return ObservationChunk(checked.lon, checked.lat, self._codes.codes(checked.species))
        species = self._codes.codes(checked.species, keep)
        return ObservationChunk(checked.lon[keep], checked.lat[keep], species)
