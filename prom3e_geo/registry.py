"""Registries: every kind chosen by name (imagery sources, encoders, model presets, masking
strategies, evaluation datasets, CLI command groups) is looked up here, never in an if-chain.

A registry reads the entry points of its group (`prom3e_geo.sources`, ...) on first use: the
built-in kinds are declared in this project's `pyproject.toml`, the demo world's and any other
package's in theirs, so adding a kind is one new module and one entry-point line. Entries are
loaded (imported) only when asked for by name. `register` adds one in code (notebooks, tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from prom3e_geo.errors import UnknownNameError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

T = TypeVar("T")


class Registry(Generic[T]):
    """Named kinds of one sort (see the module docstring)."""

    def __init__(self, group: str, kind: str) -> None:
        self.group = group
        self.kind = kind  # for messages: "imagery source", "masking strategy", ...
        self._entries: dict[str, EntryPoint] | None = None
        self._loaded: dict[str, T] = {}

    def _all(self) -> dict[str, EntryPoint]:
        if self._entries is None:
            from importlib.metadata import entry_points  # 20 ms of import: on first use

            self._entries = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._entries

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted({*self._all(), *self._loaded})

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in self._all()

    def get(self, name: str) -> T:
        """The entry registered as `name`; an unknown name is an input error listing the known."""
        if name not in self._loaded:
            entries = self._all()
            if name not in entries:
                raise UnknownNameError(
                    f"unknown {self.kind} {name!r} (available: {', '.join(self.names()) or 'none'})"
                )
            self._loaded[name] = entries[name].load()
        return self._loaded[name]

    def register(self, name: str, entry: T) -> T:
        """Add (or replace) an entry in code; returns it."""
        self._loaded[name] = entry
        return entry
