"""Helpers shared by the tests (imported as `tests.helpers`; pytest puts the root on the path)."""

from __future__ import annotations

from pathlib import Path


def write_inat_csv(path: Path, rows: list[tuple]) -> Path:
    """rows: (latitude, longitude, scientific_name[, quality_grade[, observed_on]])."""
    lines = ["id,observed_on,latitude,longitude,scientific_name,quality_grade"]
    for i, row in enumerate(rows):
        lat, lon, name, *rest = row
        grade = rest[0] if rest else "research"
        date = rest[1] if len(rest) > 1 else "2023-06-01"
        lines.append(f"{i},{date},{lat},{lon},{name},{grade}")
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_png_shows_a_picture(path: Path, min_colours: int = 20) -> None:
    """The file opens as a PNG image (read back with PIL, not by its magic bytes) of a sensible
    size that draws something: many distinct colours, not a blank or single-colour canvas."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG", image.format
        assert image.width >= 200 and image.height >= 150, image.size
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    colours = np.unique(pixels, axis=0)
    assert len(colours) >= min_colours, f"{path.name}: only {len(colours)} colours"
