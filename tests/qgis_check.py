"""Open prom3e-geo outputs in a real QGIS (PyQGIS, headless) and print what QGIS sees, as JSON.

Run with the Python that has PyQGIS (Debian: /usr/bin/python3 with python3-qgis), not the
project's venv; `tests/test_qgis.py` runs it as a subprocess and asserts on its output.

    python3 qgis_check.py --project run.qgz [--raster 'ZARR:"div.zarr":/shannon' ...]

For the project: whether `QgsProject.read` succeeded, and for every layer its validity, CRS,
extent, band names, renderer (type, band, ramp limits, fill style), metadata, and how many
distinct colours a 200 x 100 rendering of it holds (a styled map renders many; a failed
layer none). For each --raster: validity, CRS and extent of that GDAL source opened alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (  # noqa: E402 (after the platform is chosen)
    Qgis,
    QgsApplication,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QSize  # noqa: E402
from qgis.PyQt.QtGui import QColor  # noqa: E402


def extent(rect) -> list[float]:
    return [rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()]


def rendered_colours(layer, crs) -> int:
    """Distinct colours of the layer rendered alone over its extent on white."""
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(crs)
    settings.setExtent(settings.layerExtentToOutputExtent(layer, layer.extent()))
    settings.setOutputSize(QSize(200, 100))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    return len({image.pixel(x, y) for x in range(image.width()) for y in range(image.height())})


def renderer_of(layer) -> dict:
    if isinstance(layer, QgsRasterLayer):
        renderer = layer.renderer()
        info = {"type": renderer.type(), "bands": list(renderer.usesBands())}
        shader = getattr(renderer, "shader", lambda: None)()
        if shader is not None:
            ramp = shader.rasterShaderFunction()
            info["min"], info["max"] = ramp.minimumValue(), ramp.maximumValue()
            info["stops"] = len(ramp.colorRampItemList())
        return info
    renderer = layer.renderer()
    info = {"type": renderer.type()}
    symbol = getattr(renderer, "symbol", lambda: None)()
    if symbol is not None:
        info["symbol"] = symbol.symbolLayer(0).layerType()
        info["fill_style"] = symbol.symbolLayer(0).properties().get("style")
    return info


def describe_project(path: str) -> dict:
    project = QgsProject.instance()
    ok = project.read(path)
    layers = []
    for node in project.layerTreeRoot().findLayers():
        layer = node.layer()
        entry = {"name": node.name(), "valid": bool(layer and layer.isValid())}
        if layer is not None:
            meta = layer.metadata()
            entry.update(
                source=layer.source(),
                crs=layer.crs().authid(),
                extent=extent(layer.extent()),
                renderer=renderer_of(layer),
                metadata={
                    "title": meta.title(),
                    "abstract": meta.abstract(),
                    "history": list(meta.history()),
                    "keywords": {k: list(v) for k, v in meta.keywords().items()},
                },
            )
            if isinstance(layer, QgsRasterLayer):
                provider = layer.dataProvider()
                entry["bands"] = [layer.bandName(i) for i in range(1, provider.bandCount() + 1)]
            if entry["valid"]:
                entry["rendered_colours"] = rendered_colours(layer, project.crs())
        layers.append(entry)
    return {"read": bool(ok), "crs": project.crs().authid(), "layers": layers}


def describe_raster(uri: str) -> dict:
    layer = QgsRasterLayer(uri, "raster", "gdal")
    return {
        "uri": uri,
        "valid": layer.isValid(),
        "crs": layer.crs().authid(),
        "extent": extent(layer.extent()),
        "size": [layer.width(), layer.height()],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--project")
    parser.add_argument("--raster", action="append", default=[])
    args = parser.parse_args()
    app = QgsApplication([], False)
    app.initQgis()
    result = {"qgis": Qgis.QGIS_VERSION}
    if args.project:
        result["project"] = describe_project(args.project)
    result["rasters"] = [describe_raster(uri) for uri in args.raster]
    json.dump(result, sys.stdout)
    QgsProject.instance().clear()
    app.exitQgis()


if __name__ == "__main__":
    main()
