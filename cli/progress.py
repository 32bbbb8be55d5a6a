"""Progress bars for the terminal (silent when stderr is not a terminal)."""

from __future__ import annotations

from collections.abc import Callable

from tqdm import tqdm


class ByteProgress:
    """A byte-count bar driven by `update_to(done, total)` callbacks from the library."""

    def __init__(self, description: str) -> None:
        self._bar = tqdm(
            desc=description,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=None,
            leave=False,
        )

    def update_to(self, done: int, total: int) -> None:
        self._bar.total = total
        self._bar.update(done - self._bar.n)

    def __enter__(self) -> ByteProgress:
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()


class CellProgress:
    """A grid-chunk counter bar, with optional live statistics (requests, bytes) as postfix."""

    def __init__(self, stats: Callable[[], dict] | None = None) -> None:
        self.bar = tqdm(desc="grid chunks", unit="chunk", disable=None, leave=False)
        self.stats = stats

    def watching(self, source) -> CellProgress:
        """This bar, showing the source's live statistics (requests, bytes) when it has them."""
        self.stats = getattr(source, "stats", None)
        return self

    def __call__(self, done: int, total: int) -> None:
        self.bar.total = total
        if self.stats:
            self.bar.set_postfix(self.stats(), refresh=False)
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> CellProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
