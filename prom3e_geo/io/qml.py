"""QGIS style sidecars: `NAME.qml` beside `NAME.tif`, which QGIS applies when it opens the
raster. The colour ramp of the first band is fitted to that file's values (2nd to 98th
percentile), so every map opens showing the spread it has."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prom3e_geo.io.outputs import atomic_output

STOPS = 5
# matplotlib's colours at the STOPS evenly spaced positions of the ramps the maps use, so that a
# map's style needs no matplotlib import (0.1 s of a small diversity run); any other ramp is
# sampled from matplotlib. tests/test_io.py keeps them equal to matplotlib's.
KNOWN_RAMPS = {
    "magma": ("#000004", "#51127c", "#b73779", "#fc8961", "#fcfdbf"),
    "viridis": ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"),
    "inferno": ("#000004", "#57106e", "#bc3754", "#f98e09", "#fcffa4"),
    "YlGn": ("#ffffe5", "#d9f0a3", "#77c679", "#228343", "#004529"),
}


def stretch(values: np.ndarray) -> tuple[float, float]:
    """The 2nd and 98th percentiles of the finite values (a small range around a constant)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [2, 98]))
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def ramp_colours(cmap: str) -> tuple[str, ...]:
    """The hex colours of matplotlib's `cmap` at STOPS evenly spaced positions."""
    if cmap in KNOWN_RAMPS:
        return KNOWN_RAMPS[cmap]
    import matplotlib

    ramp = matplotlib.colormaps[cmap]
    return tuple(matplotlib.colors.to_hex(ramp(k / (STOPS - 1))) for k in range(STOPS))


def write_style(
    raster: str | Path, values: np.ndarray, cmap: str, label: str, overwrite: bool = False
) -> Path:
    """Write the sidecar style of band 1 of `raster` (its `values`) with matplotlib's `cmap`."""
    lo, hi = stretch(values)
    items = []
    for k, colour in enumerate(ramp_colours(cmap)):
        value = lo + (hi - lo) * k / (STOPS - 1)
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
            f"label={_attribute(label)}>",
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


_ATTRIBUTE_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\n": "&#10;",
        "\r": "&#13;",
        "\t": "&#9;",
    }
)


def _attribute(text: str) -> str:
    """`text` as a double-quoted XML attribute value, escaped as `xml.sax.saxutils.quoteattr`
    escapes it (importing that module brings urllib and email along: 14 ms of every run)."""
    return '"' + text.translate(_ATTRIBUTE_ESCAPES) + '"'
