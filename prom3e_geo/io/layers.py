"""Write one set of layer bands to every requested format: COG, and optionally Zarr and PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from prom3e_geo.grid import Grid
from prom3e_geo.io.geotiff import write_cog
from prom3e_geo.io.outputs import OutputSpec, committed_together
from prom3e_geo.io.png import Panel, write_quicklook
from prom3e_geo.io.provenance import SYNTHETIC_NOTE, manifest_tags, provenance
from prom3e_geo.io.qml import stretch, write_style
from prom3e_geo.layers.base import LayerSet


def write_layer_outputs(
    bands: Mapping[str, np.ndarray],
    grid: Grid,
    tags: Mapping[str, str],
    band_docs: Mapping[str, str],
    out: str | Path,
    *,
    zarr_path: str | Path | None = None,
    zarr_format: int = 2,
    png_path: str | Path | None = None,
    png_panels: Sequence[Panel] = (),
    png_title: str | None = None,
    style_cmap: str | None = "viridis",
    overwrite: bool = False,
    units: Mapping[str, str] | None = None,
) -> list[Path | str]:
    """Write `bands` (name -> 2-D array on `grid`) with the same provenance everywhere.

    `band_docs` gives each band a one-line description (GeoTIFF band tag `description`, Zarr
    `long_name`). With `style_cmap`, the GeoTIFF gets a QGIS style sidecar for its first band
    (`io.qml`). The outputs appear together, or none of them does. Returns the paths written.
    """
    unit_of = dict(units or {})

    def described(band: str, key: str) -> dict[str, str]:  # a band's description and unit
        return {
            key: band_docs.get(band, band),
            **({"units": unit_of[band]} if band in unit_of else {}),
        }

    with committed_together():
        written: list[Path | str] = [
            write_cog(
                out,
                bands,
                grid,
                tags,
                band_tags={n: described(n, "description") for n in bands},
                overwrite=overwrite,
            )
        ]
        if style_cmap is not None:
            first = next(iter(bands))
            label = f"{first}: {band_docs.get(first, first)}"
            written.append(write_style(out, bands[first], style_cmap, label, overwrite))
        if zarr_path is not None:
            from prom3e_geo.io.zarr import layer_dataset, write_zarr  # xarray: only when asked

            ds = layer_dataset(
                bands,
                grid,
                attrs=tags,
                var_attrs={n: described(n, "long_name") for n in bands},
            )
            written.append(
                write_zarr(zarr_path, ds, zarr_format, chunks=grid.chunk_shape, overwrite=overwrite)
            )
        if png_path is not None:
            note = SYNTHETIC_NOTE if "demo_world" in tags else None
            written.append(
                write_quicklook(
                    png_path, png_panels, grid, suptitle=png_title, overwrite=overwrite, note=note
                )
            )
        return written


def write_layer_set(
    layers: LayerSet, output: OutputSpec, command: str, title: str, cmap: str = "viridis"
) -> list[Path | str]:
    """A layer set to its outputs with provenance tags (the command, the grid, the layer's
    parameters, the store's manifest); the PNG shows the first three bands, or with
    `cmap="rgb"` the first three as one composite."""
    tags = provenance(command, layers.grid)
    if layers.manifest:
        tags |= manifest_tags(layers.manifest)
        if "context" in layers.params:  # the layer's own context (uncertainty of a subset)
            tags["store_context"] = tags.pop("context")
    tags |= {key: str(value) for key, value in layers.params.items()}
    items = list(layers.bands.items())
    if cmap == "rgb":
        panels = [Panel(np.dstack([v for _, v in items[:3]]), "")]
    else:  # every band; each stretched over its 2nd-98th percentiles, the stretch in its legend
        panels = []
        for name, values in items:
            if name in layers.classes:
                panels.append(Panel(values, name, cmap=cmap, classes=layers.classes[name]))
                continue
            lo, hi = stretch(values)
            legend = f"{layers.units.get(name, '')} (2-98%: {lo:.4g}..{hi:.4g})".strip()
            panels.append(Panel(values, name, legend, cmap, lo, hi))
    return write_layer_outputs(
        layers.bands,
        layers.grid,
        tags,
        layers.docs,
        output.out,
        zarr_path=output.zarr,
        zarr_format=output.zarr_format,
        png_path=output.png,
        png_panels=panels,
        png_title=title,
        style_cmap=None if cmap == "rgb" else cmap,
        overwrite=output.overwrite,
        units=layers.units,
    )
