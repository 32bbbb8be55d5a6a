"""Species names to integer codes that stay the same across the batches of a read."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prom3e_geo.observations import arrow_numpy


class SpeciesCodes:
    """Global species codes: names get codes in the order they are first kept (within a batch,
    in the order of its dictionary)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._ids: dict[str, int] = {}
        self._known = pa.nulls(0, pa.string())  # `names` as Arrow: looked up by a hash kernel

    def codes(self, species: pa.DictionaryArray, keep: np.ndarray | None = None) -> np.ndarray:
        """Codes (int32) of the rows of `species` selected by `keep`: the batch's distinct
        names are looked up among the known ones at once, and only new names pass through
        Python."""
        local = arrow_numpy.numbers(species.indices, 0)
        if keep is not None:
            local = local[keep]
        dictionary = species.dictionary  # text: `trimmed_names` made it so
        present = np.bincount(local, minlength=len(dictionary)) > 0
        found = pc.index_in(dictionary, value_set=self._known)
        local_to_global = arrow_numpy.numbers(found, -1).astype(np.int32)
        new = np.flatnonzero(present & (local_to_global < 0))
        if new.size:
            first: list[int] = []  # positions of names that got a code here
            for i, name in zip(
                new, dictionary.take(arrow_numpy.indices(new)).to_pylist(), strict=True
            ):
                code = self._ids.get(name)
                if code is None:
                    code = self._ids[name] = len(self.names)
                    self.names.append(name)
                    first.append(int(i))
                local_to_global[i] = code
            added = dictionary.take(arrow_numpy.indices(np.array(first)))
            self._known = pa.concat_arrays([self._known, added])
        return np.asarray(local_to_global[local])
