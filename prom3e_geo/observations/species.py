"""Species names to integer codes that stay the same across the batches of a read."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prom3e_geo.observations import arrow_numpy


class SpeciesCodes:
    """Global species codes: names get codes in the order they first appear among kept rows."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._ids: dict[str, int] = {}

    def codes(self, species: pa.Array, keep: np.ndarray | None = None) -> np.ndarray:
        """Codes (int32) of the rows of `species` (text or dictionary) selected by `keep`."""
        if isinstance(species, pa.ChunkedArray):
            species = species.combine_chunks()
        encoded = species if pa.types.is_dictionary(species.type) else pc.dictionary_encode(species)
        local = arrow_numpy.numbers(encoded.indices, 0)
        if keep is not None:
            local = local[keep]
        names = encoded.dictionary.to_pylist()
        present = np.bincount(local, minlength=len(names)) > 0
        local_to_global = np.zeros(len(names), dtype=np.int32)
        for i in np.flatnonzero(present):
            code = self._ids.get(names[i])
            if code is None:
                code = self._ids[names[i]] = len(self.names)
                self.names.append(names[i])
            local_to_global[i] = code
        return np.asarray(local_to_global[local])
