"""Species observations from iNaturalist, GBIF and GeoParquet files, streamed in bounded memory."""

from prom3e_geo.observations.columns import Columns
from prom3e_geo.observations.pipeline import read_ahead
from prom3e_geo.observations.reader import ObservationChunk, ObservationReader
from prom3e_geo.observations.validation import DROP_REASONS, DateRange, ReadReport

__all__ = [
    "DROP_REASONS",
    "Columns",
    "DateRange",
    "ObservationChunk",
    "ObservationReader",
    "ReadReport",
    "read_ahead",
]
