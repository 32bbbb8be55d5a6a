"""Progress for people: bars on a terminal, throttled lines in a log, nothing with --quiet.

The library reports progress through `update_to(done, total)` / `(done, total)` callbacks;
these classes turn them into a tqdm bar when stderr is a terminal, and otherwise into a plain
line every `PROM3E_GEO_PROGRESS_EVERY` seconds (default 10: done/total, elapsed, ETA), so a run
whose output goes to a log file shows that it is alive; a run shorter than that prints none.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

import click

if TYPE_CHECKING:
    from tqdm import tqdm


def _quiet() -> bool:
    """--quiet of the running command line (False outside a click command)."""
    context = click.get_current_context(silent=True)
    return bool(context and context.find_root().params.get("quiet"))


class _Progress:
    def __init__(self, description: str, unit: str, scale: bool = False) -> None:
        self.description, self.unit = description, unit
        quiet = _quiet()
        self.terminal = sys.stderr.isatty() and not quiet
        self.logging = not sys.stderr.isatty() and not quiet
        from prom3e_geo.settings import Settings

        self.every = Settings.from_environment().progress_every_s
        self.started = self.last_line = time.monotonic()
        self.lines = 0
        self.bar: tqdm[Any] | None = None  # only on a terminal: tqdm is not imported otherwise
        if self.terminal:
            from tqdm import tqdm

            self.bar = tqdm(
                desc=description, unit=unit, unit_scale=scale, unit_divisor=1024, leave=False
            )

    def update(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(done - self.bar.n)
        now = time.monotonic()
        finished = done >= total > 0 and (self.lines or not self.every)
        if self.logging and (now - self.last_line >= self.every or finished):
            self.last_line, self.lines = now, self.lines + 1
            elapsed = now - self.started
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = f", ETA {(total - done) / rate:,.0f} s" if rate > 0 and done < total else ""
            click.echo(
                f"{self.description}: {done:,}/{total:,} {self.unit}"
                f" ({100 * done / max(total, 1):.0f}%), {elapsed:,.0f} s{eta}",
                err=True,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


class ByteProgress(_Progress):
    """Bytes read of a file, driven by `update_to(done, total)`."""

    def __init__(self, description: str) -> None:
        super().__init__(description, "B", scale=True)

    def update_to(self, done: int, total: int) -> None:
        self.update(done, total)


class CellProgress(_Progress):
    """Grid chunks done, with live statistics of the source (requests, bytes) on a terminal."""

    def __init__(self, stats: Callable[[], dict[str, Any]] | None = None) -> None:
        super().__init__("grid chunks", "chunks")
        self.stats = stats

    def watching(self, source: object) -> CellProgress:
        """This bar, showing the source's live statistics (requests, bytes) when it has them."""
        self.stats = getattr(source, "stats", None)
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.stats and self.bar is not None:
            self.bar.set_postfix(self.stats(), refresh=False)
        self.update(done, total)
