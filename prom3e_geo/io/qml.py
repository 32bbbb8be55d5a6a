"""QGIS style sidecars: `NAME.qml` beside `NAME.tif`, which QGIS applies when it opens the
raster. The colour ramp of the first band is fitted to that file's values (2nd to 98th
percentile), so every map opens showing the spread it has."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from prom3e_geo.io.outputs import atomic_output

STOPS = 5


def stretch(values: np.ndarray) -> tuple[float, float]:
    """The 2nd and 98th percentiles of the finite values (a small range around a constant)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [2, 98]))
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def write_style(
    raster: str | Path, values: np.ndarray, cmap: str, label: str, overwrite: bool = False
) -> Path:
    """Write the sidecar style of band 1 of `raster` (its `values`) with matplotlib's `cmap`."""
    import matplotlib

    lo, hi = stretch(values)
    ramp = matplotlib.colormaps[cmap]
    items = []
    for k in range(STOPS):
        value = lo + (hi - lo) * k / (STOPS - 1)
        colour = matplotlib.colors.to_hex(ramp(k / (STOPS - 1)))
        items.append(
            f'          <item alpha="255" value="{value:.6g}" label="{value:.4g}" color="{colour}"/>'
        )
    comment = f"prom3e-geo style: {label}, ramp over the 2nd-98th percentiles {lo:.4g}..{hi:.4g}"
    text = "\n".join(
        [
            '<qgis version="3.34" styleCategories="Symbology">',
            f"  <!-- {comment.replace('--', '-')} -->",
            "  <pipe>",
            f'    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" '
            f'alphaBand="-1" classificationMin="{lo:.6g}" classificationMax="{hi:.6g}" '
            f'nodataColor="">',
            "      <rastershader>",
            f'        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" '
            f'clip="0" minimumValue="{lo:.6g}" maximumValue="{hi:.6g}" '
            f"label={quoteattr(label)}>",
            *items,
            "        </colorrampshader>",
            "      </rastershader>",
            "    </rasterrenderer>",
            '    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>',
            '    <rasterresampler maxOversample="2"/>',
            "  </pipe>",
            "  <blendMode>0</blendMode>",
            "</qgis>",
            "",
        ]
    )
    path = Path(raster).with_suffix(".qml")
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text(text)
    return path
