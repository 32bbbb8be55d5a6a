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
