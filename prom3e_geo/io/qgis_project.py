"""QGIS projects of a run's layers, written as QGIS project XML without QGIS installed.

A project (`.qgs`, or `.qgz`: the `.qgs` zipped, QGIS's default) lists each GeoTIFF layer with
its name, CRS and extent, the style of its `NAME.qml` sidecar (`io.qml`: the sidecar's `<pipe>`,
which holds the raster renderer, is copied into the layer), its provenance tags as layer
metadata (Layer Properties > Metadata), and the outline of the area of interest as a vector
layer read from a GeoJSON written beside the project. Every path is written relative to the
project file (`./div.tif`), the form QGIS resolves against the project's folder, so the folder
can be moved or shared as a whole.

The element names follow what QGIS 3.22 writes and reads (`QgsProject::write`, `QgsMapLayer::
writeLayerXml`, `QgsLayerMetadata::writeMetadataXml`, `QgsCoordinateReferenceSystem::writeXml`);
`tests/test_qgis.py` opens the result in a real QGIS.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyproj
import rasterio
import shapely

from prom3e_geo.errors import InputError
from prom3e_geo.grid.aoi import WGS84, Aoi
from prom3e_geo.io.outputs import atomic_output

QGIS_VERSION = "3.22.16-Białowieża"  # the format of QGIS 3.22 (LTR, Debian 12); newer QGIS read it
SUFFIXES = (".qgs", ".qgz")
AOI_STYLE = {  # a hollow outline: the AOI frames the maps, it does not cover them
    "style": "no",
    "color": "0,0,0,0",
    "outline_style": "solid",
    "outline_color": "20,20,20,255",
    "outline_width": "0.5",
    "outline_width_unit": "MM",
    "joinstyle": "round",
}


@dataclass(frozen=True)
class RasterLayer:
    """What a project needs to know of one raster: read from the file by `read_raster_layer`."""

    path: Path
    name: str
    crs: pyproj.CRS
    bounds: tuple[float, float, float, float]
    bands: tuple[str, ...]
    tags: dict[str, str] = field(default_factory=dict)
    style: ET.Element | None = None  # the `<pipe>` of the layer's `.qml` sidecar


def read_raster_layer(path: str | Path, name: str | None = None) -> RasterLayer:
    """A GeoTIFF's CRS, extent, band names, provenance tags and sidecar style; refuses a file
    that is missing, unreadable or not georeferenced, and a sidecar QGIS could not read."""
    path = Path(path)
    if path.is_dir():  # a Zarr store, most likely
        raise InputError(
            f"layer {path} is a folder: give GeoTIFFs (QGIS 3.22 resolves no relative path inside "
            "a ZARR: source, so a Zarr layer would not survive moving the folder)"
        )
    if not path.is_file():
        raise InputError(f"layer {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError:
        raise InputError(f"layer {path} is not a raster GDAL can read") from None
    with ds:
        if ds.crs is None:
            raise InputError(f"layer {path} is not georeferenced (no CRS)")
        crs = pyproj.CRS.from_wkt(ds.crs.to_wkt())
        bands = tuple(d or f"band {i}" for i, d in enumerate(ds.descriptions, start=1))
        bounds = tuple(ds.bounds)
        tags = ds.tags()
    tags.pop("AREA_OR_POINT", None)
    return RasterLayer(path, name or path.stem, crs, bounds, bands, tags, _sidecar_pipe(path))


def _sidecar_pipe(raster: Path) -> ET.Element | None:
    qml = raster.with_suffix(".qml")
    if not qml.is_file():
        return None
    try:
        pipe = ET.parse(qml).getroot().find("pipe")
    except ET.ParseError as exc:
        raise InputError(f"style {qml} is not valid QGIS style XML: {exc}") from None
    if pipe is None or pipe.find("rasterrenderer") is None:
        raise InputError(f"style {qml} holds no raster renderer")
    return pipe


def aoi_geojson(aoi: Aoi) -> str:
    """The AOI outline as a one-feature GeoJSON FeatureCollection (lon/lat, RFC 7946)."""
    feature = {
        "type": "Feature",
        "properties": {"aoi": aoi.name},
        "geometry": json.loads(shapely.to_geojson(aoi.geometry)),
    }
    return json.dumps({"type": "FeatureCollection", "features": [feature]})


def aoi_path(project: str | Path) -> Path:
    """Where the AOI outline of a project is written: `NAME_aoi.geojson` beside `NAME.qgz`."""
    project = Path(project)
    return project.with_name(f"{project.stem}_aoi.geojson")


def project_xml(project: str | Path, layers: Sequence[RasterLayer], aoi: Aoi, title: str) -> bytes:
    """The `.qgs` XML of `layers` (drawn in the given order, the first on top) and the AOI
    outline (on top of all), with paths relative to the project file `project`."""
    folder = Path(project).resolve().parent
    crs = layers[0].crs
    root = ET.Element("qgis", projectname=title, version=QGIS_VERSION)
    ET.SubElement(root, "homePath", path="")
    _text(root, "title", title)
    _crs_xml(ET.SubElement(root, "projectCrs"), crs)

    aoi_layer = _vector_layer(aoi, _relative(aoi_path(project), folder))
    raster_layers = [_raster_layer(layer, _relative(layer.path, folder)) for layer in layers]
    entries = [aoi_layer, *raster_layers]
    tree = ET.SubElement(root, "layer-tree-group")
    ET.SubElement(tree, "customproperties")
    for element, name, source, provider in entries:
        ET.SubElement(
            tree, "layer-tree-layer", id=element.findtext("id", ""), name=name, source=source,
            providerKey=provider, checked="Qt::Checked", expanded="1",
        )  # fmt: skip
    canvas = ET.SubElement(root, "mapcanvas", name="theMapCanvas", annotationsVisible="1")
    _text(canvas, "units", "degrees" if crs.is_geographic else "meters")
    _extent(canvas, "extent", _union_bounds(layers))
    _text(canvas, "rotation", "0")
    _crs_xml(ET.SubElement(canvas, "destinationsrs"), crs)
    maplayers = ET.SubElement(root, "projectlayers")
    order = ET.SubElement(root, "layerorder")
    for element, *_ in entries:
        maplayers.append(element)
        ET.SubElement(order, "layer", id=element.findtext("id", ""))
    properties = ET.SubElement(root, "properties")
    srs = ET.SubElement(properties, "SpatialRefSys")  # QGIS reads <projectCrs> only with this
    ET.SubElement(srs, "ProjectionsEnabled", type="int").text = "1"
    paths = ET.SubElement(properties, "Paths")
    ET.SubElement(paths, "Absolute", type="bool").text = "false"
    ET.indent(root)
    body: bytes = ET.tostring(root, encoding="utf-8")  # bytes for any encoding but "unicode"
    return b"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + body


def write_qgis_project(
    project: str | Path,
    layers: Sequence[RasterLayer],
    aoi: Aoi,
    title: str,
    overwrite: bool = False,
) -> list[Path]:
    """Write the project (`.qgs` XML, or `.qgz`: that XML zipped; see `SUFFIXES`) and its AOI
    outline; both appear together (the caller wraps this in `io.outputs.committed_together`)."""
    project = Path(project)
    xml = project_xml(project, layers, aoi, title)
    outline = aoi_path(project)
    with atomic_output(outline, overwrite) as tmp:
        tmp.write_text(aoi_geojson(aoi))
    with atomic_output(project, overwrite) as tmp:
        if project.suffix.lower() == ".qgz":
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(f"{project.stem}.qgs", xml)
        else:
            tmp.write_bytes(xml)
    return [project, outline]


# -- elements -----------------------------------------------------------------------------------
def _raster_layer(layer: RasterLayer, source: str) -> tuple[ET.Element, str, str, str]:
    element = ET.Element("maplayer", type="raster", hasScaleBasedVisibilityFlag="0",
                         styleCategories="AllStyleCategories")  # fmt: skip
    _extent(element, "extent", layer.bounds)
    _text(element, "id", _layer_id(layer.name, source))
    _text(element, "datasource", source)
    _text(element, "layername", layer.name)
    _crs_xml(ET.SubElement(element, "srs"), layer.crs)
    _metadata(element, layer)
    _text(element, "provider", "gdal")
    if layer.style is not None:
        element.append(layer.style)
    _text(element, "blendMode", "0")
    return element, layer.name, source, "gdal"


def _vector_layer(aoi: Aoi, source: str) -> tuple[ET.Element, str, str, str]:
    name = f"AOI ({aoi.name})"
    element = ET.Element("maplayer", type="vector", geometry="Polygon", wkbType="MultiPolygon",
                         hasScaleBasedVisibilityFlag="0", styleCategories="AllStyleCategories")  # fmt: skip
    _extent(element, "extent", aoi.geometry.bounds)
    _text(element, "id", _layer_id("aoi", source))
    _text(element, "datasource", source)
    _text(element, "layername", name)
    _crs_xml(ET.SubElement(element, "srs"), pyproj.CRS.from_wkt(WGS84.to_wkt()))
    ET.SubElement(element, "provider", encoding="UTF-8").text = "ogr"
    renderer = ET.SubElement(element, "renderer-v2", type="singleSymbol", symbollevels="0",
                             enableorderby="0", forceraster="0")  # fmt: skip
    symbols = ET.SubElement(renderer, "symbols")
    symbol = ET.SubElement(symbols, "symbol", type="fill", name="0", alpha="1",
                           clip_to_extent="1", force_rhr="0")  # fmt: skip
    fill = ET.SubElement(symbol, "layer", {"class": "SimpleFill"}, enabled="1", locked="0",
                         **{"pass": "0"})  # fmt: skip
    options = ET.SubElement(fill, "Option", type="Map")
    for key, value in AOI_STYLE.items():
        ET.SubElement(options, "Option", name=key, value=value, type="QString")
    _text(element, "blendMode", "0")
    return element, name, source, "ogr"


def _metadata(parent: ET.Element, layer: RasterLayer) -> None:
    """Provenance as QGIS layer metadata: the abstract lists the bands and every tag, the
    history holds the command that made the layer, the keywords the tags one by one."""
    meta = ET.SubElement(parent, "resourceMetadata")
    _text(meta, "identifier", layer.path.name)
    _text(meta, "parentidentifier", "")
    _text(meta, "language", "")
    _text(meta, "type", "dataset")
    _text(meta, "title", layer.name)
    lines = [f"bands: {', '.join(layer.bands)}"]
    lines += [f"{key}: {value}" for key, value in layer.tags.items()]
    _text(meta, "abstract", "\n".join(lines))
    if "command" in layer.tags:
        _text(meta, "history", layer.tags["command"])
    if layer.tags:
        keywords = ET.SubElement(meta, "keywords", vocabulary="prom3e-geo provenance")
        for key, value in layer.tags.items():
            _text(keywords, "keyword", f"{key}={value}")
    _text(meta, "fees", "")
    _text(meta, "encoding", "")
    _crs_xml(ET.SubElement(meta, "crs"), layer.crs)


def _crs_xml(parent: ET.Element, crs: pyproj.CRS) -> None:
    """A `<spatialrefsys>` as QGIS writes it: the WKT is authoritative, the rest describes it."""
    srs = ET.SubElement(parent, "spatialrefsys", nativeFormat="Wkt")
    _text(srs, "wkt", crs.to_wkt("WKT2_2019"))
    authority = crs.to_authority()
    _text(srs, "srid", authority[1] if authority else "0")
    _text(srs, "authid", ":".join(authority) if authority else "")
    _text(srs, "description", crs.name)
    _text(srs, "geographicflag", "true" if crs.is_geographic else "false")


def _extent(parent: ET.Element, tag: str, bounds: Sequence[float]) -> None:
    extent = ET.SubElement(parent, tag)
    for key, value in zip(("xmin", "ymin", "xmax", "ymax"), bounds, strict=True):
        _text(extent, key, repr(float(value)))


def _union_bounds(layers: Sequence[RasterLayer]) -> tuple[float, float, float, float]:
    """The extent of the layers in the first one's CRS (the project's)."""
    crs = layers[0].crs
    boxes = []
    for layer in layers:
        if layer.crs == crs:
            boxes.append(layer.bounds)
        else:
            tr = pyproj.Transformer.from_crs(layer.crs, crs, always_xy=True)
            boxes.append(tr.transform_bounds(*layer.bounds, densify_pts=21))
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _relative(path: Path, folder: Path) -> str:
    """`./x.tif` or `../maps/x.tif`: QGIS resolves only paths starting so against the project."""
    rel = Path(os.path.relpath(Path(path).resolve(), folder)).as_posix()
    return rel if rel.startswith("../") else f"./{rel}"


def _layer_id(name: str, source: str) -> str:
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() else "_" for c in name)
    return f"{safe}_{digest}"


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element
