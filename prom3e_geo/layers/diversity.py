"""Species richness and Shannon diversity per grid cell, with AOI-aware Gaussian smoothing.

Per cell c with species counts n_{c,s} and N_c = sum_s n_{c,s}:

    richness_c = #{s : n_{c,s} > 0}
    shannon_c  = -sum_s p_{c,s} ln p_{c,s},   p_{c,s} = n_{c,s} / N_c     (nats; 0 for N_c = 0)
               = ln N_c - (sum_s n_{c,s} ln n_{c,s}) / N_c               (as computed: one log a
                                                                          count, no shares)

Counting is sparse and vectorised: each observation becomes one integer key (species * cells +
cell), keys are buffered and periodically reduced with a sort to (unique key, count) pairs, so
memory is bounded by the number of distinct (cell, species) pairs (three times their table at
most), never by the number of rows.
A buffer whose keys fit in 32 bits (fewer than ~17,000 species on the paper grid) is sorted as
int32, twice as fast as int64.

Unobserved is not zero: a cell without an observation has no diversity value, so the raw bands
are nodata there (`n_obs` stays 0, a count). Smoothing (the "KDE" of the paper's Fig. 5, sigma =
2 cells) is a normalised convolution over the observed cells of the AOI: G*(v o) / G*(o) with o
the observed cells, so a cell's smoothed value is the Gaussian-weighted mean of the observed
cells around it, and neither unobserved cells (zeros) nor cells outside the AOI pull it down.
Where the observed cells hold less than `DENSITY_FLOOR` of the kernel's weight within the AOI,
G*(o) / G*(m) < DENSITY_FLOOR with m the AOI mask, the smoothed bands are nodata: there is too
little evidence nearby to say anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from prom3e_geo.errors import InputError
from prom3e_geo.grid import CellMemory, Grid
from prom3e_geo.observations import ObservationChunk

BAND_NAMES = ("shannon", "richness", "shannon_raw", "richness_raw", "n_obs")
BAND_DOCS = {
    "shannon": "Shannon index H = -sum p ln p (nats), Gaussian-weighted mean of the observed "
    "cells around; nodata where they hold < 2% of the kernel's weight",
    "richness": "species richness (distinct species), Gaussian-weighted mean of the observed "
    "cells around; nodata where they hold < 2% of the kernel's weight",
    "shannon_raw": "Shannon index H = -sum p ln p (nats) per cell, unsmoothed; nodata unobserved",
    "richness_raw": "species richness (distinct species) per cell, unsmoothed; nodata unobserved",
    "n_obs": "number of observations per cell (0 where none)",
}
BAND_UNITS = {
    "shannon": "nats",
    "richness": "species",
    "shannon_raw": "nats",
    "richness_raw": "species",
    "n_obs": "observations",
}
DENSITY_FLOOR = 0.02  # least share of the kernel's AOI weight on observed cells (a lone observed
# cell holds 4% at its centre with sigma 2: its own smoothed value stays, the far field goes)
_REDUCE_EVERY = 1_000_000  # buffered keys before a reduction: 4 MB of int32 keys, sorted
# while the next batches are parsed (a larger buffer leaves one long sort for the end)
_SPLIT_LAST_MERGE = 1_000_000  # table keys from which the last merge runs on two threads


@dataclass
class CellSpeciesCounts:
    """Sparse (cell, species) -> count table on a grid, sorted by species then cell."""

    cell: np.ndarray  # flat cell index (int32 where the keys fit, else int64)
    count: np.ndarray  # int32
    species: int = 0  # distinct species counted
    outside_grid: int = 0
    outside_aoi: int = 0
    swapped_on_grid: int = 0  # of those outside the grid: on it with lon and lat swapped


@dataclass
class DiversityLayers:
    """The five diversity bands on a grid (NaN outside the AOI) plus counting statistics."""

    shannon: np.ndarray
    richness: np.ndarray
    shannon_raw: np.ndarray
    richness_raw: np.ndarray
    n_obs: np.ndarray
    sigma: float
    outside_grid: int
    outside_aoi: int  # observations in cells that do not touch the AOI
    swapped_on_grid: int = 0  # observations outside the grid that are on it once swapped
    observations_counted: int = 0  # in cells touching the AOI, drawn or at the coast
    species_counted: int = 0  # distinct species among them

    def bands(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in BAND_NAMES}

    @property
    def cells_with_data(self) -> int:
        return int(np.count_nonzero(np.nan_to_num(self.n_obs) > 0))

    @property
    def observations_used(self) -> int:
        return self.observations_counted


class _KeyCounter:
    """Counts integer keys in bounded memory: buffer, then reduce with one sort.

    The buffer is reduced once it holds `_REDUCE_EVERY` keys or twice as many as the table,
    whichever is more: a table of n distinct keys is merged again only after 2n more rows, so
    the merges cost O(rows) in all (merging every 1 M rows into a table of millions cost more
    than the sorts), and memory stays within three times the table."""

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype=np.int32)  # sorted, distinct; int64 once a key needs it
        self.counts = np.empty(0, dtype=np.int32)  # per (cell, species): far below 2**31
        self._pending: list[np.ndarray] = []
        self._pending_n = 0

    def add(self, keys: np.ndarray) -> None:
        self._pending.append(keys)
        self._pending_n += keys.size
        if self._pending_n >= max(_REDUCE_EVERY, 2 * self.keys.size):
            self.keys, self.counts = _merged(self.keys, self.counts, self._take_pending())

    def _take_pending(self) -> list[np.ndarray]:
        pending, self._pending, self._pending_n = self._pending, [], 0
        return pending

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct keys, sorted (int32 when every key fits), and their counts. The last
        merge is what the caller waits for: into a table of `_SPLIT_LAST_MERGE` keys or more,
        the keys below and above the table's middle key are merged on two threads (numpy's
        sorts let go of the GIL)."""
        pending = self._take_pending()
        if not pending:
            return self.keys, self.counts
        if self.keys.size < _SPLIT_LAST_MERGE:
            self.keys, self.counts = _merged(self.keys, self.counts, pending)
            return self.keys, self.counts
        new = _joined(pending)
        half = self.keys.size // 2
        below = new < self.keys[half]  # the table's keys are distinct: keys[:half] are below
        lower, upper = [new[below]], [new[~below]]  # handed over: `_merged` frees them
        del new, below
        with ThreadPoolExecutor(1) as pool:
            above = pool.submit(_merged, self.keys[half:], self.counts[half:], upper)
            parts = (_merged(self.keys[:half], self.counts[:half], lower), above.result())
        self.keys = np.concatenate([keys for keys, _ in parts])
        self.counts = np.concatenate([counts for _, counts in parts])
        return self.keys, self.counts


def _joined(pending: list[np.ndarray]) -> np.ndarray:
    """The buffered key arrays (one at least) as one, the list emptied (so that the caller
    holds no copy)."""
    new = pending.pop() if len(pending) == 1 else np.concatenate(pending)
    pending.clear()
    return new


def _merged(
    keys: np.ndarray, counts: np.ndarray, pending: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct `keys` and their `counts` with the raw keys of `pending` counted in.
    `pending` is emptied: its arrays are freed once their keys are counted, before the merge
    (the table's memory bound)."""
    new = _joined(pending)
    if new.size == 0:
        return keys, counts
    if new.dtype != np.int32 and new.max() < 2**31:
        new = new.astype(np.int32)
    new.sort()  # the raw keys: sorted in place, then counted by runs
    starts = _run_starts(new)
    new_keys, new_counts = new[starts], np.diff(np.r_[starts, new.size]).astype(np.int32)
    del new, starts
    if not keys.size:
        return new_keys, new_counts
    # two sorted runs: a stable sort merges them in one pass
    both, both_counts = np.concatenate([keys, new_keys]), np.concatenate([counts, new_counts])
    del new_keys, new_counts
    order = np.argsort(both, kind="stable")
    both, both_counts = both[order], both_counts[order]
    del order
    starts = _run_starts(both)
    return both[starts], np.add.reduceat(both_counts, starts, dtype=np.int32)


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Where each run of equal values begins in a sorted array."""
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


def count_cell_species(chunks: Iterable[ObservationChunk], grid: Grid) -> CellSpeciesCounts:
    """Bin observations into grid cells and count them per (cell, species)."""
    counter = _KeyCounter()
    outside_grid = outside_aoi = swapped_on_grid = 0
    n_cells = grid.height * grid.width
    counted = np.append(grid.counted.ravel(), False)  # cell -1, off the grid: not counted
    for chunk in chunks:
        cell = grid.cell_index_lonlat(chunk.lon, chunk.lat)
        off = cell < 0
        n_off = int(np.count_nonzero(off))
        if n_off:
            outside_grid += n_off
            swapped = grid.cell_index_lonlat(chunk.lat[off], chunk.lon[off])
            swapped_on_grid += int(np.count_nonzero(swapped >= 0))
        inside = counted[cell]
        outside_aoi += cell.size - n_off - int(np.count_nonzero(inside))
        species = chunk.species[inside]
        small = species.size == 0 or (int(species.max()) + 1) * n_cells < 2**31
        kind = np.dtype(np.int32 if small else np.int64)  # half the buffer, a faster sort
        keys = species.astype(kind) * kind.type(n_cells) + cell[inside].astype(kind)
        counter.add(keys)
    keys, counts = counter.result()
    return CellSpeciesCounts(
        keys % keys.dtype.type(n_cells),
        counts,
        _distinct_species(keys, n_cells),
        outside_grid,
        outside_aoi,
        swapped_on_grid,
    )


def _distinct_species(sorted_keys: np.ndarray, n_cells: int) -> int:
    """How many species codes occur among sorted keys (species * n_cells + cell): where each
    code's keys would begin, and which of those ranges hold any."""
    if sorted_keys.size == 0:
        return 0
    codes = np.arange(int(sorted_keys[-1]) // n_cells + 2, dtype=np.int64)
    return int(np.count_nonzero(np.diff(np.searchsorted(sorted_keys, codes * n_cells))))


def diversity_indices(counts: CellSpeciesCounts, n_cells: int) -> tuple[np.ndarray, ...]:
    """Flat per-cell (shannon, richness, n_obs) from a sparse count table."""
    n_obs = np.bincount(counts.cell, weights=counts.count, minlength=n_cells)
    richness = np.bincount(counts.cell, minlength=n_cells).astype(np.float64)
    n_log_n = counts.count.astype(np.float64)
    np.multiply(n_log_n, np.log(n_log_n), out=n_log_n)
    sum_n_log_n = np.bincount(counts.cell, weights=n_log_n, minlength=n_cells)
    observed = n_obs > 0
    shannon = np.zeros(n_cells)
    shannon[observed] = np.log(n_obs[observed]) - sum_n_log_n[observed] / n_obs[observed]
    shannon[richness == 1] = 0.0  # one species: exactly 0, not a rounding error either side
    np.maximum(shannon, 0.0, out=shannon)
    return shannon, richness, n_obs


def smooth_within(
    values: np.ndarray,
    mask: np.ndarray,
    sigma: float,
    observed: np.ndarray | None = None,
    floor: float = DENSITY_FLOOR,
    support: np.ndarray | None = None,
) -> np.ndarray:
    """Gaussian smoothing by normalised convolution inside `mask`; NaN outside it.

    Values outside the mask are ignored (they never leak in), and each inside cell is the
    Gaussian-weighted mean of the inside cells around it (so edges are not pulled towards 0).
    With `observed`, only observed cells contribute (those of `support`, the cells that can
    hold observations, default `mask`), and cells whose observed neighbours hold less than
    `floor` of the kernel's weight within `support` are NaN.
    """
    support = mask if support is None else support
    sources = mask if observed is None else (observed & support)
    data = np.where(sources, values, 0.0).astype(np.float64)
    weights = sources.astype(np.float64)
    area = support.astype(np.float64)
    if sigma > 0:
        data, weights, area = (gaussian_filter(a, sigma) for a in (data, weights, area))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = data / weights
        enough = weights / area >= floor if observed is not None else np.ones_like(mask)
    return np.where(mask & enough & (weights > 0), out, np.nan)


_DIRECT_TAPS = 41  # kernels up to this length are applied as shifted sums, longer ones by FFT
_SCIPY_CELLS = 1_000_000  # grids larger than this are filtered by scipy.ndimage


def gaussian_filter(values: np.ndarray, sigma: float) -> np.ndarray:
    """A 2-D Gaussian filter with zeros beyond the edges, the kernel truncated at 4 sigma: the
    filter `scipy.ndimage.gaussian_filter(values, sigma, mode="constant")` computes, equal to
    rounding. Importing `scipy.ndimage` takes 0.3 s, a large share of a small grid's run, and
    on a small grid the shifted sums below take milliseconds; on a large one (4x slower than
    scipy's C loops there) scipy does it."""
    if values.size > _SCIPY_CELLS:
        from scipy import ndimage

        return np.asarray(ndimage.gaussian_filter(values, sigma, mode="constant", cval=0.0))
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 / (sigma * sigma) * x**2)
    kernel /= kernel.sum()
    out = np.asarray(values, dtype=np.float64)
    for axis in (0, 1):
        out = _filter_axis(out, kernel, axis)
    return out


def _filter_axis(values: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """`values` convolved along `axis` with a symmetric odd-length `kernel`, zero-padded."""
    n, radius = values.shape[axis], kernel.size // 2
    moved = np.ascontiguousarray(np.moveaxis(values, axis, 0))  # rows of taps: fast adds
    if kernel.size <= _DIRECT_TAPS:
        padded = np.zeros((n + 2 * radius, *moved.shape[1:]))
        padded[radius : radius + n] = moved
        out = np.zeros_like(moved)
        term = np.empty_like(moved)
        for k, weight in enumerate(kernel):
            out += np.multiply(padded[k : k + n], weight, out=term)
    else:
        size = n + 2 * radius
        spectrum = np.fft.rfft(moved, size, axis=0) * np.fft.rfft(kernel, size)[:, None]
        out = np.fft.irfft(spectrum, size, axis=0)[radius : radius + n]
    return np.moveaxis(out, 0, axis)


# peak memory of `diversity` a grid cell (the bands, the smoothing's float64 planes, the COG and
# Zarr writers): 76 bytes measured on 2000x2000 and 4000x4000 grids; the PNG quicklook adds 80
DIVERSITY_BYTES_PER_CELL = 96
QUICKLOOK_BYTES_PER_CELL = 96


def diversity_memory(png: bool) -> CellMemory:
    """What `diversity` needs a cell, for the grid's memory check."""
    if png:
        per_cell = DIVERSITY_BYTES_PER_CELL + QUICKLOOK_BYTES_PER_CELL
        return CellMemory(per_cell, "diversity with a quicklook", ", or leave out --png")
    return CellMemory(DIVERSITY_BYTES_PER_CELL, "diversity")


def check_sigma(grid: Grid, sigma: float) -> None:
    """Refuse a smoothing sigma beyond the grid: its kernel, 8 sigma wide, grows with sigma
    (`--sigma 1e9` asked for 60 GiB), and past the grid's longer side every cell is the same
    average."""
    h, w = grid.shape
    if sigma > max(h, w):
        raise InputError(
            f"--sigma {sigma:g} is larger than the grid ({h}x{w} cells); at most {max(h, w)}"
        )


def compute_diversity(
    chunks: Iterable[ObservationChunk],
    grid: Grid,
    sigma: float = 2.0,
) -> DiversityLayers:
    """Diversity bands on `grid` from observation chunks (see the module docstring)."""
    if sigma < 0:
        raise ValueError("sigma must be >= 0")
    counts = count_cell_species(chunks, grid)
    shannon, richness, n_obs = (
        a.reshape(grid.shape) for a in diversity_indices(counts, grid.height * grid.width)
    )
    outside = ~grid.mask
    counted = grid.counted
    observed = counted & (n_obs > 0)

    def smooth(values: np.ndarray) -> np.ndarray:
        return smooth_within(values, grid.mask, sigma, observed, support=counted)

    return DiversityLayers(
        shannon=smooth(shannon).astype(np.float32),
        richness=smooth(richness).astype(np.float32),
        shannon_raw=np.where(observed & grid.mask, shannon, np.nan).astype(np.float32),
        richness_raw=np.where(observed & grid.mask, richness, np.nan).astype(np.float32),
        n_obs=np.where(outside, np.nan, n_obs).astype(np.float32),
        sigma=sigma,
        outside_grid=counts.outside_grid,
        outside_aoi=counts.outside_aoi,
        swapped_on_grid=counts.swapped_on_grid,
        observations_counted=int(counts.count.sum()),
        species_counted=counts.species,
    )
