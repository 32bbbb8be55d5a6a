"""`diversity`: Shannon diversity and species richness maps from observation files."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prom3e_geo.errors import InputError
from prom3e_geo.grid import Grid
from prom3e_geo.hashing import BackgroundDigest, KnownDigests
from prom3e_geo.io.layers import write_layer_outputs
from prom3e_geo.io.outputs import OutputSpec
from prom3e_geo.io.png import Panel
from prom3e_geo.io.provenance import SYNTHETIC_TAG, provenance
from prom3e_geo.layers.diversity import (
    BAND_DOCS,
    BAND_UNITS,
    DiversityLayers,
    check_sigma,
    compute_diversity,
    diversity_memory,
)
from prom3e_geo.observations import ObservationReader, ReadReport
from prom3e_geo.settings import Settings
from prom3e_geo.workflows.specs import GridSpec, provenance_command

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiversitySpec:
    observations: Path
    sigma: float = 2.0  # Gaussian smoothing in cells
    lat_col: str | None = None
    lon_col: str | None = None
    species_col: str | None = None
    research_grade: bool = False
    since: dt.date | None = None  # keep observations on or after this day
    until: dt.date | None = None  # and on or before this one


@dataclass
class DiversityResult:
    grid: Grid
    layers: DiversityLayers
    report: ReadReport
    species: int
    written: list[Path | str]  # paths, and object-storage URLs of Zarr outputs


def diversity(
    spec: DiversitySpec,
    grid: GridSpec,
    output: OutputSpec,
    *,
    progress: Callable[[int, int], None] | None = None,
    command: str | None = None,
    settings: Settings | None = None,
    digest: BackgroundDigest | None = None,
) -> DiversityResult:
    """Count observations per cell and species, smooth, write the five bands. The input's
    SHA-256 for the provenance tags is remembered in the cache folder (`KnownDigests`) and
    computed beside the counting, or is `digest`, begun by the caller (the CLI begins it
    before this module's libraries load, on the core the imports leave idle)."""
    output.check([spec.observations])
    date_range = (spec.since, spec.until)
    built = grid.build(diversity_memory(png=output.png is not None))
    check_sigma(built, spec.sigma)
    reader = ObservationReader(
        spec.observations,
        lat_col=spec.lat_col,
        lon_col=spec.lon_col,
        species_col=spec.species_col,
        research_grade=spec.research_grade,
        date_range=date_range,
        progress=progress,
    )
    if digest is None:
        known = KnownDigests((settings or Settings.from_environment()).digests_dir)
        digest = BackgroundDigest(spec.observations, known)
    layers = compute_diversity(reader, built, sigma=spec.sigma)
    report = reader.report
    swapped = report.swap_hint(layers.swapped_on_grid)
    if layers.observations_used == 0:
        raise InputError(
            f"no usable observation falls inside the AOI ({report.summary()}; "
            f"outside the grid: {layers.outside_grid:,}, outside the AOI: {layers.outside_aoi:,})"
            + (f"; {swapped}" if swapped else "")
        )
    if swapped:
        log.warning("%s", swapped)
    tags = provenance(
        provenance_command(command, "diversity"),
        built,
        inputs={"observations": spec.observations},
        digests={"observations": digest},
        params={
            "layer": "diversity",
            "sigma_cells": spec.sigma,
            "species_column": reader.columns.species,
            "research_grade_only": spec.research_grade,
            **({"date_range": f"{spec.since or ''}/{spec.until or ''}"} if any(date_range) else {}),
            "rows_read": report.rows_read,
            "rows_kept": report.rows_kept,
            "species": layers.species_counted,
            "species_read": len(reader.species_names),
        },
    )
    if reader.synthetic:
        tags["demo_world"] = SYNTHETIC_TAG
    sigma = spec.sigma
    panels = [
        Panel(layers.shannon, f"Shannon diversity (sigma {sigma:g} cells)", "H (nats)", "magma"),
        Panel(layers.richness, f"Species richness (sigma {sigma:g} cells)", "species", "viridis"),
    ]
    written = write_layer_outputs(
        layers.bands(),
        built,
        tags,
        BAND_DOCS,
        output.out,
        zarr_path=output.zarr,
        zarr_format=output.zarr_format,
        png_path=output.png,
        png_panels=panels,
        png_title=f"{spec.observations.name}: {built.aoi_name}, {built.crs_name()}, "
        f"{built.height}x{built.width} cells",
        style_cmap="magma",
        overwrite=output.overwrite,
        units=BAND_UNITS,
    )
    return DiversityResult(built, layers, report, layers.species_counted, written)
