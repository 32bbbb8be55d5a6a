"""The explorer's state: one opened map session and the layers made from it.

The session (the embedding store, its model and towers) is opened once, so a new photo's map
costs one pass of the photo tower and a dot product per cell (`MapSession.sdm_layers`, the
same code as `prom3e-geo sdm`). Downloads are written by the same writers as the CLI's
(`write_sdm`, `write_uncertainty`), into a folder the explorer owns, under names it chooses;
their provenance records the `prom3e-geo` command that writes the same file. Every method may
be called from several threads at once: the layer table is guarded by a lock, and a download
is written once per layer.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from prom3e_geo.errors import InputError
from prom3e_geo.grid import Grid
from prom3e_geo.io.outputs import OutputSpec
from prom3e_geo.io.png import Panel, write_quicklook
from prom3e_geo.io.provenance import SYNTHETIC_NOTE, manifest_tags
from prom3e_geo.io.qml import stretch
from prom3e_geo.io.rasters import read_band
from prom3e_geo.layers.base import LayerSet
from prom3e_geo.layers.modes import DEFAULT_MODE, MODES
from prom3e_geo.layers.sdm import Query, file_query, text_query
from prom3e_geo.workflows.maps import (
    SDM_CMAP,
    UNCERTAINTY_CMAP,
    UNCERTAINTY_LAYERS,
    UNCERTAINTY_STYLE,
    MapInputs,
    MapSession,
    SdmSpec,
    UncertaintySpec,
    uncertainty,
    write_sdm,
    write_uncertainty,
)

from .maplayers import Json, MapLayer, Writer, grid_geojson
from .uploads import Upload

log = logging.getLogger(__name__)

PROG = "prom3e-geo"
MAX_NAME = 100  # characters of a typed species name
KEEP_QUERIES = 24  # query layers kept (the oldest are dropped)
FILE_CMAP = "viridis"


@dataclass(frozen=True)
class ExplorerOptions:
    """How the explorer serves: the default SDM mode, an online basemap (an XYZ tile URL
    template; None: offline, the AOI outline and grid only), the upload limit in bytes, and the
    `prom3e-geo` options that added query towers to the store's pipeline (`--audio-encoder
    PATH`), repeated in each query's `sdm` command so that it writes the same file."""

    mode: str = DEFAULT_MODE
    basemap: str | None = None
    max_upload: int = 20 * 2**20
    tower_options: tuple[str, ...] = ()


class Explorer:
    """Layers of one map session: the store's uncertainty, `--layer` files, and a map per
    query. Layers are found by the ids the explorer gives them, never by a path."""

    def __init__(
        self,
        session: MapSession,
        files: Sequence[Path] = (),
        options: ExplorerOptions = ExplorerOptions(),
    ) -> None:
        if options.mode not in MODES:
            raise InputError(f"unknown mode {options.mode!r} ({' or '.join(MODES)})")
        self.session = session
        self.options = options
        self.grid: Grid = session.store.grid
        self.store_arg = str(session.store.path)
        self._lock = threading.Lock()
        self._layers: OrderedDict[str, MapLayer] = OrderedDict()
        self._queries: list[str] = []
        self._count = 0
        self._downloads: dict[str, threading.Lock] = {}
        self._uncertainty: dict[tuple[str, tuple[str, ...]], list[str]] = {}  # -> layer ids
        self._making: dict[tuple[str, tuple[str, ...]], threading.Lock] = {}
        self._folder = tempfile.TemporaryDirectory(prefix="prom3e-geo-serve-")
        self.workdir = Path(self._folder.name)
        self._add_uncertainty()
        if session.keep_vectors:
            session.cell_vectors("recon_image")  # read before the first photo arrives
        for path in files:
            self._add_file(Path(path))

    def close(self) -> None:
        """Remove the explorer's folder (uploads and downloads)."""
        self._folder.cleanup()

    # -- what the page asks ---------------------------------------------------------------------
    def info(self) -> Json:
        """The grid, the towers that take queries, the options and the layers so far."""
        encoders = self.session.encoders
        with self._lock:
            layers = [layer.summary() for layer in self._layers.values()]
        return {
            "grid": grid_geojson(self.grid),
            "describe": self.grid.describe(),
            "note": SYNTHETIC_NOTE
            if "demo_world" in manifest_tags(self.session.store.manifest)
            else "",
            "store": self.store_arg,
            "queries": [m for m in ("image", "audio", "text") if m in encoders],
            "modes": list(MODES),
            "mode": self.options.mode,
            "basemap": self.options.basemap,
            "max_upload": self.options.max_upload,
            "uncertainty": {"layers": list(UNCERTAINTY_LAYERS), "context": self.context},
            "layers": layers,
        }

    @property
    def context(self) -> list[str]:
        """The modalities of the store's context (those an uncertainty layer can condition on)."""
        return list(self.session.store.manifest["context"])

    def layer(self, layer_id: str) -> MapLayer:
        with self._lock:
            layer = self._layers.get(layer_id)
        if layer is None:
            raise KeyError(layer_id)
        return layer

    def cell(self, lon: float, lat: float) -> Json:
        """Every layer's value in the cell under (lon, lat), with the cell's row, column,
        centre and corners on the store's grid (empty outside it)."""
        with self._lock:
            layers = list(self._layers.values())
        where, values = None, []
        for layer in layers:
            hit = layer.sample(lon, lat)
            if hit is None:
                continue
            if where is None and layer.kind != "file":
                where = {k: v for k, v in hit.items() if k != "value"}  # the store's grid
            values.append({"id": layer.id, "title": layer.title, "units": layer.units,
                           "value": hit["value"]})  # fmt: skip
        if where is None:
            return {"inside": False, "values": []}
        return {"inside": True, **where, "values": values}

    # -- queries --------------------------------------------------------------------------------
    def query_upload(self, upload: Upload, mode: str | None = None) -> MapLayer:
        """The SDM layer of an uploaded photo or recording (checked by `check_upload`), saved
        under a folder and name the explorer chooses."""
        mode = self._mode(mode)
        folder = Path(tempfile.mkdtemp(prefix="query-", dir=self.workdir))
        path = folder / upload.filename
        path.write_bytes(upload.data)
        try:
            query = file_query(path, self.session.encoders, source=upload.filename)
        except InputError as exc:  # the tower's reason, without the explorer's folder
            raise InputError(str(exc).replace(str(path), upload.filename)) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return self._add_query(query, mode)

    def query_name(self, name: str, mode: str | None = None) -> MapLayer:
        """The SDM layer of a typed species name (through the text tower; never a file)."""
        mode = self._mode(mode)
        name = " ".join(name.split())
        if not name or len(name) > MAX_NAME or not name.isprintable():
            raise InputError(f"a species name has 1 to {MAX_NAME} printable characters")
        return self._add_query(text_query(name, self.session.encoders), mode)

    def _mode(self, mode: str | None) -> str:
        mode = mode or self.options.mode
        if mode not in MODES:
            raise InputError(f"unknown mode {mode!r} ({' or '.join(MODES)})")
        return mode

    def _add_query(self, query: Query, mode: str) -> MapLayer:
        spec = SdmSpec((query.source,), mode)
        layers = self.session.sdm_layers(spec, [query])
        out = f"{query.name}.tif"
        args = [PROG, "sdm", "--query", query.source, "--embeddings", self.store_arg]
        args += ["--mode", mode, *self.options.tower_options]
        command = shlex.join([*args, "--out", out])

        def write(cog: Path, png: Path) -> None:
            write_sdm(layers, OutputSpec(cog, png=png), command, mode)

        layer = self._layer_of(layers, query.name, "sdm", SDM_CMAP, command, write)
        layer.title = f"{query.source} ({mode})"
        with self._lock:
            self._layers[layer.id] = layer
            self._queries.append(layer.id)
            while len(self._queries) > KEEP_QUERIES:
                self._layers.pop(self._queries.pop(0), None)
        return layer

    # -- layers ---------------------------------------------------------------------------------
    def _next_id(self, kind: str) -> str:
        with self._lock:
            self._count += 1
            return f"{kind}-{self._count}"

    def _layer_of(self, layers: LayerSet, band: str, kind: str, cmap: str, command: str,
                  write: Writer) -> MapLayer:  # fmt: skip
        grid = layers.grid
        return MapLayer(
            id=self._next_id(kind),
            title=band,
            band=band,
            values=layers.bands[band],
            crs=grid.crs,
            transform=grid.transform,
            units=layers.units.get(band, ""),
            cmap=cmap,
            description=layers.docs.get(band, band),
            command=command,
            write=write,
            kind=kind,
        )

    def _add_uncertainty(self) -> None:
        """||sigma||_1 of the store's own context, as stored (no model pass)."""
        layers = self.session.stored_uncertainty()
        context = ",".join(self.context)
        command = shlex.join([PROG, "uncertainty", "--embeddings", self.store_arg,
                              "--context", context, "--out", "sigma_l1.tif"])  # fmt: skip

        def write(cog: Path, png: Path) -> None:
            write_uncertainty(layers, OutputSpec(cog, png=png), command)

        ids = []
        for band in layers.bands:
            layer = self._layer_of(layers, band, "uncertainty", UNCERTAINTY_CMAP, command, write)
            layer.title = f"{band}: uncertainty of {context.replace(',', '+')}"
            ids.append(layer.id)
            with self._lock:
                self._layers[layer.id] = layer
        self._uncertainty[("sigma_l1", tuple(self.context))] = ids

    def uncertainty(self, layer: str, context: Sequence[str]) -> list[MapLayer]:
        """The bands of an uncertainty `layer` (sigma_l1, expected_error, novelty, trust) for
        `context` (any subset of the store's), made once per pair by the `uncertainty` workflow,
        so its COG is the file `prom3e-geo uncertainty --layer LAYER --context ...` writes."""
        if layer not in UNCERTAINTY_LAYERS:
            raise InputError(f"unknown layer {layer!r} (one of {', '.join(UNCERTAINTY_LAYERS)})")
        unknown = sorted(set(context) - set(self.context))
        if unknown or not context:
            raise InputError(
                f"give a context of the store's modalities ({', '.join(self.context)})"
            )
        key = (layer, tuple(m for m in self.context if m in context))  # in the store's order
        with self._lock:
            guard = self._making.setdefault(key, threading.Lock())
        with guard:
            if key not in self._uncertainty:
                self._uncertainty[key] = self._make_uncertainty(*key)
            return [self.layer(i) for i in self._uncertainty[key]]

    def _make_uncertainty(self, layer: str, context: tuple[str, ...]) -> list[str]:
        stem = f"{layer}_{'-'.join(context)}"
        folder = Path(tempfile.mkdtemp(prefix="uncertainty-", dir=self.workdir))
        made = OutputSpec(folder / f"{stem}.tif", png=folder / f"{stem}.png")
        command = shlex.join([PROG, "uncertainty", "--embeddings", self.store_arg, "--context",
                              ",".join(context), "--layer", layer, "--out", made.out.name])  # fmt: skip
        spec = UncertaintySpec(context=context, layer=layer)
        inputs = MapInputs(self.session.store.path)
        layers = uncertainty(spec, inputs, made, command=command).layers

        def write(cog: Path, png: Path) -> None:  # the workflow's files, as written
            shutil.copyfile(made.out, cog)
            shutil.copyfile(folder / f"{stem}.png", png)

        cmap = UNCERTAINTY_STYLE[layer][1]
        ids = []
        for band in layers.bands:
            made_layer = self._layer_of(layers, band, "uncertainty", cmap, command, write)
            made_layer.title = f"{band}: {layer} of {'+'.join(context)}"
            made_layer.stem = stem
            ids.append(made_layer.id)
            with self._lock:
                self._layers[made_layer.id] = made_layer
        return ids

    def _add_file(self, path: Path) -> None:
        """Each band of a GeoTIFF given with --layer (any north-up grid; drawn on its own)."""
        for index, unit in enumerate(_band_units(path), start=1):
            values, transform, crs, name = read_band(path, index)
            if not isinstance(transform, Affine):
                raise InputError(f"raster {path} has no affine transform")
            if transform.b != 0 or transform.d != 0 or transform.e >= 0:
                raise InputError(f"raster {path} is not north-up; warp it first")
            values = values.astype(np.float32)
            grid = Grid(CRS.from_user_input(crs), transform, values.shape,
                        mask=np.isfinite(values), aoi_name=path.name)  # fmt: skip

            def write(cog: Path, png: Path, grid: Grid = grid, values: np.ndarray = values,
                      name: str = name, unit: str = unit) -> None:  # fmt: skip
                shutil.copyfile(path, cog)  # the file as given
                panel = Panel(values, name, unit, FILE_CMAP, *stretch(values))
                write_quicklook(png, [panel], grid, suptitle=path.name)

            layer = MapLayer(
                id=self._next_id("file"),
                title=f"{path.name}: {name}",
                band=name,
                values=values,
                crs=grid.crs,
                transform=transform,
                units=unit,
                cmap=FILE_CMAP,
                description=f"band {name} of {path.name}",
                command="",
                write=write,
                kind="file",
            )
            with self._lock:
                self._layers[layer.id] = layer

    # -- downloads ------------------------------------------------------------------------------
    def download(self, layer_id: str, kind: str) -> tuple[bytes, str]:
        """(bytes, file name) of a layer's COG (`tif`) or PNG quicklook (`png`), written once."""
        layer = self.layer(layer_id)
        if kind not in ("tif", "png"):
            raise KeyError(kind)
        with self._lock:
            guard = self._downloads.setdefault(layer.id, threading.Lock())
        folder = self.workdir / layer.id
        stem = layer.stem or layer.band
        cog, png = folder / f"{stem}.tif", folder / f"{stem}.png"
        with guard:
            if not cog.exists():
                folder.mkdir(exist_ok=True)
                layer.write(cog, png)
        path = cog if kind == "tif" else png
        return path.read_bytes(), path.name


def _band_units(path: Path) -> list[str]:
    """The unit of each band of a raster ("" where none is declared)."""
    import rasterio

    read_band(path)  # one-line errors for a missing, unreadable or ungeoreferenced file
    with rasterio.open(path) as ds:
        return [unit or ds.tags(i + 1).get("units", "") for i, unit in enumerate(ds.units)]
