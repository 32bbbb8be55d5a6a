"""Print the lowest declared version of every dependency (`name>=X` -> `name==X`), for
`make test-min`: pyproject's floors are only honest if the tests pass on them."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def floors(extras: tuple[str, ...] = ("dev",)) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    pinned = []
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)\s*(.*)", requirement)
        name, spec = match.group(1), match.group(2)
        lowest = re.search(r">=\s*([^,\s]+)", spec)
        exact = re.search(r"==\s*([^,\s]+)", spec)
        if lowest:
            pinned.append(f"{name}=={lowest.group(1)}")
        elif exact:
            pinned.append(f"{name}=={exact.group(1)}")
        else:
            sys.exit(f"{requirement!r} declares no floor")
    return pinned


if __name__ == "__main__":
    print("\n".join(floors()))
